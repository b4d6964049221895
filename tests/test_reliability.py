"""Faults and reproducibility: killed jobs, refusals, byte-identical reruns, exact rerun triggers."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
import torch

from conftest import ROOT, local_env, run, snakemake, write_config
from deepem.io.coords import read_star_table
from deepem.io.micrograph import write_mrc
from deepem.model import DeepEMNet, save
from deepem.commands.common import architecture


def _jobs(output):
    return [line.split()[1].rstrip(":") for line in output.splitlines() if line.startswith("rule ")]


def _pick_files(results):
    return {p.relative_to(results): p.read_bytes() for p in sorted((results / "round_1" / "picks").glob("*/*.star"))}


def test_killed_pick_shard_is_redone_alone_and_results_are_byte_identical(finished_run, tiny_dataset, tmp_path):
    """The run starts from copies of the reference run's preprocessing and model (modification times
    kept), so only picking and what follows it run. That a whole run from scratch reproduces the
    reference byte for byte is tests/test_slurm.py's check (`make test-slurm`, which CI runs), and
    training's determinism tests/test_training.py's."""
    reference, _ = finished_run
    config = write_config(tmp_path, tiny_dataset)
    for done in ("preprocessed", "preprocessed_labelled", "round_1/patches.npz", "round_1/model"):
        source, copy = reference / "results" / done, tmp_path / "results" / done
        copy.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, copy)
    assert not set(_jobs(snakemake(config, "-n").stdout)) & {"preprocess", "preprocess_labelled", "extract", "train"}
    env = local_env()
    cmd = ["snakemake", "--cores", "2", "--configfile", str(config)]  # same threads as the reference run
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    picks = tmp_path / "results" / "round_1" / "picks"
    killed = None
    deadline = time.time() + 600  # minutes on a loaded 2-core machine
    while proc.poll() is None and killed is None and time.time() < deadline:
        done = [p for p in picks.glob("*-of-3") if p.is_dir()] if picks.exists() else []
        listing = subprocess.run(["pgrep", "-af", f"deepem pick .*{picks}"], capture_output=True, text=True).stdout
        # a shard still at work: its output directory does not exist yet
        running = [
            line.split()[0] for line in listing.splitlines()
            if "bash" not in line.split(" -o ")[0] and not Path(line.split(" -o ")[1].split()[0]).exists()
        ]  # the Python process itself, not Snakemake's bash wrapper
        if done and running:
            os.kill(int(running[0]), signal.SIGKILL)
            killed = running[0]
        time.sleep(0.02)
    out = proc.communicate(timeout=300)[0]
    assert killed is not None, f"no pick shard was caught running; Snakemake said:\n{out[-3000:]}"
    assert proc.returncode != 0, out[-2000:]
    assert not (tmp_path / "results" / "picks.star").exists()
    finished = [p for p in picks.glob("*-of-3") if p.is_dir()]
    assert 1 <= len(finished) <= 2
    rerun = snakemake(config, "-n")
    jobs = _jobs(rerun.stdout)
    assert jobs.count("pick") == 3 - len(finished) and "train" not in jobs and "preprocess" not in jobs
    snakemake(config)
    assert _pick_files(tmp_path / "results") == _pick_files(reference / "results")
    assert (tmp_path / "results" / "picks.star").read_bytes() == (reference / "results" / "picks.star").read_bytes()
    assert not [p for p in picks.iterdir() if ".tmp" in p.name], "stale temporary directory left behind"


def test_changed_parameter_reruns_exactly_the_affected_jobs(finished_run):
    tmp, _ = finished_run
    dry = snakemake(tmp / "config.yaml", "-n", "--config", "min_distance=0.6")  # training mines and calibrates at it
    jobs = sorted(set(_jobs(dry.stdout)))
    assert jobs == [
        "all", "evaluate", "final_picks", "gallery", "gather", "pick", "provenance", "rounds_summary", "score_histogram",
        "train",
    ]
    dry = snakemake(tmp / "config.yaml", "-n", "--config", "threshold=0.6")  # picking only: training stays
    assert sorted(set(_jobs(dry.stdout))) == [
        "all", "evaluate", "final_picks", "gallery", "gather", "pick", "provenance", "rounds_summary", "score_histogram",
    ]
    dry = snakemake(tmp / "config.yaml", "-n", "--config", "background_ratio=3")
    assert {"extract", "train", "pick"} <= set(_jobs(dry.stdout)) and "preprocess" not in _jobs(dry.stdout)
    dry = snakemake(tmp / "config.yaml", "-n", "--config", f"relion_project={tmp}")
    assert sorted(set(_jobs(dry.stdout))) == [
        "all", "evaluate", "final_picks", "gallery", "gather", "provenance", "rounds_summary", "score_histogram"
    ]


def test_an_added_micrograph_without_labels_is_picked_without_training_again(finished_run, tiny_dataset, tmp_path):
    """Training reads its own copy of the labelled micrographs: the shards moving does not retrain."""
    import yaml

    tmp, _ = finished_run
    extra = tmp_path / "demo_009.mrc"
    shutil.copy(tiny_dataset / "micrographs" / "demo_003.mrc", extra)
    settings = yaml.safe_load((tmp / "config.yaml").read_text())
    settings["micrographs"] = [*[str(p) for p in sorted((tiny_dataset / "micrographs").glob("*.mrc"))], str(extra)]
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(settings))
    jobs = set(_jobs(snakemake(config, "-n").stdout))
    assert {"preprocess", "pick", "gather"} <= jobs
    assert not jobs & {"preprocess_labelled", "extract", "train"}


def _gather_without(finished_run, tmp_path, pattern, *outputs):
    """Gather a copy of the finished run's pick shards with the second file matching ``pattern`` removed;
    ``(gather's CompletedProcess, the removed file, a command that gathers them again)``."""
    tmp, _ = finished_run
    shards = tmp_path / "picks"
    shutil.copytree(tmp / "results" / "round_1" / "picks", shards)
    victim = sorted(shards.glob(pattern))[1]
    victim.unlink()
    command = ["deepem", "gather", "--picks", *map(str, sorted(shards.iterdir())), "--preprocessed",
               *map(str, sorted((tmp / "results" / "preprocessed").iterdir())), *map(str, outputs)]
    return run(command, check=False), victim, command


def test_gather_refuses_when_a_pick_file_is_missing(finished_run, tmp_path):
    result, victim, _ = _gather_without(finished_run, tmp_path, "*/demo_*.star", "-o", tmp_path / "m.star")
    assert result.returncode == 2
    assert f"no pick file for 1 micrographs, e.g. {victim.stem}" in result.stderr
    assert not (tmp_path / "m.star").exists()
    typo = run([*result.args[:3], str(tmp_path / "pickz"), *result.args[3:]], check=False)  # silently skipped before
    assert typo.returncode == 2 and f"{tmp_path / 'pickz'}: pick shard folder not found" in typo.stderr


def test_gather_writes_nothing_when_a_shard_has_no_candidates(finished_run, tmp_path):
    outputs = {"-o": tmp_path / "m.star", "--csv": tmp_path / "m.csv", "--candidates": tmp_path / "c.star",
               "--relion-dir": tmp_path / "relion"}
    result, victim, command = _gather_without(
        finished_run, tmp_path, "*/candidates.star", *[a for pair in outputs.items() for a in pair]
    )
    assert result.returncode == 2 and f"{victim}: missing (1 shards); rerun the pick step" in result.stderr
    assert not [path for path in outputs.values() if path.exists()]
    victim.write_text("data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n1 2\n")  # no score: found while writing
    result = run(command, check=False)
    assert result.returncode == 2 and f"{victim}: no rlnMicrographName column" in result.stderr
    assert not list(tmp_path.glob("m.*")) and not list(tmp_path.glob("c.*"))
    assert not [path for path in (tmp_path / "relion").rglob("*") if path.is_file()]  # at most its empty folder


def test_gather_refuses_a_shard_twice_stale_shards_and_damaged_pick_files(finished_run, tmp_path):
    tmp, _ = finished_run
    shards = tmp_path / "picks"
    shutil.copytree(tmp / "results" / "round_1" / "picks", shards)
    pre = [str(p) for p in sorted((tmp / "results" / "preprocessed").iterdir())]
    folders = sorted(shards.iterdir())
    outputs = {"-o": tmp_path / "m.star", "--csv": tmp_path / "m.csv", "--candidates": tmp_path / "c.star"}
    gather = ["deepem", "gather", "--preprocessed", *pre, *[str(a) for pair in outputs.items() for a in pair], "--picks"]
    result = run(gather + [*map(str, folders), f"{folders[0]}/"], check=False)
    assert result.returncode == 2 and f"has a pick file in {folders[0]} too; give each pick shard folder once" in result.stderr
    stale = shards / "old-1-of-1"  # an earlier run's shard folder beside this run's
    stale.mkdir()
    for star in shards.glob("*-of-3/demo_*.star"):
        shutil.copy(star, stale / star.name)
    result = run(gather + [*map(str, sorted(shards.iterdir()))], check=False)
    assert result.returncode == 2 and "only those of one run" in result.stderr
    shutil.rmtree(stale)
    victim = sorted(shards.glob("*/demo_*.star"))[0]
    good = victim.read_text()
    for text, message in (("data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n1 2\n", "no rlnAutopickFigureOfMerit column"),
                          (good.rstrip("\n").rsplit("\n", 1)[0] + "\n1 2 abc\n", "not a finite number")):
        victim.write_text(text)
        result = run(gather + [*map(str, folders)], check=False)
        assert result.returncode == 2 and f"{victim}: " in result.stderr and message in result.stderr, result.stderr
        assert not [path for path in outputs.values() if path.exists()]
    victim.write_text(good)
    (tmp_path / "m.star").mkdir()  # a folder where -o's file goes: refused before any output is written
    result = run(gather + [*map(str, folders)], check=False)
    assert result.returncode == 2 and "m.star: a folder, where a file is to be written" in result.stderr
    assert not (tmp_path / "m.csv").exists() and not (tmp_path / "c.star").exists()
    (tmp_path / "m.star").rmdir()
    run(gather + [*map(str, folders)])
    assert all(path.is_file() for path in outputs.values())


def _gather_command(finished_run):
    tmp, _ = finished_run
    return ["deepem", "gather", "--picks", *map(str, sorted((tmp / "results" / "round_1" / "picks").iterdir())),
            "--preprocessed", *map(str, sorted((tmp / "results" / "preprocessed").iterdir())), "--diameter", "150"]


@pytest.mark.parametrize("outputs, clash", [
    (["--relion-dir", "out", "--box", "out"], "out/coordinates: --relion-dir out and --box out would overwrite each other"),
    (["--relion-dir", "link", "--box", "out"], "out/coordinates: --relion-dir link and --box out would overwrite"),
    (["-o", "out/box/m.star", "--box", "out/box"], "out/box/m.star: -o out/box/m.star and --box out/box would"),
    (["-o", "out/m.star", "--candidates", "out/m.star"], "out/m.star: -o out/m.star and --candidates out/m.star"),
])
def test_gather_refuses_outputs_that_would_overwrite_each_other(finished_run, tmp_path, outputs, clash):
    (tmp_path / "out").mkdir()
    (tmp_path / "link").symlink_to("out")  # two names of one folder
    command = _gather_command(finished_run) + (outputs if "-o" in outputs else ["-o", "m.star", *outputs])
    result = run(command, cwd=tmp_path, check=False)
    assert result.returncode == 2 and clash in result.stderr, result.stderr
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_gather_writes_outputs_side_by_side_in_one_folder(finished_run, tmp_path):
    run(_gather_command(finished_run) + ["-o", "out/m.star", "--relion-dir", "out", "--box", "out/box", "--candidates",
                                         "out/c.star"], cwd=tmp_path)
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"m.star", "c.star", "autopick.star", "coordinates", "box"}


