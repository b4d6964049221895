"""Pick overlays: circles land on the particle in the micrograph's own frame, at any downsampling."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import ndimage  # noqa: E402

from deepem.cli import main as cli  # noqa: E402
from deepem.io.coords import MIC, picks_table, write_star  # noqa: E402
from deepem.io.micrograph import write_mrc  # noqa: E402
from deepem.overlay import draw  # noqa: E402


def micrograph_with_spot(height, width, x, y, radius, seed=0):
    """Noise with one bright disk centred on column ``x``, row ``y``."""
    image = np.random.default_rng(seed).normal(0, 1, (height, width)).astype(np.float32)
    rows, cols = np.ogrid[:height, :width]
    image[(cols - x) ** 2 + (rows - y) ** 2 <= radius**2] += 50
    return image


def spot_and_circle(rgb):
    """Output-pixel centres ``(x, y)`` of the largest white blob and of the coloured pixels."""
    rgb = rgb.astype(int)
    labels, n = ndimage.label((rgb > 250).all(axis=2))
    sizes = ndimage.sum(np.ones_like(labels), labels, range(1, n + 1))
    spot = ndimage.center_of_mass(labels == 1 + int(np.argmax(sizes)))
    coloured = np.argwhere(rgb.max(axis=2) - rgb.min(axis=2) > 40)
    circle = coloured.mean(axis=0)
    return np.array(spot[::-1]), circle[::-1]


@pytest.mark.parametrize("shape, xy, max_size", [((384, 512), (150, 290), 1024), ((1536, 2048), (600, 1160), 512)])
def test_circle_is_drawn_around_the_particle_it_names(tmp_path, shape, xy, max_size):
    """x is the column and y the row from the top-left, at full size and downsampled 4 times."""
    factor = int(np.ceil(max(shape) / max_size))
    image = micrograph_with_spot(*shape, *xy, radius=6 * factor)
    h, w = shape[0] // factor, shape[1] // factor
    fig = plt.figure(figsize=(w / 100, h / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    draw(ax, image, [xy], radius=30 * factor, max_size=max_size)
    fig.savefig(tmp_path / "o.png", dpi=100)
    plt.close(fig)
    rgb = np.asarray(Image.open(tmp_path / "o.png").convert("RGB"))
    assert rgb.shape[:2] == (h, w)
    spot, circle = spot_and_circle(rgb)
    expected = (np.array(xy) + 0.5) / factor - 0.5  # original pixel centre -> output pixel centre
    assert np.abs(spot - expected).max() < 1.5, (spot, expected)  # the image is not flipped or transposed
    assert np.abs(circle - spot).max() < 1.5, (circle, spot)  # the circle is centred on the particle


def test_show_selects_the_micrograph_rows_of_a_merged_star(tmp_path, capsys):
    shape, xy = (384, 512), (150, 290)
    mic = tmp_path / "mic_7.mrc"
    write_mrc(mic, micrograph_with_spot(*shape, *xy, radius=6), pixel_size=2.0)
    picks = picks_table([xy, (400, 300)], [0.9, 0.2])
    picks.insert(0, MIC, ["data/mic_7.mrc", "data/mic_8.mrc"])  # one row of another micrograph
    write_star(tmp_path / "picks.star", picks)
    cands = picks_table([xy, (440, 330)], [0.9, 0.1])  # the second is rejected, right of the checked area
    cands.insert(0, MIC, "data/mic_7.mrc")
    write_star(tmp_path / "cands.star", cands)
    out = tmp_path / "o.png"
    cli([
        "show", str(mic), str(tmp_path / "picks.star"), "--candidates", str(tmp_path / "cands.star"),
        "--diameter", "120", "-o", str(out),
    ])
    assert "mic_7: 1 picks, 1 rejected" in capsys.readouterr().out
    rgb = np.asarray(Image.open(out).convert("RGB"))
    top = rgb.shape[0] - shape[0]  # the title is above the image, the colour bar right of it
    assert top > 0 and rgb.shape[1] > shape[1]
    lower_left = rgb[top + shape[0] // 2 : top + shape[0], : shape[1] // 2]  # clear of legend and rejected
    spot, circle = spot_and_circle(lower_left)
    expected = np.array(xy) - [0, shape[0] // 2]
    assert np.abs(spot - expected).max() < 1.5 and np.abs(circle - spot).max() < 1.5, (spot, circle, expected)


def test_show_draws_refined_relion_particles_at_their_centres(tmp_path, capsys):
    """A refined particle STAR keeps the extraction coordinate; the circle goes where the shift centres it."""
    shape, xy, off = (384, 512), (150, 290), (10, -8)  # px; the micrograph is 2 Å/px
    mic = tmp_path / "mic_7.mrc"
    write_mrc(mic, micrograph_with_spot(*shape, *xy, radius=6), pixel_size=2.0)
    picks = picks_table([np.add(xy, off)], [0.9])
    picks.insert(0, MIC, "data/mic_7.mrc")
    picks["rlnOriginXAngst"], picks["rlnOriginYAngst"] = 2.0 * off[0], 2.0 * off[1]
    write_star(tmp_path / "refined.star", picks)
    out = tmp_path / "o.png"
    cli(["show", str(mic), str(tmp_path / "refined.star"), "--diameter", "120", "-o", str(out)])
    assert "mic_7: 1 picks" in capsys.readouterr().out
    rgb = np.asarray(Image.open(out).convert("RGB"))
    top = rgb.shape[0] - shape[0]
    spot, circle = spot_and_circle(rgb[top + shape[0] // 2 : top + shape[0], : shape[1] // 2])
    expected = np.array(xy) - [0, shape[0] // 2]
    assert np.abs(spot - expected).max() < 1.5 and np.abs(circle - spot).max() < 1.5, (spot, circle, expected)


def test_show_needs_a_pixel_size_for_the_diameter(tmp_path, capsys):
    mic = tmp_path / "mic.png"
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(mic)
    write_star(tmp_path / "p.star", picks_table([(30, 30)], [0.5]))
    with pytest.raises(SystemExit) as exit_info:
        cli(["show", str(mic), str(tmp_path / "p.star"), "--diameter", "100", "-o", str(tmp_path / "o.png")])
    assert exit_info.value.code == 2
    assert "no pixel size" in capsys.readouterr().err and not (tmp_path / "o.png").exists()


def test_show_routes_the_rows_of_a_topaz_table_to_the_micrographs_they_name(tmp_path, capsys):
    """A table with a micrograph column is routed by content, not by file extension."""
    for name in ("mic_1", "mic_2"):
        write_mrc(tmp_path / f"{name}.mrc", micrograph_with_spot(128, 128, 60, 60, 4), pixel_size=2.0)
    (tmp_path / "picks.txt").write_text(
        "image_name\tx_coord\ty_coord\tscore\nmic_1\t60\t60\t0.9\nmic_1\t20\t20\t0.8\nmic_2\t60\t60\t0.7\n"
    )
    cli([
        "show", str(tmp_path / "mic_1.mrc"), str(tmp_path / "mic_2.mrc"), str(tmp_path / "picks.txt"),
        "--outdir", str(tmp_path / "out"),
    ])
    out = capsys.readouterr().out
    assert "mic_1: 2 picks" in out and "mic_2: 1 picks" in out


def test_show_counts_a_pick_below_the_threshold_once_with_candidates(tmp_path, capsys):
    mic = tmp_path / "mic_7.mrc"
    write_mrc(mic, micrograph_with_spot(384, 512, 150, 290, radius=6), pixel_size=2.0)
    picks = picks_table([(150, 290), (300, 100), (400, 300)], [0.9, 0.4, 0.3])
    write_star(tmp_path / "mic_7.star", picks)
    cands = picks_table([(150, 290), (300, 100), (400, 300), (60, 60)], [0.9, 0.4, 0.3, 0.1])
    write_star(tmp_path / "cands.star", cands)
    cli(["show", str(mic), str(tmp_path / "mic_7.star"), "--candidates", str(tmp_path / "cands.star"),
         "--threshold", "0.5", "-o", str(tmp_path / "o.png")])
    assert "mic_7: 1 picks, 3 rejected" in capsys.readouterr().out  # two picks below 0.5, one candidate


def test_show_warns_of_a_merged_file_that_names_none_of_its_micrographs(tmp_path, capsys):
    """A renamed copy (mic_7_DW.mrc) of a picked micrograph: before, a silent '0 picks', as if none were
    found. Not an error: a micrograph without picks has no rows in a merged picks.star either."""
    mic = tmp_path / "mic_7_DW.mrc"
    write_mrc(mic, np.zeros((64, 64), np.float32), pixel_size=2.0)
    picks = picks_table([(30, 30)], [0.9])
    picks.insert(0, MIC, "data/mic_7.mrc")
    write_star(tmp_path / "picks.star", picks)
    cli(["show", str(mic), str(tmp_path / "picks.star"), "-o", str(tmp_path / "o.png")])
    out = capsys.readouterr()
    assert "picks.star: no row names mic_7_DW (e.g. data/mic_7.mrc), so none is drawn" in out.err
    assert "mic_7_DW: 0 picks" in out.out and (tmp_path / "o.png").exists()


def test_a_pick_without_a_score_is_drawn(tmp_path):
    """A pick whose score is NaN (verified.star's added_by_user rows, an empty CSV score cell) is circled in
    the unscored picks' colour, not in the colour map's transparent 'bad' colour."""
    from deepem.overlay import save_overlay

    image = micrograph_with_spot(384, 512, 150, 290, 12)
    save_overlay(tmp_path / "o.png", image, np.array([[150.0, 290.0]]), np.array([np.nan]), radius=30, max_size=1024)
    rgb = np.asarray(Image.open(tmp_path / "o.png").convert("RGB")).astype(int)[24:, :512]  # less title, colour bar
    around = rgb[290 - 40 : 290 + 40, 150 - 40 : 150 + 40]  # drawn 1:1; the legend is far away, top right
    assert (around.max(axis=2) - around.min(axis=2) > 40).sum() > 50


def test_show_refuses_a_threshold_for_picks_without_scores(tmp_path, capsys):
    """--threshold draws the picks scoring below it as rejected: on unscored picks (.box) it would draw none, silently."""
    write_mrc(tmp_path / "m.mrc", micrograph_with_spot(256, 256, 100, 100, 8), 2.0)
    (tmp_path / "m.box").write_text("60 60 80 80\n")
    with pytest.raises(SystemExit) as exit_info:
        cli(["show", str(tmp_path / "m.mrc"), str(tmp_path / "m.box"), "--threshold", "0.5", "-o", str(tmp_path / "m.png")])
    assert exit_info.value.code == 2 and "m.box: no scores" in capsys.readouterr().err
    assert not (tmp_path / "m.png").exists()
