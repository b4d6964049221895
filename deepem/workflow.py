"""Everything the Snakefile needs to know about a dataset, resolved once at parse time.

Keeping this in the package (not in the .smk files) makes it testable and keeps the rules
declarative. Errors are :class:`DeepEMError` with one line naming the file and the fix.
"""

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from deepem.commands.common import architecture
from deepem.dataset import check_not_reserved, expand, match_labels, route_labels
from deepem.errors import DeepEMError
from deepem.io.coords.detect import names_micrographs
from deepem.io.micrograph import IMAGE_SUFFIXES, micrograph_names, read_header


@dataclass
class Dataset:
    micrographs: dict  # name -> absolute path, sorted by name
    positives: list
    negatives: list
    truth: list
    shards: int
    simulated: bool = False
    shard_names: list = field(default_factory=list)
    corrections: dict = field(default_factory=dict)  # round (str) -> files
    labelled: list = field(default_factory=list)  # names of the micrographs that label files name: training's

    def shard(self, item):
        """Names of the micrographs of scatter item ``'k-of-n'``."""
        k, n = map(int, str(item).split("-of-"))
        if n != len(self.shard_names):  # snakemake --set-scatter shard=n: a split the config did not make
            raise DeepEMError(
                f"shard {item}: the config splits the micrographs into {len(self.shard_names)} shards; "
                "set 'shards' in the config (--config shards=N) instead of --set-scatter"
            )
        return self.shard_names[k - 1]

    def gallery(self, count):
        """``count`` micrograph names spread evenly over the sorted names: the report's examples."""
        names = sorted(self.micrographs)
        count = min(count, len(names))
        return [names[i * len(names) // count] for i in range(count)]


def _demo_dataset(config):
    """The demo's file lists, known before ``deepem simulate`` has written them."""
    demo = config["demo"]
    out = Path(demo["outdir"]).resolve()
    names = [f"demo_{i:03d}" for i in range(demo["micrographs"])]
    labelled = names[: demo["labelled"]]
    return (
        {n: str(out / "micrographs" / f"{n}.mrc") for n in names},
        [str(out / "labels" / f"{n}_manualpick.star") for n in labelled],
        [str(out / "negatives" / f"{n}.star") for n in labelled],
        [str(out / "truth" / f"{n}.star") for n in names],
    )


def _uses_demo(config):
    """The demo block defines the dataset when the micrographs pattern points inside its outdir."""
    demo = config.get("demo")
    pattern = config["micrographs"]
    if not demo or not isinstance(pattern, str):
        return False
    return Path(pattern).resolve().is_relative_to(Path(demo["outdir"]).resolve())


def check_label_files(files, micrographs, what):
    """The names of the micrographs the files label. Each file's format is known, each per-micrograph
    file matches a micrograph, and some row of each file with a micrograph column names one."""
    merged = [f for f in files if names_micrographs(f)]
    single = match_labels([f for f in files if f not in merged], micrographs, what)
    return set(single) | set(route_labels(merged, micrographs, what))


def check_corrections(config, micrographs):
    """``{round: files}`` of ``corrections``: only rounds whose picks are verified (all but the
    last) take them, and each file must match a micrograph, as labels must."""
    found = {}
    for key, patterns in sorted(config.get("corrections", {}).items()):
        r = str(int(key))  # '01' is round 1, as the rules name it
        if not 1 <= int(r) < config["rounds"]:
            raise DeepEMError(
                f"corrections: round {key} has no verification step to correct (rounds: {config['rounds']}); "
                f"corrections apply to rounds 1 to {config['rounds'] - 1}, whose picks train the next round: "
                "set rounds (--config rounds=N) to the last round you run"
            )
        if r in found:
            raise DeepEMError(f"corrections: round {r} is given twice; give one entry per round")
        found[r] = expand(patterns, f"round {r} correction")
        check_label_files(found[r], micrographs, "correction")
    return found


def check_pixel_size_known(config, micrographs):
    """TIFF, PNG and JPEG files carry no pixel size that deepem reads: ``pixel_size`` must give it,
    before any job starts (an MRC without one in its header is found by its preprocessing job)."""
    image = next((p for p in micrographs.values() if Path(p).suffix.lower() in IMAGE_SUFFIXES), None)
    if image is not None and not config.get("pixel_size"):
        raise DeepEMError(
            f"pixel_size: null, but {image} is an image without a pixel size deepem reads; "
            "set pixel_size (A/px) in the config"
        )


SHELL_SPECIAL = set("'\"`$&;|<>()*?[]{}\\")  # what bash would read as syntax in an unquoted word


def check_shell_safe(paths, key):
    """Snakemake passes paths to the rules' shell commands unquoted: one with a space would split, and
    one with a parenthesis, quote, ``$`` or ``;`` would be read as shell syntax."""
    for path in paths:
        bad = next((c for c in str(path) if c.isspace() or c in SHELL_SPECIAL), None)
        if bad is not None:
            what = "a space" if bad.isspace() else f"the character {bad!r}"
            raise DeepEMError(
                f"{key}: {path!r} has {what} in its path, which the workflow's shell commands cannot pass; "
                "rename it, or link it from a path of letters, digits and - _ . / only"
            )


def deepem_on_path():
    """The rules' shell commands call ``deepem``. A venv's snakemake run by its path, without the venv
    activated, would not find it: put the interpreter's bin folder first on PATH (for local jobs
    and, through the exported environment, cluster jobs). Conda rule environments put their own first."""
    if shutil.which("deepem") is None:
        bindir = Path(sys.executable).parent
        if os.access(bindir / "deepem", os.X_OK) and (bindir / "deepem").is_file():
            os.environ["PATH"] = f"{bindir}{os.pathsep}{os.environ.get('PATH') or os.defpath}"


def home_expanded(config):
    """``results`` and ``relion_project`` with a leading ``~`` expanded, as the micrograph and label
    patterns are (Snakemake does not, and would make a folder named ``~``), and normalised: a trailing
    ``/`` would put ``//`` in every output path, which Snakemake then never finds made."""
    return {
        key: os.path.normpath(os.path.expanduser(config[key])) for key in ("results", "relion_project") if config.get(key)
    }


def resolve(config):
    simulated = _uses_demo(config)
    if simulated:
        micrographs, positives, negatives, truth = _demo_dataset(config)
        labelled = set(match_labels(positives + negatives, micrographs, "label"))  # not written yet: by name
    else:
        micrographs = micrograph_names(expand(config["micrographs"], "micrograph"))
        if not micrographs:
            raise DeepEMError(f"{config['micrographs']}: no micrographs")
        check_not_reserved(micrographs)
        check_pixel_size_known(config, micrographs)
        positives = expand(config["labels"]["positives"], "positive label")
        negatives = expand(config["labels"].get("negatives"), "negative label")
        truth = expand(config.get("truth"), "truth")
        if not positives:
            raise DeepEMError("labels.positives: no label files given; label a few hundred particles first")
        labelled = check_label_files(positives, micrographs, "positive label")
        labelled |= check_label_files(negatives, micrographs, "negative label")
        check_label_files(truth, micrographs, "truth")
    corrections = check_corrections(config, micrographs)
    for key, paths in (("micrographs", micrographs.values()), ("labels.positives", positives),
                       ("labels.negatives", negatives), ("truth", truth), ("corrections", sum(corrections.values(), [])),
                       ("results", [os.path.abspath(config["results"])]),
                       ("relion_project", [config["relion_project"]] if config.get("relion_project") else [])):
        check_shell_safe(paths, key)
    try:  # before any job starts
        architecture(config["particle_px"], config["box_scale"], config["mode"])
    except DeepEMError:
        box = int(round(config["particle_px"] * config["box_scale"]))
        raise DeepEMError(
            f"particle_px: {config['particle_px']} with box_scale: {config['box_scale']:g} makes a box of {box} px, too "
            "small for the network; use the defaults (32 and 1.5)"
        ) from None
    for key in ("results", "relion_project"):
        if str(config.get(key) or "").startswith("@"):
            raise DeepEMError(f"{key}: {config[key]!r} starts with '@', which deepem reads as a file of arguments; rename it")
        if str(config.get(key) or "").startswith("#"):  # the rules pass it as given: the shell would drop the rest of the command
            raise DeepEMError(f"{key}: {config[key]!r} starts with '#', which the workflow's shell commands read as a comment; rename it")
    project = config.get("relion_project")
    if project is not None and not Path(project).is_dir():
        raise DeepEMError(f"relion_project: {project} is not a directory; give the RELION project's directory, or null")
    names = sorted(micrographs)
    shards = min(config["shards"], len(names))
    return Dataset(
        micrographs={n: micrographs[n] for n in names},
        positives=positives,
        negatives=negatives,
        truth=truth,
        shards=shards,
        simulated=simulated,
        shard_names=[names[k::shards] for k in range(shards)],
        corrections=corrections,
        labelled=sorted(labelled),
    )


def background_ratio(config):
    """Background patches per label: config's ``background_ratio``, or 12 for ``auto``, with complete
    or partial labels (bench/RESULTS.md, findings 12, 13 and 24)."""
    ratio = config["background_ratio"]
    return 12 if ratio == "auto" else ratio


# Cluster requests per job, from measurements on 4096^2 and 8192^2 micrographs (README): a
# preprocessing job peaks at about 0.3 GB + 10 bytes per pixel of its largest micrograph, and a
# micrograph takes 1-2 s per step on one core. Requests leave a wide margin and grow with each
# retry, so a job killed for memory or time is resubmitted with more.
BASE_MB, BYTES_PER_PIXEL, DEFAULT_PIXELS = 1000, 32, 4096 * 4096
BASE_MIN, MIN_PER_MICROGRAPH = 10, 0.1


def preprocess_mem_mb(paths, attempt=1):
    """MB to request for preprocessing ``paths``; unreadable files count as 4096^2 (the job reports them)."""
    pixels = max((_pixels(p) for p in paths), default=DEFAULT_PIXELS)
    return int(attempt * (BASE_MB + BYTES_PER_PIXEL * pixels / 1e6))


def _pixels(path):
    try:
        height, width, _ = read_header(path)
    except DeepEMError:
        return DEFAULT_PIXELS
    return height * width


def runtime_min(n_micrographs, attempt=1):
    """Minutes to request for a job that processes ``n_micrographs`` one after another."""
    return int(attempt * (BASE_MIN + MIN_PER_MICROGRAPH * n_micrographs))
