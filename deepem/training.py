"""Training the DeepEM network on a round's patches, seeded, resumable, with a threshold choice.

``faithful``: sigmoid units, mean pooling, squared error (1/2 sum e^2 / N), plain SGD at
learning rate 1, batch 50, 20 epochs, every patch in its 4 rotations (the paper).
``modern``: batch norm + ReLU, max pooling, binary cross-entropy, Adam, a random one of the
8 rotations/flips of each patch per epoch; the trained weights are an exponential moving average
of the weights over about the last fifth of the updates (see :func:`weight_average`).
"""

import hashlib
import json
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from torch.optim.swa_utils import AveragedModel

from deepem.errors import DeepEMError
from deepem.metrics import summarise
from deepem.model import DeepEMNet


@dataclass(frozen=True)
class Recipe:
    epochs: int
    batch: int
    lr: float


RECIPES = {"faithful": Recipe(epochs=20, batch=50, lr=1.0), "modern": Recipe(epochs=30, batch=64, lr=1e-3)}
AVERAGE_SPAN = 0.2  # modern: the weight average's time constant, as a share of a training run's updates


def weight_average(net, updates):
    """An exponential moving average of ``net``'s weights and batch-norm statistics, for ``modern``.

    Its time constant is ``AVERAGE_SPAN`` of the run's ``updates``, so it spans the same share of
    training for 10 patches or 100,000; the start weights keep a share of e^-5 (under 1 %). Adam's
    last iterate is noisy; the average ranks held-out particles better (bench/RESULTS.md, finding 14).
    """
    keep = 1 - 1 / max(1.0, AVERAGE_SPAN * updates)

    @torch.no_grad()
    def update(averaged, current, _):
        for a, c in zip(averaged, current):
            if a.is_floating_point():
                a.lerp_(c, 1 - keep)
            else:  # batch norm's update counter
                a.copy_(c)

    return AveragedModel(net, multi_avg_fn=update, use_buffers=True)


def dihedral(x, k):
    """The k-th of the 8 rotations/flips of patches ``(N, 1, B, B)``."""
    x = torch.rot90(x, k % 4, dims=(2, 3))
    return torch.flip(x, dims=(3,)) if k >= 4 else x


def load_patches(path):
    """``(x, y, val, meta)`` of a patches file of 'deepem extract'; an error naming it when it is not one."""
    try:
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            x = torch.from_numpy(data["x"].astype(np.float32))[:, None]
            y = torch.from_numpy(data["y"].astype(np.float32))
            val = torch.from_numpy(data["val"])
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise DeepEMError(f"{path}: not a readable patches file of 'deepem extract' ({exc}); run extract again") from None
    if not torch.isfinite(x).all():
        raise DeepEMError(
            f"{path}: {int((~torch.isfinite(x)).sum())} patch pixels are not finite numbers; preprocess and extract again"
        )
    return x, y, val, meta


@torch.no_grad()
def rotation_averaged(net, x, batch=1024):
    """Mean sigmoid score over the 4 rotations of each patch, as picking scores them."""
    net.eval()
    out = []
    for i in range(0, len(x), batch):
        chunk = x[i : i + batch]
        out.append(sum(torch.sigmoid(net(torch.rot90(chunk, k, dims=(2, 3)))) for k in range(4)) / 4)
    return torch.cat(out) if out else torch.zeros(0)


def best_f1_threshold(scores, labels, positives=None, fraction=1.0, floor=0.0):
    """The score threshold maximising F1 on labelled patches, with its F1, precision and recall.

    ``labels`` marks the true items; recall counts them out of ``positives`` (default: their
    number), e.g. the labels that score maxima were matched to, some of which no maximum found.
    ``fraction`` < 1: the labels are that share of the particles, picked at random, so each label
    hit stands for 1 / ``fraction`` particles (precision estimated as hits / (fraction x items)).
    ``floor``: the least score an item can have (score maxima are taken above one), so a threshold
    that keeps every item lies between the lowest and it.
    """
    if not len(scores):
        raise ValueError("no scores to choose a threshold from")
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], np.asarray(labels, float)[order]
    tp = np.cumsum(y)
    fp = np.cumsum(1 - y)
    precision = np.minimum(1.0, tp / (fraction * (tp + fp)))
    recall = tp / max(1, y.sum() if positives is None else positives)
    f1 = np.where(tp > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)
    last = np.r_[s[1:] != s[:-1], True]  # only cut between distinct scores
    i = int(np.argmax(np.where(last, f1, -1)))
    below = s[i + 1] if i + 1 < len(s) else floor
    threshold = 0.5 * (s[i] + below)  # midway between the last score kept and the next one dropped
    return {"threshold": float(threshold), "f1": float(f1[i]), "precision": float(precision[i]), "recall": float(recall[i])}


def label_fraction(scores, hits):
    """The share of the particles that carry a label, estimated from score maxima matched to labels.

    Above the median score of the label hits nearly every maximum is a particle, so the share
    of the maxima there that hit a label estimates the share of all particles that are labelled.
    """
    if not np.any(hits):
        raise ValueError("no maximum hits a label: the labelled share cannot be estimated")
    order = np.argsort(-np.asarray(scores), kind="stable")
    h = np.cumsum(np.asarray(hits, float)[order])
    k = int(np.searchsorted(h, 0.5 * h[-1]))  # the maxima down to the median hit
    return float(h[k] / (k + 1))


