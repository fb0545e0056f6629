"""End to end: `dvc repro` (= `snakemake --cores 2 all_tables`) from a clean checkout on the synthetic
benchmark, shrunk for CI (tests/workflow_project.py); the no-op re-run; one changed parameter re-running only
what depends on it; MLflow (store and UI in headless Chromium); the DVC push/pull round trip."""
from __future__ import annotations

import csv
import io
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from workflow_project import BIN, DECLARED_FIGURES, DECLARED_TABLES, ROOT, commit, env_for, job_counts, run, tables_of

pytestmark = pytest.mark.slow   # `pytest -m "not slow"` leaves the end-to-end runs out


def test_dvc_repro_renders_every_table_and_figure_from_runs(reproduced):
    proj = reproduced.proj
    plan = yaml.safe_load((proj / "workflow/tables.yaml").read_text())
    tables = list(plan["tables"])
    assert tables == DECLARED_TABLES
    for table in tables:
        md = (proj / f"results/tables/{table}.md").read_text()
        assert "Data: **synthetic**" in md, table
        tex = (proj / f"results/tables/{table}.tex").read_text()
        assert tex.startswith("%") or "\\begin" in tex
        rows = list(csv.DictReader(io.StringIO((proj / f"results/tables/{table}.csv").read_text())))
        measured = [r for r in rows if (r["runs"] or r["metric"] in ("ion", "params_m")) and r["note"] != "not run"]
        assert measured, table
        for r in measured:  # every cell backed by a run (or the landmark report) has our number
            assert r["ours"] != "" and 0 <= float(r["ours"]) <= 100 + 1e6 * (r["metric"] == "params_m"), (table, r)
        cited = [r for r in rows if r["paper"] != ""]
        assert cited and all(r["diff"] != "" for r in cited if r["ours"] != ""), table
    for figure in plan.get("figures", {}):
        png = proj / f"results/figures/{figure}.png"
        assert png.stat().st_size > 10_000, figure
    # Main results: the fold spread is shown where a cell has several folds.
    main = list(csv.DictReader(io.StringIO((proj / "results/tables/table_9.csv").read_text())))
    assert any(r["n_runs"] == "2" and r["spread"] != "" for r in main)


def test_each_unique_run_trains_exactly_once(reproduced):
    counts = job_counts(reproduced.log)
    runs = reproduced.runs
    cells = sum(r["cells"] for r in runs.values())
    assert counts["train"] == len(runs) < cells
    trained = sorted(p.parent.name for p in (reproduced.proj / "results/runs").glob("*/done.json"))
    assert trained == sorted(runs)
    print(f"\n{len(runs)} unique runs serve {cells} table cells")


def test_noop_rerun_does_nothing(reproduced):
    proc, seconds = run(reproduced.proj, "snakemake", "--cores", "2", "all_tables")
    assert "Nothing to be done" in proc.stdout + proc.stderr
    proc, dvc_seconds = run(reproduced.proj, "dvc", "repro")
    assert "didn't change" in proc.stdout or "up to date" in proc.stdout, proc.stdout
    assert tables_of(reproduced.proj) == reproduced.tables
    print(f"\nno-op re-run: snakemake {seconds:.1f} s, dvc repro {dvc_seconds:.1f} s")


def test_changing_one_parameter_reruns_only_its_dependents(reproduced):
    proj = reproduced.proj
    # A UniLearn training setting: only the UniLearn runs retrain, and only the tables, the figure and the claims
    # scorecard that show them.
    proc, _ = run(proj, "snakemake", "-n", "all_tables", "--config",
                  "methods={unilearn: {train: {loss: onehot}}}")
    counts = job_counts(proc.stdout + proc.stderr)
    unilearn = [h for h, r in reproduced.runs.items() if r["name"].startswith("unilearn/")]
    shown = {t for h in unilearn for t in reproduced.runs[h]["tables"]}
    assert counts.pop("train") == len(unilearn) > 0
    assert counts.pop("table") == len(shown & set(DECLARED_TABLES)) == 5   # Table IX and UniLearn's 2-5
    assert counts.pop("figure") == len(shown - set(DECLARED_TABLES)) == 1   # Fig. 3a
    assert counts.pop("claims") == 1
    assert set(counts) <= {"all_tables"}, counts
    # How the fold spread is shown: only the tables are rendered again, nothing retrains.
    proc, _ = run(proj, "snakemake", "-n", "all_tables", "--config", "tables={spread: minmax}")
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts and not {"train", "extract_features", "synth"} & set(counts), counts
    assert counts["table"] == len(DECLARED_TABLES)


