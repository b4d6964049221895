"""CUDA code paths: skipped where there is no GPU (CI); run on a GPU node with `pytest -m gpu`."""

import json

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from conftest import run
from deepem.io.coords import read_by_micrograph
from deepem.model import DeepEMNet
from deepem.topology import design
from deepem.picking import score_map

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("mode", ["faithful", "modern"])
def test_cuda_score_map_equals_cpu(mode):
    torch.manual_seed(0)
    net = DeepEMNet(design(48), mode).eval()
    image = np.random.default_rng(0).normal(size=(301, 257)).astype(np.float32)
    cpu = score_map(net, image, tile=40)
    gpu = score_map(net.to("cuda"), image, tile=40, device=torch.device("cuda"))
    np.testing.assert_allclose(gpu, cpu, atol=1e-4)


@pytest.fixture(scope="module")
def patches(tiny_dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu")
    mics = sorted(map(str, (tiny_dataset / "micrographs").glob("*.mrc")))
    labels = sorted(map(str, (tiny_dataset / "labels").glob("*.star")))
    run(["deepem", "preprocess", *mics, "--diameter", "150", "-o", str(tmp / "pre")])
    run(["deepem", "extract", "--preprocessed", str(tmp / "pre"), "--positives", *labels, "--diameter", "150",
         "-o", str(tmp / "patches.npz")])
    return tmp, labels


def test_cuda_training_is_reproducible_and_picks_like_the_cpu(patches):
    tmp, labels = patches
    for name in ("a", "b"):
        run(["deepem", "train", str(tmp / "patches.npz"), "--mine", str(tmp / "pre"), "--positives", *labels,
             "-o", str(tmp / name), "--epochs", "4", "--seed", "1", "--device", "cuda"])
    a = torch.load(tmp / "a" / "model.pt", weights_only=False)
    b = torch.load(tmp / "b" / "model.pt", weights_only=False)
    for key, value in a["state"].items():
        assert torch.equal(value, b["state"][key]), key
    assert a["threshold"] == b["threshold"]
    record = json.loads((tmp / "a" / "run.json").read_text())
    assert record["device"] == "cuda"
    for device in ("cuda", "cpu"):
        run(["deepem", "pick", "--model", str(tmp / "a" / "model.pt"), "--preprocessed", str(tmp / "pre"),
             "-o", str(tmp / f"picks_{device}"), "--device", device])
    gpu = read_by_micrograph(tmp / "picks_cuda" / "candidates.star")
    cpu = read_by_micrograph(tmp / "picks_cpu" / "candidates.star")
    assert sorted(gpu) == sorted(cpu)
    # float rounding (~1e-6) may let a near-tied neighbour win the non-maximum suppression, or shift a
    # flat (saturated) peak's sub-pixel position: nearly every strong maximum still agrees to a pixel
    near, total = 0, 0
    for name, (xy, score) in cpu.items():
        strong = score > 0.2
        distance, nearest = cKDTree(gpu[name][0]).query(xy[strong])
        agree = distance < 1.0
        np.testing.assert_allclose(gpu[name][1][nearest[agree]], score[strong][agree], atol=2e-3)
        near, total = near + int(agree.sum()), total + int(strong.sum())
    assert total > 50 and near >= 0.97 * total, (near, total)
