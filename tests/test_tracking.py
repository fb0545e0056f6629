"""MLflow tracking into a temp SQLite store; an unreachable server only warns."""
import json
import time
import warnings
from pathlib import Path

import pytest

from dfer.engine.runconfig import run_hash
from dfer.tracking import HASH_TAG, Tracker, TrackingWarning, file_table

CFG = {"name": "s2d/DFEW/fold1", "task": "dfer", "method": "s2d", "dataset": "DFEW", "fold": 1,
       "data": {"root": "data/DFEW"}, "model": {"name": "s2d_tiny", "kwargs": {"fusion": "mcp"}},
       "train": {"epochs": 2, "lr": 0.001}, "output_dir": "results/runs/x",
       "tracking": {"tracking_uri": "sqlite:///results/mlflow/mlflow.db", "artifact_location": "results/mlflow/art",
                    "experiment": "dfer-test"}}


def test_params_metrics_artifacts_tags_and_parent(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    (tmp_path / "data").mkdir()
    (tmp_path / "data/DFEW.dvc").write_text("outs:\n- md5: abc123.dir\n  path: DFEW\n")
    h = run_hash(CFG)
    mcfg = {"tracking_uri": "sqlite:///results/mlflow/mlflow.db", "artifact_location": "results/mlflow/art",
            "experiment": "dfer-test"}
    with Tracker.from_config(CFG, mlflow_cfg=mcfg, root=tmp_path) as tr:
        tr.log_params()
        tr.log_epoch({"train_loss": 1.5, "val_uar": 0.3}, 0)
        tr.log_epoch({"train_loss": 0.9, "val_uar": 0.4}, 1)
    # the evaluation job finds the same MLflow run by the config hash
    ev = tmp_path / "eval.json"
    ev.write_text(json.dumps({"uar": 0.41, "war": 0.55, "per_class": {"Happy": 0.9, "Fear": 0.1}}))
    png = tmp_path / "confusion.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    with Tracker.from_config(CFG, stage="evaluate", mlflow_cfg=mcfg, root=tmp_path) as te:
        te.log_eval(ev, png)
    assert te.run_id == tr.run_id and te.enabled

    # The table jobs file the run under its first table's parent run and tag every table it serves.
    md = tmp_path / "table_2.md"
    md.write_text("| table |")
    runs = {h: {"tables": ["table_2", "table_7"]}}
    parent = file_table("table_2", "T2", runs, mcfg, [md], root=tmp_path)
    again = file_table("table_2", "T2", runs, mcfg, [md], root=tmp_path)
    other = file_table("table_7", "T7", runs, mcfg, [], metrics={"cells": 3}, root=tmp_path)
    assert parent == again and other not in (None, parent)  # one parent per table, found again

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'results/mlflow/mlflow.db'}")
    run = client.get_run(tr.run_id)
    assert run.data.params["train.lr"] == "0.001" and run.data.params["model.kwargs.fusion"] == "mcp"
    assert [m.value for m in client.get_metric_history(tr.run_id, "train_loss")] == [1.5, 0.9]
    assert run.data.metrics["test_uar"] == pytest.approx(0.41)
    assert run.data.metrics["test_acc_Fear"] == pytest.approx(0.1)
    tags = run.data.tags
    assert tags[HASH_TAG] == h and tags["dfer.tables"] == "table_2,table_7"
    assert tags["slurm.job_id"] == "4242" and tags["dvc.data.md5"] == "abc123.dir"
    assert "mlflow.source.git.commit" in tags
    assert tags["mlflow.parentRunId"] == parent                      # the first table it serves
    assert "table_2.md" in {a.path for a in client.list_artifacts(parent)}
    assert client.get_run(other).data.metrics["cells"] == 3
    arts = {a.path for a in client.list_artifacts(tr.run_id)}
    assert {"config.yaml", "eval.json", "confusion.png"} <= arts
    assert run.info.status == "FINISHED"


def test_unreachable_tracking_server_warns_and_training_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on the discard port
    t0 = time.time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Tracker.from_config(CFG, root=tmp_path) as tr:
            tr.log_params()
            for epoch in range(3):
                tr.log_epoch({"loss": 1.0 / (epoch + 1)}, epoch)
            tr.log_eval({"uar": 0.5, "war": 0.5})
        assert file_table("table_1", "T1", {}, CFG["tracking"], [], root=tmp_path) is None
    assert not tr.enabled and tr.run_id is None
    assert any(issubclass(w.category, TrackingWarning) and "unreachable" in str(w.message) for w in caught)
    assert time.time() - t0 < 20


def test_failure_mid_run_disables_tracking_with_one_warning(tmp_path):
    tr = Tracker(f"sqlite:///{tmp_path}/x.db", "e", "r", {})
    tr.run_id = "does-not-exist"
    from mlflow.tracking import MlflowClient

    tr.client = MlflowClient(tracking_uri=tr.tracking_uri)
    with pytest.warns(TrackingWarning):
        tr.log_epoch({"loss": 1.0}, 0)
    assert not tr.enabled
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning, no exception
        tr.log_epoch({"loss": 1.0}, 1)


