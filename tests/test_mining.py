from types import SimpleNamespace

import numpy as np

from deepem import mining


def test_label_hits_in_stripes_match_stripe_maxima_to_labels_counting_border_labels_once(monkeypatch):
    # particle_px 32: matching radius 16; stripe x in [100, 200)
    maxima = np.array([[151.0, 50], [198, 50], [120, 90], [260, 50]])
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    monkeypatch.setattr(mining, "_maxima", lambda *args: iter([("a", None, maxima, scores)]))
    labels = {"a": np.array([[150.0, 52], [190, 120], [205, 50], [210, 90], [250, 50]])}
    hits, got, n_labels = mining.label_hits(None, None, labels, 32, "cpu", {"a": (100, 200)})
    # in the stripe: 151 (label 150), 198 (label 205, just outside: it counts), 120 (no label)
    np.testing.assert_array_equal(hits, [True, True, False])
    np.testing.assert_array_equal(got, [0.9, 0.8, 0.7])
    # labels 150 and 190 inside, plus 205 matched from outside; 210 (unmatched, outside) and 250 do not count
    assert n_labels == 3


def test_label_hits_in_stripes_skip_micrographs_without_a_stripe(monkeypatch):
    seen = []
    monkeypatch.setattr(mining, "_maxima", lambda net, table, names, *rest: seen.append(list(names)) or iter([]))
    hits, scores, n_labels = mining.label_hits(None, None, {"a": np.zeros((1, 2)), "b": np.zeros((1, 2))}, 32, "cpu", {"b": (0, 5)})
    assert seen == [["b"]] and len(hits) == len(scores) == n_labels == 0


def test_label_hits_without_stripes_match_every_maximum_and_count_every_label(monkeypatch):
    maxima = np.array([[151.0, 50], [198, 50], [120, 90], [260, 50]])
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    monkeypatch.setattr(mining, "_maxima", lambda *args: iter([("a", None, maxima, scores)]))
    labels = {"a": np.array([[150.0, 52], [190, 120], [205, 50], [250, 50]])}
    hits, got, n_labels = mining.label_hits(None, None, labels, 32, "cpu")
    np.testing.assert_array_equal(hits, [True, True, False, True])  # 150, 205 and 250 (within 16 px of 260)
    np.testing.assert_array_equal(got, scores)
    assert n_labels == 4  # 190 matches no maximum and still counts


def test_label_hits_leave_out_maxima_beyond_the_background_bounds_as_picking_does(monkeypatch):
    maxima = np.array([[151.0, 50], [198, 50], [120, 90], [260, 50], [60, 200]])
    scores = np.array([0.9, 0.8, 0.7, 0.95, 0.85])
    monkeypatch.setattr(mining, "_maxima", lambda *args: iter([("a", None, maxima, scores)]))
    maps = np.zeros((2, 40, 40), np.float32)  # level and texture, 8 px cells at particle_px 32
    maps[0, :, 24:] = -2.0  # dark from x = 192: the maxima at 198 and 260
    maps[1, 20:, :] = 1.0  # textured from y = 160: the maximum at (60, 200)
    labels = {"a": np.array([[150.0, 52], [205, 50], [250, 50], [62, 200]])}
    hits, got, n_labels = mining.label_hits(None, None, labels, 32, "cpu", background=({"a": maps}, -1.0, 0.5))
    np.testing.assert_array_equal(hits, [True, False])  # 151 matches 150; 120 matches nothing
    np.testing.assert_array_equal(got, [0.9, 0.7])
    assert n_labels == 4  # the labels beyond the bounds still count, as misses


def test_hard_negatives_are_never_mined_in_the_held_out_stripe(monkeypatch):
    image = np.arange(300 * 300, dtype=np.float32).reshape(300, 300)
    maxima = np.array([[150.0, 150], [50, 150], [250, 50]])  # the first in the stripe, all far from the label
    monkeypatch.setattr(mining, "_maxima", lambda *args: iter([("a", image, maxima, np.array([0.9, 0.8, 0.7]))]))
    net = SimpleNamespace(arch=SimpleNamespace(box=8))
    labels = {"a": np.array([[10.0, 10], [280, 280], [20, 280]])}
    got = mining.hard_negatives(net, None, labels, 32, "cpu", {"a": (100, 200)})
    np.testing.assert_array_equal(got, mining.extract(image, maxima[1:], 8))
    assert len(mining.hard_negatives(net, None, labels, 32, "cpu", {})) == 3  # no stripe: all three


def test_mining_and_calibration_take_maxima_at_the_spacing_they_are_given(monkeypatch):
    seen = []
    monkeypatch.setattr(mining, "_maxima", lambda *args: seen.append(args[-1]) or iter([]))
    mining.label_hits(None, None, {"a": np.zeros((1, 2))}, 32, "cpu", spacing=0.43)
    mining.hard_negatives(SimpleNamespace(arch=SimpleNamespace(box=48)), None, {"a": np.zeros((1, 2))}, 32, "cpu", {},
                          spacing=0.41)
    mining.label_hits(None, None, {"a": np.zeros((1, 2))}, 32, "cpu")
    assert seen == [0.43, 0.41, 0.5]
