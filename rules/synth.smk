# Data: generate the synthetic mini-benchmark (synthetic preset) or check that real data is readable.


rule synth:
    output:
        directory("results/synth"),
    params:
        settings=section("synth"),
    log:
        "results/logs/synth.log",
    message:
        "Generating the synthetic benchmark in the real datasets' formats"
    shell:
        "dfer synth --out {output} > {log} 2>&1"


rule check_data:
    output:
        "results/data_check/{dataset}.txt",
    params:
        root=lambda wildcards: dataset_root(wildcards.dataset),
    log:
        "results/logs/check_data/{dataset}.log",
    message:
        "Checking {wildcards.dataset} at {params.root}"
    shell:
        "dfer check-data {wildcards.dataset} > {output} 2> {log}"
