# Training runs: one job per unique run (results/runs/<config hash>/), however many table cells it serves. The
# job writes the run config the planner resolved (its `params`) to config.yaml and trains from it; a training
# job ends with the paper's evaluation (eval.json, confusion plot, predictions): `dfer train` = train + test.
# SFER (image) runs train first because DFER runs start from their model.pt (`model.init`), an edge Snakemake
# sees through run_inputs. Two rules only so that a cluster can give image and video runs other resources.


rule train_dfer:
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
    wildcard_constraints:
        hash="|".join(h for h, r in RUNS.items() if r.config["task"] == "dfer") or "NONE",
    shell:
        "printf '%s' {params.config:q} > {output.config} && dfer train --config {output.config} > {log} 2>&1"


use rule train_dfer as train_sfer with:
    priority: critical_path_priority("train_sfer")
    wildcard_constraints:
        hash="|".join(h for h, r in RUNS.items() if r.config["task"] == "sfer") or "NONE",
