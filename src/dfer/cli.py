"""The ``dfer`` command line: one entry point, one subcommand per stage.

Each subcommand lives in the module that implements the stage and exposes ``main(argv) -> int``;
modules are imported lazily so ``dfer --help`` stays fast (no torch import).
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). A newcomer finds a stage's code from its command name here.
COMMANDS: dict[str, tuple[str, str]] = {
    "params": ("dfer.config", "print the resolved params.yaml (preset applied, schema-validated)"),
    "synth": ("dfer.data.synth.cli", "generate the synthetic mini-benchmark in the real datasets' formats"),
    "check-data": ("dfer.data.check", "report every unreadable or mislabelled item of a dataset"),
    "train-detector": ("dfer.align.train_detector", "train the face detector on the synthetic training split"),
    "align": ("dfer.align.stage", "detect, crop and align faces; write aligned frames and a per-clip report"),
    "train-landmarks": ("dfer.landmarks.train", "train a landmark network on ground-truth landmarks; report ION"),
    "extract-features": ("dfer.landmarks.features", "compute and cache landmark-aware features per frame"),
    "pretrain-mae": ("dfer.pretrain.stage", "MAE pre-training of the ViT encoder (an init of model.inits)"),
    "train": ("dfer.engine.train", "train one run (SFER or DFER) from a resolved run config"),
    "evaluate": ("dfer.engine.evaluate", "test a checkpoint with the paper's protocol (UAR, WAR, confusion)"),
    "predict": ("dfer.workflow.predict", "expression probabilities for your own video file"),
    "plan": ("dfer.workflow.plan", "resolve the paper's tables to unique runs"),
    "table": ("dfer.workflow.tables", "render one paper table from run results"),
    "claims": ("dfer.workflow.claims", "score the paper's claims on the runs (reproduced / inconclusive / reversed)"),
    "figure": ("dfer.workflow.figures", "draw one paper figure from run results"),
    "launch": ("dfer.launch", "submit one run outside the DAG with submitit (SLURM or --local)"),
}


# ---- the preamble every command shares -----------------------------------------------------------------
def command_parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of ``dfer NAME``: its ``--help`` shows ``doc`` (the command module's docstring) as written."""
    return argparse.ArgumentParser(prog=f"dfer {name}", description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_params_args(ap: argparse.ArgumentParser, set_help: str = "params overrides",
                    params_help: str = "params.yaml, or a stage file the workflow writes "
                                       "(default: the project's params.yaml)") -> None:
    """``--params FILE`` (params.yaml or a stage file the workflow writes) and ``--set KEY=VALUE ...``."""
    ap.add_argument("--params", default=None, help=params_help)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help=set_help)


def add_quiet_arg(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--quiet", action="store_true", help="no progress bars")


def stage_params(args: argparse.Namespace):
    """``(params, base)`` of a command with :func:`add_params_args`: the resolved params (preset applied, overrides
    set) and the folder their relative data paths are taken from."""
    from dfer.config import load_params, params_base

    return load_params(args.params, args.set), params_base(args.params)


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of handing it back to the kernel.

    By default glibc serves every allocation above a (dynamic) threshold of ~128 KiB-32 MiB with its own mmap and
    returns it on free, so a CPU forward pass whose activations are tens of MiB (MobileFaceNet on a batch of 64
    frames: 64 x 64 x 56 x 56 floats per layer) faults in fresh zeroed pages on every call: measured, 2/3 of the
    feature cache's CPU time was system time, at 18.5 frames/s; with the thresholds raised, 53.8 frames/s and
    no system time (benchmarks/bench_landmarks.py). PyTorch's CPU guide reaches the same with jemalloc/tcmalloc; this
    needs nothing installed. Returns whether the setting took (False off glibc)."""
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3          # glibc <malloc.h>
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, 1 << 30))


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: dfer COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `dfer COMMAND --help` for the options of one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"dfer: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    keep_freed_memory()
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.main(rest) or 0)
    except _user_errors() as exc:
        # Bad input is the user's to fix: print the message (it names the file and the fix), no traceback.
        print(f"dfer {name}: error: {exc}", file=sys.stderr)
        return 2


def _user_errors() -> tuple[type[BaseException], ...]:
    from dfer.config import ConfigError

    errors: list[type[BaseException]] = [ConfigError]
    try:
        from dfer.data.errors import DataError

        errors.append(DataError)
    except ImportError:
        pass
    return tuple(errors)


if __name__ == "__main__":
    sys.exit(main())
