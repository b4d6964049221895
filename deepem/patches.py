"""Training patches: positives at labels, negatives from labels and sampled background.

A patch is the ``box x box`` window of the working image whose top-left corner is the
(rounded) centre minus ``box // 2``; windows reaching past the edge read the reflected image,
the same padding :mod:`deepem.picking` scores with.
"""

import numpy as np
from scipy.spatial import cKDTree

from deepem.errors import DeepEMError


def extract(image, centres, box):
    """Patches ``(n, box, box)`` centred on working-pixel ``centres`` ``(n, 2)`` of ``(x, y)``."""
    half = box // 2
    padded = np.pad(image, box, mode="reflect")
    ij = np.rint(np.asarray(centres, float).reshape(-1, 2)[:, ::-1]).astype(int) + box - half
    out = np.empty((len(ij), box, box), np.float32)
    for n, (i, j) in enumerate(ij):
        out[n] = padded[i : i + box, j : j + box]
    return out


def sample_background(shape, avoid, count, min_distance, rng, margin=0):
    """Up to ``count`` uniform random centres at least ``min_distance`` from every point of ``avoid``."""
    h, w = shape
    tree = cKDTree(avoid) if len(avoid) else None
    found = []
    for _ in range(20):
        need = count - len(found)
        if need <= 0:
            break
        cand = np.stack(
            [rng.uniform(margin, w - 1 - margin, 4 * need), rng.uniform(margin, h - 1 - margin, 4 * need)], axis=1
        )
        if tree is not None:
            cand = cand[tree.query(cand)[0] >= min_distance]
        found.extend(cand[:need])
    return np.asarray(found, float).reshape(-1, 2)


def check_inside(xy, shape, source):
    """Error naming ``source`` when a coordinate lies outside an image of ``shape`` (original pixels)."""
    h, w = shape
    bad = (xy[:, 0] < 0) | (xy[:, 0] > w - 1) | (xy[:, 1] < 0) | (xy[:, 1] > h - 1)
    if bad.any():
        x, y = xy[np.argmax(bad)]
        raise DeepEMError(
            f"{source}: {int(bad.sum())} coordinates outside the {w} x {h} micrograph, e.g. ({x:.1f}, {y:.1f}); "
            "check the file belongs to this micrograph and uses pixel (not Angstrom) centres, or set flip_y"
        )
