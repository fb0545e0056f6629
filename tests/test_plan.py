"""Planner: dedup of shared cells, `dfer plan` counts, hash stability/sensitivity, Snakemake dry-run."""
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dfer.config import ConfigError, load_params
from dfer.workflow import plan as planmod
from dfer.workflow.claims import CLAIMS_RELPATH, claim_cells, load_claims
from dfer.workflow.plan import build_plan, load_tables

ROOT = Path(__file__).resolve().parents[1]
TABLES = load_tables(ROOT / "workflow/tables.yaml")
CLAIMS = load_claims(ROOT / CLAIMS_RELPATH)


def make_plan(overrides=None):
    """The plan the workflow runs: params.yaml (+ overrides), the tables and the claims (their seeds)."""
    return build_plan(load_params(ROOT / "params.yaml", overrides), TABLES, CLAIMS)


def cell(plan, table, row, column):
    return next(c for c in plan.cells[table] if c.row == row and c.column == column)


def test_full_s2d_on_dfew_fold1_is_one_run_shared_by_tables_2_to_7():
    plan = make_plan()
    shared = {
        cell(plan, "table_2", "MAE-AffectNet / AffectNet-7", "DFEW UAR").runs[0],
        cell(plan, "table_3", "MobileFaceNet", "DFEW WAR").runs[0],
        next(c for c in plan.cells["table_4"] if c.row == "MCP" and c.column == "DFEW UAR").runs[0],
        cell(plan, "table_5", "Temporal-Modeling Adapter", "DFEW UAR").runs[0],
        cell(plan, "table_6", "One-Hot+SDL (S2D, official recipe)", "DFEW UAR").runs[0],
        cell(plan, "table_7", "+MCP +TMA +SDL (S2D)", "DFEW WAR").runs[0],
    }
    assert len(shared) == 1
    run = plan.runs[shared.pop()]
    assert {"table_2", "table_3", "table_4", "table_5", "table_6", "table_7"} <= set(run.tables)
    assert run.config["fold"] == 1 and run.config["dataset"] == "DFEW"
    # ...and it is also fold 1 of the 5-fold (here: synthetic 2-fold) main result of Table IX.
    assert run.hash in cell(plan, "table_9", "S2D (ours) *", "DFEW UAR").runs
    # its init is the SFER run on AffectNet-7, itself a planned run (a DAG edge)
    up = plan.runs[run.upstream[0]]
    assert run.config["model"]["init"] == f"results/runs/{up.hash}/model.pt"
    assert up.config["task"] == "sfer" and up.config["dataset"] == "AffectNet-7"


def test_every_run_a_claim_compares_trains_once_per_claim_seed():
    """tables.claim_seeds: the synthetic preset trains each compared run with seeds 0 and 1; a cell showing such a
    run anywhere gets both seeds on each of its folds; the paper preset trains each run once."""
    plan = make_plan()
    unseeded = build_plan(load_params(ROOT / "params.yaml"), TABLES)   # no claims: every cell one run per fold
    compared = [c for claim in CLAIMS for c in claim_cells(plan.cells, claim)]
    for c in compared:
        runs = [plan.runs[h].config for h in c.runs]
        assert sorted((r["fold"] or 0, r["seed"]) for r in runs) == sorted(
            (f or 0, s) for f in {r["fold"] for r in runs} for s in (0, 1)), (c.table, c.row, c.column)
    tma = cell(plan, "table_5", "Temporal-Modeling Adapter", "DFEW UAR")
    base, seeded = (plan.runs[h] for h in tma.runs)
    assert base.hash == cell(unseeded, "table_5", "Temporal-Modeling Adapter", "DFEW UAR").runs[0]  # seed 0 as before
    differs = {k for k in base.config if base.config[k] != seeded.config[k]}
    assert differs == {"name", "output_dir", "seed"} and seeded.name == "s2d/DFEW/fold1+seed=1"
    assert seeded.upstream == base.upstream   # the seed is the compared run's, not its init's
    # the same run in Table VII's S2D row and in Table IX's fold mean, with both seeds of both folds there
    assert cell(plan, "table_7", "+MCP +TMA +SDL (S2D)", "DFEW UAR").runs == tma.runs
    main = [plan.runs[h].config for h in cell(plan, "table_9", "S2D (ours) *", "DFEW UAR").runs]
    assert sorted((r["fold"], r["seed"]) for r in main) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    # a cell no claim compares is one run
    assert len(cell(plan, "table_3", "PFLD", "DFEW UAR").runs) == 1
    paper = make_plan(["preset=paper"])
    assert all(r.config["seed"] == 0 for r in paper.runs.values())
    assert len(paper.runs) == len(build_plan(load_params(ROOT / "params.yaml", ["preset=paper"]), TABLES).runs)


