# Data: generate the synthetic mini-benchmark (synthetic preset) or check that real data is readable. Each job
# writes the params sections it runs with to results/config/<rule>/ and passes them with --params.


rule synth:
    output:
        data=directory("results/synth"),
        params="results/config/synth.yaml",
    params:
        settings=lambda wildcards: stage_settings("synth"),
    log:
        "results/logs/synth.log",
    message:
        "Generating the synthetic benchmark in the real datasets' formats"
    shell:
        "printf '%s' {params.settings:q} > {output.params} && "
        "dfer synth --params {output.params} --out {output.data} > {log} 2>&1"


rule check_data:
    output:
        report="results/data_check/{dataset}.txt",
        params="results/config/check_data/{dataset}.yaml",
    params:
        settings=lambda wildcards: stage_settings("check_data"),
        root=lambda wildcards: dataset_root(wildcards.dataset),
    log:
        "results/logs/check_data/{dataset}.log",
    message:
        "Checking {wildcards.dataset} at {params.root}"
    shell:
        "printf '%s' {params.settings:q} > {output.params} && "
        "dfer check-data {wildcards.dataset} --params {output.params} > {output.report} 2> {log}"
