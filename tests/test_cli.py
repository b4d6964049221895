import json

import pytest
import yaml

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


def test_a_gpu_index_the_node_does_not_show_is_an_error_naming_the_cluster_fix(monkeypatch):
    """A SLURM job given one GPU sees it as cuda:0, so device: cuda:1 must say so, not crash in torch."""
    import torch

    from deepem.commands.common import resolve_device
    from deepem.errors import DeepEMError

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)  # resolve_device sets it; restored after the test
    if not torch.cuda.is_available():  # the node's real count where there is a GPU, else one GPU stated
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    count = torch.cuda.device_count()
    with pytest.raises(DeepEMError, match=rf"device 'cuda:{count}' requested but this node shows {count} GPU.*device: cuda"):
        resolve_device(f"cuda:{count}")
    assert resolve_device(f"cuda:{count - 1}") == torch.device(f"cuda:{count - 1}")
    assert resolve_device("cuda") == torch.device("cuda")


@pytest.mark.parametrize("command", ["preprocess", "show", "simulate", "convert"])
def test_a_pixel_size_must_be_positive(command, capsys):
    from deepem.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([command, "--pixel-size", "0"])  # refused before the missing arguments are noticed
    assert exit_info.value.code == 2 and "'0' is not a positive number" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.1", "x"])
def test_the_held_out_fraction_must_lie_between_0_and_1(value, capsys):
    from deepem.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["extract", "--val-fraction", value])
    assert exit_info.value.code == 2 and f"'{value}' is not a number between 0 and 1" in capsys.readouterr().err


def test_rounds_reads_the_innermost_round_and_names_bad_files(tmp_path):
    import json

    from deepem.commands.rounds import read_round
    from deepem.errors import DeepEMError

    metrics = {"precision": 0.9, "recall": 0.8, "f1": 0.85, "average_precision": 0.88, "best_f1": 0.86}
    path = tmp_path / "round_1_old" / "round_2" / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"all": metrics}))
    assert read_round(path) == (2, {"all": metrics})
    for name, text, message in [
        ("m.json", json.dumps({"all": metrics}), "no round_<n> folder"),
        ("round_3/m.json", "{not json", "not a readable metrics file"),
        ("round_4/m.json", json.dumps({"all": {"f1": 1}}), "not the metrics.json of 'deepem evaluate'"),
        ("round_5/m.json", None, "not a readable metrics file"),
    ]:
        bad = tmp_path / name
        bad.parent.mkdir(exist_ok=True)
        if text is not None:
            bad.write_text(text)
        with pytest.raises(DeepEMError, match=rf"{name}: {message}"):
            read_round(bad)
    from argparse import Namespace

    from deepem.commands.rounds import main

    with pytest.raises(DeepEMError, match=r"metrics.json: round 2 again \(also "):
        main(Namespace(metrics=[path, path], output=tmp_path / "rounds.tsv", plot=None, html=None))
    assert not (tmp_path / "rounds.tsv").exists()


def test_rounds_writes_all_its_outputs_or_none(tmp_path, capsys):
    import json

    from deepem.cli import main

    metrics = {"precision": 0.9, "recall": 0.8, "f1": 0.85, "average_precision": 0.88, "best_f1": 0.86}
    path = tmp_path / "round_1" / "metrics.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"all": metrics}))
    (tmp_path / "file").write_text("a file where the plot's folder should be")
    outputs = {"-o": tmp_path / "rounds.tsv", "--plot": tmp_path / "file" / "rounds.png", "--html": tmp_path / "rounds.html"}
    with pytest.raises(SystemExit):
        main(["rounds", str(path), *[str(v) for pair in outputs.items() for v in pair]])
    assert "file is a file, where a folder is needed" in capsys.readouterr().err
    assert not (tmp_path / "rounds.tsv").exists() and not (tmp_path / "rounds.html").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "round_1"]  # no temporary file left either
    outputs["--plot"] = tmp_path / "rounds.png"
    main(["rounds", str(path), *[str(v) for pair in outputs.items() for v in pair]])
    assert all(p.stat().st_size > 0 for p in outputs.values())


