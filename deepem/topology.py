"""The DeepEM topology sized for a working box: kernel and map sizes, without torch.

The published KLH net (box 272: conv 51 / pool 3 / conv 21 / pool 2 / conv 10 / pool 2 / dense
over 9 x 9 maps) scaled to the box deepem's working images need (:func:`design`); the
workflow checks the config's box against it before any job starts.
"""

from dataclasses import asdict, dataclass


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
