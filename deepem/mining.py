"""What a trained net picks on its own labelled micrographs: hard negatives and calibration maxima.

On a labelled micrograph where every particle is labelled, a high-scoring local maximum far
from every label is a false positive. Those are the most informative negatives (DeepEM's
"rejected picks"); a second training stage on them sharpens the net. The maxima in the
held-out stripes (never trained on, never mined) matched to their labels set the threshold,
as picking will meet it. Where labels are incomplete, all maxima of the labelled micrographs
matched to their labels set it instead (see ``training.label_fraction``).
"""

import numpy as np
from scipy.spatial import cKDTree

from deepem.background import kept, values_at
from deepem.io import manifest
from deepem.io.micrograph import read_micrograph
from deepem.metrics import pairs
from deepem.patches import extract, in_stripe, typical_count
from deepem.picking import CANDIDATE_FLOOR, SPACING, candidates
from deepem.progress import progress


def _maxima(net, table, names, particle_px, device, floor, what, spacing):
    """``(name, image, xy, scores)`` per named micrograph: its local maxima >= ``floor``, ``spacing``
    diameters apart (picking's spacing) and at least half a diameter inside the image."""
    for name in progress(sorted(names), what):
        image, _ = read_micrograph(manifest.working_path(table.loc[name]))
        yield name, image, *candidates(net, image, spacing * particle_px, 0.5 * particle_px, floor, device=device)


def hard_negatives(net, table, positives, particle_px, device, holdout, per_positive=1.0, floor=0.1, spacing=SPACING):
    """Patches of the strongest maxima >= ``floor`` at least 0.75 diameter from every positive.

    At most ``per_positive`` x (labelled particles) per micrograph, strongest first (on a micrograph
    whose label file is empty, no particle there, x the mean over micrographs with labels); maxima
    within half a diameter of the edge are left out, as picking leaves them out, and so are
    those in the micrograph's held-out stripe (``holdout``: ``{name: (x0, x1)}``).
    """
    box = net.arch.box
    patches = []
    typical = typical_count(positives)
    for name, image, xy, _ in _maxima(net, table, positives, particle_px, device, floor, "mine hard negatives", spacing):
        pos = positives[name]
        keep = (cKDTree(pos).query(xy)[0] >= 0.75 * particle_px) if len(xy) else np.zeros(0, bool)
        if name in holdout:
            keep &= ~in_stripe(xy, holdout[name])
        chosen = xy[keep][: int(np.ceil(per_positive * (len(pos) or typical)))]  # strongest first
        patches.append(extract(image, chosen, box))
    return np.concatenate(patches) if patches else np.zeros((0, box, box), np.float32)


def label_hits(
    net, table, positives, particle_px, device, holdout=None, floor=CANDIDATE_FLOOR, background=None, spacing=SPACING
):
    """``(hits, scores, n_labels)`` of the maxima on labelled micrographs, pooled over them.

    Maxima are matched one-to-one to the labels within half a diameter, as ``deepem evaluate``
    matches picks to truth. With ``background`` (``({name: background maps}, floor, ceiling)``)
    maxima on surroundings beyond those bounds are left out, as picking drops them (see
    :mod:`deepem.background`). With ``holdout`` (``{name: (x0, x1)}``) only the maxima in each
    micrograph's held-out stripe count, and micrographs without one are skipped: a label up to
    half a diameter outside the stripe may take a maximum inside it, and then counts; unmatched,
    it does not.
    """
    radius = 0.5 * particle_px
    hits, scores, n_labels = [], [], 0
    names = [n for n in positives if holdout is None or n in holdout]
    for name, _, xy, score in _maxima(net, table, names, particle_px, device, floor, "score labelled micrographs", spacing):
        pos = positives[name]
        if background is not None:
            maps, floor_level, ceiling = background
            light = kept(values_at(maps[name], xy, particle_px), floor_level, ceiling)
            xy, score = xy[light], score[light]
        if holdout is None:
            inside, near = np.ones(len(xy), bool), pos
        else:
            stripe = holdout[name]
            inside, near = in_stripe(xy, stripe), pos[in_stripe(pos, stripe, radius)]
        rows, cols = pairs(xy[inside], near, radius)
        hit = np.zeros(int(inside.sum()), bool)
        hit[rows] = True
        hits.append(hit)
        scores.append(score[inside])
        if holdout is None:
            n_labels += len(near)
        else:
            n_labels += int(in_stripe(near, stripe).sum() + (~in_stripe(near[cols], stripe)).sum())
    if not hits:
        return np.zeros(0, bool), np.zeros(0), 0
    return np.concatenate(hits), np.concatenate(scores), n_labels
