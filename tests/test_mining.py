import json
from types import SimpleNamespace

import numpy as np
import pytest

from deepem import mining


def test_label_hits_in_stripes_match_stripe_maxima_to_labels_counting_border_labels_once(monkeypatch):
    # particle_px 32: matching radius 16; stripe x in [100, 200)
    maxima = np.array([[151.0, 50], [198, 50], [120, 90], [260, 50]])
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    monkeypatch.setattr(mining, "_maxima", lambda *args: iter([("a", None, maxima, scores)]))
    labels = {"a": np.array([[150.0, 52], [190, 120], [205, 50], [210, 90], [250, 50]])}
    hits, got, n_labels = mining.label_hits(None, None, labels, 32, "cpu", {"a": (100, 200)})
    # in the stripe: 151 (label 150), 198 (label 205, just outside: it counts), 120 (no label)
    np.testing.assert_array_equal(hits, [True, True, False])
    np.testing.assert_array_equal(got, [0.9, 0.8, 0.7])
    # labels 150 and 190 inside, plus 205 matched from outside; 210 (unmatched, outside) and 250 do not count
    assert n_labels == 3


def test_label_hits_in_stripes_skip_micrographs_without_a_stripe(monkeypatch):
    seen = []
    monkeypatch.setattr(mining, "_maxima", lambda net, table, names, *rest: seen.append(list(names)) or iter([]))
    hits, scores, n_labels = mining.label_hits(None, None, {"a": np.zeros((1, 2)), "b": np.zeros((1, 2))}, 32, "cpu", {"b": (0, 5)})
    assert seen == [["b"]] and len(hits) == len(scores) == n_labels == 0


def test_label_hits_without_stripes_match_every_maximum_and_count_every_label(monkeypatch):
    maxima = np.array([[151.0, 50], [198, 50], [120, 90], [260, 50]])
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    monkeypatch.setattr(mining, "_maxima", lambda *args: iter([("a", None, maxima, scores)]))
    labels = {"a": np.array([[150.0, 52], [190, 120], [205, 50], [250, 50]])}
    hits, got, n_labels = mining.label_hits(None, None, labels, 32, "cpu")
    np.testing.assert_array_equal(hits, [True, True, False, True])  # 150, 205 and 250 (within 16 px of 260)
    np.testing.assert_array_equal(got, scores)
    assert n_labels == 4  # 190 matches no maximum and still counts


def test_label_hits_leave_out_maxima_beyond_the_background_bounds_as_picking_does(monkeypatch):
    maxima = np.array([[151.0, 50], [198, 50], [120, 90], [260, 50], [60, 200]])
    scores = np.array([0.9, 0.8, 0.7, 0.95, 0.85])
    monkeypatch.setattr(mining, "_maxima", lambda *args: iter([("a", None, maxima, scores)]))
    maps = np.zeros((2, 40, 40), np.float32)  # level and texture, 8 px cells at particle_px 32
    maps[0, :, 24:] = -2.0  # dark from x = 192: the maxima at 198 and 260
    maps[1, 20:, :] = 1.0  # textured from y = 160: the maximum at (60, 200)
    labels = {"a": np.array([[150.0, 52], [205, 50], [250, 50], [62, 200]])}
    hits, got, n_labels = mining.label_hits(None, None, labels, 32, "cpu", background=({"a": maps}, -1.0, 0.5))
    np.testing.assert_array_equal(hits, [True, False])  # 151 matches 150; 120 matches nothing
    np.testing.assert_array_equal(got, [0.9, 0.7])
    assert n_labels == 4  # the labels beyond the bounds still count, as misses


def test_hard_negatives_are_never_mined_in_the_held_out_stripe(monkeypatch):
    image = np.arange(300 * 300, dtype=np.float32).reshape(300, 300)
    maxima = np.array([[150.0, 150], [50, 150], [250, 50]])  # the first in the stripe, all far from the label
    monkeypatch.setattr(mining, "_maxima", lambda *args: iter([("a", image, maxima, np.array([0.9, 0.8, 0.7]))]))
    net = SimpleNamespace(arch=SimpleNamespace(box=8))
    labels = {"a": np.array([[10.0, 10], [280, 280], [20, 280]])}
    got = mining.hard_negatives(net, None, labels, 32, "cpu", {"a": (100, 200)})
    np.testing.assert_array_equal(got, mining.extract(image, maxima[1:], 8))
    assert len(mining.hard_negatives(net, None, labels, 32, "cpu", {})) == 3  # no stripe: all three


