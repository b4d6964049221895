rule pick:
    input:
        model=f"{RESULTS}/round_{{round}}/model/model.pt",
        preprocessed=f"{RESULTS}/preprocessed/{{scatteritem}}",
    output:
        directory(f"{RESULTS}/round_{{round}}/picks/{{scatteritem}}"),
    log:
        f"{LOGS}/round_{{round}}/pick/{{scatteritem}}.log",
    benchmark:
        f"{BENCH}/round_{{round}}/pick/{{scatteritem}}.tsv"
    threads: config["threads"]
    resources:
        mem_mb=by_attempt(4000),
        runtime=shard_runtime,
        gpu=device_resources(),
    params:
        threshold=config["threshold"],
        background_floor=config["background_floor"],
        min_distance=config["min_distance"],
        device=config["device"],
        version=VERSION,
    conda:
        ENV
    shell:
        "deepem pick --model {input.model} --preprocessed {input.preprocessed} -o {output} "
        "--threshold {params.threshold} --background-floor {params.background_floor} "
        "--min-distance {params.min_distance} --threads {threads} "
        "--device {params.device} > {log} 2>&1"
