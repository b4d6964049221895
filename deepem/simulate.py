"""Synthetic cryo-EM micrographs with ground truth, for the demo and the tests.

One random 3-D phantom (a lobed cluster of Gaussians) is projected analytically at uniform
random orientations. The particles are placed without overlap among ice contamination, a
carbon edge (odd-numbered micrographs) and junk aggregates. Each micrograph is then
CTF-modulated, shaded by a slow illumination ramp, and given white noise at a set per-pixel SNR.
Everything is deterministic from the seed; micrograph ``i`` does not depend on how many are made.
"""

import numpy as np
import scipy.fft
import yaml
from scipy import ndimage
from scipy.spatial.transform import Rotation

from deepem.errors import DeepEMError
from deepem.io.atomic import atomic_directory
from deepem.io.coords import picks_table, write_star
from deepem.io.micrograph import write_mrc

KV, CS_MM, AMPLITUDE_CONTRAST, BFACTOR = 300.0, 2.7, 0.1, 150.0
MAX_SIZE = 8192  # px a side: simulating one 4096² micrograph peaks at 2.3 GB of memory, 8192² at about 4 times that
JUNK_ABSORPTION = 0.05  # amplitude contrast of dense aggregates, per unit of projected density
CONTRAST = 0.02  # std of the particle signal over the particle area, relative to the background


