import argparse

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from deepem.commands import train as train_command
from deepem.commands.common import parse_min_distance, threshold
from deepem.dataset import load_labels
from deepem.errors import DeepEMError
from deepem.io import manifest
from deepem.io.coords import picks_table, read_by_micrograph, read_coordinates, write_star
from deepem.model import STRIDE, DeepEMNet
from deepem.topology import design
from deepem.picking import box_middle, candidates, find_peaks, label_spacing, score_map, smoothed

from conftest import run


def test_find_peaks_keeps_maxima_at_least_min_distance_apart():
    scores = np.zeros((40, 40), np.float32)
    scores[10, 10] = 0.9
    scores[10, 13] = 0.8  # 9 working px from the first: suppressed at min distance 12
    scores[30, 30] = 0.7
    scores[5, 30] = 0.2
    xy, s = find_peaks(scores, min_distance=12, floor=0.5)
    assert np.allclose(s, [0.9, 0.7])
    assert np.allclose(xy, [[10 * STRIDE, 10 * STRIDE], [30 * STRIDE, 30 * STRIDE]])


def test_find_peaks_refines_to_sub_cell_precision():
    y, x = np.mgrid[:30, :30]
    scores = np.exp(-((x - 12.3) ** 2 + (y - 17.8) ** 2) / 8.0).astype(np.float32)
    xy, _ = find_peaks(scores, min_distance=6, floor=0.5)
    assert len(xy) == 1
    assert abs(xy[0, 0] - 12.3 * STRIDE) < 0.3 * STRIDE and abs(xy[0, 1] - 17.8 * STRIDE) < 0.3 * STRIDE


def test_find_peaks_keeps_the_refined_picks_min_distance_apart():
    """Before 0.12.0 suppression measured whole cells and refinement then moved each pick by up to
    half a cell, so two picks could end up to 3 working px closer than the minimum."""
    y, x = np.mgrid[:40, :40]
    scores = np.exp(-((x - 10.45) ** 2 + (y - 20) ** 2) / 2) + 0.99 * np.exp(-((x - 15.55) ** 2 + (y - 20) ** 2) / 2)
    xy, _ = find_peaks(scores, min_distance=16, floor=0.05)
    assert len(xy) == 1 or np.hypot(*(xy[0] - xy[1])) >= 16
    xy, _ = find_peaks(scores, min_distance=12, floor=0.05)  # far enough apart: both kept
    assert len(xy) == 2 and np.hypot(*(xy[0] - xy[1])) >= 12


def test_peaks_on_the_maps_border_stay_on_it():
    """A maximum on the first or last row or column is refined against the map reflected, not
    against a copy of itself, which pushed it half a cell outward (out of the image with --edge 0)."""
    y, x = np.mgrid[:30, :30]
    for x0 in (0.0, 29.0):
        xy, _ = find_peaks(np.exp(-((x - x0) ** 2 + (y - 15) ** 2) / 4), 6, 0.05)
        np.testing.assert_allclose(xy, [[x0 * STRIDE, 15 * STRIDE]])


def test_find_peaks_on_empty_map():
    xy, s = find_peaks(np.zeros((10, 10), np.float32), 6, floor=0.5)
    assert xy.shape == (0, 2) and s.shape == (0,)


def _spike_and_particle():
    """A one-box spike (one cell at 0.999) and a particle-like peak (0.99 amid 0.95 neighbours)."""
    scores = np.full((40, 40), 0.01)
    scores[10, 10] = 0.999
    scores[29:32, 29:32] = 0.95
    scores[30, 30] = 0.99
    return scores


def test_shift_average_ranks_a_broad_peak_above_a_one_box_spike():
    scores = _spike_and_particle()
    xy, _ = find_peaks(scores, min_distance=12, floor=0.05)
    assert np.allclose(xy[0], [10 * STRIDE, 10 * STRIDE])  # the raw map ranks the spike first
    xy, s = find_peaks(smoothed(scores, "modern"), min_distance=12, floor=0.05)
    assert np.allclose(xy[:, 0], [30 * STRIDE, 10 * STRIDE]) and s[0] > s[1]
    assert smoothed(scores, "faithful") is scores  # the paper's picking keeps the raw map


@pytest.mark.parametrize("mode", ["modern", "faithful"])
def test_candidates_rank_the_shift_averaged_map_in_modern_mode_only(mode):
    torch.manual_seed(0)
    net = DeepEMNet(design(48, maps=(4, 8, 8)), mode).eval()
    image = np.random.default_rng(0).normal(size=(150, 120)).astype(np.float32)
    xy, s = candidates(net, image, min_distance_px=16, edge_px=0, floor=0.0)

    def peaks(scores):  # at the boxes' middles and inside the image, as candidates keeps them
        p, v = find_peaks(scores, 16, floor=0.0)
        p = p + box_middle(48)
        inside = (p >= 0).all(1) & (p <= np.array(image.shape[::-1]) - 1).all(1)
        return p[inside], v[inside]

    raw_map = score_map(net, image)
    expected, raw = peaks(smoothed(raw_map, mode)), peaks(raw_map)
    assert len(s) > 5 and np.array_equal(xy, expected[0]) and np.array_equal(s, expected[1])
    assert (mode == "faithful") == (len(s) == len(raw[1]) and np.array_equal(s, raw[1]))


