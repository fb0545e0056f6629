"""params.yaml: presets, overrides and schema validation."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dfer.config import ConfigError, config_hash, load_params, resolve

ROOT = Path(__file__).resolve().parents[1]


def raw_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_default_preset_is_the_embedded_synthetic_benchmark():
    cfg = load_params(ROOT / "params.yaml")
    assert cfg["preset"] == "synthetic"
    assert cfg["data"]["datasets"]["DFEW"]["root"].startswith("results/synth")
    assert "presets" not in cfg


def test_one_key_switches_to_the_paper_preset():
    cfg = resolve(raw_params(), ["preset=paper"])
    assert cfg["preset"] == "paper"
    assert cfg["data"]["datasets"]["DFEW"]["root"] == "data/DFEW"


def test_override_wins_over_preset():
    cfg = resolve(raw_params(), ["data.datasets.DFEW.root=/mnt/dfew"])
    assert cfg["data"]["datasets"]["DFEW"]["root"] == "/mnt/dfew"


def test_unknown_preset_names_the_fix():
    with pytest.raises(ConfigError, match="preset 'nope' is not defined"):
        resolve(raw_params(), ["preset=nope"])


def test_schema_error_names_the_key():
    with pytest.raises(ConfigError, match=r"data\.datasets\.DFEW\.format"):
        resolve(raw_params(), ["data.datasets.DFEW.format=csv"])


def test_cli_reports_config_errors_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "dfer.cli", "params", "--set", "seed=-1"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "seed" in proc.stderr and "Traceback" not in proc.stderr


def test_config_hash_is_stable_and_sensitive():
    a = {"x": 1, "y": {"z": [1, 2]}}
    assert config_hash(a) == config_hash({"y": {"z": [1, 2]}, "x": 1})
    assert config_hash(a) != config_hash({"x": 2, "y": {"z": [1, 2]}})


def test_every_section_is_strict_unknown_keys_are_named():
    with pytest.raises(ConfigError, match="lerning_rate"):
        resolve(raw_params(), ["train.lerning_rate=1.0e-3"])
    with pytest.raises(ConfigError, match="roots"):
        resolve(raw_params(), ["data.datasets.DFEW.roots=/x"])


def test_params_yaml_holds_every_default_the_schema_requires():
    """Removing any key of a section is an error: no code fills it in behind the user's back."""
    raw = raw_params()
    del raw["train"]["layer_decay"]
    with pytest.raises(ConfigError, match="layer_decay"):
        resolve(raw)


def test_sources_say_which_values_the_preset_replaced():
    """A user who sets a dataset root but keeps `preset: synthetic` sees the preset replaced it."""
    raw = raw_params()
    raw["data"]["datasets"]["DFEW"]["root"] = "/mnt/my/DFEW"
    cfg = resolve(raw)
    assert cfg["data"]["datasets"]["DFEW"]["root"] == "results/synth/DFEW"
    assert cfg.origin["data.datasets.DFEW.root"] == "presets.synthetic"
    assert cfg.origin["data.datasets.DFEW.format"] == "params.yaml"
    why = cfg.explain("data.datasets.DFEW.root")
    assert "presets.synthetic" in why and "/mnt/my/DFEW" in why and "preset=paper" in why
    assert cfg.explain("data.datasets.DFEW.format") == ""
    over = resolve(raw, ["data.datasets.DFEW.root=/elsewhere"])
    assert over.origin["data.datasets.DFEW.root"] == "override"


def test_dfer_params_sources_prints_the_origin_of_each_value():
    proc = subprocess.run([sys.executable, "-m", "dfer.cli", "params", "--sources", "--key", "data.datasets.DFEW"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    root = next(line for line in proc.stdout.splitlines() if line.startswith("data.datasets.DFEW.root "))
    assert "results/synth/DFEW" in root and "presets.synthetic" in root and "(params.yaml: data/DFEW)" in root


def test_check_data_error_names_the_preset_that_set_the_root(tmp_path):
    """`dfer check-data` on a root the preset set says so, instead of telling the user to set the key they set."""
    raw = raw_params()
    raw["data"]["datasets"]["RAF-DB"]["root"] = str(tmp_path / "my_rafdb")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    proc = subprocess.run([sys.executable, "-m", "dfer.cli", "check-data", "RAF-DB", "--params",
                           str(tmp_path / "params.yaml"), "--no-progress"], cwd=tmp_path, capture_output=True,
                          text=True, env={**__import__("os").environ, "DFER_ROOT": str(tmp_path)})
    assert proc.returncode == 1
    assert "presets.synthetic" in proc.stdout and str(tmp_path / "my_rafdb") in proc.stdout


def test_stage_files_are_read_as_written_and_refuse_overrides(tmp_path):
    from dfer.config import read_stage_params, stage_params

    cfg = resolve(raw_params(), ["landmarks.features.batch_size=7"])
    path = tmp_path / "extract_features.yaml"  # what the job writes (rules/common.smk stage_settings)
    path.write_text(yaml.safe_dump(stage_params(cfg, ["data", "landmarks"]), sort_keys=False))
    again = load_params(path)
    assert again["landmarks"] == cfg["landmarks"] and again["data"] == cfg["data"]
    assert again["landmarks"]["features"]["batch_size"] == 7 and again["preset"] == "synthetic"
    assert again.origin["landmarks.features.batch_size"] == "override"
    assert "train" not in again  # only the stage's sections
    with pytest.raises(ConfigError, match="stage file"):
        load_params(path, ["seed=1"])
    doc = yaml.safe_load(path.read_text())
    doc["params"]["landmarks"]["features"]["batch_size"] = "many"
    with pytest.raises(ConfigError, match="batch_size"):
        read_stage_params(doc, path)