@pytest.mark.parametrize("command, option, value, message", [
    ("preprocess", "--threads", "0", "'0' is not a whole number of at least 1"),
    ("preprocess", "--particle-px", "0", "'0' is not a whole number of at least 1"),
    ("extract", "--particle-px", "2.5", "'2.5' is not a whole number of at least 1"),
    ("extract", "--box-scale", "-1", "'-1' is not a positive number"),
    ("evaluate", "--diameter", "0", "'0' is not a positive number"),
    ("gather", "--diameter", "nan", "'nan' is not a positive number"),
    ("histogram", "--threshold", "nan", "'nan' is not a number between 0 and 1"),
    ("verify", "--threshold", "1", "'1' is not a number between 0 and 1"),
    ("pick", "--threshold", "1.5", "'1.5' is not a number between 0 and 1"),
    ("train", "--threshold", "high", "'high' is not a number between 0 and 1"),
    ("pick", "--tile", "0", "'0' is not a whole number of at least 1"),
    ("pick", "--tile", "-5", "'-5' is not a whole number of at least 1"),
    ("show", "--max-size", "0", "'0' is not a whole number of at least 1"),
    ("show", "--threshold", "2", "'2' is not a number between 0 and 1"),
    ("convert", "--box-size", "100.6", "'100.6' is not a whole number of at least 1"),
    ("convert", "--particle-diameter", "-150", "'-150' is not a positive number"),
    ("convert", "--height", "0", "'0' is not a whole number of at least 1"),
    ("train", "--epochs", "0", "'0' is not a whole number of at least 1"),
    ("train", "--mine-epochs", "-1", "'-1' is not a whole number of at least 1"),
    ("pick", "--device", "mps", "'mps' is not a device deepem runs on: use cpu, cuda or cuda:N"),
    ("train", "--device", "cuda:x", "'cuda:x' is not a device deepem runs on"),
    ("provenance", "--device", "gpu", "'gpu' is not a device deepem runs on"),
    ("simulate", "--seed", "-1", "'-1' is not a whole number from 0 to 2**63 - 1"),
    ("extract", "--seed", "1.5", "'1.5' is not a whole number from 0 to 2**63 - 1"),
    ("train", "--seed", "-3", "'-3' is not a whole number from 0 to 2**63 - 1"),
    ("train", "--seed", "1e20", "'1e20' is not a whole number from 0 to 2**63 - 1"),
    ("train", "--seed", "9223372036854775808", "'9223372036854775808' is not a whole number from 0 to 2**63 - 1"),
    ("pick", "--floor", "nan", "'nan' is not a score from 0 up to 1"),
    ("pick", "--floor", "1", "'1' is not a score from 0 up to 1"),
    ("pick", "--edge", "-1", "'-1' is not a number of 0 or more"),
    ("extract", "--background-ratio", "inf", "'inf' is not a number of 0 or more"),  # config background_ratio: .inf
    ("extract", "--background-ratio", "nan", "'nan' is not a number of 0 or more"),
    ("pick", "--min-distance", "-1", "--min-distance '-1': use 'auto' or a positive number of particle diameters"),
    ("train", "--min-distance", "near", "--min-distance 'near': use 'auto' or a positive number"),
    ("pick", "--background-floor", "dark", "--background-floor 'dark': use 'auto', 'off' or a finite number"),
    ("train", "--background-floor", "inf", "--background-floor 'inf': use 'auto', 'off' or a finite number"),
])
def test_bad_option_values_are_refused_by_name(command, option, value, message, capsys):
    from deepem.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([command, option, value])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_box_too_small_for_the_network_is_an_error_naming_the_options():
    from deepem.commands.common import architecture
    from deepem.errors import DeepEMError

    with pytest.raises(DeepEMError, match=r"a box of 3 px \(--particle-px 32 x --box-scale 0.1\) is too small"):
        architecture(32, 0.1, "modern")


def test_train_mine_and_calibrate_need_their_folders(capsys):
    """A bare --mine would otherwise count as not given, and mining would be skipped without a word."""
    from deepem.cli import main

    for option in ("--mine", "--calibrate"):
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "p.npz", "-o", "m", option, "--positives", "a.star"])
        assert exit_info.value.code == 2 and f"argument {option}: expected at least one argument" in capsys.readouterr().err


def test_provenance_names_bad_config_and_unreadable_inputs(tmp_path, capsys):
    from deepem.cli import main

    out = tmp_path / "p.json"
    for extra, message in ((["--config-json", "{seed"], "--config-json: not JSON"),
                           (["--config-json", "{}", "--inputs", str(tmp_path / "gone.mrc")], "gone.mrc: cannot fingerprint"),
                           (["--config-json", "{}", "--inputs", str(tmp_path)], f"{tmp_path}: cannot fingerprint")):
        with pytest.raises(SystemExit) as exit_info:
            main(["provenance", "-o", str(out), *extra])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err and not out.exists()
    (tmp_path / "file").write_text("")  # the page cannot be written: no record is left behind either
    with pytest.raises(SystemExit) as exit_info:
        main(["provenance", "-o", str(out), "--config-json", "{}", "--html", str(tmp_path / "file" / "p.html")])
    assert exit_info.value.code == 2 and "is a file, where a folder is needed" in capsys.readouterr().err
    assert not out.exists()



