import shutil

import numpy as np
import pytest
import torch

from deepem import background, model
from deepem.commands.common import parse_background_floor
from deepem.errors import DeepEMError
from deepem.dataset import load_labels
from deepem.io import manifest
from deepem.io.coords import read_by_micrograph, read_coordinates
from deepem.io.micrograph import read_micrograph
from deepem.metrics import match
from deepem.picking import CANDIDATE_FLOOR, candidates

from conftest import run


def test_levels_at_reads_the_cell_each_working_pixel_lies_in():
    particle_px = 32  # 8 px cells: working pixels 0-7, 8-15, ...
    level = np.arange(30, dtype=np.float32)[None, :].repeat(20, 0) + 100 * np.arange(20)[:, None]
    xy = np.array([[7.9, 0.0], [8.0, 2.0], [16.1, 23.9], [400.0, -5.0]])
    np.testing.assert_array_equal(background.levels_at(level, xy, particle_px), [0, 1, 202, 29])


def test_floor_sits_two_and_a_half_spreads_below_the_labels_and_needs_twenty():
    levels = np.linspace(-0.1, 0.1, 1001)  # 0.5th percentile -0.099, 99.5th 0.099
    assert background.floor(levels) == pytest.approx(-0.099 - 2.5 * 0.198)
    assert background.floor(np.zeros(20)) == 0.0
    assert background.floor(np.zeros(19)) is None and background.floor([]) is None


def test_level_map_covers_whole_cells_and_levels_at_clamps_past_them():
    level = background.level_map(np.zeros((403, 410), np.float32), 32)  # 8 px cells
    assert level.shape == (50, 51)
    xy = np.array([[409.0, 402.0], [407.9, 399.9]])  # in the partial last cells, and in the last whole one
    marked = np.arange(50 * 51, dtype=np.float32).reshape(50, 51)
    np.testing.assert_array_equal(background.levels_at(marked, xy, 32), [marked[49, 50], marked[49, 50]])


def test_level_map_is_flat_on_noise_and_dark_on_a_darker_region():
    rng = np.random.default_rng(0)
    flat = rng.normal(size=(400, 400)).astype(np.float32)
    flat[:, 250:] -= 1.5  # a darker film over the right side
    level = background.level_map(flat, 32)  # 8 px cells
    assert level.shape == (50, 50)
    assert np.abs(level[:, :27]).max() < 0.15  # a diameter (4 cells) clear of the edge at x = 250
    assert np.abs(level[:, 36:] + 1.5).max() < 0.15


@pytest.fixture(scope="module")
def on_carbon(tmp_path_factory):
    """A model trained on a simulated set whose carbon also holds particles (left out of the truth),
    and its candidates on that set with the model's background floor, without it, and with -0.3."""
    tmp = tmp_path_factory.mktemp("carbon")
    run(["deepem", "simulate", "-o", tmp / "sim", "--micrographs", "4", "--labelled", "2", "--on-carbon", "0.6", "--seed", "5"])
    mics = sorted(str(p) for p in (tmp / "sim" / "micrographs").glob("*.mrc"))
    labels = sorted(str(p) for p in (tmp / "sim" / "labels").glob("*.star"))
    run(["deepem", "preprocess", *mics, "-o", tmp / "pre", "--diameter", "150"])
    run(["deepem", "extract", "--preprocessed", tmp / "pre", "--positives", *labels, "--diameter", "150", "-o", tmp / "p.npz"])
    trained = run(["deepem", "train", tmp / "p.npz", "--calibrate", tmp / "pre", "--positives", *labels, "-o", tmp / "model",
                   "--epochs", "15", "--seed", "1"])
    picks = {}
    for floor in ("auto", "off", "-0.3"):
        run(["deepem", "pick", "--model", tmp / "model" / "model.pt", "--preprocessed", tmp / "pre", "-o", tmp / floor,
             "--background-floor", floor])
        picks[floor] = read_by_micrograph(tmp / floor / "candidates.star")
    return tmp, labels, trained.stdout, picks


