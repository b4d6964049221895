"""What produced an output: versions, host, device and the command line."""

import platform
import subprocess
import sys
from pathlib import Path

import numpy
import torch

import deepem


def git_commit():
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(deepem.__file__).parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except OSError:
        return None


def versions():
    return {
        "deepem": deepem.__version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
    }


def run_record(args, device):
    """Everything a run should write next to its outputs (cryoDRGN style)."""
    return {
        "command": sys.argv,
        "args": {k: v for k, v in vars(args).items() if k != "func"},
        "versions": versions(),
        "host": platform.node(),
        "device": str(device),
    }