def test_corrupt_model_is_a_clear_error(finished_run, tmp_path):
    tmp, _ = finished_run
    (tmp_path / "model.pt").write_bytes(b"\x00garbage" * 100)
    result = run(["deepem", "pick", "--model", str(tmp_path / "model.pt"), "--preprocessed",
                  str(sorted((tmp / "results" / "preprocessed").iterdir())[0]), "-o", str(tmp_path / "out")], check=False)
    assert result.returncode == 2 and "model.pt: not a readable deepem model" in result.stderr
    assert not (tmp_path / "out").exists()


def test_provenance_records_versions_config_and_inputs(finished_run, tiny_dataset):
    import json

    tmp, _ = finished_run
    record = json.loads((tmp / "results" / "provenance.json").read_text())
    assert record["versions"]["deepem"] and record["versions"]["torch"] and record["versions"]["snakemake"]
    assert record["config"]["seed"] == 0 and record["config"]["shards"] == 3
    assert "snakemake" in record["command"]
    assert str(tiny_dataset / "micrographs" / "demo_000.mrc") in record["inputs"]
    assert str(tiny_dataset / "truth" / "demo_000.star") in record["inputs"]
    assert record["versions"]["git_commit"] is None or len(record["versions"]["git_commit"].split("-")[0]) == 40
    # written after the picks it describes: never beside an earlier run's after a failed one
    dry = snakemake(tmp / "config.yaml", "-n", "--forceall", str(tmp / "results" / "provenance.json"))
    assert {"train", "pick", "gather"} <= set(_jobs(dry.stdout))