def test_training_sets_the_floor_from_the_labelled_particles_levels(on_carbon):
    tmp, labels, log, _ = on_carbon
    table = manifest.read([tmp / "pre"])
    labelled = load_labels(labels, table, "positive label")
    maps = {name: background.read_level_map(table.loc[name]) for name in labelled}
    levels = background.label_levels(maps, labelled, 32)
    ckpt = torch.load(tmp / "model" / "model.pt", weights_only=False)
    assert len(levels) > 50 and "background floor" in log
    assert ckpt["background_floor"] == pytest.approx(background.floor(levels)) and ckpt["background_floor"] < levels.min()


def test_the_automatic_threshold_leaves_out_the_maxima_below_the_floor(on_carbon):
    tmp, labels, _, _ = on_carbon
    table = manifest.read([tmp / "pre"])
    net, ckpt = model.load(tmp / "model" / "model.pt")
    kept = dropped = 0
    for name in load_labels(labels, table, "positive label"):  # the maxima --calibrate scores, as it finds them
        image, _ = read_micrograph(manifest.working_path(table.loc[name]))
        xy, _ = candidates(net, image, 16, 16, CANDIDATE_FLOOR)
        light = background.levels_at(background.read_level_map(table.loc[name]), xy, 32) >= ckpt["background_floor"]
        kept, dropped = kept + int(light.sum()), dropped + int((~light).sum())
    assert dropped > 0 and ckpt["auto_threshold"]["maxima"] == kept


@pytest.mark.parametrize("text,value", [("auto", -0.7), ("AUTO", -0.7), ("off", None), ("False", None), ("-1.5", -1.5)])
def test_background_floor_option(text, value):
    assert parse_background_floor(text, -0.7) == value


@pytest.mark.parametrize("text", ["nan", "inf", "dark"])
def test_background_floor_option_refuses_other_values(text):
    with pytest.raises(DeepEMError, match="background-floor"):
        parse_background_floor(text, None)


def test_old_preprocessing_without_level_maps_fails_before_any_work(on_carbon, tmp_path):
    tmp, labels, _, _ = on_carbon
    old = tmp_path / "pre"
    shutil.copytree(tmp / "pre", old, ignore=shutil.ignore_patterns(manifest.LEVELS))
    for cmd in (
        ["deepem", "pick", "--model", tmp / "model" / "model.pt", "--preprocessed", old, "-o", tmp_path / "picks"],
        ["deepem", "train", tmp / "p.npz", "--calibrate", old, "--positives", *labels, "-o", tmp_path / "model"],
    ):
        result = run(cmd, check=False)
        assert result.returncode == 2 and "background level map missing" in result.stderr
        assert "rerun the preprocess step" in result.stderr
    assert not (tmp_path / "picks").exists() and not (tmp_path / "model").exists()
    both = run(["deepem", "train", tmp / "p.npz", "--mine", tmp / "pre", "--calibrate", tmp / "pre", "--positives",
                *labels, "-o", tmp_path / "both"], check=False)
    assert both.returncode == 2 and "not both" in both.stderr and not (tmp_path / "both").exists()
    off = run(["deepem", "pick", "--model", tmp / "model" / "model.pt", "--preprocessed", old, "-o", tmp_path / "off",
               "--background-floor", "off"])
    assert "picked" in off.stdout


def test_pick_drops_exactly_the_maxima_below_the_floor(on_carbon):
    tmp, _, _, picks = on_carbon
    table = manifest.read([tmp / "pre"])
    ckpt = torch.load(tmp / "model" / "model.pt", weights_only=False)
    dropped_on_carbon = 0
    for name, row in table.iterrows():
        level = background.read_level_map(row)
        xy, score = picks["off"][name]
        light = background.levels_at(level, xy / [row["scale_x"], row["scale_y"]], 32) >= -0.3
        np.testing.assert_array_equal(picks["-0.3"][name][1], score[light])
        auto = background.levels_at(level, xy / [row["scale_x"], row["scale_y"]], 32) >= ckpt["background_floor"]
        np.testing.assert_array_equal(picks["auto"][name][1], score[auto])
        truth = read_coordinates(tmp / "sim" / "truth" / f"{name}.star")
        strong = score >= ckpt["threshold"]
        hit = match(xy[strong], truth, 37.5)
        assert hit[~light[strong]].sum() == 0  # no particle in the truth lies on such dark background
        dropped_on_carbon += int((~light[strong] & ~hit).sum()) if name in ("demo_001", "demo_003") else 0
    assert dropped_on_carbon >= 5  # picks on the carbon of the odd micrographs
