"""Table rendering from fabricated eval.json files: "ours (paper)" cells with our best row in bold (MD/LaTeX), ours,
paper and diff side by side (CSV), fold mean +- spread."""
import csv
import json
import statistics
from pathlib import Path

import pytest

from dfer.config import load_params
from dfer.workflow.plan import build_plan
from dfer.workflow.tables import main as table_main
from dfer.workflow.tables import render_table

ROOT = Path(__file__).resolve().parents[1]

TABLES = {"tables": {"table_t": {
    "title": "Test table",
    "defaults": {"method": "s2d", "folds": "main"},
    "columns": [{"label": "DFEW UAR", "spec": {"dataset": "DFEW", "metric": "uar"}},
                {"label": "DFEW Fear", "spec": {"dataset": "DFEW", "metric": "class:Fear"}},
                {"label": "FERPlus from RAF-DB", "spec": {"method": "sfer", "dataset": "RAF-DB",
                                                          "eval_on": "FERPlus", "metric": "acc"}}],
    "rows": [{"label": "ours", "spec": {}, "paper": [60.0, 30.0, 77.35]},
             {"label": "cited", "paper": [50.0, None, 70.0]}]}}}


def write_eval(root, run, payload):
    p = root / run.output_dir / "eval.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(payload))


def own_params(*overrides: str) -> dict:
    """The project's params for this file's own table declarations (the preset's not_run and read_on name the real
    tables)."""
    return load_params(ROOT / "params.yaml", ["tables.not_run=[]", "tables.read_on=[]", *overrides])


def test_render_table_from_fabricated_runs(tmp_path):
    plan = build_plan(own_params("tables.main_folds=[1,2,3]"), TABLES)
    cells = {c.column: c for c in plan.cells["table_t"] if c.row == "ours"}
    uars = [55.0, 58.0, 64.0]
    for h, uar in zip(cells["DFEW UAR"].runs, uars):  # DFEW in percent, per-class as a dict
        write_eval(tmp_path, plan.runs[h], {"uar": uar, "war": 70.0,
                                            "per_class": {"Happy": 90.0, "Fear": uar / 2}})
    sfer = plan.runs[cells["FERPlus from RAF-DB"].runs[0]]
    # SFER eval in fractions, the FERPlus number under "cross"
    write_eval(tmp_path, sfer, {"war": 0.9, "uar": 0.85, "cross": {"FERPlus": {"war": 0.75, "uar": 0.7}}})

    md, csv_path, tex = render_table(plan.table_payload("table_t"), tmp_path / "tables", tmp_path)
    mean, std = statistics.fmean(uars), statistics.stdev(uars)
    text = md.read_text()
    assert "**synthetic**" in text
    assert "| Method | DFEW UAR | DFEW Fear | FERPlus from RAF-DB |" in text   # one column per metric, no Δ
    assert f"| ours | {mean:.2f} ± {std:.2f} (60.00) | " in text                # ours (paper)
    assert "| 75.00 (77.35) |" in text                  # fraction scaled to percent, cross-dataset test
    assert "| cited | (50.00) | - | (70.00) |" in text  # cited rows: paper only; "-": the paper gives none
    assert "**" not in text.split("| Method |")[1]     # a single trained row: nothing to rank
    assert "_ours (paper); bold: best of our rows; ≈ chance: did not learn_" in text

    reader = csv.DictReader(csv_path.open())
    assert {"ours", "spread", "paper", "diff"} <= set(reader.fieldnames)   # the CSV keeps the long form
    rows = list(reader)
    fear = next(r for r in rows if r["row"] == "ours" and r["column"] == "DFEW Fear")
    assert float(fear["ours"]) == pytest.approx(statistics.fmean(u / 2 for u in uars), abs=1e-4)
    assert int(fear["n_runs"]) == 3 and float(fear["diff"]) == pytest.approx(float(fear["ours"]) - 30.0, abs=1e-3)
    assert float(fear["spread"]) == pytest.approx(statistics.stdev(u / 2 for u in uars), abs=1e-4)
    assert len(fear["runs"].split()) == 3

    latex = tex.read_text()
    assert r"\begin{tabular}{lrrr}" in latex and r"$\pm$" in latex and "(60.00)" in latex
    assert r"$\Delta$" not in latex and r"\multicolumn{3}" not in latex