def test_inference_only_cells_read_one_trained_model_and_unknown_variants_are_named():
    """NR-DFERNet's snippet filter acts at inference: its on/off rows (Table 1) and every window/stride (Table 2)
    read the runs of Table IX's NR-DFERNet row; only the settings that change training train models of their own."""
    plan = make_plan()
    main = cell(plan, "table_9", "NR-DFERNet (ours, hosted)", "DFEW UAR").runs
    for table, row in (("nr_table_1", "g (DSF + DCT)"), ("nr_table_1", "h (DSF + DCT + SF, NR-DFERNet)"),
                       ("nr_table_2", "S 1, L 6"), ("nr_table_5", "NR-DFERNet (ours, hosted; DS)")):
        assert cell(plan, table, row, "UAR").runs == main, (table, row)
    assert cell(plan, "nr_table_1", "g (DSF + DCT)", "UAR").variant == "no_sf"
    assert cell(plan, "nr_table_1", "a (baseline)", "UAR").runs != main
    ti = plan.runs[cell(plan, "nr_table_5", "NR-DFERNet (ours, hosted; TI)", "UAR").runs[0]].config
    assert ti["data"]["sampler"] == "interpolate" and plan.runs[main[0]].config["data"]["sampler"] == "dynamic"
    # AFEW: fine-tuned from the DFEW fold-1 run (a DAG edge), at the recipe's lower lr
    afew = plan.runs[cell(plan, "nr_table_4", "NR-DFERNet (ours, hosted; DS)", "UAR").runs[0]]
    assert afew.upstream == [main[0]] and afew.config["train"]["lr"] == 3.0e-4
    bad = {"tables": {"t": {"defaults": {"method": "s2d", "dataset": "DFEW", "folds": "ablation"},
                            "columns": [{"label": "UAR", "spec": {"metric": "uar"}}],
                            "rows": [{"label": "r", "spec": {"variant": "no_sf"}}]}}}
    with pytest.raises(ConfigError, match="variant 'no_sf' is not an inference variant of its run"):
        build_plan(load_params(ROOT / "params.yaml"), bad)


def test_run_configs_follow_the_architecture_contract():
    plan = make_plan()
    for run in plan.runs.values():
        cfg = run.config
        assert set(cfg) >= {"name", "task", "method", "dataset", "fold", "eval_datasets", "seed", "data",
                            "model", "landmarks", "train", "evaluate", "output_dir"}
        assert cfg["output_dir"] == f"results/runs/{run.hash}"
        assert planmod.run_hash(cfg) == run.hash
        if cfg["landmarks"]:
            # AffectNet-7 reads the AffectNet-8 cache (same images): one extraction serves both.
            cache = "AffectNet-8" if cfg["dataset"] == "AffectNet-7" else cfg["dataset"]
            assert cfg["data"]["features"] == f"results/features/{cache}/{cfg['landmarks']['backbone']}"
    names = [r.name for r in plan.runs.values()]
    assert len(names) == len(set(names)), "run names must identify runs"


