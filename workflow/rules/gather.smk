rule gather:
    input:
        picks=pick_shards,
        preprocessed=preprocessed_shards(),
    output:
        picks=f"{RESULTS}/round_{{round}}/picks.star",
        candidates=f"{RESULTS}/round_{{round}}/candidates.star",
    log:
        f"{LOGS}/round_{{round}}/gather.log",
    localrule: True
    params:
        version=VERSION,
    conda:
        ENV
    shell:
        "deepem gather --picks {input.picks} --preprocessed {input.preprocessed} -o {output.picks} "
        "--candidates {output.candidates} 2>&1 | tee {log}"


rule final_picks:
    input:
        last_round_picks,
    output:
        f"{RESULTS}/picks.star",
    log:
        f"{LOGS}/final_picks.log",
    localrule: True
    conda:
        ENV
    shell:
        "cp {input} {output} 2> {log}"
