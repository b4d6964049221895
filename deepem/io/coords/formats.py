"""Every coordinate format deepem reads and writes, and the conversions between their frames.

Readers return a picks table (see :mod:`deepem.io.coords.columns`) of centres in the frame of
the file; :func:`micrograph_centres` takes them to a micrograph's frame (moving refined RELION
particles by their shifts, rescaling RELION coordinates picked at another pixel size, flipping y
for files counted from the bottom row).
Writers are context managers ``writer(output, options)`` yielding ``add(name, source, table)``,
called once per micrograph, so any number of micrographs streams through in bounded memory.
"""

import contextlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from deepem.errors import DeepEMError
from deepem.io.coords import cryolo, cryosparc, csv_table, eman, relion, topaz
from deepem.io.coords.columns import MIC, ORIGIN_X, ORIGIN_Y, PIXEL_SIZE, SCORE, X, Y
from deepem.io.coords.detect import detect, sniff

READERS = {"relion": relion.read, "cbox": cryolo.read, "box": eman.read, "topaz": topaz.read, "csv": csv_table.read}
WRITERS = {
    "relion": relion.merged_writer,
    "relion-dir": relion.directory_writer,
    "cryosparc": cryosparc.writer,
    "box": eman.writer,
    "topaz": topaz.writer,
    "csv": csv_table.writer,
}
NUMERIC = (X, Y, SCORE, PIXEL_SIZE)
CORNER_FORMATS = {"cbox", "box"}  # files of box corners: their centres are ``corner + size / 2``


@dataclass
class WriteOptions:
    scored: bool = True  # write a score column
    box_size: float | None = None  # px, for EMAN .box
    relion_project: str | None = None  # write the RELION index relative to this directory


def read_picks(path, fmt=None):
    """The picks table of a coordinate file; ``fmt`` forces a format, else it is detected from the content.

    ``table.attrs["corners"]`` says whether the file stores box corners (see :func:`micrograph_centres`).
    """
    if fmt is None:
        fmt = detect(path)
    elif sniff(path) is None:
        fmt = None
    if fmt is None:  # a file with no content: no particles
        return pd.DataFrame({X: [], Y: []})
    table = READERS[fmt](path)
    for column in set(NUMERIC) & set(table.columns):
        table[column] = pd.to_numeric(table[column], errors="coerce")
    if not np.isfinite(table[[X, Y]].to_numpy(float)).all():
        raise DeepEMError(f"{path}: non-numeric or infinite coordinates")
    if MIC in table.columns:
        blank = table[MIC].isna().to_numpy() | (table[MIC].astype(str).str.strip() == "").to_numpy()
        if blank.any():
            raise DeepEMError(
                f"{path}: rows without a micrograph name: {int(blank.sum())} (the first is row {int(np.argmax(blank)) + 1}); "
                "fill them in"
            )
    table = table.reset_index(drop=True)
    table.attrs["corners"] = fmt in CORNER_FORMATS
    return table


def read_coordinates(path):
    """``(n, 2)`` centres ``(x, y)`` of a coordinate file of any format, in the file's frame; refined
    particles, whose centres need a pixel size, are an error (read them with :func:`micrograph_centres`)."""
    table = read_picks(path)
    if ORIGIN_X in table.columns:
        raise DeepEMError(f"{path}: particles with shifts (rlnOriginXAngst/YAngst); give their micrographs to place them")
    return table[[X, Y]].to_numpy(float).reshape(-1, 2)


def micrograph_centres(table, path, pixel_size=None, height=None, flip_y=False, keep_frame=False):
    """``(n, 2)`` centres, from the picks table of file ``path``, in the frame of a micrograph of
    ``pixel_size`` Å/px and ``height`` rows.

    Refined RELION particles are moved by their shifts (rlnOriginXAngst/YAngst, in Å: the centre
    is the coordinate minus the shift, in pixels of the micrograph they were picked on, or of
    ``pixel_size`` when the file does not state that). Coordinates that state the pixel size they
    were picked at (RELION's rlnMicrographPixelSize) are rescaled to ``pixel_size``, which they
    then need unless ``keep_frame`` (no micrograph to place them on: they stay as picked).

    With ``flip_y`` the file counts rows from the bottom one. A centre ``y`` is then row
    ``height - 1 - y`` (pixel ``i`` is centred on ``i``); a box corner ``y`` becomes
    ``height - y - size``, so a centre read as ``corner + size / 2`` becomes ``height - y``, which
    is exactly where DeepEM's own code cuts a flipped box file's windows.
    """
    xy = table[[X, Y]].to_numpy(float, copy=True).reshape(-1, 2)
    if pixel_size is not None and not (np.isfinite(pixel_size) and pixel_size > 0):
        pixel_size = None  # unknown: a PNG's, or an MRC header's 0
    if ORIGIN_X in table.columns and len(table):
        picked_at = table[PIXEL_SIZE].to_numpy(float) if PIXEL_SIZE in table.columns else pixel_size
        if picked_at is None:
            raise DeepEMError(
                f"{path}: the particles' shifts (rlnOriginXAngst/YAngst) are in Å and the file does not state its "
                "micrographs' pixel size; give it (--pixel-size, or micrographs with it in their headers)"
            )
        xy -= table[[ORIGIN_X, ORIGIN_Y]].to_numpy(float) / np.reshape(picked_at, (-1, 1))
    if PIXEL_SIZE in table.columns and len(table):
        stated = table[PIXEL_SIZE].to_numpy(float)
        if pixel_size is None and not keep_frame:
            raise DeepEMError(
                f"{path}: its coordinates were picked at {stated[0]:g} A/px (rlnMicrographPixelSize) and the "
                "micrographs' pixel size is unknown, so they cannot be rescaled to them; give it (--pixel-size, or "
                "micrographs with it in their headers)"
            )
        if pixel_size is not None:
            xy = xy * (stated / pixel_size)[:, None]
    if flip_y:
        if height is None:
            raise DeepEMError(f"{path}: flip_y needs the micrograph height; give the micrographs or --height")
        xy[:, 1] = height - xy[:, 1] - (0 if table.attrs.get("corners") else 1)
    return xy


def box_size(diameter, pixel_size, scale):
    """An even box of ``scale`` particle diameters, in px."""
    return 2 * max(1, int(round(scale * diameter / pixel_size / 2)))


@contextlib.contextmanager
def open_writers(targets, options):
    """``add(name, source, table)`` that streams into every ``{format: output}`` of ``targets``."""
    with contextlib.ExitStack() as stack:
        adds = [stack.enter_context(WRITERS[fmt](output, options)) for fmt, output in targets.items()]

        def add(name, source, table):
            for one in adds:
                one(name, source, table)

        yield add
