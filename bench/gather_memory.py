"""Peak memory of `deepem gather` for 20,000 micrographs of 500 picks each; target: 1 GB.

Writes what the pick and preprocess shards would leave (per-micrograph NAME.star files and a
candidates.star in each pick shard directory, a manifest.tsv in each preprocessing shard
directory), runs `deepem gather` as the workflow does (merged STAR, candidates and every export
format: RELION index + per-micrograph files, cryoSPARC STAR, EMAN .box files, Topaz, CSV), and
reports its peak resident memory (getrusage RUSAGE_CHILDREN). With --stages it also runs the original, all-in-memory gather
(commit e4f718f: a list of per-micrograph tables, pd.concat, starfile.write, then the whole file
read back to drop its timestamp line) step by step and prints the peak after each, for comparison.

    python bench/gather_memory.py [--micrographs 20000] [--picks 500] [--shards 64] [--stages]
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from deepem.io.manifest import COLUMNS, UNITS

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HEADER = "\ndata_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnAutopickFigureOfMerit #3\n"
CAND_HEADER = ("\ndata_\n\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n"
               "_rlnAutopickFigureOfMerit #4\n")

STAGES = r"""
import resource, sys
from pathlib import Path
import pandas as pd
from deepem.io import manifest
from deepem.io.coords import MIC, read_star_table, write_star
from deepem.commands.gather import locate
def peak(what):
    print(f"  {what:<48} peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:8.0f} MB", flush=True)
picks_dirs, pre_dirs, out = sys.argv[1].split(","), sys.argv[2].split(","), sys.argv[3]
peak("imports (python, pandas, starfile)")
table = manifest.read(pre_dirs); peak("manifests read")
files = locate(list(table.index), picks_dirs, "{name}.star"); peak("pick files located")
parts = []
for name, path in files.items():
    p = read_star_table(path); p.insert(0, MIC, table.loc[name, "source"]); parts.append(p)
peak(f"{len(parts)} pick tables held in a list")
merged = pd.concat(parts, ignore_index=True); peak(f"concatenated ({len(merged)} rows)")
del parts; peak("list freed")
write_star(out, merged, float_format="%.3f"); peak("merged picks.star written (starfile + rewrite)")
cands = [read_star_table(Path(d) / "candidates.star") for d in picks_dirs]; peak("candidate tables read")
write_star(out + ".cand", pd.concat(cands, ignore_index=True), float_format="%.3f"); peak("candidates.star written")
"""


def write_inputs(tmp, n, picks, shards, rng):
    names = [f"mic_{i:05d}" for i in range(n)]
    # a pool of formatted pick rows; each file takes 500 of them (content does not matter for memory)
    pool = rng.uniform([16, 16, 0.5], [4080, 4080, 1.0], size=(20 * picks, 3))
    lines = [f"{x:.1f}\t{y:.1f}\t{s:.6f}\n" for x, y, s in pool]
    pick_dirs, pre_dirs = [], []
    for k in range(shards):
        item = f"{k + 1}-of-{shards}"
        pick_dir, pre_dir = tmp / "picks" / item, tmp / "preprocessed" / item
        pick_dir.mkdir(parents=True)
        pre_dir.mkdir(parents=True)
        pick_dirs.append(pick_dir)
        pre_dirs.append(pre_dir)
        rows, cand = [], [CAND_HEADER]
        for j, name in enumerate(names[k::shards]):
            start = (j * 37) % (len(lines) - picks)
            body = lines[start:start + picks]
            (pick_dir / f"{name}.star").write_text(HEADER + "".join(body) + "\n")
            source = f"/data/project/micrographs/{name}.mrc"
            cand.extend(f"{source}\t{line}" for line in body)
            rows.append(f"{name}\t{source}\t4096\t4096\t1.0\t1024\t1024\t4.0\t{UNITS}\t32\n")
        (pick_dir / "candidates.star").write_text("".join(cand) + "\n")
        (pre_dir / "manifest.tsv").write_text("\t".join(COLUMNS) + "\n" + "".join(rows))
    return pick_dirs, pre_dirs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--micrographs", type=int, default=20000)
    parser.add_argument("--picks", type=int, default=500, help="picks per micrograph")
    parser.add_argument("--shards", type=int, default=64)
    parser.add_argument("--target-mb", type=float, default=1024)
    parser.add_argument("--stages", action="store_true", help="also show the peak after each step of gather")
    args = parser.parse_args()
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}

    with tempfile.TemporaryDirectory(prefix="deepem-gather-") as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        pick_dirs, pre_dirs = write_inputs(tmp, args.micrographs, args.picks, args.shards, np.random.default_rng(0))
        print(f"wrote {args.micrographs} pick files x {args.picks} picks in {args.shards} shards "
              f"in {time.perf_counter() - started:.0f} s")

        cmd = ["deepem", "gather", "--picks", *map(str, pick_dirs), "--preprocessed", *map(str, pre_dirs),
               "-o", str(tmp / "picks.star"), "--candidates", str(tmp / "candidates.star"),
               "--relion-dir", str(tmp), "--cryosparc", str(tmp / "cryosparc_picks.star"), "--box", str(tmp / "box"),
               "--topaz", str(tmp / "topaz_picks.txt"), "--csv", str(tmp / "picks.csv"), "--diameter", "150"]
        started = time.perf_counter()
        result = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if result.returncode != 0:
            sys.exit(f"deepem gather failed ({result.returncode}):\n{result.stderr[-3000:]}")
        print(result.stdout.strip())
        size = (tmp / "picks.star").stat().st_size / 2**20
        verdict = "OK" if peak_mb <= args.target_mb else "OVER"
        print(f"deepem gather: {wall:.0f} s, peak RSS {peak_mb:.0f} MB (target {args.target_mb:.0f} MB) {verdict}; "
              f"picks.star {size:.0f} MB")

        if args.stages:
            print("for comparison, the in-memory gather of e4f718f, peak RSS after each step:")
            subprocess.run([sys.executable, "-c", STAGES, ",".join(map(str, pick_dirs)), ",".join(map(str, pre_dirs)),
                            str(tmp / "stages.star")], env=env, check=True)
        sys.exit(0 if peak_mb <= args.target_mb else 1)


if __name__ == "__main__":
    main()
