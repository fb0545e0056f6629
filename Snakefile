# dfer: the S2D paper as a DAG. Thin entry point: config, validation (rules/common.smk), includes.
#   snakemake -c2 all_tables            every table and figure on the synthetic benchmark (default preset)
#   snakemake -c2 table_3               one table;   snakemake -n all_tables   what would run
#   snakemake --config preset=paper ... real data (paths in params.yaml)
from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


include: "rules/common.smk"
include: "rules/synth.smk"
include: "rules/align.smk"
include: "rules/landmarks.smk"
include: "rules/pretrain.smk"
include: "rules/train.smk"
include: "rules/tables.smk"
include: "rules/figures.smk"


rule all:
    default_target: True
    input:
        rules.all_tables.input,


onsuccess:
    if Path("results/tables/claims.md").is_file():
        print(f"\nTables: results/tables/table_*.md (.csv, .tex)  Claims scorecard: results/tables/claims.md  "
              f"Figures: results/figures/\nMLflow: mlflow ui --backend-store-uri {PARAMS['mlflow']['tracking_uri']}")
