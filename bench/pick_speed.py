"""Picking speed on one CPU core: one 4096 x 4096 micrograph, read + preprocess + score + local maxima.

The peer, measured in the same run, is box-by-box scoring of the same windows (the original
DeepEM scan: cut every box, score it in its 4 rotations), timed on a sample of boxes and
scaled to the full stride-3 grid. Uses a bgal JPEG from ../shared/data when present, else a
simulated micrograph. Weights do not change the cost, so the net is untrained.

    python bench/pick_speed.py [--micrograph PATH --pixel-size 1.77 --diameter 191]
"""

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from deepem.background import kept, values_at
from deepem.commands.common import architecture
from deepem.picking import candidates
from deepem.io.micrograph import read_micrograph
from deepem.model import DeepEMNet
from deepem.picking import pad_for_scoring
from deepem.preprocess import preprocess

BGAL = Path(__file__).resolve().parents[2] / "shared/data/bgal/micrographs/Falcon_2012_06_12-15_43_48_0.jpg"


def simulated(tmp):
    from deepem.simulate import simulate_dataset

    simulate_dataset(tmp, n_micrographs=1, size=4096, pixel_size=1.77, particle_diameter=191, n_labelled=1)
    return Path(tmp) / "micrographs" / "demo_000.mrc"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--micrograph", type=Path)
    parser.add_argument("--pixel-size", type=float, default=1.77)
    parser.add_argument("--diameter", type=float, default=191)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tmp = tempfile.mkdtemp()
    path = args.micrograph or (BGAL if BGAL.exists() else simulated(tmp))
    particle_px = 32
    net = DeepEMNet(architecture(particle_px, 1.5, "modern"), "modern").eval()
    working = args.diameter / particle_px

    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        image, _ = read_micrograph(path)
        work, maps = preprocess(image, args.pixel_size, working, particle_px, workers=1)
        xy, score = candidates(net, work, 0.5 * particle_px, 0.5 * particle_px, 0.05)
        xy = xy[kept(values_at(maps, xy, particle_px), -1.0, 3.0)]  # the background bounds, as pick applies them (any values cost the same)
        times.append(time.perf_counter() - t0)
    fcn = min(times)

    padded, (rows, cols) = pad_for_scoring(work, net.arch.box)
    box = net.arch.box
    rng = np.random.default_rng(0)
    sample = 2000
    ij = rng.integers(0, [rows, cols], size=(sample, 2))
    t0 = time.perf_counter()
    with torch.no_grad():
        for start in range(0, sample, 500):
            boxes = torch.from_numpy(np.stack([padded[3 * i : 3 * i + box, 3 * j : 3 * j + box] for i, j in ij[start : start + 500]]))[:, None]
            sum(torch.sigmoid(net(torch.rot90(boxes, k, dims=(2, 3)))) for k in range(4))
    per_box = (time.perf_counter() - t0) / sample
    boxwise = per_box * rows * cols
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"micrograph: {path} {image.shape[1]} x {image.shape[0]}; working {work.shape[1]} x {work.shape[0]}, box {box} px")
    print(f"deepem fully convolutional pick (1 core, best of {args.repeats}): {fcn:.2f} s  (target < 3 s)")
    print(f"box-by-box scoring of the same {rows * cols} boxes (1 core, from {sample} sampled): {boxwise:.1f} s")
    print(f"speed-up: {boxwise / fcn:.1f}x; peak memory of this process {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
