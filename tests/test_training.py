import numpy as np
import pytest
import torch

from deepem.model import DeepEMNet
from deepem.topology import design
from deepem.training import batch_starts, best_f1_threshold, label_fraction, train, weight_average


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
    aps = [h["val_ap"] for h in runs[0][1]]  # the ranking of the held-out patches, per epoch
    assert aps[-1] >= 0.95 and all(0 <= a <= 1 for a in aps)


def test_faithful_mode_trains():
    x, y, val = _toy_patches()
    net, history = train(design(40), "faithful", x, y, val, seed=1, device="cpu", epochs=3, log=lambda *_: None)
    assert len(history) == 3 and net.mode == "faithful"


@pytest.mark.parametrize("mode", ["modern", "faithful"])
def test_fewer_patches_than_a_batch_still_train(mode):
    """Before 0.12.0 the last, short batch of each epoch was left out, so a training set smaller than
    one batch (64 patches in modern mode) made no update at all and saved its random start."""
    x, y, val = _toy_patches(n=40)
    torch.manual_seed(3)
    start = DeepEMNet(design(40), mode)  # what training starts from with seed 3
    net, history = train(design(40), mode, x, y, val, seed=3, device="cpu", epochs=2, log=lambda *_: None)
    assert history[-1]["train_loss"] > 0
    assert not all(torch.equal(a, b) for a, b in zip(start.state_dict().values(), net.state_dict().values()))


def test_every_patch_is_in_a_batch_but_batch_norm_never_gets_one_alone():
    assert list(batch_starts(130, 64, "modern")) == [0, 64, 128]
    assert list(batch_starts(129, 64, "modern")) == [0, 64]  # the 129th patch waits for the next shuffle
    assert list(batch_starts(129, 50, "faithful")) == [0, 50, 100]
    assert list(batch_starts(101, 50, "faithful")) == [0, 50, 100]


class Killed(Exception):
    pass


def _kill_at(epoch):
    """A log that stops training as epoch ``epoch`` ends, before its checkpoint is written."""

    def log(message):
        if message.startswith(f"epoch {epoch}/"):
            raise Killed

    return log


@pytest.mark.parametrize("mode", ["modern", "faithful"])
def test_resume_from_checkpoint_matches_uninterrupted(tmp_path, mode):
    x, y, val = _toy_patches()
    arch, quiet = design(40), (lambda *_: None)
    full, _ = train(arch, mode, x, y, val, seed=2, device="cpu", epochs=4, log=quiet)
    ckpt = tmp_path / "c.pt"
    with pytest.raises(Killed):
        train(arch, mode, x, y, val, seed=2, device="cpu", epochs=4, checkpoint=ckpt, log=_kill_at(3))
    resumed, history = train(arch, mode, x, y, val, seed=2, device="cpu", epochs=4, checkpoint=ckpt, log=quiet)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_an_unreadable_checkpoint_is_not_resumed_and_bad_patches_are_refused_by_name(tmp_path, capsys):
    """An empty checkpoint (a node crashed as it was written) stopped every rerun with a traceback, and
    patches that were not finite trained a NaN model that exited 0 (before 0.12.3)."""
    import json

    from deepem.errors import DeepEMError
    from deepem.training import load_patches

    x, y, val = _toy_patches()
    (tmp_path / "c.pt").write_bytes(b"")
    messages = []
    _, history = train(design(40), "modern", x, y, val, seed=2, device="cpu", epochs=2, checkpoint=tmp_path / "c.pt",
                       log=messages.append)
    assert f"{tmp_path / 'c.pt'} is unreadable (EOFError): starting afresh" in messages and len(history) == 2
    patches = x[:, 0].numpy().astype(np.float16)
    patches[3, 5, 5] = np.inf
    np.savez(tmp_path / "p.npz", x=patches, y=y.numpy(), val=val.numpy(), meta=json.dumps({}))
    with pytest.raises(DeepEMError, match=r"p.npz: 1 patch pixels are not finite numbers; preprocess and extract again"):
        load_patches(tmp_path / "p.npz")
    with pytest.raises(DeepEMError, match=r"none.npz: not a readable patches file of 'deepem extract'"):
        load_patches(tmp_path / "none.npz")
    from deepem.cli import main

    np.savez(tmp_path / "q.npz", x=x[:, 0].numpy().astype(np.float16), y=y.numpy(), val=val.numpy(),
             meta=json.dumps({"particle_px": 32, "box_scale": 1.5}))
    with pytest.raises(SystemExit):  # patches of another network design: a shape traceback before
        main(["train", str(tmp_path / "q.npz"), "-o", str(tmp_path / "model")])
    assert "q.npz: patches of 40 px, but the network for particle_px 32 takes 48 px; run extract again" in \
        capsys.readouterr().err


