# deepem: DeepEM particle picking. Run: snakemake --cores all   (or --profile slurm)
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


if isinstance(config.get("corrections"), dict):  # YAML reads the README's `1: "..."` as the number 1
    config["corrections"] = {str(k): v for k, v in config["corrections"].items()}
validate(config, "workflow/schemas/config.schema.yaml", set_default=True)


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/pick.smk"
include: "workflow/rules/gather.smk"
include: "workflow/rules/verify.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/provenance.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        final_targets(),
