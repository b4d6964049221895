"""Pick particles in one shard of preprocessed micrographs.

Loads the model once, scores each working image fully convolutionally (mean over the 4
rotations, in small overlapping tiles; modern models average over small shifts too), keeps
local maxima at least --min-distance diameters apart (auto: the spacing training measured on the
labels, else 0.5) that score above the threshold and lie at least --edge diameters inside the
image (a box around them can be extracted), and writes
OUTDIR/NAME.star per micrograph (even when empty; rlnCoordinateX/Y are centres in pixels of the
ORIGINAL micrograph, x = column, y = row from the top-left) plus OUTDIR/candidates.star with
every local maximum above --floor, for precision-recall analysis. Maxima whose surroundings are
darker than the model's background floor, or more textured than its texture ceiling (both set in
training from the labelled particles' own surroundings), lie on carbon or thick ice and are
dropped from both. OUTDIR appears only once the whole shard is done.

Example:
    deepem pick --model results/round_1/model/model.pt --preprocessed results/preprocessed/1-of-8 \\
        -o results/round_1/picks/1-of-8
"""

import time

import numpy as np
import pandas as pd

from deepem import model
from deepem.background import kept, read_maps, values_at
from deepem.commands import common
from deepem.dataset import CANDIDATES, check_not_reserved
from deepem.io import manifest
from deepem.io.atomic import atomic_directory
from deepem.io.coords import MIC, picks_table, write_star
from deepem.io.coords.star import as_written
from deepem.io.micrograph import read_micrograph
from deepem.picking import CANDIDATE_FLOOR, SPACING, TILE, candidates
from deepem.progress import progress


def add_args(parser):
    parser.add_argument("--model", required=True, help="model.pt from 'deepem train'")
    parser.add_argument("--preprocessed", required=True, help="a preprocessing shard directory")
    parser.add_argument("-o", "--outdir", required=True, help="output directory")
    parser.add_argument("--threshold", type=common.threshold, default="auto", help="'auto' (the model's choice) or a score in (0, 1)")
    common.add_min_distance_arg(parser, f"the model's spacing from its labels, else {SPACING}")
    parser.add_argument(
        "--edge", type=common.nonnegative, default=0.5, help="drop picks closer to the edge than this many diameters (default 0.5)"
    )
    parser.add_argument(
        "--floor", type=common.score, default=CANDIDATE_FLOOR, help=f"lowest score kept in candidates.star (default {CANDIDATE_FLOOR})"
    )
    parser.add_argument(
        "--tile", type=common.count, default=TILE, help=f"score-map tile edge in cells (speed and memory; default {TILE})"
    )
    common.add_background_floor_arg(parser, "drop")
    common.add_threads_arg(parser)
    common.add_device_arg(parser)


def main(args):
    common.set_threads(args.threads)
    device = common.resolve_device(args.device)
    net, ckpt = model.load(args.model, device)
    threshold = args.threshold or ckpt["threshold"]
    background_floor = common.parse_background_floor(args.background_floor, ckpt.get("background_floor"))
    ceiling = ckpt.get("background_ceiling") if background_floor is not None else None  # models before 0.8: none
    spacing = common.parse_min_distance(args.min_distance, ckpt.get("min_distance", SPACING))  # models before 0.10: none
    min_distance = spacing * ckpt["particle_px"]
    edge = args.edge * ckpt["particle_px"]
    table = manifest.read([args.preprocessed])
    check_not_reserved(table["source"].to_dict())
    manifest.check_units(
        table, ckpt.get("units", manifest.OLD_UNITS), args.model,
        "retrain on these, or preprocess again with the deepem version that trained the model",
    )
    manifest.check_particle_px(table, ckpt["particle_px"], args.model, f"preprocess again with --particle-px {ckpt['particle_px']}")
    # small maps, all read before any work: a missing one fails the shard at once
    maps = {name: read_maps(row) for name, row in table.iterrows()} if background_floor is not None else {}
    found, total, dark = [], 0, 0
    start = time.time()
    with atomic_directory(args.outdir) as tmp:
        for name, row in progress(table.iterrows(), "pick", total=len(table)):
            image, _ = read_micrograph(manifest.working_path(row))
            xy, score = candidates(net, image, min_distance, edge, min(args.floor, threshold), args.tile, device)
            score = as_written(score)  # the threshold keeps what readers of the files see above it
            if background_floor is not None:
                light = kept(values_at(maps[name], xy, ckpt["particle_px"]), background_floor, ceiling)
                dark += int((~light & (score >= threshold)).sum())
                xy, score = xy[light], score[light]
            xy = xy * [row["scale_x"], row["scale_y"]]
            keep = score >= threshold
            write_star(tmp / f"{name}.star", picks_table(xy[keep], score[keep]), float_format="%.3f")
            cand = picks_table(xy, score)
            cand.insert(0, MIC, row["source"])
            found.append(cand)
            total += int(keep.sum())
        merged = pd.concat(found, ignore_index=True) if found else picks_table(np.zeros((0, 2)), [])
        write_star(tmp / f"{CANDIDATES}.star", merged, float_format="%.3f")
    elapsed = time.time() - start
    if background_floor is not None:
        beyond = f"darker than {background_floor:.3f}" + ("" if ceiling is None else f" or more textured than {ceiling:.3f}")
        print(f"dropped {dark} maxima above the threshold on background {beyond} (carbon, thick ice)")
    print(
        f"picked {total} particles in {len(table)} micrographs at threshold {threshold:.4f}, {spacing:.3f} diameter apart "
        f"({elapsed:.1f} s, {len(table) / max(elapsed, 1e-9):.2f} micrographs/s) -> {args.outdir}"
    )
