"""The DeepEM network: input, C1, S2, C3, S4, C5, S6 and a one-unit output (8 layers).

The topology is the published one (conv / pool 3 / conv / pool 2 / conv / pool 2 / dense),
sized from the working box by :func:`design`. The dense output layer is stored as a
convolution over the final ``F x F`` maps, which makes the whole network a conv/pool stack:

* :meth:`DeepEMNet.forward` classifies ``B x B`` boxes (training, box-by-box scoring);
* :meth:`DeepEMNet.dense_logits` scores *every* box of an image whose top-left corner lies on a
  stride-3 grid in one pass. Pools after S2 run at stride 1 and the layers after them are
  dilated ("a trous"), so the result equals box-by-box scoring at those positions exactly.

Modes: ``faithful`` (sigmoid units, mean pooling, Glorot-uniform init, as the paper) and
``modern`` (batch norm + ReLU, max pooling, twice the maps).
"""

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

STRIDE = 3  # output stride of dense scoring: the first pool's stride


@dataclass(frozen=True)
class Architecture:
    box: int
    k1: int
    k3: int
    k5: int
    final: int
    maps: tuple

    def as_dict(self):
        return asdict(self)


def _sizes(box, k1, k3, k5):
    """Feature-map sizes (c1, s2, c3, s4, c5, s6) or None when a pool would not divide evenly."""
    c1 = box - k1 + 1
    if c1 <= 0 or c1 % 3:
        return None
    s2 = c1 // 3
    c3 = s2 - k3 + 1
    if c3 <= 0 or c3 % 2:
        return None
    s4 = c3 // 2
    c5 = s4 - k5 + 1
    if c5 <= 0 or c5 % 2:
        return None
    return c1, s2, c3, s4, c5, c5 // 2


def design(box_target, maps=(6, 12, 12)):
    """The valid topology whose box is closest to ``box_target`` with KLH-like kernel proportions.

    The published KLH net (box 272: kernels 51, 21, 10; final maps 9 x 9) has
    k1 ~ 0.19 box, k3 ~ 0.28 S2, k5 ~ 0.37 S4, final ~ box / 30; we keep those ratios.
    """
    best = None
    for box in range(max(24, box_target - 6), box_target + 7):
        for k1 in range(3, box // 3):
            for k3 in range(2, box // 6):
                for k5 in range(2, box // 12 + 1):
                    sizes = _sizes(box, k1, k3, k5)
                    if sizes is None or not 2 <= sizes[-1] <= 9:
                        continue
                    s2, s4 = sizes[1], sizes[3]
                    cost = (
                        abs(box - box_target) / box_target
                        + abs(k1 / box - 0.19)
                        + abs(k3 / s2 - 0.28)
                        + abs(k5 / s4 - 0.37)
                        + 3 * abs(sizes[-1] / box - 1 / 30)
                    )
                    if best is None or cost < best[0]:
                        best = (cost, Architecture(box, k1, k3, k5, sizes[-1], tuple(maps)))
    if best is None:
        raise ValueError(f"no DeepEM topology fits a {box_target} px box")
    return best[1]


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

    def _pool2(self, x, dilation):
        """2 x 2 pooling; at ``dilation`` d > 0 it runs at stride 1 over taps d apart."""
        if not dilation:
            return F.avg_pool2d(x, 2) if self.mode == "faithful" else F.max_pool2d(x, 2)
        d = dilation
        taps = (x[..., :-d, :-d], x[..., d:, :-d], x[..., :-d, d:], x[..., d:, d:])
        if self.mode == "faithful":
            return (taps[0] + taps[1] + taps[2] + taps[3]) * 0.25
        return torch.maximum(torch.maximum(taps[0], taps[1]), torch.maximum(taps[2], taps[3]))

    def _pool3(self, x):
        return F.avg_pool2d(x, 3) if self.mode == "faithful" else F.max_pool2d(x, 3)

    def _features(self, x, dense):
        if dense and self.mode == "modern" and not self.training:
            return self._dense_inference(x)
        x = self._pool3(self._act(self.c1(x), "n1"))
        x = self._pool2(self._act(self.c3(x), "n3"), 1 if dense else 0)
        x = F.conv2d(x, self.c5.weight, self.c5.bias, dilation=2 if dense else 1)
        x = self._pool2(self._act(x, "n5"), 2 if dense else 0)
        return F.conv2d(x, self.out.weight, self.out.bias, dilation=4 if dense else 1)

    def _folded(self, conv, norm):
        """Weights and bias of ``conv`` followed by eval-mode batch norm ``norm``, as one convolution."""
        bn = getattr(self, norm)
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return conv.weight * scale[:, None, None, None], (conv.bias - bn.running_mean) * scale + bn.bias

    def _dense_inference(self, x):
        """The modern net's dense pass, reordered for speed with the same result.

        Batch norm is folded into the convolutions, and ReLU runs after max pooling (ReLU is
        monotonic, so it commutes with a maximum): after the first pool, on a ninth of the values.
        """
        w, b = self._folded(self.c1, "n1")
        x = F.relu(F.max_pool2d(F.conv2d(x, w, b), 3))
        w, b = self._folded(self.c3, "n3")
        x = F.relu(self._pool2(F.conv2d(x, w, b), 1))
        w, b = self._folded(self.c5, "n5")
        x = F.relu(self._pool2(F.conv2d(x, w, b, dilation=2), 2))
        return F.conv2d(x, self.out.weight, self.out.bias, dilation=4)

    def forward(self, boxes):
        """Logits for a batch of boxes ``(N, 1, B, B)`` -> ``(N,)``."""
        return self._features(boxes, dense=False).flatten()

    def dense_logits(self, image):
        """Logits of every box whose top-left corner is at ``(3i, 3j)`` of ``image`` ``(N, 1, H, W)``.

        ``H - box`` and ``W - box`` must be multiples of 3; the result has shape
        ``(N, 1, (H - box) / 3 + 1, (W - box) / 3 + 1)``.
        """
        return self._features(image, dense=True)


def save(path_or_file, net, extra):
    """Save the weights with everything needed to rebuild the net and use it."""
    torch.save({"arch": net.arch.as_dict(), "mode": net.mode, "state": net.state_dict(), **extra}, path_or_file)


def load(path, device="cpu"):
    """Load a saved model; returns ``(net, checkpoint dict)``. The net is in eval mode."""
    from deepem.errors import DeepEMError

    try:
        ckpt = torch.load(path, map_location=device, weights_only=False)
        arch = ckpt["arch"]
        net = DeepEMNet(Architecture(**{**arch, "maps": tuple(arch["maps"])}), ckpt["mode"])
        net.load_state_dict(ckpt["state"])
    except Exception as exc:  # torch raises many types for a corrupt file
        raise DeepEMError(f"{path}: not a readable deepem model ({type(exc).__name__}: {exc}); retrain it") from None
    return net.to(device).eval(), ckpt