def test_missing_results_are_marked_not_invented(tmp_path, capsys):
    plan = build_plan(own_params(), TABLES)
    plan_json = tmp_path / "plan.json"
    plan_json.write_text(json.dumps(plan.table_payload("table_t")))
    assert table_main(["table_t", "--plan", str(plan_json), "--out", str(tmp_path / "out"),
                       "--root", str(tmp_path), "--spread", "minmax"]) == 0
    text = (tmp_path / "out" / "table_t.md").read_text()
    assert "| ours | missing (60.00) |" in text
    assert "eval.json missing" in capsys.readouterr().err


def test_every_declared_paper_table_resolves():
    plan = build_plan(own_params(), __import__("yaml").safe_load(
        (ROOT / "workflow/tables.yaml").read_text()))
    assert plan.tables == ([f"table_{i}" for i in range(1, 11)] + [f"nr_table_{i}" for i in range(1, 6)]
                           + [f"unilearn_table_{i}" for i in range(2, 6)])
    assert plan.figures == ["fig_per_class", "fig_tsne", "fig_sdl_probs", "unilearn_fig_3a"]
    # the paper's numbers are encoded: e.g. Table VII's full model and Table X's S2D* Disgust
    t7 = {(c.row, c.column): c.paper for c in plan.cells["table_7"]}
    assert t7[("+MCP +TMA +SDL (S2D)", "FERV39K WAR")] == 52.56
    t10 = {(c.row, c.column): c.paper for c in plan.cells["table_10"]}
    assert t10[("S2D (ours) *† (w/ oversampling)", "Disgust")] == 25.52
    t3 = [c for c in plan.cells["table_3"] if c.column == "ION"]
    assert [c.backbone for c in t3] == ["MobileNetV2_56", "MobileNetV2_224", "PFLD", "MobileNetV2_ED",
                                        "MobileFaceNet"]


def test_tunable_params_ion_not_measured_and_landmark_params_from_weights(tmp_path):
    """Table IX/X's Tunable Params column reads the trained model's count; Table III in the paper preset counts
    the landmark weights' parameters and says the ION was not measured (no landmark test set configured)."""
    import torch

    from dfer.landmarks.registry import build_landmark_net, count_params

    params = load_params(ROOT / "params.yaml", ["preset=paper"])
    tables = __import__("yaml").safe_load((ROOT / "workflow/tables.yaml").read_text())
    plan = build_plan(params, tables)
    s2d = [c for c in plan.cells["table_9"] if c.row == "S2D (ours) *" and c.column == "Tunable Params (M)"][0]
    assert s2d.paper == 9 and s2d.metric == "tunable_m"
    for h in s2d.runs:
        write_eval(tmp_path, plan.runs[h], {"uar": 0.6, "war": 0.7, "parameters": {"total": 95_055_571,
                                                                                     "tunable": 9_258_451}})
    weights = tmp_path / params["landmarks"]["weights"]["PFLD"]
    weights.parent.mkdir(parents=True)
    torch.save({"state_dict": build_landmark_net("PFLD").state_dict()}, weights)
    _, csv9, _ = render_table(plan.table_payload("table_9"), tmp_path / "tables", tmp_path)
    row = next(r for r in csv.DictReader(csv9.open()) if r["row"] == "S2D (ours) *" and r["metric"] == "tunable_m")
    assert float(row["ours"]) == pytest.approx(9.258451, abs=1e-4) and float(row["paper"]) == 9  # CSV: 4 decimals
    md3, csv3, _ = render_table(plan.table_payload("table_3"), tmp_path / "tables", tmp_path)
    rows = {(r["row"], r["metric"]): r for r in csv.DictReader(csv3.open())}
    assert float(rows[("PFLD", "params_m")]["ours"]) == pytest.approx(count_params(build_landmark_net("PFLD")) / 1e6,
                                                           abs=1e-4)
    assert rows[("PFLD", "ion")]["ours"] == "" and rows[("PFLD", "ion")]["note"] == "not measured"
    assert "| PFLD | not measured (3.97) |" in md3.read_text()


