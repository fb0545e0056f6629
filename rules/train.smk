# Training runs: one job per unique run (results/runs/<config hash>/), however many table cells it serves. The
# job writes the run config the planner resolved (its `params`) to config.yaml and trains from it; a training
# job ends with the paper's evaluation (eval.json, confusion plot, predictions): `dfer train` = train + test.
# SFER (image) and DFER (video) runs are the same rule: a DFER run that starts from an SFER run's model.pt
# (`model.init`) waits for it through run_inputs, and SFER runs go first (critical_path_priority).


rule train:
    input:
        unpack(run_inputs),
    output:
        config="results/runs/{hash}/config.yaml",
        **RUN_OUTPUTS,
    log:
        "results/runs/{hash}/train.log",
    message:
        "Training {params.name}"
    params:
        name=lambda wildcards: RUNS[wildcards.hash].name,
        config=lambda wildcards: run_config_text(RUNS[wildcards.hash]),
    resources:
        # the recipe's GPUs (train.gpus): the job runs one DDP process per GPU it gets (`dfer train`)
        gpu=lambda wildcards: RUNS[wildcards.hash].config["train"]["gpus"],
    priority: lambda wildcards: critical_path_priority("train", wildcards)
    shell:
        "printf '%s' {params.config:q} > {output.config} && dfer train --config {output.config} > {log} 2>&1"
