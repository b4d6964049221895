"""Resolve a dataset from the config: micrograph files, their names, and the labels of each.

A micrograph's *name* is its file stem. A coordinate file with a micrograph column (a merged
RELION STAR with rlnMicrographName, a Topaz table, a CSV with a micrograph column) labels the
micrographs its rows name: a row belongs to micrograph ``NAME`` when the file name or the stem
of its micrograph entry is ``NAME``, also after dropping a leading cryoSPARC UID
(``J12/imported/015463722651826318029_NAME.mrc``); rows naming other micrographs are left out. Any other
file labels one micrograph: ``NAME`` when its stem is ``NAME`` or ``NAME_<suffix>`` (RELION's
``NAME_autopick.star``, ``NAME_manualpick.star``); the longest matching name wins, so ``mic_1``
and ``mic_10`` are told apart.
"""

import glob
import os
import re
from pathlib import Path, PurePath

import numpy as np
import pandas as pd

from deepem.errors import DeepEMError
from deepem.io.coords import MIC, read_picks
from deepem.io.coords.formats import micrograph_centres
from deepem.io.micrograph import micrograph_names, read_header
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
    # absolute, symlinks kept (the paths RELION and the user know); a file that two patterns match, once
    return [os.path.abspath(f) for f in once(files)]


CANDIDATES = "candidates"  # a pick shard holds NAME.star per micrograph and candidates.star


def check_not_reserved(micrographs):
    """A micrograph named like the pick shard's candidate list (``{name: path}``) is an error naming it."""
    clash = next((name for name in micrographs if name.lower() == CANDIDATES), None)  # any case: macOS
    if clash is not None:
        raise DeepEMError(
            f"{micrographs[clash]}: a micrograph named '{clash}' would overwrite the picks' {CANDIDATES}.star; "
            "rename the file (a link with another name will do)"
        )


def _stem_name(path, by_length):
    """The micrograph NAME a label file's stem names (NAME or NAME_<suffix>), or None; ``by_length``:
    names, longest first. A suffix starting with a number is ambiguous, and an error: ``grid_2_manualpick``
    may be micrograph grid_2's file, not grid's, with grid_2 left out of the micrographs."""
    stem = PurePath(path).stem
    name = next((n for n in by_length if stem == n or stem.startswith(n + "_")), None)
    if name is not None and stem != name:
        first = stem[len(name) + 1:].split("_")[0]
        if first.isdigit():
            raise DeepEMError(
                f"{path}: the file of micrograph {name}, or of a micrograph {name}_{first} that 'micrographs' does not "
                f"list? Add that micrograph, or rename the file {name}_<suffix> with a suffix that does not start "
                "with a number"
            )
    return name


def _no_micrograph(path, what, strays=1, files=1):
    how_many = f" ({strays} of the {files} {what} files match none)" if strays > 1 else ""
    return DeepEMError(
        f"{path}: {what} file matches no micrograph{how_many}; name it NAME.star or NAME_<suffix>.star "
        "after a micrograph NAME in 'micrographs', give the micrograph in a column, or leave out the files "
        "of micrographs you do not run"
    )


def _stem_match(path, by_length, what):
    name = _stem_name(path, by_length)
    if name is None:
        raise _no_micrograph(path, what)
    return name


def match_labels(label_files, names, what):
    """``{micrograph name: [label files]}`` by file stem; a label file that matches no micrograph is an error."""
    by_length = sorted(names, key=len, reverse=True)
    found = [(str(path), _stem_name(path, by_length)) for path in label_files]
    strays = [path for path, name in found if name is None]
    if strays:
        raise _no_micrograph(strays[0], what, len(strays), len(found))
    matched = {}
    for path, name in found:
        matched.setdefault(name, []).append(path)
    return matched


CRYOSPARC_UID = re.compile(r"[0-9]{15,}_")  # cryoSPARC's prefix on the files it imports: <21-digit uid>_NAME.mrc


def micrograph_name(entry, names):
    """The micrograph NAME a row's micrograph entry refers to (its file name or stem, either without
    a leading cryoSPARC UID), or None."""
    filename = PurePath(str(entry)).name
    uid = CRYOSPARC_UID.match(filename)
    for candidate in (filename, filename[uid.end():]) if uid else (filename,):
        if candidate in names:
            return candidate
        stem = PurePath(candidate).stem
        if stem in names:
            return stem
    return None


def micrograph_keys(entries, names):
    """The micrograph NAME each entry of a micrograph column refers to (None for none of ``names``),
    resolved once per distinct entry."""
    return entries.map({entry: micrograph_name(entry, names) for entry in entries.unique()})


def once(files):
    """``files`` without repeats: a file given twice, or by two spellings, counts once (first spelling kept)."""
    first = {}
    for path in files:
        first.setdefault(os.path.abspath(path), path)
    return list(first.values())


def route_labels(files, names, what, fmt=None):
    """``{name: [(file, picks table)]}``: rows routed by their micrograph column, other files by stem.

    ``fmt`` forces the files' format (default: detected from each file's content).
    """
    names = set(names)
    by_length = sorted(names, key=len, reverse=True)
    routed = {}
    for path in once(files):
        table = read_picks(path, fmt)
        if MIC not in table.columns:
            routed.setdefault(_stem_match(path, by_length, what), []).append((str(path), table))
            continue
        keys = micrograph_keys(table[MIC], names)
        if len(table) and keys.isna().all():
            raise DeepEMError(
                f"{path}: no row of this {what} file names a micrograph in 'micrographs' "
                f"(e.g. {table[MIC].iloc[0]}); rows are matched by micrograph file name or stem, without a leading "
                "cryoSPARC UID"
            )
        for name, group in table.groupby(keys):
            routed.setdefault(name, []).append((str(path), group))
    return routed


def micrograph_table(patterns, pixel_size):
    """One row per micrograph file (index: name): source, height, width and pixel_size, from the
    headers, or ``pixel_size`` where given."""
    rows = [
        (name, path, *read_header(path, use_pixel_size=not pixel_size))
        for name, path in micrograph_names(expand(patterns, "micrograph")).items()
    ]
    table = pd.DataFrame(rows, columns=["name", "source", "height", "width", "pixel_size"]).set_index("name", drop=False)
    if pixel_size:
        table["pixel_size"] = pixel_size
    return table


def read_labels(files, table, what, flip_y=False, check=False):
    """``{name: (n, 2) centres in original micrograph pixels}`` from label files, for a manifest ``table``.

    RELION coordinates picked at another pixel size are rescaled; ``flip_y`` flips files whose y
    counts from the bottom row; ``check`` makes a coordinate outside its micrograph an error.
    """
    out = {}
    for name, parts in route_labels(files, table.index, what).items():
        row = table.loc[name]
        centres = []
        for path, picks in parts:
            xy = micrograph_centres(picks, path, row["pixel_size"], row["height"], flip_y)
            if check:
                check_inside(xy, (row["height"], row["width"]), path, name)
            centres.append(xy)
        out[name] = np.concatenate(centres)
    return out


def load_labels(files, table, what, flip_y=False):
    """``{name: (n, 2) working-pixel centres}`` from label files matched to a preprocessing manifest."""
    labels = read_labels(files, table, what, flip_y, check=True)
    return {name: xy / table.loc[name, ["scale_x", "scale_y"]].to_numpy(float) for name, xy in labels.items()}
