"""Time a Snakemake dry run (DAG building) of the workflow for 20,000 micrographs; target: 60 s.

Creates empty placeholder micrographs mic_00000.mrc ... (a dry run never opens them: the
workflow's parse-time code only globs and names files) and one label file for the first, writes
a config with 64 shards and 1 round, and times `snakemake -n` from the repository root.

    python bench/dryrun_scale.py [--micrographs 20000] [--shards 64] [--target 60]
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

LABEL = """
data_

loop_
_rlnCoordinateX #1
_rlnCoordinateY #2
512.0 512.0
1024.0 700.0
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--micrographs", type=int, default=20000)
    parser.add_argument("--shards", type=int, default=64)
    parser.add_argument("--target", type=float, default=60.0, help="seconds")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="deepem-dryrun-") as tmp:
        tmp = Path(tmp)
        mics, labels = tmp / "micrographs", tmp / "labels"
        mics.mkdir()
        labels.mkdir()
        for i in range(args.micrographs):
            (mics / f"mic_{i:05d}.mrc").touch()
        (labels / "mic_00000_manualpick.star").write_text(LABEL)
        config = {
            "micrographs": str(mics / "*.mrc"),
            "particle_diameter": 150,
            "labels": {"positives": str(labels / "*.star"), "negatives": None},
            "shards": args.shards,
            "rounds": 1,
            "demo": None,
            "results": str(tmp / "results"),
        }
        (tmp / "config.yaml").write_text(yaml.safe_dump(config))

        env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
        cmd = ["snakemake", "-n", "--cores", "1", "--configfile", str(tmp / "config.yaml")]
        started = time.perf_counter()
        result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            sys.exit(f"dry run failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        output = result.stdout + result.stderr
        total = re.search(r"^total\s+(\d+)", output, re.M)
        stats = output[output.find("Job stats:"):]
        counts = re.findall(r"^(\w+)\s+(\d+)$", stats[: stats.find("\ntotal")], re.M)  # the first table
        print(f"micrographs: {args.micrographs}, shards: {args.shards}")
        print("jobs:", ", ".join(f"{rule} {n}" for rule, n in counts if rule != "total"))
        print(f"total jobs: {total[1] if total else '?'}")
        verdict = "OK" if wall <= args.target else "OVER"
        print(f"dry run wall time: {wall:.1f} s (target {args.target:.0f} s) {verdict}")
        sys.exit(0 if wall <= args.target else 1)


if __name__ == "__main__":
    main()