def test_mlflow_store_has_every_run_with_metrics_and_artifacts(reproduced):
    from mlflow.tracking import MlflowClient

    proj = reproduced.proj
    client = MlflowClient(tracking_uri=f"sqlite:///{proj}/results/mlflow/mlflow.db")
    exp = client.get_experiment_by_name("dfer")
    runs = client.search_runs([exp.experiment_id], max_results=5000)
    children = {r.data.tags["dfer.config_hash"]: r for r in runs if r.data.tags.get("dfer.stage") == "train"}
    assert set(children) == set(reproduced.runs)
    parents = {r.data.tags["dfer.parent"]: r.info.run_id for r in runs if "dfer.parent" in r.data.tags}
    assert set(parents) == set(DECLARED_TABLES) | set(DECLARED_FIGURES) | {"claims"}
    claims = client.get_run(parents["claims"])
    assert {"claims.md", "claims.csv"} <= {a.path for a in client.list_artifacts(parents["claims"])}
    assert sum(claims.data.metrics[f"claims_{v}"] for v in ("reproduced", "inconclusive", "reversed")) >= 15
    # every training run a table shows is filed under the first table it serves
    shown = {h: r for h, r in children.items() if reproduced.runs[h]["tables"]}
    assert shown and all(r.data.tags.get("mlflow.parentRunId") == parents[reproduced.runs[h]["tables"][0]]
                         for h, r in shown.items())
    run_ = next(r for r in children.values() if r.info.run_name == "s2d/DFEW/fold1")
    assert run_.data.tags["mlflow.parentRunId"] in parents.values()
    assert {"test_uar", "test_war", "train_loss"} <= set(run_.data.metrics)
    assert sum(k.startswith("test_acc_") for k in run_.data.metrics) == 7  # per-class accuracy
    assert run_.data.tags.get("mlflow.source.git.commit") and run_.data.tags.get("dfer.tables")
    assert run_.data.params.get("train.epochs") == "1"
    artifacts = {a.path for a in client.list_artifacts(run_.info.run_id)}
    assert {"config.yaml", "confusion.png"} <= artifacts, artifacts
    history = client.get_metric_history(run_.info.run_id, "train_loss")
    assert len(history) == 1  # one point per epoch (the shrunk recipe trains one)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() != 0:
        pytest.skip("the MLflow UI test needs Chromium: `apt-get install -y chromium` (CI installs it as root)")
    done = subprocess.run(["bash", str(ROOT / "tests/apt_install.sh"), "chromium"], capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, f"installing Chromium failed:\n{done.stderr[-3000:]}"
    return shutil.which("chromium")


def test_mlflow_ui_lists_the_runs_in_headless_chromium(reproduced, tmp_path):
    chromium = _chromium()
    proj = reproduced.proj
    port = _free_port()
    ui = subprocess.Popen([str(BIN / "mlflow"), "ui", "--backend-store-uri",
                           f"sqlite:///{proj}/results/mlflow/mlflow.db", "--host", "127.0.0.1", "--port", str(port)],
                          cwd=proj, env=env_for(proj), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=f"sqlite:///{proj}/results/mlflow/mlflow.db")
        exp = client.get_experiment_by_name("dfer")
        run_ = client.search_runs([exp.experiment_id], "attributes.run_name = 's2d/DFEW/fold1'")[0]
        parents = client.search_runs([exp.experiment_id], "tags.`dfer.parent` != ''")  # tables + claims
        browse = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  f"--user-data-dir={tempfile.mkdtemp()}", "--virtual-time-budget=20000", "--window-size=1600,1000"]
        pages = {}
        for page, url in {"runs": f"#/experiments/{exp.experiment_id}/runs",
                          "run": f"#/experiments/{exp.experiment_id}/runs/{run_.info.run_id}"}.items():
            url = f"http://127.0.0.1:{port}/{url}"
            pages[page] = subprocess.run([*browse, "--dump-dom", url], capture_output=True, text=True,
                                         timeout=180).stdout
            subprocess.run([*browse, f"--screenshot={tmp_path / page}.png", url], capture_output=True, timeout=180)
    finally:
        ui.terminate()
        ui.wait(30)
    text = {page: re.sub(r"<[^>]+>", " ", dom) for page, dom in pages.items()}
    # The runs page: one parent per table, figure and the claims scorecard, every training run nested under them
    # (the UI pages 100 runs at a time, the newest first: the parents, filed by the last jobs, are on page one).
    total = len(reproduced.runs) + len(parents)
    assert re.search(rf"\b{min(total, 100)}\s+matching runs", text["runs"]), text["runs"][-3000:]
    for table in DECLARED_TABLES:
        assert re.search(rf">\s*{table}\s*<", pages["runs"]), table
    # A run's page: its name, its parent table and its final metrics.
    assert "s2d/DFEW/fold1" in text["run"] and "test_uar" in text["run"] and "table_" in text["run"]
    assert f"{run_.data.metrics['test_uar']}"[:6] in text["run"]
    assert (tmp_path / "runs.png").stat().st_size > 20_000


def test_dvc_push_pull_round_trip_needs_no_retraining(reproduced, tmp_path):
    proj = reproduced.proj
    remote = tmp_path / "remote"
    run(proj, "dvc", "remote", "add", "-f", "-d", "ci", str(remote))
    commit(proj, "dvc remote")
    run(proj, "dvc", "push")
    fresh = tmp_path / "fresh"
    subprocess.run(["git", "clone", "-q", str(proj), str(fresh)], check=True)
    # Hard links from the cache instead of copies halve the clone's disk (a CI machine's disk is tight; DVC's
    # advice for large outputs). The MLflow store is written in place by later jobs: unprotect makes it a copy.
    run(fresh, "dvc", "config", "--local", "cache.type", "hardlink")
    run(fresh, "dvc", "pull")
    run(fresh, "dvc", "unprotect", "results/mlflow")
    assert next((fresh / "results/features").rglob("*.npy")).stat().st_nlink == 2   # workspace + cache
    store = next((fresh / "results/mlflow").glob("*.db"))
    assert store.stat().st_nlink == 1 and os.access(store, os.W_OK)
    assert tables_of(fresh) == reproduced.tables
    # Restored files carry new timestamps in whatever order DVC wrote them: nothing may re-run.
    proc, _ = run(fresh, "snakemake", "-n", "all_tables")
    assert "Nothing to be done" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
    # Tables rendered again from the pulled runs come out identical, without training anything.
    shutil.rmtree(fresh / "results/tables")
    proc, _ = run(fresh, "snakemake", "--cores", "2", "all_tables")
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts.get("table") == len(DECLARED_TABLES) and not {"train", "extract_features"} & set(counts), counts
    assert tables_of(fresh) == reproduced.tables
