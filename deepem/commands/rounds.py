"""Tabulate and plot precision, recall, F1 and AP against the training round.

Example:
    deepem rounds results/round_*/metrics.json -o results/rounds.tsv --plot results/rounds.png \\
        --html results/rounds.html
"""

import json
import re
from pathlib import Path

import pandas as pd

from deepem.io.atomic import atomic_path, write_text
from deepem.pages import metrics_page
from deepem.plots import metrics_by_round

COLUMNS = ["precision", "recall", "f1", "average_precision", "best_f1"]


def add_args(parser):
    parser.add_argument("metrics", nargs="+", help="round_<n>/metrics.json files")
    parser.add_argument("-o", "--output", required=True, help="TSV table")
    parser.add_argument("--plot", help="PNG plot")
    parser.add_argument("--html", help="the table as an HTML page (for the report)")


def main(args):
    rows = []
    for path in args.metrics:
        n = int(re.search(r"round_(\d+)", str(Path(path).resolve())).group(1))
        report = json.loads(Path(path).read_text())
        for group in ("all", "held_out"):
            if group in report:
                rows.append({"round": n, "micrographs": group, **{k: report[group][k] for k in COLUMNS}})
    table = pd.DataFrame(rows).sort_values(["micrographs", "round"], kind="stable")
    with atomic_path(args.output) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    if args.plot:
        metrics_by_round(table, COLUMNS, args.plot)
    if args.html:
        write_text(args.html, metrics_page(table))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
