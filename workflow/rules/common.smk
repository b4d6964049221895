import json
import os
import sys

import deepem
from deepem.errors import DeepEMError
from deepem.workflow import background_ratio, deepem_on_path, home_expanded, preprocess_mem_mb, resolve, runtime_min


deepem_on_path()
try:
    config.update(home_expanded(config))
    DATASET = resolve(config)
except DeepEMError as exc:
    sys.exit(f"deepem: config error: {exc}")

RESULTS = config["results"]
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
VERSION = deepem.__version__
ENV = "../../envs/deepem.yaml"


scattergather:
    shard=DATASET.shards,


wildcard_constraints:
    round=r"\d+",
    scatteritem=r"\d+-of-\d+",


def shard_micrographs(wildcards):
    return [DATASET.micrographs[n] for n in DATASET.shard(wildcards.scatteritem)]


def shard_mem_mb(wildcards, input, attempt):
    """Memory grows with the size of the shard's largest micrograph, and with each retry."""
    return preprocess_mem_mb(input, attempt)


def by_attempt(base):
    """A fixed request that grows with each retry, as the shards' do: base, then 2 x, then 3 x."""

    def request(wildcards, attempt):
        return base * attempt

    return request


def shard_runtime(wildcards, attempt):
    """Time grows with the number of micrographs in the shard, and with each retry."""
    return runtime_min(len(DATASET.shard(wildcards.scatteritem)), attempt)


def preprocessed_shards(wildcards=None):
    return scatter.shard(f"{RESULTS}/preprocessed/{{scatteritem}}")


LABELLED = f"{RESULTS}/preprocessed_labelled"  # the labelled micrographs again, for training alone


def labelled_micrographs():
    return [DATASET.micrographs[n] for n in DATASET.labelled]


def labelled_runtime(wildcards, attempt):
    return runtime_min(len(DATASET.labelled), attempt)


def extract_preprocessed(wildcards):
    """Round 1 reads the labelled micrographs alone, so adding unlabelled ones retrains nothing; later
    rounds read every shard, for the verified picks of every micrograph."""
    return LABELLED if int(wildcards.round) == 1 else preprocessed_shards()


def labelled_use():
    """How train uses the labelled micrographs: complete labels mine hard negatives from them,
    incomplete ones calibrate the threshold on their maxima."""
    return "--mine" if config["labels"]["complete"] else "--calibrate"


def complete_option():
    """Complete labels decide their micrographs alone: the previous round's positive verdicts do not join them."""
    return "--complete" if config["labels"]["complete"] else ""


def verified_micrographs_option(wildcards):
    """Rounds 2 and later train on the verified picks of a bounded number of unlabelled micrographs
    (null: all); round 1 has none, so changing the bound leaves it untouched."""
    limit = config["verified_micrographs"]
    return "" if limit is None or int(wildcards.round) == 1 else f"--verified-micrographs {limit}"


def pick_shards(wildcards):
    return scatter.shard(f"{RESULTS}/round_{wildcards.round}/picks/{{scatteritem}}")


def round_seed(wildcards):
    return config["seed"] + int(wildcards.round)


def previous_verified(wildcards):
    """Round n trains on the labels plus the verified picks of round n - 1 (none for round 1)."""
    r = int(wildcards.round)
    return [] if r == 1 else [f"{RESULTS}/round_{r - 1}/verified.star"]


def round_corrections(wildcards):
    return DATASET.corrections.get(str(wildcards.round), [])


def all_corrections():
    """Every round's correction files: the micrographs you corrected are not held out in any round's
    metrics, so that the rounds compare one set."""
    return [f for files in DATASET.corrections.values() for f in files]


def last_round_pick_shards(wildcards):
    """results/ holds the last round's picks, gathered again so its RELION index points inside results/."""
    return scatter.shard(f"{RESULTS}/round_{config['rounds']}/picks/{{scatteritem}}")


def relion_dir(wildcards, output):
    """The folder of the RELION index: its coordinates/ folder lies beside it."""
    return os.path.dirname(output.relion_index)


def candidates_option(wildcards, output):
    """Merged candidate lists where the rule writes them (each round, not the final copy)."""
    return optional("--candidates", output.get("candidates"))


def optional(flag, value):
    """A command-line option, or nothing when value is None."""
    return "" if value is None else f"{flag} {value}"


def device_resources():
    return 1 if config["device"].startswith("cuda") else 0


def flip_y_option():
    return "--flip-y" if config["labels"]["flip_y"] else ""


def pixel_size_option():
    return optional("--pixel-size", config["pixel_size"])


def round_metrics(wildcards=None):
    return [f"{RESULTS}/round_{r}/metrics.json" for r in range(1, config["rounds"] + 1)]


def config_json():
    return json.dumps(config, sort_keys=True)


def all_inputs():
    """Every file the run read: micrographs, labels, truth and corrections (provenance fingerprints them)."""
    return list(DATASET.micrographs.values()) + DATASET.positives + DATASET.negatives + DATASET.truth + all_corrections()


def run_outputs():
    """The picks that provenance describes: it is written after them, never beside an earlier run's."""
    return [f"{RESULTS}/picks.star"] + [f"{RESULTS}/round_{r}/picks.star" for r in range(1, config["rounds"] + 1)]


def demo_other_negatives():
    """The negatives simulate also writes for the unlabelled demo micrographs: declared, so Snakemake
    clears them with the rest before simulating again."""
    folder = os.path.dirname(DATASET.negatives[0]) if DATASET.negatives else None
    return [os.path.join(folder, f"{n}.star") for n in DATASET.micrographs if n not in DATASET.labelled] if folder else []


GALLERY = DATASET.gallery(config["gallery"])


def gallery_micrographs():
    return [DATASET.micrographs[name] for name in GALLERY]


def gallery_pngs(round="{round}"):
    return [f"{RESULTS}/round_{round}/gallery/{name}.png" for name in GALLERY]


def round_figures():
    """Per round: the score histogram and the pick overlays of the gallery micrographs."""
    return [f for r in range(1, config["rounds"] + 1) for f in [f"{RESULTS}/round_{r}/scores.png", *gallery_pngs(r)]]


def final_targets():
    """results/ with the last round's picks in every format, every round's own picks and exports, and figures."""
    targets = [f"{RESULTS}/picks.star", f"{RESULTS}/provenance.json", f"{RESULTS}/provenance.html", *round_figures()]
    targets += [f"{RESULTS}/round_{r}/picks.star" for r in range(1, config["rounds"] + 1)]
    if DATASET.truth:
        targets += [f"{RESULTS}/rounds.tsv", f"{RESULTS}/rounds.png", f"{RESULTS}/rounds.html"]
    return targets
