import numpy as np
import pytest
from scipy.ndimage import binary_dilation, binary_erosion, uniform_filter

from deepem.preprocess import (
    CLIP,
    _unclipped,
    fourier_crop,
    median,
    NOISE,
    gradient_surface,
    noise_units,
    preprocess,
    robust_normalise,
    working_shape,
)


@pytest.mark.parametrize("shape,out", [((256, 256), (128, 128)), ((300, 200), (111, 73)), ((255, 257), (100, 101))])
def test_fourier_crop_keeps_a_low_frequency(shape, out):
    ny, nx = shape
    y, x = np.mgrid[:ny, :nx]
    wave = np.cos(2 * np.pi * (4 * x / nx + 3 * y / ny))
    small = fourier_crop(wave.astype(np.float32), out)
    my, mx = out
    yy, xx = np.mgrid[:my, :mx]
    assert small.shape == out
    np.testing.assert_allclose(small, np.cos(2 * np.pi * (4 * xx / mx + 3 * yy / my)), atol=1e-4)


@pytest.mark.parametrize("shape,out", [((256, 302), (128, 151)), ((254, 300), (127, 150)), ((256, 300), (128, 150))])
def test_fourier_crop_commutes_with_shifts_and_transposition(shape, out):
    """Shifting the image by 2 px shifts its half-size crop by 1 px, and transposing it transposes
    the crop. Before 0.12.0 an even crop kept only the real part of the new Nyquist row and column
    (one of the two rows aliased onto it), which broke both, by 5-10 % of the image's spread."""
    image = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    small = fourier_crop(image, out)
    np.testing.assert_allclose(fourier_crop(np.roll(image, (2, 4), axis=(0, 1)), out), np.roll(small, (1, 2), axis=(0, 1)),
                               atol=1e-5)
    np.testing.assert_allclose(fourier_crop(image.T.copy(), out[::-1]), small.T, atol=1e-5)


def test_fourier_crop_removes_frequencies_above_the_new_nyquist():
    n = 256
    x = np.arange(n)
    wave = np.tile(np.cos(2 * np.pi * 100 * x / n), (n, 1)).astype(np.float32)
    assert np.abs(fourier_crop(wave, (64, 64))).max() < 1e-4


def test_coordinates_scale_exactly():
    """A blob at original (x, y) lands at working (x / sx, y / sy), sx = width / working width."""
    ny, nx = 600, 800
    x0, y0 = 517.0, 233.0
    y, x = np.mgrid[:ny, :nx]
    blob = np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * 12.0**2)).astype(np.float32)
    shape = working_shape((ny, nx), 1.0, 3.3)
    small = fourier_crop(blob, shape)
    sy, sx = ny / shape[0], nx / shape[1]
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    w = np.clip(small, 0, None) ** 4
    cx, cy = (w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()
    assert abs(cx * sx - x0) < 0.05 and abs(cy * sy - y0) < 0.05


def test_working_shape_never_upsamples():
    assert working_shape((100, 200), 5.0, 2.0) == (100, 200)
    assert working_shape((1000, 2000), 1.0, 4.0) == (250, 500)


def test_gradient_removal_and_robust_normalisation():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:256, :256] / 256.0
    image = (rng.normal(size=(256, 256)) * 2 + 30 * x + 10 * y * y + 5).astype(np.float32)
    flat = image - gradient_surface(image)
    assert abs(np.median(flat[:, :64]) - np.median(flat[:, -64:])) < 0.3
    z = robust_normalise(flat)
    assert abs(np.median(z)) < 0.05
    assert abs(np.median(np.abs(z)) * 1.4826 - 1) < 0.05
    assert np.abs(z).max() <= 6.0


def test_preprocess_sizes_particles():
    image = np.random.default_rng(1).normal(size=(1000, 1200)).astype(np.float32)
    work, level = preprocess(image, 1.5, 150 / 32, 32)
    assert work.shape == working_shape(image.shape, 1.5, 150 / 32) == (320, 384)


