rule provenance:
    input:
        inputs=all_inputs(),
        made=run_outputs(),
    output:
        json=report(f"{RESULTS}/provenance.json", caption="../report/provenance.rst", category="Run"),
        html=report(f"{RESULTS}/provenance.html", caption="../report/provenance.rst", category="Run"),
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
        "deepem provenance --config-json @<(printf '%s\\n' {params.config:q}) --inputs @<(printf '%s\\n' {input.inputs:q}) --device {params.device} "
        "-o {output.json} --html {output.html} > {log} 2>&1"
