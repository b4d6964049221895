"""Fully convolutional picking: score map, 4-rotation averaging, tiling, shift averaging, local maxima.

Geometry: the working image is padded by ``box // 2`` (reflect) on the top and left, so the
box whose top-left corner is at padded ``(3i, 3j)`` spans working pixels ``3i - box // 2`` to
``3i - box // 2 + box - 1``: its middle is at ``3i + CENTRE``, where ``CENTRE = (box - 1) / 2 -
box // 2`` is -0.5 for an even box. Scores are the mean over the box's 4 rotations, and training
uses every rotation and flip of its patches, so a box scores a particle the same on both sides of
its middle: score-map cell ``(i, j)`` scores a particle centred at working ``x = 3j + CENTRE,
y = 3i + CENTRE``. (Before 0.11.0 picks were reported at ``3j``, half a working pixel right of
and below the particle.)
"""

import numpy as np
import torch
from scipy.ndimage import gaussian_filter, maximum_filter
from scipy.spatial import cKDTree

from deepem.model import STRIDE
from deepem.patches import box_middle

CANDIDATE_FLOOR = 0.05  # lowest score of a candidate: what precision-recall analysis and calibration see
SPACING = 0.5  # default distance between picks in diameters, and the most label_spacing allows
CLOSEST_SPACING = 0.4  # the least label_spacing allows, in diameters
SPACING_QUANTILE = 0.01  # label_spacing: the share of labelled particles whose neighbour may sit closer


