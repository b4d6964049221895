"""Plot the scores of a round's candidates, the pick threshold marked.

Candidates are every local maximum 'deepem pick' kept (candidates.star); those scoring at
least the threshold are the picks. The threshold is --threshold, or with --threshold auto the one
stored in --model.

Example:
    deepem histogram results/round_1/candidates.star --model results/round_1/model/model.pt \\
        -o results/round_1/scores.png
"""

from deepem import model
from deepem.commands import common
from deepem.errors import DeepEMError
from deepem.io.coords import MIC, SCORE, read_star_table
from deepem.io.coords.star import check_finite
from deepem.plots import score_histogram


def add_args(parser):
    parser.add_argument("candidates", help="candidates STAR (from 'deepem gather')")
    parser.add_argument("-o", "--output", required=True, help="output PNG")
    parser.add_argument("--model", help="model.pt whose threshold to mark with --threshold auto (the default)")
    parser.add_argument(
        "--threshold", type=common.threshold, default="auto", help="threshold to mark: a score in (0, 1), or 'auto' (--model's)"
    )


def main(args):
    threshold = args.threshold
    table = read_star_table(args.candidates)
    if SCORE not in table.columns:
        raise DeepEMError(f"{args.candidates}: no {SCORE} column; give the candidates.star of 'deepem gather'")
    if threshold is None and args.model:
        threshold = float(model.load(args.model)[1]["threshold"])
    check_finite(table, [SCORE], args.candidates, "write the file again")  # a NaN was counted, not plotted (< 0.12.3)
    scores = table[SCORE].to_numpy(float)
    n_mics = table[MIC].nunique() if MIC in table.columns else 1
    score_histogram(scores, threshold, args.output, f"{len(scores)} candidates in {n_mics} micrographs")
    picked = "" if threshold is None else f", {int((scores >= threshold).sum())} at or above {threshold:.4f}"
    print(f"{len(scores)} candidates{picked} -> {args.output}")
