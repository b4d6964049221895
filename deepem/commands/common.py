"""Arguments and helpers shared by several subcommands."""

import argparse
import math
import os
import re

from deepem.errors import DeepEMError
from deepem.topology import design


def add_geometry_args(parser):
    parser.add_argument("--diameter", type=positive, required=True, help="particle diameter in A")
    parser.add_argument(
        "--particle-px", type=count, default=32, help="pixels a particle diameter spans after downsampling (default 32)"
    )


def add_flip_y_arg(parser):
    parser.add_argument(
        "--flip-y", action="store_true",
        help="label files count y from the bottom row (DeepEM's own .box files): a box corner y becomes "
        "height - y - box, a centre y becomes height - 1 - y",
    )


def add_threads_arg(parser):
    parser.add_argument("--threads", type=count, default=1, help="CPU threads (default 1)")


DEVICE = re.compile(r"cpu|cuda(:[0-9]+)?")  # the config schema's pattern


def device(text):
    """argparse type: cpu, cuda or cuda:N, the devices deepem runs on."""
    if not DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device deepem runs on: use cpu, cuda or cuda:N")
    return text


def add_device_arg(parser):
    parser.add_argument(
        "--device", type=device, default="cpu", help="cpu, cuda or cuda:N (default cpu); cuda never falls back"
    )


def set_threads(n):
    import torch  # here, not at the top: commands without a network start faster without torch

    torch.set_num_threads(max(1, n))


def resolve_device(name):
    """A torch device; asking for CUDA where there is none is an error, never a silent CPU run.

    On CUDA, cuBLAS gets the fixed workspace that PyTorch documents as needed for deterministic
    matrix products (``CUBLAS_WORKSPACE_CONFIG``), unless the user set one.
    """
    import torch

    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeepEMError(
                f"device '{name}' requested but CUDA is not available on this node; "
                "use --device cpu (device: cpu in the config)"
            )
        index, visible = torch.device(name).index, torch.cuda.device_count()
        if index is not None and index >= visible:  # a cluster job sees only the GPUs it was given, as cuda:0...
            raise DeepEMError(
                f"device '{name}' requested but this node shows {visible} GPU(s) "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); on a cluster use "
                "device: cuda, and the scheduler picks the GPU"
            )
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return torch.device(name)


def _float(text):
    """``text`` as a float, NaN when it is not a number."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def _number(text, option, allowed, low=-math.inf, high=math.inf):
    """``text`` as a finite number strictly between ``low`` and ``high``, or a DeepEMError naming
    ``option`` and what it ``allowed``."""
    value = _float(text)
    if not (math.isfinite(value) and low < value < high):
        raise DeepEMError(f"{option} {text!r}: use {allowed}")
    return value


def positive(text):
    """argparse type: a finite number above 0 (a pixel size, a diameter)."""
    value = _float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def count(text):
    """argparse type: a whole number of at least 1 (threads, pixels)."""
    value = _float(text)
    if not (math.isfinite(value) and value >= 1 and value == int(value)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(value)


MAX_SEED = 2**63 - 1  # torch takes seeds of 64 bits; the config's maximum, 2**32 - 1, leaves room for seed + round


def seed(text):
    """argparse type: a random seed, a whole number from 0 to MAX_SEED."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 0 to 2**63 - 1")
    return value


def nonnegative(text):
    """argparse type: a finite number of 0 or more (a margin)."""
    value = _float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of 0 or more")
    return value


def score(text):
    """argparse type: a score from 0 up to, not including, 1 (a floor under the candidates)."""
    value = _float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a score from 0 up to 1")
    return value


def fraction(text):
    """argparse type: a number strictly between 0 and 1."""
    value = _float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number between 0 and 1")
    return value


def threshold(text):
    """argparse type: a score strictly between 0 and 1, or 'auto' (None: the model's threshold)."""
    return None if text == "auto" else fraction(text)


def _checked(parse):
    """argparse type: the text as given, once ``parse`` accepts it; what 'auto' means is known only
    after the model or patches load, but a bad value is refused before."""

    def check(text):
        try:
            parse(text, None)
        except DeepEMError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    return check


def add_min_distance_arg(parser, auto):
    parser.add_argument(
        "--min-distance", default="auto", type=_checked(parse_min_distance),
        help=f"distance between picks in particle diameters, or 'auto': {auto} (default auto)",
    )


def parse_min_distance(text, auto):
    """The spacing in diameters a --min-distance value asks for: ``auto`` for 'auto', else the
    positive number given."""
    if str(text).lower() == "auto":
        return auto
    return _number(text, "--min-distance", "'auto' or a positive number of particle diameters", low=0)


def add_background_floor_arg(parser, what):
    parser.add_argument(
        "--background-floor", default="auto", type=_checked(parse_background_floor),
        help=f"'auto' (from the labelled particles), 'off', or a level: {what} maxima on darker background than "
        "that and, unless off, on more textured background than the labelled particles' (default auto)",
    )


def parse_background_floor(text, auto):
    """The background floor a --background-floor value asks for: ``auto`` for 'auto', None (no
    floor) for 'off', else the number given."""
    if text.lower() == "auto":
        return auto
    if text.lower() in ("off", "false"):  # YAML reads a config's off as false
        return None
    return _number(text, "--background-floor", "'auto', 'off' or a finite number")


MAPS = {"faithful": (6, 12, 12), "modern": (12, 24, 24)}


def add_arch_args(parser):
    parser.add_argument(
        "--box-scale", type=positive, default=1.5, help="network box width / particle diameter (default 1.5)"
    )


def architecture(particle_px, box_scale, mode):
    """The network for a particle of ``particle_px`` working pixels and a box ``box_scale`` times wider."""
    box = int(round(particle_px * box_scale))
    try:
        return design(box, maps=MAPS[mode])
    except ValueError:
        raise DeepEMError(
            f"a box of {box} px (--particle-px {particle_px} x --box-scale {box_scale:g}) is too small for the network; "
            "use the defaults (32 x 1.5)"
        ) from None
