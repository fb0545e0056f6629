# Landmark-aware features: train a landmark network where no weights are configured (or measure configured
# weights' ION on a landmark test set), then cache features.


rule train_landmarks:
    input:
        SYNTH_DIR,
    output:
        model="results/landmarks/{backbone}/model.pt",
        report="results/landmarks/{backbone}/report.json",
        params="results/config/train_landmarks/{backbone}.yaml",
    params:
        settings=lambda wildcards: stage_settings("train_landmarks"),
    wildcard_constraints:
        backbone="|".join(TRAINED_LANDMARK_NETS) or "NONE",
    priority: lambda wildcards: critical_path_priority("train_landmarks", wildcards)
    log:
        "results/logs/landmarks/train_{backbone}.log",
    message:
        "Training the {wildcards.backbone} landmark network"
    shell:
        "printf '%s' {params.settings:q} > {output.params} && "
        "dfer train-landmarks --params {output.params} --backbone {wildcards.backbone} "
        "--out results/landmarks/{wildcards.backbone} > {log} 2>&1"


rule measure_landmarks:
    input:
        data=[data_ready(d) for d in ION_DATASETS],
        weights=lambda wildcards: landmark_weights(PARAMS, wildcards.backbone),
    output:
        report="results/landmarks/{backbone}/report.json",
        params="results/config/measure_landmarks/{backbone}.yaml",
    params:
        settings=lambda wildcards: stage_settings("train_landmarks"),
    wildcard_constraints:
        backbone="|".join(CONFIGURED_LANDMARK_NETS) or "NONE",
    log:
        "results/logs/landmarks/measure_{backbone}.log",
    message:
        "Measuring the ION of the configured {wildcards.backbone} weights on {ION_DATASETS}"
    shell:
        "printf '%s' {params.settings:q} > {output.params} && "
        "dfer train-landmarks --params {output.params} --backbone {wildcards.backbone} --weights {input.weights} "
        "--epochs 0 --datasets {ION_DATASETS} --out results/landmarks/{wildcards.backbone} > {log} 2>&1"


rule extract_features:
    input:
        unpack(feature_inputs),
    output:
        cache=directory("results/features/{dataset}/{backbone}"),
        params="results/config/extract_features/{dataset}/{backbone}.yaml",
    params:
        weights=lambda wildcards: landmark_weights(PARAMS, wildcards.backbone),
        settings=lambda wildcards: stage_settings("extract_features"),
    priority: lambda wildcards: critical_path_priority("extract_features", wildcards)
    log:
        "results/logs/features/{dataset}/{backbone}.log",
    message:
        "Caching {wildcards.backbone} landmark-aware features of {wildcards.dataset}"
    shell:
        "printf '%s' {params.settings:q} > {output.params} && "
        "dfer extract-features --params {output.params} --dataset {wildcards.dataset} "
        "--backbone {wildcards.backbone} --weights {params.weights} --out {output.cache} > {log} 2>&1"