def test_a_results_path_under_home_is_expanded(finished_run, tmp_path, monkeypatch):
    """Snakemake does not expand '~'; before, the shell did in some places and a folder named '~' appeared."""
    tmp, _ = finished_run
    monkeypatch.setenv("HOME", str(tmp_path))
    dry = snakemake(tmp / "config.yaml", "-n", "--config", "results=~/run")
    assert f"{tmp_path}/run/preprocessed/" in dry.stdout and "~/run/" not in dry.stdout  # no output path under "~"


def test_working_images_at_another_particle_size_than_the_models_are_a_clear_error(finished_run, tiny_dataset, tmp_path):
    tmp, _ = finished_run
    trained = tmp / "results" / "round_1" / "model" / "model.pt"
    particle_px = torch.load(trained, weights_only=False)["particle_px"]
    mic = tiny_dataset / "micrographs" / "demo_003.mrc"
    run(["deepem", "preprocess", "demo_003.mrc", "--diameter", "150", "--particle-px", str(particle_px - 8),
         "-o", str(tmp_path / "pre")], cwd=mic.parent)
    table = pd.read_csv(tmp_path / "pre" / "manifest.tsv", sep="\t")
    assert table["source"].tolist() == [str(mic)]  # given relative, stored absolute (rlnMicrographName)
    result = run(["deepem", "pick", "--model", str(trained), "--preprocessed", str(tmp_path / "pre"),
                  "-o", str(tmp_path / "out")], check=False)
    assert result.returncode == 2 and f"preprocessed with --particle-px {particle_px - 8}, but {trained}" in result.stderr
    assert f"preprocess again with --particle-px {particle_px}" in result.stderr and not (tmp_path / "out").exists()


