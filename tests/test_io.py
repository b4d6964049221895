import mrcfile
import numpy as np
import pytest
from PIL import Image

from deepem.errors import DeepEMError
from deepem.io.atomic import MARKER, atomic_directory
from deepem.io.coords import SCORE, X, Y, picks_table, read_by_micrograph, read_coordinates, read_star_table, write_star
from deepem.io.coords.star import star_writer
from deepem.io import manifest
from deepem.io.micrograph import read_header, read_micrograph, write_mrc


def test_star_round_trip_and_reproducible(tmp_path):
    xy = np.array([[10.25, 20.5], [3000.125, 1.0]])
    write_star(tmp_path / "a.star", picks_table(xy, [0.9, 0.1]), float_format="%.3f")
    write_star(tmp_path / "b.star", picks_table(xy, [0.9, 0.1]), float_format="%.3f")
    assert (tmp_path / "a.star").read_bytes() == (tmp_path / "b.star").read_bytes()
    table = read_star_table(tmp_path / "a.star")
    np.testing.assert_allclose(table[[X, Y]].to_numpy(), xy, atol=1e-3)
    np.testing.assert_allclose(table[SCORE], [0.9, 0.1])


def test_strong_scores_stay_distinct(tmp_path):
    """Scores near 1 keep 6 decimals (write_star and the streamed star_writer), so strong picks still rank."""
    scores = [0.999991, 0.999972, 0.9]
    table = picks_table(np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), scores)
    write_star(tmp_path / "a.star", table, float_format="%.3f")
    with star_writer(tmp_path / "b.star", [X, Y, SCORE]) as append:
        append(table)
    for name in ("a.star", "b.star"):
        np.testing.assert_allclose(read_star_table(tmp_path / name)[SCORE], scores, atol=5e-7)


def test_empty_star_round_trip(tmp_path):
    write_star(tmp_path / "e.star", picks_table(np.zeros((0, 2)), []))
    assert read_coordinates(tmp_path / "e.star").shape == (0, 2)


def test_relion31_star_with_optics(tmp_path):
    (tmp_path / "p.star").write_text(
        "data_optics\nloop_\n_rlnOpticsGroup #1\n_rlnImagePixelSize #2\n1 1.0\n\n"
        "data_particles\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnMicrographName #3\n"
        "11.0 12.0 mic1.mrc\n21.0 22.0 mic1.mrc\n"
    )
    np.testing.assert_allclose(read_coordinates(tmp_path / "p.star"), [[11, 12], [21, 22]])


def test_eman_box_corners_become_centres(tmp_path):
    (tmp_path / "m.box").write_text("100\t200\t64\t64\n0 0 32 32\n")
    np.testing.assert_allclose(read_coordinates(tmp_path / "m.box"), [[132, 232], [16, 16]])


def test_mrc_and_image_read_as_stored(tmp_path):
    data = np.arange(64 * 48, dtype=np.float32).reshape(64, 48)
    write_mrc(tmp_path / "m.mrc", data, 1.5)
    image, px = read_micrograph(tmp_path / "m.mrc")
    assert px == pytest.approx(1.5)
    np.testing.assert_array_equal(image, data)  # row 0 of the file is row 0 (y = 0)
    Image.fromarray((data % 256).astype(np.uint8)).save(tmp_path / "m.png")
    image, px = read_micrograph(tmp_path / "m.png")
    assert px is None
    np.testing.assert_array_equal(image, data % 256)
    Image.fromarray((data * 10).astype(np.uint16)).save(tmp_path / "m16.tif")
    np.testing.assert_array_equal(read_micrograph(tmp_path / "m16.tif")[0], data * 10)
    thumbnail = Image.fromarray(np.zeros((8, 6), np.uint16))  # a second, smaller page: not a movie
    Image.fromarray((data * 10).astype(np.uint16)).save(tmp_path / "t.tif", save_all=True, append_images=[thumbnail])
    np.testing.assert_array_equal(read_micrograph(tmp_path / "t.tif")[0], data * 10)


