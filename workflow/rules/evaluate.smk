rule evaluate:
    input:
        picks=f"{RESULTS}/round_{{round}}/picks.star",
        candidates=f"{RESULTS}/round_{{round}}/candidates.star",
        preprocessed=preprocessed_shards(),
        truth=DATASET.truth,
        positives=DATASET.positives,
        negatives=DATASET.negatives,
        corrections=all_corrections(),
    output:
        f"{RESULTS}/round_{{round}}/metrics.json",
    log:
        f"{LOGS}/round_{{round}}/evaluate.log",
    localrule: True
    params:
        diameter=config["particle_diameter"],
        version=VERSION,
    conda:
        ENV
    shell:
        "deepem evaluate --picks {input.picks} --candidates {input.candidates} --truth @<(printf '%s\\n' {input.truth:q}) "
        "--positives @<(printf '%s\\n' {input.positives:q}) --negatives @<(printf '%s\\n' {input.negatives:q}) "
        "--corrections @<(printf '%s\\n' {input.corrections:q}) --preprocessed {input.preprocessed} --diameter {params.diameter} "
        "-o {output} 2>&1 | tee {log}"


rule rounds_summary:
    input:
        round_metrics(),
    output:
        table=f"{RESULTS}/rounds.tsv",
        plot=report(f"{RESULTS}/rounds.png", caption="../report/rounds.rst", category="Metrics"),
        html=report(f"{RESULTS}/rounds.html", caption="../report/rounds.rst", category="Metrics"),
    log:
        f"{LOGS}/rounds_summary.log",
    localrule: True
    params:
        version=VERSION,
    conda:
        ENV
    shell:
        "deepem rounds {input} -o {output.table} --plot {output.plot} --html {output.html} 2>&1 | tee {log}"
