rule preprocess:
    input:
        shard_micrographs,
    output:
        directory(f"{RESULTS}/preprocessed/{{scatteritem}}"),
    log:
        f"{LOGS}/preprocess/{{scatteritem}}.log",
    benchmark:
        f"{BENCH}/preprocess/{{scatteritem}}.tsv"
    threads: 1
    resources:
        mem_mb=shard_mem_mb,
        runtime=shard_runtime,
    params:
        pixel_size=pixel_size_option(),
        diameter=config["particle_diameter"],
        particle_px=config["particle_px"],
        version=VERSION,
    conda:
        ENV
    shell:
        "deepem preprocess @<(printf '%s\\n' {input:q}) -o {output} {params.pixel_size} --diameter {params.diameter} "
        "--particle-px {params.particle_px} --threads {threads} > {log} 2>&1"


use rule preprocess as preprocess_labelled with:
    input:
        labelled_micrographs(),
    output:
        directory(LABELLED),
    log:
        f"{LOGS}/preprocess/labelled.log",
    benchmark:
        f"{BENCH}/preprocess/labelled.tsv"
    threads: config["threads"]
    resources:
        mem_mb=shard_mem_mb,
        runtime=labelled_runtime,