def simulate_dataset(
    outdir,
    n_micrographs=8,
    size=1024,
    pixel_size=2.0,
    particle_diameter=150.0,
    density=0.5,
    snr=0.05,
    n_labelled=4,
    label_fraction=1.0,
    on_carbon=0.0,
    seed=0,
):
    """Write a synthetic dataset under ``outdir`` and return the particle count per micrograph.

    ``size`` is the micrograph edge in pixels, ``pixel_size`` in Å/px, ``particle_diameter`` in Å.
    ``density`` is the fraction of a close-packed count on the free area (above ~0.55 random
    packing saturates), ``snr`` the per-pixel signal variance over the particle area divided by
    the noise variance. ``on_carbon`` is the density of particles on the carbon, which the truth
    leaves out, as a user would (0: none, and the micrographs of earlier versions; otherwise the
    micrographs with carbon differ). Layout: ``micrographs/demo_NNN.mrc``, ``truth/demo_NNN.star`` (all
    particle centres), ``negatives/demo_NNN.star`` (junk, ice and carbon points),
    ``labels/demo_NNN_manualpick.star`` (a ``label_fraction`` of the truth, first ``n_labelled``
    micrographs only, at most all) and ``dataset.yaml``.
    """
    diameter = particle_diameter / pixel_size if pixel_size > 0 else 0.0
    checks = [
        (n_micrographs >= 1, "--micrographs must be at least 1"),
        (pixel_size > 0 and particle_diameter > 0, "--pixel-size and --diameter must be positive"),
        (diameter >= 8, f"the particle is only {diameter:.1f} px across; use a smaller --pixel-size"),
        (size >= 4 * diameter, f"--size {size} px is under 4 particle diameters ({diameter:.1f} px); enlarge it"),
        (size <= MAX_SIZE, f"--size {size} px: simulate makes micrographs of at most {MAX_SIZE} px a side; use a smaller --size"),
        (n_labelled >= 0, "--labelled must be 0 or more"),
        (0 < label_fraction <= 1, "--label-fraction must be in (0, 1]"),
        (snr > 0, "--snr must be positive"),
        (0 < density <= 1, "density must be in (0, 1]"),
        (0 <= on_carbon <= 1, "--on-carbon must be in [0, 1]"),
    ]
    for ok, message in checks:
        if not ok:
            raise DeepEMError(message)
    n_labelled = min(n_labelled, n_micrographs)
    phantom_seed, *mic_seeds = np.random.SeedSequence(seed).spawn(n_micrographs + 1)
    phantom = _phantom(diameter / 2, np.random.default_rng(phantom_seed))
    names, counts = [f"demo_{i:03d}" for i in range(n_micrographs)], []
    with atomic_directory(outdir) as out:  # replaced whole: no micrograph of an earlier, larger set stays
        for folder in ("micrographs", "truth", "negatives", "labels"):
            (out / folder).mkdir()
        for i, name in enumerate(names):
            rng = np.random.default_rng(mic_seeds[i])
            image, truth, negatives = _micrograph(
                size, pixel_size, diameter, density, snr, i % 2 == 1, phantom, rng, on_carbon
            )
            write_mrc(out / "micrographs" / f"{name}.mrc", image, pixel_size, label="deepem simulate")
            write_star(out / "truth" / f"{name}.star", picks_table(truth))
            write_star(out / "negatives" / f"{name}.star", picks_table(negatives))
            if i < n_labelled:
                n = min(len(truth), max(1, round(label_fraction * len(truth))))  # an empty file says "no particles"
                keep = np.sort(rng.choice(len(truth), n, replace=False))
                write_star(out / "labels" / f"{name}_manualpick.star", picks_table(truth[keep]))
            counts.append(len(truth))
        meta = {
            "pixel_size": float(pixel_size),
            "particle_diameter": float(particle_diameter),
            "train": names[:n_labelled],
            "test": names[n_labelled:],
        }
        (out / "dataset.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return counts


def _phantom(radius, rng):
    """Centres (n, 3), widths and weights of 30-60 Gaussians: a body and 2-3 lobes inside ``radius``."""
    n, n_lobes = rng.integers(30, 61), rng.integers(2, 4)
    lobe = rng.integers(-n_lobes, n_lobes, n)  # negative: the body, about half the Gaussians
    directions = rng.normal(size=(n_lobes, 3))
    directions *= rng.uniform(0.6, 0.7, (n_lobes, 1)) / np.linalg.norm(directions, axis=1, keepdims=True)
    in_ball = rng.normal(size=(n, 3))
    in_ball *= rng.random((n, 1)) ** (1 / 3) / np.linalg.norm(in_ball, axis=1, keepdims=True)
    lobes = directions[np.maximum(lobe, 0)] + in_ball * 0.3
    centres = np.where((lobe < 0)[:, None], in_ball * [0.9, 0.75, 0.6], lobes)
    sigma = rng.uniform(0.08, 0.15, n)
    centres *= np.minimum(1, (1 - 1.5 * sigma) / np.linalg.norm(centres, axis=1))[:, None]
    centres, sigma = centres * radius, sigma * radius
    weight = rng.uniform(0.5, 1.0, n) * sigma  # a 3-D Gaussian projects with integral ~ its width
    box = np.zeros((int(2 * radius) + 1,) * 2)
    _splat(box, radius, radius, centres[:, 0], centres[:, 1], sigma, weight)
    return centres, sigma, weight / box.max()


def _splat(image, x, y, cx, cy, sigma, weight):
    """Add Gaussians (offsets ``cx, cy`` from ``(x, y)``) to ``image`` in place, clipped to its edges."""
    reach = np.max(np.abs(np.r_[cx, cy])) + 3 * np.max(sigma)
    rows = np.arange(max(0, int(y - reach)), min(image.shape[0], int(y + reach) + 2))
    cols = np.arange(max(0, int(x - reach)), min(image.shape[1], int(x + reach) + 2))
    if rows.size and cols.size:
        gy = np.exp(-((rows - y - cy[:, None]) ** 2) / (2 * sigma[:, None] ** 2))
        gx = np.exp(-((cols - x - cx[:, None]) ** 2) / (2 * sigma[:, None] ** 2))
        image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] += (gy * weight[:, None]).T @ gx