def test_dvc_hash_of_the_data_from_dvc_files_and_the_lock(tmp_path):
    from dfer.tracking import dataset_inputs, dvc_hash

    assert dvc_hash("results/synth/DFEW", tmp_path) is None  # nothing versioned yet
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  all_tables:\n    cmd: snakemake --cores 2 all_tables\n    outs:\n"
        "    - path: results/synth\n      md5: 0123abcd.dir\n      nfiles: 3\n")
    assert dvc_hash("results/synth", tmp_path) == "0123abcd.dir"
    assert dvc_hash("results/synth/DFEW/", tmp_path) == "0123abcd.dir:DFEW"
    [synth] = dataset_inputs({"dataset": "DFEW", "fold": 1, "data": {"root": "results/synth/DFEW"}}, tmp_path)
    assert synth.dataset.digest == "0123abcd.dir"   # the versioned folder's md5 (MLflow digests: 36 characters)
    assert {t.key: t.value for t in synth.tags}["dvc.md5"] == "0123abcd.dir:DFEW"
    (tmp_path / "data").mkdir()
    (tmp_path / "data/DFEW.dvc").write_text("outs:\n- md5: feed.dir\n  path: DFEW\n")
    assert dvc_hash("data/DFEW", tmp_path) == "feed.dir"
    assert dvc_hash("data/MAFW", tmp_path) is None


def test_table_job_backfills_a_finished_run_the_store_lacks(tmp_path, monkeypatch):
    """A training job whose tracking failed (SQLite locked past the retries) still reaches MLflow: the table
    job that files it logs it from the files it left."""
    import yaml
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mcfg = CFG["tracking"]
    h = run_hash(CFG)
    out = tmp_path / CFG["output_dir"]
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(yaml.safe_dump(CFG))
    (out / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": 1.5}\n{"epoch": 2, "train_loss": 0.9}\n')
    (out / "eval.json").write_text(json.dumps({"uar": 0.41, "war": 0.55, "per_class": {"Happy": 0.9}}))
    runs = {h: {"tables": ["table_2"], "output_dir": CFG["output_dir"]},
            "0" * 12: {"tables": ["table_2"], "output_dir": "results/runs/unfinished"}}
    assert file_table("table_2", "T2", runs, mcfg, [], root=tmp_path) is not None
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'results/mlflow/mlflow.db'}")
    exp = client.get_experiment_by_name(mcfg["experiment"])
    assert client.search_runs([exp.experiment_id], f"tags.`{HASH_TAG}` = '{h}'") == []  # not finished yet
    (out / "done.json").write_text(json.dumps({"config_hash": h}))
    parent = file_table("table_2", "T2", runs, mcfg, [], root=tmp_path)
    [run] = client.search_runs([exp.experiment_id], f"tags.`{HASH_TAG}` = '{h}'")
    assert run.data.tags["dfer.backfilled"] == "true" and run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.params["train.lr"] == "0.001" and run.data.metrics["test_uar"] == pytest.approx(0.41)
    assert [m.value for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1.5, 0.9]
    assert file_table("table_2", "T2", runs, mcfg, [], root=tmp_path) == parent  # found again, not re-made
    assert len(client.search_runs([exp.experiment_id], f"tags.`{HASH_TAG}` = '{h}'")) == 1


def test_the_runs_datasets_are_its_inputs_digest_dvc_hash_else_label_files(tmp_path, monkeypatch):
    """The UI's Dataset column: the training set (digest: DVC's md5 of its root) and a cross-dataset test set DVC
    does not track (digest: a hash of its split files), each with its context; the evaluation job logging them
    again adds nothing; a failure to log them only warns."""
    import hashlib

    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "data").mkdir()
    (tmp_path / "data/DFEW.dvc").write_text("outs:\n- md5: 0123456789abcdef0123456789abcdef.dir\n  path: DFEW\n")
    splits = tmp_path / "data/FERV39K/Annotation"
    splits.mkdir(parents=True)
    (splits / "train.csv").write_text("a/b/c 1\n")
    (splits / "test.csv").write_text("d/e/f 2\n")
    labels = hashlib.sha256(b"train.csv\0a/b/c 1\n" + b"test.csv\0d/e/f 2\n").hexdigest()[:32]
    cfg = {**CFG, "eval_datasets": ["FERV39K"], "train": {**CFG["train"], "joint": None},
           "eval_data": {"FERV39K": {"root": "data/FERV39K", "format": "s2d", "splits": None}}}
    for stage in ("train", "evaluate"):
        with Tracker.from_config(cfg, stage=stage, root=tmp_path) as tr:
            pass
    assert tr.enabled
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'results/mlflow/mlflow.db'}")
    inputs = {i.dataset.name: i for i in client.get_run(tr.run_id).inputs.dataset_inputs}
    assert sorted(inputs) == ["DFEW", "FERV39K"]
    tags = {n: {t.key: t.value for t in i.tags} for n, i in inputs.items()}
    assert inputs["DFEW"].dataset.digest == "0123456789abcdef0123456789abcdef.dir"
    assert tags["DFEW"] == {"mlflow.data.context": "training", "dfer.digest": "dvc", "dvc.md5":
                            "0123456789abcdef0123456789abcdef.dir", "dfer.fold": "1"}
    assert inputs["DFEW"].dataset.source_type == "local"
    assert json.loads(inputs["DFEW"].dataset.source)["uri"] == str((tmp_path / "data/DFEW").resolve())
    assert inputs["FERV39K"].dataset.digest == labels
    assert tags["FERV39K"]["mlflow.data.context"] == "testing" and tags["FERV39K"]["dfer.digest"] == "labels"

    def broken(*_):
        raise OSError("unreadable split file")
    monkeypatch.setattr("dfer.tracking.dataset_inputs", broken)
    with pytest.warns(TrackingWarning, match="datasets were not logged"):
        with Tracker.from_config(cfg, stage="evaluate", root=tmp_path) as te:
            te.log_epoch({"loss": 1.0}, 0)
    assert te.enabled and client.get_metric_history(te.run_id, "loss")[0].value == 1.0
