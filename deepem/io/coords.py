"""Coordinate files.

**The coordinate convention, once.** Everywhere in deepem a coordinate is the *centre* of a
particle in pixels of the micrograph it names: ``x`` is the column index and ``y`` the row
index of the array as stored (MRC row 0 / the top row of an image), starting at 0. That is
RELION's ``rlnCoordinateX``/``rlnCoordinateY`` frame, with no y-flip. Formats that store
corners (EMAN ``.box``) or a flipped frame are converted on reading and writing.
"""

import contextlib
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from deepem.errors import DeepEMError
from deepem.io.atomic import atomic_path

X, Y, SCORE, MIC = "rlnCoordinateX", "rlnCoordinateY", "rlnAutopickFigureOfMerit", "rlnMicrographName"


def read_star_table(path):
    """Read the particle/coordinate loop of a STAR file (RELION 3.0 plain or 3.1+ with optics)."""
    try:
        data = starfile.read(path, always_dict=True)
    except Exception as exc:  # starfile raises many types on malformed input
        raise DeepEMError(f"{path}: not a readable STAR file ({exc})") from None
    for block in data.values():
        if isinstance(block, pd.DataFrame) and X in block.columns and Y in block.columns:
            return block
    if any(isinstance(b, pd.DataFrame) and b.empty for b in data.values()) or not data:
        return pd.DataFrame({X: [], Y: []})
    raise DeepEMError(f"{path}: no loop with rlnCoordinateX and rlnCoordinateY")


def read_by_micrograph(path):
    """``{micrograph name: (xy (n, 2), scores (n,))}`` from a merged picks STAR (rlnMicrographName)."""
    table = read_star_table(path)
    names = table[MIC].map(lambda p: Path(p).stem) if len(table) else table[MIC]
    return {n: (g[[X, Y]].to_numpy(float), g[SCORE].to_numpy(float)) for n, g in table.groupby(names)}


def read_coordinates(path):
    """Return an ``(n, 2)`` float array of particle centres ``(x, y)`` from a coordinate file."""
    path = Path(path)
    if not path.is_file():
        raise DeepEMError(f"{path}: coordinate file not found")
    suffix = path.suffix.lower()
    if suffix == ".star":
        table = read_star_table(path)
        xy = table[[X, Y]].to_numpy(dtype=float)
    elif suffix == ".box":
        rows = np.loadtxt(path, ndmin=2)
        xy = rows[:, :2] + rows[:, 2:4] / 2.0 if rows.size else np.zeros((0, 2))
    else:
        raise DeepEMError(f"{path}: unknown coordinate format '{suffix}'; use RELION .star or EMAN .box")
    if not np.isfinite(xy).all():
        raise DeepEMError(f"{path}: non-numeric or infinite coordinates")
    return xy.reshape(-1, 2)


def write_star(path, table, float_format="%.2f"):
    """Write a one-loop STAR file atomically and reproducibly (no timestamp line)."""
    with atomic_path(path) as tmp:
        starfile.write(table, tmp, float_format=float_format, overwrite=True)
        text = Path(tmp).read_text()
        Path(tmp).write_text("".join(line for line in text.splitlines(True) if not line.startswith("# Created by")))


@contextlib.contextmanager
def star_writer(path, columns, float_format="%.3f"):
    """Stream one STAR loop to ``path`` (atomically): yields ``append(table)`` for row chunks.

    Memory stays at one chunk however many rows are written (gathering 10 million picks).
    """
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write("\ndata_\n\nloop_\n" + "".join(f"_{c} #{i}\n" for i, c in enumerate(columns, 1)))
        yield lambda table: table[columns].to_csv(fh, sep="\t", header=False, index=False, float_format=float_format)
        fh.write("\n")


def picks_table(xy, scores=None):
    """A RELION coordinate table from centres ``(n, 2)`` and optional scores."""
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    table = pd.DataFrame({X: xy[:, 0], Y: xy[:, 1]})
    if scores is not None:
        table[SCORE] = np.asarray(scores, dtype=float)
    return table
