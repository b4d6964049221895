"""Draw the highest-scoring false positives of a candidates file against the truth, to look at.

Each panel is a crop of the micrograph around one false positive (red circle, the particle
diameter) with the truth particles nearby (green), titled with its score and its distance to the
nearest truth particle in diameters. Matching is the bench's: one-to-one within half a diameter,
pooled over the micrographs given.

    python bench/false_positives.py ../shared/data/bgal /tmp/cv/base-1/picks/candidates.star \
        --micrographs Falcon_2012_06_12-15_27_22_0 Falcon_2012_06_12-15_30_21_0 -o fp.png
"""

import argparse
import sys
from pathlib import Path

import matplotlib
import numpy as np
import yaml
from scipy.spatial import cKDTree

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from compare_topaz import pooled, truth_of  # noqa: E402

from deepem.io.coords import read_by_micrograph  # noqa: E402
from deepem.io.micrograph import read_micrograph  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", type=Path, help="folder with dataset.yaml (../shared/data layout)")
    p.add_argument("candidates", type=Path, help="ranked picks with a micrograph column (deepem's candidates.star)")
    p.add_argument("--micrographs", nargs="+", required=True, help="micrograph names to look at (never a test split you tune on)")
    p.add_argument("--count", type=int, default=40, help="false positives to draw (default 40)")
    p.add_argument("-o", "--output", type=Path, required=True, help="PNG")
    a = p.parse_args()
    spec = yaml.safe_load(open(a.dataset / "dataset.yaml"))
    diameter = spec["particle_diameter"] / spec["pixel_size"]
    ranked = {Path(k).stem: v for k, v in read_by_micrograph(a.candidates).items()}
    truth = truth_of(a.dataset, spec, a.micrographs)
    trees = {n: cKDTree(t) for n, t in truth.items()}
    files = {Path(f).stem: f for f in a.dataset.glob(spec["micrographs"])}
    hits, scores, _ = pooled({n: ranked[n] for n in a.micrographs}, truth, 0.5 * diameter)
    where = [(n, xy) for n in a.micrographs for xy in ranked[n][0]]  # pooled's order: micrographs, then rows
    order = [i for i in np.argsort(-scores, kind="stable") if not hits[i]][: a.count]
    print(f"{int(hits.sum())} true of {len(hits)} candidates; drawing the {len(order)} best-scoring false ones")
    cols = 8
    rows = max(1, -(-len(order) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    images, half = {}, int(1.8 * diameter)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), order):
        name, (x, y) = where[i]
        if name not in images:
            images[name] = read_micrograph(files[name])[0]
        image = images[name]
        x0, y0 = max(0, int(x) - half), max(0, int(y) - half)
        ax.imshow(image[y0 : int(y) + half, x0 : int(x) + half], cmap="gray")
        near = trees[name].query([x, y])[0] / diameter
        ax.set_title(f"{scores[i]:.3f}, {near:.2f} d", fontsize=8)
        ax.add_patch(plt.Circle((x - x0, y - y0), diameter / 2, fill=False, color="red", lw=1.2))
        for tx, ty in truth[name][trees[name].query_ball_point([x, y], half + diameter, p=np.inf)]:
            ax.add_patch(plt.Circle((tx - x0, ty - y0), diameter / 2, fill=False, color="lime", lw=0.8))
    fig.suptitle(f"{a.candidates}: best-scoring false positives (red), truth (green)", fontsize=9)
    fig.tight_layout()
    fig.savefig(a.output, dpi=80)
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