def test_best_trained_row_is_bold_cost_columns_and_cited_rows_are_not(tmp_path):
    """Per column, the highest of our numbers is bold (Markdown ** / LaTeX \\textbf), not a cited row's higher
    paper number and not a parameter count; an error (ION) ranks the lowest first."""
    from dfer.workflow.tables import best_rows

    tables = {"tables": {"table_b": {
        "title": "Bold", "defaults": {"method": "s2d", "folds": "ablation", "dataset": "DFEW"},
        "columns": [{"label": "UAR", "spec": {"metric": "uar"}}, {"label": "Params", "spec": {"metric": "tunable_m"}}],
        "rows": [{"label": "none", "spec": {"set": {"model.kwargs.fusion": "none"}}, "paper": [61.06, 9]},
                 {"label": "MCP", "spec": {"set": {"model.kwargs.fusion": "mcp"}}, "paper": [61.56, 9]},
                 {"label": "cited", "paper": [99.0, 1]}]}}}
    plan = build_plan(own_params(), tables)
    for c in plan.cells["table_b"]:
        for h in c.runs:
            uar = 0.45 if c.row == "MCP" else 0.40
            write_eval(tmp_path, plan.runs[h], {"uar": uar, "war": 0.5, "parameters": {
                "tunable": 9e6 if c.row == "MCP" else 8e6, "total": 90e6}})
    md, csv_path, tex = render_table(plan.table_payload("table_b"), tmp_path / "tables", tmp_path)
    text = md.read_text()
    assert "| MCP | **45.00** (61.56) | 9.00 (9.00) |" in text
    assert "| none | 40.00 (61.06) | 8.00 (9.00) |" in text and "| cited | (99.00) | (1.00) |" in text
    assert r"MCP & \textbf{45.00} (61.56) & 9.00 (9.00) \\" in tex.read_text()
    rows = {(r["row"], r["metric"]): r for r in csv.DictReader(csv_path.open())}
    assert float(rows[("MCP", "uar")]["diff"]) == pytest.approx(45.0 - 61.56)
    ion = {row: {"ours": v, "metric": "ion", "cited_only": False} for row, v in (("a", 4.1), ("b", 3.9))}
    assert best_rows({(row, "ION"): r for row, r in ion.items()}, ["a", "b"], "ION") == {"b"}


def test_a_uar_at_chance_says_the_model_did_not_learn_and_is_never_bold(tmp_path):
    """7 DFEW classes: chance UAR 14.29 %; below 1.2 x chance a cell reads "≈ chance" (MD, LaTeX, CSV note)."""
    tables = {"tables": {"table_c": {
        "title": "Chance", "defaults": {"method": "s2d", "folds": "ablation", "dataset": "DFEW"},
        "columns": [{"label": "UAR", "spec": {"metric": "uar"}}, {"label": "WAR", "spec": {"metric": "war"}}],
        "rows": [{"label": "none", "spec": {"set": {"model.kwargs.fusion": "none"}}, "paper": [61.06, 70.0]},
                 {"label": "MCP", "spec": {"set": {"model.kwargs.fusion": "mcp"}}, "paper": [61.56, 71.0]}]}}}
    plan = build_plan(own_params(), tables)
    for uar_mcp, expect_bold in ((0.16, False), (0.30, True)):
        for c in plan.cells["table_c"]:
            for h in c.runs:
                write_eval(tmp_path, plan.runs[h], {"uar": uar_mcp if c.row == "MCP" else 0.15, "war": 0.2})
        md, csv_path, tex = render_table(plan.table_payload("table_c"), tmp_path / "tables", tmp_path)
        text = md.read_text()
        assert "| none | 15.00 ≈ chance (61.06) | **20.00** (70.00) |" in text  # WAR: chance depends on the class mix
        mcp = f"{uar_mcp * 100:.2f}" + ("" if expect_bold else " ≈ chance")
        assert f"| MCP | {'**' + mcp + '**' if expect_bold else mcp} (61.56) |" in text
        assert r"15.00 $\approx$ chance (61.06)" in tex.read_text()
        rows = {(r["row"], r["metric"]): r for r in csv.DictReader(csv_path.open())}
        assert rows[("none", "uar")]["note"] == "at chance (did not learn)"
        assert float(rows[("none", "uar")]["chance"]) == pytest.approx(100 / 7, abs=1e-3)
        assert rows[("none", "war")]["note"] == "" and rows[("none", "war")]["chance"] == ""


def test_a_tables_note_is_printed_under_its_title(tmp_path):
    plan = build_plan(own_params(), __import__("yaml").safe_load(
        (ROOT / "workflow/tables.yaml").read_text()))
    md, _, tex = render_table(plan.table_payload("table_6"), tmp_path / "tables", tmp_path)
    assert "> Note: \"One-Hot+SDL\" = S2D as the official scripts run it" in md.read_text()
    assert "% Note:" in tex.read_text()


