# Face alignment: train the detector (synthetic preset) and align datasets given as raw videos (MAFW).


rule train_detector:
    input:
        SYNTH_DIR,
    output:
        "results/align/detector/model.pt",
    params:
        settings=section("align"),
    log:
        "results/logs/align/train_detector.log",
    message:
        "Training the face detector"
    shell:
        "dfer train-detector --out {output} > {log} 2>&1"


rule align:
    input:
        data=lambda wildcards: data_ready(wildcards.dataset),
        detector=detector_weights(),
    output:
        directory("results/align/{dataset}"),
    params:
        settings=section("align"),
    log:
        "results/logs/align/{dataset}.log",
    message:
        "Detecting, cropping and aligning faces of {wildcards.dataset}"
    shell:
        "dfer align --dataset {wildcards.dataset} --detector {input.detector} --out {output} > {log} 2>&1"