def carbon_image(seed=0, n=512):
    """Noise on a quadratic illumination gradient, with a darker carbon film over a third of it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:n, :n] / n
    image = 100 + 3 * x + 2 * y * y + rng.normal(size=(n, n))
    carbon = x + 0.5 * y > 1.05
    return (image - 2.0 * carbon).astype(np.float32), carbon


def test_robust_gradient_fit_follows_the_thin_ice_not_the_carbon():
    image, carbon = carbon_image()
    for robust, ok in ((True, True), (False, False)):
        flat = image - gradient_surface(image, robust=robust)
        ice = flat[~carbon]
        # across the clean ice the flattened background is level only when carbon does not pull the fit
        assert (np.ptp([np.median(part) for part in np.array_split(ice, 8)]) < 0.1) == ok
    flat = image - gradient_surface(image, robust=True)
    assert abs(np.median(flat[carbon]) - np.median(flat[~carbon]) + 2.0) < 0.1


def test_preprocess_maps_the_carbon_as_darker_background():
    image, carbon = carbon_image(n=1024)
    work, maps = preprocess(image, 1.0, 1.0, 32)
    assert work.shape == image.shape and maps.shape == (2, 128, 128)  # level and texture, 8 px cells: 4 per diameter
    level = maps[0]
    c = 8
    cells = carbon[c // 2 :: c, c // 2 :: c]
    inner = ~binary_dilation(carbon, iterations=32)[c // 2 :: c, c // 2 :: c]  # a diameter clear of the edge
    deep = binary_erosion(carbon, iterations=32)[c // 2 :: c, c // 2 :: c]
    assert np.abs(level[inner]).max() < 0.1
    assert level[deep].max() < -1.5 and cells.mean() > 0.2


def particles(n, centres, sigma=5.0):
    y, x = np.mgrid[:n, :n]
    return sum(np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2)) for cx, cy in centres)


def contrast(image, centres):
    """Mean depth of the particles at ``centres`` below the median of a ring 15-25 px around each."""
    y, x = np.mgrid[: image.shape[0], : image.shape[1]]
    depth = []
    for cx, cy in centres:
        r = np.hypot(x - cx, y - cy)
        depth.append(np.median(image[(r >= 15) & (r <= 25)]) - image[int(cy), int(cx)])
    return float(np.mean(depth))


def test_noise_units_scale_the_pixel_noise():
    rng = np.random.default_rng(4)
    y, x = np.mgrid[:300, :300]
    image = robust_normalise(0.7 * rng.normal(size=(300, 300)) + 5 * np.sin(x / 40) - 3 * particles(300, [(150, 150)]))
    residual = noise_units(image) - uniform_filter(noise_units(image), 3)
    assert abs(1.4826 * np.median(np.abs(residual - np.median(residual))) - NOISE) < 0.01
    assert noise_units(np.ones((50, 50), np.float32)).max() == 1.0


def test_particles_keep_their_contrast_beside_carbon_and_crowds():
    """The same particles on the same noise have the same contrast in the working image whatever else
    the micrograph holds: here a carbon film and three times the particles, which widen its spread."""
    n, rng = 512, np.random.default_rng(5)
    common = [(64 + 96 * i, 64 + 96 * j) for i in range(2) for j in range(5)]
    crowd = [(256 + 48 * i, 40 + 48 * j) for i in range(5) for j in range(10)]
    noise = rng.normal(size=(n, n))
    clean = noise - 1.5 * particles(n, common)
    y, x = np.mgrid[:n, :n]
    busy = clean - 1.5 * particles(n, crowd) - 4.0 * ((x > 200) & (y > 340))
    flat = [image - gradient_surface(image) for image in (clean, busy)]
    old = [contrast(robust_normalise(f), common) for f in flat]
    new = [contrast(preprocess(image.astype(np.float32), 1.0, 1.0, 32)[0], common) for image in (clean, busy)]
    assert old[1] / old[0] < 0.8  # scaled by its spread, the busy micrograph's particles look fainter
    assert abs(new[1] / new[0] - 1) < 0.05


def test_clipped_contamination_leaves_the_noise_scale_alone():
    """Clipping flattens the noise over dark ice; measured there too, the noise would look weaker."""
    noise = np.random.default_rng(6).normal(size=(400, 400))
    dirty = noise.copy()
    dirty[:, :150] -= 50  # over a third of the micrograph, clipped at -6 MADs
    for image in (noise, dirty):
        work = noise_units(robust_normalise(image))
        residual = (work - uniform_filter(work, 3))[:, 200:]
        assert abs(1.4826 * np.median(np.abs(residual - np.median(residual))) - NOISE) < 0.01


@pytest.mark.parametrize("shape,axis", [((301,), -1), ((256,), -1), ((7, 256), -1), ((300, 3249), 1), ((6, 5, 4), 0)])
def test_median_from_a_sort_equals_numpys(shape, axis):
    values = np.random.default_rng(7).normal(size=shape).astype(np.float32)
    assert np.array_equal(median(values, axis), np.median(values, axis=axis))
    assert np.array_equal(median(values.astype(np.float64), axis), np.median(values.astype(np.float64), axis=axis))


@pytest.mark.parametrize("shape", [(40, 40), (41, 38), (3, 5)])
def test_unclipped_samples_are_those_with_no_clipped_neighbour(shape):
    rng = np.random.default_rng(8)
    for share in (0.0, 0.02, 0.3, 1.0):
        image = np.clip(rng.normal(size=shape) * 3, -CLIP, CLIP).astype(np.float32)
        image[rng.random(shape) < share] = CLIP
        plain = (uniform_filter((np.abs(image) < CLIP).astype(np.float32), 3) > 0.999)[::2, ::2]
        assert np.array_equal(_unclipped(image), plain)


def test_noise_units_match_the_full_image_filter():
    """The residual is sampled from a half-size filter pass; the scale is that of the full 3 x 3 mean."""
    raw = np.random.default_rng(9).normal(size=(301, 280))
    raw[40:90, 100:170] -= 50  # dark ice, clipped
    image = robust_normalise(raw)
    assert (np.abs(image) >= CLIP).any()
    residual = (image - uniform_filter(image, 3))[::2, ::2]
    keep = (uniform_filter((np.abs(image) < CLIP).astype(np.float32), 3) > 0.999)[::2, ::2]
    values = residual[keep]
    sigma = 1.4826 * np.median(np.abs(values - np.median(values)))
    assert np.array_equal(noise_units(image), (image * (NOISE / sigma)).astype(np.float32))


@pytest.mark.parametrize("shape", [(1, 1), (1, 50), (40, 40), (20, 80), (47, 47)])
def test_tiny_micrographs_get_the_plain_gradient_fit(shape):
    image = np.random.default_rng(10).normal(size=shape).astype(np.float32)
    assert np.array_equal(gradient_surface(image, robust=True), gradient_surface(image))
    if min(shape) > 16:
        assert preprocess(image, 1.0, 1.0, 16)[0].shape == shape


def test_a_particle_exactly_particle_px_across_passes_despite_float32_headers():
    from deepem.commands.preprocess import check_geometry
    from deepem.errors import DeepEMError

    header = float(np.float32(1.1))  # an MRC header's 1.1 A/px: 35.2 A spans 31.99999 px
    check_geometry("m.mrc", (1024, 1024), header, 35.2, 32)
    with pytest.raises(DeepEMError, match=r"m.mrc: a 34 A particle spans only 30.9 px .* set particle_px \(--particle-px\) to 30"):
        check_geometry("m.mrc", (1024, 1024), header, 34, 32)



def test_a_pixel_size_that_contradicts_the_header_is_a_warning(tmp_path, capsys):
    """The classic mistake: the unbinned pixel size given for binned micrographs (or the other way)."""
    from deepem.cli import main
    from deepem.io.micrograph import write_mrc

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        write_mrc(tmp_path / f"{name}.mrc", rng.normal(size=(256, 256)).astype(np.float32), 2.0)
    mics = [str(tmp_path / "a.mrc"), str(tmp_path / "b.mrc")]
    for given, warned in (("2.0", False), ("1.0", True)):
        main(["preprocess", *mics, "--pixel-size", given, "--diameter", "40", "--particle-px", "20",
              "-o", str(tmp_path / f"pre{given}")])
        out = capsys.readouterr().out
        assert ("warning: --pixel-size 1 A overrides the header's pixel size in 2 of 2 micrographs, e.g. 2 A in" in out) == warned


def test_a_constant_micrograph_is_named(tmp_path, capsys):
    from deepem.cli import main
    from deepem.io.micrograph import write_mrc

    write_mrc(tmp_path / "good.mrc", np.random.default_rng(0).normal(size=(256, 256)).astype(np.float32), 2.0)
    for value in (0, 7):  # 7 was normalised to z-scores of rounding noise (before 0.12.3)
        write_mrc(tmp_path / "blank.mrc", np.full((256, 256), value, np.float32), 2.0)
        with pytest.raises(SystemExit):
            main(["preprocess", str(tmp_path / "good.mrc"), str(tmp_path / "blank.mrc"), "--diameter", "40",
                  "--particle-px", "20", "-o", str(tmp_path / "pre")])
        assert "blank.mrc: micrograph is constant: nothing to pick; a blank or failed exposure" in capsys.readouterr().err
        assert not (tmp_path / "pre").exists()


def test_a_mostly_flat_micrograph_is_not_scaled_without_bound():
    """With most of it saturated, the pixel noise measured ~1e-8 and the working image reached 3e7,
    which float16 patches made inf and training NaN (before 0.12.3)."""
    from deepem.preprocess import NOISE_FLOOR

    image = np.random.default_rng(0).normal(128, 30, size=(1024, 1024)).round()
    image[:, :620] = 0
    working, _ = preprocess(image, 1.0, 4.6875, 32)
    assert np.abs(working).max() <= CLIP * NOISE / NOISE_FLOOR
