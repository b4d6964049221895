"""Tabulate and plot precision, recall, F1 and AP against the training round.

Example:
    deepem rounds results/round_*/metrics.json -o results/rounds.tsv --plot results/rounds.png \\
        --html results/rounds.html
"""

import contextlib
import json
import re
from pathlib import Path

import pandas as pd

from deepem.errors import DeepEMError
from deepem.io.atomic import atomic_path, write_text
from deepem.pages import metrics_page
from deepem.plots import metrics_by_round

COLUMNS = ["precision", "recall", "f1", "average_precision", "best_f1"]


def add_args(parser):
    parser.add_argument("metrics", nargs="+", help="round_<n>/metrics.json files")
    parser.add_argument("-o", "--output", required=True, help="TSV table")
    parser.add_argument("--plot", help="PNG plot")
    parser.add_argument("--html", help="the table as an HTML page (for the report)")


def read_round(path):
    """``(round, metrics report)`` of a ``round_<n>/metrics.json``; an error naming the file and the fix."""
    found = re.findall(r"round_(\d+)", str(Path(path).resolve()))
    if not found:
        raise DeepEMError(f"{path}: no round_<n> folder in its path; give the round_<n>/metrics.json of 'deepem evaluate'")
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DeepEMError(f"{path}: not a readable metrics file ({exc}); rerun 'deepem evaluate'") from None
    groups = [g for g in ("all", "held_out") if isinstance(report, dict) and g in report]
    if not groups or any(not isinstance(report[g], dict) or set(COLUMNS) - set(report[g]) for g in groups):
        raise DeepEMError(f"{path}: not the metrics.json of 'deepem evaluate' (no {', '.join(COLUMNS)}); rerun it")
    return int(found[-1]), {g: report[g] for g in groups}  # the innermost round_<n> folder


def main(args):
    rows, seen = [], {}
    for path in args.metrics:
        n, report = read_round(path)
        if n in seen:
            raise DeepEMError(f"{path}: round {n} again (also {seen[n]}); give each round's metrics.json once")
        seen[n] = path
        for group, metrics in report.items():
            rows.append({"round": n, "micrographs": group, **{k: metrics[k] for k in COLUMNS}})
    table = pd.DataFrame(rows).sort_values(["micrographs", "round"], kind="stable")
    with contextlib.ExitStack() as stack:  # every output is renamed into place only once all are written
        table.to_csv(stack.enter_context(atomic_path(args.output)), sep="\t", index=False, float_format="%.4f")
        if args.plot:
            metrics_by_round(table, COLUMNS, stack.enter_context(atomic_path(args.plot)))
        if args.html:
            write_text(stack.enter_context(atomic_path(args.html)), metrics_page(table))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
