"""MLflow tracking for training and evaluation jobs; a tracking outage never kills a job.

The engine calls::

    with Tracker.from_config(run_cfg, stage="train") as tr:   # stage: train | evaluate
        tr.log_params()                                       # resolved run config, flattened
        tr.log_epoch({"loss": .., "uar": ..}, epoch)
        tr.log_eval(eval_json_path_or_dict, confusion_png)    # final UAR/WAR/per-class + artifacts

One MLflow run per planned run (its config hash), found again by the tag ``dfer.config_hash`` so the
evaluation job (and a requeued training job) log into the same run. Each table (and the claims scorecard) has
a parent run, made by the job that renders it (``file_table``): it logs the rendered table there and files its
runs under it, a run under the first table it serves, with every table it serves as a tag. Tags: git commit,
config hash, DVC hash of the data, SLURM job id. Each run's datasets are its MLflow inputs (``dataset_inputs``:
the UI's Dataset column), digest = the DVC hash of the data. Tracking URI: ``MLFLOW_TRACKING_URI``, else the run config's
``tracking`` (params.yaml ``mlflow``). A SQLite store is created under a file lock (concurrent first jobs would
race on its schema); every MLflow call retries on ``database is locked`` and, if it still fails, warns once and
turns the tracker into a no-op.
"""
from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import time
import warnings
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable
from urllib.parse import urlparse

from dfer.config import flatten

HASH_TAG = "dfer.config_hash"
PARENT_TAG = "dfer.parent"


class TrackingWarning(UserWarning):
    """MLflow was unreachable or failed; the job went on without tracking."""


def _root() -> Path:
    try:
        from dfer.config import project_root

        return project_root()
    except Exception:
        return Path.cwd()


def settings(mlflow_cfg: dict, root: Path | None = None) -> dict:
    """Tracking settings of a params.yaml ``mlflow:`` section (or a run config's ``tracking:``), paths pinned to
    the project root; ``MLFLOW_TRACKING_URI`` / ``MLFLOW_EXPERIMENT_NAME`` win."""
    root = root or _root()
    uri = os.environ.get("MLFLOW_TRACKING_URI") or mlflow_cfg["tracking_uri"]
    artifacts = mlflow_cfg["artifact_location"]
    return {"tracking_uri": absolute_uri(uri, root),
            "artifact_location": str((root / artifacts).resolve()) if not Path(artifacts).is_absolute()
            else artifacts,
            "experiment": os.environ.get("MLFLOW_EXPERIMENT_NAME") or mlflow_cfg["experiment"]}


