# Figures the paper draws from runs: per-class accuracy bars, t-SNE of features, SDL probability plots.


rule figure_plan:
    output:
        "results/plan/figures/{figure}.json",
    params:
        digest=lambda wildcards: PLAN.digest(wildcards.figure),
    log:
        "results/logs/plan/{figure}.log",
    localrule: True
    run:
        write_json(output[0], PLAN.table_payload(wildcards.figure))


rule figure:
    input:
        plan="results/plan/figures/{figure}.json",
        evals=lambda wildcards: [f"results/runs/{h}/eval.json" for h in PLAN.table_runs(wildcards.figure)],
    output:
        "results/figures/{figure}.png",
    log:
        "results/logs/figures/{figure}.log",
    message:
        "Drawing {wildcards.figure}"
    shell:
        "dfer figure {wildcards.figure} --plan {input.plan} --out {output} > {log} 2>&1"


rule all_figures:
    input:
        expand("results/figures/{figure}.png", figure=FIGURES),
    localrule: True
