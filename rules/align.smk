# Face alignment: train the detector (synthetic preset) and align datasets given as raw videos (MAFW).


rule train_detector:
    input:
        SYNTH_DIR,
    output:
        model="results/align/detector/model.pt",
        params="results/config/train_detector.yaml",
    params:
        settings=lambda wildcards: stage_settings("train_detector"),
    priority: critical_path_priority("train_detector")
    log:
        "results/logs/align/train_detector.log",
    message:
        "Training the face detector"
    shell:
        "printf '%s' {params.settings:q} > {output.params} && "
        "dfer train-detector --params {output.params} --out {output.model} > {log} 2>&1"


rule align:
    input:
        data=lambda wildcards: data_ready(wildcards.dataset),
        detector=detector_weights(),
    output:
        frames=directory("results/align/{dataset}"),
        params="results/config/align/{dataset}.yaml",
    params:
        settings=lambda wildcards: stage_settings("align"),
    log:
        "results/logs/align/{dataset}.log",
    message:
        "Detecting, cropping and aligning faces of {wildcards.dataset}"
    shell:
        "printf '%s' {params.settings:q} > {output.params} && "
        "dfer align --params {output.params} --dataset {wildcards.dataset} --detector {input.detector} "
        "--out {output.frames} > {log} 2>&1"
