"""Local background: drops picks on carbon or thick ice, whose surroundings are unlike labelled particles'.

Users keep particles in thin ice and discard those on carbon film or under thick ice, where the
background is darker and, on carbon, textured. Two maps describe each point's surroundings, both
over a disc of radius 0.75 particle diameter of the working image flattened by a robust gradient
fit (which follows the main background level, not carbon or ice) and divided by its robust spread
(1.4826 x MAD), averaged into cells:

- the **level**: the median of the cells in the disc, minus the micrograph's median level;
- the **texture**: the interquartile range of the cells in the disc.

They are stored coarse, as one two-section map (level, texture), ``CELLS_PER_DIAMETER`` cells per
diameter: cell ``(i, j)`` is the mean of the ``c x c`` working pixels from ``(x, y) = (c * j, c * i)``,
``c = cell_size(particle_px)``, so its centre is at ``(c * j + (c - 1) / 2, c * i + (c - 1) / 2)``.

Training sets the bounds from the labelled particles' surroundings (:func:`bounds`): a floor under
their levels and a ceiling over their textures, so only surroundings unlike any labelled particle's
are dropped (bench/RESULTS.md, findings 17 and 22).
"""

import mrcfile
import numpy as np

from deepem.errors import DeepEMError
from deepem.io import manifest

CELLS_PER_DIAMETER = 4
DISC = 0.75  # the disc radius, in particle diameters
MARGIN = 1.0  # the bounds sit this many label spreads (99.5th minus 0.5th percentile) beyond the labels' range
MIN_LABELS = 20  # fewer labelled particles set no bounds: their spread says too little


def cell_size(particle_px):
    """Working pixels per map cell."""
    return max(1, int(round(particle_px / CELLS_PER_DIAMETER)))


def background_maps(flat, particle_px):
    """Coarse local background level and texture (2, rows, cols) of a flattened, robust-normalised
    working image (see the module doc)."""
    c = cell_size(particle_px)
    h, w = flat.shape[0] // c * c, flat.shape[1] // c * c
    coarse = flat[:h, :w].reshape(h // c, c, w // c, c).mean(axis=(1, 3), dtype=np.float32)  # cell means
    r = DISC * particle_px / c
    yy, xx = np.mgrid[-int(r) : int(r) + 1, -int(r) : int(r) + 1]
    level, upper, lower = _disc_ranks(coarse, xx * xx + yy * yy <= r * r, (0.5, 0.75, 0.25))
    return np.stack([level - np.median(level), upper - lower]).astype(np.float32)


def _disc_ranks(image, disc, fractions):
    """Rank filters of ``image`` over the footprint ``disc``, one per fraction, as
    ``scipy.ndimage.percentile_filter(image, 100 * f, footprint=disc, mode="reflect")`` (element
    ``int(n * f)`` of the ``n`` sorted values) but from one sort: 13 times faster for three."""
    k = disc.shape[0] // 2
    padded = np.pad(image, k, mode="symmetric")  # scipy's "reflect"
    h, w = image.shape
    values = np.stack([padded[dy : dy + h, dx : dx + w] for dy, dx in zip(*np.nonzero(disc))])
    values.sort(axis=0)
    return [values[int(len(values) * f)] for f in fractions]


def values_at(maps, xy, particle_px):
    """The values of ``maps`` (the last two axes are cells) at working-pixel positions ``xy`` (n, 2):
    the cells they lie in (the last row or column for pixels past the whole cells); shape
    ``maps.shape[:-2] + (n,)``. Working pixel ``x`` spans ``x - 0.5`` to ``x + 0.5``."""
    c = cell_size(particle_px)
    ij = np.floor((np.asarray(xy, float).reshape(-1, 2) + 0.5) / c).astype(int)
    cols = np.clip(ij[:, 0], 0, maps.shape[-1] - 1)
    rows = np.clip(ij[:, 1], 0, maps.shape[-2] - 1)
    return maps[..., rows, cols]


def bounds(values):
    """``(floor, ceiling)`` from the labelled particles' (level, texture) ``values`` (2, n): the
    lowest level and the highest texture kept, each ``MARGIN`` spreads (99.5th minus 0.5th
    percentile) beyond the labels' 0.5th percentile of level and 99.5th of texture; None (keep
    every pick) with fewer than ``MIN_LABELS`` labels."""
    values = np.asarray(values, float).reshape(2, -1)
    if values.shape[1] < MIN_LABELS:
        return None
    (lo, hi), (tlo, thi) = spans(values)
    return float(lo - MARGIN * (hi - lo)), float(thi + MARGIN * (thi - tlo))


def spans(values):
    """The 0.5th and 99.5th percentiles of level and of texture in ``values`` (2, n): the labels'
    range that :func:`bounds` widens, ``((lo, hi), (texture_lo, texture_hi))``."""
    return np.percentile(values, [0.5, 99.5], axis=1).T


def kept(values, floor, ceiling=None):
    """Which (level, texture) ``values`` (2, n) lie within the bounds (a ceiling of None: any texture)."""
    keep = values[0] >= floor
    return keep if ceiling is None else keep & (values[1] <= ceiling)


def read_maps(row):
    """The background maps :mod:`deepem.commands.preprocess` wrote for a manifest row, (2, rows, cols)."""
    path = manifest.level_path(row)
    if not path.is_file():
        raise DeepEMError(
            f"{path}: background map missing (preprocessed by deepem before 0.6); rerun the "
            "preprocess step, or pass --background-floor off"
        )
    maps = mrcfile.read(path)
    if maps.ndim != 3 or maps.shape[0] != 2:
        raise DeepEMError(
            f"{path}: background map without its texture section (preprocessed by deepem before 0.8); "
            "rerun the preprocess step, or pass --background-floor off"
        )
    return maps


def label_values(maps, labelled, particle_px):
    """The (level, texture) values (2, n) of the labelled particles (``{name: working-pixel xy}``),
    pooled, from their micrographs' maps (``{name: maps}``)."""
    found = [values_at(maps[n], xy, particle_px) for n, xy in sorted(labelled.items())]
    return np.concatenate(found, axis=1) if found else np.zeros((2, 0))
