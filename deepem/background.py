"""Local background level: drops picks on carbon or thick ice, darker than labelled particles' surroundings.

Users keep particles in thin ice and discard those on carbon film or under thick ice, where the
background is darker. The level map is the median, over a disc of radius 0.75 particle diameter,
of the working image flattened by a robust gradient fit (which follows the main background level,
not carbon or ice) and divided by its robust spread (1.4826 x MAD), minus the micrograph's median
level. It is stored coarse, ``CELLS_PER_DIAMETER`` cells per diameter: cell ``(i, j)`` is the mean
of the ``c x c`` working pixels from ``(x, y) = (c * j, c * i)``, ``c = cell_size(particle_px)``,
so its centre is at ``(c * j + (c - 1) / 2, c * i + (c - 1) / 2)``.

Training sets the floor from the labelled particles' levels (:func:`floor`): far below the
darkest of them, so only surroundings unlike any labelled particle's are dropped (bench/RESULTS.md,
finding 17).
"""

import mrcfile
import numpy as np
from scipy.ndimage import median_filter

from deepem.errors import DeepEMError
from deepem.io import manifest

CELLS_PER_DIAMETER = 4
DISC = 0.75  # the median's disc radius, in particle diameters
MARGIN = 2.5  # the floor sits this many label spreads below the labels' 0.5th percentile
MIN_LABELS = 20  # fewer labelled particles set no floor: their spread says too little


def cell_size(particle_px):
    """Working pixels per level-map cell."""
    return max(1, int(round(particle_px / CELLS_PER_DIAMETER)))


def level_map(flat, particle_px):
    """Coarse local background levels of a flattened, robust-normalised working image (see the module doc)."""
    c = cell_size(particle_px)
    h, w = flat.shape[0] // c * c, flat.shape[1] // c * c
    coarse = flat[:h, :w].reshape(h // c, c, w // c, c).mean(axis=(1, 3), dtype=np.float32)  # cell means
    r = DISC * particle_px / c
    yy, xx = np.mgrid[-int(r) : int(r) + 1, -int(r) : int(r) + 1]
    level = median_filter(coarse, footprint=xx * xx + yy * yy <= r * r, mode="reflect")
    return (level - np.median(level)).astype(np.float32)


def levels_at(level, xy, particle_px):
    """The level map's values at working-pixel positions ``xy`` (n, 2): the cells they lie in
    (the last row or column for pixels past the whole cells)."""
    c = cell_size(particle_px)
    ij = np.floor(np.asarray(xy, float).reshape(-1, 2) / c).astype(int)
    cols = np.clip(ij[:, 0], 0, level.shape[1] - 1)
    rows = np.clip(ij[:, 1], 0, level.shape[0] - 1)
    return level[rows, cols]


def floor(levels):
    """The lowest background level kept: ``MARGIN`` spreads (99.5th minus 0.5th percentile of the
    labelled particles' levels) below their 0.5th percentile; None (keep every pick) with fewer
    than ``MIN_LABELS`` labels."""
    levels = np.asarray(levels, float)
    if len(levels) < MIN_LABELS:
        return None
    lo, hi = np.percentile(levels, [0.5, 99.5])
    return float(lo - MARGIN * (hi - lo))


def read_level_map(row):
    """The level map :mod:`deepem.commands.preprocess` wrote for a manifest row."""
    path = manifest.level_path(row)
    if not path.is_file():
        raise DeepEMError(
            f"{path}: background level map missing (preprocessed by deepem before 0.6); rerun the "
            "preprocess step, or pass --background-floor off"
        )
    return mrcfile.read(path)


def label_levels(maps, labelled, particle_px):
    """The background levels of the labelled particles (``{name: working-pixel xy}``), pooled, from
    their micrographs' level maps (``{name: map}``)."""
    found = [levels_at(maps[n], xy, particle_px) for n, xy in sorted(labelled.items())]
    return np.concatenate(found) if found else np.zeros(0)
