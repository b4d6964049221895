"""The workflow on a real one-node SLURM cluster, through the shipped profile profiles/slurm.

Runs only when selected with ``-m slurm``: the module fixture installs and starts SLURM with
accounting (tests/slurm/start.sh; root on Debian) and skips the module, with the reason, when it
cannot. CI runs it with `make test-slurm` (python -m pytest -q -s -m slurm tests/test_slurm.py).
"""

import os
import re
import subprocess
import time

import pytest
import yaml

from conftest import BIN, ROOT, write_config

pytestmark = pytest.mark.slurm

START = ROOT / "tests" / "slurm" / "start.sh"
TIMEOUT = 600  # seconds for one Snakemake run, then SIGKILL (a run takes about 2-3 min here)
# one SLURM job per shard of these rules, and one of these; every other rule is a localrule
SCATTERED, SINGLE = ("preprocess", "pick"), ("preprocess_labelled", "extract", "train")
SHARDS = 3


def _selected(config):
    expr = config.getoption("markexpr") or ""
    return "slurm" in expr.replace("not slurm", "")


@pytest.fixture(scope="module")
def cluster(request):
    if not _selected(request.config):
        pytest.skip("SLURM test runs only when selected: python -m pytest -s -m slurm tests/test_slurm.py")
    started = subprocess.run(["bash", str(START)], capture_output=True, text=True)
    print(started.stdout, started.stderr, sep="\n")
    if started.returncode != 0:
        reason = (started.stderr.strip() or started.stdout.strip() or "no output").splitlines()[-1]
        print(f"SKIP: SLURM cluster could not start: {reason}")
        pytest.skip(f"SLURM cluster could not start: {reason}")


@pytest.fixture(scope="module")
def profile_home(tmp_path_factory):
    """XDG_CONFIG_HOME holding the shipped profile as snakemake/slurm, plus test-only settings."""
    home = tmp_path_factory.mktemp("xdg")
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    profile["slurm-init-seconds-before-status-checks"] = 2
    profile["seconds-between-status-checks"] = 2
    profile["slurm-logdir"] = str(home / "slurm_logs")
    profile["default-resources"] = {**profile["default-resources"], "slurm_account": "root", "slurm_partition": "debug"}
    target = home / "snakemake" / "slurm" / "config.yaml"
    target.parent.mkdir(parents=True)
    target.write_text(yaml.safe_dump(profile))
    return home


def _env(home):
    return {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "XDG_CONFIG_HOME": str(home)}


def _command(config):
    return ["timeout", "-s", "KILL", str(TIMEOUT), "snakemake", "--profile", "slurm", "--configfile", str(config)]


def _run(config, home):
    return subprocess.run(_command(config), cwd=ROOT, env=_env(home), capture_output=True, text=True)


def _run_ids(output):
    return re.findall(r"SLURM run ID: (\S+)", output)


def _sacct(run_ids):
    """(jobid, rule, wildcards, state, cpus) of the SLURM jobs of these Snakemake runs, in submission order."""
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-S", "2000-01-01", "-E", "now", "--name", ",".join(run_ids),
         "--format=JobID,JobName,Comment,State,AllocCPUS"],
        capture_output=True, text=True, check=True,
    ).stdout
    print("sacct -n -X -P --format=JobID,JobName,Comment,State,AllocCPUS:")
    print(out)
    jobs = []
    for line in out.splitlines():
        jobid, _, comment, state, cpus = line.split("|")
        match = re.fullmatch(r"rule_(.+?)(?:_wildcards_(.*))?", comment)
        assert match, f"unexpected job comment {comment!r}"
        jobs.append((int(jobid), match[1], match[2], state.split()[0], int(cpus)))
    return sorted(jobs)


def _pick_files(results):
    return {p.relative_to(results): p.read_bytes() for p in sorted((results / "round_1" / "picks").glob("*/*.star"))}


