# Helpers shared by every rule file: the resolved config, the plan of every table, input functions.
# The plan is computed at DAG-parse time from params.yaml + workflow/tables.yaml, so the DAG is static:
# each run is `results/runs/<config hash>/`, and a run that several tables share is one set of jobs.
import os
import re
import sys
from pathlib import Path

import json


from dfer.config import config_hash, dump_yaml, preset_notice, resolve, stage_params
from dfer.engine.runconfig import RUN_FILES
from dfer.workflow.claims import claims_payload, load_claims
from dfer.workflow.restore import settle_restored_outputs
from dfer.data.annotations import ALIGNED_FRAMES, needs_alignment
from dfer.workflow.plan import build_plan, landmark_weights, load_tables, run_config_text

# Outputs restored by `dvc pull` / `dvc checkout` carry fresh timestamps in random order: when DVC vouches
# they are what this pipeline makes, mark them up to date first (src/dfer/workflow/restore.py). Only in the
# Snakemake a user starts, not in each job's own one.
if workflow.is_main_process:
    settle_restored_outputs(workflow.basedir)

# `config` is params.yaml (configfile) with --config overrides merged in; resolve() applies the preset, then
# the overrides again (they win over the preset), and validates against workflow/schemas/params.schema.yaml.
# This is the only place the preset is resolved. Every job gets the settings it runs with as a `params` entry
# (so a change re-runs exactly the jobs it touches), writes them to a file among its outputs and reads that:
# a run's config.yaml, a stage's results/config/<rule>/<job>.yaml, a table's results/plan/<table>.json. No job
# reads params.yaml. (A job per settings file would cost a Snakemake process each, and a shared settings job
# read as ancient() would make Snakemake drop the readers' own reasons to run when it re-runs.)
PARAMS = resolve(config, workflow.config_settings.overwrite_config)
if workflow.is_main_process:
    print(preset_notice(PARAMS), file=sys.stderr)
_CLAIM_DECLARATIONS = load_claims("workflow/claims.yaml")
PLAN = build_plan(PARAMS, load_tables("workflow/tables.yaml"), _CLAIM_DECLARATIONS)   # claims add their seeds
CLAIMS = claims_payload(PLAN, _CLAIM_DECLARATIONS)
RUNS = PLAN.runs
TABLES = PLAN.tables  # S2D's table_1..table_10, NR-DFERNet's nr_table_*, UniLearn's unilearn_table_*
FIGURES = PLAN.figures
DATASETS = sorted(PARAMS["data"]["datasets"])
SYNTH_DIR = "results/synth"
# What a training job leaves in results/runs/<hash>/ (dfer.engine.runconfig.RUN_FILES): weights, per-epoch
# metrics, the marker that makes a re-run a no-op, and the evaluation (eval.json, confusion.png, predictions,
# features for the figures).
RUN_OUTPUTS = {name: f"results/runs/{{hash}}/{file}" for name, file in RUN_FILES.items()}

# Rules call the `dfer` command of the Python that runs Snakemake (the project's venv), also when the venv
# is not activated: put its bin directory first on PATH for every job's shell.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
# Each job computes on one thread (no rule asks for more; Snakemake runs as many jobs side by side as it has
# cores): torch's default of one thread per core in every parallel job oversubscribes the CPU (measured on 2
# cores: two DFER jobs side by side at 2 threads each trained 45x slower than at 1 thread). Set the variables
# yourself to change it.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


wildcard_constraints:
    hash="[0-9a-f]{12}",
    dataset="|".join(re.escape(d) for d in DATASETS),
    table="|".join(TABLES),


def dataset_root(dataset):
    return PARAMS["data"]["datasets"][dataset]["root"]


def is_synthetic(dataset):
    return dataset_root(dataset).startswith(SYNTH_DIR)


def data_ready(dataset):
    """The synthetic benchmark, or the check that the real dataset is readable."""
    return SYNTH_DIR if is_synthetic(dataset) else f"results/data_check/{dataset}.txt"


def detector_weights():
    return PARAMS["align"]["detector"]["weights"] or "results/align/detector/model.pt"


def frames_of(dataset):
    """Aligned frames produced by the workflow (MAFW given as raw videos), else nothing to build."""
    if needs_alignment(dataset, PARAMS["data"]["datasets"][dataset]):
        return [ALIGNED_FRAMES.format(dataset=dataset)]
    return []


