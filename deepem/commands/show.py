"""Draw picks on a micrograph: a PNG with every pick circled, coloured by its score.

PICKS is a coordinate file: a merged STAR (rows of MICROGRAPH selected by the file stem in
rlnMicrographName), a per-micrograph STAR or EMAN .box. The micrograph is downsampled so its
longer side is at most --max-size pixels. Circles have the particle's diameter (--diameter,
with the pixel size from --pixel-size or the MRC header). Rejected candidates are drawn as red
dotted circles: with --candidates, those that are not picks; with --threshold, the picks that
score below it. Give several micrographs and --outdir to write OUTDIR/NAME.png for each.

Example:
    deepem show mics/mic_001.mrc results/picks.star -o mic_001.png --diameter 150
    deepem show mics/mic_001.mrc mics/mic_002.mrc results/round_1/picks.star \\
        --candidates results/round_1/candidates.star --diameter 150 --outdir gallery
"""

from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from deepem.errors import DeepEMError
from deepem.io.coords import MIC, SCORE, X, Y, read_coordinates, read_star_table
from deepem.io.micrograph import read_micrograph
from deepem.overlay import save_overlay
from deepem.progress import progress


def add_args(parser):
    parser.add_argument("micrographs", nargs="+", metavar="MICROGRAPH", help="micrograph files (MRC, TIFF, PNG, JPEG)")
    parser.add_argument("picks", metavar="PICKS", help="coordinate file (STAR, merged or per micrograph, or .box)")
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", help="output PNG (one micrograph)")
    out.add_argument("--outdir", help="output folder: NAME.png per micrograph")
    parser.add_argument("--candidates", help="candidates STAR: those that are not picks are drawn as rejected")
    parser.add_argument("--threshold", type=float, help="picks scoring below this are drawn as rejected")
    parser.add_argument("--diameter", type=float, help="particle diameter in A (default: circles of 1/50 the image)")
    parser.add_argument("--pixel-size", type=float, help="A/px; default: the MRC header")
    parser.add_argument("--max-size", type=int, default=1024, help="longer side of the drawn image in px (default 1024)")


def rows_of(path, name):
    """``(xy, scores or None)`` of micrograph ``name`` in a coordinate file."""
    if Path(path).suffix.lower() != ".star":
        return read_coordinates(path), None
    table = read_star_table(path)
    if MIC in table.columns:
        table = table[table[MIC].map(lambda p: Path(p).stem) == name]
    scores = table[SCORE].to_numpy(float) if SCORE in table.columns else None
    return table[[X, Y]].to_numpy(float), scores


def not_among(xy, others, tolerance=1.0):
    """Rows of ``xy`` farther than ``tolerance`` px from every row of ``others``."""
    if not len(others) or not len(xy):
        return np.ones(len(xy), bool)
    return cKDTree(others).query(xy)[0] > tolerance


def radius_px(path, diameter, pixel_size, header_px):
    if diameter is None:
        return None
    pixel_size = pixel_size or header_px
    if not pixel_size:
        raise DeepEMError(f"{path}: no pixel size in the file header; give --pixel-size")
    return 0.5 * diameter / pixel_size


def show(path, args, output):
    name = Path(path).stem
    image, header_px = read_micrograph(path)
    xy, scores = rows_of(args.picks, name)
    rejected = np.zeros((0, 2))
    if args.threshold is not None and scores is not None:
        low = scores < args.threshold
        rejected, xy, scores = xy[low], xy[~low], scores[~low]
    if args.candidates:
        cand, _ = rows_of(args.candidates, name)
        rejected = np.concatenate([rejected, cand[not_among(cand, xy)]])
    title = f"{name}: {len(xy)} picks" + (f", {len(rejected)} rejected" if len(rejected) else "")
    save_overlay(
        output, image, xy, scores, rejected, radius_px(path, args.diameter, args.pixel_size, header_px),
        args.threshold, title, args.max_size,
    )
    return len(xy), len(rejected)


def main(args):
    if args.output and len(args.micrographs) > 1:
        raise DeepEMError(f"{len(args.micrographs)} micrographs but one --output file; use --outdir")
    names = [Path(p).stem for p in args.micrographs]
    if len(set(names)) < len(names):
        raise DeepEMError("two micrographs share a file name; their overlays would overwrite each other")
    for path in progress(args.micrographs, "show"):
        output = args.output or Path(args.outdir) / f"{Path(path).stem}.png"
        picks, rejected = show(path, args, output)
        print(f"{Path(path).stem}: {picks} picks, {rejected} rejected -> {output}")
