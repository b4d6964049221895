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