def test_working_images_in_other_units_than_the_models_are_a_clear_error(finished_run, tmp_path):
    """deepem 0.7 scales working images to their noise; a model of either version refuses the other's."""
    tmp, _ = finished_run
    shard = sorted((tmp / "results" / "preprocessed").iterdir())[0]
    trained = tmp / "results" / "round_1" / "model" / "model.pt"
    old = tmp_path / "old"  # the shard as deepem 0.6 wrote it: no units column
    shutil.copytree(shard, old)
    table = pd.read_csv(old / "manifest.tsv", sep="\t")
    assert set(table["units"]) == {"noise"}
    table.drop(columns="units").to_csv(old / "manifest.tsv", sep="\t", index=False)
    ckpt = torch.load(trained, weights_only=False)
    del ckpt["units"]  # a model trained by deepem 0.6
    torch.save(ckpt, tmp_path / "old.pt")
    for model, pre, units in ((trained, old, "overall spread"), (tmp_path / "old.pt", shard, "pixel noise")):
        out = tmp_path / f"out-{pre.name}"
        result = run(["deepem", "pick", "--model", str(model), "--preprocessed", str(pre), "-o", str(out)], check=False)
        assert result.returncode == 2, result.stderr
        assert f"{model} was made from working images" in result.stderr
        assert f"{pre} holds working images in units of their {units}" in result.stderr and "retrain" in result.stderr
        assert not out.exists()
    run(["deepem", "pick", "--model", str(tmp_path / "old.pt"), "--preprocessed", str(old), "-o", str(tmp_path / "ok")])
    assert (tmp_path / "ok" / "candidates.star").exists()


