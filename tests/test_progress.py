"""Progress in a log file (Snakemake rule logs, SLURM output): whole lines, ending with the rate."""

import time

from deepem import progress


def test_progress_in_a_log_is_one_line_per_update_and_ends_with_the_rate(monkeypatch, capsys):
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.1)
    for _ in progress.progress(range(30), "pick"):
        time.sleep(0.01)
    err = capsys.readouterr().err  # pytest's capture is not a terminal, like a rule's log
    lines = err.splitlines()
    assert "\r" not in err and err.endswith("\n")
    assert 3 <= len(lines) < 15, lines  # a line every LOG_INTERVAL, not one per micrograph
    assert all(line.startswith("pick: ") for line in lines) and len(set(lines)) == len(lines)
    assert "30/30" in lines[-1] and "mic/s" in lines[-1]
