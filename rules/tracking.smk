# MLflow: the store and one parent run per table, created before any training job logs its child run.


rule mlflow_init:
    output:
        "results/mlflow/parents.json",
    params:
        tables={**{t: PLAN.titles[t] for t in TABLES}, "claims": "The paper's claims scored on these runs"},
        settings=PARAMS["mlflow"],
    log:
        "results/logs/mlflow_init.log",
    localrule: True
    run:
        from dfer.workflow.tracking import init_tracking

        init_tracking(params.tables, output[0], PARAMS["mlflow"])
