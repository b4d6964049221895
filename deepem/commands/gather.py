"""Merge per-micrograph pick files into one RELION STAR and every export format, checking every micrograph is there.

Streams NAME.star of every micrograph listed in the preprocessing manifests from the pick
shard directories; refuses to write anything when one is missing or unreadable. Writes
OUTPUT (rlnMicrographName, rlnCoordinateX, rlnCoordinateY, rlnAutopickFigureOfMerit) and,
when asked, the same picks for other programs (every micrograph gets its per-micrograph file,
empty when it has no picks):

  --relion-dir DIR   DIR/coordinates/NAME_autopick.star and the index DIR/autopick.star, the
                     input of RELION 4/5's Extract job ("Input coordinates")
  --cryosparc FILE   a STAR for cryoSPARC's Import Particle Stack
  --box DIR          EMAN2 DIR/NAME.box (corners; box of --box-scale particle diameters)
  --topaz FILE       Topaz text (image_name x_coord y_coord score)
  --csv FILE         CSV (micrograph,x,y,score)

and, with --candidates, the merged candidate lists. Two outputs at one path, or one inside a
folder another replaces (--box DIR, --relion-dir DIR's coordinates/), are refused before anything
is written.

Example:
    deepem gather --picks results/round_1/picks/* --preprocessed results/preprocessed/* \\
        -o results/round_1/picks.star --candidates results/round_1/candidates.star \\
        --relion-dir results/round_1 --box results/round_1/box --diameter 150
"""

import os
from pathlib import Path

import numpy as np

from deepem.commands import common
from deepem.dataset import CANDIDATES
from deepem.errors import DeepEMError
from deepem.io import manifest
from deepem.io.coords import MIC, SCORE, X, Y, read_star_table, relion, star_writer
from deepem.io.coords.star import check_finite
from deepem.io.coords.formats import WriteOptions, box_size, open_writers


def add_args(parser):
    parser.add_argument("--picks", nargs="+", required=True, help="pick shard directories")
    parser.add_argument("--preprocessed", nargs="+", required=True, help="preprocessing shard directories")
    parser.add_argument("-o", "--output", required=True, help="merged STAR")
    parser.add_argument("--candidates", help="also merge the shards' candidates.star into this file")
    exports = parser.add_argument_group("exports")
    exports.add_argument("--relion-dir", help="write coordinates/NAME_autopick.star and autopick.star here")
    exports.add_argument(
        "--relion-project", help="RELION project directory: the index names files relative to it (default: absolute)"
    )
    exports.add_argument("--cryosparc", help="STAR for cryoSPARC's Import Particle Stack")
    exports.add_argument("--box", help="directory of EMAN2 .box files")
    exports.add_argument("--topaz", help="Topaz text file")
    exports.add_argument("--csv", help="CSV file")
    exports.add_argument("--diameter", type=common.positive, help="particle diameter in A (for --box)")
    exports.add_argument("--box-scale", type=common.positive, default=1.5, help=".box size / particle diameter (default 1.5)")


def locate(names, directories, filename):
    """``{name: path}`` of ``filename.format(name)`` in the directories; error naming what is missing."""
    wanted = {filename.format(name=name): name for name in names}
    found = {}
    for d in map(Path, directories):  # one listing per directory, not one stat per micrograph and shard
        if not d.is_dir():
            raise DeepEMError(f"{d}: pick shard folder not found; give the folders 'deepem pick -o' wrote")
        present = {path.name for path in d.iterdir()}
        for f, name in wanted.items():
            if f not in present:
                continue
            if name in found:
                raise DeepEMError(
                    f"{d / f}: micrograph {name} has a pick file in {found[name].parent} too; give each pick "
                    "shard folder once, and only those of one run (an earlier run's folders hold older picks)"
                )
            found[name] = d / f
    missing = [n for n in names if n not in found]
    if missing:
        raise DeepEMError(
            f"no pick file for {len(missing)} micrographs, e.g. {missing[0]}; rerun the pick step for them "
            "(snakemake reruns only the missing shards)"
        )
    return found


OPTIONS = {"relion": "-o", "relion-dir": "--relion-dir", "cryosparc": "--cryosparc", "box": "--box", "topaz": "--topaz",
           "csv": "--csv", "candidates": "--candidates"}


def check_distinct(targets):
    """Error naming two of ``{format: output}`` when one would overwrite the other: the same path, or
    one inside a folder the other replaces (--box DIR whole; --relion-dir DIR's coordinates/ and index)."""
    claims = []
    for fmt, output in targets.items():
        path = Path(os.path.realpath(output))  # links resolved: two names of one folder overlap
        claims += [(fmt, path / f) for f in (relion.COORDINATES, relion.INDEX)] if fmt == "relion-dir" else [(fmt, path)]
    for i, (fmt, path) in enumerate(claims):
        for other, there in claims[i + 1:]:
            if other != fmt and (path == there or path in there.parents or there in path.parents):
                inner = max(path, there, key=lambda p: len(p.parts))  # what the other would delete or overwrite
                raise DeepEMError(
                    f"{inner}: {OPTIONS[fmt]} {targets[fmt]} and {OPTIONS[other]} {targets[other]} would overwrite "
                    "each other; give each output its own path"
                )


def checked(picks, path, more=()):
    """``picks`` read from ``path``, or an error naming it when a column is missing or a number is not one."""
    if not len(picks):
        return picks
    lacking = [c for c in (*more, X, Y, SCORE) if c not in picks.columns]
    if lacking:
        raise DeepEMError(f"{path}: no {lacking[0]} column; not a file of 'deepem pick': rerun the pick step for it")
    check_finite(picks, [X, Y, SCORE], path, "rerun the pick step for it")
    return picks


def export_options(args, table):
    size = None
    if args.box:
        if args.diameter is None:
            raise DeepEMError("--box needs --diameter (the particle diameter in A) for the box size")
        size = box_size(args.diameter, float(np.median(table["pixel_size"])), args.box_scale)
    return WriteOptions(scored=True, box_size=size, relion_project=args.relion_project)


def main(args):
    table = manifest.read(args.preprocessed)
    files = locate(list(table.index), args.picks, "{name}.star")
    targets = {"relion": args.output, "relion-dir": args.relion_dir, "cryosparc": args.cryosparc,
               "box": args.box, "topaz": args.topaz, "csv": args.csv}
    check_distinct({k: v for k, v in {**targets, "candidates": args.candidates}.items() if v})
    candidates = [Path(d) / f"{CANDIDATES}.star" for d in args.picks] if args.candidates else []
    lost = [str(c) for c in candidates if not c.is_file()]
    if lost:
        raise DeepEMError(f"{lost[0]}: missing ({len(lost)} shards); rerun the pick step for them")
    total = 0
    with open_writers({k: v for k, v in targets.items() if v}, export_options(args, table)) as add:
        for name, path in files.items():
            picks = checked(read_star_table(path), path)
            add(name, table.loc[name, "source"], picks)
            total += len(picks)
        if candidates:  # inside the writers' block: an unreadable shard leaves no output at all
            with star_writer(args.candidates, [MIC, X, Y, SCORE]) as append:
                for path in candidates:
                    shard = checked(read_star_table(path), path, [MIC])
                    if len(shard):
                        append(shard)
    n = len(table)
    print(f"gathered {total} particles from {n} micrographs ({total / max(n, 1):.1f} per micrograph) -> {args.output}")