# The params sections each stage command reads (the job writes them to its settings file and passes it).
STAGE_SECTIONS = {
    "synth": ["seed", "synth"],
    "check_data": ["data"],
    "train_detector": ["seed", "data", "align"],
    "align": ["data", "align"],
    "train_landmarks": ["seed", "data", "landmarks"],
    "extract_features": ["data", "landmarks"],
    "pretrain_mae": ["seed", "data", "pretrain"],
}

# Inits the workflow makes with `dfer pretrain-mae` (model.inits entries whose path is results/pretrain/<init>/).
PRETRAINED_INITS = sorted(name for name, init in PARAMS["model"]["inits"].items()
                          if (init["path"] or "").startswith("results/pretrain/"))


def pretrain_inputs(init):
    """What an MAE init reads: the synthetic benchmark or a checked real dataset, per image or video source."""
    spec = PARAMS["pretrain"]["inits"][init]
    sources, videos = spec["sources"], spec.get("video_sources") or PARAMS["pretrain"]["video_sources"]
    datasets = [s["dataset"] for s in sources if "dataset" in s]
    synthetic = any((s.get("images") or s.get("videos") or s.get("video_frames") or "").startswith(SYNTH_DIR)
                    for s in sources + videos)
    return sorted({data_ready(d) for d in datasets} | ({SYNTH_DIR} if synthetic else set()))


def stage_settings(stage):
    """A stage's resolved sections as the YAML text of a stage file (`dfer COMMAND --params FILE`)."""
    return dump_yaml(stage_params(PARAMS, STAGE_SECTIONS[stage]))


def as_json(payload):
    """A table / figure / claims plan as compact JSON (a rule param, written by the job that renders it)."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=False)


def run_inputs(wildcards):
    """Everything a run needs before it starts: data, landmark features, the upstream checkpoint."""
    cfg = RUNS[wildcards.hash].config
    joint = cfg["train"]["joint"]
    datasets = [cfg["dataset"], *cfg["eval_datasets"], *([joint["dataset"]] if joint else [])]
    inputs = {"data": sorted({data_ready(d) for d in datasets}),
              "frames": sorted({f for d in datasets for f in frames_of(d)})}
    init = cfg["model"]["init"]
    if init and init.startswith("results/"):
        inputs["init"] = init
    if cfg["landmarks"]:
        if cfg["landmarks"]["weights"].startswith("results/"):
            inputs["landmarks"] = cfg["landmarks"]["weights"]
        if cfg["data"]["features"]:  # the run's own dataset (cross-dataset tests compute them on the fly)
            inputs["features"] = cfg["data"]["features"]
    return inputs


def feature_inputs(wildcards):
    inputs = {"data": data_ready(wildcards.dataset), "frames": frames_of(wildcards.dataset)}
    weights = landmark_weights(PARAMS, wildcards.backbone)
    if weights.startswith("results/"):
        inputs["weights"] = weights
    return inputs


def table_inputs(wildcards):
    hashes = PLAN.table_runs(wildcards.table)
    inputs = {"evals": [f"results/runs/{h}/eval.json" for h in hashes]}
    backbones = sorted({c.backbone for c in PLAN.cells[wildcards.table] if c.backbone})
    inputs["reports"] = [f"results/landmarks/{b}/report.json" for b in backbones
                         if b in TRAINED_LANDMARK_NETS or (b in CONFIGURED_LANDMARK_NETS and ION_DATASETS)]
    return inputs


# Landmark nets: trained by the workflow (no weights configured: the synthetic preset), or given as weights
# (the official checkpoints), whose ION Table III measures only where a landmark test set is configured.
BACKBONES = sorted(PARAMS["landmarks"]["weights"])
TRAINED_LANDMARK_NETS = [b for b in BACKBONES if landmark_weights(PARAMS, b).startswith("results/")]
CONFIGURED_LANDMARK_NETS = [b for b in BACKBONES if b not in TRAINED_LANDMARK_NETS]
ION_DATASETS = PARAMS["landmarks"]["ion_datasets"]


# Scheduling: on a few cores the jobs most runs wait for go first (the default landmark net, its feature caches,
# the MAE inits and the SFER runs the DFER runs start from); the other landmark nets and the DFER runs fill in.
PRIORITY = {"train_landmarks": 10, "pretrain_mae": 9, "extract_features": 9, "train_detector": 3,
            "train:sfer": 5, "train:dfer": 0}


def critical_path_priority(rule, wildcards=None):
    if wildcards is not None and "backbone" in wildcards.keys() and \
            wildcards.backbone != PARAMS["landmarks"]["backbone"]:
        return 1
    if rule == "train":
        return PRIORITY[f"train:{RUNS[wildcards.hash].config['task']}"]
    return PRIORITY[rule]
