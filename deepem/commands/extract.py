"""Extract training patches for one round into a single compact .npz file.

Positives are centred on the labelled coordinates; negatives are the user's non-particle
coordinates plus background sampled at least half a diameter from every label, half of it
uniformly and half from regions whose local mean or variance is unusual (ice, carbon, junk).
A full-height stripe of each labelled micrograph (--val-fraction of its width, at a seeded
random place) is held out: its patches only validate, and its labels and score maxima set the
automatic threshold of fully labelled micrographs (see 'deepem train'). When the stripes hold no
labelled particle (a handful of labels), a random --val-fraction of the patches is held out instead.
A micrograph with negative labels only trains on them, and holds no stripe out.

A negative label within a quarter diameter of a positive one gives a warning (both train, as
given). A verified pick within a quarter diameter of a label is left out: the label decides.
Automatic positive verdicts (confident) are left out on a micrograph whose positive label file is
empty (it says: no particle here), and with --complete on every micrograph that has a positive
label file; your corrections there still count. --verified-micrographs N takes the verified picks of
at most N micrographs without label files or corrections (a seeded random choice, which the log
names), so that later rounds on a large dataset train on a bounded set of patches; micrographs
with your corrections always train.

Example:
    deepem extract --preprocessed results/preprocessed/* --positives labels/*.star \\
        --diameter 150 -o results/round_1/patches.npz
"""

import json

import numpy as np

from deepem.commands import common
from deepem.dataset import load_labels
from deepem.errors import DeepEMError
from deepem.io import manifest
from deepem.io.atomic import atomic_path
from deepem.io.coords import MIC, X, Y, read_star_table
from deepem.io.micrograph import name_of, read_micrograph
from deepem.patches import check_inside, extract, holdout_stripe, in_stripe, near, sample_background, typical_count
from deepem.progress import progress
from deepem.verification import NEGATIVE, POSITIVE, USER_VERDICTS, VERDICT

CONFLICT = 0.25  # labels of both kinds closer than this many diameters mark one particle


def add_args(parser):
    parser.add_argument("--preprocessed", nargs="+", required=True, help="preprocessing shard directories")
    parser.add_argument("--positives", nargs="*", default=[], help="coordinate files of particles (any format deepem reads)")
    parser.add_argument("--negatives", nargs="*", default=[], help="coordinate files of non-particles")
    parser.add_argument(
        "--verified", nargs="*", default=[], help="the previous round's verified.star: its positive verdicts join the positives, "
        "its negative verdicts the negatives, and no background is sampled near its other candidates"
    )
    parser.add_argument(
        "--verified-micrographs", type=common.count,
        help="use the verified picks of at most this many micrographs without label files or corrections, "
        "chosen at random (seeded); default: all",
    )
    parser.add_argument(
        "--complete", action="store_true",
        help="the positive label files label every particle of their micrographs: no confident verdict joins them",
    )
    parser.add_argument("-o", "--output", required=True, help="output .npz")
    common.add_geometry_args(parser)
    common.add_arch_args(parser)
    parser.add_argument(
        "--background-ratio", type=common.nonnegative, default=12.0,
        help="sampled background per positive (default 12, as the workflow's auto)",
    )
    parser.add_argument(
        "--unusual-fraction", type=float, default=0.5, help="share of background drawn from unusual regions"
    )
    parser.add_argument(
        "--val-fraction", type=common.fraction, default=0.15,
        help="width of the held-out stripe per micrograph, between 0 and 1 (default 0.15)"
    )
    parser.add_argument("--seed", type=common.seed, default=0)
    common.add_flip_y_arg(parser)


def verified_labels(path, table, settled=()):
    """``(positives, negatives, avoid, left out, corrected)`` from a verified STAR: the first three as
    ``{name: working-pixel centres}``; automatic positive verdicts (``confident``) on the ``settled``
    micrographs, whose label files decide them, are left out and counted. Corrections still count;
    ``corrected`` names the micrographs that have them (any verdict of ``USER_VERDICTS``)."""
    verified = read_star_table(path)
    out = ({}, {}, {})
    if not len(verified):
        return (*out, 0, set())
    lacking = [c for c in (MIC, VERDICT) if c not in verified.columns]
    if lacking:
        raise DeepEMError(f"{path}: no {lacking[0]} column; give the verified.star that 'deepem verify' writes")
    manifest.check_known(verified[MIC].map(name_of), table, path, "give the shards it was picked from")
    left_out, corrected = 0, set()
    for source, group in verified.groupby(MIC):
        name = name_of(source)
        row = table.loc[name]
        xy = group[[X, Y]].to_numpy(float)
        check_inside(xy, (row["height"], row["width"]), path, name)
        xy = xy / [row["scale_x"], row["scale_y"]]
        verdict = group[VERDICT].to_numpy()
        if np.isin(verdict, USER_VERDICTS).any():
            corrected.add(name)
        positive = np.isin(verdict, POSITIVE)
        if name in settled:
            left_out += int((verdict == "confident").sum())
            positive &= verdict != "confident"
        for target, mask in zip(out, (positive, np.isin(verdict, NEGATIVE), ~np.isin(verdict, NEGATIVE))):
            target[name] = xy[mask]
    return (*out, left_out, corrected)


