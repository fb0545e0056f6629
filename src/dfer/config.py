"""One config: ``params.yaml`` at the project root, read by Snakemake, DVC and every ``dfer`` command.

``params.yaml`` holds the base settings (every default, once), a ``presets`` map (``synthetic``: the embedded
mini-benchmark; ``paper``: real data and the paper's recipe) and the key ``preset`` that picks one. The
resolved config is, lowest to highest precedence: the base <- the chosen preset <- overrides
(``snakemake --config``, ``dfer ... --set KEY=VALUE``), validated against
``workflow/schemas/params.schema.yaml`` (every key required, unknown keys rejected).

Inside the workflow no job resolves a preset itself: Snakemake resolves once, and each stage job writes the
sections it needs (``stage_params``) to its *stage file* under ``results/config/`` and passes it with
``--params``. ``load_params`` reads both kinds of file; the result remembers where each value came from
(``Params.origin``), so ``dfer params --sources`` shows it and errors can say that a preset replaced a value.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

SCHEMA_DIR = Path("workflow/schemas")
STAGE_FILE_KEY = "resolved"   # marks a stage file: {resolved: {...}, params: {section: ...}}


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


def _yaml_scalars(value: Any) -> Any:
    """Snakemake reads nested ``--config`` values with YAML's BaseLoader (every scalar a string): read each
    string scalar as YAML, as params.yaml would (``'3'`` -> 3, ``'0.05'`` -> 0.05, ``'null'`` -> None)."""
    if isinstance(value, dict):
        return {k: _yaml_scalars(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_yaml_scalars(v) for v in value]
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return parsed if not isinstance(parsed, (dict, list)) else value
    return value


def overrides_dict(overrides: list[str] | dict | None) -> dict:
    """``["a.b=1", ...]`` (command line) or a nested dict (Snakemake's ``--config``) -> a nested dict."""
    if isinstance(overrides, dict):
        return _yaml_scalars(copy.deepcopy(overrides))
    out: dict = {}
    for item in overrides or []:
        set_path(out, *parse_override(item))
    return out


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (dotted keys, as in overrides and MLflow params)."""
    if isinstance(d, dict) and d:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d} if prefix else {}


def set_path(cfg: dict, path: list[str], value: Any) -> None:
    node = cfg
    for k in path[:-1]:
        node = node.setdefault(k, {})
    node[path[-1]] = value


def get_path(cfg: dict, dotted: str) -> Any:
    node = cfg
    for k in dotted.split("."):
        node = node[k]
    return node


class Params(dict):
    """The resolved config (a plain dict to every consumer) that remembers where each value came from.

    ``origin``: dotted key -> ``"params.yaml"`` | ``"presets.<name>"`` | ``"override"`` for every leaf;
    ``replaced``: dotted key -> the params.yaml value a preset or an override replaced.
    """

    def __init__(self, cfg: dict, origin: dict[str, str] | None = None, replaced: dict[str, Any] | None = None):
        super().__init__(cfg)
        self.origin = dict(origin or {})
        self.replaced = dict(replaced or {})

    def explain(self, dotted: str) -> str:
        """Where ``dotted``'s value came from, for error messages (empty when it is params.yaml's own)."""
        src = next((self.origin[k] for k in (dotted, *_prefixes(dotted)) if k in self.origin), "params.yaml")
        if src == "params.yaml":
            return ""
        was = self.replaced.get(dotted)
        base = f", replacing params.yaml's {dotted}: {was}" if was is not None else ""
        if src.startswith("presets."):
            return (f"{dotted} comes from `{src}` (preset {src.split('.', 1)[1]!r}{base}); "
                    "choose another preset (e.g. --config preset=paper) or edit that preset")
        return f"{dotted} comes from an override{base}"


def _prefixes(dotted: str) -> list[str]:
    parts = dotted.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def resolve(raw: dict, overrides: list[str] | dict | None = None) -> Params:
    """base <- ``presets[preset]`` <- overrides, validated; the result records each value's origin."""
    over = overrides_dict(overrides)
    raw = deep_merge(raw, over)
    presets = raw.pop("presets", {}) or {}
    name = raw.get("preset", "synthetic")
    if name not in presets:
        raise ConfigError(f"preset {name!r} is not defined in params.yaml presets ({sorted(presets)}); "
                          "set `preset:` to one of them")
    preset = presets[name] or {}
    over = {k: v for k, v in over.items() if k not in ("preset", "presets")}
    cfg = deep_merge(deep_merge(raw, preset), over)  # overrides win over the preset too
    validate(cfg)
    base, by_preset, by_override = flatten(raw), flatten(preset), flatten(over)
    origin = {k: "override" if k in by_override else f"presets.{name}" if k in by_preset else "params.yaml"
              for k in flatten(cfg)}
    replaced = {k: base[k] for k, src in origin.items() if src != "params.yaml" and k in base and base[k] != get_path(cfg, k)}
    return Params(cfg, origin, replaced)


