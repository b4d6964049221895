"""The real workflow, run by real Snakemake on a tiny simulated dataset."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import mrcfile
import starfile
import yaml
import torch

from conftest import BIN, ROOT, local_env, run, snakemake, write_config
from deepem.cli import main as cli
from deepem.dataset import load_labels
from deepem.io import manifest
from deepem.io.coords import MIC, SCORE, X, Y, read_coordinates, read_star_table
from deepem.io.micrograph import read_header
from deepem.metrics import match, summarise
from deepem.patches import holdout_stripe


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


@pytest.mark.parametrize("where", ["results", "results/round_1"])
def test_picks_are_written_in_every_format(finished_run, tiny_dataset, where):
    tmp, _ = finished_run
    out = tmp / where
    picks = read_star_table(out / "picks.star")
    mics = sorted(str(m) for m in (tiny_dataset / "micrographs").glob("*.mrc"))
    expected = {mic: picks.loc[picks[MIC] == mic, [X, Y]].to_numpy(float) for mic in mics}
    assert sum(map(len, expected.values())) == len(picks) > 0
    # RELION 4/5: the index names every micrograph and its own coordinate file under coordinates/
    index = starfile.read(out / "autopick.star", always_dict=True)["coordinate_files"]
    assert sorted(index[MIC]) == mics
    for mic, coordinates in zip(index[MIC], index["rlnMicrographCoordinates"]):
        assert Path(coordinates) == (out / "coordinates" / f"{Path(mic).stem}_autopick.star").resolve()
        table = starfile.read(coordinates)
        np.testing.assert_allclose(table[[X, Y]].to_numpy(float).reshape(-1, 2), expected[mic], atol=0.01)
    # cryoSPARC: micrograph file names and centres
    cryosparc = starfile.read(out / "cryosparc_picks.star")
    for mic in mics:
        got = cryosparc.loc[cryosparc[MIC] == Path(mic).name, [X, Y]].to_numpy(float)
        np.testing.assert_allclose(got, expected[mic], atol=0.01)
    # EMAN2: one NAME.box per micrograph, lower-left corners of square boxes
    for mic in mics:
        rows = np.loadtxt(out / "box" / f"{Path(mic).stem}.box", ndmin=2).reshape(-1, 4)
        assert (rows[:, 2] == rows[:, 3]).all() and (rows[:, 2] > 0).all()
        np.testing.assert_allclose(rows[:, :2] + rows[:, 2:4] / 2, expected[mic], atol=0.01)
    # Topaz (micrograph names without extension) and CSV (micrograph paths)
    for path, sep, name_column, x, y, key in [
        (out / "topaz_picks.txt", "\t", "image_name", "x_coord", "y_coord", lambda m: Path(m).stem),
        (out / "picks.csv", ",", "micrograph", "x", "y", str),
    ]:
        table = pd.read_csv(path, sep=sep)
        for mic in mics:
            got = table.loc[table[name_column] == key(mic), [x, y]].to_numpy(float)
            np.testing.assert_allclose(got, expected[mic], atol=0.01)


def test_extract_routes_a_merged_label_file_like_per_micrograph_files(finished_run, tiny_dataset, tmp_path):
    tmp, _ = finished_run
    labels = sorted(map(str, (tiny_dataset / "labels").glob("*.star")))
    merged = tmp_path / "labels.txt"
    run(["deepem", "convert", *labels, "--micrographs", str(tiny_dataset / "micrographs" / "*.mrc"), "--to", "topaz",
         "-o", str(merged)])
    shards = sorted(map(str, (tmp / "results" / "preprocessed").iterdir()))
    for positives, out in [(labels, "per_micrograph.npz"), ([str(merged)], "merged.npz")]:
        run(["deepem", "extract", "--preprocessed", *shards, "--positives", *positives, "--diameter", "150",
             "-o", str(tmp_path / out)])
    a, b = np.load(tmp_path / "per_micrograph.npz"), np.load(tmp_path / "merged.npz")
    assert json.loads(str(a["meta"]))["counts"]["positive"] > 0
    for key in ("x", "y", "val", "meta"):
        np.testing.assert_array_equal(a[key], b[key])
    dry = snakemake(write_config(tmp_path, tiny_dataset, labels={"positives": str(merged)}), "-n")
    assert "extract" in dry.stdout


def test_extract_takes_refined_particles_at_their_centres(finished_run, tiny_dataset, tmp_path):
    """A RELION refined particle STAR (extraction coordinate + rlnOriginXAngst/YAngst) gives the patches its centres give."""
    tmp, _ = finished_run
    labels = sorted((tiny_dataset / "labels").glob("*.star"))
    rng = np.random.default_rng(0)
    rows = []
    for path in labels:
        mic = tiny_dataset / "micrographs" / f"{path.stem.removesuffix('_manualpick')}.mrc"
        with mrcfile.open(mic, header_only=True) as f:
            pixel_size = float(f.voxel_size.x)
        xy = read_coordinates(path)
        shift = rng.integers(-12, 13, size=xy.shape) * pixel_size / 4  # Å; quarter pixels, exact in binary
        coordinate = xy + shift / pixel_size
        rows.append(pd.DataFrame({MIC: str(mic), X: coordinate[:, 0], Y: coordinate[:, 1],
                                  "rlnOriginXAngst": shift[:, 0], "rlnOriginYAngst": shift[:, 1]}))
    refined = tmp_path / "particles.star"
    starfile.write({"particles": pd.concat(rows, ignore_index=True)}, refined, float_format="%.6f")
    shards = sorted(map(str, (tmp / "results" / "preprocessed").iterdir()))
    for positives, out in [(labels, "centres.npz"), ([refined], "refined.npz")]:
        run(["deepem", "extract", "--preprocessed", *shards, "--positives", *map(str, positives), "--diameter", "150",
             "-o", str(tmp_path / out)])
    a, b = np.load(tmp_path / "centres.npz"), np.load(tmp_path / "refined.npz")
    assert json.loads(str(a["meta"]))["counts"]["positive"] > 0
    for key in ("x", "y", "val"):
        np.testing.assert_array_equal(a[key], b[key])


def test_extract_holds_out_a_stripe_of_each_labelled_micrograph(finished_run, tiny_dataset, tmp_path):
    tmp, _ = finished_run
    labels = sorted(map(str, (tiny_dataset / "labels").glob("*.star")))
    shards = sorted(map(str, (tmp / "results" / "preprocessed").iterdir()))
    run(["deepem", "extract", "--preprocessed", *shards, "--positives", *labels, "--diameter", "150",
         "--val-fraction", "0.25", "-o", str(tmp_path / "patches.npz")])
    data = np.load(tmp_path / "patches.npz")
    holdout = json.loads(str(data["meta"]))["holdout"]
    table = manifest.read(shards)
    positives = load_labels(labels, table, "positive label")
    assert sorted(holdout) == sorted(positives)
    in_stripes = 0
    for name, (x0, x1) in holdout.items():
        width = mrcfile.read(manifest.working_path(table.loc[name])).shape[1]
        assert x1 - x0 == round(0.25 * width) and 0 <= x0 and x1 <= width
        in_stripes += int(((positives[name][:, 0] >= x0) & (positives[name][:, 0] < x1)).sum())
    # exactly the positives centred in the stripes are held out
    assert 0 < in_stripes == int((data["val"] & (data["y"] == 1)).sum())
    assert (data["val"] & (data["y"] == 0)).any()


def test_extract_falls_back_to_random_patches_when_the_stripes_hold_no_label(finished_run, tmp_path):
    tmp, _ = finished_run
    shards = sorted(map(str, (tmp / "results" / "preprocessed").iterdir()))
    table = manifest.read(shards)
    name = sorted(table.index)[0]
    row = table.loc[name]
    width = mrcfile.read(manifest.working_path(row)).shape[1]
    # the first draw of the seeded generator places the stripe of the only labelled micrograph
    x0, x1 = holdout_stripe(width, 0.15, np.random.default_rng(7))
    free = np.r_[0:x0, x1:width]
    xs = free[(free > 20) & (free < width - 20)][::25][:6] * row["scale_x"]
    labels = tmp_path / f"{name}.star"
    starfile.write(pd.DataFrame({X: xs, Y: np.full(len(xs), 500.0)}), labels)
    result = run(["deepem", "extract", "--preprocessed", *shards, "--positives", str(labels), "--diameter", "150",
                  "--seed", "7", "-o", str(tmp_path / "patches.npz")])
    assert "hold no labelled particle" in result.stdout
    data = np.load(tmp_path / "patches.npz")
    assert json.loads(str(data["meta"]))["holdout"] == {}
    positive = data["y"] == 1
    assert positive.sum() == len(xs) and (data["val"] & positive).any() and (~data["val"] & positive).any()
    assert (data["val"] & ~positive).any()


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
    # results with a trailing slash name the same files (before 0.12.0: '//' in every path, never found made)
    dry = snakemake(tmp / "config.yaml", "-n", "--config", f"results={tmp / 'results'}/")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    logs = tmp / "results" / "logs"
    assert (logs / "round_1" / "train.log").read_text().count("epoch") >= 30
    assert (tmp / "results" / "round_1" / "model" / "training.png").stat().st_size > 1000


def test_the_training_record_holds_the_command_with_its_argument_files_expanded(finished_run, tiny_dataset):
    """The rules pass file lists as @<(printf ...): run.json must name the files, not /dev/fd/63."""
    record = json.loads((finished_run[0] / "results" / "round_1" / "model" / "run.json").read_text())
    command = record["command"]
    assert Path(command[0]).name == "deepem" and command[1] == "train"
    assert not any(arg.startswith("@") for arg in command)
    labels = sorted(str(path) for path in (tiny_dataset / "labels").glob("*.star"))
    at = command.index("--positives")
    assert sorted(command[at + 1 : at + 1 + len(labels)]) == labels == sorted(record["args"]["positives"])
    assert "command_line" not in record["args"]


def _finished_provenance_inputs(tiny_dataset, tmp_path, count):
    """``count`` micrographs with long EPU-like names (links to one demo micrograph), a label file for the
    first, and a results folder whose picks are made: ``(micrograph paths, label, results)``."""
    mics = tmp_path / "MotionCorr" / "job002" / "Movies"
    mics.mkdir(parents=True)
    source = tiny_dataset / "micrographs" / "demo_000.mrc"
    listed = [mics / f"FoilHole_{i:08d}_Data_12345678_12345678_20231015_101112_fractions.mrc" for i in range(count)]
    for path in listed:
        path.symlink_to(source)
    label = tmp_path / f"{listed[0].stem}.star"
    shutil.copy(tiny_dataset / "labels" / "demo_000_manualpick.star", label)
    results = tmp_path / "results"
    (results / "round_1").mkdir(parents=True)
    for path in (results / "picks.star", results / "round_1" / "picks.star"):  # the run's picks, made before
        path.write_text("")
    return listed, label, results


def test_provenance_takes_more_micrographs_than_a_command_line_holds(tiny_dataset, tmp_path):
    """20,000 micrographs of long paths outgrow the kernel's 2 MB limit on a command's arguments. The
    rules pass such lists as @FILE (before 0.12.0 provenance failed after all the picking)."""
    mics, label, results = _finished_provenance_inputs(tiny_dataset, tmp_path, 20000)
    assert sum(len(str(m)) + 1 for m in mics) > 2 ** 21
    config = write_config(tmp_path, tiny_dataset, micrographs=str(mics[0].parent / "*.mrc"), truth=None, shards=64,
                          labels={"positives": str(label), "negatives": None})
    run(["snakemake", str(results / "provenance.json"), "--cores", "1", "--configfile", str(config),
         "--allowed-rules", "provenance"])
    assert "provenance of 20001 inputs" in (results / "logs" / "provenance.log").read_text()


def test_provenance_takes_a_config_that_lists_its_micrographs(tiny_dataset, tmp_path):
    """`micrographs` may be a list. The resolved config reached provenance as one command-line argument,
    and Linux refuses an argument over 128 KiB: 1,500 listed micrographs failed the run at its last job."""
    listed, label, results = _finished_provenance_inputs(tiny_dataset, tmp_path, 1500)
    config = write_config(tmp_path, tiny_dataset, micrographs=list(map(str, listed)), truth=None,
                          labels={"positives": str(label), "negatives": None})
    assert len(json.dumps(yaml.safe_load(config.read_text()))) > 2 ** 17
    run(["snakemake", str(results / "provenance.json"), "--cores", "1", "--configfile", str(config),
         "--allowed-rules", "provenance"])
    record = json.loads((results / "provenance.json").read_text())
    assert record["config"]["micrographs"] == list(map(str, listed))


def test_lint_is_clean():
    result = run(["snakemake", "--lint"])
    assert "Congratulations" in result.stdout + result.stderr


def test_the_venvs_snakemake_runs_jobs_without_the_venv_activated(tiny_dataset, tmp_path):
    """`.venv/bin/snakemake` run by its path: the rules' `deepem` is found beside the interpreter."""
    import subprocess

    config = write_config(tmp_path, tiny_dataset)
    env = {**local_env(), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([str(BIN / "snakemake"), str(tmp_path / "results" / "preprocessed_labelled"),
                             "--cores", "2", "--configfile", str(config)],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((tmp_path / "results" / "preprocessed_labelled").glob("*.mrc"))


def test_deepem_on_path_keeps_the_system_path_when_path_is_unset(monkeypatch):
    """With PATH unset, commands are looked up on the system's default path: that stays, after the
    venv's bin folder (not an empty entry, which would mean the current folder)."""
    import os
    import sys

    from deepem import workflow

    monkeypatch.delenv("PATH", raising=False)
    monkeypatch.setattr(workflow.shutil, "which", lambda name: None)  # deepem on no system folder
    workflow.deepem_on_path()
    assert os.environ["PATH"] == f"{Path(sys.executable).parent}{os.pathsep}{os.defpath}"


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
    return {}, "demo_000_manualpick.star: 1 coordinates outside the 1024 x 1024 micrograph demo_000, e.g."


def case_wrong_type(data):
    return {"shards": "many"}, "shards"


def case_no_labels(data):
    for f in (data / "labels").glob("*.star"):
        f.unlink()
    return {}, "no positive label files match this pattern"


def case_truncated_mrc(data):
    path = data / "micrographs" / "demo_002.mrc"
    path.write_bytes(path.read_bytes()[:500_000])
    return {}, "demo_002.mrc: not a readable MRC file"


def _rewrite(path, data=None, voxel=None):
    with mrcfile.open(path, mode="r+") as mrc:
        if data is not None:
            mrc.set_data(data)
        if voxel is not None:
            mrc.voxel_size = voxel


def case_nan_pixels(data):
    path = data / "micrographs" / "demo_003.mrc"
    with mrcfile.open(path) as mrc:
        image = mrc.data.copy()
    image[10, 10] = np.nan
    _rewrite(path, image)
    return {}, "demo_003.mrc: 1 NaN or Inf pixels"


def case_movie_stack(data):
    _rewrite(data / "micrographs" / "demo_001.mrc", np.zeros((3, 1024, 1024), np.float32))
    return {}, "demo_001.mrc: a stack of 3 frames, not a 2-D micrograph; motion-correct first"


def case_mixed_pixel_sizes(data):
    _rewrite(data / "micrographs" / "demo_002.mrc", voxel=3.0)
    return {}, "pixel size 3 A differs from 2 A"


def case_pixels_not_square(data):
    _rewrite(data / "micrographs" / "demo_002.mrc", voxel=(2.0, 2.4, 2.0))
    return {}, "demo_002.mrc: the header gives pixels of 2 A in x but 2.4 A in y; deepem needs square pixels: resample"


def case_pixel_size_missing(data):
    for path in (data / "micrographs").glob("*.mrc"):
        _rewrite(path, voxel=0.0)
    return {}, "no pixel size in the file header; give --pixel-size (pixel_size in the config)"


def case_image_without_pixel_size(data):
    from PIL import Image

    with mrcfile.open(data / "micrographs" / "demo_003.mrc") as m:
        image = np.asarray(m.data, np.float32)
    (data / "micrographs" / "demo_003.mrc").unlink()
    span = image.max() - image.min()
    Image.fromarray(((image - image.min()) / span * 65535).astype(np.uint16)).save(data / "micrographs" / "demo_003.tif")
    return {"micrographs": [str(data / "micrographs" / "*.mrc"), str(data / "micrographs" / "*.tif")]}, \
        "demo_003.tif is an image without a pixel size deepem reads; set pixel_size (A/px) in the config"


def case_particle_too_small(data):
    return {"particle_diameter": 20}, "a 20 A particle spans only 10.0 px at 2 A/px, fewer than the 32 of particle_px"


def case_particle_fewer_pixels_than_particle_px(data):
    return {"particle_diameter": 50}, "spans only 25.0 px at 2 A/px, fewer than the 32 of particle_px, and " \
        "micrographs are never upsampled; set particle_px (--particle-px) to 25"


def case_particle_too_large(data):
    return {"particle_diameter": 1500}, "is larger than the 1024 x 1024 micrograph"


def case_duplicate_stems(data):
    (data / "other").mkdir()
    shutil.copy(data / "micrographs" / "demo_000.mrc", data / "other" / "demo_000.mrc")
    return {"micrographs": [str(data / "micrographs" / "*.mrc"), str(data / "other" / "*.mrc")]}, "micrograph file names must be unique"


def case_reserved_name(data):
    shutil.copy(data / "micrographs" / "demo_000.mrc", data / "micrographs" / "candidates.mrc")
    return {}, "candidates.mrc: a micrograph named 'candidates' would overwrite the picks' candidates.star"


def case_empty_label_set(data):
    for path in (data / "labels").glob("*.star"):
        path.write_text("data_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n")
    return {}, "no labelled particles in 3 positive label files"


def case_unknown_key(data):
    return {"colour": "red"}, "Additional properties are not allowed ('colour' was unexpected)"


def case_corrections_for_the_last_round(data):
    return {"corrections": {"1": str(data / "labels" / "*.star")}}, "corrections: round 1 has no verification step"


def case_corrections_matching_nothing(data):
    return {"rounds": 2, "corrections": {"1": str(data / "fixed" / "*.star")}}, "no round 1 correction files match"


def case_correction_matching_no_micrograph(data):
    shutil.copy(data / "labels" / "demo_000_manualpick.star", data / "stray.star")
    return {"rounds": 2, "corrections": {"1": str(data / "stray.star")}}, "stray.star: correction file matches no micrograph"


def case_space_in_a_path(data):
    (data / "micrographs").rename(data / "my micrographs")
    return {"micrographs": str(data / "my micrographs" / "*.mrc")}, "my micrographs/demo_000.mrc' has a space in its path"


def case_shell_syntax_in_a_path(data):
    (data / "micrographs").rename(data / "grid(2)")
    return {"micrographs": str(data / "grid(2)" / "*.mrc")}, "grid(2)/demo_000.mrc' has the character '(' in its path"


def case_box_too_small_for_the_network(data):
    return {"particle_px": 16}, "particle_px: 16 with box_scale: 1.5 makes a box of 24 px, too small for the network"


def case_results_starting_with_an_at(data):
    return {"results": "@run1"}, "results: '@run1' starts with '@', which deepem reads as a file of arguments"


def case_empty_relion_project(data):
    return {"relion_project": ""}, "'' should be non-empty"


def case_relion_project_not_a_folder(data):
    return {"relion_project": str(data / "proj")}, "relion_project: " + str(data / "proj") + " is not a directory"


BAD = [case_missing_micrograph, case_not_mrc, case_truncated_mrc, case_nan_pixels, case_movie_stack,
       case_mixed_pixel_sizes, case_pixels_not_square, case_pixel_size_missing, case_image_without_pixel_size,
       case_particle_too_small, case_particle_fewer_pixels_than_particle_px, case_particle_too_large,
       case_label_matching_nothing, case_coordinates_outside, case_duplicate_stems, case_reserved_name, case_no_labels,
       case_empty_label_set, case_wrong_type, case_unknown_key, case_corrections_for_the_last_round,
       case_corrections_matching_nothing, case_correction_matching_no_micrograph, case_space_in_a_path,
       case_shell_syntax_in_a_path, case_box_too_small_for_the_network, case_results_starting_with_an_at,
       case_empty_relion_project,
       case_relion_project_not_a_folder]


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
    broken = message.split(".mrc:")[0] if ".mrc:" in message else None
    labelled = {p.name.split("_manualpick")[0] for p in (data / "labels").glob("*.star")}
    if broken is None or Path(broken).name in labelled:  # training never starts; a broken unlabelled one need not stop it
        assert not list(results.rglob("patches.npz")) and not list(results.rglob("model.pt"))
    if broken:  # the shard holding the broken micrograph left nothing behind
        assert not list(results.rglob(f"preprocessed/*/{broken}.mrc"))


# --- recursive training rounds ------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_rounds(tiny_dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rounds")
    labels = {"positives": str(tiny_dataset / "labels" / "*.star"), "negatives": None, "complete": False}
    config = write_config(tmp, tiny_dataset, rounds=2, labels=labels)
    snakemake(config)
    return tmp, config


def test_round_two_trains_on_round_one_picks_and_hard_negatives(two_rounds, tiny_dataset):
    tmp, _ = two_rounds
    results = tmp / "results"
    verified = read_star_table(results / "round_1" / "verified.star")
    verdicts = set(verified["deepemVerdict"])
    assert "confident" in verdicts and verdicts & {"outlier", "low_score"}
    meta = [json.loads(str(np.load(results / f"round_{r}" / "patches.npz")["meta"])) for r in (1, 2)]
    assert meta[0]["from_previous_round"] == {"positives": 0, "negatives": 0}
    # verified picks within a quarter diameter of a label are left out: the labels decide there
    table = manifest.read(sorted((results / "preprocessed").iterdir()))
    labels = load_labels(sorted((tiny_dataset / "labels").glob("*.star")), table, "positive label")
    near = np.zeros(len(verified), bool)
    for i, (mic, x, y) in enumerate(verified[[MIC, X, Y]].itertuples(index=False)):
        name = Path(mic).stem
        if name in labels:
            xy = np.array([x, y]) / table.loc[name, ["scale_x", "scale_y"]].to_numpy(float)
            near[i] = np.linalg.norm(labels[name] - xy, axis=1).min() <= 0.25 * meta[0]["particle_px"]
    n_confident = int(((verified["deepemVerdict"] == "confident") & ~near).sum())
    n_rejected = int((verified["deepemVerdict"].isin(["outlier", "low_score"]) & ~near).sum())
    assert near.any() and n_confident > 0
    assert meta[1]["from_previous_round"] == {"positives": n_confident, "negatives": n_rejected}
    assert meta[1]["counts"]["positive"] == meta[0]["counts"]["positive"] + n_confident
    assert (results / "picks.star").read_bytes() == (results / "round_2" / "picks.star").read_bytes()
    table = (results / "rounds.tsv").read_text()
    assert table.splitlines()[0].startswith("round\tmicrographs\tprecision")
    assert (results / "rounds.png").stat().st_size > 1000


@pytest.mark.parametrize("command", ["verify", "evaluate"])
def test_picks_of_micrographs_outside_the_shards_given_are_refused(finished_run, tiny_dataset, tmp_path, command, capsys):
    """Before, verify and evaluate silently left them out of their verdicts and scores."""
    tmp, _ = finished_run
    results = tmp / "results"
    first = sorted((results / "preprocessed").iterdir())[0]
    candidates = results / "round_1" / "candidates.star"
    args = {
        "verify": ["--candidates", str(candidates), "--model", str(results / "round_1" / "model" / "model.pt")],
        "evaluate": ["--picks", str(results / "round_1" / "picks.star"), "--candidates", str(candidates),
                     "--truth", *[str(p) for p in sorted((tiny_dataset / "truth").glob("*.star"))]],
    }[command]
    with pytest.raises(SystemExit) as exit_info:
        cli([command, *args, "--preprocessed", str(first), "--diameter", "150", "-o", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "which no --preprocessed shard holds" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_evaluate_reads_the_micrographs_themselves_as_it_reads_the_shards(finished_run, tiny_dataset, tmp_path, capsys):
    """Picks of any picker can be scored without deepem's preprocessing: --micrographs (their headers'
    sizes and pixel sizes) gives the scores --preprocessed does."""
    tmp, _ = finished_run
    results = tmp / "results"
    mics = sorted((tiny_dataset / "micrographs").glob("*.mrc"))
    base = ["evaluate", "--picks", str(results / "round_1" / "picks.star"),
            "--candidates", str(results / "round_1" / "candidates.star"),
            "--truth", *[str(p) for p in sorted((tiny_dataset / "truth").glob("*.star"))],
            "--positives", *[str(p) for p in sorted((tiny_dataset / "labels").glob("*.star"))], "--diameter", "150"]
    cli([*base, "--preprocessed", *[str(p) for p in sorted((results / "preprocessed").iterdir())],
         "-o", str(tmp_path / "shards.json")])
    cli([*base, "--micrographs", str(tiny_dataset / "micrographs" / "*.mrc"), "-o", str(tmp_path / "mics.json")])
    shards = json.loads((tmp_path / "shards.json").read_text())
    assert shards["all"]["true_positives"] > 0 and shards["held_out"]["micrographs"] == 1
    assert json.loads((tmp_path / "mics.json").read_text()) == shards
    # a pixel size twice the headers' halves the matching radius in pixels
    cli([*base, "--micrographs", *map(str, mics), "--pixel-size", str(2 * read_header(mics[0])[2]),
         "-o", str(tmp_path / "half.json")])
    assert json.loads((tmp_path / "half.json").read_text())["match_radius_px"] == shards["match_radius_px"] / 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli([*base, "--micrographs", *map(str, mics[1:]), "-o", str(tmp_path / "out.json")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"names micrograph {mics[0].stem}, which is not among --micrographs" in err
    assert "give every micrograph the picks were made on" in err and not (tmp_path / "out.json").exists()
    with pytest.raises(SystemExit) as exit_info:
        cli([*base, "--preprocessed", str(next((results / "preprocessed").iterdir())), "--pixel-size", "2",
             "-o", str(tmp_path / "out.json")])
    assert exit_info.value.code == 2 and "--pixel-size goes with --micrographs" in capsys.readouterr().err


def test_held_out_metrics_leave_out_micrographs_named_by_negatives_or_corrections(finished_run, tiny_dataset, tmp_path):
    tmp, _ = finished_run
    results = tmp / "results"
    base = ["evaluate", "--picks", str(results / "round_1" / "picks.star"),
            "--truth", *[str(p) for p in sorted((tiny_dataset / "truth").glob("*.star"))],
            "--positives", *[str(p) for p in sorted((tiny_dataset / "labels").glob("*.star"))],
            "--preprocessed", *[str(p) for p in sorted((results / "preprocessed").iterdir())], "--diameter", "150"]
    other = str(tiny_dataset / "negatives" / "demo_003.star")  # the one micrograph without positive labels
    held_out = {}
    for case, extra in (("positives only", []), ("negatives", ["--negatives", other]), ("corrections", ["--corrections", other])):
        out = tmp_path / f"{len(held_out)}.json"
        cli([*base, *extra, "-o", str(out)])
        held_out[case] = json.loads(out.read_text()).get("held_out", {}).get("micrographs", 0)
    assert held_out == {"positives only": 1, "negatives": 0, "corrections": 0}


def test_label_files_decide_their_micrographs_over_verified_picks(two_rounds, tiny_dataset, tmp_path, capsys):
    """No positive verdict joins a micrograph whose label file is empty, or with --complete one that has
    a label file; the empty file keeps the micrograph's held-out stripe."""
    tmp, _ = two_rounds
    results = tmp / "results"
    verified = read_star_table(results / "round_1" / "verified.star")
    on_003 = int(((verified[MIC].map(lambda m: Path(m).stem) == "demo_003") & (verified["deepemVerdict"] == "confident")).sum())
    assert on_003 > 0  # the unlabelled micrograph has confident picks
    empty = tmp_path / "demo_003.star"
    empty.write_text("")  # says: no particle on demo_003
    labels = [str(p) for p in sorted((tiny_dataset / "labels").glob("*.star"))]
    command = ["extract", "--preprocessed", *[str(p) for p in sorted((results / "preprocessed").iterdir())],
               "--verified", str(results / "round_1" / "verified.star"), "--diameter", "150"]
    corrected = verified.copy()  # the user added a particle on labelled demo_000, far from every label
    label_xy = read_coordinates(next((tiny_dataset / "labels").glob("demo_000*.star")))
    grid = np.stack(np.meshgrid(np.arange(100, 924, 8), np.arange(100, 924, 8)), -1).reshape(-1, 2).astype(float)
    far = grid[np.argmax(np.min(np.linalg.norm(grid[:, None] - label_xy[None], axis=2), axis=1))]
    row = corrected[corrected[MIC].map(lambda m: Path(m).stem) == "demo_000"].iloc[:1].assign(
        **{X: far[0], Y: far[1], "deepemVerdict": "added_by_user"})
    starfile.write(pd.concat([corrected, row], ignore_index=True), tmp_path / "corrected.star")
    meta, logs = {}, {}
    capsys.readouterr()
    for case, extra in (("as given", labels), ("empty", [*labels, str(empty)]), ("complete", [*labels, "--complete"]),
                        ("corrected", [*labels, "--complete", "--verified", str(tmp_path / "corrected.star")])):
        out = tmp_path / f"{len(meta)}.npz"
        cli([*command, "--positives", *extra, "-o", str(out)])
        logs[case] = capsys.readouterr().out
        meta[case] = json.loads(str(np.load(out)["meta"]))
    previous = {case: m["from_previous_round"]["positives"] for case, m in meta.items()}
    assert previous["empty"] == previous["as given"] - on_003
    assert "demo_003" in meta["empty"]["holdout"] and "demo_003" in meta["as given"]["holdout"]
    assert previous["complete"] == on_003  # only the micrograph without a label file takes them
    assert previous["corrected"] == on_003 + 1  # a correction still counts where the label file decides
    assert f"{on_003} confident verdicts were left out on micrographs that have empty label files" in logs["empty"]


def test_later_rounds_train_on_the_verified_picks_of_a_bounded_number_of_micrographs(two_rounds, tiny_dataset, tmp_path, capsys):
    """On a large dataset every micrograph's verified picks, each with 12 background patches, would not fit
    in memory: verified_micrographs bounds the micrographs without label files that train, by a seeded choice."""
    tmp, config = two_rounds
    results = tmp / "results"
    verified = read_star_table(results / "round_1" / "verified.star")
    confident = verified[verified["deepemVerdict"] == "confident"][MIC].map(lambda m: Path(m).stem).value_counts()
    labels = [str(next((tiny_dataset / "labels").glob("demo_000*.star")))]  # demo_001..003 then have no label file
    assert {"demo_001", "demo_002", "demo_003"} <= set(confident.index)
    command = ["extract", "--preprocessed", *[str(p) for p in sorted((results / "preprocessed").iterdir())],
               "--verified", str(results / "round_1" / "verified.star"), "--positives", *labels, "--diameter", "150"]
    taken = {}
    for case, extra in (("all", []), ("one", ["--verified-micrographs", "1"]), ("again", ["--verified-micrographs", "1"]),
                        ("three", ["--verified-micrographs", "3"])):
        out = tmp_path / f"{case}.npz"
        cli([*command, *extra, "-o", str(out)])
        log = capsys.readouterr().out
        taken[case] = json.loads(str(np.load(out)["meta"]))["from_previous_round"]["positives"], log, out.read_bytes()
    assert taken["three"][2] == taken["all"][2]  # a bound that all micrographs fit changes nothing
    assert "verified picks of 1 of the 3 micrographs without label files or corrections train" in taken["one"][1]
    one = taken["one"][0]
    assert taken["again"][2] == taken["one"][2]  # seeded: the same choice every time
    assert one < taken["all"][0] and one in set(confident[["demo_001", "demo_002", "demo_003"]])
    chosen = taken["one"][1].split("seed 0): ")[1].splitlines()[0].split()
    assert len(chosen) == 1 and chosen[0] in {"demo_001", "demo_002", "demo_003"}  # the log names it
    corrected = verified.copy()  # a correction on each micrograph left out: they always train
    stems = corrected[MIC].map(lambda m: Path(m).stem)
    for name in sorted({"demo_001", "demo_002", "demo_003"} - set(chosen)):
        row = corrected.index[((stems == name) & (corrected["deepemVerdict"] == "confident")).to_numpy()][0]
        corrected.loc[row, "deepemVerdict"] = "removed_by_user"
    starfile.write(corrected, tmp_path / "corrected.star")
    mine = [str(tmp_path / "corrected.star") if a == str(results / "round_1" / "verified.star") else a for a in command]
    cli([*mine, "--verified-micrographs", "1", "-o", str(tmp_path / "c.npz")])
    assert "micrographs without label files or corrections train" not in capsys.readouterr().out  # 1 left: no choice
    previous = json.loads(str(np.load(tmp_path / "c.npz")["meta"]))["from_previous_round"]
    assert previous["positives"] == taken["all"][0] - 2  # every micrograph's, less the two removed
    dry = snakemake(config, "-n", "--config", "verified_micrographs=1")  # the workflow passes it, to later rounds only
    assert "round_2/patches.npz" in dry.stdout and "round_1/patches.npz" not in dry.stdout


def test_threshold_method_follows_label_completeness_and_both_sample_12_background_patches(finished_run, two_rounds):
    """Complete labels: the maxima in the held-out stripes set the threshold; incomplete: all maxima on
    labelled micrographs, weighted by the estimated labelled share. Both: 12 background patches per label."""
    complete = torch.load(finished_run[0] / "results/round_1/model/model.pt", weights_only=False)
    incomplete = torch.load(two_rounds[0] / "results/round_1/model/model.pt", weights_only=False)
    stripes = complete["auto_threshold"]
    assert stripes["method"] == "held-out stripes" and stripes["maxima"] > 0 and stripes["labels"] > 0
    assert complete["threshold"] == stripes["threshold"] and 0 < stripes["recall"] <= 1
    assert "maxima in the held-out stripes" in (finished_run[0] / "results/logs/round_1/train.log").read_text()
    calibrated = incomplete["auto_threshold"]
    assert calibrated["method"] == "labelled maxima" and calibrated["maxima"] > calibrated["labels"] > 0
    assert 0 < calibrated["label_fraction"] <= 1 and 0 < calibrated["recall"] <= 1
    assert incomplete["threshold"] == calibrated["threshold"]
    log = (two_rounds[0] / "results/logs/round_1/train.log").read_text()
    assert "hard negatives" not in log and "of the particles)" in log
    counts = [json.loads(str(np.load(run[0] / "results/round_1/patches.npz")["meta"]))["counts"]
              for run in (finished_run, two_rounds)]
    assert counts[0]["background"] == 12 * counts[0]["positive"]
    assert counts[1]["background"] > 8 * counts[1]["positive"]


def test_calibration_without_a_label_hit_falls_back_to_held_out_patches_with_a_warning(two_rounds, tmp_path):
    """Labels that no score maximum reaches (here one per micrograph at its corner pixel) cannot
    calibrate: the threshold comes from the held-out patches, and the log says why."""
    tmp, _ = two_rounds
    results = tmp / "results"
    labels = []
    for name in sorted({Path(p).stem for p in (results / "preprocessed").glob("*/*.mrc")}):
        labels.append(tmp_path / f"{name}.star")
        starfile.write(pd.DataFrame({X: [1.0], Y: [1.0]}), labels[-1])
    out = run(["deepem", "train", str(results / "round_1" / "patches.npz"), "--calibrate",
               *map(str, sorted((results / "preprocessed").iterdir())), "--positives", *map(str, labels),
               "-o", str(tmp_path / "model"), "--epochs", "1", "--seed", "1"]).stdout
    assert "none of the" in out and "held-out patches" in out
    saved = torch.load(tmp_path / "model" / "model.pt", weights_only=False)
    assert saved["auto_threshold"]["method"] == "held-out patches"


def test_one_more_round_reruns_only_that_round(two_rounds):
    tmp, config = two_rounds
    dry = snakemake(config, "-n", "--config", "rounds=3")
    jobs = [line.split()[1].rstrip(":") for line in dry.stdout.splitlines() if line.startswith("rule ")]
    wildcard_rounds = {line.split("round=")[1].split(",")[0] for line in dry.stdout.splitlines() if "round=" in line}
    assert wildcard_rounds == {"2", "3"}  # round 2 only for its verification, new with round 3
    assert "preprocess" not in jobs
    assert jobs.count("train") == 1 and jobs.count("verify") == 1


def test_a_fixed_threshold_repicks_without_retraining_round_one(two_rounds):
    """A threshold set after looking at the picks changes picking and verification, not round 1's training."""
    tmp, config = two_rounds
    dry = snakemake(config, "-n", "-p", "--config", "threshold=0.6")
    jobs = [line.split()[1].rstrip(":") for line in dry.stdout.splitlines() if line.startswith("rule ")]
    assert "preprocess" not in jobs and "preprocess_labelled" not in jobs
    assert jobs.count("pick") == 2 * 3 and jobs.count("verify") == 1  # both rounds' shards; round 1's verdicts
    assert jobs.count("extract") == 1 and jobs.count("train") == 1  # round 2's, which trains on those verdicts
    assert "--threshold 0.6 " in dry.stdout


def test_verify_and_histogram_use_the_threshold_given(two_rounds, tmp_path, capsys):
    tmp, _ = two_rounds
    round_1 = tmp / "results" / "round_1"
    model = round_1 / "model" / "model.pt"
    stored = torch.load(model, weights_only=False)["threshold"]
    scores = read_star_table(round_1 / "candidates.star")[SCORE].to_numpy(float)
    fixed = float(np.round(np.quantile(scores[scores >= stored], 0.5), 3))  # halfway up the picks
    assert fixed > stored
    preprocessed = [str(p) for p in sorted((tmp / "results" / "preprocessed").iterdir())]
    verdicts = {}
    for threshold in ("auto", str(fixed)):
        out = tmp_path / f"verified_{threshold}.star"
        cli(["verify", "--candidates", str(round_1 / "candidates.star"), "--model", str(model),
             "--preprocessed", *preprocessed, "--diameter", "150", "--threshold", threshold, "-o", str(out)])
        verdicts[threshold] = read_star_table(out)
    assert verdicts["auto"].equals(read_star_table(round_1 / "verified.star"))  # the workflow's, at the stored one
    for threshold, cut in (("auto", stored), (str(fixed), fixed)):
        table = verdicts[threshold]
        confident = table.loc[table["deepemVerdict"] == "confident", SCORE]
        assert len(confident) and confident.min() >= (cut + 1) / 2 - 1e-3  # written to 3 decimals
    assert (verdicts[str(fixed)]["deepemVerdict"] == "confident").sum() < (verdicts["auto"]["deepemVerdict"] == "confident").sum()
    capsys.readouterr()
    for threshold, cut in (("auto", stored), (str(fixed), fixed)):
        cli(["histogram", str(round_1 / "candidates.star"), "--model", str(model), "--threshold", threshold,
             "-o", str(tmp_path / "scores.png")])
        assert f"{int((scores >= cut).sum())} at or above {cut:.4f}" in capsys.readouterr().out


def test_corrections_keyed_by_round_number_as_the_readme_writes_them(two_rounds, tmp_path):
    tmp, config = two_rounds
    corrected = tmp_path / "corrected"
    corrected.mkdir()
    (corrected / "demo_000.star").write_text("data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n100 200\n")
    settings = yaml.safe_load(config.read_text())
    settings["corrections"] = {1: str(corrected / "*.star")}  # YAML writes `1:`, read back as the number 1
    mine = tmp_path / "config.yaml"
    mine.write_text(yaml.safe_dump(settings))
    assert "\n  1: " in mine.read_text()
    dry = snakemake(mine, "-n", "-p")
    assert f"--corrections @<(printf '%s\\n' {corrected / 'demo_000.star'})" in dry.stdout


def test_set_scatter_is_refused_rather_than_dropping_micrographs(tiny_dataset, tmp_path):
    dry = snakemake(write_config(tmp_path, tiny_dataset), "-n", "--set-scatter", "shard=2", check=False)
    assert dry.returncode != 0
    assert "the config splits the micrographs into 3 shards; set 'shards' in the config" in dry.stdout + dry.stderr


def test_rule_logs_have_whole_progress_lines_with_the_rate(finished_run):
    tmp, _ = finished_run
    logs = tmp / "results" / "logs"
    for log in [*sorted((logs / "preprocess").glob("*.log")), *sorted((logs / "round_1" / "pick").glob("*.log"))]:
        text = log.read_text()
        assert "\r" not in text, log
        final = [line for line in text.splitlines() if "100%" in line]
        assert len(final) == 1 and "mic/s" in final[0], (log, text)


def test_an_empty_results_path_is_refused_by_the_schema():
    """'' would put every output under the filesystem root."""
    import jsonschema

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    check = jsonschema.Draft7Validator(schema["properties"]["results"])
    assert not check.is_valid("") and check.is_valid("results")


def test_corrections_keys_are_rounds_and_paths_with_spaces_are_refused(tmp_path):
    from deepem.errors import DeepEMError
    from deepem.workflow import check_corrections, check_shell_safe

    fixed = tmp_path / "demo_000.star"
    fixed.write_text("data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n1 2\n")
    micrographs = {"demo_000": "/d/demo_000.mrc"}
    assert check_corrections({"rounds": 3, "corrections": {"01": str(fixed)}}, micrographs) == {"1": [str(fixed)]}
    with pytest.raises(DeepEMError, match="round 1 is given twice"):
        check_corrections({"rounds": 3, "corrections": {"1": str(fixed), "01": str(fixed)}}, micrographs)
    with pytest.raises(DeepEMError, match=r"round 3 has no verification step .* set rounds \(--config rounds=N\)"):
        check_corrections({"rounds": 3, "corrections": {"3": str(fixed)}}, micrographs)
    with pytest.raises(DeepEMError, match="relion_project: '/data/my project' has a space in its path"):
        check_shell_safe(["/data/my project"], "relion_project")
    from deepem.workflow import check_label_files

    both = tmp_path / "merged.star"  # names a by its file and b by its stem; d's empty file still labels it
    both.write_text("data_\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\nx/a.mrc 1 2\nb 3 4\n")
    (tmp_path / "d.star").write_text("")
    four = {n: f"/d/{n}.mrc" for n in "abcd"}
    assert check_label_files([str(both), str(tmp_path / "d.star")], four, "positive label") == {"a", "b", "d"}
    merged = tmp_path / "picks_corrected.star"  # rows name micrographs of another dataset
    merged.write_text("data_\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n/other/mic_1.mrc 1 2\n")
    with pytest.raises(DeepEMError, match="picks_corrected.star: no row of this correction file names a micrograph"):
        check_corrections({"rounds": 2, "corrections": {"1": str(merged)}}, micrographs)


def test_a_results_folder_starting_with_a_hash_is_refused_before_any_job(tiny_dataset, tmp_path):
    """The rules pass `results` as given, unquoted: `-o #r/preprocessed/1-of-3` made the shell drop the rest of
    the command, and the job failed without writing its log."""
    from deepem.errors import DeepEMError
    from deepem.workflow import resolve

    config = yaml.safe_load(write_config(tmp_path, tiny_dataset, results="#r").read_text())
    config.update(rounds=1, particle_px=32, box_scale=1.5, mode="modern", pixel_size=None, corrections={})
    with pytest.raises(DeepEMError, match="results: '#r' starts with '#'"):
        resolve(config)
    assert resolve({**config, "results": "r#1"}).shards == 3