def test_extract_refuses_working_images_of_another_particle_size(finished_run, tiny_dataset, tmp_path):
    tmp, _ = finished_run
    shards = [str(p) for p in sorted((tmp / "results" / "preprocessed").iterdir())]
    labels = [str(p) for p in sorted((tiny_dataset / "labels").glob("*.star"))]
    base = ["deepem", "extract", "--preprocessed", *shards, "--positives", *labels, "--diameter", "150"]
    result = run([*base, "--particle-px", "40", "-o", str(tmp_path / "p.npz")], check=False)
    assert result.returncode == 2
    assert "was preprocessed to 4.686 A/px, not the 3.750 A/px of --diameter 150 and --particle-px 40" in result.stderr
    assert not (tmp_path / "p.npz").exists()
    run([*base, "--particle-px", "32", "-o", str(tmp_path / "p.npz")])


MEMORY_BOUND_MB = 2500


def test_8k_micrograph_picks_within_memory_bound(tmp_path):
    """An 8192 x 8192 micrograph is preprocessed and picked in tiles within MEMORY_BOUND_MB."""
    rng = np.random.default_rng(0)
    write_mrc(tmp_path / "big.mrc", rng.normal(size=(8192, 8192)).astype(np.float32), 1.0)
    save(tmp_path / "model.pt", DeepEMNet(architecture(32, 1.5, "modern"), "modern").eval(),
         {"threshold": 0.5, "particle_px": 32, "units": "noise"})
    script = (
        "import resource, sys; from deepem.cli import main; "
        f"main(['preprocess', '{tmp_path / 'big.mrc'}', '--diameter', '100', '-o', '{tmp_path / 'pre'}']); "
        f"main(['pick', '--model', '{tmp_path / 'model.pt'}', '--preprocessed', '{tmp_path / 'pre'}', "
        f"'-o', '{tmp_path / 'picks'}']); "
        "print('peak', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    peak = int(out.split("peak")[-1])
    assert (tmp_path / "picks" / "big.star").exists()
    assert peak < MEMORY_BOUND_MB, f"peak {peak} MB"


def test_changed_input_reruns_exactly_the_affected_jobs(finished_run, tiny_dataset):
    tmp, _ = finished_run
    label = sorted((tiny_dataset / "labels").glob("*.star"))[0]
    original, before = label.read_bytes(), label.stat()
    try:
        label.write_bytes(original.rstrip() + b"\n500.0\t500.0\n")  # one more labelled particle
        jobs = set(_jobs(snakemake(tmp / "config.yaml", "-n").stdout))
    finally:
        label.write_bytes(original)
        os.utime(label, (before.st_atime, before.st_mtime))
    assert {"extract", "train", "pick", "gather"} <= jobs and "preprocess" not in jobs


def _shards(tmp):
    return sorted(map(str, (tmp / "results" / "preprocessed").iterdir()))


def test_one_micrograph_name_twice_is_an_error_before_any_work(finished_run, tiny_dataset, tmp_path):
    tmp, _ = finished_run
    labels = sorted(map(str, (tiny_dataset / "labels").glob("*.star")))
    shard = _shards(tmp)[0]
    result = run(["deepem", "extract", "--preprocessed", shard, shard, "--positives", *labels, "--diameter", "150",
                  "-o", str(tmp_path / "p.npz")], check=False)
    assert result.returncode == 2 and "same name" in result.stderr and "give each preprocessing shard once" in result.stderr
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(tiny_dataset / "micrographs" / "demo_000.mrc", tmp_path / sub / "mic.mrc")
    result = run(["deepem", "preprocess", str(tmp_path / "a/mic.mrc"), str(tmp_path / "b/mic.mrc"), "--diameter", "150",
                  "-o", str(tmp_path / "pre")], check=False)
    assert result.returncode == 2 and "b/mic.mrc: same name 'mic'" in result.stderr and not (tmp_path / "pre").exists()


def test_a_label_file_given_twice_counts_once(finished_run, tiny_dataset, tmp_path):
    tmp, _ = finished_run
    labels = sorted(map(str, (tiny_dataset / "labels").glob("*.star")))
    counts = {}
    for name, positives in {"once": labels, "twice": labels + [labels[0], str(Path(labels[0]).parent / "." / Path(labels[0]).name)]}.items():
        run(["deepem", "extract", "--preprocessed", *_shards(tmp), "--positives", *positives, "--diameter", "150",
             "-o", str(tmp_path / f"{name}.npz")])
        counts[name] = json.loads(str(np.load(tmp_path / f"{name}.npz")["meta"]))["counts"]["positive"]
    assert counts["once"] > 0 and counts["twice"] == counts["once"]


def test_training_keeps_positives_when_the_stripes_hold_every_label(finished_run, tiny_dataset, tmp_path):
    tmp, _ = finished_run
    labels = sorted(map(str, (tiny_dataset / "labels").glob("*.star")))
    log = run(["deepem", "extract", "--preprocessed", *_shards(tmp), "--positives", *labels, "--diameter", "150",
               "--val-fraction", "0.99", "-o", str(tmp_path / "p.npz")]).stdout
    patches = np.load(tmp_path / "p.npz")
    y, val = patches["y"], patches["val"]
    assert "or every one, so a random 99% of the patches is held out" in log
    assert y[~val].sum() >= 1 and y[val].sum() >= 1


def _coords(path, xy, **columns):
    starfile.write(pd.DataFrame({"rlnCoordinateX": xy[:, 0], "rlnCoordinateY": xy[:, 1], **columns}), path)
    return str(path)


def _extract(tmp, positives, out, *more, check=True):
    return run(["deepem", "extract", "--preprocessed", *_shards(tmp), "--positives", *positives, "--diameter", "150",
                "-o", str(out), *more], check=check)


def test_negatives_on_a_micrograph_without_positives_train(finished_run, tiny_dataset, tmp_path):
    tmp, _ = finished_run
    labels = sorted(map(str, (tiny_dataset / "labels").glob("*.star")))
    labelled = {Path(p).stem.removesuffix("_manualpick") for p in labels}
    unlabelled = sorted({p.stem for p in (tiny_dataset / "micrographs").glob("*.mrc")} - labelled)[0]
    negatives = _coords(tmp_path / f"{unlabelled}.star", np.array([[100.0, 120], [500, 510], [900, 300]]))
    log = _extract(tmp, labels, tmp_path / "p.npz", "--negatives", negatives).stdout
    patches = np.load(tmp_path / "p.npz")
    meta = json.loads(str(patches["meta"]))
    assert meta["counts"]["negative"] == 3 and f"{len(labelled) + 1} micrographs: " in log
    assert unlabelled not in meta["holdout"] and set(meta["holdout"]) == labelled
    # the three negatives are the last patches (sorted names, no background there); all train
    assert not patches["val"][-3:].any() and not patches["y"][-3:].any()
    _extract(tmp, labels, tmp_path / "without.npz")
    without = np.load(tmp_path / "without.npz")  # the other micrographs' patches and stripes are unchanged
    np.testing.assert_array_equal(without["x"], patches["x"][:-3])
    assert json.loads(str(without["meta"]))["holdout"] == meta["holdout"]
    (tmp_path / "empty").mkdir()
    empty = _coords(tmp_path / "empty" / f"{unlabelled}.star", np.zeros((0, 2)))
    _extract(tmp, labels + [empty], tmp_path / "empty.npz", "--negatives", negatives)
    # an empty label file says the micrograph has no particle: it holds a stripe out, whose maxima are false picks
    assert unlabelled in json.loads(str(np.load(tmp_path / "empty.npz")["meta"]))["holdout"]


def test_a_negative_label_on_a_positive_is_a_warning(finished_run, tiny_dataset, tmp_path):
    tmp, _ = finished_run
    labels = sorted(map(str, (tiny_dataset / "labels").glob("*.star")))
    xy = read_star_table(labels[0])[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy(float)
    name = Path(labels[0]).stem.removesuffix("_manualpick")
    (tmp_path / "apart").mkdir()
    # the particle is 75 px across: 10 px off marks the same particle, 40 px off (past half a diameter) does not
    apart = _coords(tmp_path / "apart" / f"{name}.star", xy[:2] + [0, 40])
    assert "warning" not in _extract(tmp, labels, tmp_path / "ok.npz", "--negatives", apart).stdout
    near = _coords(tmp_path / f"{name}.star", xy[:2] + [[10, 0], [0, 40]])
    log = _extract(tmp, labels, tmp_path / "p.npz", "--negatives", near).stdout
    assert f"warning: micrograph {name}: 1 negative labels lie within a quarter diameter" in log
    x, y = xy[0] + [10, 0]  # named in original pixels
    assert "remove one label of each pair" in log and f"e.g. at ({x:.0f}, {y:.0f})" in log
    assert json.loads(str(np.load(tmp_path / "p.npz")["meta"]))["counts"]["negative"] == 2  # both kept, as given


def test_verified_picks_at_a_label_are_left_out(finished_run, tiny_dataset, tmp_path):
    tmp, _ = finished_run
    labels = sorted(map(str, (tiny_dataset / "labels").glob("*.star")))
    xy = read_star_table(labels[0])[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy(float)
    mic = str(tiny_dataset / "micrographs" / f"{Path(labels[0]).stem.removesuffix('_manualpick')}.mrc")
    label = xy[0] + [10, 0]  # a verified pick beside a label: dropped, whatever its verdict
    grid = np.stack(np.meshgrid(np.arange(40, 1000, 16.0), np.arange(40, 1000, 16.0)), -1).reshape(-1, 2)
    lone = grid[np.argmax(np.linalg.norm(grid[:, None] - xy[None], axis=2).min(1))]  # the place farthest from any label
    counts = {}
    for verdict in ("outlier", "confident"):
        verified = _coords(tmp_path / f"{verdict}.star", np.array([label, lone]), rlnMicrographName=[mic, mic],
                           deepemVerdict=[verdict, verdict])
        log = _extract(tmp, labels, tmp_path / f"{verdict}.npz", "--verified", verified).stdout
        counts[verdict] = json.loads(str(np.load(tmp_path / f"{verdict}.npz")["meta"]))["from_previous_round"]
        assert "1 verified picks within a quarter diameter of a label were left out" in log
    assert counts == {"outlier": {"positives": 0, "negatives": 1}, "confident": {"positives": 1, "negatives": 0}}


def test_verified_picks_and_corrections_are_checked_against_the_micrographs(finished_run, tiny_dataset, tmp_path):
    tmp, _ = finished_run
    results = tmp / "results"
    labels = sorted(map(str, (tiny_dataset / "labels").glob("*.star")))
    model = str(results / "round_1" / "model" / "model.pt")
    outside = tmp_path / "demo_000_corrections.star"
    outside.write_text("data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n5000 300\n")
    verify = ["deepem", "verify", "--candidates", str(results / "round_1" / "candidates.star"), "--model", model,
              "--preprocessed", *_shards(tmp), "--diameter", "150", "-o", str(tmp_path / "v.star")]
    result = run(verify + ["--corrections", str(outside)], check=False)
    assert result.returncode == 2 and "demo_000_corrections.star" in result.stderr and "outside" in result.stderr
    assert not (tmp_path / "v.star").exists()
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    for command in (verify[:4] + ["--model", str(tmp_path / "bad.pt")] + verify[6:],
                    ["deepem", "histogram", str(results / "round_1" / "candidates.star"), "--model", str(tmp_path / "bad.pt"),
                     "-o", str(tmp_path / "h.png")]):
        result = run(command, check=False)
        assert result.returncode == 2 and "bad.pt: not a readable deepem model" in result.stderr
    extract = ["deepem", "extract", "--preprocessed", *_shards(tmp), "--positives", *labels, "--diameter", "150",
               "-o", str(tmp_path / "p.npz"), "--verified"]
    result = run(extract + [str(results / "round_1" / "candidates.star")], check=False)
    assert result.returncode == 2 and "candidates.star: no deepemVerdict column" in result.stderr
    run(verify)
    table = read_star_table(tmp_path / "v.star")
    table.loc[0, "rlnMicrographName"] = "elsewhere/mic_999.mrc"
    starfile.write(table, tmp_path / "other.star")
    result = run(extract + [str(tmp_path / "other.star")], check=False)
    assert result.returncode == 2 and "other.star: names micrograph mic_999, which no --preprocessed" in result.stderr
    assert not (tmp_path / "p.npz").exists()