def test_a_checkpoint_of_other_settings_or_patches_is_not_resumed(tmp_path):
    """A run killed before a config change leaves its checkpoint; the rerun must train afresh."""
    x, y, val = _toy_patches()
    arch, quiet = design(40), (lambda *_: None)
    ckpt = tmp_path / "c.pt"
    with pytest.raises(Killed):
        train(arch, "modern", x, y, val, seed=2, device="cpu", epochs=4, checkpoint=ckpt, log=_kill_at(3))
    for change in ({"seed": 5}, {"x": x.flip(-1)}):
        given = {"x": x, "seed": 2, **change}
        fresh, _ = train(arch, "modern", given["x"], y, val, seed=given["seed"], device="cpu", epochs=4, log=quiet)
        messages = []
        rerun, history = train(arch, "modern", given["x"], y, val, seed=given["seed"], device="cpu", epochs=4,
                               checkpoint=tmp_path / "c.pt", log=messages.append)
        assert any("other settings, patches or device: starting afresh" in m for m in messages)
        assert [h["epoch"] for h in history] == [1, 2, 3, 4]
        for a, b in zip(fresh.state_dict().values(), rerun.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        with pytest.raises(Killed):  # leave the seed-2 checkpoint for the next change again
            train(arch, "modern", x, y, val, seed=2, device="cpu", epochs=4, checkpoint=ckpt, log=_kill_at(3))


def test_a_checkpoint_written_on_a_gpu_node_is_read_on_a_cpu_node(tmp_path, monkeypatch):
    """Its tensors say cuda:0; a CPU-only node reads it, and a CPU run does not resume a CUDA run's."""
    import torch.serialization

    from deepem.training import _fingerprint

    x, y, val = _toy_patches()
    arch, ckpt = design(40), tmp_path / "c.pt"
    with pytest.raises(Killed):
        train(arch, "modern", x, y, val, seed=2, device="cpu", epochs=4, checkpoint=ckpt, log=_kill_at(3))
    state = torch.load(ckpt, weights_only=False)
    state["run"] = _fingerprint(arch, "modern", 2, 4, (x, y, val), None, "cuda")  # as a GPU node writes it
    with monkeypatch.context() as patched:
        patched.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(state, ckpt)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(ckpt, weights_only=False)  # what a plain load does on this node
    messages = []
    _, history = train(arch, "modern", x, y, val, seed=2, device="cpu", epochs=4, checkpoint=ckpt, log=messages.append)
    assert any("other settings, patches or device: starting afresh" in m for m in messages)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]


def test_weight_average_is_an_exponential_average_with_a_span_of_a_fifth_of_the_updates():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    average = weight_average(net, updates=50)  # time constant 10 updates: each update moves it 1/10 of the way
    values = [1.0, 3.0, 5.0]
    for v in values:
        for p in net.parameters():
            p.data.fill_(v)
        net[1].running_mean.fill_(v)
        net[1].num_batches_tracked.fill_(int(v))
        average.update_parameters(net)
    expected = 1.0  # the first update copies the weights
    for v in values[1:]:
        expected += 0.1 * (v - expected)
    for p in list(average.module.parameters()) + [average.module[1].running_mean]:
        torch.testing.assert_close(p.data, torch.full_like(p.data, expected))
    assert int(average.module[1].num_batches_tracked) == 5  # counters are copied, not averaged


