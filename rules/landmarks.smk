# Landmark-aware features: train a landmark network where no weights are configured, then cache features.


rule train_landmarks:
    input:
        data=SYNTH_DIR,
        params=stage_file("train_landmarks"),
    output:
        model="results/landmarks/{backbone}/model.pt",
        report="results/landmarks/{backbone}/report.json",
    wildcard_constraints:
        backbone="|".join(TRAINED_LANDMARK_NETS) or "NONE",
    log:
        "results/logs/landmarks/train_{backbone}.log",
    message:
        "Training the {wildcards.backbone} landmark network"
    shell:
        "dfer train-landmarks --params {input.params} --backbone {wildcards.backbone} "
        "--out results/landmarks/{wildcards.backbone} > {log} 2>&1"


rule measure_landmarks:
    input:
        data=[data_ready(d) for d in ION_DATASETS],
        weights=lambda wildcards: landmark_weights(PARAMS, wildcards.backbone),
        params=stage_file("train_landmarks"),
    output:
        report="results/landmarks/{backbone}/report.json",
    wildcard_constraints:
        backbone="|".join(CONFIGURED_LANDMARK_NETS) or "NONE",
    log:
        "results/logs/landmarks/measure_{backbone}.log",
    message:
        "Measuring the ION of the configured {wildcards.backbone} weights on {ION_DATASETS}"
    shell:
        "dfer train-landmarks --params {input.params} --backbone {wildcards.backbone} --weights {input.weights} "
        "--epochs 0 --datasets {ION_DATASETS} --out results/landmarks/{wildcards.backbone} > {log} 2>&1"


rule extract_features:
    input:
        unpack(feature_inputs),
        params=stage_file("extract_features"),
    output:
        directory("results/features/{dataset}/{backbone}"),
    params:
        weights=lambda wildcards: landmark_weights(PARAMS, wildcards.backbone),
    log:
        "results/logs/features/{dataset}/{backbone}.log",
    message:
        "Caching {wildcards.backbone} landmark-aware features of {wildcards.dataset}"
    shell:
        "dfer extract-features --params {input.params} --dataset {wildcards.dataset} "
        "--backbone {wildcards.backbone} --weights {params.weights} --out {output} > {log} 2>&1"