def test_simulate_replaces_an_earlier_set_whole(tmp_path):
    """Fewer micrographs into an earlier, larger set's folder: no stale micrograph for a glob to find."""
    out = tmp_path / "sim"
    for n in (3, 2):
        run(["deepem", "simulate", "-o", str(out), "--micrographs", str(n), "--size", "320", "--labelled", "1"])
    assert sorted(p.name for p in (out / "micrographs").iterdir()) == ["demo_000.mrc", "demo_001.mrc"]
    assert sorted(p.name for p in (out / "truth").iterdir()) == ["demo_000.star", "demo_001.star"]
    assert yaml.safe_load((out / "dataset.yaml").read_text())["test"] == ["demo_001"]


def test_git_commit_is_marked_dirty_by_code_changes_not_by_config_edits(tmp_path, monkeypatch):
    import subprocess

    import deepem
    from deepem.provenance import git_commit

    package = tmp_path / "deepem"
    package.mkdir()
    for path in (package / "__init__.py", tmp_path / "config.yaml"):
        path.write_text("x = 1\n")
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    monkeypatch.setattr(deepem, "__file__", str(package / "__init__.py"))
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    (tmp_path / "config.yaml").write_text("x = 2\n")  # a user's edit of the config: still clean
    assert git_commit() == head
    (package / "__init__.py").write_text("x = 2\n")
    assert git_commit() == f"{head}-dirty"


def test_evaluate_names_the_conversion_for_another_pickers_file(tmp_path, capsys):
    import numpy as np

    from deepem.cli import main
    from deepem.io.micrograph import write_mrc

    write_mrc(tmp_path / "m.mrc", np.random.default_rng(0).normal(size=(256, 256)).astype(np.float32), 2.0)
    main(["preprocess", str(tmp_path / "m.mrc"), "--diameter", "40", "--particle-px", "20", "-o", str(tmp_path / "pre")])
    (tmp_path / "m.star").write_text("data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n100 100\n200 50\n")
    (tmp_path / "topaz.txt").write_text("image_name\tx_coord\ty_coord\tscore\nm\t101\t99\t0.9\nm\t30\t30\t0.2\n")
    evaluate = ["evaluate", "--truth", str(tmp_path / "m.star"), "--diameter", "40", "--preprocessed",
                str(tmp_path / "pre"), "-o", str(tmp_path / "metrics.json"), "--picks"]
    with pytest.raises(SystemExit):  # a mistyped path is not another picker's file
        main(evaluate + [str(tmp_path / "picks_typo.star")])
    err = capsys.readouterr().err
    assert "picks_typo.star" in err and "not found" in err and "deepem convert" not in err
    with pytest.raises(SystemExit):
        main(evaluate + [str(tmp_path / "topaz.txt")])
    assert "evaluate reads a merged picks STAR; make one from another picker's coordinates with " \
        "'deepem convert FILES --micrographs MICS --to relion -o picks.star'" in capsys.readouterr().err
    main(["convert", str(tmp_path / "topaz.txt"), "--micrographs", str(tmp_path / "m.mrc"), "--to", "relion",
          "-o", str(tmp_path / "picks.star")])
    main(evaluate + [str(tmp_path / "picks.star")])
    assert "precision 0.500  recall 0.500  F1 0.500  AP 0.500" in capsys.readouterr().out
    main(["convert", str(tmp_path / "m.star"), "--micrographs", str(tmp_path / "m.mrc"), "--to", "relion",
          "-o", str(tmp_path / "manual.star")])  # picks without scores: scored at their threshold only
    main(evaluate + [str(tmp_path / "manual.star")])
    assert "precision 1.000  recall 1.000  F1 1.000  no AP or best F1: the picks have no scores" in capsys.readouterr().out
    assert json.loads((tmp_path / "metrics.json").read_text())["all"]["average_precision"] is None