def choose_unlabelled(names, labelled, limit, seed, corrected=()):
    """``names`` with at most ``limit`` of those neither in ``labelled`` nor ``corrected`` (a seeded
    random choice; all with ``limit`` None), naming them when some are left out. Micrographs with
    the user's corrections always train."""
    others = sorted(set(names) - set(labelled) - set(corrected))
    if limit is None or len(others) <= limit:
        return set(names)
    kept = sorted(np.random.default_rng(seed).choice(others, limit, replace=False).tolist())
    print(
        f"verified picks of {limit} of the {len(others)} micrographs without label files or corrections train "
        f"(--verified-micrographs {limit}; seed {seed}): {' '.join(kept)}"
    )
    return (set(names) - set(others)) | set(kept)


def warn_inconsistent(positives, negatives, particle_px, table):
    """Warn of negative labels within a quarter diameter of a positive one: junk on a particle, or
    one particle labelled both ways. Both train, as given; the warning says where to look."""
    for name in sorted(set(positives) & set(negatives)):
        close = near(negatives[name], positives[name], CONFLICT * particle_px)
        if close.any():
            x, y = negatives[name][np.argmax(close)] * table.loc[name, ["scale_x", "scale_y"]].to_numpy(float)
            print(
                f"warning: micrograph {name}: {int(close.sum())} negative labels lie within a quarter diameter of a "
                f"positive label, e.g. at ({x:.0f}, {y:.0f}); both train as given: if they mark one particle, remove "
                "one label of each pair"
            )


def apart(labels, others, particle_px):
    """``labels`` without the centres within a quarter diameter of ``others``, and how many went."""
    kept, dropped = {}, 0
    for name, xy in labels.items():
        close = near(xy, others.get(name, np.zeros((0, 2))), CONFLICT * particle_px)
        kept[name], dropped = xy[~close], dropped + int(close.sum())
    return kept, dropped


def merge(*mappings):
    names = set().union(*mappings)
    return {n: np.concatenate([m.get(n, np.zeros((0, 2))) for m in mappings]) for n in names}


def check_working_pixel_size(table, diameter, particle_px):
    """The working images must be at the pixel size that --diameter and --particle-px give, as
    ``deepem preprocess`` made them with the same values (never upsampled)."""
    expected = np.maximum(table["pixel_size"], diameter / particle_px)
    tolerance = np.maximum(0.02, 1 / table["work_width"])  # the working shape is rounded to whole pixels
    off = np.abs(table["work_pixel_size"] / expected - 1) > tolerance
    if off.any():
        row, want = table[off].iloc[0], expected[off].iloc[0]
        raise DeepEMError(
            f"{row['dir']}: {row['name']} was preprocessed to {row['work_pixel_size']:.3f} A/px, not the "
            f"{want:.3f} A/px of --diameter {diameter:g} and --particle-px "
            f"{particle_px}; pass the values it was preprocessed with, or preprocess again"
        )


