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


# Every table of the paper and the figures it draws from runs: what a reproduction is.
rule all_tables:
    input:
        expand("results/tables/{table}.{ext}", table=TABLES, ext=["md", "csv", "tex"]),
        expand("results/figures/{figure}.png", figure=FIGURES),
    localrule: True
