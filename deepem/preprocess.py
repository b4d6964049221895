"""Micrograph preprocessing: gradient removal, Fourier-crop downsampling, normalisation to the noise.

The working pixel size is chosen from the particle diameter so that a particle spans
``particle_px`` pixels. Fourier cropping keeps sample 0 at position 0, so a working pixel
``(x, y)`` sits at ``(x * sx, y * sy)`` in the original, with ``s = original / working``
size along each axis: coordinates scale exactly.

The working image is in units of its own pixel noise (:func:`noise_units`), not of its overall
spread: carbon, ice, aggregates and the number of particles all widen a micrograph's spread, so
scaled by it the same particles would look weaker on a crowded or contaminated micrograph than on a
clean one, and a net trained on a few labelled micrographs would miss them on the others
(bench/RESULTS.md, finding 19).
"""

from functools import lru_cache

import numpy as np
import scipy.fft
from scipy.ndimage import uniform_filter1d

from deepem.background import background_maps
from deepem.errors import DeepEMError


def median(values, axis=-1):
    """``np.median(values, axis=axis)`` of finite floats along one axis (default: the last), from a
    sort: the same numbers, 3 to 9 times faster here than numpy's partition for the sizes
    preprocessing takes (rows of 256 to 3,249 values, 1-D arrays up to 214,000)."""
    ordered = np.moveaxis(np.sort(values, axis=axis), axis, -1)
    k = ordered.shape[-1] // 2
    return ordered[..., k] if ordered.shape[-1] % 2 else np.mean(ordered[..., k - 1 : k + 1], axis=-1)


def working_shape(shape, pixel_size, working_pixel_size):
    """Working-image shape: the original shape scaled by pixel_size / working_pixel_size, never upsampled."""
    factor = min(1.0, pixel_size / working_pixel_size)
    return tuple(max(1, int(round(n * factor))) for n in shape)


