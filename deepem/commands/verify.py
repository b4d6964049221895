"""Verify a round's picks: decide for every candidate whether it is a particle.

Writes a STAR with every candidate (rlnMicrographName, rlnCoordinateX/Y,
rlnAutopickFigureOfMerit) and its verdict in the column deepemVerdict: confident, outlier,
low_score or uncertain (see deepem.verification); the next round trains on the confident ones
as positives and the outlier / low_score ones as negatives. Corrected coordinate files
(--corrections, matched to micrographs by name) replace the automatic verdicts of their
micrographs: confirmed / added_by_user are positives, removed_by_user negatives.

Example:
    deepem verify --candidates results/round_1/candidates.star --model results/round_1/model/model.pt \\
        --preprocessed results/preprocessed/* --diameter 150 -o results/round_1/verified.star
"""

from collections import Counter

import numpy as np

from deepem import model
from deepem.commands import common
from deepem.dataset import read_labels
from deepem.io import manifest
from deepem.io.coords import read_by_micrograph, write_star
from deepem.verification import VERDICT, verify


def add_args(parser):
    parser.add_argument("--candidates", required=True, help="a round's candidates.star (from gather)")
    parser.add_argument("--model", required=True, help="the round's model.pt (its threshold and particle_px)")
    parser.add_argument(
        "--threshold", type=common.threshold, default="auto", help="the threshold the round picked at: 'auto' (the model's) or a score in (0, 1)"
    )
    parser.add_argument("--preprocessed", nargs="+", required=True, help="preprocessing shard directories")
    parser.add_argument("--diameter", type=common.positive, required=True, help="particle diameter in A")
    parser.add_argument("--corrections", nargs="*", default=[], help="user-corrected coordinate files")
    parser.add_argument("-o", "--output", required=True, help="verified STAR")


def main(args):
    table = manifest.read(args.preprocessed)
    _, ckpt = model.load(args.model)
    threshold = args.threshold or ckpt["threshold"]
    manifest.check_particle_px(table, ckpt["particle_px"], args.model, "give the shards this model picked")
    corrections = read_labels(args.corrections, table, "correction", check=True)
    diameter_px = float(np.median(args.diameter / table["pixel_size"]))
    candidates = read_by_micrograph(args.candidates)
    manifest.check_known(candidates, table, args.candidates, "give every shard the candidates were picked from")
    verified = verify(candidates, table, threshold, ckpt["particle_px"], diameter_px, corrections)
    write_star(args.output, verified, float_format="%.3f")
    counts = Counter(verified[VERDICT])
    print(
        f"verified {len(verified)} candidates in {len(table)} micrographs "
        f"({len(corrections)} with user corrections): "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )
