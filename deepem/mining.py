"""What a trained net picks on its own labelled micrographs: hard negatives and calibration maxima.

On a labelled micrograph where every particle is labelled, a high-scoring local maximum far
from every label is a false positive. Those are the most informative negatives (DeepEM's
"rejected picks"); a second training stage on them sharpens the net and the threshold.
Where labels are incomplete, the scores of all maxima calibrate the threshold instead.
"""

import numpy as np
from scipy.spatial import cKDTree

from deepem.io import manifest
from deepem.io.micrograph import read_micrograph
from deepem.patches import extract
from deepem.picking import CANDIDATE_FLOOR, candidates
from deepem.progress import progress


def _maxima(net, table, names, particle_px, device, floor, what):
    """``(name, image, xy, scores)`` per named micrograph: its local maxima >= ``floor``, half a
    diameter apart (picking's default spacing) and at least half a diameter inside the image."""
    for name in progress(sorted(names), what):
        image, _ = read_micrograph(manifest.working_path(table.loc[name]))
        yield name, image, *candidates(net, image, 0.5 * particle_px, 0.5 * particle_px, floor, device=device)


def maxima_scores(net, table, names, particle_px, device, floor=CANDIDATE_FLOOR):
    """Scores of every local maximum >= ``floor`` on the named micrographs."""
    scores = [s for _, _, _, s in _maxima(net, table, names, particle_px, device, floor, "score labelled micrographs")]
    return np.concatenate(scores) if scores else np.zeros(0)


def hard_negatives(net, table, positives, particle_px, device, per_positive=1.0, floor=0.1):
    """Patches of the strongest maxima >= ``floor`` at least 0.75 diameter from every positive.

    At most ``per_positive`` x (labelled particles) per micrograph, strongest first; maxima
    within half a diameter of the edge are left out, as picking leaves them out.
    """
    box = net.arch.box
    patches = []
    for name, image, xy, _ in _maxima(net, table, positives, particle_px, device, floor, "mine hard negatives"):
        pos = positives[name]
        keep = (cKDTree(pos).query(xy)[0] >= 0.75 * particle_px) if len(xy) else np.zeros(0, bool)
        chosen = xy[keep][: int(np.ceil(per_positive * len(pos)))]  # strongest first
        patches.append(extract(image, chosen, box))
    return np.concatenate(patches) if patches else np.zeros((0, box, box), np.float32)
