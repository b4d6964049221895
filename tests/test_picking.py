import numpy as np
import pytest
import torch

from deepem.model import STRIDE, DeepEMNet, design
from deepem.picking import candidates, find_peaks, score_map, smoothed


def test_find_peaks_keeps_maxima_at_least_min_distance_apart():
    scores = np.zeros((40, 40), np.float32)
    scores[10, 10] = 0.9
    scores[10, 13] = 0.8  # 9 working px from the first: suppressed at min distance 12
    scores[30, 30] = 0.7
    scores[5, 30] = 0.2
    xy, s = find_peaks(scores, min_distance=12, floor=0.5)
    assert np.allclose(s, [0.9, 0.7])
    assert np.allclose(xy, [[10 * STRIDE, 10 * STRIDE], [30 * STRIDE, 30 * STRIDE]])


def test_find_peaks_refines_to_sub_cell_precision():
    y, x = np.mgrid[:30, :30]
    scores = np.exp(-((x - 12.3) ** 2 + (y - 17.8) ** 2) / 8.0).astype(np.float32)
    xy, _ = find_peaks(scores, min_distance=6, floor=0.5)
    assert len(xy) == 1
    assert abs(xy[0, 0] - 12.3 * STRIDE) < 0.3 * STRIDE and abs(xy[0, 1] - 17.8 * STRIDE) < 0.3 * STRIDE


def test_find_peaks_on_empty_map():
    xy, s = find_peaks(np.zeros((10, 10), np.float32), 6, floor=0.5)
    assert xy.shape == (0, 2) and s.shape == (0,)


def _spike_and_particle():
    """A one-box spike (one cell at 0.999) and a particle-like peak (0.99 amid 0.95 neighbours)."""
    scores = np.full((40, 40), 0.01)
    scores[10, 10] = 0.999
    scores[29:32, 29:32] = 0.95
    scores[30, 30] = 0.99
    return scores


def test_shift_average_ranks_a_broad_peak_above_a_one_box_spike():
    scores = _spike_and_particle()
    xy, _ = find_peaks(scores, min_distance=12, floor=0.05)
    assert np.allclose(xy[0], [10 * STRIDE, 10 * STRIDE])  # the raw map ranks the spike first
    xy, s = find_peaks(smoothed(scores, "modern"), min_distance=12, floor=0.05)
    assert np.allclose(xy[:, 0], [30 * STRIDE, 10 * STRIDE]) and s[0] > s[1]
    assert smoothed(scores, "faithful") is scores  # the paper's picking keeps the raw map


@pytest.mark.parametrize("mode", ["modern", "faithful"])
def test_candidates_rank_the_shift_averaged_map_in_modern_mode_only(mode):
    torch.manual_seed(0)
    net = DeepEMNet(design(48, maps=(4, 8, 8)), mode).eval()
    image = np.random.default_rng(0).normal(size=(150, 120)).astype(np.float32)
    xy, s = candidates(net, image, min_distance_px=16, edge_px=0, floor=0.0)

    def peaks(scores):  # inside the image, as candidates keeps them
        p, v = find_peaks(scores, 16, floor=0.0)
        inside = (p >= 0).all(1) & (p <= np.array(image.shape[::-1]) - 1).all(1)
        return p[inside], v[inside]

    raw_map = score_map(net, image)
    expected, raw = peaks(smoothed(raw_map, mode)), peaks(raw_map)
    assert len(s) > 5 and np.array_equal(xy, expected[0]) and np.array_equal(s, expected[1])
    assert (mode == "faithful") == (len(s) == len(raw[1]) and np.array_equal(s, raw[1]))
