"""Tell a coordinate file's format from its first lines, and check it against the file's extension.

- ``relion``: STAR syntax (``data_`` / ``loop_``) with RELION labels;
- ``cbox``: STAR syntax with crYOLO's ``data_cryolo`` block (``_CoordinateX``, ``_Width``, ...);
- ``topaz``: a header with ``image_name``, ``x_coord`` and ``y_coord``;
- ``csv``: a comma-separated header naming ``x`` and ``y`` columns;
- ``box``: rows of 4 or more numbers (EMAN: corner x, corner y, width, height [, score]).
"""

from itertools import islice
from pathlib import Path

from deepem.errors import DeepEMError
from deepem.io.coords import csv_table
from deepem.io.coords.columns import MIC, X, Y
from deepem.io.coords.star import read_star_table

DESCRIPTIONS = {
    "relion": "RELION STAR",
    "cbox": "crYOLO .cbox",
    "box": "EMAN .box",
    "topaz": "Topaz text",
    "csv": "CSV",
}
ACCEPTED = (
    "deepem reads RELION .star, crYOLO .cbox, EMAN .box, Topaz text (image_name x_coord y_coord) "
    "and CSV with x,y columns"
)
CLAIMS = {".star": {"relion", "cbox"}, ".cbox": {"cbox", "box"}, ".box": {"box"}, ".csv": {"csv"}}
HEAD_LINES = 200


def _lines(path):
    """Stripped lines that are neither blank nor ``#`` comments."""
    with open(path, encoding="utf-8-sig", errors="replace") as fh:  # -sig: Excel's byte-order mark
        for line in fh:
            line = line.strip()
            if line and not line.startswith("#"):
                yield line


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def sniff(path):
    """The format the content of ``path`` looks like, ``"unknown"``, or None when it has no content."""
    head = list(islice(_lines(path), HEAD_LINES))
    if not head:
        return None
    first = head[0]
    if first.startswith(("data_", "loop_", "_")):
        return "cbox" if any(line == "data_cryolo" or line.startswith("_CoordinateX") for line in head) else "relion"
    if {"image_name", "x_coord", "y_coord"} <= set(first.split()):
        return "topaz"
    if "," in first and {X, Y} <= set(csv_table.canonical_columns(first.split(",")).values()):
        return "csv"
    rows = [line.split() for line in head[:5]]
    if all(len(row) >= 4 and all(map(_is_number, row)) for row in rows):
        return "box"
    return "unknown"


def detect(path):
    """The format to read ``path`` with (None for an empty file); an error naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise DeepEMError(f"{path}: coordinate file not found")
    found = sniff(path)
    if found == "unknown":
        raise DeepEMError(f"{path}: not a coordinate file deepem can read; {ACCEPTED}")
    claimed = CLAIMS.get(path.suffix.lower())
    if found and claimed and found not in claimed:
        raise DeepEMError(
            f"{path}: the content is {DESCRIPTIONS[found]} but the extension says '{path.suffix}'; "
            f"rename the file or check its content ({ACCEPTED})"
        )
    return found


def _star_coordinate_labels(path):
    """Labels of the first STAR loop that has rlnCoordinateX, read from the header lines only."""
    labels = []
    for line in _lines(path):
        if line.startswith("_"):
            labels.append(line.split()[0][1:])
        elif labels:
            if X in labels:
                return labels
            labels = []
    return labels


def names_micrographs(path):
    """True when ``path`` has a micrograph column (a merged STAR, a Topaz table, a CSV with names)."""
    fmt = detect(path)
    if fmt == "relion":
        labels = _star_coordinate_labels(path)
        if not labels:  # no coordinate loop: read it for the error that says what it is (e.g. a RELION index)
            read_star_table(path)
        return MIC in labels
    if fmt == "csv":
        return MIC in csv_table.canonical_columns(csv_table.skipped_rows(path)[1].split(",")).values()
    return fmt == "topaz"
