import numpy as np

from deepem import mining


def test_holdout_hits_match_stripe_maxima_to_labels_counting_border_labels_once(monkeypatch):
    # particle_px 32: matching radius 16; stripe x in [100, 200)
    maxima = np.array([[151.0, 50], [198, 50], [120, 90], [260, 50]])
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    monkeypatch.setattr(mining, "_maxima", lambda *args: iter([("a", None, maxima, scores)]))
    labels = {"a": np.array([[150.0, 52], [190, 120], [205, 50], [210, 90], [250, 50]])}
    hits, got, n_labels = mining.holdout_hits(None, None, labels, {"a": (100, 200)}, 32, "cpu")
    # in the stripe: 151 (label 150), 198 (label 205, just outside: it counts), 120 (no label)
    np.testing.assert_array_equal(hits, [True, True, False])
    np.testing.assert_array_equal(got, [0.9, 0.8, 0.7])
    # labels 150 and 190 inside, plus 205 matched from outside; 210 (unmatched, outside) and 250 do not count
    assert n_labels == 3


def test_holdout_hits_skip_micrographs_without_a_stripe(monkeypatch):
    seen = []
    monkeypatch.setattr(mining, "_maxima", lambda net, table, names, *rest: seen.append(list(names)) or iter([]))
    hits, scores, n_labels = mining.holdout_hits(None, None, {"a": np.zeros((1, 2)), "b": np.zeros((1, 2))}, {"b": (0, 5)}, 32, "cpu")
    assert seen == [["b"]] and len(hits) == len(scores) == n_labels == 0