def absolute_uri(uri: str, root: Path) -> str:
    """``sqlite:///relative.db`` is relative to the CWD; pin it to the project root (jobs run anywhere)."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        rel = uri[len("sqlite:///"):]
        path = (root / rel).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    return uri


def _reachable(uri: str, timeout: float = 2.0) -> bool:
    """Fail fast on a dead HTTP server (MLflow's own retries would stall a job for minutes)."""
    u = urlparse(uri)
    if u.scheme not in ("http", "https"):
        return True
    try:
        with socket.create_connection((u.hostname, u.port or (443 if u.scheme == "https" else 80)), timeout):
            return True
    except OSError:
        return False


def _retry(fn: Callable[[], Any], attempts: int = 8) -> Any:
    """SQLite under concurrent jobs: retry `database is locked` with jittered backoff."""
    for i in range(attempts):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - MLflow wraps sqlite errors in several types
            if "locked" not in str(exc).lower() or i == attempts - 1:
                raise
            time.sleep(0.2 * 2 ** i + random.random() * 0.2)


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def dvc_hash(data_root: str | None, root: Path) -> str | None:
    """md5 of the data as DVC recorded it (``<root>.dvc`` or dvc.lock; ``<folder md5>:<subpath>`` for data
    inside a versioned folder); None when DVC does not track it (yet: the first `dvc repro` writes dvc.lock
    only when it ends)."""
    if not data_root:
        return None
    import yaml

    dvc_file = root / f"{data_root.rstrip('/')}.dvc"
    try:
        if dvc_file.is_file():
            outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or []
            if outs and outs[0].get("md5"):
                return str(outs[0]["md5"])
        lock = root / "dvc.lock"
        if lock.is_file():
            want = data_root.rstrip("/")
            for stage in ((yaml.safe_load(lock.read_text()) or {}).get("stages") or {}).values():
                for o in stage.get("outs") or []:
                    path = o.get("path", "").rstrip("/")
                    if o.get("md5") and path == want:
                        return str(o["md5"])
                    if o.get("md5") and want.startswith(path + "/"):  # inside a versioned folder (results/synth)
                        return f"{o['md5']}:{want[len(path) + 1:]}"
    except Exception:
        return None
    return None


def dataset_inputs(run_cfg: dict, root: Path) -> list:
    """The run's datasets as MLflow dataset inputs (``mlflow.entities.DatasetInput``): the data it trains on
    (``dataset``, and ``train.joint.dataset``'s image set under joint fine-tuning), context ``training``, and its
    cross-dataset test sets (``eval_datasets``), context ``testing``. Each is an ``mlflow.data`` MetaDataset named
    after the dataset, its source the data root (a local path). Its digest (MLflow allows 36 characters):

    - ``dvc``: the md5 DVC recorded for the root (``dvc_hash``: ``<root>.dvc`` or dvc.lock); for a root inside a
      versioned folder (``results/synth/DFEW`` in ``results/synth``) the folder's md5, the input tag ``dvc.md5``
      keeping ``<md5>:<subpath>``;
    - else ``labels``: not DVC's, a content hash (sha256, first 32 hex digits) of the split / annotation files
      the run's labels come from (``annotations.label_files``: its fold's split files, an image set's lists);
    - else ``source`` (no such file, e.g. AFEW): MLflow's own digest of the name and source.

    The input tag ``dfer.digest`` says which; ``dfer.fold`` names the fold of a folded dataset."""
    import hashlib

    from mlflow.data.dataset_source_registry import get_dataset_source_from_json
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    from dfer.data.annotations import label_files

    joint = (run_cfg.get("train") or {}).get("joint") or {}
    used = [(run_cfg.get("dataset"), run_cfg.get("data"), "training"),
            (joint.get("dataset"), run_cfg.get("joint_data"), "training")]
    used += [(d, (run_cfg.get("eval_data") or {}).get(d), "testing") for d in run_cfg.get("eval_datasets") or []]
    fold = run_cfg.get("fold")
    inputs = []
    for name, data, context in used:
        if not name or not data or not data.get("root") or name in {i.dataset.name for i in inputs}:
            continue  # a joint set also tested on is a training input
        tags = {MLFLOW_DATASET_CONTEXT: context}
        digest = dvc_hash(data["root"], root)
        if digest:
            tags.update({"dfer.digest": "dvc", "dvc.md5": digest})
            digest = digest.split(":", 1)[0]
        else:
            files = label_files(name, data, fold, base=root)
            if files:
                h = hashlib.sha256()
                for f in files:
                    h.update(f.name.encode() + b"\0" + f.read_bytes())
                digest, tags["dfer.digest"] = h.hexdigest()[:32], "labels"
            else:
                tags["dfer.digest"] = "source"
        if fold is not None and name in ("DFEW", "MAFW"):
            tags["dfer.fold"] = str(fold)
        path = Path(data["root"]) if Path(data["root"]).is_absolute() else root / data["root"]
        source = get_dataset_source_from_json(json.dumps({"uri": str(path.resolve())}), "local")
        d = MetaDataset(source, name=name, digest=digest[:36] if digest else None).to_dict()
        inputs.append(DatasetInput(Dataset(d["name"], d["digest"], d["source_type"], d["source"]),
                                   [InputTag(k, v) for k, v in tags.items()]))
    return inputs


def _param_values(cfg: dict) -> dict[str, str]:
    """Flattened config as MLflow param strings (MLflow caps a value at 6000 characters)."""
    return {k: (v if isinstance(v, str) else json.dumps(v))[:6000] for k, v in flatten(cfg).items()}


class Tracker:
    """One MLflow run; every method is a no-op (after one warning) once tracking has failed."""

    def __init__(self, tracking_uri: str, experiment: str, run_name: str, tags: dict[str, str],
                 config: dict | None = None, parent_run_id: str | None = None, config_hash: str | None = None,
                 artifact_location: str | None = None, root: Path | None = None):
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name
        self.tags = {k: str(v) for k, v in tags.items() if v is not None}
        self.config = config
        self.parent_run_id = parent_run_id
        self.config_hash = config_hash
        self.artifact_location = artifact_location
        self.root = root
        self.client = None
        self.run_id: str | None = None
        self.enabled = True
        self._status = "FINISHED"

    # -- construction ------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, run_cfg: dict, stage: str = "train", mlflow_cfg: dict | None = None,
                    root: str | Path | None = None) -> "Tracker":
        from dfer.engine.runconfig import run_hash

        root = Path(root) if root else _root()
        h = run_hash(run_cfg)
        st = settings(mlflow_cfg or run_cfg["tracking"], root)
        tags = {
            HASH_TAG: h, "dfer.stage": stage,
            "dfer.task": run_cfg.get("task"), "dfer.method": run_cfg.get("method"),
            "dfer.dataset": run_cfg.get("dataset"), "dfer.fold": run_cfg.get("fold"),
            "dfer.model": (run_cfg.get("model") or {}).get("name"),
            "mlflow.source.git.commit": git_commit(root),
            "dvc.data.md5": dvc_hash((run_cfg.get("data") or {}).get("root"), root) or "untracked",
            "slurm.job_id": os.environ.get("SLURM_JOB_ID"),
            "dfer.output_dir": run_cfg.get("output_dir"),
        }
        return cls(st["tracking_uri"], st["experiment"], run_cfg.get("name") or h, tags, config=run_cfg,
                   config_hash=h, artifact_location=st["artifact_location"], root=root)

    # -- plumbing ----------------------------------------------------------------------------------------
    def _safe(self, what: str, fn: Callable[[], Any]) -> Any:
        if not self.enabled:
            return None
        try:
            return _retry(fn)
        except Exception as exc:  # noqa: BLE001 - an outage must not kill training
            self.enabled = False
            warnings.warn(f"MLflow tracking disabled ({what} failed against {self.tracking_uri}: "
                          f"{type(exc).__name__}: {str(exc)[:300]}); the job continues without tracking",
                          TrackingWarning, stacklevel=3)
            return None

    def start(self) -> "Tracker":
        if not _reachable(self.tracking_uri):
            self.enabled = False
            warnings.warn(f"MLflow tracking server {self.tracking_uri} is unreachable; the job continues "
                          "without tracking", TrackingWarning, stacklevel=2)
            return self

        def _start():
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(tracking_uri=self.tracking_uri)
            exp_id = ensure_experiment(self.client, self.experiment, self.artifact_location, self.tracking_uri)
            existing = None
            if self.config_hash:
                found = self.client.search_runs([exp_id], f"tags.`{HASH_TAG}` = '{self.config_hash}'",
                                                max_results=1, order_by=["attributes.start_time DESC"])
                existing = found[0] if found else None
            if existing is not None:
                self.run_id = existing.info.run_id
                self.client.update_run(self.run_id, status="RUNNING")
            else:
                tags = dict(self.tags)
                if self.parent_run_id:
                    tags["mlflow.parentRunId"] = self.parent_run_id
                self.run_id = self.client.create_run(exp_id, run_name=self.run_name, tags=tags).info.run_id
            for k, v in self.tags.items():  # the stage / SLURM id of this job
                self.client.set_tag(self.run_id, k, v)
        self._safe("start run", _start)
        if self.run_id and self.config and self.config.get("dataset"):
            self.log_inputs(self.config)
        return self

    def __enter__(self) -> "Tracker":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.end("FAILED" if exc_type else self._status)
        return False

    def end(self, status: str = "FINISHED") -> None:
        if self.run_id:
            self._safe("end run", lambda: self.client.set_terminated(self.run_id, status=status))

    # -- logging -----------------------------------------------------------------------------------------
    def log_params(self, params: dict | None = None) -> None:
        """Flattened resolved run config (or the given dict) as MLflow params; config.yaml as artifact."""
        cfg = params if params is not None else self.config or {}
        if not self.run_id:
            return

        def _log():
            from mlflow.entities import Param

            existing = self.client.get_run(self.run_id).data.params
            items = [Param(k, v) for k, v in _param_values(cfg).items() if k not in existing]
            for i in range(0, len(items), 100):
                self.client.log_batch(self.run_id, params=items[i:i + 100])
            self.client.log_dict(self.run_id, cfg, "config.yaml")
        self._safe("log params", _log)

    def log_inputs(self, config: dict, root: Path | None = None) -> None:
        """The run config's datasets as the run's MLflow inputs (``dataset_inputs``); the store keeps one input
        per dataset and digest, so the evaluation job logging them again adds nothing. A failure only warns:
        the run and the rest of its tracking go on."""
        if not (self.enabled and self.run_id):
            return
        try:
            inputs = dataset_inputs(config, Path(root or self.root or _root()))
            if inputs:
                _retry(lambda: self.client.log_inputs(self.run_id, datasets=inputs))
        except Exception as exc:  # noqa: BLE001 - a dataset record must not cost the run its tracking
            warnings.warn(f"MLflow: the run's datasets were not logged ({type(exc).__name__}: {str(exc)[:300]})",
                          TrackingWarning, stacklevel=2)

    def log_epoch(self, metrics: dict[str, float], epoch: int) -> None:
        if not self.run_id:
            return

        def _log():
            from mlflow.entities import Metric

            ts = int(time.time() * 1000)
            ms = [Metric(k, float(v), ts, int(epoch)) for k, v in metrics.items() if _is_number(v)]
            self.client.log_batch(self.run_id, metrics=ms)
        self._safe("log epoch metrics", _log)

    def log_eval(self, eval_json: str | Path | dict, confusion_png: str | Path | None = None) -> None:
        """Final UAR, WAR and per-class accuracy as metrics; eval.json and the confusion plot as artifacts."""
        if not self.run_id:
            return
        ev = eval_json if isinstance(eval_json, dict) else json.loads(Path(eval_json).read_text())

        def _log():
            from mlflow.entities import Metric

            ts = int(time.time() * 1000)
            flat: dict[str, float] = {}
            for k in ("uar", "war", "UAR", "WAR", "acc", "loss"):
                if _is_number(ev.get(k)):
                    flat[f"test_{k.lower()}"] = float(ev[k])
            pc = ev.get("per_class")
            if isinstance(pc, dict):
                flat.update({f"test_acc_{_key(n)}": float(v) for n, v in pc.items() if _is_number(v)})
            elif isinstance(pc, list):
                flat.update({f"test_acc_class{i}": float(v) for i, v in enumerate(pc) if _is_number(v)})
            for ds, sub in (ev.get("cross") or {}).items():
                for k in ("uar", "war", "acc"):
                    if isinstance(sub, dict) and _is_number(sub.get(k)):
                        flat[f"cross_{_key(ds)}_{k}"] = float(sub[k])
            for name, sub in (ev.get("variants") or {}).items():  # inference-only variants (evaluate.variants)
                for k in ("uar", "war"):
                    if _is_number(sub.get(k)):
                        flat[f"variant_{_key(name)}_{k}"] = float(sub[k])
            if _is_number((ev.get("snippet_filter") or {}).get("rate")):
                flat["snippet_filter_rate"] = float(ev["snippet_filter"]["rate"])
            self.client.log_batch(self.run_id, metrics=[Metric(k, v, ts, 0) for k, v in flat.items()])
            if isinstance(eval_json, (str, Path)):
                self.client.log_artifact(self.run_id, str(eval_json))
            else:
                self.client.log_dict(self.run_id, ev, "eval.json")
            if confusion_png and Path(confusion_png).is_file():
                self.client.log_artifact(self.run_id, str(confusion_png))
        self._safe("log evaluation", _log)

    def log_artifact(self, path: str | Path) -> None:
        if self.run_id:
            self._safe("log artifact", lambda: self.client.log_artifact(self.run_id, str(path)))

    def set_tags(self, tags: dict[str, Any]) -> None:
        if self.run_id:
            self._safe("set tags", lambda: [self.client.set_tag(self.run_id, k, str(v)) for k, v in tags.items()])


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _key(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in str(name))


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