def _grid_with_pairs(gap, pairs):
    """200 labels 64 px apart (2 diameters at 32 px), with a partner ``gap`` px to the right of the first ``pairs``."""
    grid = np.stack(np.meshgrid(np.arange(20), np.arange(10)), -1).reshape(-1, 2) * 64.0
    return np.concatenate([grid, grid[:pairs] + [gap, 0]])


@pytest.mark.parametrize(
    "labelled, expected",
    [
        ({"a": _grid_with_pairs(14.0, 0)}, 0.5),  # spread out: the default, never more
        ({"a": _grid_with_pairs(14.0, 1)}, 0.5),  # 2 of 201 labels (1 %) at 14 px: the quantile interpolates above
        ({"a": _grid_with_pairs(14.0, 5)}, 14 / 32),  # 10 of 205 labels (5 %) have a neighbour 14 px away
        ({"a": _grid_with_pairs(6.0, 5)}, 0.4),  # closer than 0.4 diameter (duplicates?): never below 0.4
        ({"a": np.zeros((1, 2)), "b": np.zeros((0, 2))}, 0.5),  # no neighbour to measure
    ],
)
def test_label_spacing_is_the_labels_first_percentile_neighbour_distance_within_bounds(labelled, expected):
    assert label_spacing(labelled, 32) == pytest.approx(expected)


@pytest.mark.parametrize("text, value", [("auto", 0.43), ("AUTO", 0.43), ("0.45", 0.45), (0.6, 0.6)])
def test_parse_min_distance(text, value):
    assert parse_min_distance(text, 0.43) == value


@pytest.mark.parametrize("text", ["0", "-0.5", "nan", "half"])
def test_parse_min_distance_refuses_what_is_not_a_positive_number(text):
    with pytest.raises(DeepEMError, match="min-distance"):
        parse_min_distance(text, 0.5)


@pytest.mark.parametrize("text, value", [("auto", None), ("0.3", 0.3), ("0.999", 0.999)])
def test_threshold(text, value):
    assert threshold(text) == value


@pytest.mark.parametrize("text", ["0", "1", "1.5", "-0.2", "nan", "inf", "high", "Auto"])
def test_threshold_refuses_what_is_not_auto_or_strictly_between_0_and_1(text):
    with pytest.raises(argparse.ArgumentTypeError, match="between 0 and 1"):
        threshold(text)


def test_pick_spaces_picks_by_the_models_stored_spacing_unless_told(finished_run, tmp_path):
    results = finished_run[0] / "results"
    ckpt = torch.load(results / "round_1/model/model.pt", weights_only=False)
    assert ckpt["min_distance"] == 0.5  # the simulator places particles a diameter apart
    ckpt["min_distance"] = 0.4
    torch.save(ckpt, tmp_path / "model.pt")
    shard = results / "preprocessed" / "1-of-3"
    diameter_px = 150 / manifest.read([shard])["pixel_size"].iloc[0]
    slack = 1e-3  # the STAR file's rounding of the coordinates; the spacing holds between the refined picks
    gaps = {}
    for spacing in ("auto", "0.5"):
        log = run(["deepem", "pick", "--model", tmp_path / "model.pt", "--preprocessed", shard, "-o", tmp_path / spacing,
                   "--min-distance", spacing]).stdout
        assert ("0.400 diameter apart" if spacing == "auto" else "0.500 diameter apart") in log
        gaps[spacing] = []
        for xy, _ in read_by_micrograph(tmp_path / spacing / "candidates.star").values():
            d = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1)) + np.eye(len(xy)) * 1e9
            gaps[spacing] += list(d.min(1) / diameter_px)
    assert min(gaps["auto"]) >= 0.4 - slack and min(gaps["0.5"]) >= 0.5 - slack
    # the stored spacing lets through maxima that the default suppresses
    assert len(gaps["auto"]) > len(gaps["0.5"]) and min(gaps["auto"]) < 0.5 - 0.01


