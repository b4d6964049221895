"""The Snakemake report of a finished run: one self-contained HTML file whose figures render."""

import base64
import io
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import deepem
from conftest import ROOT, snakemake

ARTIFACTS = ROOT / "tests" / "artifacts"  # gitignored; the browser's screenshot is kept here
BROWSERS = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
CATEGORIES = {"Training", "Scores", "Picks", "Metrics", "Run"}

# Appended to a copy of the report. It does what clicking a gallery result in the menu does
# (the app's own setView, as result_view_button.js calls it), has the browser decode every
# embedded image, and leaves the counts in a <div> that --dump-dom shows.
PROBE = """<script>
(function probe() {
  if (typeof app === "undefined") { setTimeout(probe, 100); return; }
  const images = Object.keys(results).filter(p => results[p].mime_type.startsWith("image/"));
  const shown = images.find(p => p.includes("/gallery/"));
  app.setView({content: "img", contentPath: results[shown].data_uri, resultPath: shown});
  let decoded = 0, failed = 0;
  images.forEach(p => {
    const img = new Image(); img.onload = () => decoded++; img.onerror = () => failed++; img.src = results[p].data_uri;
  });
  (function report() {
    const rendered = [...document.querySelectorAll("#app img")].filter(
      i => i.complete && i.naturalWidth > 0 && i.src.startsWith("data:image/png"));
    if (decoded + failed < images.length || !rendered.length) { setTimeout(report, 100); return; }
    const mark = document.createElement("div");
    mark.id = "deepem-probe";
    Object.assign(mark.dataset, {images: images.length, decoded, failed, rendered: rendered.length,
                                 width: rendered[0].naturalWidth});
    document.body.appendChild(mark);
  })();
})();
</script>
"""


@pytest.fixture(scope="module")
def report(finished_run):
    tmp, _ = finished_run
    path = tmp / "report.html"
    start = time.time()
    snakemake(tmp / "config.yaml", "--report", str(path))
    print(f"snakemake --report: {time.time() - start:.1f} s, {path.stat().st_size / 1e6:.1f} MB")
    return path


def embedded(html, name):
    """The JSON the report's app reads from ``var NAME = ...;``."""
    return json.loads(re.search(rf"^\s*var {name} = (\{{.*\}});$", html, re.M).group(1))


def expected_files(results, tiny_dataset):
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    n_mics = len(list((tiny_dataset / "micrographs").glob("*.mrc")))
    gallery = sorted((results / "round_1" / "gallery").glob("*.png"))
    assert len(gallery) == min(schema["properties"]["gallery"]["default"], n_mics)
    names = ["round_1/model/training.png", "round_1/scores.png", "rounds.png", "rounds.html", "provenance.json",
             "provenance.html"]
    return [results / n for n in names] + gallery


def test_report_embeds_every_figure_as_a_data_uri(report, finished_run, tiny_dataset):
    tmp, _ = finished_run
    html = report.read_text()
    entries = embedded(html, "results")
    files = expected_files(tmp / "results", tiny_dataset)
    assert {Path(p).resolve() for p in entries} == {f.resolve() for f in files}
    for path, entry in entries.items():
        uri = entry["data_uri"]
        assert uri.startswith(f"data:{entry['mime_type']};"), (path, uri[:80])
        data = base64.b64decode(uri.split("base64,", 1)[1])
        assert data == Path(path).read_bytes(), path  # the file itself, so the HTML works copied alone
        if path.endswith(".png"):
            with Image.open(io.BytesIO(data)) as image:
                assert image.format == "PNG" and min(image.size) > 200, (path, image.size)
    assert {c for c in embedded(html, "categories")} == CATEGORIES


def test_report_pages_show_versions_config_and_metrics(finished_run):
    tmp, _ = finished_run
    results = tmp / "results"
    provenance = (results / "provenance.html").read_text()
    record = json.loads((results / "provenance.json").read_text())
    assert f"<td>{deepem.__version__}</td>" in provenance and f"<td>{record['versions']['torch']}</td>" in provenance
    assert f'"particle_diameter": {record["config"]["particle_diameter"]}' in provenance
    rows = (results / "rounds.tsv").read_text().splitlines()
    metrics = (results / "rounds.html").read_text()
    assert metrics.count("<tr") == len(rows)  # header + one row per round and micrograph group
    f1 = json.loads((results / "round_1" / "metrics.json").read_text())["all"]["f1"]
    assert f"<td>{f1:.3f}</td>" in metrics


def test_report_renders_its_images_in_headless_chromium(report, tmp_path):
    browser = next(filter(None, map(shutil.which, BROWSERS)), None)
    if browser is None:
        pytest.skip(f"no browser ({', '.join(BROWSERS)}) on PATH; Debian: apt-get install -y chromium")
    head, body_end, tail = report.read_text().rpartition("</body>")
    page = tmp_path / "report.html"  # a copy alone in an empty folder
    page.write_text(head + PROBE + body_end + tail)
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--window-size=1400,1000", "--virtual-time-budget=20000"]
    dom = subprocess.run([*command, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180).stdout
    mark = re.search(r'<div id="deepem-probe"([^>]*)>', dom)
    assert mark, "the report did not show a gallery image"
    counts = {k: int(v) for k, v in re.findall(r'data-(\w+)="(\d+)"', mark.group(1))}
    n_images = sum(e["mime_type"].startswith("image/") for e in embedded(report.read_text(), "results").values())
    assert counts["decoded"] == counts["images"] == n_images and counts["failed"] == 0, counts
    assert counts["rendered"] == 1 and counts["width"] > 500, counts
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    subprocess.run([*command, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=180, check=True)
    print(f"screenshot of the report: {shot}")
    content = np.asarray(Image.open(shot).convert("RGB"))[:, 300:]  # right of the report's menu
    colours = len(np.unique(content.reshape(-1, 3), axis=0))
    assert colours > 5000, f"{shot}: {colours} colours; a blank or text-only page, not a micrograph"
