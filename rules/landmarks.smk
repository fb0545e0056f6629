# Landmark-aware features: train a landmark network where no weights are configured, then cache features.


rule train_landmarks:
    input:
        SYNTH_DIR,
    output:
        model="results/landmarks/{backbone}/model.pt",
        report="results/landmarks/{backbone}/report.json",
    params:
        settings=section("landmarks"),
    log:
        "results/logs/landmarks/train_{backbone}.log",
    message:
        "Training the {wildcards.backbone} landmark network"
    shell:
        "dfer train-landmarks --backbone {wildcards.backbone} --out results/landmarks/{wildcards.backbone} "
        "> {log} 2>&1"


rule extract_features:
    input:
        unpack(feature_inputs),
    output:
        directory("results/features/{dataset}/{backbone}"),
    params:
        weights=lambda wildcards: landmark_weights(PARAMS, wildcards.backbone),
        settings=section("landmarks"),
    log:
        "results/logs/features/{dataset}/{backbone}.log",
    message:
        "Caching {wildcards.backbone} landmark-aware features of {wildcards.dataset}"
    shell:
        "dfer extract-features --dataset {wildcards.dataset} --backbone {wildcards.backbone} "
        "--weights {params.weights} --out {output} > {log} 2>&1"
