import numpy as np
import pytest
import torch

from deepem.model import DeepEMNet, load, save
from deepem.topology import design
from deepem.picking import pad_for_scoring, score_map


def test_design_reproduces_the_published_klh_network():
    arch = design(272)
    assert (arch.box, arch.k1, arch.k3, arch.k5, arch.final) == (272, 51, 21, 10, 9)
    net = DeepEMNet(arch, "faithful")
    assert sum(p.numel() for p in net.parameters()) == 62761  # the paper's KLH count
    assert net(torch.zeros(2, 1, 272, 272)).shape == (2,)


@pytest.mark.parametrize("target", [36, 48, 64, 80])
def test_output_shape_and_receptive_field(target):
    arch = design(target)
    net = DeepEMNet(arch, "faithful").eval()
    box = arch.box
    x = torch.randn(3, 1, box, box)
    assert net(x).shape == (3,)
    # the receptive field of one output is exactly the box: every box pixel matters
    x.requires_grad_(True)
    net(x).sum().backward()
    assert (x.grad[0, 0].abs() > 0).all()


def _random_batchnorm(net):
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            with torch.no_grad():  # negative scales too: dense inference folds batch norm into the convolutions
                m.weight.uniform_(-1.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)


@pytest.mark.parametrize("mode", ["faithful", "modern"])
def test_fully_convolutional_scoring_equals_box_by_box(mode):
    torch.manual_seed(0)
    arch = design(48, maps=(4, 8, 8))
    net = DeepEMNet(arch, mode).eval()
    _random_batchnorm(net)
    image = np.random.default_rng(0).normal(size=(70, 95)).astype(np.float32)
    scores = score_map(net, image)
    padded, (rows, cols) = pad_for_scoring(image, arch.box)
    assert scores.shape == (rows, cols) == (24, 32)
    box = arch.box
    with torch.no_grad():
        logits = net.rotation_logits(torch.from_numpy(padded)[None, None])[0]
        for i, j in [(0, 0), (5, 7), (rows - 1, cols - 1), (12, 3), (rows - 1, 0)]:
            patch = torch.from_numpy(padded[3 * i : 3 * i + box, 3 * j : 3 * j + box].copy())[None, None]
            per_rotation = torch.cat([net(torch.rot90(patch, k, dims=(2, 3))) for k in range(4)])
            torch.testing.assert_close(logits[:, i, j], per_rotation, atol=1e-4, rtol=1e-4)
            assert abs(scores[i, j] - torch.sigmoid(per_rotation).mean().item()) < 1e-5
            # the box scored at cell (i, j) is centred on working pixel (3i, 3j)
            assert np.array_equal(patch[0, 0, box // 2, box // 2].numpy(), image[3 * i, 3 * j])


def test_tiling_does_not_change_scores():
    torch.manual_seed(1)
    net = DeepEMNet(design(40), "modern").eval()
    image = np.random.default_rng(2).normal(size=(120, 101)).astype(np.float32)
    np.testing.assert_allclose(score_map(net, image, tile=5), score_map(net, image, tile=1000), atol=1e-6)


def test_save_and_load_round_trip(tmp_path):
    net = DeepEMNet(design(48), "modern").eval()
    save(tmp_path / "m.pt", net, {"threshold": 0.7})
    again, ckpt = load(tmp_path / "m.pt")
    x = torch.randn(2, 1, 48, 48)
    assert ckpt["threshold"] == 0.7
    torch.testing.assert_close(net(x), again(x))


class _Payload:
    def __reduce__(self):  # unpickling this calls os.system
        import os

        return os.system, ("touch ran",)


def test_load_refuses_what_is_not_a_model_and_runs_no_code(tmp_path, monkeypatch):
    from deepem.errors import DeepEMError

    monkeypatch.chdir(tmp_path)
    net = DeepEMNet(design(48), "modern")
    save(tmp_path / "evil.pt", net, {"threshold": 0.7, "note": _Payload()})
    with pytest.raises(DeepEMError, match="evil.pt: not a readable deepem model"):
        load(tmp_path / "evil.pt")
    assert not (tmp_path / "ran").exists()
    for path in (tmp_path / "missing.pt", tmp_path):
        with pytest.raises(DeepEMError, match="no model file there; give the model.pt that 'deepem train' wrote"):
            load(path)
