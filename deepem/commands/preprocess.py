"""Preprocess micrographs into small normalised working copies.

Removes the illumination gradient, Fourier-crops to the working pixel size (particle
diameter / particle_px), subtracts the median, clips outliers and scales the image to its pixel
noise (see deepem.preprocess). Writes OUTDIR/NAME.mrc per micrograph, OUTDIR/background/NAME.mrc
(its coarse maps of local background level and texture, two sections, with which picking drops
candidates on carbon or thick ice) and OUTDIR/manifest.tsv; OUTDIR appears only once every
micrograph is done.

Example:
    deepem preprocess mics/*.mrc --diameter 150 -o results/preprocessed/1-of-8
"""

import os
import time
from pathlib import Path

from deepem.commands import common
from deepem.errors import DeepEMError
from deepem.io import manifest
from deepem.io.atomic import atomic_directory
from deepem.io.micrograph import micrograph_names, read_micrograph, write_mrc
from deepem.preprocess import preprocess
from deepem.progress import progress


def add_args(parser):
    parser.add_argument("micrographs", nargs="*", help="micrograph files (MRC, TIFF, PNG, JPEG)")
    parser.add_argument("-o", "--outdir", required=True, help="output directory")
    parser.add_argument("--pixel-size", type=common.positive, help="A/px; default: read from the MRC header")
    common.add_geometry_args(parser)
    common.add_threads_arg(parser)


def _supported(particle_px):
    """Whether the network can be built for particles this many pixels across (default box scale)."""
    try:
        common.architecture(particle_px, 1.5, "modern")
    except DeepEMError:
        return False
    return True


def check_geometry(path, shape, pixel_size, diameter, particle_px):
    """The particle must span particle_px pixels or more (micrographs are only ever downsampled to
    it), and its box must fit in the micrograph."""
    span = diameter / pixel_size
    if span < particle_px * (1 - 1e-3):  # headers store the pixel size as float32
        fix = (
            f"set particle_px (--particle-px) to {int(span)}" if _supported(int(span))
            else "use micrographs binned less, and check particle_diameter is in A"
        )
        raise DeepEMError(
            f"{path}: a {diameter:g} A particle spans only {span:.1f} px at {pixel_size:g} A/px, fewer than the "
            f"{particle_px} of particle_px, and micrographs are never upsampled; {fix}"
        )
    if 2 * span > min(shape):
        raise DeepEMError(
            f"{path}: a {diameter:g} A particle ({span:.0f} px) with its context is larger than the "
            f"{shape[1]} x {shape[0]} micrograph, whose sides must each span 2 diameters ({2 * span:.0f} px); check "
            "particle_diameter is in A, not px, or leave this micrograph out of 'micrographs'"
        )


def main(args):
    working = args.diameter / args.particle_px
    paths = list(micrograph_names(args.micrographs).values())  # unique stems, known formats; a file given twice once
    rows, overridden = [], []
    start = time.time()
    with atomic_directory(args.outdir) as tmp:
        for path in progress(paths, "preprocess"):
            image, header_px = read_micrograph(path, use_pixel_size=not args.pixel_size)
            pixel_size = args.pixel_size or header_px
            if args.pixel_size and header_px and abs(header_px / args.pixel_size - 1) > 0.01:
                overridden.append((path, header_px))
            if not pixel_size:
                raise DeepEMError(
                    f"{path}: no pixel size in the file header; give --pixel-size (pixel_size in the config)"
                )
            if rows and abs(pixel_size - rows[0][4]) > 1e-3 * pixel_size:
                raise DeepEMError(
                    f"{path}: pixel size {pixel_size:g} A differs from {rows[0][4]:g} A of {rows[0][1]}; "
                    "run micrographs of different pixel sizes as separate datasets"
                )
            check_geometry(path, image.shape, pixel_size, args.diameter, args.particle_px)
            try:
                work, maps = preprocess(image, pixel_size, working, args.particle_px, workers=args.threads)
            except DeepEMError as exc:  # the image's own faults (a constant image) do not know its path
                raise DeepEMError(f"{path}: {exc}; a blank or failed exposure? Leave it out of 'micrographs'") from None
            name = Path(path).stem
            write_mrc(tmp / f"{name}.mrc", work, pixel_size * image.shape[1] / work.shape[1])
            (tmp / manifest.LEVELS).mkdir(exist_ok=True)
            write_mrc(tmp / manifest.LEVELS / f"{name}.mrc", maps, pixel_size * image.shape[1] / maps.shape[-1])
            rows.append([name, os.path.abspath(path), *image.shape, pixel_size, *work.shape, pixel_size * image.shape[1] / work.shape[1]])
        manifest.write(tmp, rows, args.particle_px)
    n = len(rows)
    if overridden:
        path, header_px = overridden[0]
        print(
            f"warning: --pixel-size {args.pixel_size:g} A overrides the header's pixel size in {len(overridden)} of {n} "
            f"micrographs, e.g. {header_px:g} A in {path}: binned micrographs? Check pixel_size; the header is used "
            "when it is not set"
        )
    print(f"preprocessed {n} micrographs in {time.time() - start:.1f} s -> {args.outdir}")