def test_8_bit_micrographs_read_with_the_sign_their_writer_declares(tmp_path):
    """MRC mode 0 is signed by the standard, unsigned where IMOD's stamp says so (flag bit 0 clear);
    a TIFF says signed by its SampleFormat tag."""
    data = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for flags, expected in ((0, data), (1, data.view(np.int8))):
        path = tmp_path / f"imod{flags}.mrc"
        with mrcfile.new(path) as m:
            m.set_data(data.view(np.int8))
            extra = bytearray(bytes(m.header.extra2))
            extra[40:48] = np.array([1146047817, flags], dtype=m.header.mode.dtype).tobytes()
            m.header.extra2 = bytes(extra)
        np.testing.assert_array_equal(read_micrograph(path)[0], expected)
    with mrcfile.new(tmp_path / "plain.mrc") as m:  # no IMOD stamp: the standard's signed bytes
        m.set_data(data.view(np.int8))
    np.testing.assert_array_equal(read_micrograph(tmp_path / "plain.mrc")[0], data.view(np.int8))
    Image.fromarray(data).save(tmp_path / "s8.tif", tiffinfo={339: 2})
    np.testing.assert_array_equal(read_micrograph(tmp_path / "s8.tif")[0], data.view(np.int8))
    Image.fromarray(data).save(tmp_path / "u8.tif")
    np.testing.assert_array_equal(read_micrograph(tmp_path / "u8.tif")[0], data)


def test_headers_that_are_not_mrc_are_refused(tmp_path):
    for name, message in _bad_mrcs(tmp_path).items():
        if name in ("text.mrc", "missing.mrc"):
            with pytest.raises(DeepEMError, match=rf"{name}: not a readable micrograph header"):
                read_header(tmp_path / name)
    assert read_header(tmp_path / "good.mrc") == (64, 64, 1.0)
    raw = bytearray((tmp_path / "good.mrc").read_bytes())
    raw[0:4] = np.int32(0).tobytes()  # nx = 0
    (tmp_path / "zero.mrc").write_bytes(bytes(raw))
    with pytest.raises(DeepEMError, match="zero.mrc: "):
        read_header(tmp_path / "zero.mrc")


def test_a_header_without_sampling_gives_no_pixel_size_not_an_error(tmp_path):
    """mx = 0 (no sampling stated) would divide by zero in mrcfile's voxel size, which reading turns
    into an error: the file has no pixel size, and the config's pixel_size can give it."""
    path = tmp_path / "mx0.mrc"
    with mrcfile.new(path) as m:
        m.set_data(np.random.default_rng(0).normal(size=(64, 96)).astype(np.float32))
        m.voxel_size = 1.5
    assert read_header(path) == (64, 96, 1.5)
    with mrcfile.open(path, "r+") as m:
        m.header.mx = 0
    assert read_header(path) == (64, 96, None)
    image, px = read_micrograph(path)
    assert image.shape == (64, 96) and px is None


