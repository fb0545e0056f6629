# Face alignment: train the detector (synthetic preset) and align datasets given as raw videos (MAFW).


rule train_detector:
    input:
        data=SYNTH_DIR,
        params=stage_file("train_detector"),
    output:
        "results/align/detector/model.pt",
    log:
        "results/logs/align/train_detector.log",
    message:
        "Training the face detector"
    shell:
        "dfer train-detector --params {input.params} --out {output} > {log} 2>&1"


rule align:
    input:
        data=lambda wildcards: data_ready(wildcards.dataset),
        detector=detector_weights(),
        params=stage_file("align"),
    output:
        directory("results/align/{dataset}"),
    log:
        "results/logs/align/{dataset}.log",
    message:
        "Detecting, cropping and aligning faces of {wildcards.dataset}"
    shell:
        "dfer align --params {input.params} --dataset {wildcards.dataset} --detector {input.detector} "
        "--out {output} > {log} 2>&1"
