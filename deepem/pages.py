"""Small self-contained HTML pages for the Snakemake report, which shows them in a frame."""

import html
import json

import pandas as pd

STYLE = (
    "body{font-family:sans-serif;font-size:14px;margin:1em;background:#fff;color:#111}"
    "table{border-collapse:collapse;margin-bottom:1em}th,td{border:1px solid #bbb;padding:2px 8px}"
    "td{text-align:right}pre{font-size:12px}"
)


def page(title, body):
    title = html.escape(title)
    return (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{title}</title><style>{STYLE}</style></head>"
        f"<body><h2>{title}</h2>\n{body}\n</body></html>\n"
    )


def metrics_page(table):
    """Precision, recall, F1 and AP per round and micrograph group, as one table."""
    return page("Picks against the truth, by round", table.to_html(index=False, float_format=lambda v: f"{v:.3f}"))


def provenance_page(record):
    """Versions, host, device, command line and config of a run (``deepem provenance``'s record)."""
    run = {k: record[k] for k in ("command", "host", "device", "cuda")} | {"input files": len(record["inputs"])}
    return page(
        "Provenance",
        "<h3>Versions</h3>" + pd.Series(record["versions"], name="version").to_frame().to_html()
        + "<h3>Run</h3>" + pd.Series(run, name="").to_frame().to_html(header=False)
        + "<h3>Config</h3><pre>" + html.escape(json.dumps(record["config"], indent=1, sort_keys=True), quote=False) + "</pre>",
    )
