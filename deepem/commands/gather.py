"""Merge per-micrograph pick files into one RELION STAR, checking every micrograph is there.

Streams NAME.star of every micrograph listed in the preprocessing manifests from the pick
shard directories; refuses to write anything when one is missing or unreadable. Writes
OUTPUT (rlnMicrographName, rlnCoordinateX, rlnCoordinateY, rlnAutopickFigureOfMerit) and,
with --candidates, the merged candidate lists.

Example:
    deepem gather --picks results/round_1/picks/* --preprocessed results/preprocessed/* \\
        -o results/round_1/picks.star
"""

from pathlib import Path

from deepem.errors import DeepEMError
from deepem.io import manifest
from deepem.io.coords import MIC, SCORE, X, Y, read_star_table, star_writer


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
    total = 0
    with star_writer(args.output, [MIC, X, Y, SCORE]) as append:
        for name, path in files.items():
            picks = read_star_table(path)
            picks.insert(0, MIC, table.loc[name, "source"])
            append(picks)
            total += len(picks)
    if args.candidates:
        with star_writer(args.candidates, [MIC, X, Y, SCORE]) as append:
            for d in args.picks:
                append(read_star_table(Path(d) / "candidates.star"))
    n = len(table)
    print(f"gathered {total} particles from {n} micrographs ({total / max(n, 1):.1f} per micrograph) -> {args.output}")
