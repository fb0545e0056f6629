# MAE pre-training: makes the inits of model.inits whose path the workflow is to produce
# (results/pretrain/<init>/model.pt): in the synthetic preset MAE-ImageNet1K (on generic synthetic images) and
# MAE-AffectNet (on the synthetic AffectNet faces); in the paper preset only where a user points an init there
# (the authors' weights, when given as a local path, are loaded instead), e.g. UniLearn's dual-modal
# pre-training (images + VoxCeleb2 clips) as `unilearn_pretrain`.


rule pretrain_mae:
    input:
        data=lambda wildcards: pretrain_inputs(wildcards.init),
    output:
        model="results/pretrain/{init}/model.pt",
        params="results/config/pretrain_mae/{init}.yaml",
    params:
        settings=lambda wildcards: stage_settings("pretrain_mae"),
    wildcard_constraints:
        init="|".join(PRETRAINED_INITS) or "NONE",
    priority: critical_path_priority("pretrain_mae")
    log:
        "results/logs/pretrain/{init}.log",
    message:
        "MAE pre-training of the {wildcards.init} init"
    shell:
        "printf '%s' {params.settings:q} > {output.params} && "
        "dfer pretrain-mae --params {output.params} --init {wildcards.init} --out results/pretrain/{wildcards.init} "
        "--quiet > {log} 2>&1"
