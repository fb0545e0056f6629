# Runs: the planner writes each run's config.yaml; SFER (image) runs train first because DFER runs
# start from their model.pt (`model.init`), an edge Snakemake sees through the input functions.


rule plan_runs:
    output:
        "results/plan/runs.json",
    params:
        digest=config_hash(PLAN.runs_payload()),
    log:
        "results/logs/plan/runs.log",
    localrule: True
    run:
        write_json(output[0], PLAN.runs_payload())


rule run_config:
    output:
        "results/runs/{hash}/config.yaml",
    params:
        # The path already carries the content hash; the name is here so a rename rewrites the file.
        name=lambda wildcards: RUNS[wildcards.hash].name,
    log:
        "results/logs/plan/{hash}.log",
    localrule: True
    run:
        write_run_config(RUNS[wildcards.hash], output[0])


rule train_sfer:
    input:
        unpack(run_inputs),
        tracking=ancient("results/mlflow/parents.json"),
        index=ancient("results/plan/runs.json"),
    output:
        model="results/runs/{hash}/model.pt",
        done="results/runs/{hash}/done.json",
        metrics="results/runs/{hash}/metrics.jsonl",
    log:
        "results/runs/{hash}/train.log",
    message:
        "Training {params.name}"
    params:
        name=lambda wildcards: RUNS[wildcards.hash].name,
    wildcard_constraints:
        hash="|".join(h for h, r in RUNS.items() if r.config["task"] == "sfer") or "NONE",
    shell:
        "dfer train --config {input.config} > {log} 2>&1"
