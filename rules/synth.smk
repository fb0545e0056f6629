# Data: generate the synthetic mini-benchmark (synthetic preset) or check that real data is readable; and the
# resolved params each stage command reads (results/config/<stage>.yaml).


rule stage_params:
    output:
        "results/config/{stage}.yaml",
    params:
        settings=lambda wildcards: stage_params(PARAMS, STAGE_SECTIONS[wildcards.stage]),
    wildcard_constraints:
        stage="|".join(STAGE_SECTIONS),
    log:
        "results/logs/config/{stage}.log",
    localrule: True
    run:
        write_stage_params(PARAMS, STAGE_SECTIONS[wildcards.stage], output[0], wildcards.stage)


rule synth:
    input:
        params=stage_file("synth"),
    output:
        directory("results/synth"),
    log:
        "results/logs/synth.log",
    message:
        "Generating the synthetic benchmark in the real datasets' formats"
    shell:
        "dfer synth --params {input.params} --out {output} > {log} 2>&1"


rule check_data:
    input:
        params=stage_file("check_data"),
    output:
        "results/data_check/{dataset}.txt",
    params:
        root=lambda wildcards: dataset_root(wildcards.dataset),
    log:
        "results/logs/check_data/{dataset}.log",
    message:
        "Checking {wildcards.dataset} at {params.root}"
    shell:
        "dfer check-data {wildcards.dataset} --params {input.params} > {output} 2> {log}"
