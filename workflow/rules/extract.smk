rule extract:
    input:
        preprocessed=extract_preprocessed,
        positives=DATASET.positives,
        negatives=DATASET.negatives,
        verified=previous_verified,
    output:
        f"{RESULTS}/round_{{round}}/patches.npz",
    log:
        f"{LOGS}/round_{{round}}/extract.log",
    benchmark:
        f"{BENCH}/round_{{round}}/extract.tsv"
    threads: 1
    resources:
        mem_mb=by_attempt(8000),
        runtime=by_attempt(60),
    params:
        diameter=config["particle_diameter"],
        particle_px=config["particle_px"],
        box_scale=config["box_scale"],
        background_ratio=background_ratio(config),
        seed=round_seed,
        flip_y=flip_y_option(),
        complete=complete_option(),
        verified_micrographs=verified_micrographs_option,
        version=VERSION,
    conda:
        ENV
    shell:
        "deepem extract --preprocessed {input.preprocessed} --positives @<(printf '%s\\n' {input.positives:q}) "
        "--negatives @<(printf '%s\\n' {input.negatives:q}) --verified {input.verified} --diameter {params.diameter} --particle-px {params.particle_px} "
        "--box-scale {params.box_scale} --background-ratio {params.background_ratio} "
        "--seed {params.seed} {params.flip_y} {params.complete} {params.verified_micrographs} -o {output} > {log} 2>&1"
