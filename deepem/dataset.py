"""Resolve a dataset from the config: micrograph files, their names, and the label files of each.

A micrograph's *name* is its file stem. A label file matches micrograph ``NAME`` when its stem
is ``NAME`` or ``NAME_<suffix>`` (RELION's ``NAME_autopick.star``, ``NAME_manualpick.star``);
the longest matching name wins, so ``mic_1`` and ``mic_10`` are told apart.
"""

import glob
from pathlib import Path

import numpy as np

from deepem.errors import DeepEMError
from deepem.io.coords import read_coordinates
from deepem.io.micrograph import SUFFIXES
from deepem.patches import check_inside


def expand(pattern_or_list, what):
    """Files named by a glob pattern or a list of paths/patterns, sorted, as absolute paths."""
    if pattern_or_list is None:
        return []
    items = [pattern_or_list] if isinstance(pattern_or_list, str) else list(pattern_or_list)
    files = []
    for item in items:
        item = str(Path(item).expanduser())
        if glob.has_magic(item):
            found = sorted(glob.glob(item))
            if not found:
                raise DeepEMError(f"{item}: no {what} files match this pattern; check the path in the config")
            files.extend(found)
        elif Path(item).is_file():
            files.append(item)
        else:
            raise DeepEMError(f"{item}: {what} file not found; check the path in the config")
    return [str(Path(f).resolve()) for f in files]


def micrograph_names(paths):
    """``{name: path}`` for micrograph files; two files with one stem are an error."""
    names = {}
    for path in paths:
        p = Path(path)
        if p.suffix.lower() not in SUFFIXES:
            raise DeepEMError(f"{p}: unsupported micrograph format '{p.suffix}'; use MRC, TIFF, PNG or JPEG")
        if p.stem in names:
            raise DeepEMError(
                f"{p}: same name '{p.stem}' as {names[p.stem]}; micrograph file names must be unique"
            )
        names[p.stem] = str(p)
    return names


def match_labels(label_files, names, what):
    """``{micrograph name: [label files]}``; a label file that matches no micrograph is an error."""
    matched = {}
    by_length = sorted(names, key=len, reverse=True)
    for path in label_files:
        stem = Path(path).stem
        name = next((n for n in by_length if stem == n or stem.startswith(n + "_")), None)
        if name is None:
            raise DeepEMError(
                f"{path}: {what} file matches no micrograph; name it NAME.star or NAME_<suffix>.star "
                "after a micrograph NAME in 'micrographs'"
            )
        matched.setdefault(name, []).append(str(path))
    return matched


def load_labels(files, table, what):
    """``{name: (n, 2) working-pixel centres}`` from label files matched to a preprocessing manifest."""
    out = {}
    for name, paths in match_labels(files, list(table.index), what).items():
        row = table.loc[name]
        parts = []
        for path in paths:
            xy = read_coordinates(path)
            check_inside(xy, (row["height"], row["width"]), path)
            parts.append(xy / [row["scale_x"], row["scale_y"]])
        out[name] = np.concatenate(parts)
    return out
