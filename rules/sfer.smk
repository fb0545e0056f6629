# Runs: the planner writes every run's config.yaml; SFER (image) runs train first because DFER runs start
# from their model.pt (`model.init`), an edge Snakemake sees through the input functions. A training job
# ends with the paper's evaluation (eval.json, confusion plot, predictions): `dfer train` = train + test.


rule plan_runs:
    output:
        index="results/plan/runs.json",
        # A run's folder name is the hash of its config's content: a config never changes under a name,
        # so consumers read it as ancient() and re-writing every config does not re-run any training.
        configs=[f"results/runs/{h}/config.yaml" for h in sorted(RUNS)],
    params:
        digest=config_hash(PLAN.runs_payload()),
    log:
        "results/logs/plan/runs.log",
    localrule: True
    run:
        for h in sorted(RUNS):
            write_run_config(RUNS[h])
        write_json(output.index, PLAN.runs_payload())


rule train_sfer:
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
        hash="|".join(h for h, r in RUNS.items() if r.config["task"] == "sfer") or "NONE",
    shell:
        "dfer train --config {input.config} > {log} 2>&1"
