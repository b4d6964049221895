"""The DeepEM network: input, C1, S2, C3, S4, C5, S6 and a one-unit output (8 layers).

The topology is the published one (conv / pool 3 / conv / pool 2 / conv / pool 2 / dense),
sized from the working box by :func:`deepem.topology.design`. The dense output layer is stored as a
convolution over the final ``F x F`` maps, which makes the whole network a conv/pool stack:

* :meth:`DeepEMNet.forward` classifies ``B x B`` boxes (training, box-by-box scoring);
* :meth:`DeepEMNet.rotation_logits` scores *every* box of an image whose top-left corner lies
  on a stride-3 grid, at all 4 rotations, in one pass. Pools after S2 run at stride 1 and the
  layers after them are dilated ("a trous"), so the result equals box-by-box scoring at those
  positions exactly.

Modes: ``faithful`` (sigmoid units, mean pooling, Glorot-uniform init, as the paper) and
``modern`` (batch norm + ReLU, max pooling, twice the maps).
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from deepem.topology import Architecture

STRIDE = 3  # output stride of dense scoring: the first pool's stride
STRIP = 16  # S2 rows per C1 pass in dense scoring
ROTATIONS = 4  # every box is scored at 0, 90, 180 and 270 degrees


class DeepEMNet(nn.Module):
    def __init__(self, arch, mode="modern"):
        super().__init__()
        if mode not in ("faithful", "modern"):
            raise ValueError(f"unknown mode {mode!r}")
        self.arch, self.mode = arch, mode
        m1, m3, m5 = arch.maps
        self.c1 = nn.Conv2d(1, m1, arch.k1)
        self.c3 = nn.Conv2d(m1, m3, arch.k3)
        self.c5 = nn.Conv2d(m3, m5, arch.k5)
        self.out = nn.Conv2d(m5, 1, arch.final)
        if mode == "modern":
            self.n1, self.n3, self.n5 = nn.BatchNorm2d(m1), nn.BatchNorm2d(m3), nn.BatchNorm2d(m5)
        else:
            for layer in (self.c1, self.c3, self.c5, self.out):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)

    def _act(self, x, norm):
        if self.mode == "faithful":
            return torch.sigmoid(x)
        return F.relu(getattr(self, norm)(x))

    def _pool2(self, x, dilation=0):
        """2 x 2 pooling; at ``dilation`` d > 0 it runs at stride 1 over taps d apart."""
        if not dilation:
            return F.avg_pool2d(x, 2) if self.mode == "faithful" else F.max_pool2d(x, 2)
        d = dilation
        if self.mode == "faithful":
            x = x[..., :-d, :] + x[..., d:, :]
            return (x[..., :-d] + x[..., d:]) * 0.25
        x = torch.maximum(x[..., :-d, :], x[..., d:, :])
        return torch.maximum(x[..., :-d], x[..., d:])

    def _pool3(self, x):
        """3 x 3 pooling at stride 3 as two reductions over views, rows first (several times faster
        than ``max_pool2d`` on CPU). C1's maps are a multiple of 3 in size by design."""
        n, c, h, w = x.shape
        reduce = torch.mean if self.mode == "faithful" else torch.amax
        x = reduce(x.reshape(n, c, h // 3, 3, w), 3)
        return reduce(x.reshape(n, c, h // 3, w // 3, 3), -1)

    def _folded(self, conv, norm):
        """Weights and bias of ``conv`` followed by eval-mode batch norm ``norm``, as one convolution."""
        bn = getattr(self, norm)
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return conv.weight * scale[:, None, None, None], (conv.bias - bn.running_mean) * scale + bn.bias

    def _act_pool(self, x, pool, *args):
        """Activation, then pooling. The modern net takes ReLU after max pooling (ReLU is monotonic,
        so they commute) on a ninth of the values after S2; batch norm is folded into the convolution."""
        if self.mode == "faithful":
            return pool(torch.sigmoid(x), *args)
        return pool(x, *args).relu_()  # in place on the pool's new tensor: scoring keeps no graph

    def forward(self, boxes):
        """Logits for a batch of boxes ``(N, 1, B, B)`` -> ``(N,)``."""
        x = self._pool3(self._act(self.c1(boxes), "n1"))
        x = self._pool2(self._act(self.c3(x), "n3"))
        x = self._pool2(self._act(self.c5(x), "n5"))
        return self.out(x).flatten()

    @torch.no_grad()
    def rotation_logits(self, image):
        """Logits of every box whose top-left corner is at ``(3i, 3j)`` of ``image`` ``(1, 1, H, W)``,
        each box rotated by 0, 90, 180 and 270 degrees: shape ``(1, 4, (H - box) / 3 + 1, (W - box) / 3 + 1)``.

        Channel k holds ``net(rot90(box, k))``, computed without rotating any data: a valid
        convolution of a rotated image is the rotated convolution of the image with the kernel
        rotated back, and the pools commute with rotation (S2's input is a multiple of 3 in size,
        the later pools run at stride 1). So C1 and S2 run once with all 4 rotated kernel sets,
        a strip of ``STRIP`` S2 rows at a time (its maps stay in cache), and the layers after them
        once per rotation (4 plain convolutions beat one with ``groups=4`` on CPU) in channels-last
        layout (4x faster for the dilated C5 on CPU). ``H - box`` and ``W - box`` must be multiples
        of 3. For scoring in eval mode: batch norm is folded in with its running statistics, and no
        gradients are kept.
        """
        convs = ((self.c1, "n1"), (self.c3, "n3"), (self.c5, "n5"))
        plain = [self._folded(c, n) if self.mode == "modern" else (c.weight, c.bias) for c, n in convs]
        plain.append((self.out.weight, self.out.bias))
        rotated = [[torch.rot90(w, -k, dims=(2, 3)) for k in range(ROTATIONS)] for w, _ in plain]
        w1, b1 = torch.cat(rotated[0]), plain[0][1].repeat(ROTATIONS)
        rotated[1:] = [[w.contiguous(memory_format=torch.channels_last) for w in ws] for ws in rotated[1:]]
        k1, step = self.arch.k1, 3 * STRIP
        rows = image.shape[2] - k1 + 1
        pooled = torch.cat([  # C1 and S2 of all 4 rotations at once, a strip at a time
            self._act_pool(F.conv2d(image[:, :, r : min(rows, r + step) + k1 - 1], w1, b1), self._pool3)
            for r in range(0, rows, step)
        ], dim=2)
        (_, b3), (_, b5), (_, bo) = plain[1:]
        out = []
        for k, x in enumerate(pooled.chunk(ROTATIONS, dim=1)):  # one convolution per rotation beats groups=4
            x = x.contiguous(memory_format=torch.channels_last)
            x = self._act_pool(F.conv2d(x, rotated[1][k], b3), self._pool2, 1)
            x = self._act_pool(F.conv2d(x, rotated[2][k], b5, dilation=2), self._pool2, 2)
            out.append(F.conv2d(x, rotated[3][k], bo, dilation=4))
        return torch.cat(out, dim=1)


def save(path_or_file, net, extra):
    """Save the weights with everything needed to rebuild the net and use it."""
    torch.save({"arch": net.arch.as_dict(), "mode": net.mode, "state": net.state_dict(), **extra}, path_or_file)


def load(path, device="cpu"):
    """Load a saved model; returns ``(net, checkpoint dict)``. The net is in eval mode.

    Only tensors and plain Python values are unpickled (``weights_only``): a model file from
    elsewhere cannot run code.
    """
    from deepem.errors import DeepEMError

    if not Path(path).is_file():
        raise DeepEMError(f"{path}: no model file there; give the model.pt that 'deepem train' wrote")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
        arch = ckpt["arch"]
        net = DeepEMNet(Architecture(**{**arch, "maps": tuple(arch["maps"])}), ckpt["mode"])
        net.load_state_dict(ckpt["state"])
    except Exception as exc:  # torch raises many types for a corrupt file
        raise DeepEMError(f"{path}: not a readable deepem model ({type(exc).__name__}: {exc}); retrain it") from None
    return net.to(device).eval(), ckpt
