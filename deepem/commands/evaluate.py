"""Score picks against truth coordinates: precision, recall, F1, average precision, best F1.

Matching is one-to-one (Hungarian) within 0.5 x the particle diameter, per micrograph.
P/R/F1 are for the picks as written (at the picking threshold); AP and best F1 rank the
candidates (every local maximum), or without --candidates the picks, by score (null when the picks
have no scores, e.g. manual picks). Reports all micrographs and, separately, those
("held_out") that none of your label files names: --positives, --negatives or --corrections.
The micrographs (their names, sizes and pixel sizes) come from deepem's preprocessing shards
(--preprocessed) or from the micrograph files themselves (--micrographs), so picks of any
picker can be scored.

Example:
    deepem evaluate --picks results/round_1/picks.star --candidates results/round_1/candidates.star \\
        --truth demo/truth/*.star --positives demo/labels/*.star --preprocessed results/preprocessed/* \\
        --diameter 150 -o results/round_1/metrics.json
    deepem convert topaz_picks.txt --micrographs 'mics/*.mrc' --to relion -o topaz.star
    deepem evaluate --picks topaz.star --truth truth/*.star --micrographs mics/*.mrc --diameter 150 -o topaz.json
"""

import json
from pathlib import Path

import numpy as np

from deepem.commands import common
from deepem.dataset import micrograph_table, read_labels, route_labels
from deepem.errors import DeepEMError
from deepem.io import manifest
from deepem.io.atomic import write_text
from deepem.io.coords import read_by_micrograph
from deepem.metrics import match, summarise


def add_args(parser):
    parser.add_argument(
        "--picks", required=True,
        help="merged picks STAR (from gather; 'deepem convert --to relion' makes one from other formats)",
    )
    parser.add_argument("--candidates", help="merged candidates STAR (for AP and best F1)")
    parser.add_argument("--truth", nargs="+", required=True, help="truth coordinate files, matched by name")
    parser.add_argument("--diameter", type=common.positive, required=True, help="particle diameter in A")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--preprocessed", nargs="+", help="preprocessing shard directories")
    where.add_argument(
        "--micrographs", nargs="+", metavar="MIC", help="or the micrograph files (or glob patterns) the picks name"
    )
    parser.add_argument(
        "--pixel-size", type=common.positive, help="A/px of --micrographs (default: their MRC headers)"
    )
    parser.add_argument("--positives", nargs="*", default=[], help="training label files: the rest is 'held out'")
    parser.add_argument("--negatives", nargs="*", default=[], help="non-particle label files, which trained too")
    parser.add_argument("--corrections", nargs="*", default=[], help="corrected coordinate files of earlier rounds")
    parser.add_argument("-o", "--output", required=True, help="metrics JSON")


def evaluate(picks, truth, radius, names):
    hits, scores, n_truth = [], [], 0
    for name in names:
        xy, s = picks.get(name, (np.zeros((0, 2)), np.zeros(0)))
        hits.append(match(xy, truth[name], radius[name]))
        scores.append(s)
        n_truth += len(truth[name])
    return summarise(np.concatenate(hits), np.concatenate(scores), n_truth)


def _merged(path, scored=True):
    """A merged picks STAR's ``{name: (xy, scores)}``; other files get the command that makes one."""
    try:
        return read_by_micrograph(path, scored)
    except DeepEMError as exc:
        if not Path(path).is_file():  # a mistyped path: its own error says so
            raise
        raise DeepEMError(
            f"{exc}. evaluate reads a merged picks STAR; make one from another picker's coordinates "
            "with 'deepem convert FILES --micrographs MICS --to relion -o picks.star'"
        ) from None


def micrographs(args):
    """The micrographs' table (index: name; height, width, pixel_size), what holds each, and what to say
    of a micrograph it lacks."""
    if args.preprocessed:
        if args.pixel_size:
            raise DeepEMError("--pixel-size goes with --micrographs; --preprocessed shards record their pixel size")
        return manifest.read(args.preprocessed), "shard", "no --preprocessed shard holds"
    table = micrograph_table(args.micrographs, args.pixel_size)
    unknown = table[table["pixel_size"].isna()]
    if len(unknown):
        raise DeepEMError(f"{unknown['source'].iloc[0]}: no pixel size in the file header; give --pixel-size")
    return table, "micrograph", "is not among --micrographs"


def main(args):
    table, holder, missing = micrographs(args)
    radius = (0.5 * args.diameter / table["pixel_size"]).to_dict()
    picks = _merged(args.picks, scored=False)
    cands = _merged(args.candidates) if args.candidates else picks
    manifest.check_known(picks, table, args.picks, f"give every {holder} the picks were made on", missing)
    if args.candidates:
        manifest.check_known(cands, table, args.candidates, f"give every {holder} the candidates were picked from", missing)
    truth = read_labels(args.truth, table, "truth", check=True)
    labelled = set().union(*(
        route_labels(files, table.index, what)
        for files, what in ((args.positives, "positive label"), (args.negatives, "negative label"), (args.corrections, "correction"))
    ))
    groups = {"all": sorted(truth), "held_out": sorted(n for n in truth if n not in labelled)}
    report = {"match_radius_px": float(np.median(list(radius.values())))}
    for group, names in groups.items():
        if not names:
            continue
        at_threshold = evaluate(picks, truth, radius, names)
        ranked = evaluate(cands, truth, radius, names)
        if any(np.isnan(s).any() for _, s in cands.values()):  # unscored picks: nothing to rank
            ranked = dict.fromkeys(("average_precision", "best_f1", "best_f1_threshold"))
        report[group] = {
            "micrographs": len(names),
            **{k: at_threshold[k] for k in ("picks", "truth", "true_positives", "precision", "recall", "f1")},
            **{k: ranked[k] for k in ("average_precision", "best_f1", "best_f1_threshold")},
        }
        r = report[group]
        ranks = (
            f"AP {r['average_precision']:.3f}  best F1 {r['best_f1']:.3f}" if r["best_f1"] is not None
            else "no AP or best F1: the picks have no scores (rlnAutopickFigureOfMerit)"
        )
        print(f"{group} ({len(names)} micrographs): precision {r['precision']:.3f}  recall {r['recall']:.3f}  F1 {r['f1']:.3f}  {ranks}")
    write_text(args.output, json.dumps(report, indent=1) + "\n")