def test_pixels_that_are_not_square_are_refused_by_name_unless_pixel_size_overrides(tmp_path, capsys):
    """deepem scales x and y alike: a header giving 1.0 x 1.2 A pixels would pick squashed particles.
    Where pixel_size is given, the header's sizes are not used, and the file is taken."""
    from deepem.cli import main
    from deepem.dataset import micrograph_table

    for name, voxel in {"square.mrc": (1.0, 1.005, 1.0), "oblong.mrc": (1.0, 1.2, 1.0), "no_y.mrc": (1.0, 1.2, 1.0)}.items():
        with mrcfile.new(tmp_path / name) as m:
            m.set_data(np.random.default_rng(0).normal(size=(64, 96)).astype(np.float32))
            m.voxel_size = voxel
            if name == "no_y.mrc":
                m.header.my = 0  # no y sampling stated: the x size stands
    for read in (read_header, read_micrograph):
        assert read(tmp_path / "square.mrc", use_pixel_size=True)[-1] == 1.0
        assert read(tmp_path / "no_y.mrc", use_pixel_size=True)[-1] == 1.0
        assert read(tmp_path / "oblong.mrc")[-1] == 1.0  # its size not used: read as any other
    message = r"oblong.mrc: the header gives pixels of 1 A in x but 1.2 A in y; deepem needs square pixels"
    for read in (read_header, read_micrograph):
        with pytest.raises(DeepEMError, match=message):
            read(tmp_path / "oblong.mrc", use_pixel_size=True)
    with pytest.raises(DeepEMError, match=message):
        micrograph_table([str(tmp_path / "oblong.mrc")], None)
    assert micrograph_table([str(tmp_path / "oblong.mrc")], 1.1)["pixel_size"].iloc[0] == 1.1
    command = ["preprocess", str(tmp_path / "oblong.mrc"), "--diameter", "16", "--particle-px", "8"]
    with pytest.raises(SystemExit):
        main([*command, "-o", str(tmp_path / "refused")])
    assert "deepem needs square pixels" in capsys.readouterr().err and not (tmp_path / "refused").exists()
    main([*command, "--pixel-size", "1.0", "-o", str(tmp_path / "taken")])
    assert (tmp_path / "taken" / "oblong.mrc").exists()


def test_an_output_under_a_file_is_refused_by_name(tmp_path):
    from deepem.io.atomic import atomic_path

    (tmp_path / "afile").write_text("x")
    for context in (atomic_directory, atomic_path):
        with pytest.raises(DeepEMError, match=r"afile is a file, where a folder is needed"):
            with context(tmp_path / "afile" / "sub" / "out"):
                pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_missing_star_file_is_named_as_missing(tmp_path):
    with pytest.raises(DeepEMError, match=r"nothere.star: STAR file not found"):
        read_star_table(tmp_path / "nothere.star")


