"""Write a synthetic cryo-EM dataset with ground truth (micrographs, truth, negatives, labels).

Particles of one random 3-D phantom at random orientations, among ice, carbon and junk, with CTF
and noise. Writes OUTDIR/micrographs/demo_NNN.mrc, truth/, negatives/, labels/ (the first
--labelled micrographs) and dataset.yaml.

example:
  deepem simulate -o demo --micrographs 8 --size 1024 --labelled 4
"""

from deepem.commands import common
from deepem.simulate import simulate_dataset


def add_args(parser):
    parser.add_argument("-o", "--outdir", required=True, help="output folder")
    parser.add_argument("--micrographs", type=common.count, default=8, help="number of micrographs (default 8)")
    parser.add_argument("--size", type=int, default=1024, help="micrograph edge in pixels, at most 8192 (default 1024)")
    parser.add_argument("--pixel-size", type=common.positive, default=2.0, help="Å per pixel (default 2.0)")
    parser.add_argument("--diameter", type=common.positive, default=150.0, help="particle diameter in Å (default 150)")
    parser.add_argument("--labelled", type=int, default=4, help="micrographs with manual picks (default 4)")
    parser.add_argument("--label-fraction", type=float, default=1.0, help="fraction of truth labelled (default 1.0)")
    parser.add_argument("--snr", type=float, default=0.05, help="per-pixel signal-to-noise ratio (default 0.05)")
    parser.add_argument(
        "--on-carbon", type=float, default=0.0, help="density of particles on carbon, left out of the truth (default 0)"
    )
    parser.add_argument("--seed", type=common.seed, default=0, help="random seed (default 0)")


def main(args):
    counts = simulate_dataset(
        args.outdir,
        n_micrographs=args.micrographs,
        size=args.size,
        pixel_size=args.pixel_size,
        particle_diameter=args.diameter,
        snr=args.snr,
        n_labelled=args.labelled,
        label_fraction=args.label_fraction,
        on_carbon=args.on_carbon,
        seed=args.seed,
    )
    print(f"simulated {len(counts)} micrographs, {sum(counts)} particles ({min(args.labelled, len(counts))} labelled) in {args.outdir}")
