"""Topaz text: tab-separated, header ``image_name x_coord y_coord [score]``, one row per particle.

Coordinates are centres in the pixels of the images Topaz scored: pick with ``topaz extract -x``
(or convert with Topaz's up-scaling) so they refer to the original micrographs. ``image_name``
is the micrograph's file name without extension; Topaz scores are logits, deepem's are
probabilities (0 to 1).
"""

import contextlib

import pandas as pd

from deepem.errors import DeepEMError
from deepem.io.atomic import atomic_path
from deepem.io.coords.columns import MIC, SCORE, X, Y
from deepem.io.coords.csv_table import skipped_rows
from deepem.io.coords.star import formats_for, write_rows

COLUMNS = {"image_name": MIC, "x_coord": X, "y_coord": Y, "score": SCORE}


def read(path):
    skipped, header = skipped_rows(path)
    try:
        table = pd.read_csv(
            path, sep="\t" if "\t" in header else r"\s+", dtype={"image_name": str}, keep_default_na=False,
            skiprows=skipped, encoding="utf-8-sig",
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise DeepEMError(f"{path}: not a readable Topaz file ({exc})") from None
    if not {"x_coord", "y_coord"} <= set(table.columns):
        raise DeepEMError(f"{path}: no x_coord and y_coord columns: not a Topaz file (image_name x_coord y_coord [score])")
    return table[[c for c in COLUMNS if c in table.columns]].rename(columns=COLUMNS)


@contextlib.contextmanager
def writer(path, options):
    columns = ["image_name", "x_coord", "y_coord"] + (["score"] if options.scored else [])
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write("\t".join(columns) + "\n")
        names = [COLUMNS[c] for c in columns[1:]]
        formats = formats_for([MIC] + names)
        yield lambda name, source, table: write_rows(fh, [name] + [table[n] for n in names], formats)
