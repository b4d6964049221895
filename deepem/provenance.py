"""What produced an output: versions, host, device and the command line."""

import platform
import subprocess
import sys
from pathlib import Path

import numpy
import torch

import deepem


def _git(args, cwd):
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def git_commit():
    """HEAD of the checkout deepem runs from, with ``-dirty`` when its code (the package, workflow/ or
    the Snakefile; not config.yaml) has uncommitted changes; None outside a git checkout."""
    here = Path(deepem.__file__).parent
    head = _git(["rev-parse", "HEAD"], here)
    if not head:
        return None
    changed = _git(["status", "--porcelain", "--untracked-files=no", "--", ".", "../workflow", "../Snakefile"], here)
    return head + ("-dirty" if changed else "")


def versions():
    return {
        "deepem": deepem.__version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
    }


def run_record(args, device):
    """Everything a run should write next to its outputs (cryoDRGN style); the command has its
    ``@FILE`` arguments expanded (``deepem.cli``)."""
    return {
        "command": getattr(args, "command_line", sys.argv),
        "args": {k: v for k, v in vars(args).items() if k not in ("func", "command_line")},
        "versions": versions(),
        "host": platform.node(),
        "device": str(device),
    }
