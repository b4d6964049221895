"""Convert coordinate files between RELION, cryoSPARC, EMAN, Topaz, crYOLO and CSV.

Reads each INPUT in the format its content shows (--from forces one): RELION STAR (3.0, or
3.1+ with data_optics), crYOLO .cbox, EMAN .box, Topaz text, CSV with x,y columns. Writes
OUTPUT --to:

  relion      one merged STAR: rlnMicrographName, rlnCoordinateX/Y[, rlnAutopickFigureOfMerit]
  relion-dir  OUTPUT/coordinates/NAME_autopick.star and OUTPUT/autopick.star (RELION 4/5 Extract)
  cryosparc   a STAR for cryoSPARC's Import Particle Stack
  box         OUTPUT/NAME.box, EMAN2 lower-left corners (--box-size, or 1.5 --particle-diameter)
  topaz       Topaz text: image_name x_coord y_coord[ score]
  csv         micrograph,x,y[,score]

Rows go to the micrograph their file's micrograph column names, or, in a file without one, to
the micrograph the file is named after (NAME.box, NAME_autopick.star). With --micrographs the
files are matched to those micrographs as in the workflow (rows naming others are left out),
the outputs name the micrograph files, coordinates must lie inside them, and RELION
coordinates picked at another pixel size (rlnMicrographPixelSize) are rescaled to theirs.
Refined RELION particles are written at their centres: the coordinate minus the shift
(rlnOriginXAngst/YAngst, Å), which needs the pixel size of the micrographs they were picked on:
the file's rlnMicrographPixelSize, else --pixel-size or --micrographs.

Example:
    deepem convert topaz_picks.txt --micrographs 'mics/*.mrc' --to relion-dir -o relion_picks
    deepem convert deepem_boxes/*.box --flip-y --height 4096 --to csv -o picks.csv
"""

from pathlib import PurePath

import numpy as np
import pandas as pd

from deepem.commands import common
from deepem.dataset import micrograph_table, once, route_labels
from deepem.errors import DeepEMError
from deepem.io.coords import MIC, SCORE, X, Y, read_picks
from deepem.io.coords.columns import PIXEL_SIZE
from deepem.io.coords.formats import READERS, WRITERS, WriteOptions, box_size, micrograph_centres, open_writers
from deepem.io.micrograph import SUFFIXES, name_of
from deepem.patches import check_inside

RELION_PICK_SUFFIXES = ("_autopick", "_manualpick")


def add_args(parser):
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="coordinate files")
    parser.add_argument("-o", "--output", required=True, help="output file, or directory for --to relion-dir / box")
    parser.add_argument("--to", required=True, choices=list(WRITERS), help="output format")
    parser.add_argument("--from", dest="source_format", choices=list(READERS), help="input format (default: detected)")
    parser.add_argument("--micrographs", nargs="+", metavar="MIC", help="the micrograph files (or glob patterns)")
    parser.add_argument(
        "--pixel-size", type=common.positive,
        help="A/px of the micrographs (default: their MRC headers); RELION coordinates picked at another "
        "pixel size are rescaled to it",
    )
    parser.add_argument(
        "--flip-y", action="store_true",
        help="inputs count y from the bottom row: a box corner y becomes height - y - box, a centre y height - 1 - y",
    )
    parser.add_argument("--height", type=common.count, help="micrograph height in px, for --flip-y without --micrographs")
    parser.add_argument("--min-score", type=float, help="keep only particles scoring at least this")
    parser.add_argument("--box-size", type=common.count, help="box size in px for --to box (a whole number)")
    parser.add_argument(
        "--particle-diameter", type=common.positive, help="particle diameter in A: --to box uses boxes of 1.5 diameters"
    )
    parser.add_argument(
        "--relion-project", help="RELION project directory: --to relion-dir names files relative to it"
    )


def name_from_file(path):
    """The micrograph a per-micrograph file is named after: NAME.box, NAME_autopick.star -> NAME."""
    stem = PurePath(path).stem
    return next((stem[: -len(s)] for s in RELION_PICK_SUFFIXES if stem.endswith(s)), stem)


