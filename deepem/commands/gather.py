"""Merge per-micrograph pick files into one RELION STAR, checking every micrograph is there.

Reads NAME.star for every micrograph listed in the preprocessing manifests from the pick
shard directories; refuses to write anything when one is missing or unreadable. Writes
OUTPUT (rlnMicrographName, rlnCoordinateX, rlnCoordinateY, rlnAutopickFigureOfMerit) and,
with --candidates, the merged candidate lists.

Example:
    deepem gather --picks results/round_1/picks/* --preprocessed results/preprocessed/* \\
        -o results/round_1/picks.star
"""

from pathlib import Path

import pandas as pd

from deepem.errors import DeepEMError
from deepem.io import manifest
from deepem.io.coords import MIC, read_star_table, write_star


def add_args(parser):
    parser.add_argument("--picks", nargs="+", required=True, help="pick shard directories")
    parser.add_argument("--preprocessed", nargs="+", required=True, help="preprocessing shard directories")
    parser.add_argument("-o", "--output", required=True, help="merged STAR")
    parser.add_argument("--candidates", help="also merge the shards' candidates.star into this file")


def locate(names, directories, filename):
    """``{name: path}`` of ``filename.format(name)`` in the directories; error naming what is missing."""
    found = {}
    for d in map(Path, directories):
        for name in names:
            path = d / filename.format(name=name)
            if path.is_file():
                found[name] = path
    missing = [n for n in names if n not in found]
    if missing:
        raise DeepEMError(
            f"no pick file for {len(missing)} micrographs, e.g. {missing[0]}; rerun the pick step for them "
            "(snakemake reruns only the missing shards)"
        )
    return found


def main(args):
    table = manifest.read(args.preprocessed)
    files = locate(list(table.index), args.picks, "{name}.star")
    parts = []
    for name, path in files.items():
        picks = read_star_table(path)
        picks.insert(0, MIC, table.loc[name, "source"])
        parts.append(picks)
    merged = pd.concat(parts, ignore_index=True)
    write_star(args.output, merged, float_format="%.3f")
    if args.candidates:
        cands = [read_star_table(Path(d) / "candidates.star") for d in args.picks]
        write_star(args.candidates, pd.concat(cands, ignore_index=True), float_format="%.3f")
    n, k = len(table), len(merged)
    print(f"gathered {k} particles from {n} micrographs ({k / max(n, 1):.1f} per micrograph) -> {args.output}")
