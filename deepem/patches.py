"""Training patches: positives at labels, negatives from labels and sampled background.

A patch is the ``box x box`` window of the working image whose middle lies nearest the centre
(``box_middle`` from its pixel ``box // 2``): at a pick's position, the very box picking scored
(:mod:`deepem.picking`). Windows reaching past the edge read the reflected image, the same
padding picking scores with.
"""

import numpy as np
from scipy.ndimage import uniform_filter
from scipy.spatial import cKDTree

from deepem.errors import DeepEMError


def box_middle(box):
    """Where a box's middle lies from its pixel ``box // 2``: -0.5 for an even box, 0 for an odd one."""
    return (box - 1) / 2 - box // 2


def extract(image, centres, box):
    """Patches ``(n, box, box)`` centred on working-pixel ``centres`` ``(n, 2)`` of ``(x, y)``."""
    half = box // 2
    padded = np.pad(image, box, mode="reflect")
    # the pixel box // 2 nearest centre - box_middle, halves rounded up (np.rint rounds them to even)
    middle = np.floor(np.asarray(centres, float).reshape(-1, 2)[:, ::-1] - box_middle(box) + 0.5)
    ij = middle.astype(int) + box - half
    out = np.empty((len(ij), box, box), np.float32)
    for n, (i, j) in enumerate(ij):
        out[n] = padded[i : i + box, j : j + box]
    return out


def local_statistics(image, size):
    """Each pixel's local mean and local standard deviation over a ``size`` x ``size`` window."""
    mean = uniform_filter(image, size, mode="reflect")
    std = np.sqrt(np.maximum(uniform_filter(image * image, size, mode="reflect") - mean * mean, 0))
    return mean, std


def unusualness(image, size):
    """How far a pixel's surroundings stray from the micrograph's typical ones.

    The robust z-scores (median, MAD of the micrograph itself) of the local mean and local std,
    each capped at 4, summed: ice (dark), carbon (textured) and aggregates (dense, high
    variance) stand out without any dataset constant.
    """

    def z(a):
        med = np.median(a)
        return np.minimum(np.abs(a - med) / (1.4826 * np.median(np.abs(a - med)) + 1e-6), 4.0)

    mean, std = local_statistics(image, size)
    return z(mean) + z(std)


def sample_background(image, avoid, count, min_distance, rng, unusual_fraction=0.5):
    """Up to ``count`` centres at least ``min_distance`` from every point of ``avoid``.

    ``unusual_fraction`` of them are drawn with probability proportional to the squared
    :func:`unusualness` (hard negatives: ice, carbon, aggregates), the rest uniformly.
    """
    h, w = image.shape
    weights = unusualness(image, max(3, int(min_distance * 2))) ** 2
    weights = (weights / weights.sum()).ravel()
    tree = cKDTree(avoid) if len(avoid) else None
    found = []
    n_unusual = int(round(unusual_fraction * count))
    for target, weighted in ((n_unusual, True), (count, False)):
        for _ in range(20):
            need = target - len(found)
            if need <= 0:
                break
            if weighted:
                flat = rng.choice(weights.size, 4 * need, p=weights)
                cand = np.stack([flat % w, flat // w], axis=1).astype(float) + rng.uniform(-0.5, 0.5, (4 * need, 2))
                cand = np.clip(cand, 0, [w - 1, h - 1])
            else:
                cand = np.stack([rng.uniform(0, w - 1, 4 * need), rng.uniform(0, h - 1, 4 * need)], axis=1)
            if tree is not None:
                cand = cand[tree.query(cand)[0] >= min_distance]
            found.extend(cand[:need])
    return np.asarray(found, float).reshape(-1, 2)


def near(xy, others, radius):
    """Which of the centres ``xy`` ``(n, 2)`` lie within ``radius`` of any of ``others``."""
    if not len(xy) or not len(others):
        return np.zeros(len(xy), bool)
    return cKDTree(others).query(xy)[0] <= radius


def holdout_stripe(width, fraction, rng):
    """``(x0, x1)``: a full-height stripe, ``fraction`` of the image wide, at a random place."""
    wide = int(round(fraction * width))
    x0 = int(rng.integers(0, width - wide + 1))
    return x0, x0 + wide


def in_stripe(xy, stripe, margin=0.0):
    """Which working-pixel centres ``(n, 2)`` lie in ``[x0 - margin, x1 + margin)``."""
    x = np.asarray(xy, float).reshape(-1, 2)[:, 0]
    return (x >= stripe[0] - margin) & (x < stripe[1] + margin)


def typical_count(centres):
    """Mean number of particles over the micrographs of ``{name: (n, 2) centres}`` that have any (0 if
    none): what a micrograph whose label file is empty, no particle there, is given background and
    hard negatives for."""
    return float(np.mean([len(xy) for xy in centres.values() if len(xy)] or [0]))


def check_inside(xy, shape, source, name):
    """Error naming ``source`` and micrograph ``name`` when a coordinate lies outside an image of
    ``shape`` (original pixels).

    Pixel ``i`` is centred on ``i``, so the image spans ``-0.5`` to ``w - 0.5`` (and ``h - 0.5``).
    """
    h, w = shape
    bad = (xy[:, 0] < -0.5) | (xy[:, 0] > w - 0.5) | (xy[:, 1] < -0.5) | (xy[:, 1] > h - 0.5)
    if bad.any():
        x, y = xy[np.argmax(bad)]
        raise DeepEMError(
            f"{source}: {int(bad.sum())} coordinates outside the {w} x {h} micrograph {name}, e.g. ({x:.1f}, {y:.1f}); "
            "check the file belongs to this micrograph and uses pixel (not Angstrom) centres counted from the top row "
            "(flip_y or 'deepem convert --flip-y' flips a file counted from the bottom)"
        )
