import numpy as np

from deepem.model import STRIDE
from deepem.picking import find_peaks


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
