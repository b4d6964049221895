"""Coordinate formats: detection by content, every reader against hand-written references
(tests/data/formats, see its README), round trips through every writer, flip_y, binning, routing."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile

from conftest import run
from deepem.cli import main
from deepem.dataset import load_labels, route_labels
from deepem.errors import DeepEMError
from deepem.io.coords import MIC, SCORE, X, Y, read_coordinates, read_picks
from deepem.io.coords.detect import detect, names_micrographs
from deepem.io.coords.formats import WRITERS, WriteOptions, micrograph_centres, open_writers
from deepem.io.micrograph import write_mrc

DATA = Path(__file__).parent / "data" / "formats"
DETECTED = {
    "mic_a_manualpick.star": "relion", "particles.star": "relion", "particles_bin2.star": "relion",
    "particles_refined.star": "relion",
    "cryosparc_picks.star": "relion", "mic_a.box": "box", "mic_a_deepem.box": "box", "mic_a.cbox": "cbox",
    "topaz_picks.txt": "topaz", "picks.csv": "csv",
}
HEIGHT, WIDTH = 800, 1000  # of the reference micrographs (README)


def by_micrograph(path):
    """``{name: picks table}`` of a coordinate file, split by its micrograph column (or all under its stem)."""
    return {name: [t for _, t in parts][0] for name, parts in route_labels([path], ["mic_a", "mic_b"], "test").items()}


def xy(table):
    return table[[X, Y]].to_numpy(float)


@pytest.mark.parametrize("name", sorted(DETECTED))
def test_reference_files_are_detected_by_content_whatever_the_extension(name, tmp_path):
    assert detect(DATA / name) == DETECTED[name]
    neutral = tmp_path / (Path(name).stem + ".dat")
    shutil.copy(DATA / name, neutral)
    assert detect(neutral) == DETECTED[name]


@pytest.mark.parametrize("name", ["mic_a.box", "mic_a.cbox", "mic_a_manualpick.star", "particles.star", "topaz_picks.txt",
                                  "picks.csv"])
def test_every_reader_gives_the_reference_centres(name):
    reference = read_picks(DATA / "mic_a_manualpick.star")
    got = by_micrograph(DATA / name)["mic_a"]
    np.testing.assert_allclose(xy(got), xy(reference), atol=0.01)


def test_merged_references_agree_on_every_micrograph():
    reference = by_micrograph(DATA / "particles.star")
    for name in ["topaz_picks.txt", "picks.csv", "cryosparc_picks.star"]:
        got = by_micrograph(DATA / name)
        assert sorted(got) == sorted(reference) == ["mic_a", "mic_b"]
        for mic in reference:
            np.testing.assert_allclose(xy(got[mic]), xy(reference[mic]), atol=0.01)


def test_merged_file_rows_go_to_their_micrographs_and_others_are_left_out():
    raw = read_picks(DATA / "particles.star")
    routed = route_labels([DATA / "particles.star", DATA / "mic_a.box"], ["mic_a", "mic_b"], "positive label")
    assert {n: [len(t) for _, t in parts] for n, parts in routed.items()} == {
        "mic_a": [int(raw[MIC].str.contains("mic_a").sum()), len(read_picks(DATA / "mic_a.box"))],
        "mic_b": [int(raw[MIC].str.contains("mic_b").sum())],
    }
    assert names_micrographs(DATA / "particles.star") and names_micrographs(DATA / "topaz_picks.txt")
    assert not names_micrographs(DATA / "mic_a_manualpick.star") and not names_micrographs(DATA / "mic_a.box")
    with pytest.raises(DeepEMError, match=r"particles.star: no row of this positive label file names a micrograph"):
        route_labels([DATA / "particles.star"], ["other"], "positive label")


def test_rows_naming_micrographs_with_a_cryosparc_uid_find_them(tmp_path):
    """cryoSPARC renames the micrographs it imports <uid>_NAME.mrc, and its exported picks name those files."""
    star = tmp_path / "from_cryosparc.star"
    star.write_text("data_\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n"
                    "J3/imported/015463722651826318029_mic_a.mrc 10 20\n"
                    "J3/imported/015463722651826318029_mic_a_patch_aligned.mrc 30 40\n"
                    "J3/imported/20240101123045_mic_b.mrc 50 60\nmic_b.mrc 70 80\n")
    routed = route_labels([star], ["mic_a", "mic_b"], "positive label")
    assert {n: xy(t).tolist() for n, [(_, t)] in routed.items()} == {
        "mic_a": [[10.0, 20.0]], "mic_b": [[70.0, 80.0]],  # a timestamp is not a UID; other names stay unmatched
    }
    named = route_labels([star], ["015463722651826318029_mic_a", "mic_a"], "positive label")
    assert sorted(named) == ["015463722651826318029_mic_a"]  # a micrograph named with the UID keeps its rows


def test_flip_y_takes_deepem_boxes_to_the_relion_frame():
    flipped = read_picks(DATA / "mic_a_deepem.box")
    np.testing.assert_allclose(micrograph_centres(flipped, "f", height=HEIGHT, flip_y=True),
                               xy(read_picks(DATA / "mic_a.box")), atol=0.01)
    assert not np.allclose(xy(flipped), xy(read_picks(DATA / "mic_a.box")))
    with pytest.raises(DeepEMError, match="mic_a_deepem.box: flip_y needs the micrograph height"):
        micrograph_centres(flipped, DATA / "mic_a_deepem.box", flip_y=True)


def test_flip_y_reflects_centre_files_about_the_middle_row(tmp_path):
    """Pixel i is centred on i, so a centre counted from the bottom row is row height - 1 - y: the bottom
    row itself (y = 0) is row height - 1, inside the micrograph, and the same particles read from box
    corners and from centres land on the same spot."""
    reference = xy(read_picks(DATA / "mic_a.box"))
    bottom_up = pd.DataFrame({"x": list(reference[:, 0]) + [5.0], "y": list(HEIGHT - 1 - reference[:, 1]) + [0.0]})
    bottom_up.to_csv(tmp_path / "mic_a.csv", index=False)
    table = pd.DataFrame({"name": ["mic_a"], "height": HEIGHT, "width": WIDTH, "pixel_size": 1.0,
                          "scale_x": 1.0, "scale_y": 1.0}).set_index("name", drop=False)
    centres = load_labels([tmp_path / "mic_a.csv"], table, "positive label", flip_y=True)["mic_a"]
    np.testing.assert_allclose(centres, np.vstack([reference, [5.0, HEIGHT - 1]]), atol=0.01)
    from_corners = load_labels([DATA / "mic_a_deepem.box"], table, "positive label", flip_y=True)["mic_a"]
    np.testing.assert_allclose(from_corners, reference, atol=0.01)


def test_relion_coordinates_picked_on_binned_micrographs_are_rescaled():
    binned, reference = by_micrograph(DATA / "particles_bin2.star"), by_micrograph(DATA / "particles.star")
    for mic in reference:
        np.testing.assert_allclose(micrograph_centres(binned[mic], "b", pixel_size=1.0), xy(reference[mic]), atol=0.01)
        np.testing.assert_allclose(micrograph_centres(binned[mic], "b", pixel_size=2.0), xy(binned[mic]), atol=1e-9)
        # rlnImagePixelSize (2.0, particles extracted binned) does not touch the coordinates
        np.testing.assert_array_equal(micrograph_centres(reference[mic], "r", pixel_size=1.0), xy(reference[mic]))


def test_binned_relion_coordinates_need_the_micrographs_pixel_size(tmp_path):
    binned = by_micrograph(DATA / "particles_bin2.star")["mic_a"]
    with pytest.raises(DeepEMError, match=r"^b.star: its coordinates were picked at 2 A/px .* give it \(--pixel-size"):
        micrograph_centres(binned, "b.star", pixel_size=None)  # a PNG's: on which frame to draw them is unknown
    np.testing.assert_array_equal(micrograph_centres(binned, "b.star", keep_frame=True), xy(binned))
    # convert with micrographs of unknown pixel size (an MRC header's 0): the error
    write_mrc(tmp_path / "mic_a.mrc", np.zeros((HEIGHT, WIDTH), np.float32), pixel_size=0.0)
    result = run(["deepem", "convert", str(DATA / "particles_bin2.star"), "--micrographs", str(tmp_path / "mic_a.mrc"),
                  "--to", "csv", "-o", str(tmp_path / "x.csv")], check=False)
    assert result.returncode == 2 and "picked at 2 A/px" in result.stderr and not (tmp_path / "x.csv").exists()
    log = run(["deepem", "convert", str(DATA / "particles_bin2.star"), "--to", "csv", "-o", str(tmp_path / "x.csv")]).stdout
    assert "particles_bin2.star: coordinates picked at 2 A/px (rlnMicrographPixelSize) stay in that frame" in log
    assert log.count("warning") == 1  # once per file, not per micrograph
    kept = pd.read_csv(tmp_path / "x.csv")  # without micrographs: the file's own frame
    np.testing.assert_allclose(kept[kept["micrograph"].str.contains("mic_a")][["x", "y"]], xy(binned), atol=0.01)


@pytest.mark.parametrize("fmt", ["relion", "relion-dir", "cryosparc"])
def test_star_writers_quote_micrograph_names_with_spaces(fmt, tmp_path):
    picks = _reference_picks()
    out = tmp_path / "out"
    with open_writers({fmt: out}, WriteOptions(box_size=64)) as add:
        for name, table in picks.items():
            add(name, f"/project/My Movies/{name} 1.mrc", table)
    names = (starfile.read(out / "autopick.star") if fmt == "relion-dir" else read_picks(out))[MIC]
    expected = [f"{n} 1.mrc" if fmt == "cryosparc" else f"/project/My Movies/{n} 1.mrc" for n in picks]
    assert sorted(set(names)) == sorted(expected)


@pytest.mark.parametrize("fmt", ["relion", "relion-dir", "cryosparc"])
def test_star_writers_quote_names_a_star_parser_would_read_as_syntax(fmt, tmp_path):
    """cryosparc_picks.star names files without their folder: data_001.mrc unquoted starts a new block."""
    picks = _reference_picks()
    out = tmp_path / "out"
    sources = dict(zip(picks, ["data_001.mrc", "_x.mrc"]))
    with open_writers({fmt: out}, WriteOptions(box_size=64)) as add:
        for name, table in picks.items():
            add(name, sources[name], table)  # names relative to the project, as relion_project makes them
    names = (starfile.read(out / "autopick.star") if fmt == "relion-dir" else read_picks(out))[MIC]
    assert sorted(set(names)) == sorted(sources.values())


def test_write_star_quotes_names_a_star_parser_would_read_as_syntax(tmp_path):
    from deepem.io.coords import read_star_table, write_star

    table = pd.DataFrame({MIC: ["data_001.mrc", "loop_2.mrc", "_3.mrc", "with space.mrc"], X: [1.0, 2, 3, 4], Y: [5.0, 6, 7, 8]})
    write_star(tmp_path / "picks.star", table)
    back = read_star_table(tmp_path / "picks.star")
    assert back[MIC].tolist() == table[MIC].tolist()
    np.testing.assert_allclose(back[[X, Y]].to_numpy(float), table[[X, Y]].to_numpy())


def test_merged_picks_that_state_a_pixel_size_or_shifts_are_refused_with_the_conversion():
    """evaluate and verify read picks as centres in the micrographs' pixels: a binned or refined
    particle STAR would be scored in the wrong place."""
    from deepem.io.coords import read_by_micrograph

    for name, stated in (("particles_bin2.star", "rlnMicrographPixelSize"), ("particles_refined.star", "rlnOriginXAngst")):
        with pytest.raises(DeepEMError, match=rf"{name}: its particles state .*{stated}.* deepem convert FILE --micrographs"):
            read_by_micrograph(DATA / name)


def test_convert_to_relion_dir_or_cryosparc_needs_micrograph_file_names(tmp_path):
    """Topaz names micrographs by stem: RELION and cryoSPARC match the file names, extension and all."""
    for to in ("relion-dir", "cryosparc"):
        result = run(["deepem", "convert", str(DATA / "topaz_picks.txt"), "--to", to, "-o", str(tmp_path / to)], check=False)
        assert result.returncode == 2, result.stdout
        assert "topaz_picks.txt: its micrograph column gives 'mic_a', not a file name; give --micrographs" in result.stderr
        assert not (tmp_path / to).exists()


def test_refined_relion_particles_are_moved_by_their_shifts_to_their_centres():
    refined, reference = by_micrograph(DATA / "particles_refined.star"), by_micrograph(DATA / "particles.star")
    for mic in reference:
        np.testing.assert_allclose(micrograph_centres(refined[mic], "r", pixel_size=1.0), xy(reference[mic]), atol=1e-9)
        # the shifts are in Å: on micrographs of 2 Å/px they are half as many pixels
        shift = refined[mic][["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy(float)
        np.testing.assert_allclose(micrograph_centres(refined[mic], "r", pixel_size=2.0), xy(refined[mic]) - shift / 2)
    assert not np.allclose(xy(refined["mic_a"]), xy(reference["mic_a"]))  # the file's coordinates are off-centre
    with pytest.raises(DeepEMError, match="particles_refined.star: the particles' shifts .* give it .--pixel-size"):
        micrograph_centres(refined["mic_a"], DATA / "particles_refined.star")


def test_shifts_of_particles_picked_on_binned_micrographs_are_in_their_pixels(tmp_path):
    binned = tmp_path / "binned.star"  # the same particles picked at 2 Å/px and refined: coordinates halve, Å stay
    table = starfile.read(DATA / "particles_refined.star", always_dict=True)
    particles = table["particles"].assign(rlnCoordinateX=lambda t: t[X] / 2, rlnCoordinateY=lambda t: t[Y] / 2)
    optics = table["optics"].assign(rlnMicrographPixelSize=2.0)
    starfile.write({"optics": optics, "particles": particles}, binned)
    reference = by_micrograph(DATA / "particles.star")
    got = by_micrograph(binned)
    for mic in reference:
        np.testing.assert_allclose(micrograph_centres(got[mic], "b", pixel_size=1.0), xy(reference[mic]), atol=1e-9)
        # the binned micrographs' own pixel size: the centres stay in the file's frame
        np.testing.assert_allclose(micrograph_centres(got[mic], "b", pixel_size=2.0), xy(reference[mic]) / 2, atol=1e-9)
        with pytest.raises(DeepEMError, match="picked at 2 A/px"):  # no pixel size: which frame is unknown
            micrograph_centres(got[mic], "b")
        np.testing.assert_allclose(micrograph_centres(got[mic], "b", keep_frame=True), xy(reference[mic]) / 2, atol=1e-9)


def test_refined_particles_need_a_positive_pixel_size(tmp_path):
    refined = by_micrograph(DATA / "particles_refined.star")["mic_a"]
    for unknown in (None, 0.0, float("nan")):  # an MRC header's 0 is no pixel size
        with pytest.raises(DeepEMError, match="the particles' shifts"):
            micrograph_centres(refined, "r", pixel_size=unknown)
    path = tmp_path / "zero.star"
    table = starfile.read(DATA / "particles_refined.star", always_dict=True)
    starfile.write({"optics": table["optics"].assign(rlnMicrographPixelSize=0.0), "particles": table["particles"]}, path)
    with pytest.raises(DeepEMError, match="zero.star: rlnMicrographPixelSize must be a positive number"):
        read_picks(path)
    with pytest.raises(DeepEMError, match="particles_refined.star: particles with shifts"):
        read_coordinates(DATA / "particles_refined.star")


def test_relion_30_shifts_in_pixels_are_an_error_unless_zero(tmp_path):
    path = tmp_path / "old.star"
    path.write_text("data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnOriginX #3\n_rlnOriginY #4\n10 20 0 0\n")
    np.testing.assert_array_equal(micrograph_centres(read_picks(path), "o"), [[10, 20]])
    path.write_text(path.read_text() + "30 40 1.5 0\n")
    with pytest.raises(DeepEMError, match="old.star: particle shifts in pixels .* relion_convert_star"):
        read_picks(path)
    path.write_text("data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnOriginXAngst #3\n10 20 1\n")
    with pytest.raises(DeepEMError, match="old.star: rlnOriginXAngst without rlnOriginYAngst"):
        read_picks(path)


def test_convert_writes_refined_particles_at_their_centres(tmp_path):
    out = tmp_path / "picks.csv"
    main(["convert", str(DATA / "particles_refined.star"), "--pixel-size", "1", "--to", "csv", "-o", str(out)])
    got, reference = pd.read_csv(out), read_picks(DATA / "particles.star")
    np.testing.assert_allclose(got[["x", "y"]].to_numpy(), xy(reference.iloc[:5]), atol=0.01)
    result = run(["deepem", "convert", str(DATA / "particles_refined.star"), "--to", "csv", "-o", str(tmp_path / "no.csv")],
                 check=False)
    assert result.returncode == 2 and "particles_refined.star: the particles' shifts" in result.stderr
    assert not (tmp_path / "no.csv").exists()


def _two_optics_groups(tmp_path, particle_columns, particle_row):
    path = tmp_path / "two_groups.star"
    path.write_text(
        "data_optics\nloop_\n_rlnOpticsGroup #1\n_rlnMicrographPixelSize #2\n1 1.0\n2 2.0\n\n"
        "data_particles\nloop_\n" + "".join(f"_{c} #{i}\n" for i, c in enumerate(particle_columns, 1)) + particle_row
    )
    return path


def test_undecidable_pixel_size_is_an_error_naming_the_file(tmp_path):
    path = _two_optics_groups(tmp_path, [X, Y, MIC], "10 20 mic_a.mrc\n")
    with pytest.raises(DeepEMError, match="two_groups.star: data_optics lists several rlnMicrographPixelSize"):
        read_picks(path)
    path = _two_optics_groups(tmp_path, [X, Y, MIC, "rlnOpticsGroup"], "10 20 mic_a.mrc 3\n")
    with pytest.raises(DeepEMError, match="two_groups.star: rows of optics group 3"):
        read_picks(path)
    path = _two_optics_groups(tmp_path, [X, Y, MIC, "rlnOpticsGroup"], "10 20 mic_a.mrc 2\n")
    np.testing.assert_allclose(micrograph_centres(read_picks(path), "p", pixel_size=1.0), [[20, 40]])


@pytest.mark.parametrize("source,copy,message", [
    ("topaz_picks.txt", "picks.star", "picks.star: the content is Topaz text but the extension says '.star'"),
    ("mic_a.box", "mic_a.csv", "mic_a.csv: the content is EMAN .box but the extension says '.csv'"),
    ("picks.csv", "mic_a.box", "mic_a.box: the content is CSV but the extension says '.box'"),
    (None, "notes.txt", "notes.txt: not a coordinate file deepem can read; deepem reads RELION .star"),
])
def test_content_that_disagrees_with_the_extension_or_fits_nothing_is_a_one_line_error(source, copy, message, tmp_path):
    target = tmp_path / copy
    if source:
        shutil.copy(DATA / source, target)
    else:
        target.write_text("particles were picked by hand\n12 13\n")
    with pytest.raises(DeepEMError) as err:
        read_picks(target)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unreadable_contents_are_errors_naming_the_file(tmp_path):
    cases = {
        "no_xy.star": ("data_\nloop_\n_rlnFoo #1\n1\n", None, "no loop with rlnCoordinateX"),
        "no_y.csv": ("micrograph,x,score\nm,1,0.5\n", None, "not a coordinate file deepem can read"),
        "no_y.txt": ("micrograph,x,score\nm,1,0.5\n", "csv", "CSV without x and y columns"),
        "text.star": ("data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\nabc def\n", None, "non-numeric"),
        "three.box": ("1 2 3\n", "box", "EMAN .box rows need 4 columns"),
        "tomo.cbox": ("data_cryolo\nloop_\n_CoordinateX\n_CoordinateY\n_CoordinateZ\n_Width\n_Height\n1 2 3 4 4\n", None, "3-D"),
    }
    for name, (text, fmt, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(DeepEMError, match=f"{name}: .*{message}"):
            read_picks(tmp_path / name, fmt)
    (tmp_path / "empty.box").write_text("")
    assert len(read_picks(tmp_path / "empty.box")) == 0
    (tmp_path / "one.box").write_text("10 20 30 30\n")  # forced to a format its content is not
    for fmt, message in (("relion", "no data_ block: not a STAR file"), ("topaz", "not a Topaz file")):
        with pytest.raises(DeepEMError, match=f"one.box: .*{message}"):
            read_picks(tmp_path / "one.box", fmt)


def _reference_picks():
    """The reference particles with their scores, per micrograph, as gather hands them to the writers."""
    return {name: table[[X, Y, SCORE]] for name, table in by_micrograph(DATA / "particles.star").items()}


def _sources(name):
    return f"/project/MotionCorr/job002/Movies/{name}.mrc"


def read_back(fmt, out):
    """``{name: picks table}`` of what a writer of ``fmt`` wrote to ``out``."""
    if fmt == "relion-dir":
        index = starfile.read(out / "autopick.star")
        return {Path(m).stem: read_picks(f) for m, f in zip(index[MIC], index["rlnMicrographCoordinates"])}
    if fmt == "box":
        return {p.stem: read_picks(p) for p in out.glob("*.box")}
    return by_micrograph(out)


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_every_writer_round_trips_centres_and_scores(fmt, tmp_path):
    picks = _reference_picks()
    out = tmp_path / "out"
    with open_writers({fmt: out}, WriteOptions(box_size=64)) as add:
        for name, table in picks.items():
            add(name, _sources(name), table)
    back = read_back(fmt, out)
    if fmt == "relion-dir":
        assert starfile.read(out / "autopick.star")[MIC].tolist() == [_sources(n) for n in picks]
    for name, table in picks.items():
        np.testing.assert_allclose(xy(back[name]), xy(table), atol=0.01)
        if SCORE in back[name].columns:
            np.testing.assert_allclose(back[name][SCORE], table[SCORE], atol=1e-3)
    assert fmt in ("box", "cryosparc") or SCORE in back["mic_a"].columns


def test_writers_match_the_hand_written_references(tmp_path):
    picks = _reference_picks()
    outputs = {"box": tmp_path / "box", "cryosparc": tmp_path / "c.star", "topaz": tmp_path / "t.txt",
               "csv": tmp_path / "p.csv", "relion": tmp_path / "m.star"}
    with open_writers(outputs, WriteOptions(box_size=64)) as add:
        for name, table in picks.items():
            add(name, f"MotionCorr/job002/Movies/{name}.mrc", table)
    np.testing.assert_allclose(np.loadtxt(outputs["box"] / "mic_a.box"), np.loadtxt(DATA / "mic_a.box"), atol=0.01)
    for ours, theirs in [("cryosparc", "cryosparc_picks.star"), ("relion", "particles.star")]:
        a, b = starfile.read(outputs[ours], always_dict=True), starfile.read(DATA / theirs, always_dict=True)
        a, b = list(a.values())[-1], list(b.values())[-1]
        b = b[b[MIC].str.contains("mic_[ab]")]
        assert a[MIC].tolist() == b[MIC].tolist()
        np.testing.assert_allclose(a[[X, Y]].to_numpy(float), b[[X, Y]].to_numpy(float), atol=0.01)
    for ours, theirs, sep in [("topaz", "topaz_picks.txt", "\t"), ("csv", "picks.csv", ",")]:
        a, b = pd.read_csv(outputs[ours], sep=sep), pd.read_csv(DATA / theirs, sep=sep)
        assert a.columns.tolist() == b.columns.tolist()
        assert a.iloc[:, 0].tolist() == b.iloc[:, 0].tolist()
        np.testing.assert_allclose(a.iloc[:, 1:3].to_numpy(float), b.iloc[:, 1:3].to_numpy(float), atol=0.01)


@pytest.fixture(scope="module")
def relion_project(tmp_path_factory):
    """A RELION project with the two reference micrographs (1000 x 800 px, 1 A/px)."""
    project = tmp_path_factory.mktemp("project")
    movies = project / "MotionCorr" / "job002" / "Movies"
    movies.mkdir(parents=True)
    for name in ("mic_a", "mic_b"):
        write_mrc(movies / f"{name}.mrc", np.zeros((HEIGHT, WIDTH), np.float32), 1.0)
    return project


@pytest.mark.parametrize("to", sorted(WRITERS))
@pytest.mark.parametrize("source", ["mic_a_manualpick.star", "particles.star", "particles_bin2.star", "mic_a.box",
                                    "mic_a.cbox", "topaz_picks.txt", "picks.csv"])
def test_convert_reads_every_format_and_writes_every_format(source, to, relion_project, tmp_path):
    out = tmp_path / "out"
    main(["convert", str(DATA / source), "--micrographs", str(relion_project / "MotionCorr/job002/Movies/*.mrc"),
          "--to", to, "--box-size", "64", "-o", str(out)])
    back = read_back(to, out)
    reference = by_micrograph(DATA / "particles.star")
    assert sorted(back) == sorted(by_micrograph(DATA / source))
    for name in back:
        np.testing.assert_allclose(xy(back[name]), xy(reference[name]), atol=0.01)


def test_convert_topaz_picks_to_relion_extract_input(relion_project):
    run(["deepem", "convert", str(DATA / "topaz_picks.txt"), "--micrographs", str(relion_project / "MotionCorr/job002/Movies/*.mrc"),
         "--to", "relion-dir", "-o", str(relion_project / "deepem"), "--relion-project", str(relion_project)])
    index, reference = starfile.read(relion_project / "deepem" / "autopick.star"), starfile.read(DATA / "relion_dir" / "autopick.star")
    pd.testing.assert_frame_equal(index, reference)
    for coordinates in reference["rlnMicrographCoordinates"]:
        ours = starfile.read(relion_project / coordinates)
        theirs = starfile.read(DATA / "relion_dir" / Path(coordinates).relative_to("deepem"))
        np.testing.assert_allclose(ours[[X, Y]].to_numpy(float), theirs[[X, Y]].to_numpy(float), atol=0.01)


def test_convert_flips_deepem_boxes_and_reports_bad_input_in_one_line(relion_project, tmp_path):
    mics = str(relion_project / "MotionCorr/job002/Movies/*.mrc")
    run(["deepem", "convert", str(DATA / "mic_a_deepem.box"), "--flip-y", "--micrographs", mics, "--to", "box",
         "--box-size", "64", "-o", str(tmp_path / "boxes")])
    np.testing.assert_allclose(np.loadtxt(tmp_path / "boxes" / "mic_a.box"), np.loadtxt(DATA / "mic_a.box"), atol=0.01)
    result = run(["deepem", "convert", str(DATA / "mic_a_deepem.box"), "--flip-y", "--to", "csv", "-o", str(tmp_path / "x.csv")],
                 check=False)
    assert result.returncode == 2 and "mic_a_deepem.box: flip_y needs the micrograph height" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.csv").exists()
    result = run(["deepem", "convert", str(DATA / "mic_a.box"), "--to", "cryosparc", "-o", str(tmp_path / "c.star")], check=False)
    assert result.returncode == 2 and "mic_a.box: no micrograph column; give --micrographs" in result.stderr


def test_labels_from_a_merged_file_and_per_micrograph_files_are_the_same():
    table = pd.DataFrame({"name": ["mic_a", "mic_b"], "height": HEIGHT, "width": WIDTH, "pixel_size": 1.0,
                          "scale_x": 4.0, "scale_y": 4.0}).set_index("name", drop=False)
    merged = load_labels([DATA / "topaz_picks.txt"], table, "positive label")
    single = load_labels([DATA / "mic_a_deepem.box"], table, "positive label", flip_y=True)
    np.testing.assert_allclose(merged["mic_a"], single["mic_a"], atol=0.01 / 4)
    assert sorted(merged) == ["mic_a", "mic_b"] and sorted(single) == ["mic_a"]
    with pytest.raises(DeepEMError, match="mic_a_deepem.box: 3 coordinates outside the 1000 x 100 micrograph mic_a, e.g."):
        load_labels([DATA / "mic_a_deepem.box"], table.assign(height=100), "positive label")


def test_convert_leaves_a_folder_of_the_users_files_alone(relion_project, tmp_path):
    """EMAN2 users keep .box files beside their micrographs: --to box into that folder must not replace it."""
    mics = tmp_path / "mics"
    mics.mkdir()
    (mics / "mic_a.mrc").write_bytes(b"the user's micrograph")
    result = run(["deepem", "convert", str(DATA / "mic_a.box"), "--to", "box", "--box-size", "64", "-o", str(mics)],
                 check=False)
    assert result.returncode == 2 and "holds files that deepem did not write" in result.stderr
    assert [p.name for p in mics.iterdir()] == ["mic_a.mrc"]


def test_relion_index_is_relative_to_a_project_reached_through_a_link(relion_project, tmp_path):
    link = tmp_path / "project"
    link.symlink_to(relion_project)
    run(["deepem", "convert", str(DATA / "topaz_picks.txt"), "--micrographs", str(link / "MotionCorr/job002/Movies/*.mrc"),
         "--to", "relion-dir", "-o", str(link / "linked"), "--relion-project", str(link)])
    index = starfile.read(relion_project / "linked" / "autopick.star")
    assert index["rlnMicrographCoordinates"].tolist() == ["linked/coordinates/mic_a_autopick.star",
                                                          "linked/coordinates/mic_b_autopick.star"]
    assert index["rlnMicrographName"].tolist() == ["MotionCorr/job002/Movies/mic_a.mrc", "MotionCorr/job002/Movies/mic_b.mrc"]
    assert all((relion_project / path).is_file() for path in index["rlnMicrographCoordinates"])


def test_convert_input_quirks_users_have(tmp_path):
    """An empty per-micrograph file, a file given twice, Excel's byte-order mark, a row naming no micrograph."""
    (tmp_path / "mic_a.box").write_text("100 200 64 64 0.9\n")
    (tmp_path / "mic_b.box").write_text("")
    run(["deepem", "convert", str(tmp_path / "mic_a.box"), str(tmp_path / "mic_b.box"), str(tmp_path / "mic_a.box"),
         "--to", "csv", "-o", str(tmp_path / "out.csv")])
    out = pd.read_csv(tmp_path / "out.csv")
    assert out.columns.tolist() == ["micrograph", "x", "y", "score"] and len(out) == 1
    (tmp_path / "bom.csv").write_bytes("x,y,micrograph\n1,2,mic_a\n".encode("utf-8-sig"))
    run(["deepem", "convert", str(tmp_path / "bom.csv"), "--to", "csv", "-o", str(tmp_path / "bom_out.csv")])
    assert pd.read_csv(tmp_path / "bom_out.csv")[["x", "y"]].to_numpy().tolist() == [[1, 2]]
    (tmp_path / "blank.csv").write_text("micrograph,x,y\nmic_a,1,2\n,3,4\n")
    result = run(["deepem", "convert", str(tmp_path / "blank.csv"), "--to", "csv", "-o", str(tmp_path / "b.csv")],
                 check=False)
    assert result.returncode == 2 and "blank.csv: rows without a micrograph name: 1 (the first is row 2)" in result.stderr