def main(args):
    table = manifest.read(args.preprocessed)
    check_working_pixel_size(table, args.diameter, args.particle_px)
    units = manifest.units(table)
    positives = load_labels(args.positives, table, "positive label", args.flip_y)
    negatives = load_labels(args.negatives, table, "negative label", args.flip_y)
    avoid, added, previous = {}, {}, {"positives": 0, "negatives": 0}
    warn_inconsistent(positives, negatives, args.particle_px, table)
    labelled, overruled, decided = merge(positives, negatives), 0, 0
    label_files = set(positives)  # an empty one says: no particle here
    settled = label_files if args.complete else {n for n, xy in positives.items() if not len(xy)}
    verified = [verified_labels(path, table, settled) for path in args.verified]
    named = set().union(*(set(m) for *found, _, _ in verified for m in found))
    corrected = set().union(*(c for *_, c in verified))
    chosen = choose_unlabelled(named, labelled, args.verified_micrographs, args.seed, corrected)
    for *found, left_out, _ in verified:
        more_pos, more_neg, more_avoid = ({n: xy for n, xy in m.items() if n in chosen} for m in found)
        decided += left_out
        more_pos, dropped_pos = apart(more_pos, labelled, args.particle_px)
        more_neg, dropped_neg = apart(more_neg, labelled, args.particle_px)
        overruled += dropped_pos + dropped_neg
        previous["positives"] += sum(map(len, more_pos.values()))
        previous["negatives"] += sum(map(len, more_neg.values()))
        positives, negatives, avoid = merge(positives, more_pos), merge(negatives, more_neg), merge(avoid, more_avoid)
        added = merge(added, {n: xy for n, xy in more_pos.items() if n in label_files})
        positives = {n: xy for n, xy in positives.items() if len(xy) or n in label_files}
    if overruled:
        print(
            f"{overruled} verified picks within a quarter diameter of a label were left out: the label files decide there"
        )
    if decided:
        which = "have label files (--complete)" if args.complete else "have empty label files (no particle)"
        print(f"{decided} confident verdicts were left out on micrographs that {which}: the label files decide there")
    if not sum(len(v) for v in positives.values()):
        raise DeepEMError(f"no labelled particles in {len(args.positives)} positive label files; label some particles")
    box = common.architecture(args.particle_px, args.box_scale, "modern").box
    rng = np.random.default_rng(args.seed)
    xs, ys, vals, kinds, holdout = [], [], [], [], {}
    typical = typical_count({n: positives[n] for n in label_files})  # as mining counts: label-file micrographs
    names = sorted(set(positives) | {n for n, xy in negatives.items() if len(xy)})
    for name in progress(names, "extract"):
        image, _ = read_micrograph(manifest.working_path(table.loc[name]))
        pos = positives.get(name, np.zeros((0, 2)))
        stripe = (0, 0)  # negatives only: all train, as its unlabelled particles would be false picks in a stripe
        if name in positives:  # an empty label file says: no particle here
            holdout[name] = stripe = holdout_stripe(image.shape[1], args.val_fraction, rng)
        neg = negatives.get(name, np.zeros((0, 2)))
        per = typical if name in positives and not len(pos) else len(pos)  # a particle-free micrograph: as a typical one
        background = sample_background(
            image, np.concatenate([pos, neg, avoid.get(name, np.zeros((0, 2)))]), int(round(args.background_ratio * per)),
            0.5 * args.particle_px, rng, args.unusual_fraction,
        )
        for centres, label, kind in ((pos, 1, "positive"), (neg, 0, "negative"), (background, 0, "background")):
            xs.append(extract(image, centres, box))
            ys.append(np.full(len(centres), label, np.uint8))
            vals.append(in_stripe(centres, stripe))
            kinds.extend([kind] * len(centres))
    x, y, val = np.concatenate(xs), np.concatenate(ys), np.concatenate(vals)
    if not (y[val].any() and y[~val].any()):  # the stripes hold no label, or every label
        if y.sum() < 2:
            raise DeepEMError(f"only {int(y.sum())} labelled particle: label at least 2 (one trains, one validates)")
        print(
            f"warning: the held-out stripes ({args.val_fraction:.0%} of each micrograph's width) hold no labelled "
            f"particle, or every one, so a random {args.val_fraction:.0%} of the patches is held out instead and the automatic "
            "threshold comes from them; label more particles for a threshold set on whole stripes"
        )
        holdout = {}
        val = rng.random(len(y)) < args.val_fraction
        pos = np.flatnonzero(y == 1)  # at least one positive validates, at least one trains
        val[pos] = False
        val[rng.choice(pos, min(len(pos) - 1, max(1, round(args.val_fraction * len(pos)))), replace=False)] = True
    counts = {k: kinds.count(k) for k in ("positive", "negative", "background")}
    meta = {
        "box": box, "particle_px": args.particle_px, "box_scale": args.box_scale, "units": units, "counts": counts,
        "from_previous_round": previous, "holdout": holdout,
        # positive verdicts that joined labelled micrographs (with --complete: your corrections), working px:
        # training's mining and stripe threshold must count them as particles, as the patches do
        "added_positives": {n: added[n].tolist() for n in sorted(added) if len(added[n])},
    }
    with atomic_path(args.output) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, x=x.astype(np.float16), y=y, val=val, meta=json.dumps(meta))
    verified = (
        f" (of which the previous round's verified picks: {previous['positives']} positives, {previous['negatives']} negatives)"
        if args.verified else ""
    )
    print(
        f"{len(names)} micrographs: {counts['positive']} positives, {counts['negative']} negatives{verified}, "
        f"{counts['background']} background; box {box} px; "
        f"{int(val.sum())} held out {'in stripes' if holdout else 'at random'} -> {args.output}"
    )
