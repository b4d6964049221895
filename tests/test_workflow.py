"""The real workflow, run by real Snakemake on a tiny simulated dataset."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, run
from deepem.io.coords import MIC, SCORE, X, Y, read_coordinates, read_star_table
from deepem.metrics import match, summarise


def write_config(tmp, data, **changes):
    config = {
        "micrographs": str(data / "micrographs" / "*.mrc"),
        "particle_diameter": 150,
        "labels": {"positives": str(data / "labels" / "*.star"), "negatives": None},
        "truth": str(data / "truth" / "*.star"),
        "shards": 3,
        "results": str(tmp / "results"),
    }
    config.update(changes)
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake(config, *extra, check=True):
    return run(["snakemake", "--cores", "2", "--configfile", str(config), *extra], check=check)


@pytest.fixture(scope="module")
def finished_run(tiny_dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    config = write_config(tmp, tiny_dataset)
    result = snakemake(config)
    return tmp, result


def test_pipeline_writes_merged_picks_for_every_micrograph(finished_run, tiny_dataset):
    tmp, result = finished_run
    picks = read_star_table(tmp / "results" / "picks.star")
    assert list(picks.columns) == [MIC, X, Y, SCORE]
    mics = sorted((tiny_dataset / "micrographs").glob("*.mrc"))
    assert sorted(set(picks[MIC])) == [str(m) for m in mics]
    assert picks[X].between(0, 1023).all() and picks[Y].between(0, 1023).all()
    per_mic = sorted((tmp / "results" / "round_1" / "picks").glob("*/*.star"))
    assert sorted(p.stem for p in per_mic if p.stem != "candidates") == [m.stem for m in mics]
    assert "gathered" in result.stdout + result.stderr


def test_picks_are_far_better_than_chance(finished_run, tiny_dataset):
    tmp, result = finished_run
    metrics = json.loads((tmp / "results" / "round_1" / "metrics.json").read_text())
    assert "precision" in result.stdout  # the evaluate step prints its summary
    # chance: the same number of picks, uniformly placed
    rng = np.random.default_rng(0)
    hits, n_truth = [], 0
    picks = read_star_table(tmp / "results" / "picks.star")
    for truth_file in sorted((tiny_dataset / "truth").glob("*.star")):
        truth = read_coordinates(truth_file)
        n = int((picks[MIC].map(lambda p: Path(p).stem) == truth_file.stem).sum())
        hits.append(match(rng.uniform(0, 1024, (n, 2)), truth, 37.5))
        n_truth += len(truth)
    chance = summarise(np.concatenate(hits), np.zeros(sum(map(len, hits))), n_truth)["f1"]
    assert metrics["all"]["f1"] >= 0.6, metrics
    assert metrics["all"]["f1"] > 3 * chance


def test_rerun_has_nothing_to_do_and_outputs_have_logs(finished_run):
    tmp, _ = finished_run
    dry = snakemake(tmp / "config.yaml", "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    logs = tmp / "results" / "logs"
    assert (logs / "round_1" / "train.log").read_text().count("epoch") >= 30
    assert (tmp / "results" / "round_1" / "model" / "training.png").stat().st_size > 1000


def test_lint_is_clean():
    result = run(["snakemake", "--lint"])
    assert "Congratulations" in result.stdout + result.stderr


# --- bad input: one clear line naming the file, non-zero exit, no partial outputs -------------


def _copy(data, tmp):
    shutil.copytree(data, tmp / "data")
    return tmp / "data"


def case_missing_micrograph(data):
    return {"micrographs": [str(data / "micrographs" / "demo_000.mrc"), str(data / "micrographs" / "nope.mrc")]}, "nope.mrc: micrograph file not found"


def case_not_mrc(data):
    (data / "micrographs" / "demo_001.mrc").write_text("not an MRC file\n" * 200)
    return {}, "demo_001.mrc: not a readable MRC file"


def case_label_matching_nothing(data):
    shutil.copy(data / "labels" / "demo_000_manualpick.star", data / "labels" / "stray.star")
    return {}, "stray.star: positive label file matches no micrograph"


def case_coordinates_outside(data):
    path = data / "labels" / "demo_000_manualpick.star"
    path.write_text(path.read_text() + "5000.0\t12.0\n")
    return {}, "demo_000_manualpick.star: 1 coordinates outside the 1024 x 1024 micrograph"


def case_wrong_type(data):
    return {"shards": "many"}, "shards"


def case_no_labels(data):
    for f in (data / "labels").glob("*.star"):
        f.unlink()
    return {}, "no positive label files match this pattern"


BAD = [case_missing_micrograph, case_not_mrc, case_label_matching_nothing, case_coordinates_outside,
       case_wrong_type, case_no_labels]


@pytest.mark.parametrize("case", BAD, ids=[c.__name__[5:] for c in BAD])
def test_bad_input_fails_clearly_without_partial_outputs(case, tiny_dataset, tmp_path):
    data = _copy(tiny_dataset, tmp_path)
    changes, message = case(data)
    config = write_config(tmp_path, data, **changes)
    result = snakemake(config, check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in out, out[-3000:]
    results = tmp_path / "results"
    assert not (results / "picks.star").exists()
    assert not [p for p in results.rglob("*") if ".tmp" in p.name], "temporary output left behind"
    assert not list(results.rglob("patches.npz")) and not list(results.rglob("model.pt"))
    assert not list(results.rglob("preprocessed/*/demo_001.mrc")) or "demo_001" not in message


# --- recursive training rounds ------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_rounds(tiny_dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rounds")
    config = write_config(tmp, tiny_dataset, rounds=2)
    snakemake(config)
    return tmp, config


def test_round_two_trains_on_round_one_picks_and_hard_negatives(two_rounds):
    tmp, _ = two_rounds
    results = tmp / "results"
    verified = read_star_table(results / "round_1" / "verified.star")
    verdicts = set(verified["deepemVerdict"])
    assert "confident" in verdicts and verdicts & {"outlier", "low_score"}
    meta = [json.loads(str(np.load(results / f"round_{r}" / "patches.npz")["meta"])) for r in (1, 2)]
    assert meta[0]["from_previous_round"] == {"positives": 0, "negatives": 0}
    n_confident = int((verified["deepemVerdict"] == "confident").sum())
    n_rejected = int(verified["deepemVerdict"].isin(["outlier", "low_score"]).sum())
    assert meta[1]["from_previous_round"] == {"positives": n_confident, "negatives": n_rejected}
    assert meta[1]["counts"]["positive"] == meta[0]["counts"]["positive"] + n_confident
    assert (results / "picks.star").read_bytes() == (results / "round_2" / "picks.star").read_bytes()
    table = (results / "rounds.tsv").read_text()
    assert table.splitlines()[0].startswith("round\tmicrographs\tprecision")
    assert (results / "rounds.png").stat().st_size > 1000


def test_one_more_round_reruns_only_that_round(two_rounds):
    tmp, config = two_rounds
    dry = snakemake(config, "-n", "--config", "rounds=3")
    jobs = [line.split()[1].rstrip(":") for line in dry.stdout.splitlines() if line.startswith("rule ")]
    wildcard_rounds = {line.split("round=")[1].split(",")[0] for line in dry.stdout.splitlines() if "round=" in line}
    assert wildcard_rounds == {"2", "3"}  # round 2 only for its verification, new with round 3
    assert "preprocess" not in jobs
    assert jobs.count("train") == 1 and jobs.count("verify") == 1