def _micrograph(size, pixel_size, diameter, density, snr, has_carbon, phantom, rng, on_carbon=0.0):
    """One noisy micrograph, its particle centres (n, 2) and its negative points (m, 2).

    With ``on_carbon`` > 0 (and carbon), particles also lie on the carbon, at least a radius
    inside it and clear of ice; they are in the image but not in the truth.
    """
    ys, xs = np.ogrid[:size, :size]
    to_edge = np.minimum(np.minimum(ys, size - 1 - ys), np.minimum(xs, size - 1 - xs))
    inset = to_edge >= diameter / 2 + 1
    area = (size / diameter) ** 2 / (1024 / 75) ** 2  # contaminants scale with area; 1 for the defaults

    ice = np.zeros((size, size))
    for _ in range(_count(rng, 1, 3, area)):
        _add_ice_blob(ice, rng.uniform(0, size, 2), min(rng.uniform(1, 2.5) * diameter, size / 4), rng)
    carbon, carbon_shade = np.zeros((size, size)), 1.0
    if has_carbon:  # beyond a random line, 15-35 % of the image, darker with a low-frequency texture
        angle = rng.uniform(0, 2 * np.pi)
        along = xs * np.cos(angle) + ys * np.sin(angle)
        lo, hi = along.min(), along.max()
        carbon = 1 / (1 + np.exp((hi - rng.uniform(0.15, 0.35) * (hi - lo) - along) / 3))
        smooth = np.exp(-2 * (np.pi * diameter / 3) ** 2 * _k2(size, 1.0))  # Gaussian blur, sigma D/3
        texture = scipy.fft.irfft2(scipy.fft.rfft2(rng.normal(size=(size, size))) * smooth, (size, size))
        carbon_shade = 1 - carbon * (0.08 + 0.04 * texture / texture.std())
    blocked = (ice > 0.02) | (carbon > 0.02)

    junk_phi, junk_xy = np.zeros((size, size)), []
    free = ndimage.distance_transform_edt(~blocked)
    crowded = np.zeros((size, size), bool)  # too close to an earlier aggregate
    for _ in range(_count(rng, 3, 6, area)):
        radius = rng.uniform(0.75, 1.5) * diameter
        spot = _sample((to_edge > radius) & (free > radius) & ~crowded, 1, rng)
        if len(spot):
            junk_xy.append(spot[0])
            _junk(junk_phi, spot[0], radius, rng)
            distance = np.hypot(xs - spot[0, 0], ys - spot[0, 1])
            blocked |= distance < radius
            crowded |= distance < radius + 1.5 * diameter

    free, depth = ndimage.distance_transform_edt(~blocked), ndimage.distance_transform_edt(blocked)
    allowed = inset & (free > diameter / 2)
    target = round(density * allowed.sum() / (np.sqrt(3) / 2 * diameter**2))
    truth = _place(allowed, target, diameter, rng)
    placed = truth
    if has_carbon and on_carbon > 0:
        on = inset & (ndimage.distance_transform_edt(carbon > 0.5) > diameter / 2) & (ice < 0.02)
        on_target = round(on_carbon * on.sum() / (np.sqrt(3) / 2 * diameter**2))
        placed = np.concatenate([truth, _place(on, on_target, diameter, rng)])
    centres, sigma, weight = phantom
    particle_phi = np.zeros((size, size))
    for (x, y), rotation in zip(placed, Rotation.from_quat(rng.normal(size=(len(placed), 4))).as_matrix()):
        turned = centres @ rotation.T
        _splat(particle_phi, x, y, turned[:, 0], turned[:, 1], sigma, weight)

    deep = inset & (depth > diameter / 2)
    negatives = np.concatenate(
        [np.reshape(junk_xy, (-1, 2)), _sample(deep & (ice > 0.5), rng.integers(1, 3), rng)]
        + ([_sample(deep & (carbon > 0.5), 2, rng)] if has_carbon else [])
    )

    defocus = rng.uniform(1.0e4, 3.0e4)  # Å
    padded = (scipy.fft.next_fast_len(size + int(2 * diameter)),) * 2  # no wrap-around of CTF fringes
    spectra = _ctf(padded[0], pixel_size, defocus) * scipy.fft.rfft2(np.stack([particle_phi, junk_phi]), padded)
    signal = scipy.fft.irfft2(spectra, padded)[:, :size, :size]
    on_particles = particle_phi > 0.05
    scale = CONTRAST / signal[0][on_particles].std() if on_particles.any() else 1.0
    u, v = xs * 2 / size - 1, ys * 2 / size - 1
    a, b, c, d = rng.uniform(-0.02, 0.02, 4)
    shade = (1 + a * u + b * v + c * u**2 + d * v**2) * np.exp(-ice - JUNK_ABSORPTION * junk_phi) * carbon_shade
    noise = rng.normal(0.0, CONTRAST / np.sqrt(snr), (size, size))
    image = shade * (1 - scale * signal.sum(axis=0)) + noise
    return image.astype(np.float32), truth, negatives


