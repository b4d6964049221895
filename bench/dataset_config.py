"""Write a deepem config for a dataset with truth (the ../shared/data layout) and its train/test split.

Training labels are the truth of the `train` micrographs (optionally a random fraction of it,
as people label), plus their `negatives` when the dataset has them; `truth` covers all.

    python bench/dataset_config.py ../shared/data/syn19hc -o /tmp/syn19hc [--label-fraction 0.3]
    snakemake --cores 2 --configfile /tmp/syn19hc/config.yaml
"""

import argparse
import glob
from pathlib import Path

import numpy as np
import yaml

from deepem.io.coords import picks_table, read_coordinates, write_star


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="folder with dataset.yaml")
    parser.add_argument("-o", "--outdir", required=True)
    parser.add_argument("--label-fraction", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra config values (YAML)")
    args = parser.parse_args()
    root = Path(args.dataset).resolve()
    spec = yaml.safe_load((root / "dataset.yaml").read_text())
    out = Path(args.outdir).resolve()
    rng = np.random.default_rng(args.seed)
    truth = {Path(f).stem: f for f in glob.glob(str(root / spec["truth"]))}
    for name in spec["train"]:
        xy = read_coordinates(truth[name])
        keep = np.sort(rng.choice(len(xy), int(round(args.label_fraction * len(xy))), replace=False))
        write_star(out / "labels" / f"{name}.star", picks_table(xy[keep]))
    config = {
        "micrographs": str(root / spec["micrographs"]),
        "pixel_size": spec["pixel_size"],
        "particle_diameter": spec["particle_diameter"],
        "labels": {
            "positives": str(out / "labels" / "*.star"),
            "negatives": [str(root / "negatives" / f"{n}.star") for n in spec["train"]] if "negatives" in spec else None,
        },
        "truth": str(root / spec["truth"]),
        "results": str(out / "results"),
        "demo": None,
    }
    for item in args.set:  # a dotted KEY sets a nested value: labels.complete=false
        key, value = item.split("=", 1)
        *parents, leaf = key.split(".")
        target = config
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = yaml.safe_load(value)
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    print(out / "config.yaml")


if __name__ == "__main__":
    main()
