import pytest

from conftest import run
from deepem.cli import COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help_with_an_example(command):
    out = run(["deepem", command, "--help"]).stdout
    assert "xample" in out and f"deepem {command}" in out


def test_cuda_request_without_gpu_fails_loudly(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = run(["deepem", "pick", "--model", "x.pt", "--preprocessed", str(tmp_path), "-o", str(tmp_path / "o"),
                  "--device", "cuda"], check=False)
    assert result.returncode == 2
    assert "CUDA is not available" in result.stderr and not (tmp_path / "o").exists()
