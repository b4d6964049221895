"""Picking accuracy: one-to-one Hungarian matching of picks to truth within a distance.

A pick is a true positive when it is matched to a truth particle no farther than
``0.5 x particle diameter``. Average precision ranks all picks by score with the number of
truth particles as the recall denominator; best F1 is the maximum over score thresholds.
"""

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist


def pairs(picks, truth, radius):
    """``(pick indices, truth indices)`` matched one-to-one within ``radius``, total distance minimal."""
    if not (len(picks) and len(truth)):
        return np.zeros(0, int), np.zeros(0, int)
    d = cdist(picks, truth)
    rows, cols = linear_sum_assignment(np.where(d <= radius, d, 1e6))
    close = d[rows, cols] <= radius
    return rows[close], cols[close]


def match(picks, truth, radius):
    """Boolean array: which picks are matched one-to-one to a truth particle within ``radius``."""
    hit = np.zeros(len(picks), bool)
    hit[pairs(picks, truth, radius)[0]] = True
    return hit


def summarise(hits, scores, n_truth):
    """Precision, recall, F1, average precision and best F1 from per-pick hits and scores.

    A threshold keeps every pick scoring at least it, so picks of equal score are kept or dropped
    together: AP sums, over the distinct scores, the recall gained times the precision there
    (scikit-learn's definition), and best F1 is the best at a threshold one can set.
    """
    hits, scores = np.asarray(hits, bool), np.asarray(scores, float)
    tp = int(hits.sum())
    n = len(hits)
    precision = tp / n if n else 0.0
    recall = tp / n_truth if n_truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    last = np.r_[s[1:] != s[:-1], True] if n else np.zeros(0, bool)  # each distinct score's last pick
    ctp = np.cumsum(hits[order])[last]
    prec_k = ctp / (np.flatnonzero(last) + 1)
    rec_k = ctp / max(n_truth, 1)
    ap = float(np.sum(np.diff(ctp, prepend=0) * prec_k) / max(n_truth, 1)) if n else 0.0
    f1_k = np.where(ctp > 0, 2 * prec_k * rec_k / np.maximum(prec_k + rec_k, 1e-12), 0.0)
    best = int(np.argmax(f1_k)) if n else 0
    return {
        "picks": n, "truth": int(n_truth), "true_positives": tp,
        "precision": precision, "recall": recall, "f1": f1, "average_precision": ap,
        "best_f1": float(f1_k[best]) if n else 0.0, "best_f1_threshold": float(s[last][best]) if n else None,
    }
