import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@functools.cache
def no_controller_conf():
    """A SLURM config naming no running controller, with a 1 s message timeout; None without a SLURM
    client. Snakemake's SLURM executor plugin runs `scontrol show config` whenever snakemake starts,
    even to run jobs locally; where a SLURM client is installed but no controller answers (this
    machine outside tests/test_slurm.py, whose runs use their own environment), that call waits 9 s:
    8 of the suite's 27 minutes (session 32). With this config it finds no controller at once."""
    if not shutil.which("scontrol"):
        return None
    folder = Path(tempfile.mkdtemp(prefix="deepem-test-slurm-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    (folder / "slurm.conf").write_text("ClusterName=none\nSlurmctldHost=localhost\nMessageTimeout=1\n")
    return str(folder / "slurm.conf")


def local_env():
    """The environment for local (not SLURM) runs: PATH with the test interpreter's bin/ first."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    if no_controller_conf():
        env["SLURM_CONF"] = no_controller_conf()
    return env


def run(cmd, cwd=ROOT, check=True, **kw):
    """Run a command locally (``local_env``); returns CompletedProcess."""
    env = local_env()
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


