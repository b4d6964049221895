rule provenance:
    input:
        all_inputs(),
    output:
        f"{RESULTS}/provenance.json",
    log:
        f"{LOGS}/provenance.log",
    localrule: True
    params:
        config=config_json(),
        device=config["device"],
        version=VERSION,
    conda:
        ENV
    shell:
        "deepem provenance --config-json {params.config:q} --inputs {input} --device {params.device} "
        "-o {output} > {log} 2>&1"
