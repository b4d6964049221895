import shutil

import mrcfile
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter, median_filter, percentile_filter

from deepem import background, model
from deepem.commands.common import parse_background_floor
from deepem.errors import DeepEMError
from deepem.dataset import load_labels
from deepem.io import manifest
from deepem.io.coords import read_by_micrograph, read_coordinates
from deepem.io.micrograph import read_micrograph, write_mrc
from deepem.metrics import match
from deepem.picking import CANDIDATE_FLOOR, candidates, label_spacing

from conftest import run


def test_values_at_reads_the_cell_each_working_pixel_lies_in():
    """Cells of 8 px hold working pixels 0-7, 8-15, ...; pixel x spans x - 0.5 to x + 0.5, so 7.6 lies
    in pixel 8 (before 0.12.0 it was read from cell 0)."""
    particle_px = 32
    level = np.arange(30, dtype=np.float32)[None, :].repeat(20, 0) + 100 * np.arange(20)[:, None]
    xy = np.array([[7.4, 0.0], [7.6, 2.0], [16.1, 23.4], [15.4, 23.6], [400.0, -5.0]])
    np.testing.assert_array_equal(background.values_at(level, xy, particle_px), [0, 1, 202, 301, 29])
    both = np.stack([level, -level])
    np.testing.assert_array_equal(
        background.values_at(both, xy, particle_px), [[0, 1, 202, 301, 29], [0, -1, -202, -301, -29]]
    )


def test_bounds_sit_one_spread_beyond_the_labels_and_need_twenty():
    levels = np.linspace(-0.1, 0.1, 1001)  # 0.5th percentile -0.099, 99.5th 0.099
    textures = np.linspace(0.2, 0.4, 1001)  # 0.5th percentile 0.201, 99.5th 0.399
    floor, ceiling = background.bounds(np.stack([levels, textures]))
    assert floor == pytest.approx(-0.099 - 1.0 * 0.198) and ceiling == pytest.approx(0.399 + 1.0 * 0.198)
    assert background.bounds(np.zeros((2, 20))) == (0.0, 0.0)
    assert background.bounds(np.zeros((2, 19))) is None and background.bounds(np.zeros((2, 0))) is None


def test_kept_needs_both_bounds_and_no_ceiling_keeps_any_texture():
    values = np.array([[-0.5, 0.0, 0.0, -0.2], [0.1, 0.1, 0.9, 0.5]])  # (level, texture) of 4 maxima
    np.testing.assert_array_equal(background.kept(values, -0.3, 0.5), [False, True, False, True])
    np.testing.assert_array_equal(background.kept(values, -0.3), [False, True, True, True])


def test_maps_cover_whole_cells_and_values_at_clamps_past_them():
    maps = background.background_maps(np.zeros((403, 410), np.float32), 32)  # 8 px cells
    assert maps.shape == (2, 50, 51)
    xy = np.array([[409.0, 402.0], [407.9, 399.9]])  # in the partial last cells, and in the last whole one
    marked = np.arange(50 * 51, dtype=np.float32).reshape(50, 51)
    np.testing.assert_array_equal(background.values_at(marked, xy, 32), [marked[49, 50], marked[49, 50]])


def test_level_is_flat_on_noise_and_dark_on_a_darker_region():
    rng = np.random.default_rng(0)
    flat = rng.normal(size=(400, 400)).astype(np.float32)
    flat[:, 250:] -= 1.5  # a darker film over the right side
    level = background.background_maps(flat, 32)[0]  # 8 px cells
    assert level.shape == (50, 50)
    assert np.abs(level[:, :27]).max() < 0.15  # a diameter (4 cells) clear of the edge at x = 250
    assert np.abs(level[:, 36:] + 1.5).max() < 0.15


