if GALLERY:

    rule gallery:
        input:
            micrographs=gallery_micrographs(),
            picks=f"{RESULTS}/round_{{round}}/picks.star",
            candidates=f"{RESULTS}/round_{{round}}/candidates.star",
        output:
            report(gallery_pngs(), caption="../report/gallery.rst", category="Picks", subcategory="round {round}"),
        log:
            f"{LOGS}/round_{{round}}/gallery.log",
        localrule: True
        params:
            outdir=f"{RESULTS}/round_{{round}}/gallery",
            diameter=config["particle_diameter"],
            pixel_size=pixel_size_option(),
            version=VERSION,
        conda:
            ENV
        shell:
            "deepem show {input.micrographs} {input.picks} --candidates {input.candidates} "
            "--diameter {params.diameter} {params.pixel_size} --outdir {params.outdir} > {log} 2>&1"


rule score_histogram:
    input:
        candidates=f"{RESULTS}/round_{{round}}/candidates.star",
        model=f"{RESULTS}/round_{{round}}/model/model.pt",
    output:
        report(
            f"{RESULTS}/round_{{round}}/scores.png",
            caption="../report/scores.rst",
            category="Scores",
            labels={"round": "{round}"},
        ),
    log:
        f"{LOGS}/round_{{round}}/score_histogram.log",
    localrule: True
    params:
        threshold=config["threshold"],
        version=VERSION,
    conda:
        ENV
    shell:
        "deepem histogram {input.candidates} --model {input.model} --threshold {params.threshold} -o {output} > {log} 2>&1"
