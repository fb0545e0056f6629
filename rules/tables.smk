# Tables: each table's plan (cells -> runs) is written as JSON, then rendered from the runs' eval.json.


rule table_plan:
    output:
        "results/plan/{table}.json",
    params:
        digest=lambda wildcards: PLAN.digest(wildcards.table),
    log:
        "results/logs/plan/{table}.log",
    localrule: True
    run:
        write_json(output[0], PLAN.table_payload(wildcards.table))


rule table:
    input:
        unpack(table_inputs),
    output:
        md="results/tables/{table}.md",
        csv="results/tables/{table}.csv",
        tex="results/tables/{table}.tex",
    log:
        "results/logs/tables/{table}.log",
    message:
        "Rendering {wildcards.table}"
    shell:
        "dfer table {wildcards.table} --plan {input.plan} --out results/tables > {log} 2>&1"


for _table in TABLES:

    rule:
        name:
            _table
        input:
            expand("results/tables/{table}.{ext}", table=_table, ext=["md", "csv", "tex"]),
        localrule: True


rule claims_plan:
    output:
        "results/plan/claims.json",
    params:
        digest=config_hash(CLAIMS),
    log:
        "results/logs/plan/claims.log",
    localrule: True
    run:
        write_json(output[0], CLAIMS)


rule claims:
    input:
        plan="results/plan/claims.json",
        evals=sorted({f"{r['output_dir']}/eval.json" for r in CLAIMS["runs"].values()}),
        tracking=ancient("results/mlflow/parents.json"),
    output:
        md="results/tables/claims.md",
        csv="results/tables/claims.csv",
    log:
        "results/logs/tables/claims.log",
    message:
        "Scoring the paper's claims on the runs"
    shell:
        "dfer claims --plan {input.plan} --out results/tables > {log} 2>&1"


# Every table of the paper, the claims scorecard and the figures it draws from runs: what a reproduction is.
rule all_tables:
    input:
        expand("results/tables/{table}.{ext}", table=TABLES, ext=["md", "csv", "tex"]),
        rules.claims.output,
        expand("results/figures/{figure}.png", figure=FIGURES),
    localrule: True
