"""RELION coordinates: STAR files of 3.0 (one plain loop) and 3.1+ (``data_optics`` + ``data_particles``).

Reading keeps rlnMicrographName (which routes rows of a merged file to their micrographs) and,
when ``data_optics`` states it, rlnMicrographPixelSize: the pixel size of the micrographs the
coordinates were picked on, so they can be rescaled to other micrographs. rlnImagePixelSize
is *not* used: it is the pixel size of the extracted particle images, and RELION keeps
rlnCoordinateX/Y in micrograph pixels when it rescales particles on extraction.

A particle STAR from 2D classification or refinement also has rlnOriginXAngst/YAngst: the shift,
in Å, that centres each particle image, so the particle's centre is at rlnCoordinateX/Y minus the
shift in micrograph pixels (what RELION's Extract with "Re-center refined coordinates" computes).
Nonzero shifts are kept for :func:`deepem.io.coords.formats.micrograph_centres`. RELION 3.0's
rlnOriginX/Y are in pixels of the particle images, whose binning the file does not state, so
nonzero ones are an error naming the fix (their binning could be inferred from
rlnDetectorPixelSize and rlnMagnification, which not every 3.0 file carries).

Writing: one merged STAR (rlnMicrographName, rlnCoordinateX/Y, rlnAutopickFigureOfMerit), or
RELION 4/5's layout for Extract: ``DIR/coordinates/NAME_autopick.star`` per micrograph plus
the index ``DIR/autopick.star`` (``data_coordinate_files``: rlnMicrographName,
rlnMicrographCoordinates).
"""

import contextlib
import functools
import os
from pathlib import Path

import numpy as np
import pandas as pd

from deepem.errors import DeepEMError
from deepem.io.atomic import atomic_directory
from deepem.io.coords.columns import (
    COORDINATE_FILE, MIC, OPTICS_GROUP, ORIGIN_PX, ORIGIN_X, ORIGIN_Y, PIXEL_SIZE, SCORE, X, Y,
)
from deepem.io.coords.star import coordinate_loop, formats_for, loop_header, read_blocks, star_writer, write_rows

INDEX, COORDINATES = "autopick.star", "coordinates"


def _pixel_sizes(table, optics, path):
    """rlnMicrographPixelSize of each row from ``data_optics``, or None when it is not stated."""
    if not isinstance(optics, pd.DataFrame) or PIXEL_SIZE not in optics.columns:
        return None
    stated = pd.to_numeric(optics[PIXEL_SIZE], errors="coerce").to_numpy(float)
    if not (np.isfinite(stated) & (stated > 0)).all():
        raise DeepEMError(f"{path}: rlnMicrographPixelSize must be a positive number of Å per pixel in data_optics")
    if OPTICS_GROUP in table.columns and OPTICS_GROUP in optics.columns:
        sizes = table[OPTICS_GROUP].map(optics.set_index(OPTICS_GROUP)[PIXEL_SIZE])
        if sizes.isna().any():
            group = table[OPTICS_GROUP][sizes.isna()].iloc[0]
            raise DeepEMError(f"{path}: rows of optics group {group}, which data_optics does not list")
        return sizes
    if optics[PIXEL_SIZE].nunique() == 1:
        return optics[PIXEL_SIZE].iloc[0]
    raise DeepEMError(
        f"{path}: data_optics lists several rlnMicrographPixelSize values and the particles have no "
        "rlnOpticsGroup, so which applies to a particle cannot be told; add rlnOpticsGroup"
    )


def _shifts(loop, path):
    """The particles' nonzero rlnOriginXAngst/YAngst (a DataFrame), or None when they have none."""
    if ORIGIN_X not in loop.columns and ORIGIN_Y not in loop.columns:
        old = [c for c in ORIGIN_PX if c in loop.columns]
        if old and loop[old].apply(pd.to_numeric, errors="coerce").fillna(1).ne(0).to_numpy().any():
            raise DeepEMError(
                f"{path}: particle shifts in pixels of the particle images (rlnOriginX/Y, RELION 3.0), whose binning "
                "the file does not state; upgrade it with relion_convert_star (RELION 3.1+), which gives them in Å"
            )
        return None
    if ORIGIN_X not in loop.columns or ORIGIN_Y not in loop.columns:
        raise DeepEMError(f"{path}: rlnOriginXAngst without rlnOriginYAngst or the reverse; give both shifts or neither")
    shifts = loop[[ORIGIN_X, ORIGIN_Y]].apply(pd.to_numeric, errors="coerce")
    if not np.isfinite(shifts.to_numpy(float)).all():
        raise DeepEMError(f"{path}: non-numeric or infinite rlnOriginXAngst/YAngst")
    return shifts if shifts.to_numpy().any() else None


def read(path):
    blocks = read_blocks(path)
    loop = coordinate_loop(blocks, path)
    table = loop[[c for c in (MIC, X, Y, SCORE) if c in loop.columns]].copy()
    sizes = _pixel_sizes(loop, blocks.get("optics"), path)
    if sizes is not None:
        table[PIXEL_SIZE] = sizes
    shifts = _shifts(loop, path)
    if shifts is not None:
        table[[ORIGIN_X, ORIGIN_Y]] = shifts
    return table


def _coordinate_columns(options):
    return [X, Y] + ([SCORE] if options.scored else [])


@contextlib.contextmanager
def merged_writer(path, options):
    """One STAR with every micrograph's picks, rlnMicrographName first."""
    with star_writer(path, [MIC] + _coordinate_columns(options)) as append:
        yield lambda name, source, table: append(table, **{MIC: source})


def project_path(path, project):
    """``path`` relative to the RELION project directory when one is given and ``path`` is absolute.

    The project is found among ``path``'s own folders by identity, not by spelling, so a project
    reached through a symbolic link still gives ``MotionCorr/...``, not ``../real/...``; the part
    below it keeps its names (RELION matches micrographs by name, and Movies are often links).
    """
    path = Path(path)
    if project is None or not path.is_absolute():
        return str(path)
    root = _inside(str(path.parent), os.path.abspath(project))
    return str(path.relative_to(root)) if root else os.path.relpath(path, project)


@functools.lru_cache(maxsize=64)
def _inside(folder, project):
    """The folder among ``folder`` and its parents that is the directory ``project``, or None."""
    for candidate in (Path(folder), *Path(folder).parents):
        with contextlib.suppress(OSError):
            if os.path.samefile(candidate, project):
                return candidate
    return None


@contextlib.contextmanager
def directory_writer(directory, options):
    """RELION 4/5 Extract input: ``coordinates/NAME_autopick.star`` per micrograph and ``autopick.star``.

    Without ``options.relion_project`` the index names coordinate files by absolute path and
    micrographs as given; with it, both relative to that directory, as RELION's own jobs write them.
    """
    directory = Path(os.path.abspath(directory))  # as spelled: a link's name, not its target's
    columns = _coordinate_columns(options)
    formats = formats_for(columns)
    project = options.relion_project
    with atomic_directory(directory / COORDINATES) as tmp, star_writer(
        directory / INDEX, [MIC, COORDINATE_FILE], block="coordinate_files"
    ) as append:

        def add(name, source, table):
            filename = f"{name}_autopick.star"
            with open(tmp / filename, "w") as fh:
                fh.write(loop_header(columns))
                write_rows(fh, [table[c] for c in columns], formats, star=True)
            coordinates = project_path(directory / COORDINATES / filename, project)
            append(None, **{MIC: project_path(source, project), COORDINATE_FILE: coordinates})

        yield add
