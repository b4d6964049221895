import numpy as np

from deepem.metrics import match, summarise


def test_one_to_one_matching_within_radius():
    truth = np.array([[0, 0], [100, 100]], float)
    picks = np.array([[3, 4], [1, 1], [100, 130], [200, 200]], float)
    hits = match(picks, truth, radius=10)
    assert hits.sum() == 1  # two picks near one particle: only one counts; (100,130) is too far
    m = summarise(hits, np.array([0.9, 0.8, 0.7, 0.6]), n_truth=2)
    assert m["precision"] == 0.25 and m["recall"] == 0.5


def test_perfect_ranking_gives_ap_one():
    hits = np.array([True, True, False])
    m = summarise(hits, np.array([0.9, 0.8, 0.1]), n_truth=2)
    assert m["average_precision"] == 1.0 and m["best_f1"] == 1.0 and m["best_f1_threshold"] == 0.8


def _by_threshold(hits, scores, n_truth):
    """AP and best F1 by brute force: precision and recall of the picks kept at each threshold."""
    ap, best, last_recall = 0.0, 0.0, 0.0
    for t in sorted(set(scores), reverse=True):
        kept = scores >= t
        tp = hits[kept].sum()
        precision, recall = tp / kept.sum(), tp / n_truth
        ap += (recall - last_recall) * precision
        last_recall = recall
        best = max(best, 2 * tp / (kept.sum() + n_truth))
    return ap, best


def test_picks_of_equal_score_count_together_whatever_their_order():
    """A threshold keeps all picks of one score or none (scores are written to 6 decimals, so
    saturated picks tie at 1.000000). Before 0.12.0 ties were ranked in input order: AP and best F1
    depended on the order of the micrographs, and best F1 could be one no threshold gives."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 30))
        scores = rng.integers(0, 5, n) / 4.0
        hits = rng.random(n) < 0.5
        n_truth = int(hits.sum() + rng.integers(0, 4)) or 1
        m = summarise(hits, scores, n_truth)
        ap, f1 = _by_threshold(hits, scores, n_truth)
        assert np.isclose(m["average_precision"], ap) and np.isclose(m["best_f1"], f1)
        kept = scores >= m["best_f1_threshold"]  # the threshold reported gives the best F1 reported
        assert np.isclose(2 * hits[kept].sum() / (kept.sum() + n_truth), f1)
        shuffled = rng.permutation(n)
        assert summarise(hits[shuffled], scores[shuffled], n_truth) == m
    tied = summarise(np.array([True, False]), np.array([0.5, 0.5]), 1)
    assert tied == summarise(np.array([False, True]), np.array([0.5, 0.5]), 1)
    assert tied["average_precision"] == 0.5 and np.isclose(tied["best_f1"], 2 / 3)