def test_modern_training_returns_the_averaged_weights_and_faithful_the_last_iterate(tmp_path):
    x, y, val = _toy_patches()
    for mode in ("modern", "faithful"):
        ckpt = tmp_path / f"{mode}.pt"
        net, _ = train(design(40), mode, x, y, val, seed=3, device="cpu", epochs=2, checkpoint=ckpt, log=lambda *_: None)
        state = torch.load(ckpt, weights_only=False)
        last = state["net"]
        returned = net.state_dict()
        if mode == "faithful":
            assert state["average"] is None
            assert all(torch.equal(returned[k], last[k]) for k in last)
        else:
            averaged = {k.removeprefix("module."): v for k, v in state["average"].items() if k != "n_averaged"}
            assert all(torch.equal(returned[k], averaged[k]) for k in returned)
            assert not all(torch.equal(returned[k], last[k]) for k in last)


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


def test_best_f1_threshold_keeps_to_the_floor_the_maxima_were_taken_above():
    """When every maximum is worth keeping, the threshold lies between the lowest and the floor, not
    at half the lowest score, where picking would keep maxima that calibration never saw."""
    choice = best_f1_threshold(np.array([0.9, 0.5, 0.08]), np.array([1, 1, 1]), floor=0.05)
    assert choice["f1"] == 1.0 and choice["threshold"] == pytest.approx(0.065)
    assert best_f1_threshold(np.array([0.9, 0.5, 0.08]), np.array([1, 1, 1]))["threshold"] == pytest.approx(0.04)
    with pytest.raises(ValueError, match="no scores to choose a threshold from"):
        best_f1_threshold(np.zeros(0), np.zeros(0, bool), 4)


def _partially_labelled_maxima(share, rng):
    """Maxima of micrographs where a random ``share`` of 300 particles carries a label."""
    particles = rng.normal(2.5, 1.0, 300)  # logits of score maxima
    background = rng.normal(-3.5, 1.5, 900)
    logits = np.r_[particles, background]
    hits = np.r_[rng.random(300) < share, np.zeros(900, bool)]
    return 1 / (1 + np.exp(-logits)), hits, np.r_[np.ones(300, bool), np.zeros(900, bool)]


def test_label_fraction_estimates_the_labelled_share_of_the_particles():
    rng = np.random.default_rng(0)
    for share in (0.3, 1.0):
        scores, hits, _ = _partially_labelled_maxima(share, rng)
        assert abs(label_fraction(scores, hits) - share) < 0.06
    with pytest.raises(ValueError, match="no maximum hits a label"):
        label_fraction(scores, np.zeros(len(scores), bool))


def test_partial_labels_weighted_by_their_share_find_the_threshold_that_full_labels_find():
    rng = np.random.default_rng(1)
    scores, hits, particles = _partially_labelled_maxima(0.3, rng)
    full = best_f1_threshold(scores, particles)["threshold"]
    unweighted = best_f1_threshold(scores, hits, int(hits.sum()))["threshold"]  # unlabelled particles look false
    weighted = best_f1_threshold(scores, hits, int(hits.sum()), fraction=label_fraction(scores, hits))
    f1_at = {t: 2 * particles[scores >= t].sum() / ((scores >= t).sum() + particles.sum())
             for t in (full, unweighted, weighted["threshold"])}
    assert unweighted > full and f1_at[unweighted] < f1_at[full] - 0.02
    assert abs(f1_at[weighted["threshold"]] - f1_at[full]) < 0.01
    assert weighted["precision"] <= 1.0
