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
