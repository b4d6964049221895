import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(cmd, cwd=ROOT, check=True, **kw):
    """Run a command with the test interpreter's bin/ first on PATH; returns CompletedProcess."""
    import os

    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, **kw)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A small simulated dataset: 4 micrographs of 1024 px, 3 labelled."""
    out = tmp_path_factory.mktemp("sim")
    run(["deepem", "simulate", "-o", str(out), "--micrographs", "4", "--size", "1024", "--labelled", "3", "--seed", "3"])
    return out


def write_config(tmp, data, **changes):
    config = {
        "micrographs": str(data / "micrographs" / "*.mrc"),
        "particle_diameter": 150,
        "labels": {"positives": str(data / "labels" / "*.star"), "negatives": None},
        "truth": str(data / "truth" / "*.star"),
        "shards": 3,
        "results": str(tmp / "results"),
    }
    config.update(changes)
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake(config, *extra, check=True):
    return run(["snakemake", "--cores", "2", "--configfile", str(config), *extra], check=check)


@pytest.fixture(scope="session")
def finished_run(tiny_dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    config = write_config(tmp, tiny_dataset)
    result = snakemake(config)
    return tmp, result