def batch_starts(n, batch, mode):
    """Where each batch of an epoch's ``n`` shuffled patches starts: the last may be short, but not a
    single patch in ``modern`` mode, whose batch norm needs two."""
    starts = range(0, n, batch)
    return starts if mode == "faithful" or n % batch != 1 else starts[:-1]


def _loss(net, logits, y):
    if net.mode == "faithful":
        return 0.5 * ((torch.sigmoid(logits) - y) ** 2).mean()
    return F.binary_cross_entropy_with_logits(logits, y)


def _fingerprint(arch, mode, seed, epochs, tensors, start, device):
    """What a checkpoint must have been trained on to be resumed: the settings, the kind of device
    (CPU and CUDA compute differently), the patches and labels, and the weights and history a
    continued training starts from."""
    settings = (arch, mode, seed, epochs, len(start[1]) if start else 0, torch.device(device).type)
    digest = hashlib.blake2b(repr(settings).encode(), digest_size=16)
    weights = list(start[0].state_dict().values()) if start else []
    for tensor in [*tensors, *weights]:
        digest.update(tensor.detach().cpu().contiguous().numpy())
    return digest.hexdigest()


def train(arch, mode, x, y, val, seed, device, epochs=None, checkpoint=None, log=print, start=None):
    """Train for ``epochs``; returns ``(net, history)``. ``checkpoint`` (a path) makes it resumable.

    ``start`` = ``(net, history)`` continues training that net (with a fresh optimiser) instead
    of a new one, numbering epochs on from its history.
    """
    recipe = RECIPES[mode]
    epochs = epochs or recipe.epochs
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    net = start[0] if start else DeepEMNet(arch, mode).to(device)
    if mode == "faithful":
        optimiser = torch.optim.SGD(net.parameters(), lr=recipe.lr)
    else:
        optimiser = torch.optim.Adam(net.parameters(), lr=recipe.lr, weight_decay=1e-4)
    xt, yt = x[~val], y[~val]
    if mode == "faithful":  # the paper's explicit 4-fold rotation set
        xt = torch.cat([torch.rot90(xt, k, dims=(2, 3)) for k in range(4)])
        yt = yt.repeat(4)
    xv, yv = x[val].to(device), y[val]
    generator = torch.Generator().manual_seed(seed)
    history = list(start[1]) if start else []
    batches = batch_starts(len(yt), recipe.batch, mode)
    average = weight_average(net, epochs * len(batches)) if mode == "modern" else None
    start_epoch, epochs = len(history), len(history) + epochs
    run = _fingerprint(arch, mode, seed, epochs, (x, y, val), start, device) if checkpoint is not None else None
    state = None
    if checkpoint is not None and checkpoint.exists():  # on the CPU first: it may come from a GPU node
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as exc:  # a file cut short by a crash, or not a checkpoint: torch raises many types
            log(f"{checkpoint} is unreadable ({type(exc).__name__}): starting afresh")
    if state is not None and state.get("run") != run:
        log(f"{checkpoint} is from a training run with other settings, patches or device: starting afresh")
        state = None
    if state is not None:
        net.load_state_dict(state["net"])
        optimiser.load_state_dict(state["optimiser"])
        if average is not None:
            average.load_state_dict(state["average"])
        generator.set_state(state["generator"])
        history, start_epoch = state["history"], state["epoch"]
        log(f"resumed from {checkpoint} after epoch {start_epoch}")
    for epoch in range(start_epoch, epochs):
        t0 = time.time()
        net.train()
        order = torch.randperm(len(yt), generator=generator)
        turns = torch.randint(0, 8, (len(yt),), generator=generator)
        total, seen = 0.0, 0
        for i in batches:
            idx = order[i : i + recipe.batch]
            xb = xt[idx]
            if mode == "modern":
                xb = torch.cat([dihedral(xb[turns[idx] == k], k) for k in range(8)])
                yb = torch.cat([yt[idx][turns[idx] == k] for k in range(8)])
            else:
                yb = yt[idx]
            loss = _loss(net, net(xb.to(device)), yb.to(device))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            if average is not None:
                average.update_parameters(net)
            value = loss.item()
            if not math.isfinite(value):
                raise DeepEMError(f"epoch {epoch + 1}: the training loss is not a finite number; check the patches")
            total += value * len(idx)
            seen += len(idx)
        trained = net if average is None else average.module
        scores = rotation_averaged(trained, xv).cpu()
        val_loss = float(_loss(net, torch.logit(scores.clamp(1e-6, 1 - 1e-6)), yv))
        val_acc = float(((scores >= 0.5).float() == yv).float().mean()) if len(yv) else float("nan")
        val_ap = summarise(yv.numpy() > 0.5, scores.numpy(), int(yv.sum()))["average_precision"] if len(yv) else float("nan")
        history.append({
            "epoch": epoch + 1, "train_loss": total / max(seen, 1), "val_loss": val_loss, "val_accuracy": val_acc,
            "val_ap": val_ap,
        })
        log(
            f"epoch {epoch + 1}/{epochs}: train loss {total / max(seen, 1):.4f}, "
            f"val loss {val_loss:.4f}, val accuracy {val_acc:.3f}, val AP {val_ap:.3f} ({time.time() - t0:.1f} s)"
        )
        if checkpoint is not None:
            tmp = checkpoint.with_name(checkpoint.name + ".tmp")
            torch.save(
                {"net": net.state_dict(), "optimiser": optimiser.state_dict(), "generator": generator.get_state(),
                 "history": history, "epoch": epoch + 1, "average": None if average is None else average.state_dict(),
                 "run": run},
                tmp,
            )
            tmp.replace(checkpoint)
    return (net if average is None else average.module).eval(), history