def test_ablation_cells_use_fold1_and_main_cells_every_configured_fold():
    plan = make_plan(["tables.main_folds=[1,2,3,4,5]", "tables.claim_seeds=null"])   # one run per fold
    main = cell(plan, "table_9", "S2D (ours) *", "DFEW WAR")
    assert [plan.runs[h].config["fold"] for h in main.runs] == [1, 2, 3, 4, 5]
    ferv = cell(plan, "table_9", "S2D (ours) *", "FERV39K WAR")
    assert len(ferv.runs) == 1 and plan.runs[ferv.runs[0]].config["fold"] is None
    abl = cell(plan, "table_5", "None", "DFEW UAR")
    assert [plan.runs[h].config["fold"] for h in abl.runs] == [1]


def test_dfer_plan_lists_unique_runs_and_cell_counts(capsys):
    assert planmod.main(["--table", "table_6"]) == 0
    out, err = capsys.readouterr()
    lines = [line for line in out.splitlines()[1:] if line.strip()]
    plan = make_plan()
    expected = plan.closure(plan.table_runs("table_6"))
    assert len(lines) == len(expected)
    m = re.search(r"(\d+) unique runs serve (\d+) cells", err)
    assert int(m.group(1)) == len(expected) and int(m.group(2)) == 16
    by_hash = {line.split()[0]: int(line.split()[1]) for line in lines}
    s2d = cell(plan, "table_6", "One-Hot+SDL (S2D, official recipe)", "DFEW UAR").runs[0]
    assert by_hash[s2d] == len(plan.runs[s2d].cells) > 10


def test_hashes_are_stable_and_change_exactly_for_affected_runs():
    a, b = make_plan(), make_plan()
    assert sorted(a.runs) == sorted(b.runs)
    # An SFER-only parameter changes the SFER runs and the DFER runs initialised from them, nothing else.
    c = make_plan(["methods.sfer.data.input_size=96"])
    by_name_a = {r.name: h for h, r in a.runs.items()}
    by_name_c = {r.name: h for h, r in c.runs.items()}
    assert set(by_name_a) == set(by_name_c)
    changed = {n for n in by_name_a if by_name_a[n] != by_name_c[n]}
    for name in by_name_a:
        run = a.runs[by_name_a[name]]
        from_sfer = run.config["task"] == "sfer" or run.config["method"] == "s2d" and run.upstream
        assert (name in changed) == bool(from_sfer), name
    # A UniLearn switch changes only UniLearn runs.
    d = make_plan(["methods.unilearn.kwargs={num_experts: 4}"])
    changed = {r.name for h, r in a.runs.items() if h not in d.runs}
    assert changed and all(n.startswith("unilearn/") for n in changed)


