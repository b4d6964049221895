"""STAR files: read the coordinate loop, write one loop atomically or streamed."""

import contextlib
import csv
import itertools
import re
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from deepem.errors import DeepEMError
from deepem.io.atomic import atomic_path
from deepem.io.coords.columns import COORDINATE_FILE, MIC, ORIGIN_PX, ORIGIN_X, ORIGIN_Y, PIXEL_SIZE, SCORE, X, Y
from deepem.io.micrograph import name_of


NAMES = [MIC, COORDINATE_FILE, "rlnOpticsGroupName"]  # kept as written: micrograph "01" is not 1


def read_blocks(path):
    """``{block name: DataFrame or dict}`` of a STAR file; a one-line error when it is not one."""
    if not Path(path).is_file():
        raise DeepEMError(f"{path}: STAR file not found; check the path")
    try:
        blocks = starfile.read(path, always_dict=True, parse_as_string=NAMES)
    except Exception as exc:  # starfile raises many types on malformed input
        raise DeepEMError(f"{path}: not a readable STAR file ({exc})") from None
    if not blocks and Path(path).read_text(errors="replace").strip():  # starfile skips what is not STAR
        raise DeepEMError(f"{path}: no data_ block: not a STAR file")
    return blocks


def coordinate_loop(blocks, path):
    """The loop with rlnCoordinateX and rlnCoordinateY (empty when the file has only empty loops)."""
    for block in blocks.values():
        if isinstance(block, pd.DataFrame) and X in block.columns and Y in block.columns:
            return block
    for block in blocks.values():
        if isinstance(block, pd.DataFrame) and COORDINATE_FILE in block.columns and len(block):
            listed = Path(str(block[COORDINATE_FILE].iloc[0]))
            raise DeepEMError(
                f"{path}: a RELION index of coordinate files ({COORDINATE_FILE}), not coordinates; give the files "
                f"it lists instead, e.g. '{listed.parent / ('*' + listed.suffix)}' (paths from the RELION project folder)"
            )
    if any(isinstance(b, pd.DataFrame) and b.empty for b in blocks.values()) or not blocks:
        return pd.DataFrame({X: [], Y: []})
    raise DeepEMError(f"{path}: no loop with rlnCoordinateX and rlnCoordinateY")


def read_star_table(path):
    """Read the particle/coordinate loop of a STAR file (RELION 3.0 plain or 3.1+ with optics)."""
    return coordinate_loop(read_blocks(path), path)


def read_by_micrograph(path, scored=True):
    """``{micrograph name: (xy (n, 2), scores (n,))}`` from a merged picks STAR (rlnMicrographName), whose
    coordinates are centres in pixels of the micrographs. A particle STAR that states another pixel size
    or shifts is refused: ``deepem convert`` places such particles. ``scored=False``: a file without
    scores is read too, its scores NaN."""
    blocks = read_blocks(path)
    table = coordinate_loop(blocks, path)
    stated = [c for c in (PIXEL_SIZE, ORIGIN_X, ORIGIN_Y, *ORIGIN_PX) if c in table.columns]
    stated += [PIXEL_SIZE for b in blocks.values() if isinstance(b, pd.DataFrame) and PIXEL_SIZE in b.columns][:1]
    if stated:
        raise DeepEMError(
            f"{path}: its particles state {' and '.join(sorted(set(stated)))}, which a merged picks STAR does not "
            "hold; place them on the micrographs first: deepem convert FILE --micrographs MICS --to relion -o picks.star"
        )
    if not len(table):
        return {}
    missing = [c for c in (MIC, SCORE) if c not in table.columns and (scored or c == MIC)]
    if missing:
        raise DeepEMError(f"{path}: no {' or '.join(missing)} column; give a merged picks STAR, as 'deepem gather' writes (picks.star)")
    unscored = SCORE not in table.columns
    check_finite(table, [X, Y] if unscored else [X, Y, SCORE], path, "write the file again")
    table = table.assign(**{SCORE: np.nan}) if unscored else table
    names = table[MIC].map(name_of)
    return {n: (g[[X, Y]].to_numpy(float), g[SCORE].to_numpy(float)) for n, g in table.groupby(names)}


def check_finite(table, columns, path, fix):
    """Error naming ``path`` and saying ``fix`` when a value of the coordinate or score ``columns`` is
    text or not finite (an empty table has none)."""
    values = table[columns]
    if len(values) and not all(t.kind in "fiu" for t in values.dtypes) or not np.isfinite(values.to_numpy(float)).all():
        what = " or ".join(dict.fromkeys("score" if c == SCORE else "coordinate" for c in columns))
        raise DeepEMError(f"{path}: a {what} is not a finite number; {fix}")