@lru_cache(maxsize=None)
def _schemas(root: str) -> tuple[dict, Any]:
    """(params schema, registry holding params.schema.yaml and run.schema.yaml by file name)."""
    from referencing import Registry, Resource

    docs = {name: load_yaml((Path(root) / SCHEMA_DIR / name).read_text())
            for name in ("params.schema.yaml", "run.schema.yaml")}
    registry = Registry().with_resources((name, Resource.from_contents(doc)) for name, doc in docs.items())
    return docs, registry


def validate(cfg: dict, schema: str = "params", what: str = "params.yaml", section: str | None = None) -> None:
    """Validate against ``workflow/schemas/<schema>.schema.yaml`` (or one of its top-level ``section``s);
    raise ConfigError listing every problem with its key path."""
    import jsonschema

    docs, registry = _schemas(str(_schema_root()))
    name = f"{schema}.schema.yaml"
    doc = docs[name]
    if section is not None:
        doc = {"$ref": f"{name}#/properties/{section}"}
    validator = jsonschema.Draft202012Validator(doc, registry=registry)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        prefix = f"{section}." if section else ""
        lines = [f"  {prefix}{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]
        raise ConfigError(f"{what} does not match {SCHEMA_DIR}/{name}:\n" + "\n".join(lines))


def _schema_root() -> Path:
    """The project holding the schemas: the project root, else this source tree's checkout."""
    try:
        root = project_root()
        if (root / SCHEMA_DIR).is_dir():
            return root
    except ConfigError:
        pass
    return Path(__file__).resolve().parents[2]


def load_params(path: str | os.PathLike | None = None, overrides: list[str] | dict | None = None) -> Params:
    """Read ``params.yaml`` (default: the project's) and resolve it, or read a stage file as it is."""
    p = Path(path) if path else project_root() / "params.yaml"
    if not p.is_file():
        raise ConfigError(f"{p}: params file not found")
    try:
        raw = load_yaml(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if STAGE_FILE_KEY in raw:
        if overrides:
            raise ConfigError(f"{p} is a resolved stage file written by the workflow: change params.yaml or "
                              "pass --config to snakemake instead of --set")
        return read_stage_params(raw, p)
    return resolve(raw, overrides)


def params_base(path: str | os.PathLike | None) -> Path:
    """The folder relative data paths are taken from: the project root for params.yaml and stage files, else
    the folder of the given params file."""
    if path is None:
        return project_root()
    p = Path(path).resolve()
    try:
        if STAGE_FILE_KEY in (load_yaml(p.read_text()) or {}):
            return project_root()
    except (OSError, yaml.YAMLError):
        pass
    return p.parent


# ---- stage files -------------------------------------------------------------------------------------------
def stage_params(cfg: Params, sections: list[str]) -> dict:
    """The stage-file content for ``sections`` of a resolved config: the values and where they came from."""
    missing = [s for s in sections if s not in cfg]
    if missing:
        raise ConfigError(f"sections {missing} are not in the resolved params")
    origin = getattr(cfg, "origin", {})
    replaced = getattr(cfg, "replaced", {})
    inside = lambda k: k.split(".", 1)[0] in sections  # noqa: E731
    return {STAGE_FILE_KEY: {"preset": cfg["preset"], "recipe": cfg["recipe"],
                             "not_from_params_yaml": {k: v for k, v in origin.items() if inside(k) and v != "params.yaml"},
                             "replaced": {k: v for k, v in replaced.items() if inside(k)}},
            "params": {s: copy.deepcopy(cfg[s]) for s in sections}}


def read_stage_params(doc: dict, path: Path) -> Params:
    meta, params = doc.get(STAGE_FILE_KEY) or {}, doc.get("params")
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: a stage file holds `params:` (the resolved sections)")
    for section, value in params.items():
        validate(value, section=section, what=str(path))
    cfg = {"preset": meta.get("preset"), "recipe": meta.get("recipe"), **params}
    return Params(cfg, meta.get("not_from_params_yaml"), meta.get("replaced"))


def load_yaml(text: str) -> Any:
    """``yaml.safe_load(text)``, through libyaml where PyYAML has it (the same result, several times faster: the
    DAG parses params.yaml, the schemas, tables.yaml and claims.yaml on every Snakemake start)."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def dump_yaml(obj: Any) -> str:
    """``yaml.safe_dump(obj, sort_keys=False)``, through libyaml where PyYAML has it: the same text, 5x faster. The
    DAG writes every run config and stage settings file as a rule param at parse time, so a no-op re-run pays for
    it (pure-Python dumping was ~2 of its ~7 s)."""
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(obj, Dumper=dumper, sort_keys=False)


def config_hash(cfg: dict, length: int = 12) -> str:
    """Stable content hash of a (sub-)config: identical runs get identical hashes."""
    blob = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def preset_notice(cfg: Params) -> str:
    """One line a person reads at the start of a workflow: the preset and which dataset roots it set."""
    roots = sorted(k.split(".")[2] for k, src in cfg.origin.items()
                   if src.startswith("presets.") and k.startswith("data.datasets.") and k.endswith(".root"))
    line = f"dfer: preset {cfg['preset']!r}, recipe {cfg['recipe']!r}"
    if roots:
        line += (f"; dataset roots of {', '.join(roots)} come from the preset (presets.{cfg['preset']}), not from "
                 "data.datasets (set --config preset=paper for real data)")
    return line


def main(argv: list[str] | None = None) -> int:
    from dfer.cli import add_params_args, command_parser

    ap = command_parser("params", __doc__)
    add_params_args(ap, set_help="override a value, e.g. preset=paper train.epochs=3")
    ap.add_argument("--key", default=None, help="print only this dotted key")
    ap.add_argument("--sources", action="store_true",
                    help="print every value with where it came from (params.yaml, the preset, an override)")
    ap.add_argument("--run", default=None, metavar="METHOD/DATASET",
                    help="print the run config the planner makes for a method on a dataset (e.g. s2d/FERV39K): "
                         "train + methods.<m> + its recipe, merged")
    args = ap.parse_args(argv)
    cfg = load_params(args.params, args.set)
    if args.run:
        from dfer.workflow.plan import method_run_config

        method, _, dataset = args.run.partition("/")
        folds = cfg["data"]["datasets"].get(dataset, {}).get("folds") or [None]
        out = method_run_config(cfg, method, dataset, fold=folds[0])
        if args.key:
            out = get_path(out, args.key)
        print(yaml.safe_dump(out, sort_keys=False) if isinstance(out, (dict, list)) else out)
        return 0
    if args.sources:
        flat = flatten(dict(cfg))
        keys = [k for k in flat if not args.key or k == args.key or k.startswith(args.key + ".")]
        width = max((len(k) for k in keys), default=10)
        for k in keys:
            src = cfg.origin.get(k, "params.yaml")
            was = f"   (params.yaml: {cfg.replaced[k]})" if k in cfg.replaced else ""
            print(f"{k:<{width}}  {json.dumps(flat[k], default=str):<28}  {src}{was}")
        return 0
    out: Any = dict(cfg)
    if args.key:
        try:
            out = get_path(out, args.key)
        except (KeyError, TypeError):
            raise ConfigError(f"no key {args.key!r} in the resolved params") from None
    print(yaml.safe_dump(out, sort_keys=False) if isinstance(out, (dict, list)) else out)
    return 0
