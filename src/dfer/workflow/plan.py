"""The planner: resolve every cell of the paper's tables (workflow/tables.yaml) to a run config and its hash.

A cell is a spec (method, dataset, folds, init, set, metric) merged from a table's defaults, its column and
its row. The planner turns each (spec, fold) into the fully resolved run config of docs/architecture.md
("Run config"), named by ``config_hash`` of its content. Cells that resolve to the same content are one
run, so a run shared by several tables trains once. An init ``{run: SPEC}`` plans that run too and points
``model.init`` at its ``model.pt``: the upstream hash is part of the downstream content, so changing an
SFER parameter changes exactly the SFER run and the DFER runs built on it.

``dfer plan`` lists the unique runs and how many cells each serves.
"""
from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dfer.cli import add_params_args, command_parser
from dfer.data.annotations import with_aligned_frames
from dfer.config import (ConfigError, config_hash, deep_merge, dump_yaml, flatten, load_params, load_yaml,
                         project_root, set_path)
from dfer.engine.runconfig import UNHASHED_KEYS, run_hash
from dfer.workflow.claims import CLAIMS_RELPATH, claim_cells, load_claims
from dfer.io import write_json

TABLES_RELPATH = Path("workflow/tables.yaml")
RUNS_DIR = "results/runs"
SPEC_KEYS = {"method", "dataset", "folds", "init", "set", "metric", "eval_on", "variant"}
NON_RUN_METRICS = {"ion", "params_m"}  # read from the landmark stage, not from a run


@dataclass
class Run:
    hash: str
    config: dict
    cells: list[tuple[str, str, str, str]] = field(default_factory=list)  # (table, block, row, column)
    tables: list[str] = field(default_factory=list)
    upstream: list[str] = field(default_factory=list)  # hashes of runs whose model.pt this run starts from

    @property
    def name(self) -> str:
        return self.config["name"]

    @property
    def output_dir(self) -> str:
        return self.config["output_dir"]


@dataclass
class Cell:
    table: str
    block: str
    row: str
    column: str
    metric: str | None          # None for a cited-only row
    dataset: str | None          # dataset the metric is read from
    runs: list[str]              # run hashes (one per fold and claim seed); empty for cited-only rows / non-run metrics
    backbone: str | None = None  # for ion / params_m cells
    weights: str | None = None   # the landmark net's weights, for ion / params_m cells
    paper: float | None = None
    not_run: str | None = None   # why this preset leaves the cell out (params.yaml tables.not_run)
    variant: str | None = None   # an inference-only variant of the runs' evaluation (evaluate.variants)
    instead_of: str | None = None  # the table's dataset when the preset reads the cell on another (tables.read_on)


@dataclass
class Plan:
    runs: dict[str, Run]
    cells: dict[str, list[Cell]]          # table or figure id -> its cells, in row-major order
    titles: dict[str, str]
    notes: dict[str, str] = field(default_factory=dict)  # table id -> a note printed under its title
    provenance: dict = field(default_factory=dict)   # preset, synthetic?, dataset roots
    kinds: dict = field(default_factory=dict)        # figure id -> kind
    spread: str = "std"
    tracking: dict = field(default_factory=dict)     # params.yaml mlflow (the table jobs file their runs there)

    @property
    def tables(self) -> list[str]:
        """Table ids in declaration order (S2D's table_1..table_10, then NR-DFERNet's and UniLearn's)."""
        return [t for t in self.cells if t not in self.kinds]

    @property
    def figures(self) -> list[str]:
        return list(self.kinds)

    def table_runs(self, table: str) -> list[str]:
        return sorted({h for c in self.cells[table] for h in c.runs})

    def closure(self, hashes: list[str]) -> list[str]:
        """The runs plus every run they are initialised from (what must be trained first)."""
        seen: list[str] = []
        todo = list(hashes)
        while todo:
            h = todo.pop()
            if h not in seen:
                seen.append(h)
                todo.extend(self.runs[h].upstream)
        return sorted(seen)

    def digest(self, table: str) -> str:
        """Content hash of what a table's rendering depends on besides the eval files: its cells, runs,
        provenance and how the fold spread is shown."""
        return config_hash(self.table_payload(table))

    def table_payload(self, table: str) -> dict:
        """JSON-able description of one table for `dfer table --plan`."""
        return {
            "table": table,
            "title": self.titles.get(table, table),
            "note": self.notes.get(table, ""),
            "cells": [c.__dict__ for c in self.cells[table]],
            "runs": {h: {"name": self.runs[h].name, "output_dir": self.runs[h].output_dir,
                         "dataset": self.runs[h].config["dataset"], "fold": self.runs[h].config["fold"],
                         "tables": self.runs[h].tables}
                     for h in self.table_runs(table)},
            "tracking": self.tracking,
            "provenance": self._provenance(table),
            "spread": self.spread,
            **({"kind": self.kinds[table]} if table in self.kinds else {}),
        }

    def _provenance(self, table: str) -> dict:
        used = {self.runs[h].config["dataset"] for h in self.table_runs(table)}
        used |= {c.dataset for c in self.cells[table] if c.dataset}
        roots = {d: r for d, r in self.provenance.get("roots", {}).items() if d in used}
        return {"preset": self.provenance.get("preset"), "roots": roots,
                "synthetic": bool(roots) and all(r.startswith("results/synth") for r in roots.values())
                if roots else self.provenance.get("synthetic", False)}

    def runs_payload(self) -> dict:
        """hash -> name, tables, cells, upstream (`dfer plan --json`)."""
        return {h: {"name": r.name, "tables": r.tables, "cells": len(r.cells), "upstream": r.upstream}
                for h, r in sorted(self.runs.items())}