def _count(rng, lo, hi, area):
    """A random count in ``[lo, hi]`` scaled by ``area``, rounded stochastically."""
    return int(rng.integers(lo, hi + 1) * area + rng.random())


def _add_ice_blob(ice, centre, radius, rng):
    """Raise ``ice`` (optical thickness) to an irregular, soft-edged, domed blob (1.2-2 in its core)."""
    reach = int(1.7 * radius)
    (r0, r1), (c0, c1) = [(max(0, int(c) - reach), min(n, int(c) + reach)) for c, n in zip(centre[::-1], ice.shape)]
    ys, xs = np.ogrid[r0:r1, c0:c1]
    dx, dy = xs - centre[0], ys - centre[1]
    r, theta = np.hypot(dx, dy), np.arctan2(dy, dx)
    k = np.arange(2, 6)[:, None, None]
    wobble = rng.uniform(0, 0.25, (4, 1, 1)) / k * np.cos(k * theta + rng.uniform(0, 2 * np.pi, (4, 1, 1)))
    edge = radius * (1 + wobble.sum(axis=0))
    dome = 1 + 0.5 * np.clip(1 - (r / edge) ** 2, 0, None)
    box = ice[r0:r1, c0:c1]
    np.maximum(box, rng.uniform(0.8, 1.3) * dome / (1 + np.exp((r - edge) / (0.04 * radius))), out=box)


def _junk(phi, centre, radius, rng):
    """Add an aggregate of 40-120 small dense Gaussians in 2-4 sub-clumps within ``radius`` of ``centre``."""
    n = rng.integers(40, 121)
    hubs = rng.normal(size=(rng.integers(2, 5), 2)) * 0.3 * radius
    offsets = hubs[rng.integers(0, len(hubs), n)] + rng.normal(size=(n, 2)) * 0.22 * radius
    inside = np.linalg.norm(offsets, axis=1) < 0.9 * radius
    sigma = rng.uniform(0.02, 0.06, n) * radius
    weight = rng.uniform(1, 3, n)
    _splat(phi, centre[0], centre[1], offsets[inside, 0], offsets[inside, 1], sigma[inside], weight[inside])


def _sample(mask, n, rng):
    """``n`` random points (x, y) on the pixels of ``mask``, with sub-pixel jitter; none if it is empty."""
    index = np.flatnonzero(mask)
    if not index.size:
        return np.zeros((0, 2))
    rows, cols = np.divmod(rng.choice(index, n), mask.shape[1])
    return np.round(np.stack([cols, rows], axis=1) + rng.uniform(-0.5, 0.5, (n, 2)), 2)


def _place(allowed, target, min_distance, rng):
    """Random sequential addition of up to ``target`` points on ``allowed``, pairwise >= ``min_distance``."""
    kept = np.zeros((target, 2))
    n = 0
    for point in _sample(allowed, 50 * target, rng):
        if n == target:
            break
        if n == 0 or np.min(np.sum((kept[:n] - point) ** 2, axis=1)) >= min_distance**2:
            kept[n], n = point, n + 1
    return kept[:n]


def _ctf(size, pixel_size, defocus):
    """Contrast transfer on the ``rfft2`` grid: weak phase plus amplitude contrast, B-factor damped."""
    wavelength = 12.2643 / np.sqrt(KV * 1e3 * (1 + 0.978466e-6 * KV * 1e3))
    k2 = _k2(size, pixel_size)
    chi = np.pi * wavelength * defocus * k2 - np.pi / 2 * CS_MM * 1e7 * wavelength**3 * k2**2
    transfer = np.sqrt(1 - AMPLITUDE_CONTRAST**2) * np.sin(chi) + AMPLITUDE_CONTRAST * np.cos(chi)
    return transfer * np.exp(-BFACTOR * k2 / 4)


def _k2(size, pixel_size):
    """Squared spatial frequency (1/Å²) on the ``rfft2`` grid of a square image."""
    return np.fft.fftfreq(size, pixel_size)[:, None] ** 2 + np.fft.rfftfreq(size, pixel_size)[None, :] ** 2
