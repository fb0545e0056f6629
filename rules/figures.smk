# Figures the paper draws from runs: per-class accuracy bars, t-SNE of features, SDL probability plots.


rule figure:
    input:
        evals=lambda wildcards: [f"results/runs/{h}/eval.json" for h in PLAN.table_runs(wildcards.figure)],
    output:
        plan="results/plan/figures/{figure}.json",
        png="results/figures/{figure}.png",
    params:
        plan=lambda wildcards: as_json(PLAN.table_payload(wildcards.figure)),
    log:
        "results/logs/figures/{figure}.log",
    message:
        "Drawing {wildcards.figure}"
    shell:
        "printf '%s' {params.plan:q} > {output.plan} && "
        "dfer figure {wildcards.figure} --plan {output.plan} --out {output.png} > {log} 2>&1"


rule all_figures:
    input:
        expand("results/figures/{figure}.png", figure=FIGURES),
    localrule: True
