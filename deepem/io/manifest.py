"""The manifest a preprocessing shard writes: one row per micrograph, its sizes and pixel sizes.

``scale_x = width / work_width`` and ``scale_y = height / work_height`` take working pixels
back to original pixels (see :mod:`deepem.preprocess`). ``units`` names the working images'
intensity units, and ``particle_px`` the particle diameter in their pixels; models record both, so
that none scores images in other units or at another scale.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from deepem.errors import DeepEMError

NAME = "manifest.tsv"
LEVELS = "background"  # the folder of the background maps, see deepem.background
SIZES = ["name", "source", "height", "width", "pixel_size", "work_height", "work_width", "work_pixel_size"]
COLUMNS = SIZES + ["units", "particle_px"]
UNITS = "noise"  # what deepem.preprocess writes
OLD_UNITS = "spread"  # manifests and models of deepem before 0.7, which have no units
UNIT_NAMES = {
    "noise": "in units of their pixel noise (deepem 0.7 and later)",
    "spread": "in units of their overall spread (deepem before 0.7)",
}


def write(directory, rows, particle_px):
    """``rows`` hold the ``SIZES`` columns; ``units`` is this version's."""
    table = pd.DataFrame(rows, columns=SIZES).assign(units=UNITS, particle_px=particle_px)
    table.to_csv(Path(directory) / NAME, sep="\t", index=False)


def read(directories):
    """All rows of the manifests in ``directories``, with ``dir`` (where the working MRC is) and scales."""
    tables = []
    for d in directories:
        path = Path(d) / NAME
        if not path.is_file():
            raise DeepEMError(f"{path}: preprocessing manifest missing; rerun the preprocess step")
        table = pd.read_csv(path, sep="\t", dtype={"name": str, "source": str}, keep_default_na=False)
        table["dir"] = str(d)
        if "units" not in table:
            table["units"] = OLD_UNITS
        if "particle_px" not in table:  # manifests before 0.10.3
            table["particle_px"] = np.nan
        tables.append(table)
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=COLUMNS + ["dir"])
    sizes = table["pixel_size"].to_numpy(float)
    if len(sizes) and np.ptp(sizes) > 1e-3 * sizes.min():
        a, b = table.iloc[int(np.argmin(sizes))], table.iloc[int(np.argmax(sizes))]
        raise DeepEMError(
            f"{b['source']}: pixel size {b['pixel_size']:g} A differs from {a['pixel_size']:g} A of {a['source']}; "
            "run micrographs of different pixel sizes as separate datasets"
        )
    twice = table["name"].duplicated(keep=False)
    if twice.any():  # a shard given twice, or two files with one stem in different shards
        same = table[table["name"] == table.loc[twice, "name"].iloc[0]]
        a, b = same.iloc[0], same.iloc[1]
        raise DeepEMError(
            f"{b['source']} ({b['dir']}): same name '{b['name']}' as {a['source']} ({a['dir']}); give each "
            "preprocessing shard once, and micrograph files unique names"
        )
    table["scale_x"] = table["width"] / table["work_width"]
    table["scale_y"] = table["height"] / table["work_height"]
    return table.set_index("name", drop=False)


def working_path(row):
    return Path(row["dir"]) / f"{row['name']}.mrc"


def level_path(row):
    """Where the micrograph's background maps are (see :mod:`deepem.background`)."""
    return Path(row["dir"]) / LEVELS / f"{row['name']}.mrc"


def _described(units):
    return UNIT_NAMES.get(units, f"in units {units!r}, which this deepem version does not know")


def units(table):
    """The intensity units shared by the working images of ``table``; mixed units are an error."""
    found = table.drop_duplicates("units")
    if len(found) > 1:
        a, b = found.iloc[0], found.iloc[1]
        raise DeepEMError(
            f"{b['dir']}: working images {_described(b['units'])}, but those of {a['dir']} are "
            f"{_described(a['units'])}; preprocess every micrograph with one deepem version"
        )
    return found["units"].iloc[0] if len(found) else UNITS


def check_units(table, expected, source, fix):
    """Fail, suggesting ``fix``, unless the working images of ``table`` are in the ``expected`` units
    that ``source`` was made from."""
    got = units(table)
    if len(table) and got != expected:
        raise DeepEMError(
            f"{source} was made from working images {_described(expected)}, but {table['dir'].iloc[0]} holds "
            f"working images {_described(got)}; {fix}"
        )


def check_known(names, table, source, fix, missing="no --preprocessed shard holds"):
    """Fail, suggesting ``fix``, when ``source`` names a micrograph that ``table`` lacks (``missing``
    says where it was looked for)."""
    unknown = sorted(set(names) - set(table.index))
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise DeepEMError(f"{source}: names micrograph {unknown[0]}{more}, which {missing}; {fix}")


def check_particle_px(table, expected, source, fix):
    """Fail, suggesting ``fix``, unless the working images of ``table`` show particles ``expected``
    pixels across, as ``source`` was trained on (manifests before 0.10.3 do not say: not checked)."""
    off = table[table["particle_px"].notna() & (table["particle_px"] != expected)]
    if len(off):
        row = off.iloc[0]
        raise DeepEMError(
            f"{row['dir']}: preprocessed with --particle-px {int(row['particle_px'])}, but {source} was trained on "
            f"particles {expected} px across; {fix}"
        )