def test_training_stores_the_labels_spacing_and_mines_and_calibrates_at_it(finished_run, tiny_dataset, tmp_path, monkeypatch):
    results = finished_run[0] / "results"
    shards = sorted(str(p) for p in (results / "preprocessed").glob("*-of-3"))
    diameter_px = 150 / manifest.read(shards)["pixel_size"].iloc[0]
    labels = []
    for path in sorted((tiny_dataset / "labels").glob("*.star")):  # every 10th label gets a neighbour 0.45 diameter away
        xy = read_coordinates(path)
        labels.append(tmp_path / path.name)
        write_star(labels[-1], picks_table(np.concatenate([xy, xy[::10] + [0.45 * diameter_px, 0]])))
    seen = []

    def spy(real):
        return lambda *args, **kwargs: seen.append(kwargs["spacing"]) or real(*args, **kwargs)

    monkeypatch.setattr(train_command, "hard_negatives", spy(train_command.hard_negatives))
    monkeypatch.setattr(train_command, "label_hits", spy(train_command.label_hits))
    parser = argparse.ArgumentParser()
    train_command.add_args(parser)
    train_command.main(parser.parse_args([
        str(results / "round_1" / "patches.npz"), "--mine", *shards, "--positives", *map(str, labels),
        "-o", str(tmp_path / "model"), "--epochs", "1", "--mine-epochs", "1", "--threads", "2",
    ]))
    ckpt = torch.load(tmp_path / "model" / "model.pt", weights_only=False)
    expected = label_spacing(load_labels(labels, manifest.read(shards), "positive label"), ckpt["particle_px"])
    assert 0.4 <= expected < 0.5 and ckpt["min_distance"] == pytest.approx(expected)
    assert seen == [expected, expected]  # mining, then the held-out stripes' threshold


def test_training_without_labelled_micrographs_stores_a_given_spacing_and_floor(finished_run, tmp_path):
    patches = finished_run[0] / "results" / "round_1" / "patches.npz"
    stored = {}
    for name, extra in {"given": ["--min-distance", "0.45", "--background-floor", "-2.5"], "auto": []}.items():
        log = run(["deepem", "train", patches, "-o", tmp_path / name, "--epochs", "1", *extra]).stdout
        stored[name] = torch.load(tmp_path / name / "model.pt", weights_only=False)
        assert ("0.450 diameter apart: given" in log) == (name == "given")
    assert stored["given"]["min_distance"] == 0.45 and stored["given"]["background_floor"] == -2.5
    assert "min_distance" not in stored["auto"] and "background_floor" not in stored["auto"]  # pick's defaults apply
    log = run(["deepem", "pick", "--model", tmp_path / "given" / "model.pt", "--preprocessed",
               finished_run[0] / "results" / "preprocessed" / "1-of-3", "-o", tmp_path / "picks"]).stdout
    assert "darker than -2.500 (carbon" in log and "0.450 diameter apart" in log


@pytest.mark.parametrize("mode", ["modern", "faithful"])
def test_picks_are_the_same_particles_on_a_micrograph_turned_upside_down(mode):
    """Scores average a box's rotations, so a box scores a particle the same on both sides of its
    middle: picks on the image turned 180 degrees, mapped back, must be the same points. Reported at
    the box's pixel box // 2 instead (before 0.11.0), each set sat half a pixel right of and below
    its particles, and the two differed by a whole pixel."""
    torch.manual_seed(0)
    net = DeepEMNet(design(48, maps=(4, 8, 8)), mode).eval()
    image = np.random.default_rng(0).normal(size=(180, 210)).astype(np.float32)  # sides on the stride grid
    h, w = image.shape
    xy, score = candidates(net, image, 9, 60, 0.0)
    turned, turned_score = candidates(net, np.ascontiguousarray(image[::-1, ::-1]), 9, 60, 0.0)
    back = np.stack([w - 1 - turned[:, 0], h - 1 - turned[:, 1]], axis=1)
    distance, nearest = cKDTree(back).query(xy)
    assert len(xy) > 10 and np.median(distance) < 0.01
    np.testing.assert_allclose(np.median(xy - back[nearest], axis=0), 0, atol=0.01)


def test_pick_keeps_the_picks_whose_score_as_written_reaches_the_threshold(finished_run, tmp_path, monkeypatch):
    """Scores are written to 6 decimals; pick compares those, as verify, histogram and evaluate do
    when they read them. Before, 0.4999996 was dropped at threshold 0.5 yet written as 0.500000."""
    from deepem.commands import pick as pick_command

    xy = np.array([[200.0, 200.0], [400.0, 400.0], [600.0, 600.0]])
    scores = np.array([0.50000049, 0.4999996, 0.4999994])  # written 0.500000, 0.500000, 0.499999
    monkeypatch.setattr(pick_command, "candidates", lambda *args, **kwargs: (xy.copy(), scores.copy()))
    parser = argparse.ArgumentParser()
    pick_command.add_args(parser)
    results = finished_run[0] / "results"
    pick_command.main(parser.parse_args([
        "--model", str(results / "round_1/model/model.pt"), "--preprocessed", str(results / "preprocessed/1-of-3"),
        "-o", str(tmp_path / "picks"), "--threshold", "0.5", "--background-floor", "off"]))
    written = read_by_micrograph(tmp_path / "picks" / "candidates.star")
    assert written and all(list(s) == [0.5, 0.5, 0.499999] for _, s in written.values())
    for path in (tmp_path / "picks").glob("*.star"):
        if path.name != "candidates.star":
            assert len(read_coordinates(path)) == 2, path.name