@contextmanager
def store_lock(tracking_uri: str):
    """Exclusive lock around creating a SQLite store and its experiment (a file next to the database); a no-op
    for servers, which serialise themselves."""
    if not tracking_uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    lock = Path(tracking_uri[len("sqlite:///"):] + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_experiment(client, name: str, artifact_location: str | None = None, tracking_uri: str = "") -> str:
    """The experiment's id, creating the store and the experiment if needed (under the store lock)."""
    with store_lock(tracking_uri):
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        loc = Path(artifact_location).resolve().as_uri() if artifact_location and "://" not in artifact_location \
            else artifact_location
        return client.create_experiment(name, artifact_location=loc)


def file_table(table: str, title: str, runs: dict[str, dict], mlflow_cfg: dict, artifacts: list[str | Path],
               metrics: dict[str, float] | None = None, root: str | Path | None = None) -> str | None:
    """The parent run of a table (or of the claims scorecard), found by its tag or made: the rendered files and
    summary metrics are logged on it, and each of ``runs`` (config hash -> {"tables": [...]}) gets the tag
    ``dfer.tables`` and, if this is the first table it serves, this parent. Best effort: returns the parent's
    run id, or None after one warning when tracking is unavailable."""
    if os.environ.get("DFER_NO_TRACKING") == "1":
        return None
    root = Path(root) if root else _root()
    st = settings(mlflow_cfg, root)
    tr = Tracker(st["tracking_uri"], st["experiment"], table, {})
    if not _reachable(tr.tracking_uri):
        warnings.warn(f"MLflow tracking server {tr.tracking_uri} is unreachable; {table} is not tracked",
                      TrackingWarning, stacklevel=2)
        return None

    def _file():
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tr.tracking_uri)
        exp_id = ensure_experiment(client, st["experiment"], st["artifact_location"], tr.tracking_uri)
        with store_lock(tr.tracking_uri):
            found = client.search_runs([exp_id], f"tags.`{PARENT_TAG}` = '{table}'", max_results=1)
            parent = found[0].info.run_id if found else client.create_run(
                exp_id, run_name=table, tags={PARENT_TAG: table, "dfer.title": title,
                                              "mlflow.source.git.commit": git_commit(root)}).info.run_id
        for h, run in runs.items():
            hit = client.search_runs([exp_id], f"tags.`{HASH_TAG}` = '{h}'", max_results=1)
            child = hit[0].info.run_id if hit else backfill_run(client, exp_id, h, run, root)
            if child is None:
                continue  # not finished, or trained with tracking off
            client.set_tag(child, "dfer.tables", ",".join(run["tables"]))
            if run["tables"] and run["tables"][0] == table:
                client.set_tag(child, "mlflow.parentRunId", parent)
        for path in artifacts:
            if Path(path).is_file():
                client.log_artifact(parent, str(path))
        for k, v in (metrics or {}).items():
            client.log_metric(parent, k, float(v))
        client.set_terminated(parent)
        return parent
    return tr._safe(f"file {table} under its parent run", _file)


