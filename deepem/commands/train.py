"""Train the DeepEM network on a round's patches.

Writes OUTDIR/model.pt (weights, architecture, chosen threshold), OUTDIR/training.tsv and
OUTDIR/training.png (loss, held-out AP and accuracy per epoch) and OUTDIR/run.json (arguments,
versions, device). With ``--threshold auto`` the threshold is chosen and logged: with --mine
(labels complete) the score maximising F1 over the score maxima in the held-out stripes
(see 'deepem extract') matched to their labels, as picking meets them; with --calibrate
(labels incomplete) the score maximising F1 estimated over all maxima of the labelled
micrographs, each label hit standing for 1 / f particles, where f, the labelled share of the
particles, is measured among the maxima down to the median hit; otherwise the best F1 on the
held-out patches. With --mine, a second stage adds hard negatives (see 'labelled micrographs'
below). With --mine or --calibrate, the labelled particles' surroundings set the background floor
and texture ceiling (see 'deepem pick'; --background-floor off, or a level for the floor, overrides
them), and the automatic threshold leaves out the maxima beyond them, as picking does. They also set
the distance between picks that the model stores for 'deepem pick --min-distance auto': the
labels' 1st-percentile nearest-neighbour distance, within 0.4-0.5 diameter, or --min-distance
(mining and the automatic threshold take their maxima at that spacing too). Without them, a
--min-distance or a --background-floor level given is stored for picking. A killed run resumes
from its last epoch, unless its settings or patches have changed since.

Example:
    deepem train results/round_1/patches.npz -o results/round_1/model --mode modern --seed 1
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from deepem import background, model, plots, provenance
from deepem.commands import common
from deepem.dataset import load_labels
from deepem.io import manifest
from deepem.io.atomic import atomic_path, write_text
from deepem.errors import DeepEMError
from deepem.mining import hard_negatives, label_hits
from deepem.picking import CANDIDATE_FLOOR, SPACING, label_spacing
from deepem.training import RECIPES, best_f1_threshold, label_fraction, load_patches, rotation_averaged, train


def add_args(parser):
    parser.add_argument("patches", help="patches .npz from 'deepem extract'")
    parser.add_argument("-o", "--outdir", required=True, help="output directory")
    parser.add_argument("--mode", choices=sorted(RECIPES), default="modern", help="default modern")
    parser.add_argument("--epochs", type=common.count, help="default: 20 (faithful) or 30 (modern)")
    parser.add_argument("--threshold", type=common.threshold, default="auto", help="'auto' (chosen as above) or a score in (0, 1)")
    parser.add_argument("--seed", type=common.seed, default=0)
    mine = parser.add_argument_group(
        "labelled micrographs", "scored after training. Fully labelled (--mine): the strongest maxima far from "
        "every label and outside the held-out stripes become negatives of a second stage, and the maxima in the "
        "stripes set the automatic threshold. Incompletely labelled (--calibrate): all their maxima, matched to the "
        "labels, set it"
    )
    mine.add_argument("--mine", nargs="+", default=[], metavar="DIR", help="preprocessing shard directories")
    mine.add_argument("--calibrate", nargs="+", default=[], metavar="DIR", help="preprocessing shard directories")
    mine.add_argument("--positives", nargs="*", default=[], help="the positive label files used for the patches")
    mine.add_argument("--mine-epochs", type=common.count, help="epochs of the second stage (default: a third of --epochs)")
    common.add_flip_y_arg(mine)
    common.add_background_floor_arg(mine, "picking with 'auto' and the automatic threshold drop")
    common.add_min_distance_arg(
        mine, "the labels' 1st-percentile neighbour distance within 0.4-0.5; mining and the automatic threshold "
        "take maxima this far apart, and the model stores it for picking with 'auto'"
    )
    common.add_threads_arg(parser)
    common.add_device_arg(parser)


def background_bounds(choice, table, labelled, particle_px):
    """``(background maps of the labelled micrographs, floor, ceiling)``, or None for no bounds: what
    the automatic threshold leaves out and the model stores for picking. 'auto' (``choice``) sets
    both from the labelled particles' surroundings (see 'deepem pick'); a number is the floor, the
    texture ceiling still set from the labels."""
    if choice is None:
        print("background floor off: no maximum is dropped for its background")
        return None
    maps = {name: background.read_maps(table.loc[name]) for name in labelled}
    values = background.label_values(maps, labelled, particle_px)
    found = background.bounds(values)
    if choice != "auto":
        ceiling = found[1] if found else None
        told = "none" if ceiling is None else f"{ceiling:.3f}"
        print(f"background floor {choice:.3f} (given), texture ceiling {told}: maxima beyond them are dropped")
        return maps, choice, ceiling
    if found is None:
        print(f"no background floor: {values.shape[1]} labels are under {background.MIN_LABELS}; every pick is kept")
        return None
    (lo, hi), (tlo, thi) = background.spans(values)
    print(
        f"background floor {found[0]:.3f} and texture ceiling {found[1]:.3f}: {values.shape[1]} labels' background "
        f"levels span {lo:.3f} to {hi:.3f}, textures {tlo:.3f} to {thi:.3f} (0.5th to 99.5th percentile); maxima on "
        "darker or more textured background are dropped from picking and the automatic threshold"
    )
    return maps, *found


def main(args):
    common.set_threads(args.threads)
    device = common.resolve_device(args.device)
    fixed = args.threshold
    if args.mine and args.calibrate:
        raise DeepEMError("use --mine (complete labels) or --calibrate (incomplete labels), not both")
    if (args.mine or args.calibrate) and not args.positives:
        raise DeepEMError("--mine and --calibrate need --positives: the label files naming the labelled micrographs")
    if args.mine or args.calibrate:  # read once, for mining, calibration and the background floor
        table = manifest.read(args.mine or args.calibrate)
        labelled = load_labels(args.positives, table, "positive label", args.flip_y)
    floor_choice = common.parse_background_floor(args.background_floor, "auto")
    given = str(args.min_distance).lower() != "auto"
    x, y, val, meta = load_patches(args.patches)
    saved = {"particle_px": meta["particle_px"], "units": meta.get("units", manifest.OLD_UNITS)}
    if args.mine or args.calibrate:  # needs particle_px from the patches; before training, so missing maps fail early
        manifest.check_units(table, saved["units"], args.patches, "extract the patches again from these shards")
        manifest.check_particle_px(table, meta["particle_px"], args.patches, "give the shards the patches came from")
        dark = background_bounds(floor_choice, table, labelled, meta["particle_px"])
        saved["background_floor"], saved["background_ceiling"] = dark[1:] if dark else (None, None)
        measured = label_spacing(labelled, meta["particle_px"])  # mining and calibration use it too
        spacing = saved["min_distance"] = common.parse_min_distance(args.min_distance, measured)
        how = f"given; the labels' is {measured:.3f}" if given else f"the labels' spacing (at most {SPACING})"
        print(f"picks at least {spacing:.3f} diameter apart: {how}")
    else:  # no labelled micrographs to measure on: what is given is stored for picking with 'auto'
        if given:
            saved["min_distance"] = common.parse_min_distance(args.min_distance, None)
            print(f"picks at least {saved['min_distance']:.3f} diameter apart: given")
        if floor_choice not in ("auto", None):
            saved["background_floor"] = floor_choice
            print(f"background floor {floor_choice:.3f} (given; no texture ceiling without labelled micrographs)")
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    arch = common.architecture(meta["particle_px"], meta["box_scale"], args.mode)
    if x.shape[-1] != arch.box:  # patches cut by a deepem whose network design differed
        raise DeepEMError(
            f"{args.patches}: patches of {x.shape[-1]} px, but the network for particle_px {meta['particle_px']} "
            f"takes {arch.box} px; run extract again"
        )
    print(f"{len(y)} patches ({int(y.sum())} positive, {int(val.sum())} held out); {args.mode} network {arch}")
    net, history = train(
        arch, args.mode, x, y, val, args.seed, device, epochs=args.epochs, checkpoint=outdir / "checkpoint.pt"
    )
    holdout = meta.get("holdout", {})
    if args.mine:  # the particles the patches hold: label files plus corrections on their micrographs
        added = meta.get("added_positives", {})
        particles = {n: np.concatenate([xy, np.reshape(added.get(n, []), (-1, 2))]) for n, xy in labelled.items()}
        hard = hard_negatives(net, table, particles, meta["particle_px"], device, holdout, spacing=spacing)
        x = torch.cat([x, torch.from_numpy(hard)[:, None]])
        y = torch.cat([y, torch.zeros(len(hard))])
        val = torch.cat([val, torch.zeros(len(hard), dtype=torch.bool)])  # mined outside the held-out stripes
        extra = args.mine_epochs or max(3, len(history) // 3)
        print(f"hard negatives: {len(hard)} strong maxima far from every label; training {extra} more epochs")
        net, history = train(
            arch, args.mode, x, y, val, args.seed + 1, device, epochs=extra,
            checkpoint=outdir / "checkpoint_hard.pt", start=(net, history),
        )
    scores = rotation_averaged(net, x[val].to(device)).cpu().numpy()
    patches = best_f1_threshold(scores, y[val].numpy())
    choice = {"method": "held-out patches", **patches}
    how = (
        f"best F1 {patches['f1']:.3f} on {len(scores)} held-out patches at {patches['threshold']:.4f}, "
        f"precision {patches['precision']:.3f}, recall {patches['recall']:.3f}"
    )
    if args.mine and fixed is None:
        hits, maxima, n_labels = label_hits(
            net, table, particles, meta["particle_px"], device, holdout, background=dark, spacing=spacing
        )
        if hits.any():
            stripes = {"method": "held-out stripes", **best_f1_threshold(maxima, hits, n_labels, floor=CANDIDATE_FLOOR)}
            choice = {**stripes, "maxima": len(maxima), "labels": n_labels, "patches": patches}
            how = (
                f"best F1 {stripes['f1']:.3f} at {stripes['threshold']:.4f} over {len(maxima)} maxima in the held-out "
                f"stripes ({n_labels} labels), precision {stripes['precision']:.3f}, recall {stripes['recall']:.3f}; "
                f"held-out patches: {how}"
            )
        elif n_labels:
            print(
                f"warning: none of the {len(maxima)} score maxima in the held-out stripes lies within half a diameter of "
                f"their {n_labels} labels, so the threshold comes from the held-out patches; check the labels' "
                "coordinates (--flip-y) and the particle diameter"
            )
        else:
            print("the held-out stripes hold no label: the threshold comes from the held-out patches")
    if args.calibrate and fixed is None:
        hits, maxima, n_labels = label_hits(
            net, table, labelled, meta["particle_px"], device, background=dark, spacing=spacing
        )
        if hits.any():
            share = label_fraction(maxima, hits)
            calibrated = best_f1_threshold(maxima, hits, n_labels, fraction=share, floor=CANDIDATE_FLOOR)
            choice = {"method": "labelled maxima", **calibrated, "label_fraction": share, "maxima": len(maxima),
                      "labels": n_labels, "patches": patches}
            how = (
                f"estimated F1 {calibrated['f1']:.3f} at {calibrated['threshold']:.4f} over {len(maxima)} maxima on "
                f"{len(labelled)} labelled micrographs ({n_labels} labels, an estimated {share:.0%} of the particles), "
                f"precision {calibrated['precision']:.3f}, recall {calibrated['recall']:.3f}; held-out patches: {how}"
            )
        else:
            print(
                f"warning: none of the {len(maxima)} score maxima on the labelled micrographs lies within half a diameter "
                "of a label, so the threshold comes from the held-out patches; check the labels' coordinates (--flip-y) "
                "and the particle diameter"
            )
    threshold = choice["threshold"] if fixed is None else fixed
    print(f"threshold {threshold:.4f} ({'auto: ' if fixed is None else 'fixed; for comparison, '}{how})")
    saved.update(threshold=threshold, auto_threshold=choice)
    with atomic_path(outdir / "model.pt") as tmp:
        model.save(tmp, net.cpu(), saved)
    with atomic_path(outdir / "training.tsv") as tmp:
        pd.DataFrame(history).to_csv(tmp, sep="\t", index=False, float_format="%.6f")
    plots.training_curve(
        history, outdir / "training.png", f"{args.mode} DeepEM, box {arch.box} px", float(1 - y[val].float().mean())
    )
    write_text(outdir / "run.json", json.dumps(provenance.run_record(args, device), indent=1) + "\n")
    for name in ("checkpoint.pt", "checkpoint_hard.pt"):
        (outdir / name).unlink(missing_ok=True)
