"""CSV coordinates: a header row naming ``x`` and ``y`` (centres), optionally ``score`` and ``micrograph``.

Header names are matched without regard to case; ``x_coord``/``y_coord`` and ``image_name`` are
accepted too. deepem writes ``micrograph,x,y[,score]`` with the micrograph's path.
"""

import contextlib

import pandas as pd

from deepem.errors import DeepEMError
from deepem.io.atomic import atomic_path
from deepem.io.coords.columns import MIC, SCORE, X, Y
from deepem.io.coords.star import formats_for, write_rows

ALIASES = {
    "x": X, "x_coord": X, "y": Y, "y_coord": Y, "score": SCORE,
    "micrograph": MIC, "micrograph_name": MIC, "image_name": MIC,
}


def canonical_columns(names):
    """``{header name: picks-table column}`` for the header names deepem knows."""
    return {n: ALIASES[n.strip().strip('"').lower()] for n in names if n.strip().strip('"').lower() in ALIASES}


def skipped_rows(path):
    """``(indices of the blank and '#' comment lines before the header, the header)``: format detection
    passes over such lines, so the readers do too. After the header only blank lines are passed over
    (pandas does): a row may name a micrograph ``#1``."""
    skipped = []
    with open(path, encoding="utf-8-sig", errors="replace") as fh:  # -sig: Excel's byte-order mark
        for i, line in enumerate(fh):
            if line.strip() and not line.strip().startswith("#"):
                return skipped, line
            skipped.append(i)
    return skipped, ""


def read(path):
    skipped, _ = skipped_rows(path)
    try:
        table = pd.read_csv(
            path, dtype=str, skipinitialspace=True, encoding="utf-8-sig", keep_default_na=False, skiprows=skipped
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise DeepEMError(f"{path}: not a readable CSV file ({exc})") from None
    columns = canonical_columns(table.columns)
    if not {X, Y} <= set(columns.values()):
        raise DeepEMError(f"{path}: CSV without x and y columns; name them in the header row")
    return table[list(columns)].rename(columns=columns)


@contextlib.contextmanager
def writer(path, options):
    columns = ["micrograph", "x", "y"] + (["score"] if options.scored else [])
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write(",".join(columns) + "\n")

        names = [X, Y, SCORE] if options.scored else [X, Y]
        formats = formats_for([MIC] + names)

        def add(name, source, table):
            write_rows(fh, [source] + [table[c] for c in names], formats, sep=",")

        yield add