def _bad_mrcs(tmp):
    good = tmp / "good.mrc"
    write_mrc(good, np.zeros((64, 64), np.float32), 1.0)
    raw = good.read_bytes()
    (tmp / "truncated.mrc").write_bytes(raw[: len(raw) // 2])
    (tmp / "text.mrc").write_text("this is not an MRC file\n" * 100)
    nan = np.zeros((64, 64), np.float32)
    nan[3, 4] = np.nan
    write_mrc(tmp / "nan.mrc", nan, 1.0)
    with mrcfile.new(tmp / "movie.mrc") as m:
        m.set_data(np.zeros((5, 64, 64), np.float32))
    frames = [Image.fromarray(np.zeros((64, 64), np.uint16)) for _ in range(5)]
    frames[0].save(tmp / "movie.tif", save_all=True, append_images=frames[1:])
    Image.new("CMYK", (64, 64)).save(tmp / "cmyk.tif")
    with mrcfile.new(tmp / "fft.mrc") as m:  # was called corrupt (before 0.12.3)
        m.set_data(np.ones((64, 64), np.complex64))
    return {"truncated.mrc": "not a readable MRC", "text.mrc": "not a readable MRC", "nan.mrc": "NaN",
            "movie.mrc": "motion-correct first", "movie.tif": "a stack of 5 frames", "missing.mrc": "not found",
            "cmyk.tif": "save it as greyscale", "fft.mrc": "complex values (MRC mode 4), an FFT, not a micrograph"}


def test_bad_micrographs_give_one_line_errors(tmp_path):
    for name, message in _bad_mrcs(tmp_path).items():
        with pytest.raises(DeepEMError) as err:
            read_micrograph(tmp_path / name)
        text = str(err.value)
        assert name in text and message in text and "\n" not in text


def test_streamed_star_reads_back(tmp_path):
    from deepem.io.coords import MIC, star_writer

    with star_writer(tmp_path / "s.star", [MIC, X, Y, SCORE]) as append:
        for k in range(3):
            table = picks_table([[k, 2 * k], [k + 0.5, 1.0]], [0.5, 0.25])
            table.insert(0, MIC, f"/m/mic{k}.mrc")
            append(table)
        append(picks_table(np.zeros((0, 2)), []).assign(**{MIC: []}))
    back = read_star_table(tmp_path / "s.star")
    assert len(back) == 6 and list(back.columns) == [MIC, X, Y, SCORE]
    assert back[MIC].tolist()[::2] == ["/m/mic0.mrc", "/m/mic1.mrc", "/m/mic2.mrc"]
    np.testing.assert_allclose(back[X], [0, 0.5, 1, 1.5, 2, 2.5])


def test_mrc_reading_tolerates_library_deprecation_warnings_but_not_damage(tmp_path, monkeypatch):
    import warnings

    path = tmp_path / "m.mrc"
    write_mrc(path, np.random.default_rng(0).normal(size=(64, 80)).astype(np.float32), 1.5)
    real_open = mrcfile.open

    def noisy_open(*args, **kwargs):  # as mrcfile 1.5.4 does under numpy 2.5
        warnings.warn("Setting the dtype on a NumPy array has been deprecated", DeprecationWarning)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(mrcfile, "open", noisy_open)
    data, pixel_size = read_micrograph(path)
    assert data.shape == (64, 80) and pixel_size == 1.5

    def damaged_open(*args, **kwargs):
        warnings.warn("file is smaller than the header says", RuntimeWarning)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(mrcfile, "open", damaged_open)
    with pytest.raises(DeepEMError, match="not a readable MRC"):
        read_micrograph(path)


def test_manifest_units_old_mixed_unknown_and_missing(tmp_path):
    new, old = tmp_path / "new", tmp_path / "old"
    for d in (new, old):
        d.mkdir()
    manifest.write(new, [["a", "a.mrc", 100, 100, 1.0, 50, 50, 2.0]], 32)
    (old / manifest.NAME).write_text("\t".join(manifest.SIZES) + "\nb\tb.mrc\t100\t100\t1.0\t50\t50\t2.0\n")
    assert manifest.units(manifest.read([new])) == "noise" and manifest.units(manifest.read([old])) == "spread"
    with pytest.raises(DeepEMError, match="overall spread.*preprocess every micrograph with one deepem version"):
        manifest.units(manifest.read([new, old]))
    with pytest.raises(DeepEMError, match=r"m.pt was made from working images in units of their overall spread .*; FIX$"):
        manifest.check_units(manifest.read([new]), "spread", "m.pt", "FIX")
    manifest.check_units(manifest.read([new]), "noise", "m.pt", "FIX")
    with pytest.raises(DeepEMError, match="in units 'lux', which this deepem version does not know"):
        manifest.check_units(manifest.read([new]), "lux", "m.pt", "FIX")
    manifest.check_units(manifest.read([new]).iloc[:0], "spread", "m.pt", "FIX")  # no micrograph: nothing to refuse


def test_manifest_particle_px_must_be_the_models(tmp_path):
    new, old = tmp_path / "new", tmp_path / "old"
    for d in (new, old):
        d.mkdir()
    manifest.write(new, [["a", "a.mrc", 100, 100, 1.0, 50, 50, 2.0]], 24)
    (old / manifest.NAME).write_text("\t".join(manifest.SIZES) + "\nb\tb.mrc\t100\t100\t1.0\t50\t50\t2.0\n")
    manifest.check_particle_px(manifest.read([new]), 24, "m.pt", "FIX")
    manifest.check_particle_px(manifest.read([old]), 32, "m.pt", "FIX")  # before 0.10.3: unknown, not checked
    with pytest.raises(DeepEMError, match=rf"^{new}: preprocessed with --particle-px 24, but m.pt was trained on particles 32 px across; FIX$"):
        manifest.check_particle_px(manifest.read([old, new]), 32, "m.pt", "FIX")


def test_an_output_directory_is_replaced_only_when_deepem_wrote_it(tmp_path, monkeypatch):
    """atomic_directory replaces its directory whole, so it refuses one holding the user's files."""
    theirs = tmp_path / "mics"
    theirs.mkdir()
    (theirs / "important.mrc").write_text("the user's")
    with pytest.raises(DeepEMError, match="holds files that deepem did not write"):
        with atomic_directory(theirs) as tmp:
            (tmp / "a.box").write_text("new")
    assert [p.name for p in theirs.iterdir()] == ["important.mrc"]
    ours = tmp_path / "out"
    for text in ("first", "second"):  # new, then an earlier output of its own: replaced
        with atomic_directory(ours) as tmp:
            (tmp / "a.box").write_text(text)
    assert (ours / "a.box").read_text() == "second" and (ours / MARKER).exists()
    empty = tmp_path / "empty"
    (empty / "made" / "by_snakemake").mkdir(parents=True)  # folders of a rule's outputs, no file
    with atomic_directory(empty) as tmp:
        (tmp / "a.box").write_text("x")
    assert sorted(p.name for p in empty.iterdir()) == [MARKER, "a.box"]
    deep = tmp_path / "deep"
    (deep / "sub").mkdir(parents=True)
    (deep / "sub" / "notes.txt").write_text("the user's")
    with pytest.raises(DeepEMError, match="holds files that deepem did not write"):
        with atomic_directory(deep):
            pass
    assert (deep / "sub" / "notes.txt").read_text() == "the user's"
    monkeypatch.chdir(ours)
    with pytest.raises(DeepEMError, match="not the current directory"):
        with atomic_directory("."):
            pass
    assert (ours / "a.box").read_text() == "second"


def test_merged_picks_route_bare_names_with_dots_whole_and_need_scores(tmp_path):
    (tmp_path / "p.star").write_text(
        "data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnAutopickFigureOfMerit #3\n_rlnMicrographName #4\n"
        "1 2 0.9 mic.001\n3 4 0.8 mic.002\n5 6 0.7 Movies/mic.002.mrc\n"
    )
    picks = read_by_micrograph(tmp_path / "p.star")
    assert sorted(picks) == ["mic.001", "mic.002"] and len(picks["mic.002"][0]) == 2
    (tmp_path / "u.star").write_text("data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnMicrographName #3\n1 2 m\n")
    with pytest.raises(DeepEMError, match="u.star: no rlnAutopickFigureOfMerit column"):
        read_by_micrograph(tmp_path / "u.star")
    xy, scores = read_by_micrograph(tmp_path / "u.star", scored=False)["m"]  # evaluate's picks at their threshold
    assert xy.tolist() == [[1, 2]] and np.isnan(scores).all()
    (tmp_path / "n.star").write_text((tmp_path / "p.star").read_text().replace("0.8 mic.002", "nan mic.002"))
    with pytest.raises(DeepEMError, match="n.star: a coordinate or score is not a finite number"):
        read_by_micrograph(tmp_path / "n.star")


def test_micrograph_names_that_look_like_numbers_are_read_as_written(tmp_path):
    """starfile guesses column types: micrographs 01 and 0042 (DeepEM's KLH set is named 01-82) became
    1 and 42, and matched no micrograph (before 0.12.3)."""
    (tmp_path / "p.star").write_text(
        "data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnAutopickFigureOfMerit #3\n_rlnMicrographName #4\n"
        "1 2 0.9 01\n3 4 0.8 0042\n5 6 0.7 1e3\n"
    )
    assert sorted(read_by_micrograph(tmp_path / "p.star")) == ["0042", "01", "1e3"]


def test_old_style_mrc_headers_are_read_but_damage_is_still_refused(tmp_path):
    """Before MRC2000 a header had no 'MAP ' ID or machine stamp (SPIDER and EMAN1 converters); such a
    file was refused as corrupt (before 0.12.3). RELION and IMOD read it."""
    data = np.random.default_rng(0).normal(size=(64, 80)).astype(np.float32)
    write_mrc(tmp_path / "new.mrc", data, 1.5)
    raw = bytearray((tmp_path / "new.mrc").read_bytes())
    raw[208:216] = bytes(8)  # map ID and machine stamp
    (tmp_path / "old.mrc").write_bytes(bytes(raw))
    image, pixel_size = read_micrograph(tmp_path / "old.mrc")
    np.testing.assert_array_equal(image, data)
    assert pixel_size == 1.5 and read_header(tmp_path / "old.mrc") == (64, 80, 1.5)
    (tmp_path / "cut.mrc").write_bytes(bytes(raw[:-100]))  # and truncated
    with pytest.raises(DeepEMError, match=r"cut.mrc: not a readable MRC file \(Map ID .*data block"):
        read_micrograph(tmp_path / "cut.mrc")
    (tmp_path / "junk.mrc").write_bytes(np.random.default_rng(1).bytes(5000))
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "png.png")
    (tmp_path / "png.mrc").write_bytes((tmp_path / "png.png").read_bytes())
    (tmp_path / "zeros.mrc").write_bytes(bytes(1024))
    for name in ("junk.mrc", "png.mrc", "zeros.mrc", "cut.mrc"):  # the header alone too: sizes are not made up
        with pytest.raises(DeepEMError, match=f"{name}: not a readable MRC file"):
            read_micrograph(tmp_path / name)
        with pytest.raises(DeepEMError, match=f"{name}: not a readable micrograph header"):
            read_header(tmp_path / name)


def test_micrographs_named_like_missing_values_keep_their_names(tmp_path):
    """pandas reads NA, null, None, NaN ... as missing unless told not to: a micrograph named so
    became a float and crashed its pick job (before 0.12.0)."""
    names = ["NA", "null", "None", "NaN", "n/a", "1e3"]
    rows = [[n, f"/data/{n}.mrc", 1024, 1024, 1.0, 512, 512, 2.0] for n in names]
    manifest.write(tmp_path, rows, 32)
    table = manifest.read([tmp_path])
    assert list(table.index) == names and list(table["name"]) == names
    assert table["pixel_size"].dtype == float and table["particle_px"].tolist() == [32] * 6


def test_a_csv_row_of_a_micrograph_named_na_keeps_its_name(tmp_path):
    from deepem.io.coords import MIC, read_picks

    (tmp_path / "picks.csv").write_text("micrograph,x,y\nNA,10,20\nnull,30,40\n")
    assert read_picks(tmp_path / "picks.csv")[MIC].tolist() == ["NA", "null"]


def test_a_micrograph_given_twice_counts_once_but_two_files_of_one_name_are_refused(tmp_path):
    """The same file twice was refused as two files of one name (before 0.12.3)."""
    from deepem.io.micrograph import micrograph_names

    (tmp_path / "b").mkdir()
    assert micrograph_names([tmp_path / "m.mrc", tmp_path / "b" / ".." / "m.mrc"]) == {"m": str(tmp_path / "m.mrc")}
    from deepem.cli import main

    write_mrc(tmp_path / "m.mrc", np.random.default_rng(0).normal(size=(256, 256)).astype(np.float32), 2.0)
    main(["preprocess", str(tmp_path / "m.mrc"), str(tmp_path / "b" / ".." / "m.mrc"), "--diameter", "40",
          "--particle-px", "20", "-o", str(tmp_path / "pre")])
    assert list(manifest.read([tmp_path / "pre"]).index) == ["m"]  # preprocessed once
    with pytest.raises(DeepEMError, match="m.mrc: same name 'm' as .*; micrograph file names must be unique"):
        micrograph_names([tmp_path / "m.mrc", tmp_path / "b" / "m.mrc"])
