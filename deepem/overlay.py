"""Pick overlays: a micrograph, downsampled for the screen, with its picks circled.

Coordinates are in deepem's convention (``deepem.io.coords``): centres in pixels of the original
micrograph, x = column, y = row from the top-left. The image is drawn with ``extent`` in those
pixels, so circles are placed in the micrograph's own frame whatever the downsampling.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import PatchCollection  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402
from scipy.ndimage import gaussian_filter  # noqa: E402

from deepem.io.atomic import atomic_path  # noqa: E402

CMAP = "viridis"  # picks, by score
UNSCORED = plt.get_cmap(CMAP)(0.6)  # picks without a score (none in the file, or NaN)
REJECTED = "red"  # candidates below the threshold: a colour viridis does not have


def binning(shape, max_size):
    """The smallest integer factor that brings the longer side of ``shape`` to ``max_size`` or less."""
    return max(1, int(np.ceil(max(shape) / max_size)))


def downsample(image, max_size):
    """Block-average ``image`` by ``binning``; returns ``(small, factor)``. Rows and columns that
    do not fill a block are dropped from the bottom and right edges."""
    factor = binning(image.shape, max_size)
    h, w = image.shape[0] // factor, image.shape[1] // factor
    small = image[: h * factor, : w * factor].reshape(h, factor, w, factor).mean(axis=(1, 3))
    return small, factor


def draw(ax, image, picks, scores=None, rejected=(), radius=None, max_size=1024):
    """Draw ``image`` and circles of ``radius`` original pixels on ``ax``; returns the picks'
    collection (coloured by ``scores`` in [0, 1], or in one colour without scores)."""
    small, factor = downsample(np.asarray(image, np.float32), max_size)
    small = gaussian_filter(small, 1.0)  # one screen pixel: tames the shot noise
    low, high = np.percentile(small, [1, 99])
    height, width = small.shape[0] * factor, small.shape[1] * factor
    ax.imshow(small, cmap="gray", vmin=low, vmax=high, extent=(-0.5, width - 0.5, height - 0.5, -0.5))
    radius = radius or max(image.shape) / 50
    circles = PatchCollection(
        [Circle(xy, radius) for xy in np.asarray(picks, float).reshape(-1, 2)], facecolor="none", linewidth=1.5
    )
    if scores is None:
        circles.set_edgecolor(UNSCORED)
    else:
        circles.set_array(np.asarray(scores, float))
        circles.set_cmap(plt.get_cmap(CMAP).with_extremes(bad=UNSCORED))  # a NaN score: as unscored
        circles.set_norm(Normalize(0, 1))
    ax.add_collection(circles, autolim=False)
    ax.add_collection(
        PatchCollection(
            [Circle(xy, radius) for xy in np.asarray(rejected, float).reshape(-1, 2)],
            facecolor="none", edgecolor=REJECTED, linewidth=1.0, linestyle=":",
        ),
        autolim=False,
    )
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    return circles


def save_overlay(path, image, picks, scores=None, rejected=(), radius=None, threshold=None, title="", max_size=1024):
    """Write the overlay PNG (atomically): the drawing at one screen pixel per downsampled pixel,
    a legend, a title and, with scores, a colour bar (the threshold marked on it)."""
    dpi, top, bar = 100, 24, 90 if scores is not None else 0  # margins in pixels: title, colour bar
    h, w = np.array(image.shape) // binning(image.shape, max_size)
    fig = plt.figure(figsize=((w + bar) / dpi, (h + top) / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, w / (w + bar), h / (h + top)))
    circles = draw(ax, image, picks, scores, rejected, radius, max_size)
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    handles = [Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor=UNSCORED,
                      label=f"{len(picks)} picks")]
    if len(rejected):
        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor=REJECTED,
                              label=f"{len(rejected)} rejected"))
    ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.8)
    if scores is not None:
        cax = fig.add_axes(((w + 12) / (w + bar), 0.05 * h / (h + top), 16 / (w + bar), 0.9 * h / (h + top)))
        colour_bar = fig.colorbar(circles, cax=cax, label="score")
        if threshold is not None:
            colour_bar.ax.axhline(threshold, color=REJECTED, linewidth=3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
