from pathlib import Path

import numpy as np
import pytest

from deepem.dataset import match_labels
from deepem.io.micrograph import micrograph_names
from deepem.errors import DeepEMError
from deepem.patches import check_inside, extract


def test_label_files_match_by_stem_or_stem_suffix():
    names = ["mic_1", "mic_10", "a"]
    got = match_labels(["/x/mic_1.star", "/y/mic_10_autopick.star", "/z/mic_1_manualpick.star", "a.box"], names, "label")
    assert got == {"mic_1": ["/x/mic_1.star", "/z/mic_1_manualpick.star"], "mic_10": ["/y/mic_10_autopick.star"],
                   "a": ["a.box"]}


def test_a_suffix_starting_with_a_number_may_name_another_micrograph_and_is_an_error():
    """grid_2_autopick.star went to micrograph grid when grid_2 was not among the micrographs (before 0.12.3)."""
    with pytest.raises(DeepEMError, match=r"grid_2_autopick.star: the file of micrograph grid, or of a micrograph "
                       r"grid_2 that 'micrographs' does not list\?"):
        match_labels(["/y/grid_2_autopick.star"], ["grid", "grid_1"], "label")
    assert match_labels(["/y/grid_1_autopick.star", "/y/grid_manualpick2.star"], ["grid", "grid_1"], "label") == {
        "grid_1": ["/y/grid_1_autopick.star"], "grid": ["/y/grid_manualpick2.star"]}


def test_unmatched_label_and_duplicate_stems_are_errors():
    with pytest.raises(DeepEMError, match="other.star: positive label file matches no micrograph"):
        match_labels(["/l/other.star"], ["mic"], "positive label")
    with pytest.raises(DeepEMError, match=r"b.star: truth file matches no micrograph \(2 of the 3 truth files match none\); "
                       ".* or leave out the files of micrographs you do not run"):
        match_labels(["/t/mic.star", "/t/b.star", "/t/c.star"], ["mic"], "truth")
    with pytest.raises(DeepEMError, match="micrograph file names must be unique"):
        micrograph_names(["/a/m.mrc", "/b/m.mrc"])


def test_patch_is_centred_on_the_coordinate():
    """A box's middle is its top-left + (box - 1) / 2; (x, y) = (column, row)."""
    image = np.arange(50 * 60, dtype=np.float32).reshape(50, 60)
    patches = extract(image, [[30, 20], [0, 0]], box=11)  # odd: the middle is a pixel
    assert patches.shape == (2, 11, 11)
    np.testing.assert_array_equal(patches[0], image[15:26, 25:36])
    assert patches[1, 5, 5] == image[0, 0]
    np.testing.assert_array_equal(extract(image, [[30.5, 20.5]], box=12)[0], image[15:27, 25:37])  # even: between 4
    rng = np.random.default_rng(0)
    for box in (11, 12):  # any centre lies within half a pixel of its patch's middle in x and y
        centres = rng.uniform(box, 40, size=(200, 2))
        rows = extract(np.broadcast_to(np.arange(50.0)[:, None], (50, 60)), centres, box)[:, 0, 0] + (box - 1) / 2
        cols = extract(np.broadcast_to(np.arange(60.0), (50, 60)), centres, box)[:, 0, 0] + (box - 1) / 2
        assert np.abs(np.c_[cols, rows] - centres).max() <= 0.5


def test_patches_at_picks_are_the_boxes_picking_scored():
    """Mining and verified picks re-cut picking's maxima: each patch must be the box that scored there.
    (Before 0.12.0 an even box's patches sat half a pixel up and left of it, and np.rint's rounding to
    even moved every other cell's by a whole pixel.)"""
    from deepem.model import STRIDE
    from deepem.picking import box_middle, pad_for_scoring

    image = np.random.default_rng(1).normal(size=(100, 131)).astype(np.float32)
    for box in (47, 48):
        padded, (rows, cols) = pad_for_scoring(image, box)
        cells = [(i, j) for i in (0, 1, 2, rows - 1) for j in (0, 5, 6, cols - 1)]
        xy = [(STRIDE * j + box_middle(box), STRIDE * i + box_middle(box)) for i, j in cells]
        for (i, j), patch in zip(cells, extract(image, xy, box)):
            np.testing.assert_array_equal(patch, padded[STRIDE * i : STRIDE * i + box, STRIDE * j : STRIDE * j + box])


def test_coordinates_outside_the_image_are_an_error():
    """The image spans -0.5 to w - 0.5: the outer halves of the edge pixels are inside."""
    check_inside(np.array([[0.0, 0.0], [59.0, 49.0], [-0.5, -0.5], [59.5, 49.5], [59.3, 0.0]]), (50, 60), "ok.star", "m")
    for outside in ([60.5, 3.0], [-0.6, 3.0], [3.0, 49.6], [3.0, -0.51]):
        with pytest.raises(DeepEMError, match="bad.star: 1 coordinates outside the 60 x 50 micrograph m, e.g."):
            check_inside(np.array([[10.0, 10.0], outside]), (50, 60), "bad.star", "m")


def test_cluster_requests_grow_with_micrograph_size_shard_size_and_retries(tmp_path):
    from deepem.io.micrograph import write_mrc
    from deepem.workflow import preprocess_mem_mb, runtime_min

    small, big, empty = tmp_path / "small.mrc", tmp_path / "big.mrc", tmp_path / "empty.mrc"
    write_mrc(small, np.zeros((512, 512), np.float32), 1.0)
    write_mrc(big, np.zeros((2048, 4096), np.float32), 1.0)
    empty.touch()  # a placeholder (dry runs) or broken file: the job itself reports it
    assert preprocess_mem_mb([small]) < preprocess_mem_mb([small, big]) == preprocess_mem_mb([big])
    assert preprocess_mem_mb([big], attempt=2) == 2 * preprocess_mem_mb([big])
    assert preprocess_mem_mb([empty]) > preprocess_mem_mb([small])
    assert runtime_min(10) < runtime_min(1000) and runtime_min(10, attempt=3) == 3 * runtime_min(10)


def test_background_ratio_auto_is_12_for_any_labels_and_a_number_passes_through():
    from deepem.workflow import background_ratio

    assert background_ratio({"background_ratio": "auto", "labels": {"complete": True}}) == 12
    assert background_ratio({"background_ratio": "auto", "labels": {"complete": False}}) == 12
    assert background_ratio({"background_ratio": 7.5, "labels": {"complete": False}}) == 7.5


def test_a_file_that_two_patterns_match_is_listed_once(tmp_path):
    from deepem.dataset import expand

    for name in ("mic_1_autopick.star", "mic_2_autopick.star"):
        (tmp_path / name).write_text("")
    files = expand([str(tmp_path / "mic_1*.star"), str(tmp_path / "*_autopick.star")], "label")
    assert [Path(f).name for f in files] == ["mic_1_autopick.star", "mic_2_autopick.star"]