def backfill_run(client, exp_id: str, config_hash: str, run: dict, root: Path) -> str | None:
    """Log a finished run the store lacks (its training job's tracking failed, e.g. SQLite stayed locked past
    the retries) from the files it left: config, per-epoch metrics, evaluation, confusion plot. Tagged
    ``dfer.backfilled``. None when the run has not finished or tracking was switched off for the job."""
    import yaml
    from mlflow.entities import Metric, Param

    out = root / run.get("output_dir", "")
    done, config = _read(out / "done.json"), out / "config.yaml"
    if done.get("config_hash") != config_hash or not config.is_file():
        return None
    cfg = yaml.safe_load(config.read_text()) or {}
    tags = {HASH_TAG: config_hash, "dfer.stage": "train", "dfer.backfilled": "true",
            "dfer.task": cfg.get("task"), "dfer.method": cfg.get("method"), "dfer.dataset": cfg.get("dataset"),
            "dfer.fold": cfg.get("fold"), "dfer.model": (cfg.get("model") or {}).get("name"),
            "mlflow.source.git.commit": git_commit(root), "dfer.output_dir": cfg.get("output_dir")}
    run_id = client.create_run(exp_id, run_name=cfg.get("name") or config_hash,
                               tags={k: str(v) for k, v in tags.items() if v is not None}).info.run_id
    params = [Param(k, v) for k, v in _param_values(cfg).items()]
    for i in range(0, len(params), 100):
        client.log_batch(run_id, params=params[i:i + 100])
    client.log_dict(run_id, cfg, "config.yaml")
    ts = int(time.time() * 1000)
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()] \
        if (out / "metrics.jsonl").is_file() else []
    epochs = [Metric(k, float(v), ts, int(row.get("epoch", i + 1))) for i, row in enumerate(history)
              for k, v in row.items() if k != "epoch" and _is_number(v)]
    for i in range(0, len(epochs), 500):
        client.log_batch(run_id, metrics=epochs[i:i + 500])
    tracker = Tracker("", "", "", {})  # for its evaluation logging, on this client and run
    tracker.client, tracker.run_id = client, run_id
    tracker.log_inputs(cfg, root)
    if (out / "eval.json").is_file():
        tracker.log_eval(out / "eval.json", out / "confusion.png")
    client.set_terminated(run_id)
    return run_id