def test_mining_and_calibration_take_maxima_at_the_spacing_they_are_given(monkeypatch):
    seen = []
    monkeypatch.setattr(mining, "_maxima", lambda *args: seen.append(args[-1]) or iter([]))
    mining.label_hits(None, None, {"a": np.zeros((1, 2))}, 32, "cpu", spacing=0.43)
    mining.hard_negatives(SimpleNamespace(arch=SimpleNamespace(box=48)), None, {"a": np.zeros((1, 2))}, 32, "cpu", {},
                          spacing=0.41)
    mining.label_hits(None, None, {"a": np.zeros((1, 2))}, 32, "cpu")
    assert seen == [0.43, 0.41, 0.5]


def test_mining_and_the_stripe_threshold_count_corrections_on_labelled_micrographs_as_particles(tmp_path, monkeypatch):
    """With complete labels your corrections still join a labelled micrograph as positives; training
    must not mine them as hard negatives, nor count maxima on them as false picks in the stripe."""
    import torch

    from deepem import cli
    from deepem.commands import train as train_command
    from deepem.io.coords import read_coordinates

    cli.main(["simulate", "-o", str(tmp_path / "sim"), "--micrographs", "1", "--size", "512", "--labelled", "1"])
    cli.main(["preprocess", str(tmp_path / "sim/micrographs/demo_000.mrc"), "--diameter", "150", "-o", str(tmp_path / "pre")])
    labels = read_coordinates(tmp_path / "sim/labels/demo_000_manualpick.star")
    forgotten = labels[0]  # left out of the label file, then added by a correction
    star = "\ndata_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n"
    (tmp_path / "demo_000.star").write_text(star + "".join(f"{x:.2f}\t{y:.2f}\n" for x, y in labels[1:]))
    (tmp_path / "verified.star").write_text(
        "\ndata_\n\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n_deepemVerdict #4\n"
        f"{tmp_path / 'sim/micrographs/demo_000.mrc'}\t{forgotten[0]:.2f}\t{forgotten[1]:.2f}\tadded_by_user\n"
    )
    cli.main(["extract", "--preprocessed", str(tmp_path / "pre"), "--positives", str(tmp_path / "demo_000.star"),
              "--verified", str(tmp_path / "verified.star"), "--complete", "--diameter", "150", "-o", str(tmp_path / "p.npz")])
    meta = json.loads(str(np.load(tmp_path / "p.npz")["meta"]))
    assert meta["from_previous_round"]["positives"] == 1  # the correction trains as a positive

    seen = {}

    class Stop(Exception):
        pass

    def mined(net, table, positives, *args, **kw):
        seen["mined"] = positives
        return np.zeros((0, 48, 48), np.float32)

    def hits(net, table, positives, *args, **kw):
        seen["hits"] = positives
        raise Stop

    monkeypatch.setattr(train_command, "train", lambda *args, **kw: (None, [{"epoch": 1}]))
    monkeypatch.setattr(train_command, "rotation_averaged", lambda net, x: torch.linspace(0, 1, len(x)))
    monkeypatch.setattr(train_command, "hard_negatives", mined)
    monkeypatch.setattr(train_command, "label_hits", hits)
    with pytest.raises(Stop):
        cli.main(["train", str(tmp_path / "p.npz"), "--mine", str(tmp_path / "pre"), "--positives", str(tmp_path / "demo_000.star"),
                  "-o", str(tmp_path / "model"), "--background-floor", "off"])
    scale = 512 / meta_width(tmp_path / "pre")
    for used in ("mined", "hits"):
        xy = seen[used]["demo_000"] * scale
        assert len(xy) == len(labels) and np.min(np.hypot(*(xy - forgotten).T)) < 0.01, used


def meta_width(folder):
    from deepem.io import manifest

    return float(manifest.read([folder]).iloc[0]["work_width"])