@pytest.mark.parametrize("name", ["topaz_picks.txt", "picks.csv"])
def test_comment_and_blank_lines_before_the_header_are_passed_over_as_detection_does(name, tmp_path):
    """Detection skipped them but the readers took the comment for the header (before 0.12.3)."""
    commented = tmp_path / name
    commented.write_text("# exported by hand\n\n" + (DATA / name).read_text())
    assert names_micrographs(commented)
    got, reference = by_micrograph(commented), by_micrograph(DATA / name)
    assert sorted(got) == sorted(reference) == ["mic_a", "mic_b"]
    for mic in got:
        np.testing.assert_allclose(xy(got[mic]), xy(reference[mic]))
    (tmp_path / "hash.csv").write_text("micrograph,x,y\n#1,10,20\nm2,30,40\n")  # after the header a row, not a comment
    assert read_picks(tmp_path / "hash.csv")[MIC].tolist() == ["#1", "m2"]


def test_a_relion_index_of_coordinate_files_is_named_for_what_it_is(relion_project, tmp_path):
    out = tmp_path / "rd"
    main(["convert", str(DATA / "topaz_picks.txt"), "--micrographs", str(relion_project / "MotionCorr/job002/Movies/*.mrc"),
          "--to", "relion-dir", "-o", str(out)])
    message = f"autopick.star: a RELION index of coordinate files (rlnMicrographCoordinates), not coordinates; give " \
              f"the files it lists instead, e.g. '{out / 'coordinates' / '*.star'}'"
    for read in (names_micrographs, read_picks):  # the workflow's check of label files, and convert
        with pytest.raises(DeepEMError) as error:
            read(out / "autopick.star")
        assert message in str(error.value)
    assert len(read_picks(out / "coordinates" / "mic_a_autopick.star")) == len(by_micrograph(DATA / "topaz_picks.txt")["mic_a"])


def test_micrographs_named_like_numbers_keep_their_names_through_convert(tmp_path):
    """Bare names from 'convert --to relion' without --micrographs (01, not 01.mrc) read back as 1 (before 0.12.3)."""
    mics = tmp_path / "mics"
    mics.mkdir()
    for name in ("01", "02"):
        write_mrc(mics / f"{name}.mrc", np.zeros((HEIGHT, WIDTH), np.float32), 1.0)
        (tmp_path / f"{name}.box").write_text("100 200 64 64\n")
    main(["convert", str(tmp_path / "01.box"), str(tmp_path / "02.box"), "--to", "relion", "-o", str(tmp_path / "p.star")])
    main(["convert", str(tmp_path / "p.star"), "--micrographs", str(mics / "*.mrc"), "--to", "csv", "-o", str(tmp_path / "p.csv")])
    out = pd.read_csv(tmp_path / "p.csv", dtype={"micrograph": str})
    assert [Path(m).name for m in out["micrograph"]] == ["01.mrc", "02.mrc"]