def test_cells_the_preset_does_not_run_plan_no_run_and_say_why(tmp_path):
    reason = "too slow for this preset"
    params = own_params("tables.not_run=[{tables: [table_t], column: DFEW UAR, reason: " + reason + "}]")
    plan = build_plan(params, TABLES)
    uar = [c for c in plan.cells["table_t"] if c.column == "DFEW UAR" and c.metric]
    assert uar and all(c.not_run == reason and not c.runs for c in uar)
    assert all(c.runs for c in plan.cells["table_t"] if c.column != "DFEW UAR" and c.metric)
    md, csv_path, _ = render_table(plan.table_payload("table_t"), tmp_path / "tables", tmp_path)
    text = md.read_text()
    assert f"> Not run in preset `synthetic`: {reason}" in text and "| ours | not run (60.00) |" in text
    row = next(r for r in csv.DictReader(csv_path.open()) if r["row"] == "ours" and r["column"] == "DFEW UAR")
    assert row["note"] == "not run" and row["ours"] == ""


def test_a_not_run_entry_that_selects_nothing_is_an_error():
    from dfer.config import ConfigError

    with pytest.raises(ConfigError, match=r"tables.not_run\[0\].*selects no cell"):
        build_plan(own_params("tables.not_run=[{tables: [table_t], row: no such row, reason: typo}]"), TABLES)


def test_cells_a_preset_reads_on_another_dataset_train_there_and_the_table_says_so(tmp_path):
    params = own_params("tables.main_folds=[1,2]",
                        "tables.read_on=[{tables: [table_t], dataset: DFEW, instead: MAFW, reason: too few clips}]")
    plan = build_plan(params, TABLES)
    moved = [c for c in plan.cells["table_t"] if c.column.startswith("DFEW") and c.metric]
    assert moved and all(c.dataset == "MAFW" and len(c.runs) == 1 for c in moved)   # MAFW's ablation fold
    assert {(plan.runs[h].config["dataset"], plan.runs[h].config["fold"]) for c in moved for h in c.runs} == {("MAFW", 1)}
    sfer = next(c for c in plan.cells["table_t"] if c.column == "FERPlus from RAF-DB" and c.metric)
    assert plan.runs[sfer.runs[0]].config["dataset"] == "RAF-DB"        # cells on other datasets stay
    md, _, _ = render_table(plan.table_payload("table_t"), tmp_path / "tables", tmp_path)
    assert "> Note: In preset `synthetic` the DFEW cells are read on MAFW fold 1: too few clips" in md.read_text()


def test_a_read_on_entry_that_selects_nothing_is_an_error():
    from dfer.config import ConfigError

    with pytest.raises(ConfigError, match=r"tables.read_on\[0\].*selects no cell"):
        build_plan(own_params("tables.read_on=[{tables: [table_t], dataset: FERV39K, instead: DFEW, reason: x}]"),
                   TABLES)


def test_unilearn_table3_reads_active_and_total_parameters_and_fig_3a_draws_a_curve(tmp_path):
    """UniLearn's Table 3 columns come from the trained models' counts in eval.json (active at test, all in
    training); Fig. 3(a) plots UAR and WAR against the number of experts from the same kind of files."""
    from dfer.workflow.figures import draw

    tables = __import__("yaml").safe_load((ROOT / "workflow/tables.yaml").read_text())
    plan = build_plan(own_params(), tables)
    counts = {"6 ViT": (86.2e6, 86.2e6), "7 ViT-MTL (w/o MoAE)": (86.2e6, 86.2e6),
              "8 UniLearn (MoAE)": (89.9e6, 100.5e6), "9 ViT-MoE": (114.6e6, 284.7e6)}
    for row, (active, total) in counts.items():
        c = next(c for c in plan.cells["unilearn_table_3"] if c.row == row)
        write_eval(tmp_path, plan.runs[c.runs[0]], {"uar": 0.4, "war": 0.5, "parameters": {
            "total": total, "tunable": total, "active": active}})
    _, csv3, _ = render_table(plan.table_payload("unilearn_table_3"), tmp_path / "tables", tmp_path)
    rows = {(r["row"], r["metric"]): r for r in csv.DictReader(csv3.open())}
    assert float(rows[("9 ViT-MoE", "active_m")]["ours"]) == pytest.approx(114.6)
    assert float(rows[("9 ViT-MoE", "total_m")]["ours"]) == pytest.approx(284.7)
    assert float(rows[("8 UniLearn (MoAE)", "total_m")]["paper"]) == 101
    for c, uar in zip(plan.cells["unilearn_fig_3a"], (0.30, 0.35, 0.40, 0.33)):
        write_eval(tmp_path, plan.runs[c.runs[0]], {"uar": uar, "war": uar + 0.1})
    png = draw(plan.table_payload("unilearn_fig_3a"), tmp_path / "fig.png", tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
