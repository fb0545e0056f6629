# DFER runs: one job per (configuration, fold); ablations on DFEW fold 1, main results on every fold.


rule train_dfer:
    input:
        unpack(run_inputs),
        tracking=ancient("results/mlflow/parents.json"),
    output:
        **RUN_OUTPUTS,
    log:
        "results/runs/{hash}/train.log",
    message:
        "Training {params.name}"
    params:
        name=lambda wildcards: RUNS[wildcards.hash].name,
    resources:
        # the recipe's GPUs (train.gpus): the job runs one DDP process per GPU it gets (`dfer train`)
        gpu=lambda wildcards: RUNS[wildcards.hash].config["train"]["gpus"],
    wildcard_constraints:
        hash="|".join(h for h, r in RUNS.items() if r.config["task"] != "sfer") or "NONE",
    shell:
        "dfer train --config {input.config} > {log} 2>&1"
