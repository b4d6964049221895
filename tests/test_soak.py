"""Soak: picking the same 200 micrographs ten times in one process keeps memory flat."""

import resource

import numpy as np
import pytest
import torch

from deepem.commands.common import architecture
from deepem.picking import candidates
from deepem.model import DeepEMNet


@pytest.mark.slow
def test_memory_stays_flat_over_ten_passes():
    rng = np.random.default_rng(0)
    images = [rng.normal(size=(440, 440)).astype(np.float32) for _ in range(200)]  # 1024 px at 150 A / 32 px
    net = DeepEMNet(architecture(32, 1.5, "modern"), "modern").eval()
    torch.set_num_threads(1)
    peaks = []
    for _ in range(10):
        for image in images:
            candidates(net, image, 16, 16, 0.05)
        peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    print("peak RSS per pass (MB):", [p // 1024 for p in peaks])
    assert peaks[-1] <= 1.05 * peaks[0]
