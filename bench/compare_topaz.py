"""deepem vs Topaz on a dataset with truth and a train/test split, side by side, in one invocation.

For each labelling (all training particles, or a random fraction of them) it runs, one stage at a
time on the same CPU cores (taskset, OMP/MKL/torch threads = --threads):

* deepem: ``deepem preprocess`` / ``extract`` / ``train`` / ``pick`` with the workflow's defaults
  (train on the training micrographs' labels, pick the test micrographs, threshold: auto);
* Topaz, pretrained: ``topaz preprocess`` + ``topaz extract -m resnet16_u64``;
* Topaz, trained: ``topaz train`` on the same labels (downscaled) + ``topaz extract``.

Topaz runs from its own venv (bench/.topaz, created here when missing); it is never imported.
Downsampling: scale = round(4 / pixel size) (3.5-3.6 A/px on the two datasets), which keeps the
particle diameter within the 70 px that Topaz's GUI gives for resnet8 (bgal 54 px, syn19hc 24 px);
Topaz's EMPIAR-10025 example downsamples to about 5.3 A/px. Extraction radius = particle radius in
downsampled px;
``topaz train -n`` = mean number of truth particles per *training* micrograph.
Topaz's threshold is the one maximising F1 on the first --threshold-mics training micrographs;
deepem's is its own automatic choice. Test micrographs are never used to choose anything.
deepem also trains on the dataset's negatives where it has them (syn19hc: all of them, also with
partial labels): DeepEM's method takes labelled non-particles, and ``topaz train`` takes none.

Scoring is deepem.metrics (Hungarian, 0.5 x diameter) for every tool. AP and best F1 rank every
candidate: deepem's candidates.star (local maxima >= 0.05), Topaz's extract at -t -6 (its default).

``--deepem-only`` runs deepem's stages alone (no Topaz venv), e.g. to rerun its rows on a new machine;
its tables have no Topaz rows (a later run without it reuses Topaz's finished stages and restores them).

Writes OUTDIR/comparison.tsv and OUTDIR/pr.png and prints the table; with --deepem-seeds K > 1
also OUTDIR/seeds.tsv, and with --throughput N OUTDIR/throughput.tsv. Stages that finished in an
earlier run of the same OUTDIR are reused with their recorded timings (delete OUTDIR to redo).

    python bench/compare_topaz.py ../shared/data/syn19hc -o bench/results/syn19hc --fractions 1 0.3
"""

import argparse
import glob
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from deepem.io.coords import read_by_micrograph, read_coordinates
from deepem.metrics import match, summarise
from deepem.workflow import background_ratio

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TOPAZ_VENV = HERE / ".topaz"
TOPAZ_PINS = ["torch==2.14.1", "torchvision==0.29.1", "topaz-em"]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


def log(msg):
    print(msg, flush=True)