def test_disc_ranks_equal_scipys_rank_filters():
    image = np.random.default_rng(1).normal(size=(37, 41)).astype(np.float32)
    yy, xx = np.mgrid[-3:4, -3:4]
    disc = xx * xx + yy * yy <= 9
    got = background._disc_ranks(image, disc, (0.5, 0.75, 0.25))
    np.testing.assert_array_equal(got[0], median_filter(image, footprint=disc, mode="reflect"))
    for q, g in zip((75, 25), got[1:]):
        np.testing.assert_array_equal(g, percentile_filter(image, q, footprint=disc, mode="reflect"))


def test_texture_is_low_on_noise_and_high_on_a_textured_region_of_the_same_level():
    rng = np.random.default_rng(0)
    flat = rng.normal(size=(400, 400)).astype(np.float32)
    texture = gaussian_filter(rng.normal(size=(400, 400)), 32 / 3)  # structure of a third of a diameter
    flat[:, 250:] += (0.3 * texture / texture.std())[:, 250:].astype(np.float32)  # mean 0: the level hardly moves
    level, spread = background.background_maps(flat, 32)
    assert abs(np.median(level[:, 36:])) < 0.15  # the textured side is no darker on the whole
    assert np.median(spread[:, :27]) < 0.2  # cell means of pure noise: std 1/8, interquartile range 0.17
    assert np.median(spread[:, 36:]) > 0.28


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


def test_training_sets_the_bounds_from_the_labelled_particles_surroundings(on_carbon):
    tmp, labels, log, _ = on_carbon
    table = manifest.read([tmp / "pre"])
    labelled = load_labels(labels, table, "positive label")
    maps = {name: background.read_maps(table.loc[name]) for name in labelled}
    values = background.label_values(maps, labelled, 32)
    ckpt = torch.load(tmp / "model" / "model.pt", weights_only=False)
    assert values.shape[1] > 50 and "background floor" in log and "texture ceiling" in log
    floor, ceiling = background.bounds(values)
    assert ckpt["background_floor"] == pytest.approx(floor) and ckpt["background_floor"] < values[0].min()
    assert ckpt["background_ceiling"] == pytest.approx(ceiling) and ckpt["background_ceiling"] > values[1].max()
    assert ckpt["min_distance"] == pytest.approx(label_spacing(labelled, 32)) and "diameter apart" in log


def test_a_given_min_distance_is_what_training_uses_and_stores(on_carbon, tmp_path):
    tmp, labels, _, _ = on_carbon
    log = run(["deepem", "train", tmp / "p.npz", "--calibrate", tmp / "pre", "--positives", *labels, "-o", tmp_path / "m",
               "--epochs", "1", "--min-distance", "0.7"]).stdout
    assert torch.load(tmp_path / "m" / "model.pt", weights_only=False)["min_distance"] == 0.7
    assert "picks at least 0.700 diameter apart: given; the labels' is 0.500" in log


def test_stripes_without_a_maximum_by_their_labels_leave_the_threshold_to_the_held_out_patches(on_carbon, tmp_path):
    """A floor above every maximum leaves the held-out stripes' labels unmatched: before 0.12.0 this
    was a traceback after the whole training."""
    tmp, labels, _, _ = on_carbon
    result = run(["deepem", "train", tmp / "p.npz", "--mine", tmp / "pre", "--positives", *labels, "-o", tmp_path / "m",
                  "--epochs", "1", "--mine-epochs", "1", "--background-floor", "100"])
    assert "score maxima in the held-out stripes lies within half a diameter of their" in result.stdout
    choice = torch.load(tmp_path / "m" / "model.pt", weights_only=False)["auto_threshold"]
    assert choice["method"] == "held-out patches"


def test_the_automatic_threshold_leaves_out_the_maxima_beyond_the_bounds(on_carbon):
    tmp, labels, _, _ = on_carbon
    table = manifest.read([tmp / "pre"])
    net, ckpt = model.load(tmp / "model" / "model.pt")
    kept = dropped = 0
    for name in load_labels(labels, table, "positive label"):  # the maxima --calibrate scores, as it finds them
        image, _ = read_micrograph(manifest.working_path(table.loc[name]))
        xy, _ = candidates(net, image, 16, 16, CANDIDATE_FLOOR)
        values = background.values_at(background.read_maps(table.loc[name]), xy, 32)
        light = background.kept(values, ckpt["background_floor"], ckpt["background_ceiling"])
        kept, dropped = kept + int(light.sum()), dropped + int((~light).sum())
    assert dropped > 0 and ckpt["auto_threshold"]["maxima"] == kept


