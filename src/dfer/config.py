"""One config: ``params.yaml`` at the project root, read by Snakemake, DVC and every ``dfer`` command.

``params.yaml`` holds the base settings, a ``presets`` map (``synthetic``: the embedded mini-benchmark;
``paper``: real data and the paper's recipe) and the key ``preset`` that picks one. The resolved config
is the base deep-merged with the chosen preset, then validated against
``workflow/schemas/params.schema.yaml``.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml

SCHEMA_RELPATH = Path("workflow/schemas/params.schema.yaml")


class ConfigError(ValueError):
    """A config value is missing or invalid; the message names the key and the fix."""


def project_root(start: str | os.PathLike | None = None) -> Path:
    """Nearest directory (from ``start`` or CWD upwards) holding ``params.yaml``; ``DFER_ROOT`` wins."""
    if os.environ.get("DFER_ROOT"):
        return Path(os.environ["DFER_ROOT"]).resolve()
    here = Path(start or os.getcwd()).resolve()
    for d in [here, *here.parents]:
        if (d / "params.yaml").is_file():
            return d
    raise ConfigError(f"no params.yaml found in {here} or its parents; run from the project root "
                      "or set DFER_ROOT")


def deep_merge(base: dict, override: dict) -> dict:
    """Recursive dict merge; ``override`` wins, lists are replaced whole."""
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.c=VALUE`` -> (["a","b","c"], yaml-parsed VALUE)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not KEY=VALUE (e.g. train.epochs=3)")
    key, value = item.split("=", 1)
    return key.split("."), yaml.safe_load(value)


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (dotted keys, as in overrides and MLflow params)."""
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def set_path(cfg: dict, path: list[str], value: Any) -> None:
    node = cfg
    for k in path[:-1]:
        node = node.setdefault(k, {})
    node[path[-1]] = value


def resolve(raw: dict, overrides: list[str] | None = None) -> dict:
    """Apply the chosen preset and ``KEY=VALUE`` overrides to a raw params dict, then validate."""
    raw = copy.deepcopy(raw)
    for item in overrides or []:
        set_path(raw, *parse_override(item))
    presets = raw.pop("presets", {}) or {}
    name = raw.get("preset", "synthetic")
    if name not in presets:
        raise ConfigError(f"preset {name!r} is not defined in params.yaml presets ({sorted(presets)}); "
                          "set `preset:` to one of them")
    cfg = deep_merge(raw, presets[name])
    # Overrides win over the preset too (so `train.epochs=1` works whatever the preset says).
    for item in overrides or []:
        path, value = parse_override(item)
        if path[0] not in {"preset", "presets"}:
            set_path(cfg, path, value)
    validate(cfg)
    return cfg


def validate(cfg: dict, schema_path: str | os.PathLike | None = None) -> None:
    """Validate against the JSON schema; raise ConfigError listing every problem with its key path."""
    import jsonschema

    path = Path(schema_path) if schema_path else _schema_path()
    if path is None or not path.is_file():
        return
    schema = yaml.safe_load(path.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]
        raise ConfigError("params.yaml does not match workflow/schemas/params.schema.yaml:\n"
                          + "\n".join(lines))


def _schema_path() -> Path | None:
    try:
        return project_root() / SCHEMA_RELPATH
    except ConfigError:
        return None


def load_params(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> dict:
    """Read ``params.yaml`` (default: the project's) and resolve it."""
    p = Path(path) if path else project_root() / "params.yaml"
    if not p.is_file():
        raise ConfigError(f"{p}: params file not found")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    return resolve(raw, overrides)


def config_hash(cfg: dict, length: int = 12) -> str:
    """Stable content hash of a (sub-)config: identical runs get identical hashes."""
    blob = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dfer params", description=__doc__)
    ap.add_argument("--params", default=None, help="params file (default: ./params.yaml)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="override a value, e.g. preset=paper train.epochs=3")
    ap.add_argument("--key", default=None, help="print only this dotted key")
    args = ap.parse_args(argv)
    cfg = load_params(args.params, args.set)
    if args.key:
        for k in args.key.split("."):
            cfg = cfg[k]
    print(yaml.safe_dump(cfg, sort_keys=False) if isinstance(cfg, (dict, list)) else cfg)
    return 0
