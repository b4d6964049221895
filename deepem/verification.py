"""Particle verification between training rounds (DeepEM's "selection and verification").

Every candidate of a round (each local maximum of the score map) gets a verdict:

* ``confident``: scores at least halfway from the threshold to 1 -> a positive next round;
* ``outlier``: its surroundings (mean and std over two diameters) are a robust outlier among
  those of the micrograph's own confident picks (modified z-score over 3.5: ice, carbon,
  aggregates) -> a hard negative;
* ``low_score``: a local maximum scoring under half the threshold -> a negative (at most as
  many per micrograph as it has confident picks, the strongest first);
* ``uncertain``: anything else -> kept out of training, and out of the background sampling.

With a user's corrected coordinates for a micrograph, those decide instead: corrected
coordinates are positives (``confirmed`` when a candidate lies within half a diameter,
``added_by_user`` otherwise), and picks above the threshold with no corrected coordinate
nearby are ``removed_by_user`` negatives.
"""

import numpy as np
import pandas as pd

from deepem.io import manifest
from deepem.io.coords import MIC, SCORE, X, Y
from deepem.io.micrograph import read_micrograph
from deepem.patches import local_statistics, near
from deepem.progress import progress

VERDICT = "deepemVerdict"
POSITIVE = ("confident", "confirmed", "added_by_user")
NEGATIVE = ("outlier", "low_score", "removed_by_user")
USER_VERDICTS = ("confirmed", "added_by_user", "removed_by_user")  # from the user's corrections
OUTLIER_Z = 3.5  # Iglewicz & Hoaglin's cut for the modified z-score


def modified_z(values, reference):
    """|0.6745 (v - median) / MAD| of ``values`` against a ``reference`` sample."""
    med = np.median(reference)
    mad = np.median(np.abs(reference - med))
    return np.abs(0.6745 * (values - med) / (mad + 1e-6))


def _automatic(row, xy, score, threshold, particle_px):
    image, _ = read_micrograph(manifest.working_path(row))
    mean, std = local_statistics(image, int(2 * particle_px))
    work = np.rint(xy / [row["scale_x"], row["scale_y"]]).astype(int)
    work = np.clip(work, 0, [image.shape[1] - 1, image.shape[0] - 1])
    mean, std = mean[work[:, 1], work[:, 0]], std[work[:, 1], work[:, 0]]
    verdict = np.full(len(xy), "uncertain", dtype=object)
    confident = score >= threshold + 0.5 * (1 - threshold)
    reference = confident if confident.sum() >= 10 else score >= threshold
    if reference.sum() >= 10:
        outlier = (modified_z(mean, mean[reference]) > OUTLIER_Z) | (modified_z(std, std[reference]) > OUTLIER_Z)
    else:
        outlier = np.zeros(len(xy), bool)
    outlier &= score >= 0.5 * threshold
    verdict[confident & ~outlier] = "confident"
    verdict[outlier] = "outlier"
    low = np.flatnonzero(score < 0.5 * threshold)  # no outlier: at most as many as the confident picks left
    verdict[low[np.argsort(-score[low], kind="stable")][: int((verdict == "confident").sum())]] = "low_score"
    return xy, score, verdict


def _corrected(xy, score, threshold, corrected, radius):
    verdict = np.full(len(xy), "uncertain", dtype=object)
    close = near(xy, corrected, radius)
    verdict[(score >= threshold) & ~close] = "removed_by_user"
    verdict[close] = "uncertain"  # the corrected coordinate itself is the positive
    hit = near(corrected, xy, radius)
    added = np.where(hit, "confirmed", "added_by_user").astype(object)
    return (
        np.concatenate([xy, corrected]),
        np.concatenate([score, np.full(len(corrected), np.nan)]),
        np.concatenate([verdict, added]),
    )


def verify(candidates, table, threshold, particle_px, diameter_px, corrections=None):
    """A table of every candidate (and corrected coordinate) with its verdict.

    ``candidates``: ``{name: (xy original px, scores)}``; ``corrections``: ``{name: xy}``.
    """
    corrections = corrections or {}
    parts = []
    for name, row in progress(table.iterrows(), "verify", total=len(table)):
        xy, score = candidates.get(name, (np.zeros((0, 2)), np.zeros(0)))
        if name in corrections:
            xy, score, verdict = _corrected(xy, score, threshold, corrections[name], 0.5 * diameter_px)
        else:
            xy, score, verdict = _automatic(row, xy, score, threshold, particle_px)
        parts.append(pd.DataFrame({MIC: row["source"], X: xy[:, 0], Y: xy[:, 1], SCORE: score, VERDICT: verdict}))
    return pd.concat(parts, ignore_index=True)
