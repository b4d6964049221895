rule verify:
    input:
        candidates=f"{RESULTS}/round_{{round}}/candidates.star",
        model=f"{RESULTS}/round_{{round}}/model/model.pt",
        preprocessed=preprocessed_shards(),
        corrections=round_corrections,
    output:
        f"{RESULTS}/round_{{round}}/verified.star",
    log:
        f"{LOGS}/round_{{round}}/verify.log",
    benchmark:
        f"{BENCH}/round_{{round}}/verify.tsv"
    threads: 1
    resources:
        mem_mb=by_attempt(4000),
        runtime=by_attempt(60),
    params:
        diameter=config["particle_diameter"],
        threshold=config["threshold"],
        version=VERSION,
    conda:
        ENV
    shell:
        "deepem verify --candidates {input.candidates} --model {input.model} "
        "--preprocessed {input.preprocessed} --corrections @<(printf '%s\\n' {input.corrections:q}) "
        "--diameter {params.diameter} --threshold {params.threshold} -o {output} > {log} 2>&1"
