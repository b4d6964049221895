"""The manifest a preprocessing shard writes: one row per micrograph, its sizes and pixel sizes.

``scale_x = width / work_width`` and ``scale_y = height / work_height`` take working pixels
back to original pixels (see :mod:`deepem.preprocess`).
"""

from pathlib import Path

import numpy as np
import pandas as pd

from deepem.errors import DeepEMError

NAME = "manifest.tsv"
LEVELS = "background"  # the folder of the background level maps, see deepem.background
COLUMNS = ["name", "source", "height", "width", "pixel_size", "work_height", "work_width", "work_pixel_size"]


def write(directory, rows):
    pd.DataFrame(rows, columns=COLUMNS).to_csv(Path(directory) / NAME, sep="\t", index=False)


def read(directories):
    """All rows of the manifests in ``directories``, with ``dir`` (where the working MRC is) and scales."""
    tables = []
    for d in directories:
        path = Path(d) / NAME
        if not path.is_file():
            raise DeepEMError(f"{path}: preprocessing manifest missing; rerun the preprocess step")
        table = pd.read_csv(path, sep="\t", dtype={"name": str, "source": str})
        table["dir"] = str(d)
        tables.append(table)
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=COLUMNS + ["dir"])
    sizes = table["pixel_size"].to_numpy(float)
    if len(sizes) and np.ptp(sizes) > 1e-3 * sizes.min():
        a, b = table.iloc[int(np.argmin(sizes))], table.iloc[int(np.argmax(sizes))]
        raise DeepEMError(
            f"{b['source']}: pixel size {b['pixel_size']:g} A differs from {a['pixel_size']:g} A of {a['source']}; "
            "run micrographs of different pixel sizes as separate datasets"
        )
    table["scale_x"] = table["width"] / table["work_width"]
    table["scale_y"] = table["height"] / table["work_height"]
    return table.set_index("name", drop=False)


def working_path(row):
    return Path(row["dir"]) / f"{row['name']}.mrc"


def level_path(row):
    """Where the micrograph's background level map is (see :mod:`deepem.background`)."""
    return Path(row["dir"]) / LEVELS / f"{row['name']}.mrc"
