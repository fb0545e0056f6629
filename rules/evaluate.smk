# Evaluation with the paper's protocol, and the MLflow store + one parent run per table, created up front.


rule mlflow_init:
    output:
        "results/mlflow/parents.json",
    params:
        tables={t: PLAN.titles[t] for t in TABLES},
        settings=section("mlflow"),
    log:
        "results/logs/mlflow_init.log",
    localrule: True
    run:
        from dfer.workflow.tracking import init_tracking

        init_tracking(params.tables, output[0], PARAMS.get("mlflow"))


rule evaluate:
    input:
        unpack(run_inputs),
        model="results/runs/{hash}/model.pt",
        tracking=ancient("results/mlflow/parents.json"),
    output:
        "results/runs/{hash}/eval.json",
    log:
        "results/runs/{hash}/evaluate.log",
    message:
        "Evaluating {params.name}"
    params:
        name=lambda wildcards: RUNS[wildcards.hash].name,
    shell:
        "dfer evaluate --run results/runs/{wildcards.hash} > {log} 2>&1"