# ----------------------------------------------------------------------------------------------------------
def load_tables(path: str | Path | None = None) -> dict:
    p = Path(path) if path else project_root() / TABLES_RELPATH
    if not p.is_file():
        raise ConfigError(f"{p}: table declarations not found (expected workflow/tables.yaml)")
    try:
        return load_yaml(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc


def _merge_spec(*specs: dict | None) -> dict:
    out: dict = {}
    for s in specs:
        for k, v in (s or {}).items():
            if k not in SPEC_KEYS:
                raise ConfigError(f"workflow/tables.yaml: unknown cell key {k!r} (known: {sorted(SPEC_KEYS)})")
            if k == "set":
                out["set"] = {**out.get("set", {}), **(v or {})}
            else:
                out[k] = copy.deepcopy(v)
    return out


class Planner:
    """Builds run configs from the resolved params; memoises runs by hash."""

    def __init__(self, params: dict):
        self.params = params
        self.runs: dict[str, Run] = {}
        self.not_run_used: set[int] = set()  # indices of tables.not_run entries that selected a cell
        self.read_on_used: dict[str, set[int]] = {}  # table id -> indices of the tables.read_on entries it used

    # -- folds -------------------------------------------------------------------------------------------
    def folds(self, dataset: str, which: str | None) -> list[int | None]:
        all_folds = self._dataset_entry(dataset)["folds"]
        if not all_folds:
            return [None]
        tables = self.params["tables"]
        if which == "main":
            return list(tables["main_folds"] or all_folds)
        if which in (None, "ablation"):
            return list(tables["ablation_folds"])
        raise ConfigError(f"workflow/tables.yaml: folds must be ablation|main, got {which!r}")

    def _dataset_entry(self, dataset: str) -> dict:
        ds = self.params["data"]["datasets"]
        if dataset not in ds:
            raise ConfigError(f"dataset {dataset!r} is not in params.yaml data.datasets ({sorted(ds)})")
        return ds[dataset]

    def _method(self, method: str) -> dict:
        methods = self.params["methods"]
        if method not in methods:
            raise ConfigError(f"method {method!r} is not in params.yaml methods ({sorted(methods)})")
        return methods[method]

    # -- runs --------------------------------------------------------------------------------------------
    def with_seed(self, h: str, seed: int) -> str:
        """The run ``h`` trained with another seed (its upstream runs unchanged); return its hash."""
        run = self.runs[h]
        if run.config["seed"] == seed:
            return h
        cfg = {k: v for k, v in run.config.items() if k not in ("name", "output_dir")}
        cfg["seed"] = seed
        seeded = run_hash(cfg)
        if seeded not in self.runs:
            self._add_run(seeded, f"{run.name}{',' if '+' in run.name else '+'}seed={seed}", cfg, list(run.upstream))
        return seeded

    def _add_run(self, h: str, name: str, cfg: dict, upstream: list[str]) -> None:
        # Human keys first, so config.yaml reads like the architecture example; the folder is named by the hash.
        self.runs[h] = Run(hash=h, config={"name": name, **cfg, "output_dir": f"{RUNS_DIR}/{h}"}, upstream=upstream)

    def run_for(self, spec: dict, fold: int | None) -> str:
        """Plan the run of one (spec, fold); return its hash."""
        cfg, upstream = self._build(spec, fold)
        h = run_hash(cfg)
        if h not in self.runs:
            # The method's default run for this dataset/fold, built without planning its upstream runs.
            default_cfg, _ = self._build({k: spec[k] for k in ("method", "dataset") if k in spec}, fold,
                                         register=False)
            self._add_run(h, _run_name(cfg, default_cfg, self.runs), cfg, upstream)
        return h

    def _build(self, spec: dict, fold: int | None, register: bool = True) -> tuple[dict, list[str]]:
        """The run config of one (spec, fold): train + data <- method <- recipe <- the cell's ``set``."""
        method_name = spec.get("method")
        dataset = spec.get("dataset")
        if not method_name or not dataset:
            raise ConfigError(f"workflow/tables.yaml: a run cell needs method and dataset, got {spec}")
        m = self._method(method_name)
        p = self.params
        recipe = self._recipe(method_name, dataset)
        cfg: dict[str, Any] = {
            "task": m["task"],
            "method": "s2d" if method_name == "sfer" else method_name,
            "dataset": dataset,
            "fold": fold,
            "eval_datasets": [d for d in m["eval_datasets"] if d != dataset],
            "seed": p["seed"],
            "data": deep_merge(deep_merge(self._run_data(dataset), m["data"]), recipe.get("data") or {}),
            "model": {"name": m["model"], "kwargs": deep_merge(m["kwargs"], (recipe.get("model") or {}).get("kwargs") or {}),
                      "init": None, "init_format": "dfer", "init_dataset": None,
                      "head_transfer": p["model"]["head_transfer"]},
            "landmarks": {"backbone": p["landmarks"]["backbone"], "weights": None},
            "train": deep_merge(deep_merge(p["train"], m["train"]), recipe.get("train") or {}),
            "evaluate": deep_merge(p["evaluate"], m.get("evaluate") or {}),
        }
        for key, value in (spec.get("set") or {}).items():
            set_path(cfg, key.split("."), copy.deepcopy(value))
        cfg["eval_data"] = {d: self._dataset_data(d) for d in cfg["eval_datasets"]}
        joint = cfg["train"]["joint"]
        cfg["joint_data"] = None if not joint else {
            **self._run_data(joint["dataset"]), "num_frames": 1, "sampling_rate": 1,
            "input_size": cfg["data"]["input_size"], "oversample": bool(joint["oversample"])}
        cfg["data"]["subset"] = self._subset(dataset, cfg["data"]["subset"])
        upstream: list[str] = []
        init = spec["init"] if "init" in spec else m["init"]
        model = cfg["model"]
        model["init"], model["init_format"], model["init_dataset"] = self._resolve_init(init, upstream, register)
        # Landmarks only matter to models that fuse them; leave them out of the others' hashes.
        if not (m["uses_landmarks"] and model["kwargs"].get("fusion", "none") != "none"):
            cfg["landmarks"] = None
        else:
            lm = cfg["landmarks"]
            lm["weights"] = lm["weights"] or landmark_weights(p, lm["backbone"])
            if p["model"]["cache_features"] and frames_stay_put(cfg["train"]["augment"]):
                cfg["data"]["features"] = f"results/features/{feature_dataset(p, dataset)}/{lm['backbone']}"
        cfg["data"]["frames"] = with_aligned_frames(dataset, p["data"]["datasets"][dataset])["frames"]
        cfg["tracking"] = copy.deepcopy(p["mlflow"])
        return cfg, upstream

    def _dataset_data(self, dataset: str) -> dict:
        """How to read a dataset: its data.datasets entry (without folds and subsets) + the data-wide settings."""
        entry = {k: v for k, v in self._dataset_entry(dataset).items() if k not in ("folds", "subsets")}
        data = self.params["data"]
        return {**entry, **{k: data[k] for k in ("frame_order", "video_backend", "min_frames")}}

    def _run_data(self, dataset: str) -> dict:
        data = self.params["data"]
        return {**self._dataset_data(dataset),
                **{k: copy.deepcopy(data[k]) for k in ("num_frames", "sampling_rate", "sampler", "segments",
                                                       "input_size", "test_views",
                                                       "oversample", "subset")},
               "features": None}

    def _subset(self, dataset: str, name: Any) -> dict | None:
        """A training subset is named in data.datasets.<D>.subsets (Table I's AffectNet-7-Small)."""
        if name is None:
            return None
        subsets = self._dataset_entry(dataset)["subsets"]
        if name not in subsets:
            raise ConfigError(f"data.subset {name!r} is not defined in data.datasets.{dataset}.subsets "
                              f"({sorted(subsets)})")
        return copy.deepcopy(subsets[name])

    def _recipe(self, method: str, dataset: str) -> dict:
        """``recipes.<recipe>.<method>.<dataset>``: the per-dataset part of a method's recipe (may be empty)."""
        name = self.params["recipe"]
        recipes = self.params["recipes"]
        if name not in recipes:
            raise ConfigError(f"recipe {name!r} is not defined in params.yaml recipes ({sorted(recipes)})")
        return copy.deepcopy((recipes[name].get(method) or {}).get(dataset) or {})

    def _resolve_init(self, init: Any, upstream: list[str], register: bool = True) \
            -> tuple[str | None, str, str | None]:
        """(checkpoint path, format, dataset whose classes its classifier predicts) of an init spec."""
        if init in (None, "none"):
            return None, "dfer", None
        if isinstance(init, str):
            inits = self.params["model"]["inits"]
            if init not in inits:
                raise ConfigError(f"init {init!r} is not in params.yaml model.inits ({sorted(inits)})")
            init = inits[init]
        if not isinstance(init, dict):
            raise ConfigError(f"an init is a name, null, {{path, format, dataset}} or {{run: SPEC}}; got {init!r}")
        if init.get("run"):
            run_spec = _merge_spec(init["run"])
            ds = run_spec.get("dataset")
            folds = self.folds(ds, run_spec.get("folds")) if ds else [None]
            h = self.run_for(run_spec, folds[0]) if register else run_hash(self._build(run_spec, folds[0], False)[0])
            upstream.append(h)
            return f"{RUNS_DIR}/{h}/model.pt", "dfer", ds
        return init["path"], init["format"], init["dataset"]


def landmark_weights(params: dict, backbone: str) -> str:
    """Configured weights of a landmark backbone, else the landmark stage's own training output."""
    return params["landmarks"]["weights"].get(backbone) or f"results/landmarks/{backbone}/model.pt"


def frames_stay_put(augment: dict) -> bool:
    """Whether training sees the frames as stored: then landmark features can be read from the per-frame cache.
    A flip, a crop, RandAugment or Mixup/CutMix changes the frames, and the official code runs the landmark net
    on the augmented (mixed) clip every step."""
    return not (augment["hflip"] or augment["random_resized_crop"] or augment["rand_augment"]
                or augment["mixup"] or augment["cutmix"])


def _run_name(cfg: dict, default_cfg: dict, runs: dict[str, Run]) -> str:
    """Readable name from content: method/dataset[/foldK] plus what differs from the method's default."""
    method = cfg["model"]["name"].split("_")[0] if cfg["task"] == "sfer" else cfg["method"]
    parts = [method, cfg["dataset"]] + ([f"fold{cfg['fold']}"] if cfg.get("fold") else [])
    a, b = flatten(cfg), flatten(default_cfg)
    diffs: list[str] = []
    named: set[str] = set()
    for k in sorted(set(a) | set(b)):
        if (k.split(".")[0] in UNHASHED_KEYS or a.get(k) == b.get(k) or k == "data.features" or k.startswith("landmarks.weights")
                or (k.startswith("landmarks") and cfg.get("landmarks") is None)
                or {} in (a.get(k), b.get(k))):   # an empty section on one side: its keys show on the other
            continue
        # a section set to null on one side (e.g. train.joint: null) is named once, not key by key
        parent = next((p for p in _prefixes(k) if a.get(p, 0) is None), None)
        if parent is not None and parent != k:
            if parent not in named and not parent.startswith("joint_data"):   # joint_data follows train.joint
                named.add(parent)
                diffs.append(f"{parent.split('.')[-1]}={a.get(parent)}")
            continue
        v = a.get(k)
        if k == "model.init" and isinstance(v, str) and v.startswith(RUNS_DIR):
            up = runs.get(v.split("/")[2])
            v = f"[{up.name}]" if up else v
        if k in ("data.subset.seed", "model.init_dataset"):
            continue
        diffs.append(f"{k.split('.')[-1]}={v}")
    return "/".join(parts) + (f"+{','.join(diffs)}" if diffs else "")


def _prefixes(key: str) -> list[str]:
    """``a.b.c`` -> ``["a", "a.b", "a.b.c"]``."""
    parts = key.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def method_run_config(params: dict, method: str, dataset: str, set_: dict | None = None,
                      fold: int | None = None) -> dict:
    """The run config ``method`` gets on ``dataset`` (plus dotted ``set_`` overrides), without planning the runs
    it starts from: for tools that need a run's settings outside a table (``dfer predict --official-s2d``)."""
    cfg, _ = Planner(params)._build({"method": method, "dataset": dataset, "set": set_ or {}}, fold, register=False)
    return {"name": f"{method}/{dataset}", **cfg, "output_dir": f"{RUNS_DIR}/{run_hash(cfg)}"}


def _cell_dataset(spec: dict) -> str | None:
    return spec.get("eval_on") or spec.get("dataset")


def build_plan(params: dict, tables: dict, claims: list[dict] | None = None) -> Plan:
    """Resolve every table and figure cell to runs; the runs that ``claims`` compare are replicated over
    ``tables.claim_seeds``."""
    planner = Planner(params)
    cells: dict[str, list[Cell]] = {}
    titles: dict[str, str] = {}
    notes: dict[str, str] = {}
    kinds: dict[str, str] = {}
    for tid, table in (tables.get("tables") or {}).items():
        titles[tid] = table.get("title", tid)
        if table.get("note"):
            notes[tid] = table["note"]
        blocks = table.get("blocks") or [{"label": "", "columns": table.get("columns"), "rows": table.get("rows")}]
        out: list[Cell] = []
        for block in blocks:
            defaults = _merge_spec(table.get("defaults"), block.get("defaults"))
            cols = block.get("columns") or []
            for row in block.get("rows") or []:
                paper = row.get("paper") or [None] * len(cols)
                if len(paper) != len(cols):
                    raise ConfigError(f"workflow/tables.yaml: {tid} row {row['label']!r} has {len(paper)} paper "
                                      f"numbers for {len(cols)} columns")
                for col, reported in zip(cols, paper):
                    spec = _merge_spec(defaults, col.get("spec"), row.get("spec")) if "spec" in row else {}
                    out.append(_plan_cell(planner, tid, block.get("label", ""), row, col, spec, reported))
        cells[tid] = out
    for fid, fig in (tables.get("figures") or {}).items():
        titles[fid] = fig.get("title", fid)
        kinds[fid] = fig.get("kind")
        out = []
        panels = fig.get("panels") or [None]
        for panel in panels:
            for series in fig.get("series") or []:
                spec = _merge_spec(fig.get("defaults"), {"dataset": panel} if panel else {}, series.get("spec"))
                spec.setdefault("metric", "uar")
                out.append(_plan_cell(planner, fid, panel or "", series, {"label": series["label"]}, spec, None))
        cells[fid] = out
    _check_every_entry_selects(planner, "not_run", planner.not_run_used)
    _replicate_over_seeds(planner, cells, claims or [])
    for tid, note in _read_on_notes(planner).items():
        notes[tid] = f"{notes[tid]} {note}" if tid in notes else note
    for tid, tcells in cells.items():
        for c in tcells:
            for h in c.runs:
                run = planner.runs[h]
                run.cells.append((tid, c.block, c.row, c.column))
                if tid not in run.tables:
                    run.tables.append(tid)
    roots = {d: e["root"] for d, e in params["data"]["datasets"].items()}
    prov = {"preset": params["preset"], "recipe": params["recipe"], "roots": roots,
            "synthetic": all(r.startswith("results/synth") for r in roots.values())}
    spread = params["tables"]["spread"]
    return Plan(runs=planner.runs, cells=cells, titles=titles, notes=notes, provenance=prov, spread=spread,
                kinds=kinds, tracking=params["mlflow"])


def _replicate_over_seeds(planner: Planner, cells: dict[str, list[Cell]], claims: list[dict]) -> None:
    """Train every run a claim compares once per ``tables.claim_seeds``. A cell showing such a run, in any
    table, gets every seed on each of its folds, so that a run reads the same wherever it appears and a mean
    over folds weighs each fold alike."""
    seeds = planner.params["tables"]["claim_seeds"]
    if not seeds:
        return
    compared = {h for claim in claims for cell in claim_cells(cells, claim) for h in cell.runs}
    every_cell = [cell for table_cells in cells.values() for cell in table_cells]
    grown = True
    while grown:   # the other folds of a cell showing a compared run are compared runs too
        before = len(compared)
        compared |= {h for cell in every_cell if compared.intersection(cell.runs) for h in cell.runs}
        grown = len(compared) > before
    seeded = {h: [planner.with_seed(h, s) for s in seeds] for h in sorted(compared)}
    for cell in every_cell:
        cell.runs = list(dict.fromkeys(r for h in cell.runs for r in seeded.get(h, [h])))


def _plan_cell(planner: Planner, tid: str, block: str, row: dict, col: dict, spec: dict,
               reported: float | None) -> Cell:
    cell = Cell(table=tid, block=block, row=row["label"], column=col["label"], metric=None, dataset=None,
                runs=[], paper=reported)
    if not spec:
        return cell  # a method we only cite
    cell.metric = spec.get("metric", "war")
    moved = _read_on(planner, tid, spec)
    if moved is not spec:
        cell.instead_of, spec = spec["dataset"], moved
    cell.not_run = _not_run_reason(planner, cell, spec)
    if cell.not_run:
        cell.dataset = _cell_dataset(spec)
        return cell
    if cell.metric in NON_RUN_METRICS:
        backbone = (spec.get("set") or {}).get("landmarks.backbone") or planner.params["landmarks"]["backbone"]
        cell.backbone = backbone
        cell.weights = landmark_weights(planner.params, backbone)
        return cell
    cell.dataset = _cell_dataset(spec)
    folds = planner.folds(spec["dataset"], spec.get("folds"))
    cell.runs = [planner.run_for(spec, f) for f in folds]
    cell.variant = spec.get("variant")
    if cell.variant is not None:
        declared = planner.runs[cell.runs[0]].config["evaluate"]["variants"]
        if cell.variant not in declared:
            raise ConfigError(f"workflow/tables.yaml {tid}, row {cell.row!r}: variant {cell.variant!r} is not an "
                              f"inference variant of its run (evaluate.variants: {sorted(declared) or 'none'}); "
                              "declare it in params.yaml methods.<m>.evaluate.variants")
    return cell


def _not_run_reason(planner: Planner, cell: Cell, spec: dict) -> str | None:
    """The reason of the first params.yaml ``tables.not_run`` entry selecting this cell, else None."""
    for i, entry in enumerate(planner.params["tables"]["not_run"]):
        if (cell.table in entry.get("tables", [cell.table]) and entry.get("block", cell.block) == cell.block
                and entry.get("row", cell.row) == cell.row and entry.get("column", cell.column) == cell.column
                and entry.get("dataset", spec.get("dataset")) == spec.get("dataset")):
            planner.not_run_used.add(i)
            return entry["reason"]
    return None


def _read_on(planner: Planner, tid: str, spec: dict) -> dict:
    """The cell's spec moved to the dataset of the first params.yaml ``tables.read_on`` entry selecting it."""
    for i, entry in enumerate(planner.params["tables"]["read_on"]):
        if tid in entry["tables"] and spec.get("dataset") == entry["dataset"]:
            planner.read_on_used.setdefault(tid, set()).add(i)
            return {**spec, "dataset": entry["instead"], "folds": entry.get("folds", "ablation")}
    return spec


def _read_on_notes(planner: Planner) -> dict[str, str]:
    """Table id -> what its preset reads instead, and why (printed under the table's title)."""
    entries = planner.params["tables"]["read_on"]
    _check_every_entry_selects(planner, "read_on", set().union(*planner.read_on_used.values()))
    notes = {}
    for tid, idx in planner.read_on_used.items():
        parts = []
        for i in sorted(idx):
            e = entries[i]
            folds = planner.folds(e["instead"], e.get("folds", "ablation"))
            where = e["instead"] + (f" fold {', '.join(map(str, folds))}" if folds != [None] else "")
            parts.append(f"In preset `{planner.params['preset']}` the {e['dataset']} cells are read on {where}: "
                         f"{e['reason']}")
        notes[tid] = " ".join(parts)
    return notes


def _check_every_entry_selects(planner: Planner, kind: str, used: set[int]) -> None:
    """A params.yaml ``tables.<kind>`` entry (not_run, read_on) that selects no cell is a typo, not a choice."""
    for i, entry in enumerate(planner.params["tables"][kind]):
        if i not in used:
            sel = {k: v for k, v in entry.items() if k != "reason"}
            raise ConfigError(f"params.yaml tables.{kind}[{i}] {sel} selects no cell of workflow/tables.yaml; "
                              "check the table ids and the row / column labels")


def plan_from_files(params_path: str | None = None, tables_path: str | None = None,
                    overrides: list[str] | None = None) -> Plan:
    """The plan of params.yaml, the table declarations and the claims declared next to them (claims.yaml)."""
    tables_file = Path(tables_path) if tables_path else project_root() / TABLES_RELPATH
    claims_file = tables_file.with_name(CLAIMS_RELPATH.name)
    return build_plan(load_params(params_path, overrides), load_tables(tables_file),
                      load_claims(claims_file) if claims_file.is_file() else None)


# AffectNet-7 is AffectNet-8 without Contempt: when both read the same images, one feature cache serves both.
FEATURE_SUPERSETS = {"AffectNet-7": "AffectNet-8"}


def feature_dataset(params: dict, dataset: str) -> str:
    """The dataset whose landmark feature cache a run on ``dataset`` reads (itself, or a superset reading
    the same files)."""
    entries = params["data"]["datasets"]
    wider = FEATURE_SUPERSETS.get(dataset)
    same = wider in entries and all(entries[wider].get(k) == entries[dataset].get(k) for k in ("root", "format"))
    return wider if same else dataset


def run_config_text(run: Run) -> str:
    """A run's config.yaml: the resolved config (workflow/schemas/run.schema.yaml) under a one-line header. Its
    content is fixed by the hash that names its folder."""
    return (f"# planned by `dfer plan`: run {run.name}, config_hash {run.hash}\n"
            + dump_yaml(run.config))


def write_run_config(run: Run, path: str | Path | None = None) -> Path:
    from dfer.io import write_text

    p = Path(path or f"{run.output_dir}/config.yaml")
    write_text(p, run_config_text(run))
    return p


def main(argv: list[str] | None = None) -> int:
    ap = command_parser("plan", __doc__)
    add_params_args(ap, set_help="params overrides, e.g. preset=paper")
    ap.add_argument("--tables", default=None, help="table declarations (default: workflow/tables.yaml)")
    ap.add_argument("--table", action="append", default=None, help="only the runs of this table (repeatable)")
    ap.add_argument("--write-configs", action="store_true", help="write results/runs/<hash>/config.yaml files")
    ap.add_argument("--json", default=None, metavar="PATH", help="write hash -> {name, tables, cells} as JSON")
    args = ap.parse_args(argv)
    plan = plan_from_files(args.params, args.tables, args.set)
    wanted = args.table or plan.tables + plan.figures
    unknown = [t for t in wanted if t not in plan.cells]
    if unknown:
        raise ConfigError(f"unknown table(s) {unknown}; declared: {sorted(plan.cells)}")
    hashes = plan.closure([h for t in wanted for h in plan.table_runs(t)])
    n_cells = sum(1 for t in wanted for c in plan.cells[t] if c.runs)
    n_refs = sum(len(c.runs) for t in wanted for c in plan.cells[t])
    width = max((len(plan.runs[h].name) for h in hashes), default=10)
    print(f"{'hash':<12}  {'cells':>5}  {'name':<{width}}  tables")
    for h in sorted(hashes, key=lambda h: plan.runs[h].name):
        r = plan.runs[h]
        tabs = ",".join(t.replace("table_", "") for t in r.tables if t in wanted) or "-(init)"
        print(f"{h:<12}  {len(r.cells):>5}  {r.name:<{width}}  {tabs}")
    print(f"\n{len(hashes)} unique runs serve {n_cells} cells ({n_refs} cell-run references: folds and claim seeds) "
          f"of {len(wanted)} tables", file=sys.stderr)
    if args.write_configs:
        for h in hashes:
            write_run_config(plan.runs[h])
    if args.json:
        write_json(args.json, {h: v for h, v in plan.runs_payload().items() if h in hashes})
    return 0
