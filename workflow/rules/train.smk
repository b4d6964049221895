rule train:
    input:
        patches=f"{RESULTS}/round_{{round}}/patches.npz",
        preprocessed=LABELLED,
        positives=DATASET.positives,
    output:
        model=f"{RESULTS}/round_{{round}}/model/model.pt",
        curve=f"{RESULTS}/round_{{round}}/model/training.tsv",
        plot=report(
            f"{RESULTS}/round_{{round}}/model/training.png",
            caption="../report/training.rst",
            category="Training",
            labels={"round": "{round}"},
        ),
    log:
        f"{LOGS}/round_{{round}}/train.log",
    benchmark:
        f"{BENCH}/round_{{round}}/train.tsv"
    threads: config["threads"]
    resources:
        mem_mb=by_attempt(8000),
        runtime=by_attempt(240),
        gpu=device_resources(),
    params:
        outdir=subpath(output.model, parent=True),
        mode=config["mode"],
        epochs=optional("--epochs", config["epochs"]),
        background_floor=config["background_floor"],
        min_distance=config["min_distance"],
        device=config["device"],
        labelled=labelled_use(),
        seed=round_seed,
        flip_y=flip_y_option(),
        version=VERSION,
    conda:
        ENV
    shell:
        "deepem train {input.patches} {params.labelled} {input.preprocessed} --positives @<(printf '%s\\n' {input.positives:q}) -o {params.outdir} --mode {params.mode} {params.epochs} "
        "--background-floor {params.background_floor} --min-distance {params.min_distance} --seed {params.seed} {params.flip_y} --threads {threads} "
        "--device {params.device} > {log} 2>&1"