def test_evaluate_on_images_without_a_pixel_size_needs_one(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from deepem.cli import main

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256), dtype=np.uint8)).save(tmp_path / "m.png")
    (tmp_path / "m.star").write_text("data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n100 100\n200 50\n")
    (tmp_path / "picks.star").write_text(
        "data_\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n_rlnAutopickFigureOfMerit #4\n"
        "m.png 101 99 0.9\nm.png 30 30 0.2\n"
    )
    evaluate = ["evaluate", "--picks", str(tmp_path / "picks.star"), "--truth", str(tmp_path / "m.star"), "--diameter", "40",
                "--micrographs", str(tmp_path / "m.png"), "-o", str(tmp_path / "metrics.json")]
    with pytest.raises(SystemExit):
        main(evaluate)
    assert "m.png: no pixel size in the file header; give --pixel-size" in capsys.readouterr().err
    assert not (tmp_path / "metrics.json").exists()
    main(evaluate + ["--pixel-size", "2"])  # a radius of 10 px: the pick 1.4 px off matches
    assert "precision 0.500  recall 0.500  F1 0.500" in capsys.readouterr().out
    (tmp_path / "m_angstrom.star").write_text("data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n200 200\n400 100\n")
    evaluate[evaluate.index("--truth") + 1] = str(tmp_path / "m_angstrom.star")  # truth in A: (400, 100) is off the image
    with pytest.raises(SystemExit):
        main(evaluate + ["--pixel-size", "2", "-o", str(tmp_path / "angstrom.json")])
    assert "m_angstrom.star: 1 coordinates outside the 256 x 256 micrograph m" in capsys.readouterr().err
    assert not (tmp_path / "angstrom.json").exists()


def test_simulate_labels_at_least_one_particle_per_labelled_micrograph(tmp_path):
    """An empty label file means "no particle here": a small --label-fraction must not write one."""
    from deepem.cli import main
    from deepem.io.coords import read_star_table

    main(["simulate", "-o", str(tmp_path / "s"), "--micrographs", "2", "--size", "256", "--pixel-size", "5",
          "--labelled", "2", "--label-fraction", "0.01"])
    assert [len(read_star_table(p)) for p in sorted((tmp_path / "s" / "labels").glob("*.star"))] == [1, 1]


def test_simulate_refuses_a_size_it_cannot_hold_before_any_work(tmp_path, capsys):
    """A 100,000 px micrograph would need hundreds of GB: one line, not a MemoryError traceback."""
    from deepem.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "-o", str(tmp_path / "s"), "--size", "100000"])
    assert exit_info.value.code == 2
    assert "--size 100000 px: simulate makes micrographs of at most 8192 px a side" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_an_argument_file_stands_for_its_lines(tmp_path, capsys):
    """The workflow passes lists of files as @FILE, which a command line of any length cannot hold."""
    from deepem.cli import main

    (tmp_path / "picks.txt").write_text("image_name\tx_coord\ty_coord\nm\t10\t20\n")
    (tmp_path / "args").write_text(f"{tmp_path / 'picks.txt'}\n\n")  # blank lines are no arguments
    main(["convert", f"@{tmp_path / 'args'}", "--to", "csv", "-o", str(tmp_path / "out.csv")])
    assert (tmp_path / "out.csv").read_text().splitlines()[1].startswith("m,10")


def test_an_unreadable_argument_file_is_named_with_the_fix(tmp_path, capsys):
    from deepem.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["convert", f"@{tmp_path / 'missing'}", "--to", "csv", "-o", str(tmp_path / "out.csv")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"cannot read the argument file '{tmp_path / 'missing'}'" in err and "given as ./@NAME" in err
    assert not (tmp_path / "out.csv").exists()


def test_histogram_refuses_a_score_that_is_not_a_number(tmp_path, capsys):
    """A NaN score was counted among the candidates but left out of the plot (before 0.12.3)."""
    from deepem.cli import main

    (tmp_path / "c.star").write_text(
        "data_\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n_rlnAutopickFigureOfMerit #4\n"
        "m 1 2 0.9\nm 3 4 nan\n"
    )
    with pytest.raises(SystemExit):
        main(["histogram", str(tmp_path / "c.star"), "--threshold", "0.5", "-o", str(tmp_path / "h.png")])
    assert "c.star: a score is not a finite number" in capsys.readouterr().err
    assert not (tmp_path / "h.png").exists()


def test_a_micrograph_too_small_for_the_particle_names_both_fixes(tmp_path, capsys):
    """A legitimate small micrograph (a crop, a narrow strip) was told only to check the diameter's units."""
    import numpy as np

    from deepem.cli import main
    from deepem.io.micrograph import write_mrc

    path = tmp_path / "strip.mrc"
    write_mrc(path, np.random.default_rng(0).normal(size=(140, 1024)).astype(np.float32), 2.0)
    with pytest.raises(SystemExit) as exc:
        main(["preprocess", str(path), "-o", str(tmp_path / "out"), "--diameter", "150"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "strip.mrc" in err and "1024 x 140 micrograph" in err and "leave this micrograph out of 'micrographs'" in err
    assert not (tmp_path / "out").exists()