def _cleanup(config, home):
    """After a killed Snakemake: cancel its jobs and remove its lock."""
    subprocess.run(["scancel", "-u", "root"], capture_output=True)
    subprocess.run(["snakemake", "--unlock", "--configfile", str(config)], cwd=ROOT, env=_env(home), capture_output=True)


def _assert_same_picks(results, reference):
    assert _pick_files(results) == _pick_files(reference), "per-micrograph pick files differ from the local run"
    assert sum(p.name != "candidates.star" for p in _pick_files(results)) == 4, "expected one pick file per micrograph"
    assert (results / "picks.star").read_bytes() == (reference / "picks.star").read_bytes()


def _check(result, config, home):
    if result.returncode != 0:
        _cleanup(config, home)
    assert result.returncode == 0, f"snakemake --profile slurm failed ({result.returncode}):\n{result.stderr[-4000:]}"


def test_workflow_runs_on_slurm_and_matches_the_local_run(cluster, profile_home, finished_run, tiny_dataset, tmp_path):
    reference, _ = finished_run
    config = write_config(tmp_path, tiny_dataset, shards=SHARDS, rounds=1)
    started = time.time()
    result = _run(config, profile_home)
    print(f"snakemake --profile slurm: rc {result.returncode} in {time.time() - started:.0f} s")
    _check(result, config, profile_home)

    jobs = _sacct(_run_ids(result.stderr + result.stdout))
    rules = sorted(rule for _, rule, _, _, _ in jobs)
    assert rules == sorted([r for r in SCATTERED for _ in range(SHARDS)] + list(SINGLE)), rules
    assert all(state == "COMPLETED" for *_, state, _ in jobs), jobs
    for rule in SCATTERED:
        shards = sorted(w.rsplit("_", 1)[-1] for _, r, w, _, _ in jobs if r == rule)  # [round_]k-of-n
        assert shards == [f"{k}-of-{SHARDS}" for k in (1, 2, 3)], (rule, shards)
    # threads -> --cpus-per-task: training and picking get the 2 threads a local --cores 2 run gives them
    assert {rule: cpus for _, rule, _, _, cpus in jobs if rule in ("pick", "train")} == {"pick": 2, "train": 2}

    _assert_same_picks(tmp_path / "results", reference / "results")


def test_cancelled_pick_job_is_retried_within_the_run_and_results_match(cluster, profile_home, finished_run, tiny_dataset, tmp_path):
    reference, _ = finished_run
    config = write_config(tmp_path, tiny_dataset, shards=SHARDS, rounds=1)
    proc = subprocess.Popen(_command(config), cwd=ROOT, env=_env(profile_home), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    cancelled = None
    try:
        deadline = time.time() + TIMEOUT
        while cancelled is None and proc.poll() is None and time.time() < deadline:
            queue = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i %k"], capture_output=True, text=True).stdout
            running = [line.split()[0] for line in queue.splitlines() if " rule_pick_" in line]
            if running:
                subprocess.run(["scancel", running[0]], check=True)
                cancelled = int(running[0])
                print(f"scancel {cancelled} (a running pick job)")
            time.sleep(0.2)
        output = proc.communicate(timeout=TIMEOUT)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert cancelled is not None, "no pick job was caught running"
    print(f"snakemake after scancel: rc {proc.returncode}")
    if proc.returncode != 0:
        print(output[-3000:])
        _cleanup(config, profile_home)
    # the profile polls with squeue, so the cancelled job fails and is resubmitted within the run
    # (with sacct's "CANCELLED by <uid>", plugin 2.8.0 would wait for it forever)
    assert proc.returncode == 0, "the cancelled job was not retried within the run"
    runs = _run_ids(output)

    jobs = _sacct(runs)
    states = {jobid: state for jobid, *_, state, _ in jobs}
    assert states[cancelled] == "CANCELLED"
    shard = next(w for jobid, _, w, _, _ in jobs if jobid == cancelled)
    assert [s for jobid, r, w, s, _ in jobs if r == "pick" and w == shard and jobid > cancelled] == ["COMPLETED"]
    _assert_same_picks(tmp_path / "results", reference / "results")
