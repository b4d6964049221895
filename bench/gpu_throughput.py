"""Picking throughput on a GPU node: deepem against Topaz, both on CUDA, same micrographs, same run.

The micrographs given are cycled under new names to --count files. Each tool then preprocesses
and picks them all in one process per stage, as a long shard does, with the same commands as
`bench/compare_topaz.py` (same threads; Topaz at its recommended ~4 A/px). deepem preprocesses
on the CPU (FFT cropping) and scores on CUDA; Topaz's preprocess and extract both get the GPU
(-d 0). deepem's pick is also timed on the node's CPU cores for reference. Prints seconds per
micrograph and micrographs per second per stage, and the Topaz / deepem ratio; writes
OUTDIR/gpu_throughput.tsv. With --truth, deepem's CUDA picks of the micrographs given (the first
cycle) are scored against their truth with the bench's scorer.

    python bench/gpu_throughput.py ../shared/data/bgal/micrographs/*.jpg --pixel-size 1.77 \\
        --diameter 191 --model MODEL.pt --topaz-model MODEL.sav --count 100 -o /tmp/gpu
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from compare_topaz import (
    cycled, mrc_copies, pick_command, preprocess_command, read_topaz, schema_defaults, score, topaz_extract_command,
    topaz_preprocess_command,
)
from deepem.io.coords import read_by_micrograph, read_coordinates


def timed(name, cmd, log):
    """Run ``cmd``; its output goes to ``log``; returns wall seconds."""
    cmd = [str(c) for c in cmd]
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"{name} failed (exit {proc.returncode}); see {log}")
    print(f"  [{name}] {seconds:.1f} s", flush=True)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("micrographs", nargs="+")
    parser.add_argument("--pixel-size", type=float, required=True)
    parser.add_argument("--diameter", type=float, required=True, help="particle diameter in A")
    parser.add_argument("--model", required=True, help="deepem model.pt")
    parser.add_argument("--topaz-model", required=True, help="Topaz model (.sav) or a pretrained name")
    parser.add_argument("--topaz", default="topaz", help="Topaz executable")
    parser.add_argument("--count", type=int, default=100, help="micrographs per stage (the given ones, cycled)")
    parser.add_argument("--threads", type=int, default=8, help="CPU threads for every stage of both tools")
    parser.add_argument("--topaz-patch", type=int, default=512, help="topaz extract --patch-size (as compare_topaz)")
    parser.add_argument("--truth", help="folder of NAME.star truth files for the micrographs given")
    parser.add_argument("-o", "--outdir", required=True)
    args = parser.parse_args()

    out = Path(args.outdir).resolve()
    shutil.rmtree(out, ignore_errors=True)
    (out / "logs").mkdir(parents=True)
    deepem = Path(sys.executable).parent / "deepem"
    cfg = schema_defaults()
    mics = {Path(m).stem: Path(m).resolve() for m in args.micrographs}
    folders = {p.parent for p in mics.values()}
    if len(folders) != 1:
        sys.exit("give micrographs from one folder")
    mrc, _ = mrc_copies(folders.pop(), {"micrographs": "*"}, sorted(mics), out / "mrc")  # Topaz reads MRC only
    scale = max(1, round(4.0 / args.pixel_size))
    radius = max(1, round(0.5 * args.diameter / (args.pixel_size * scale)))
    names = sorted(mics)
    inputs = {tool: cycled(src, args.count, out / tool / "in") for tool, src in (("deepem", mics), ("topaz", mrc))}

    import torch

    print(f"{args.count} micrographs ({len(mics)} distinct), {args.threads} threads, GPU {torch.cuda.get_device_name(0)}")
    s = {}
    s["deepem preprocess (CPU)"] = timed("deepem preprocess", preprocess_command(
        deepem, inputs["deepem"], out / "deepem/pre", args.pixel_size, args.diameter, cfg, args), out / "logs/dp.log")
    for device in ("cuda", "cpu"):
        s[f"deepem pick ({device})"] = timed(f"deepem pick {device}", pick_command(
            deepem, args.model, out / "deepem/pre", out / f"deepem/picks_{device}", cfg, args, device),
            out / f"logs/pick_{device}.log")
    s["topaz preprocess (cuda)"] = timed("topaz preprocess", topaz_preprocess_command(
        args.topaz, inputs["topaz"], out / "topaz/pre", scale, args, gpu=0), out / "logs/tp.log")
    s["topaz extract (cuda)"] = timed("topaz extract", topaz_extract_command(
        args.topaz, args.topaz_model, sorted((out / "topaz/pre").glob("*.mrc")), out / "topaz/picks.txt", radius, scale,
        args, gpu=0), out / "logs/tx.log")
    assert len(read_topaz(out / "topaz/picks.txt")) == args.count, "Topaz did not pick every micrograph"

    n = args.count
    deepem_s = s["deepem preprocess (CPU)"] + s["deepem pick (cuda)"]
    topaz_s = s["topaz preprocess (cuda)"] + s["topaz extract (cuda)"]
    rows = [(k, v / n) for k, v in s.items()]
    rows += [("deepem total (GPU pick)", deepem_s / n), ("topaz total (GPU)", topaz_s / n)]
    lines = [f"{k}\t{v:.4f}\t{1 / v:.2f}" for k, v in rows] + [f"topaz / deepem\t{topaz_s / deepem_s:.2f}\t"]
    text = "stage\ts_per_micrograph\tmicrographs_per_s\n" + "\n".join(lines) + "\n"
    (out / "gpu_throughput.tsv").write_text(text)
    print(text, end="")

    if args.truth:
        radius_px = 0.5 * args.diameter / args.pixel_size
        truth = {n: read_coordinates(Path(args.truth) / f"{n}.star") for n in names}
        first = {f"{n}_{i:04d}": n for i, n in enumerate(names)}  # the first cycle holds each micrograph once
        for device in ("cuda", "cpu"):
            ranked = {first[k]: v for k, v in read_by_micrograph(out / f"deepem/picks_{device}/candidates.star").items()
                      if k in first}
            at = {first[k]: (xy, np.ones(len(xy))) for k in first
                  for xy in [read_coordinates(out / f"deepem/picks_{device}/{k}.star")]}
            metrics, _ = score(at, ranked, truth, radius_px)
            print(f"deepem picks ({device}) of the {len(names)} micrographs given: F1 {metrics['f1']:.4f}, "
                  f"AP {metrics['average_precision']:.4f}, {metrics['picks']} picks")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