SCORE_FORMAT = "%.6f"  # scores saturate near 1: 3 decimals would tie many strong picks


def as_written(scores):
    """Scores as SCORE_FORMAT writes them: what every reader of the file compares with a threshold."""
    return np.array([float(SCORE_FORMAT % v) for v in np.asarray(scores, float).tolist()], float)


def write_star(path, table, float_format="%.2f"):
    """Write a one-loop STAR file atomically and reproducibly (no timestamp line); scores in SCORE_FORMAT."""
    if SCORE in table.columns and len(table):
        table = table.assign(**{SCORE: [SCORE_FORMAT % v for v in table[SCORE].to_numpy(float).tolist()]})
    texts = [c for c in table.columns if pd.api.types.is_string_dtype(table[c]) and c != SCORE]
    table = table.assign(**{c: [_reserved_quoted(v) for v in table[c].tolist()] for c in texts})
    with atomic_path(path) as tmp:
        starfile.write(table, tmp, float_format=float_format, overwrite=True)
        text = Path(tmp).read_text()
        Path(tmp).write_text("".join(line for line in text.splitlines(True) if not line.startswith("# Created by")))


def loop_header(columns, block=""):
    return f"\ndata_{block}\n\nloop_\n" + "".join(f"_{c} #{i}\n" for i, c in enumerate(columns, 1))


_WHITESPACE = re.compile(r"\s").search


STAR_RESERVED = ("data_", "loop_", "save_", "global_", "stop_", "_", "#")  # what a STAR parser reads as syntax


def _reserved_quoted(value):
    """starfile quotes values with whitespace itself, but not ``data_001.mrc``, which it then reads as a block."""
    return f'"{value}"' if isinstance(value, str) and value.startswith(STAR_RESERVED) and not _WHITESPACE(value) else value


def quoted(text):
    """A STAR value: in double quotes when it holds whitespace (a file name with a space), as starfile
    writes it, or when it starts as a STAR keyword, label or comment would (``data_001.mrc``)."""
    return f'"{text}"' if _WHITESPACE(text) or text.startswith(STAR_RESERVED) else text


def _texts(column, rows, float_format, star):
    if isinstance(column, str):
        return itertools.repeat(quoted(column) if star else column, rows)
    values = np.asarray(column)
    if values.dtype.kind == "f":
        return [float_format % v for v in values.tolist()]
    return [quoted(str(v)) for v in values.tolist()] if star else values.tolist()


def formats_for(names, float_format="%.3f"):
    """Per-column float formats: SCORE_FORMAT for the score column, ``float_format`` for the rest."""
    return [SCORE_FORMAT if n == SCORE else float_format for n in names]


def write_rows(fh, columns, float_format="%.3f", sep="\t", star=False):
    """Append rows to an open STAR loop (``star``: texts with whitespace quoted) or text file, from
    columns: arrays (floats in ``float_format``, or in the matching one of a list of formats) or a
    string for every row (one row when every column is a string).

    The text ``DataFrame.to_csv`` writes for finite numbers, several times faster on small tables
    (gather writes every format for every micrograph).
    """
    rows = next((len(c) for c in columns if not isinstance(c, str)), 1)
    formats = float_format if isinstance(float_format, list) else [float_format] * len(columns)
    texts = [_texts(c, rows, f, star) for c, f in zip(columns, formats)]
    if star:  # whitespace-separated: csv's quoting (for the separator only) would not do
        fh.writelines(sep.join(row) + "\n" for row in zip(*texts))
    else:
        csv.writer(fh, delimiter=sep, lineterminator="\n").writerows(zip(*texts))


@contextlib.contextmanager
def star_writer(path, columns, float_format="%.3f", block=""):
    """Stream one STAR loop to ``path`` (atomically): yields ``append(table)`` for row chunks.

    Memory stays at one chunk however many rows are written (gathering 10 million picks).
    ``append(table, COLUMN=value)`` writes ``value`` in every row of a column the table lacks.
    Scores are written in SCORE_FORMAT.
    """
    formats = formats_for(columns, float_format)
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write(loop_header(columns, block))
        yield lambda table, **fixed: write_rows(
            fh, [fixed[c] if c in fixed else table[c] for c in columns], formats, star=True
        )
        fh.write("\n")


def picks_table(xy, scores=None):
    """A RELION coordinate table from centres ``(n, 2)`` and optional scores."""
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    table = pd.DataFrame({X: xy[:, 0], Y: xy[:, 1]})
    if scores is not None:
        table[SCORE] = np.asarray(scores, dtype=float)
    return table
