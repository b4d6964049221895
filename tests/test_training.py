import numpy as np
import torch

from deepem.model import design
from deepem.training import best_f1_threshold, mixture_threshold, train


def _toy_patches(n=320, box=40, seed=0):
    """Dark discs (particles) versus noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:box, :box] - box // 2
    disc = (x * x + y * y < 100).astype(np.float32)
    labels = (np.arange(n) % 2).astype(np.float32)
    patches = rng.normal(size=(n, box, box)).astype(np.float32) - 2.0 * labels[:, None, None] * disc
    val = np.zeros(n, bool)
    val[::5] = True
    return torch.from_numpy(patches)[:, None], torch.from_numpy(labels), torch.from_numpy(val)


def test_training_is_seeded_and_deterministic_and_learns():
    x, y, val = _toy_patches()
    arch = design(40)
    runs = [train(arch, "modern", x, y, val, seed=5, device="cpu", epochs=8, log=lambda *_: None) for _ in range(2)]
    for a, b in zip(runs[0][0].state_dict().values(), runs[1][0].state_dict().values()):
        assert torch.equal(a, b)
    assert runs[0][1][-1]["val_accuracy"] >= 0.9


def test_faithful_mode_trains():
    x, y, val = _toy_patches()
    net, history = train(design(40), "faithful", x, y, val, seed=1, device="cpu", epochs=3, log=lambda *_: None)
    assert len(history) == 3 and net.mode == "faithful"


def test_resume_from_checkpoint_matches_uninterrupted(tmp_path):
    x, y, val = _toy_patches()
    arch, quiet = design(40), (lambda *_: None)
    full, _ = train(arch, "modern", x, y, val, seed=2, device="cpu", epochs=4, log=quiet)
    ckpt = tmp_path / "c.pt"
    train(arch, "modern", x, y, val, seed=2, device="cpu", epochs=2, checkpoint=ckpt, log=quiet)  # "killed" after 2
    resumed, history = train(arch, "modern", x, y, val, seed=2, device="cpu", epochs=4, checkpoint=ckpt, log=quiet)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_best_f1_threshold_cuts_between_the_classes():
    scores = np.array([0.95, 0.9, 0.8, 0.3, 0.2, 0.1])
    labels = np.array([1, 1, 1, 0, 0, 0])
    choice = best_f1_threshold(scores, labels)
    assert choice["f1"] == 1.0 and choice["threshold"] == 0.55


def test_best_f1_threshold_counts_recall_out_of_the_given_positives():
    scores = np.array([0.9, 0.8, 0.6, 0.4])
    hits = np.array([1, 1, 0, 1])
    assert best_f1_threshold(scores, hits)["recall"] == 1.0
    choice = best_f1_threshold(scores, hits, positives=6)  # 3 labels no maximum found
    assert choice["recall"] == 0.5 and choice["precision"] == 0.75 and choice["threshold"] == 0.2


def test_mixture_threshold_splits_background_from_particles():
    rng = np.random.default_rng(0)
    background = rng.normal(-4, 1.0, 900)  # logits of maxima: many weak background maxima
    particles = rng.normal(3, 1.0, 100)  # fewer, strong particle maxima
    t = mixture_threshold(1 / (1 + np.exp(-np.r_[background, particles])))
    logit = np.log(t / (1 - t))
    assert -2 < logit < 1.5
    assert (particles > logit).mean() > 0.95 and (background < logit).mean() > 0.95
    # the split follows the modes: shifting every logit by +2 shifts the threshold's logit by about +2
    shifted = mixture_threshold(1 / (1 + np.exp(-(np.r_[background, particles] + 2))))
    assert abs(np.log(shifted / (1 - shifted)) - logit - 2) < 0.2
