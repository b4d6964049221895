if DATASET.simulated:

    rule simulate_demo:
        output:
            micrographs=list(DATASET.micrographs.values()),
            labels=DATASET.positives,
            negatives=DATASET.negatives,
            other_negatives=demo_other_negatives(),
            truth=DATASET.truth,
            spec=f"{config['demo']['outdir']}/dataset.yaml",
        log:
            f"{LOGS}/simulate_demo.log",
        localrule: True
        params:
            outdir=subpath(output.spec, parent=True),
            n=config["demo"]["micrographs"],
            size=config["demo"]["size"],
            labelled=config["demo"]["labelled"],
            diameter=config["particle_diameter"],
            seed=config["seed"],
            version=VERSION,
        conda:
            ENV
        shell:
            "deepem simulate -o {params.outdir} --micrographs {params.n} --size {params.size} "
            "--labelled {params.labelled} --diameter {params.diameter} --seed {params.seed} > {log} 2>&1"
