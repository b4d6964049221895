"""EMAN ``.box`` files: one particle per line, ``x y width height`` of the box's lower-left corner.

EMAN2 displays MRC row 0 at the bottom, so its "lower-left" corner is the corner with the
smallest row index: the centre is ``corner + size / 2`` with no flip (see deepem.io.coords;
files written in a flipped frame, like DeepEM's own, need flip_y). A 5th column is read as a
score (crYOLO, REPIC). deepem writes one ``NAME.box`` per micrograph, four columns.
"""

import contextlib

import numpy as np
import pandas as pd

from deepem.errors import DeepEMError
from deepem.io.atomic import atomic_directory
from deepem.io.coords.columns import SCORE, X, Y
from deepem.io.coords.star import write_rows


def read(path):
    try:
        rows = np.loadtxt(path, ndmin=2)
    except ValueError as exc:
        raise DeepEMError(f"{path}: not a readable EMAN .box file ({exc})") from None
    if rows.shape[1] < 4:
        raise DeepEMError(f"{path}: EMAN .box rows need 4 columns (corner x, corner y, width, height)")
    table = pd.DataFrame({X: rows[:, 0] + rows[:, 2] / 2, Y: rows[:, 1] + rows[:, 3] / 2})
    if rows.shape[1] >= 5:
        table[SCORE] = rows[:, 4]
    return table


@contextlib.contextmanager
def writer(directory, options):
    """``directory/NAME.box`` per micrograph, boxes of ``options.box_size`` px around the centres."""
    if not options.box_size:
        raise DeepEMError("EMAN .box output needs a box size: give --box-size, or the particle diameter and pixel size")
    size, half = int(options.box_size), options.box_size / 2
    with atomic_directory(directory) as tmp:

        def add(name, source, table):
            with open(tmp / f"{name}.box", "w") as fh:
                write_rows(fh, [table[X].to_numpy(float) - half, table[Y].to_numpy(float) - half, str(size), str(size)])

        yield add