class Runner:
    """Runs stage commands pinned to the same cores and threads; records wall time and peak RSS."""

    def __init__(self, threads):
        self.threads = threads
        self.cores = ",".join(str(c) for c in sorted(os.sched_getaffinity(0))[:threads])
        self.env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))

    def __call__(self, name, cmd, done):
        """Run cmd once; ``done`` (a JSON file) records {'s', 'peak_mb', 'cmd'} and makes reruns skip it."""
        done = Path(done)
        if done.exists():
            rec = json.loads(done.read_text())
            log(f"  [{name}] reused: {rec['s']:.1f} s, peak {rec['peak_mb']:.0f} MB")
            return rec
        cmd = [str(c) for c in cmd]
        timefile = done.with_suffix(".time")
        logfile = done.with_suffix(".log")
        done.parent.mkdir(parents=True, exist_ok=True)
        full = ["/usr/bin/time", "-f", "%e %M %U %S", "-o", str(timefile), "taskset", "-c", self.cores, *cmd]
        log(f"  [{name}] {shlex.join(cmd)}")
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        with open(logfile, "w") as out:
            proc = subprocess.run(full, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        wall = time.perf_counter() - t0
        if proc.returncode:
            sys.exit(f"{name} failed (exit {proc.returncode}); see {logfile}")
        _, peak_kb, user, system = (float(v) for v in timefile.read_text().split()[-4:])
        rec = {"s": wall, "peak_mb": peak_kb / 1024, "cpu_s": user + system,
               "load": [load0, os.getloadavg()[0]], "cmd": shlex.join(cmd)}
        done.write_text(json.dumps(rec, indent=1) + "\n")
        log(f"  [{name}] {wall:.1f} s (cpu {rec['cpu_s']:.1f} s), peak {rec['peak_mb']:.0f} MB, "
            f"load average {load0:.1f} -> {rec['load'][1]:.1f}")
        return rec


def ensure_topaz():
    topaz = TOPAZ_VENV / "bin/topaz"
    if not topaz.exists():
        log(f"Topaz venv missing: creating {TOPAZ_VENV} and installing {' '.join(TOPAZ_PINS)} (a few minutes)")
        subprocess.run([sys.executable, "-m", "venv", str(TOPAZ_VENV)], check=True)
        subprocess.run([str(TOPAZ_VENV / "bin/pip"), "install", "-q", *TOPAZ_PINS], check=True)
    version = subprocess.run([str(topaz), "--version"], capture_output=True, text=True).stdout.strip()
    log(f"Topaz: {topaz} ({version})")
    return topaz


def schema_defaults():
    props = yaml.safe_load(SCHEMA.read_text())["properties"]
    return {k: v.get("default") for k, v in props.items()}


# ---------------------------------------------------------------- scoring


def truth_of(root, spec, names):
    files = {Path(f).stem: f for f in glob.glob(str(root / spec["truth"]))}
    return {n: read_coordinates(files[n]) for n in names}


def pooled(picks, truth, radius):
    """Per-pick hits and scores over the micrographs in ``truth`` (pooled counts), and the truth total."""
    hits, scores = [], []
    for name, xy_true in truth.items():
        xy, s = picks.get(name, (np.zeros((0, 2)), np.zeros(0)))
        hits.append(match(xy, xy_true, radius))
        scores.append(s)
    return np.concatenate(hits), np.concatenate(scores), sum(len(t) for t in truth.values())


def pr_curve(hits, scores, n_truth):
    order = np.argsort(-scores, kind="stable")
    ctp = np.cumsum(hits[order])
    return ctp / max(n_truth, 1), ctp / np.arange(1, len(hits) + 1)


def rematched(ranked, truth, radius, grid=100):
    """Diagnostic, not the shared scorer: AP and best F1 when picks are matched *after* thresholding.

    deepem.metrics matches every candidate at once (Hungarian minimises distance, blind to score), so a
    low-scoring candidate can take the truth particle next to a high-scoring pick; with many candidates
    (Topaz at -t -6) that lowers the ranked metrics. Here each of ``grid`` score quantiles is matched on
    its own, giving the PR points a user thresholding the picks would see.
    """
    scores = np.concatenate([s for _, s in ranked.values()] or [np.zeros(0)])
    n_truth = sum(len(t) for t in truth.values())
    points = []
    for t in np.unique(np.quantile(scores, np.linspace(0, 1, grid, endpoint=False))):
        sub = {n: (xy[s >= t], s[s >= t]) for n, (xy, s) in ranked.items()}
        hits, _, _ = pooled(sub, truth, radius)
        tp = hits.sum()
        points.append((tp / max(len(hits), 1), tp / max(n_truth, 1)))
    points.sort(key=lambda pr: pr[1])
    ap, prev = 0.0, 0.0
    for precision, recall in points:
        ap += precision * (recall - prev)
        prev = recall
    f1 = max((2 * p * r / (p + r) if p + r else 0.0) for p, r in points)
    return ap, f1


def read_topaz(path, scale=1.0):
    """``{name: (xy, score)}`` from a Topaz coordinate table, coordinates multiplied by ``scale``."""
    out = {}
    rows = np.genfromtxt(path, delimiter="\t", names=True, dtype=None, encoding=None)
    rows = np.atleast_1d(rows)
    for name in np.unique(rows["image_name"]) if rows.size else []:
        r = rows[rows["image_name"] == name]
        out[str(name)] = (np.stack([r["x_coord"], r["y_coord"]], 1).astype(float) * scale, r["score"].astype(float))
    return out


def best_threshold(picks, truth, radius):
    """Score threshold maximising F1 over the given (training) micrographs."""
    return summarise(*pooled(picks, truth, radius))["best_f1_threshold"]


def score(picks_at_threshold, ranked, truth, radius):
    at = summarise(*pooled(picks_at_threshold, truth, radius))
    hits, scores, n = pooled(ranked, truth, radius)
    rk = summarise(hits, scores, n)
    ap_re, f1_re = rematched(ranked, truth, radius)
    return {**{k: at[k] for k in ("picks", "precision", "recall", "f1")},
            "average_precision": rk["average_precision"], "best_f1": rk["best_f1"],
            "ap_rematched": ap_re, "best_f1_rematched": f1_re}, pr_curve(hits, scores, n)


# ---------------------------------------------------------------- tools


def mrc_copies(root, spec, names, outdir):
    """Topaz reads MRC only: float32 MRC copies of non-MRC micrographs (timed apart, not counted)."""
    mics = {Path(f).stem: Path(f) for f in glob.glob(str(root / spec["micrographs"]))}
    if all(mics[n].suffix.lower() == ".mrc" for n in names):
        return {n: mics[n] for n in names}, 0.0
    import mrcfile
    from deepem.io.micrograph import read_micrograph

    outdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    out = {}
    for n in names:
        out[n] = outdir / f"{n}.mrc"
        if not out[n].exists():
            image, _ = read_micrograph(mics[n])
            with mrcfile.new(out[n].with_suffix(".tmp"), overwrite=True) as m:
                m.set_data(image.astype(np.float32))
            out[n].with_suffix(".tmp").rename(out[n])
    return out, time.perf_counter() - t0


def write_topaz_targets(label_files, scale, path):
    with open(path, "w") as f:
        f.write("image_name\tx_coord\ty_coord\n")
        for lf in label_files:
            for x, y in read_coordinates(lf):
                f.write(f"{Path(lf).stem}\t{int(round(x / scale))}\t{int(round(y / scale))}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="folder with dataset.yaml (../shared/data layout)")
    parser.add_argument("-o", "--outdir", required=True)
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.3], help="label fractions")
    parser.add_argument("--threads", type=int, default=2, help="cores and threads for every stage of both tools")
    parser.add_argument("--topaz-epochs", type=int, default=10, help="topaz train --num-epochs (Topaz default 10)")
    parser.add_argument("--topaz-epoch-size", type=int, default=1000, help="topaz train --epoch-size (Topaz default 1000)")
    parser.add_argument("--topaz-patch", type=int, default=512,
                        help="topaz extract --patch-size (unpatched resnet16 on a 2048^2 image needs > 24 GB)")
    parser.add_argument("--threshold-mics", type=int, default=3,
                        help="training micrographs Topaz's threshold is chosen on (each costs one extract)")
    parser.add_argument("--seed", type=int, default=0, help="label subset seed (bench/dataset_config.py)")
    parser.add_argument("--deepem-seeds", type=int, default=1, metavar="K",
                        help="train and pick deepem with K seeds (the table's row is the first; seeds.tsv has all)")
    parser.add_argument("--no-pretrained", action="store_true",
                        help="skip Topaz's pretrained resnet16 (label independent; 30 min of extraction on bgal): "
                             "the table then compares deepem with the trained Topaz only")
    parser.add_argument("--throughput", type=int, default=0, metavar="N",
                        help="also time preprocess + pick of N micrographs (the dataset's, cycled) per tool")
    parser.add_argument("--deepem-only", action="store_true",
                        help="run and score deepem's stages only, without Topaz or its venv (the table then has no "
                             "Topaz rows and no ratios), e.g. to rerun deepem's rows or prepare bench/train_split_cv.sh "
                             "on a new machine")
    args = parser.parse_args()
    if args.deepem_only and args.throughput:
        parser.error("--throughput times both tools; leave it out with --deepem-only")

    root = Path(args.dataset).resolve()
    spec = yaml.safe_load((root / "dataset.yaml").read_text())
    out = Path(args.outdir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    run = Runner(args.threads)
    topaz = None if args.deepem_only else ensure_topaz()
    deepem = Path(sys.executable).parent / "deepem"
    cfg = schema_defaults()
    px, diameter = spec["pixel_size"], spec["particle_diameter"]
    radius = 0.5 * diameter / px
    train, test = spec["train"], spec["test"]
    thr_mics = train[: args.threshold_mics]
    truth_test, truth_thr = truth_of(root, spec, test), truth_of(root, spec, thr_mics)
    truth_train = truth_of(root, spec, train)
    scale = max(1, round(4.0 / px))
    t_radius = max(1, round(0.5 * diameter / (px * scale)))
    n_expected = round(np.mean([len(v) for v in truth_train.values()]))
    budget = f"{args.topaz_epochs}x{args.topaz_epoch_size}"  # names Topaz's trained models and their stages
    mics = {Path(f).stem: f for f in glob.glob(str(root / spec["micrographs"]))}
    log(f"{spec['name']}: {len(train)} train / {len(test)} test micrographs, {px} A/px, diameter {diameter} A; "
        f"match radius {radius:.1f} px; {args.threads} threads on cores {run.cores}")
    if topaz:
        log(f"Topaz: scale {scale} ({px * scale:.2f} A/px), extract radius {t_radius} px, train -n {n_expected}, "
            f"{args.topaz_epochs} epochs x {args.topaz_epoch_size} updates; threshold from {len(thr_mics)} training mics")

    rows, curves, seed_rows = [], {}, []

    def per_mic(rec, n):
        return rec["s"] / n

    def cpu(*recs):  # CPU seconds (user + sys): less sensitive than wall time to other load on the cores
        return sum(r.get("cpu_s", float("nan")) for r in recs)

    # -------- preprocessing (label independent): deepem and Topaz, train and test micrographs apart
    log("preprocess")
    dp = {}
    for split, names in (("train", train), ("test", test)):
        dp[split] = run(f"deepem preprocess {split}", preprocess_command(
                        deepem, [mics[n] for n in names], out / f"deepem/preprocessed/{split}", px, diameter, cfg, args),
                        out / f"stages/deepem_preprocess_{split}.json")
    mrc, tp, tpre = {}, {}, {}
    if topaz:
        mrc, convert_s = mrc_copies(root, spec, train + test, out / "topaz/mrc")
        if convert_s:
            log(f"  [convert to MRC for Topaz] {convert_s:.1f} s for {len(mrc)} micrographs (not counted)")
        for split, names in (("train", train), ("test", test)):
            tp[split] = run(f"topaz preprocess {split}", topaz_preprocess_command(
                            topaz, [mrc[n] for n in names], out / f"topaz/preprocessed/{split}", scale, args),
                            out / f"stages/topaz_preprocess_{split}.json")
            tpre[split] = [out / f"topaz/preprocessed/{split}/{Path(mrc[n]).stem}.mrc" for n in names]

    def topaz_extract(tag, model):
        recs = {}
        (out / f"topaz/{tag}").mkdir(parents=True, exist_ok=True)
        for split, files in (("test", tpre["test"]), ("thr", tpre["train"][: len(thr_mics)])):
            recs[split] = run(f"topaz extract {tag} {split}", topaz_extract_command(
                              topaz, model, files, out / f"topaz/{tag}/picks_{split}.txt", t_radius, scale, args),
                              out / f"stages/topaz_extract_{tag}_{split}.json")
        picks = read_topaz(out / f"topaz/{tag}/picks_test.txt")
        thr = best_threshold(read_topaz(out / f"topaz/{tag}/picks_thr.txt"), truth_thr, radius)
        at = {n: (xy[s >= thr], s[s >= thr]) for n, (xy, s) in picks.items()}
        return recs, thr, at, picks

    # -------- Topaz pretrained (label independent)
    pretrained_row = None
    if topaz and not args.no_pretrained:
        log("topaz pretrained resnet16_u64")
        recs, thr, at, ranked = topaz_extract("pretrained", "resnet16_u64")
        metrics, curve = score(at, ranked, truth_test, radius)
        pretrained_row = {"tool": "topaz-pretrained", "threshold": thr, **metrics,
                          "prep_s_mic": per_mic(tp["test"], len(test)), "train_s": 0.0,
                          "pick_s_mic": per_mic(recs["test"], len(test)),
                          "prep_mb": tp["test"]["peak_mb"], "train_mb": 0.0, "pick_mb": recs["test"]["peak_mb"],
                          "mic_cpu_s": cpu(tp["test"], recs["test"]) / len(test), "train_cpu_s": 0.0,
                          "train_note": "none"}
        curves["topaz-pretrained"] = (curve, metrics)

    import torch  # only to read deepem's chosen threshold from model.pt

    for frac in args.fractions:
        label = "full" if frac >= 1 else f"{round(100 * frac)}%"
        d = out / (f"labels_{frac:g}")
        log(f"labels: {label}")
        if not (d / "labels").exists():
            subprocess.run([sys.executable, str(HERE / "dataset_config.py"), str(root), "-o", str(d),
                            "--label-fraction", str(frac), "--seed", str(args.seed),
                            "--set", f"labels.complete={'true' if frac >= 1 else 'false'}"],
                           check=True, stdout=subprocess.DEVNULL)
        labels = sorted(glob.glob(str(d / "labels/*.star")))
        negatives = [str(root / "negatives" / f"{n}.star") for n in train] if "negatives" in spec else []
        n_labels = sum(len(read_coordinates(f)) for f in labels)
        log(f"  {n_labels} labelled particles on {len(labels)} training micrographs")

        # deepem: extract, train and pick with the workflow's round-1 seed (seed + 1) and, with
        # --deepem-seeds K, with K - 1 more seeds (each its own extraction too, as the workflow's
        # seed sets both); the first seed's run is the table's row.
        seed0 = cfg["seed"] + 1
        labelled = "--mine" if frac >= 1 else "--calibrate"  # as the workflow does for labels.complete true / false
        ratio = background_ratio({**cfg, "labels": {"complete": frac >= 1}})
        runs = []
        for seed in range(seed0, seed0 + args.deepem_seeds):
            tag = "" if seed == seed0 else f"_seed{seed}"
            dd = d / f"deepem{tag}"
            ex = run(f"deepem extract{tag}", [deepem, "extract", "--preprocessed", out / "deepem/preprocessed/train",
                     "--positives", *labels, "--negatives", *negatives, "--diameter", diameter,
                     "--particle-px", cfg["particle_px"], "--box-scale", cfg["box_scale"],
                     "--background-ratio", ratio, "--seed", seed, "-o", dd / "patches.npz"],
                     d / f"stages/deepem_extract{tag}.json")
            tr = run(f"deepem train{tag}", [deepem, "train", dd / "patches.npz", labelled,
                     out / "deepem/preprocessed/train", "--positives", *labels, "-o", dd / "model", "--mode", cfg["mode"],
                     "--threshold", cfg["threshold"], "--background-floor", background_floor(cfg), "--seed", seed,
                     "--threads", args.threads, "--device", "cpu"], d / f"stages/deepem_train{tag}.json")
            pk = run(f"deepem pick{tag}", pick_command(deepem, dd / "model/model.pt", out / "deepem/preprocessed/test",
                     dd / "picks", cfg, args), d / f"stages/deepem_pick{tag}.json")
            thr = float(torch.load(dd / "model/model.pt", map_location="cpu", weights_only=False)["threshold"])
            at = {n: read_coordinates(dd / f"picks/{n}.star") for n in test}
            at = {n: (xy, np.ones(len(xy))) for n, xy in at.items()}
            metrics, curve = score(at, read_by_micrograph(dd / "picks/candidates.star"), truth_test, radius)
            runs.append({"labels": label, "seed": seed, "threshold": thr, **metrics, "train_s": ex["s"] + tr["s"],
                         "ex": ex, "tr": tr, "pk": pk, "curve": curve})
        first = runs[0]
        ex, tr, pk, metrics = first["ex"], first["tr"], first["pk"], {k: first[k] for k in SCORE_KEYS}
        rows.append({"labels": label, "tool": "deepem", "threshold": first["threshold"], **metrics,
                     "prep_s_mic": per_mic(dp["test"], len(test)), "train_s": first["train_s"],
                     "pick_s_mic": per_mic(pk, len(test)), "prep_mb": dp["test"]["peak_mb"],
                     "train_mb": max(ex["peak_mb"], tr["peak_mb"]), "pick_mb": pk["peak_mb"],
                     "mic_cpu_s": cpu(dp["test"], pk) / len(test), "train_cpu_s": cpu(ex, tr),
                     "train_note": "extract + train" + (" + mining" if frac >= 1 else " + calibration")})
        curves[f"deepem {label}"] = (first["curve"], metrics)
        seed_rows += [{k: v for k, v in r.items() if k not in ("ex", "tr", "pk", "curve")} for r in runs]

        if pretrained_row:
            rows.append({"labels": label, **pretrained_row})
        if not topaz:
            continue

        # Topaz trained on the same labels
        tdir = d / f"topaz_{budget}"  # one folder per training budget, so that budgets never mix
        targets = tdir / "targets.txt"
        targets.parent.mkdir(parents=True, exist_ok=True)
        write_topaz_targets(labels, scale, targets)
        images = tdir / "train_images.txt"
        images.write_text("image_name\tpath\n" + "".join(f"{p.stem}\t{p}\n" for p in tpre["train"]))
        tt = run("topaz train", [topaz, "train", "-n", n_expected, "--train-images", images, "--train-targets", targets,
                 "--num-epochs", args.topaz_epochs, "--epoch-size", args.topaz_epoch_size, "--num-workers", 0,
                 "-j", args.threads, "-d", -1, "--save-prefix", tdir / "model", "-o", tdir / "training.txt"],
                 d / f"stages/topaz_train_{budget}.json")
        recs, thr, at, ranked = topaz_extract(f"trained_{frac:g}_{budget}", tdir / f"model_epoch{args.topaz_epochs}.sav")
        metrics, curve = score(at, ranked, truth_test, radius)
        rows.append({"labels": label, "tool": "topaz-trained", "threshold": thr, **metrics,
                     "prep_s_mic": per_mic(tp["test"], len(test)), "train_s": tt["s"],
                     "pick_s_mic": per_mic(recs["test"], len(test)), "prep_mb": tp["test"]["peak_mb"],
                     "train_mb": tt["peak_mb"], "pick_mb": recs["test"]["peak_mb"],
                     "mic_cpu_s": cpu(tp["test"], recs["test"]) / len(test), "train_cpu_s": cpu(tt),
                     "train_note": f"{args.topaz_epochs} x {args.topaz_epoch_size} updates"})
        curves[f"topaz-trained {label}"] = (curve, metrics)

    report(rows, curves, out, spec["name"], args)
    if args.deepem_seeds > 1:
        report_seeds(seed_rows, out)
    if args.throughput:
        throughput(run, deepem, topaz, args, cfg, out, mics, mrc, px, diameter, scale, t_radius, budget)


def throughput(run, deepem, topaz, args, cfg, out, mics, mrc, px, diameter, scale, t_radius, budget):
    """Seconds per micrograph over ``--throughput`` micrographs: start-up amortised as in a long shard.

    The dataset's micrographs, cycled and linked under new names, are preprocessed and picked in one
    process per stage by deepem and by Topaz, each with its model for the largest label fraction (full
    labels in `make bench`; Topaz's pretrained resnet16 is several times slower still, see the main table).
    """
    label = f"labels_{max(args.fractions):g}"
    model_t = out / f"{label}/topaz_{budget}/model_epoch{args.topaz_epochs}.sav"
    d = out / f"throughput_{args.throughput}"
    inputs = {tool: cycled(src, args.throughput, d / f"{tool}/in") for tool, src in (("deepem", mics), ("topaz", mrc))}
    recs = {
        "deepem preprocess": run("deepem preprocess throughput", preprocess_command(
            deepem, inputs["deepem"], d / "deepem/preprocessed", px, diameter, cfg, args),
            d / "stages/deepem_preprocess.json"),
        "deepem pick": run("deepem pick throughput", pick_command(
            deepem, out / f"{label}/deepem/model/model.pt", d / "deepem/preprocessed", d / "deepem/picks", cfg, args),
            d / "stages/deepem_pick.json"),
        "topaz preprocess": run("topaz preprocess throughput", topaz_preprocess_command(
            topaz, inputs["topaz"], d / "topaz/preprocessed", scale, args), d / "stages/topaz_preprocess.json"),
    }
    recs["topaz extract"] = run("topaz extract throughput", topaz_extract_command(
        topaz, model_t, sorted((d / "topaz/preprocessed").glob("*.mrc")), d / "topaz/picks.txt", t_radius, scale, args),
        d / f"stages/topaz_extract_{budget}.json")
    n = args.throughput
    per = {k: r["s"] / n for k, r in recs.items()}
    deepem_s = per["deepem preprocess"] + per["deepem pick"]
    topaz_s = per["topaz preprocess"] + per["topaz extract"]
    lines = [f"{k}\t{v:.3f}\t{recs[k]['peak_mb']:.0f}" for k, v in per.items()]
    lines += [f"deepem total\t{deepem_s:.3f}\t", f"topaz total\t{topaz_s:.3f}\t", f"topaz / deepem\t{topaz_s / deepem_s:.2f}\t"]
    text = "stage\ts_per_micrograph\tpeak_mb\n" + "\n".join(lines) + "\n"
    (out / "throughput.tsv").write_text(text)
    log(f"\nthroughput over {n} micrographs (s per micrograph, peak MB):\n{text}wrote {out / 'throughput.tsv'}")


def cycled(sources, count, folder):
    """``count`` links in ``folder`` to the ``{name: path}`` sources, cycled (NAME_0000, ...); sorted paths."""
    names = sorted(sources)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        n = names[i % len(names)]
        link = folder / f"{n}_{i:04d}{Path(sources[n]).suffix}"
        if not link.exists():
            link.symlink_to(Path(sources[n]).resolve())
    return sorted(folder.iterdir())


SCORE_KEYS = ("picks", "precision", "recall", "f1", "average_precision", "best_f1", "ap_rematched", "best_f1_rematched")


# One builder per stage command, so that the comparison and the throughput run the same commands.


def preprocess_command(deepem, micrographs, outdir, px, diameter, cfg, args):
    return [deepem, "preprocess", *micrographs, "-o", outdir, "--pixel-size", px, "--diameter", diameter,
            "--particle-px", cfg["particle_px"], "--threads", args.threads]


def topaz_preprocess_command(topaz, micrographs, outdir, scale, args, gpu=-1):
    """``gpu``: Topaz's -d, the CUDA device index, -1 for the CPU."""
    return [topaz, "preprocess", "-s", scale, "-j", args.threads, "-d", gpu, "-o", outdir, *micrographs]


def topaz_extract_command(topaz, model, images, output, radius, scale, args, gpu=-1):
    """Every maximum (-t -6, Topaz's default) for the ranked metrics, in micrograph pixels (-x)."""
    return [topaz, "extract", "-m", model, "-r", radius, "-x", scale, "-t", -6, "-p", args.topaz_patch,
            "-j", args.threads, "-d", gpu, "-o", output, *images]


def background_floor(cfg):
    """The config's background_floor as a command-line value (YAML reads off as false)."""
    return cfg["background_floor"] if cfg["background_floor"] is not False else "off"


def pick_command(deepem, model, preprocessed, outdir, cfg, args, device="cpu"):
    """``deepem pick`` as the workflow runs it (schema defaults), on the CPU unless ``device`` says otherwise."""
    return [deepem, "pick", "--model", model, "--preprocessed", preprocessed, "-o", outdir, "--threshold",
            cfg["threshold"], "--background-floor", background_floor(cfg), "--min-distance", cfg["min_distance"],
            "--threads", args.threads, "--device", device]


def report_seeds(seed_rows, out):
    """seeds.tsv: deepem's accuracy and training time per seed, with mean, standard deviation and range."""
    import pandas as pd

    table = pd.DataFrame(seed_rows)
    keys = ["threshold", "f1", "average_precision", "best_f1", "train_s"]
    summary = table.groupby("labels", sort=False)[keys].agg(["mean", "std", "min", "max"])
    table[["labels", "seed", *keys]].to_csv(out / "seeds.tsv", sep="\t", index=False, float_format="%.4g")
    log(f"\ndeepem over {table.seed.nunique()} seeds:\n{table[['labels', 'seed', *keys]].to_string(index=False)}\n"
        f"{summary.round(4).to_string()}\nwrote {out / 'seeds.tsv'}")


COLUMNS = ["dataset", "labels", "tool", "threshold", "picks", "precision", "recall", "f1", "average_precision",
           "best_f1", "prep_s_mic", "pick_s_mic", "mic_s", "train_s", "prep_mb", "pick_mb", "train_mb", "mic_cpu_s",
           "train_cpu_s", "ap_rematched", "best_f1_rematched", "train_note"]


def report(rows, curves, out, name, args):
    import pandas as pd

    table = pd.DataFrame(rows)
    table.insert(0, "dataset", name)
    table["mic_s"] = table["prep_s_mic"] + table["pick_s_mic"]
    ratios = []
    for label, g in table.groupby("labels", sort=False):
        dm = g[g.tool == "deepem"].iloc[0]
        for other in ("topaz-pretrained", "topaz-trained"):
            if not (g.tool == other).any():  # --no-pretrained
                continue
            t = g[g.tool == other].iloc[0]
            r = {"dataset": name, "labels": label, "tool": f"deepem/{other}"}
            for k in ("f1", "average_precision", "best_f1", "ap_rematched", "best_f1_rematched"):
                r[k] = dm[k] - t[k]  # differences, not ratios
            for k in ("prep_s_mic", "pick_s_mic", "mic_s", "train_s", "prep_mb", "pick_mb", "train_mb", "mic_cpu_s",
                      "train_cpu_s"):
                r[k] = dm[k] / t[k] if t[k] else float("nan")
            r["train_note"] = "ratios (s, MB); F1/AP/best F1 as deepem minus Topaz"
            ratios.append(r)
    table = pd.concat([table, pd.DataFrame(ratios)], ignore_index=True)[COLUMNS]
    table["picks"] = table["picks"].astype("Int64")
    table.to_csv(out / "comparison.tsv", sep="\t", index=False, float_format="%.4g")
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.float_format", "{:.3g}".format):
        topaz = "deepem only" if args.deepem_only else (
            f"Topaz train {args.topaz_epochs} epochs x {args.topaz_epoch_size} updates (Topaz default 10 x 1000)")
        log(f"\n{name}: threads {args.threads}, {topaz}\n{table.to_string(index=False)}\n")
    log(f"wrote {out / 'comparison.tsv'}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 5))
    for key, ((recall, precision), m) in curves.items():
        style = "-" if key.startswith("deepem") else "--"
        line, = ax.plot(recall, precision, style, label=f"{key}: AP {m['average_precision']:.3f}, F1 {m['f1']:.3f}")
        ax.plot(m["recall"], m["precision"], "o", color=line.get_color())
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title=f"{name}: test micrographs (dots: each tool's threshold)")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(out / "pr.png", dpi=120)
    log(f"wrote {out / 'pr.png'}")


if __name__ == "__main__":
    main()