def test_a_micrograph_whose_label_file_is_empty_is_mined_as_a_typical_labelled_one(monkeypatch):
    """An empty label file says "no particle here": its strong maxima are the clearest hard negatives."""
    image = np.zeros((300, 300), np.float32)
    maxima = np.array([[50.0 * i, 150] for i in range(1, 6)])
    monkeypatch.setattr(mining, "_maxima", lambda *args: iter([("empty", image, maxima, np.linspace(0.9, 0.5, 5))]))
    net = SimpleNamespace(arch=SimpleNamespace(box=8))
    labels = {"empty": np.zeros((0, 2)), "a": np.zeros((2, 2)), "b": np.zeros((4, 2))}  # 3 labels on average
    np.testing.assert_array_equal(mining.hard_negatives(net, None, labels, 32, "cpu", {}), mining.extract(image, maxima[:3], 8))


def test_extract_draws_background_on_a_micrograph_whose_label_file_is_empty(tmp_path):
    """As many as on a micrograph with a label file (its mean particles), whatever the verified picks of
    micrographs without label files hold, as mining counts."""
    from deepem import cli
    from deepem.io.coords import read_coordinates

    cli.main(["simulate", "-o", str(tmp_path / "sim"), "--micrographs", "3", "--size", "512", "--labelled", "1"])
    mics = sorted(str(p) for p in (tmp_path / "sim/micrographs").glob("*.mrc"))
    cli.main(["preprocess", *mics, "--diameter", "150", "-o", str(tmp_path / "pre")])
    labels = tmp_path / "sim/labels/demo_000_manualpick.star"
    (tmp_path / "demo_001.star").write_text("")  # no particle on demo_001
    verified = read_coordinates(tmp_path / "sim/truth/demo_002.star")[:20]  # demo_002 has no label file
    (tmp_path / "verified.star").write_text(
        "\ndata_\n\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n_deepemVerdict #4\n"
        + "".join(f"{mics[2]}\t{x:.2f}\t{y:.2f}\tconfident\n" for x, y in verified)
    )

    def background(*extra):
        out = tmp_path / f"p{len(extra)}.npz"
        cli.main(["extract", "--preprocessed", str(tmp_path / "pre"), "--positives", str(labels), *extra,
                  "--background-ratio", "2", "--diameter", "150", "-o", str(out)])
        return json.loads(str(np.load(out)["meta"]))["counts"]["background"]

    n = len(read_coordinates(labels))
    assert n != len(verified)
    assert background() == 2 * n and background(str(tmp_path / "demo_001.star")) == 4 * n
    assert background(str(tmp_path / "demo_001.star"), "--verified", str(tmp_path / "verified.star")) == 4 * n + 2 * len(verified)


def test_verified_micrographs_bounds_the_micrographs_of_all_verified_files_together(tmp_path, capsys):
    from deepem import cli
    from deepem.io.coords import read_coordinates

    cli.main(["simulate", "-o", str(tmp_path / "sim"), "--micrographs", "3", "--size", "512", "--labelled", "1"])
    mics = sorted(str(p) for p in (tmp_path / "sim/micrographs").glob("*.mrc"))
    cli.main(["preprocess", *mics, "--diameter", "150", "-o", str(tmp_path / "pre")])
    header = "\ndata_\n\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n_deepemVerdict #4\n"
    counts = {}
    for k in (1, 2):  # one verified file per micrograph without a label file
        xy = read_coordinates(tmp_path / f"sim/truth/demo_00{k}.star")[: 3 + 2 * k]
        counts[k] = len(xy)
        (tmp_path / f"v{k}.star").write_text(header + "".join(f"{mics[k]}\t{x:.2f}\t{y:.2f}\tconfident\n" for x, y in xy))
    capsys.readouterr()
    cli.main(["extract", "--preprocessed", str(tmp_path / "pre"), "--positives", str(tmp_path / "sim/labels/demo_000_manualpick.star"),
              "--verified", str(tmp_path / "v1.star"), str(tmp_path / "v2.star"), "--verified-micrographs", "1",
              "--diameter", "150", "-o", str(tmp_path / "p.npz")])
    taken = json.loads(str(np.load(tmp_path / "p.npz")["meta"]))["from_previous_round"]["positives"]
    assert taken in counts.values() and "verified picks of 1 of the 2 micrographs without label files" in capsys.readouterr().out