def test_snakemake_dry_run_lists_the_expected_jobs(tmp_path):
    for name in ("Snakefile", "params.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for name in ("rules", "workflow"):
        shutil.copytree(ROOT / name, tmp_path / name)
    snakemake = Path(sys.executable).with_name("snakemake")
    proc = subprocess.run([str(snakemake), "-n", "all_tables", "--quiet", "rules", "-c1"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout + proc.stderr, re.M))
    plan = make_plan()
    tables = plan.tables
    evaluated = {h for t in tables + plan.figures for h in plan.table_runs(t)}
    trained = set(plan.closure(sorted(evaluated)))
    # Each unique run is one training job (which ends with its evaluation), however many cells it serves.
    assert evaluated <= trained
    assert int(counts["train"]) == len(trained)
    assert "evaluate" not in counts and "run_config" not in counts
    assert int(counts["table"]) == len(tables) == 19
    assert int(counts["synth"]) == 1 and int(counts["claims"]) == 1
    assert not {"plan_runs", "table_plan", "stage_params", "mlflow_init"} & set(counts)  # jobs write their own settings
    assert not (tmp_path / "results").exists()  # a dry run writes nothing


def test_training_jobs_declare_exactly_the_files_a_run_leaves(tmp_path):
    """`dfer train` (training, then `dfer evaluate`) leaves RUN_FILES in the run folder; the job Snakemake plans
    for a run must declare exactly those and the config.yaml it writes (Snakemake then deletes stale ones
    before a re-run and DVC versions them)."""
    from dfer.engine.runconfig import RUN_FILES

    h = next(iter(make_plan().runs))
    proc = _snakemake(_project(tmp_path), "--summary", f"results/runs/{h}/done.json")
    rows = [line.split("\t") for line in (proc.stdout + proc.stderr).splitlines()]
    declared = {r[0] for r in rows if len(r) > 2 and r[0].startswith(f"results/runs/{h}/") and r[2] == "train"}
    assert declared == {f"results/runs/{h}/{name}" for name in ("config.yaml", *RUN_FILES.values())}


def _project(tmp_path: Path) -> Path:
    """The workflow files of the project in a scratch folder (the package itself is the installed one)."""
    for name in ("Snakefile", "params.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for name in ("rules", "workflow", "profiles"):
        shutil.copytree(ROOT / name, tmp_path / name)
    return tmp_path


def _snakemake(proj: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    snakemake = Path(sys.executable).with_name("snakemake")
    env = {**__import__("os").environ, "DFER_ROOT": str(proj), "DFER_NO_TRACKING": "1",
           "PATH": f"{snakemake.parent}:{__import__('os').environ['PATH']}"}
    proc = subprocess.run([str(snakemake), *args], cwd=proj, capture_output=True, text=True, timeout=timeout,
                          env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


def test_paper_preset_plans_only_the_papers_settings(tmp_path):
    """`--config preset=paper` reaches every job: run configs and stage files hold the paper's data roots,
    ViT-B models and the official recipes; nothing synthetic is planned."""
    proj = _project(tmp_path)
    # AFEW ships as scene videos: the paper aligns them with RetinaFace, whose weights the user provides
    weights = proj / "data/pretrained/retinaface/Resnet50_Final.pth"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"")
    dry = _snakemake(proj, "-n", "-p", "all_tables", "--config", "preset=paper")
    plan = make_plan(["preset=paper"])
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", dry.stdout, re.M))
    assert counts["check_data"] == "8" and int(counts["train"]) == len(plan.runs)
    assert not {"synth", "train_landmarks", "train_detector", "extract_features"} & set(counts), counts
    assert counts["align"] == "1" and "results/align/AFEW" in dry.stdout
    # Every job writes the settings it runs with (printf '%s' SETTINGS > FILE && dfer ...): read them back.
    written = {}
    for command in re.findall(r"^Shell command: (printf .*?)(?=\n\n|\nJob \d|\n\[|\Z)", dry.stdout, re.M | re.S):
        words = shlex.split(command)
        written[words[words.index(">") + 1]] = words[2]
    configs = {path: text for path, text in written.items() if path.endswith("config.yaml")}
    assert len(configs) == len(plan.runs) > 80
    assert len([p for p in written if p.startswith("results/config/check_data/")]) == 8
    by_name = {}
    for path, text in configs.items():
        assert "results/synth" not in text and "_tiny" not in text, path
        cfg = yaml.safe_load(text)
        by_name[cfg["name"]] = cfg
        # NR-DFERNet's paper: 70 epochs on DFEW, 30 on AFEW; the S2D and S4D scripts: 100
        expected = 100 if cfg["method"] != "nr_dfernet" else 30 if cfg["dataset"] == "AFEW" else 70
        assert cfg["train"]["epochs"] == expected, cfg["name"]
        assert cfg["data"]["root"].startswith("data/")
    dfew, ferv = by_name["s2d/DFEW/fold1"], by_name["s2d/FERV39K"]
    # scripts/ft_dfew.sh: Mixup/CutMix, smoothing 0.1, no SDL; 2 GPUs x 8, lr 1e-5 (x 16/8 at run time)
    assert dfew["train"]["loss"] == "label_smoothing" and dfew["train"]["label_smoothing"] == 0.1
    assert dfew["train"]["augment"]["mixup"] == 0.8 and dfew["train"]["augment"]["cutmix"] == 1.0
    assert (dfew["train"]["gpus"], dfew["train"]["batch_size"], dfew["train"]["total_batch"]) == (2, 8, 16)
    assert dfew["model"]["kwargs"]["fusion"] == "mcp" and "head_dropout" not in dfew["model"]["kwargs"]
    # scripts/ft_ferv39k.sh: --sdl --sdl_update_freq 100 --dropout_ratio 0 --smoothing 0 --ban_mixup
    assert ferv["train"]["loss"] == "onehot_sdl" and ferv["train"]["label_smoothing"] == 0.0
    assert ferv["train"]["augment"]["mixup"] == 0.0 and ferv["train"]["augment"]["cutmix"] == 0.0
    assert ferv["train"]["sdl"] == {"k": 2, "queue_size": 16, "schedule": "official", "update": "official",
                                    "update_freq": 100}
    assert ferv["model"]["kwargs"]["head_dropout"] == 0.0
    # the SFER model: the MAE-SFER fine-tuning recipe
    sfer = by_name["sfer/AffectNet-7"]["train"]
    assert (sfer["total_batch"], sfer["lr"], sfer["lr_reference_batch"], sfer["layer_decay"], sfer["drop_path"]) == \
        (32, 5.0e-4, 256, 0.65, 0.1)
    small = next(c for n, c in by_name.items() if n.startswith("sfer/AffectNet-7+count="))
    assert small["data"]["subset"] == {"count": 12271, "seed": 0}
    for path, text in written.items():
        if path.startswith("results/config/"):
            stage = yaml.safe_load(text)
            assert stage["resolved"]["preset"] == "paper", path
            assert all(not e["root"].startswith("results/") for e in stage["params"]["data"]["datasets"].values())
    # A job of the paper preset runs on a (tiny) real-layout dataset with the stage file Snakemake wrote.
    from engine_helpers import write_dfew

    write_dfew(proj / "data/DFEW")
    _snakemake(proj, "-c1", "results/data_check/DFEW.txt", "--config", "preset=paper",
               "data={datasets: {DFEW: {folds: [1]}}}")
    assert "DFEW: ok" in (proj / "results/data_check/DFEW.txt").read_text()
    job = yaml.safe_load((proj / "results/config/check_data/DFEW.yaml").read_text())
    assert job["params"]["data"]["datasets"]["DFEW"]["folds"] == [1]  # the override reached the job's settings


def test_a_config_override_reaches_the_stage_command(tmp_path):
    """`snakemake --config synth=...` is what `dfer synth` runs with (through results/config/synth.yaml), the
    same override is a no-op the second time, and another value re-runs the stage."""
    proj = _project(tmp_path)
    over = ["--config", "synth={scale: 0.05, datasets: [RAF-DB]}"]
    _snakemake(proj, "-c1", "results/synth", *over)
    stage = yaml.safe_load((proj / "results/config/synth.yaml").read_text())
    assert stage["params"]["synth"]["scale"] == 0.05 and stage["params"]["synth"]["datasets"] == ["RAF-DB"]
    assert stage["resolved"]["not_from_params_yaml"]["synth.scale"] == "override"
    log = (proj / "results/logs/synth.log").read_text()
    items = int(re.search(r"^RAF-DB: (\d+) items", log, re.M).group(1))
    assert items <= 80  # 1,400 images at scale 1
    assert sorted(p.name for p in (proj / "results/synth").iterdir() if not p.name.startswith(".")) == ["RAF-DB"]
    again = _snakemake(proj, "-n", "results/synth", *over)
    assert "Nothing to be done" in again.stdout + again.stderr
    other = _snakemake(proj, "-n", "results/synth", "--config", "synth={scale: 0.06, datasets: [RAF-DB]}")
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", other.stdout, re.M))
    assert counts == {"synth": "1", "total": "1"}  # only the stage whose settings changed
