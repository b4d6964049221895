rule gather:
    input:
        picks=pick_shards,
        preprocessed=preprocessed_shards(),
    output:
        picks=f"{RESULTS}/round_{{round}}/picks.star",
        candidates=f"{RESULTS}/round_{{round}}/candidates.star",
        relion_index=f"{RESULTS}/round_{{round}}/autopick.star",
        relion_coordinates=directory(f"{RESULTS}/round_{{round}}/coordinates"),
        cryosparc=f"{RESULTS}/round_{{round}}/cryosparc_picks.star",
        box=directory(f"{RESULTS}/round_{{round}}/box"),
        topaz=f"{RESULTS}/round_{{round}}/topaz_picks.txt",
        csv=f"{RESULTS}/round_{{round}}/picks.csv",
    log:
        f"{LOGS}/round_{{round}}/gather.log",
    localrule: True
    params:
        relion_dir=relion_dir,
        relion_project=optional("--relion-project", config["relion_project"]),
        candidates=candidates_option,
        diameter=config["particle_diameter"],
        box_scale=config["box_scale"],
        version=VERSION,
    conda:
        ENV
    shell:
        "deepem gather --picks {input.picks} --preprocessed {input.preprocessed} -o {output.picks} "
        "{params.candidates} --relion-dir {params.relion_dir} {params.relion_project} "
        "--cryosparc {output.cryosparc} --box {output.box} --topaz {output.topaz} --csv {output.csv} "
        "--diameter {params.diameter} --box-scale {params.box_scale} 2>&1 | tee {log}"


use rule gather as final_picks with:
    input:
        picks=last_round_pick_shards,
        preprocessed=preprocessed_shards(),
    output:
        picks=f"{RESULTS}/picks.star",
        relion_index=f"{RESULTS}/autopick.star",
        relion_coordinates=directory(f"{RESULTS}/coordinates"),
        cryosparc=f"{RESULTS}/cryosparc_picks.star",
        box=directory(f"{RESULTS}/box"),
        topaz=f"{RESULTS}/topaz_picks.txt",
        csv=f"{RESULTS}/picks.csv",
    log:
        f"{LOGS}/final_picks.log",
    localrule: True  # not inherited by "use rule"