def fourier_crop(image, out_shape, workers=1):
    """Downsample ``image`` to ``out_shape`` by keeping its lowest spatial frequencies (mean preserved)."""
    ny, nx = image.shape
    my, mx = out_shape
    if (my, mx) == (ny, nx):
        return image.astype(np.float32, copy=True)
    # rfft2, with the column transforms only where a column is kept
    f = scipy.fft.rfft(image.astype(np.float32, copy=False), axis=1, workers=workers)[:, : mx // 2 + 1]
    f = scipy.fft.fft(f, axis=0, workers=workers)
    half = my // 2
    rows = np.r_[0 : my - half, ny - half : ny] if half else np.r_[0:my]
    cropped = f[rows]
    if my % 2 == 0:  # rows +my/2 and -my/2 alias onto the new Nyquist row: average them
        cropped[half] = 0.5 * (f[half] + f[ny - half])
    # the new Nyquist column needs nothing: irfft2 keeps its Hermitian part (its +/- frequencies' average)
    out = scipy.fft.irfft2(cropped, s=(my, mx), workers=workers)
    return (out * (my * mx) / (ny * nx)).astype(np.float32)


def gradient_surface(image, block=16, robust=False):
    """A quadratic surface fitted to the block medians of ``image``: the slow illumination gradient.

    ``robust`` fits the main background level only, so carbon or ice covering part of the image
    does not pull the surface: least median of squares over exact fits to random sets of 6 blocks
    (seeded), then least squares over the blocks within 2.5 robust sigmas of it, repeated until
    that set settles.
    """
    return _surfaces(image, block, (robust,))[0]


def _surfaces(image, block, robust):
    """:func:`gradient_surface` of ``image`` for each flag in ``robust``, from one set of block medians."""
    ny, nx = image.shape
    (by, h, bx, w), basis, samples = _grid(ny, nx, block)  # samples: None for 12 blocks or fewer
    blocks = median(image[: by * h, : bx * w].reshape(by, h, bx, w).swapaxes(1, 2).reshape(by * bx, h * w))
    gy, gx = np.meshgrid((np.arange(ny) + 0.5) / ny, (np.arange(nx) + 0.5) / nx, indexing="ij", sparse=True)
    surfaces = []
    for flag in robust:
        if flag and samples is not None:
            coef = _robust_fit(basis, blocks, samples)
        else:
            coef = np.linalg.lstsq(basis, blocks, rcond=None)[0]
        surfaces.append(coef[0] + coef[1] * gx + coef[2] * gy + coef[3] * gx * gx + coef[4] * gx * gy + coef[5] * gy * gy)
    return surfaces


@lru_cache(maxsize=4)
def _grid(ny, nx, block, trials=300, seed=0):
    """What the gradient fits of an ``ny x nx`` image share with every image of its size: the block
    grid ``(by, h, bx, w)``, the quadratic basis at the block centres, and for the robust fit
    ``trials`` random sets of 6 blocks (seeded) with the pseudo-inverses of their exact fits (None
    for 12 blocks or fewer, which get the plain fit). Read-only."""
    by, bx = max(1, ny // block), max(1, nx // block)
    h, w = ny // by, nx // bx
    yy, xx = np.meshgrid((np.arange(by) + 0.5) * h / ny, (np.arange(bx) + 0.5) * w / nx, indexing="ij")
    basis = np.stack([np.ones_like(yy), xx, yy, xx * xx, xx * yy, yy * yy], axis=-1).reshape(-1, 6)
    basis.flags.writeable = False
    if len(basis) <= 12:
        return (by, h, bx, w), basis, None
    rng = np.random.default_rng(seed)
    picks = np.stack([rng.choice(len(basis), basis.shape[1], replace=False) for _ in range(trials)])
    inverses = np.linalg.pinv(basis[picks])  # (trials, terms, terms)
    for a in (picks, inverses):
        a.flags.writeable = False
    return (by, h, bx, w), basis, (picks, inverses)


def _robust_fit(basis, blocks, samples):
    """Least median of squares, then least squares over the blocks near it until that set settles."""
    coef = _least_median_fit(basis, blocks, *samples)
    keep = None
    for _ in range(10):
        residual = np.abs(blocks - basis @ coef)
        near = residual <= 2.5 * 1.4826 * median(residual)
        if keep is not None and (near == keep).all():
            break
        keep = near
        coef, *_ = np.linalg.lstsq(basis[keep], blocks[keep], rcond=None)
    return coef


def _least_median_fit(basis, values, picks, inverses):
    """Of the exact fits to the samples ``picks`` of ``values`` (``inverses``: the pseudo-inverses of
    ``basis[picks]``), the one with the least median absolute residual."""
    coefs = inverses @ values[picks][..., None]  # (trials, terms, 1)
    spread = median(np.abs(values - (basis @ coefs)[..., 0]))
    return coefs[int(np.argmin(spread)), :, 0]


CLIP = 6.0  # robust_normalise clips outliers here, in MADs


def _robust_spread(values):
    """Median and robust std of ``values``: 1.4826 x MAD, or the std where the MAD is 0."""
    flat = np.ravel(values)
    centre = float(median(flat))
    spread = float(median(np.abs(flat - centre))) * 1.4826
    return centre, spread if spread > 0 else float(values.std())


def robust_normalise(image, clip=CLIP):
    """Robust z-score: subtract the median, divide by 1.4826 x MAD, clip outliers to +/- clip."""
    centre, mad = _robust_spread(image[::4, ::4])
    if mad <= 0:
        raise DeepEMError("micrograph is constant: nothing to pick")
    return np.clip((image - centre) / mad, -clip, clip).astype(np.float32)


NOISE = 0.3  # robust std of the pixel noise in working images (raw micrographs': 0.2-0.9 of their MAD)
NOISE_FLOOR = 0.01  # least noise std scaled to NOISE: bgal's denoised JPEGs have 0.05; a mostly saturated or
# masked micrograph's is near 0, and would be scaled by 10^7


def noise_units(image):
    """``image`` (robust-normalised, clipped at ``CLIP``) scaled so that its pixel noise, the residual
    after a 3 x 3 mean, has a robust std (1.4826 x MAD) of ``NOISE``. Particle-sized structure hardly
    reaches that residual, so the scale is that of the noise alone. Pixels near clipped ones are left
    out (clipping flattens the noise there), and an image without such noise is returned unscaled;
    a noise std under ``NOISE_FLOOR`` (most of the image flat: saturated or masked) counts as that.

    The residual is sampled at every second pixel of every second row: the 3 x 3 mean (scipy's
    ``uniform_filter``, reflected edges) is taken down the columns, then along those rows only."""
    rows = uniform_filter1d(image, 3, axis=0)[::2]
    residual = image[::2, ::2] - uniform_filter1d(rows, 3, axis=1)[:, ::2]
    keep = _unclipped(image)
    sigma = _robust_spread(residual[keep] if keep.any() else residual)[1]
    return (image * (NOISE / max(sigma, NOISE_FLOOR))).astype(np.float32) if sigma > 0 else image


def _unclipped(image):
    """Which samples of ``image[::2, ::2]`` have no clipped pixel (at +/- ``CLIP``, or not a number) in
    their 3 x 3 neighbourhood."""
    keep = np.ones(((image.shape[0] + 1) // 2, (image.shape[1] + 1) // 2), bool)
    y, x = np.nonzero(~(np.abs(image) < CLIP))
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            yy, xx = y + dy, x + dx
            on = (yy % 2 == 0) & (xx % 2 == 0) & (yy >= 0) & (xx >= 0) & (yy < image.shape[0]) & (xx < image.shape[1])
            keep[yy[on] // 2, xx[on] // 2] = False
    return keep


def preprocess(image, pixel_size, working_pixel_size, particle_px, workers=1):
    """The working image of a raw micrograph (gradient removed, outliers clipped, in noise units), and
    its maps of local background level and texture (:func:`deepem.background.background_maps` of the
    image flattened by the robust gradient fit)."""
    if np.ptp(image) == 0:  # the gradient fit's rounding would otherwise be normalised to noise
        raise DeepEMError("micrograph is constant: nothing to pick")
    small = fourier_crop(image, working_shape(image.shape, pixel_size, working_pixel_size), workers=workers)
    plain, robust = _surfaces(small, 16, (False, True))
    working = noise_units(robust_normalise((small - plain).astype(np.float32)))
    return working, background_maps(robust_normalise(small - robust), particle_px)
