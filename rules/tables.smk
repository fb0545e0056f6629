# Tables and the claims scorecard: each job writes its plan (cells -> runs, resolved by the planner) to
# results/plan/ and renders it from the runs' eval.json; it also files its runs under its MLflow parent run.


rule table:
    input:
        unpack(table_inputs),
    output:
        plan="results/plan/{table}.json",
        md="results/tables/{table}.md",
        csv="results/tables/{table}.csv",
        tex="results/tables/{table}.tex",
    params:
        plan=lambda wildcards: as_json(PLAN.table_payload(wildcards.table)),
    log:
        "results/logs/tables/{table}.log",
    message:
        "Rendering {wildcards.table}"
    shell:
        "printf '%s' {params.plan:q} > {output.plan} && "
        "dfer table {wildcards.table} --plan {output.plan} --out results/tables > {log} 2>&1"


for _table in TABLES:

    rule:
        name:
            _table
        input:
            expand("results/tables/{table}.{ext}", table=_table, ext=["md", "csv", "tex"]),
        localrule: True


rule claims:
    input:
        evals=sorted({f"{r['output_dir']}/eval.json" for r in CLAIMS["runs"].values()}),
    output:
        plan="results/plan/claims.json",
        md="results/tables/claims.md",
        csv="results/tables/claims.csv",
    params:
        plan=lambda wildcards: as_json(CLAIMS),
    log:
        "results/logs/tables/claims.log",
    message:
        "Scoring the paper's claims on the runs"
    shell:
        "printf '%s' {params.plan:q} > {output.plan} && dfer claims --plan {output.plan} --out results/tables "
        "> {log} 2>&1"


# One paper's tables: `snakemake s2d_tables`, `nr_dfernet_tables`, `unilearn_tables` (all_tables holds all three).
TABLE_GROUPS = {"s2d_tables": "table_", "nr_dfernet_tables": "nr_table_", "unilearn_tables": "unilearn_table_"}
for _group, _prefix in TABLE_GROUPS.items():

    rule:
        name:
            _group
        input:
            expand("results/tables/{table}.{ext}", table=[t for t in TABLES if t.startswith(_prefix)],
                   ext=["md", "csv", "tex"]),
        localrule: True


# Every table of the three papers, the claims scorecard and the figures drawn from runs: what a reproduction is.
rule all_tables:
    input:
        expand("results/tables/{table}.{ext}", table=TABLES, ext=["md", "csv", "tex"]),
        rules.claims.output,
        expand("results/figures/{figure}.png", figure=FIGURES),
    localrule: True