def pad_for_scoring(image, box):
    """Reflect-pad so every working pixel on the stride grid is a box centre; see the module doc."""
    h, w = image.shape
    top = box // 2
    rows, cols = -(-h // STRIDE), -(-w // STRIDE)
    bottom = STRIDE * (rows - 1) + box - h - top
    right = STRIDE * (cols - 1) + box - w - top
    return np.pad(image, ((top, bottom), (top, right)), mode="reflect"), (rows, cols)


TILE = 200  # score-map tile edge in cells, see score_map


def score_map(net, image, tile=TILE, device="cpu"):
    """Score map (stride 3) of a working image: every box's mean sigmoid score over its 4 rotations.

    Computed in overlapping tiles of ``tile`` x ``tile`` map cells; tiles share ``box - 3`` input
    pixels, so the result is independent of the tile size. Tiles bound the memory for any
    micrograph size, and moderate ones are faster too (a 2,600 px working image on 2 CPU cores:
    1.1 s with 200-cell tiles, 1.8 s with 768). The sigmoid is taken in float64 so that strong
    picks near 1 keep distinct, rankable scores.
    """
    box = net.arch.box
    padded, (rows, cols) = pad_for_scoring(image, box)
    full = torch.from_numpy(np.ascontiguousarray(padded))
    out = np.empty((rows, cols), dtype=np.float64)
    with torch.no_grad():
        for r0 in range(0, rows, tile):
            r1 = min(rows, r0 + tile)
            for c0 in range(0, cols, tile):
                c1 = min(cols, c0 + tile)
                part = full[STRIDE * r0 : STRIDE * (r1 - 1) + box, STRIDE * c0 : STRIDE * (c1 - 1) + box]
                logits = net.rotation_logits(part[None, None].to(device))
                out[r0:r1, c0:c1] = torch.sigmoid(logits.double()).mean(1)[0].cpu().numpy()
    return out


SHIFT_SIGMA = 0.5  # modern: the shift average's Gaussian sigma in score-map cells (1.5 working px), see smoothed


def smoothed(scores, mode):
    """The score map averaged over small shifts of the box, as it is over rotations: in ``modern``
    mode a Gaussian of ``SHIFT_SIGMA`` cells (1.5 working px, a twentieth of a particle diameter
    at the default 32 px); ``faithful`` keeps the paper's map as it is.

    A particle scores high over every box the net tolerates a small shift of; a spike that one box
    alone scores high, or a second maximum at a particle's edge, scores lower once averaged. On
    held-out training micrographs this ranks picks better (bench/RESULTS.md, finding 15).
    """
    return gaussian_filter(scores, SHIFT_SIGMA, mode="nearest") if mode == "modern" else scores


def _subcell_offset(minus, centre, plus):
    """Offset of a parabola's vertex through three samples, in cells, within +/- 0.5."""
    denom = minus - 2 * centre + plus
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.where(denom < 0, 0.5 * (minus - plus) / denom, 0.0)
    return np.clip(off, -0.5, 0.5)


def find_peaks(scores, min_distance, floor=0.0):
    """Local maxima of a stride-3 score map at least ``min_distance`` working px apart.

    Candidates are 3 x 3 local maxima scoring >= ``floor``, placed to sub-cell precision by a
    parabola through each and its neighbours (the map's border reflected); greedy suppression in
    order of decreasing score keeps those with no stronger kept peak closer than ``min_distance``.
    Returns ``(xy, score)`` with ``xy`` in working pixels.
    """
    local = (scores == maximum_filter(scores, size=3, mode="constant", cval=-np.inf)) & (scores >= floor)
    rows, cols = np.nonzero(local)
    order = np.lexsort((cols, rows, -scores[rows, cols]))  # by score, ties in raster order
    r, c = rows[order], cols[order]
    val = scores[r, c]
    padded = np.pad(scores, 1, mode="reflect")
    dx = _subcell_offset(padded[r + 1, c], padded[r + 1, c + 1], padded[r + 1, c + 2])
    dy = _subcell_offset(padded[r, c + 1], padded[r + 1, c + 1], padded[r + 2, c + 1])
    xy = np.stack([(c + dx) * STRIDE, (r + dy) * STRIDE], axis=1)
    tree = cKDTree(xy) if len(xy) else None
    suppressed = np.zeros(len(xy), bool)
    keep = []
    for i in range(len(xy)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed[tree.query_ball_point(xy[i], min_distance - 1e-9)] = True
    keep = np.asarray(keep, dtype=int)
    xy = xy[keep].reshape(-1, 2)
    return xy, val[keep]


def candidates(net, image, min_distance_px, edge_px, floor, tile=TILE, device="cpu"):
    """Every local maximum >= ``floor`` of a working image's :func:`smoothed` score map, at least
    ``edge_px`` inside it.

    ``(xy, scores)`` in working pixels, strongest first (see :func:`find_peaks`). Suppression runs
    before the edge cut (and before pick's background bounds): a dropped maximum still suppresses
    its weaker neighbours, which lie within ``min_distance`` of it and so on the same object.
    """
    scores = smoothed(score_map(net, image, tile=tile, device=device), net.mode)
    xy, score = find_peaks(scores, min_distance_px, floor=floor)
    xy += box_middle(net.arch.box)
    h, w = image.shape
    inside = (xy >= edge_px).all(1) & (xy[:, 0] <= w - 1 - edge_px) & (xy[:, 1] <= h - 1 - edge_px)
    return xy[inside], score[inside]


def label_spacing(labelled, particle_px):
    """Distance between picks, in diameters, that lets through pairs as close as the labels hold.

    The labelled particles' nearest-neighbour distances on each micrograph, pooled: their
    1st percentile, within [0.4, 0.5] diameter. Densely packed particles that the user labelled
    closer than half a diameter apart then stay pickable side by side; partial labels, whose
    neighbours are sparser, and spread-out particles keep the default 0.5. Labels closer than
    0.4 diameter (a particle labelled twice, say) count like any pair: if over 1 % of the labels
    have one, the spacing is 0.4. ``labelled`` is ``{name: (N, 2) working-pixel centres}``.
    """
    gaps = [cKDTree(xy).query(xy, k=2)[0][:, 1] for xy in labelled.values() if len(xy) > 1]
    if not gaps:
        return SPACING
    gap = float(np.quantile(np.concatenate(gaps), SPACING_QUANTILE)) / particle_px
    return float(np.clip(gap, CLOSEST_SPACING, SPACING))