@pytest.mark.parametrize("text,value", [("auto", -0.7), ("AUTO", -0.7), ("off", None), ("False", None), ("-1.5", -1.5)])
def test_background_floor_option(text, value):
    assert parse_background_floor(text, -0.7) == value


@pytest.mark.parametrize("text", ["nan", "inf", "dark"])
def test_background_floor_option_refuses_other_values(text):
    with pytest.raises(DeepEMError, match="background-floor"):
        parse_background_floor(text, None)


@pytest.mark.parametrize("before", ["0.6", "0.8"])
def test_old_preprocessing_without_background_maps_fails_before_any_work(on_carbon, tmp_path, before):
    tmp, labels, _, _ = on_carbon
    old = tmp_path / "pre"
    if before == "0.6":  # no background folder
        shutil.copytree(tmp / "pre", old, ignore=shutil.ignore_patterns(manifest.LEVELS))
    else:  # 0.6-0.7: level maps only, 2-D
        shutil.copytree(tmp / "pre", old)
        for path in (old / manifest.LEVELS).glob("*.mrc"):
            write_mrc(path, mrcfile.read(path)[0], 1.0)
    for cmd in (
        ["deepem", "pick", "--model", tmp / "model" / "model.pt", "--preprocessed", old, "-o", tmp_path / "picks"],
        ["deepem", "train", tmp / "p.npz", "--calibrate", old, "--positives", *labels, "-o", tmp_path / "model"],
    ):
        result = run(cmd, check=False)
        assert result.returncode == 2 and f"preprocessed by deepem before {before}" in result.stderr
        assert "rerun the preprocess step" in result.stderr
    assert not (tmp_path / "picks").exists() and not (tmp_path / "model").exists()
    both = run(["deepem", "train", tmp / "p.npz", "--mine", tmp / "pre", "--calibrate", tmp / "pre", "--positives",
                *labels, "-o", tmp_path / "both"], check=False)
    assert both.returncode == 2 and "not both" in both.stderr and not (tmp_path / "both").exists()
    off = run(["deepem", "pick", "--model", tmp / "model" / "model.pt", "--preprocessed", old, "-o", tmp_path / "off",
               "--background-floor", "off"])
    assert "picked" in off.stdout


def test_pick_drops_exactly_the_maxima_beyond_the_bounds(on_carbon):
    tmp, _, _, picks = on_carbon
    table = manifest.read([tmp / "pre"])
    ckpt = torch.load(tmp / "model" / "model.pt", weights_only=False)
    dropped_on_carbon = textured = 0
    for name, row in table.iterrows():
        xy, score = picks["off"][name]
        values = background.values_at(background.read_maps(row), xy / [row["scale_x"], row["scale_y"]], 32)
        light = background.kept(values, -0.3, ckpt["background_ceiling"])
        np.testing.assert_array_equal(picks["-0.3"][name][1], score[light])
        auto = background.kept(values, ckpt["background_floor"], ckpt["background_ceiling"])
        np.testing.assert_array_equal(picks["auto"][name][1], score[auto])
        textured += int(((values[0] >= ckpt["background_floor"]) & ~auto).sum())  # dropped by the ceiling alone
        truth = read_coordinates(tmp / "sim" / "truth" / f"{name}.star")
        strong = score >= ckpt["threshold"]
        hit = match(xy[strong], truth, 37.5)
        assert hit[~light[strong]].sum() == 0  # no particle in the truth lies on such dark background
        dropped_on_carbon += int((~light[strong] & ~hit).sum()) if name in ("demo_001", "demo_003") else 0
    assert dropped_on_carbon >= 5  # picks on the carbon of the odd micrographs
    assert textured > 0