def route_by_content(files, fmt):
    """``{name: [(file, picks, source or None)]}`` without a micrograph list."""
    routed = {}
    for path in files:
        table = read_picks(path, fmt)
        if MIC in table.columns:
            for entry, group in table.groupby(MIC):
                routed.setdefault(name_of(entry), []).append((path, group, str(entry)))
        else:
            routed.setdefault(name_from_file(path), []).append((path, table, None))
    return routed


def collect(args, mics):
    """``{name: (source, xy (n, 2), scores (n,) or None)}`` in the frame of each micrograph."""
    if mics is not None:
        routed = {
            name: [(path, picks, mics.loc[name, "source"]) for path, picks in parts]
            for name, parts in route_labels(args.inputs, mics.index, "coordinate", args.source_format).items()
        }
    else:
        routed = route_by_content(args.inputs, args.source_format)
    out, warned = {}, set()
    for name in sorted(routed):
        row = mics.loc[name] if mics is not None else None
        pixel_size = args.pixel_size if row is None or pd.isna(row["pixel_size"]) else row["pixel_size"]
        height = args.height if row is None else row["height"]
        xy, scores, source = [], [], None
        for path, picks, entry in routed[name]:
            empty = len(picks) == 0  # a file with no particles says nothing about scores
            if args.min_score is not None and not empty:
                if SCORE not in picks.columns:
                    raise DeepEMError(f"{path}: --min-score needs scores, and this file has none")
                picks = picks[picks[SCORE] >= args.min_score]
            centres = micrograph_centres(picks, path, pixel_size, height, args.flip_y, keep_frame=row is None)
            if pixel_size is None and PIXEL_SIZE in picks.columns and len(picks) and path not in warned:
                warned.add(path)
                print(
                    f"warning: {path}: coordinates picked at {picks[PIXEL_SIZE].iloc[0]:g} A/px (rlnMicrographPixelSize) "
                    f"stay in that frame, which the {args.to} output does not record; give --micrographs or --pixel-size "
                    "to rescale them to the micrographs"
                )
            if row is not None:
                check_inside(centres, (row["height"], row["width"]), path, name)
            xy.append(centres)
            scores.append(np.zeros(0) if empty else picks[SCORE].to_numpy(float) if SCORE in picks.columns else None)
            source = source or entry
            if args.to in ("relion-dir", "cryosparc") and (source is None or PurePath(source).suffix.lower() not in SUFFIXES):
                what = "no micrograph column" if source is None else f"its micrograph column gives {source!r}, not a file name"
                raise DeepEMError(
                    f"{path}: {what}; give --micrographs so the {args.to} output can name the micrograph files"
                )
        scored = all(s is not None for s in scores)
        out[name] = (source or name, np.concatenate(xy), np.concatenate(scores) if scored else None)
    return out


def write_options(args, mics, picks):
    size = args.box_size
    if args.to == "box" and size is None:
        pixel_size = args.pixel_size if mics is None else mics["pixel_size"].median()
        if args.particle_diameter is None or pixel_size is None or pd.isna(pixel_size):
            raise DeepEMError("--to box needs --box-size, or --particle-diameter with --pixel-size or MRC --micrographs")
        size = box_size(args.particle_diameter, pixel_size, 1.5)
    scored = all(scores is not None for _, _, scores in picks.values())
    return WriteOptions(scored=scored, box_size=size, relion_project=args.relion_project)


def main(args):
    args.inputs = once(args.inputs)
    mics = micrograph_table(args.micrographs, args.pixel_size) if args.micrographs else None
    picks = collect(args, mics)
    with open_writers({args.to: args.output}, write_options(args, mics, picks)) as add:
        for name, (source, xy, scores) in picks.items():
            table = pd.DataFrame({X: xy[:, 0], Y: xy[:, 1]})
            if scores is not None:
                table[SCORE] = scores
            add(name, source, table)
    total = sum(len(xy) for _, xy, _ in picks.values())
    print(f"converted {total} particles on {len(picks)} micrographs from {len(args.inputs)} files -> {args.output} ({args.to})")
