"""Draw picks on a micrograph: a PNG with every pick circled, coloured by its score.

PICKS is a coordinate file in any format deepem reads. A file with a micrograph column (a
merged STAR, a Topaz table, a CSV) gives each MICROGRAPH the rows that name it, by file name or
stem; a per-micrograph file (STAR, .box, .cbox) is drawn on every MICROGRAPH given. The micrograph is downsampled so its
longer side is at most --max-size pixels. Circles have the particle's diameter (--diameter,
with the pixel size from --pixel-size or the MRC header). Rejected candidates are drawn as red
dotted circles: with --candidates, those that are not picks; with --threshold, the picks that
score below it. Picks are placed as the workflow reads labels: refined RELION particles at their
centres (coordinate minus rlnOriginXAngst/YAngst), coordinates picked at another pixel size
(rlnMicrographPixelSize) rescaled. Give several micrographs and --outdir to write OUTDIR/NAME.png for each.

Example:
    deepem show mics/mic_001.mrc results/picks.star -o mic_001.png --diameter 150
    deepem show mics/mic_001.mrc mics/mic_002.mrc results/round_1/picks.star \\
        --candidates results/round_1/candidates.star --diameter 150 --outdir gallery
"""

import sys
from pathlib import Path

import numpy as np

from deepem.commands import common
from deepem.errors import DeepEMError
from deepem.dataset import micrograph_keys
from deepem.io.coords import MIC, SCORE, read_picks
from deepem.io.coords.formats import micrograph_centres
from deepem.io.micrograph import read_micrograph
from deepem.overlay import save_overlay
from deepem.patches import near
from deepem.progress import progress


def add_args(parser):
    parser.add_argument("micrographs", nargs="+", metavar="MICROGRAPH", help="micrograph files (MRC, TIFF, PNG, JPEG)")
    parser.add_argument("picks", metavar="PICKS", help="coordinate file (STAR, merged or per micrograph, .box, .cbox, Topaz, CSV)")
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", help="output PNG (one micrograph)")
    out.add_argument("--outdir", help="output folder: NAME.png per micrograph")
    parser.add_argument("--candidates", help="candidates (any coordinate format): those that are not picks are drawn as rejected")
    parser.add_argument("--threshold", type=common.fraction, help="picks scoring below this (between 0 and 1) are drawn as rejected")
    parser.add_argument("--diameter", type=common.positive, help="particle diameter in A (default: circles of 1/50 the image)")
    parser.add_argument("--pixel-size", type=common.positive, help="A/px; default: the MRC header")
    parser.add_argument("--max-size", type=common.count, default=1024, help="longer side of the drawn image in px (default 1024)")


def picks_by_micrograph(path, names):
    """``{name: picks table}`` for each micrograph name, from a coordinate file of any format.

    A file with a micrograph column (merged STAR, Topaz table, CSV) gives each micrograph the rows
    that name it (none when it is not named, with a warning when no row names any of them);
    a per-micrograph file (STAR, .box, .cbox) gives its rows to every micrograph.
    """
    table = read_picks(path)
    if MIC not in table.columns:
        return {name: table for name in names}
    keys = micrograph_keys(table[MIC], set(names))
    if len(table) and keys.isna().all():  # a micrograph with no picks has no rows either: warn, draw none
        print(
            f"warning: {path}: no row names {' or '.join(sorted(names)[:3])}{' ...' if len(names) > 3 else ''} "
            f"(e.g. {table[MIC].iloc[0]}), so none is drawn; rows are matched by micrograph file name or stem: "
            "if the micrograph was renamed, give the one the picks were made on",
            file=sys.stderr,
        )
    groups = dict(list(table.groupby(keys)))  # dict() would take GroupBy.keys for a mapping's keys()
    return {name: groups.get(name, table.iloc[:0]) for name in names}


def centres(rows, path, pixel_size):
    """``(xy, scores or None)`` of picks ``rows`` of file ``path`` on a micrograph of ``pixel_size``
    Å/px (None: unknown), shifted and rescaled as the workflow reads labels."""
    xy = micrograph_centres(rows, path, pixel_size)
    return xy, (rows[SCORE].to_numpy(float) if SCORE in rows.columns else None)


def not_among(xy, others, tolerance=1.0):
    """Rows of ``xy`` farther than ``tolerance`` px from every row of ``others``."""
    return ~near(xy, others, tolerance)


def radius_px(path, diameter, pixel_size):
    if diameter is None:
        return None
    if not pixel_size:
        raise DeepEMError(f"{path}: no pixel size in the file header; give --pixel-size")
    return 0.5 * diameter / pixel_size


def show(path, args, output, picks, candidates):
    name = Path(path).stem
    image, header_px = read_micrograph(path, use_pixel_size=not args.pixel_size)
    pixel_size = args.pixel_size or header_px or None
    xy, scores = centres(picks[name], args.picks, pixel_size)
    rejected = np.zeros((0, 2))
    if candidates is not None:  # against every pick: one below --threshold is rejected once, below
        cand, _ = centres(candidates[name], args.candidates, pixel_size)
        rejected = cand[not_among(cand, xy)]
    if args.threshold is not None and scores is not None:
        low = scores < args.threshold
        rejected, xy, scores = np.concatenate([xy[low], rejected]), xy[~low], scores[~low]
    title = f"{name}: {len(xy)} picks" + (f", {len(rejected)} rejected" if len(rejected) else "")
    save_overlay(
        output, image, xy, scores, rejected, radius_px(path, args.diameter, pixel_size),
        args.threshold, title, args.max_size,
    )
    return len(xy), len(rejected)


def main(args):
    if args.output and len(args.micrographs) > 1:
        raise DeepEMError(f"{len(args.micrographs)} micrographs but one --output file; use --outdir")
    names = [Path(p).stem for p in args.micrographs]
    if len(set(names)) < len(names):
        raise DeepEMError("two micrographs share a file name; their overlays would overwrite each other")
    picks = picks_by_micrograph(args.picks, names)
    if args.threshold is not None and SCORE not in picks[names[0]].columns:
        raise DeepEMError(
            f"{args.picks}: no scores, so --threshold {args.threshold:g} would draw none of its picks as rejected; "
            "give scored picks (picks.star, candidates.star) or leave out --threshold"
        )
    candidates = picks_by_micrograph(args.candidates, names) if args.candidates else None
    for path in progress(args.micrographs, "show"):
        output = args.output or Path(args.outdir) / f"{Path(path).stem}.png"
        n_picks, rejected = show(path, args, output, picks, candidates)
        print(f"{Path(path).stem}: {n_picks} picks, {rejected} rejected -> {output}")
