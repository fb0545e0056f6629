"""`dfer synth`: write the synthetic mini-benchmark in the real datasets' on-disk formats.

Settings come from params.yaml ``synth:`` (``--params``, ``--set synth.dfew.clips=50``); ``--out``,
``--datasets``, ``--seed`` and ``--scale`` override them. Each dataset folder is written to a temp folder and
swapped in atomically, so a failed run never leaves half a dataset.
"""
from __future__ import annotations

import time

from dfer.cli import add_params_args, add_quiet_arg, command_parser, stage_params
from dfer.data.synth.generate import DATASETS, generate, resolve_settings


def _format_summary(summary: dict, seconds: float) -> str:
    """Counts per class (columns) per split (rows) for every dataset, then sizes and times."""
    lines = []
    for name, info in summary.items():
        lines.append(f"{name}: {info['items']} items"
                     + (f", {info['frames']} frames" if "frames" in info else "")
                     + f", label noise {info['label_noise']:.3f}, {info['bytes'] / 2**20:.1f} MiB,"
                     f" {info['seconds']:.1f} s")
        splits = ({"all": info["all"]} if "all" in info else {}) | info["counts"]
        classes = list(next(iter(splits.values())))
        widths = [max(len(c), 4) for c in classes]
        lines.append("  " + " " * 12 + " ".join(f"{c:>{w}}" for c, w in zip(classes, widths)))
        for split, counts in splits.items():
            lines.append(f"  {split:<12}" + " ".join(f"{counts[c]:>{w}}" for c, w in zip(classes, widths)))
    lines.append(f"total {seconds:.1f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = command_parser("synth", __doc__)
    ap.add_argument("--out", default=None, help="output folder (default: params synth.out = results/synth)")
    ap.add_argument("--datasets", nargs="+", default=None, choices=DATASETS, metavar="NAME",
                    help=f"datasets to write (default: all of {' '.join(DATASETS)})")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: synth.seed, else params seed)")
    ap.add_argument("--scale", type=float, default=None, help="multiply every item count (default: synth.scale)")
    add_params_args(ap, set_help="params overrides, e.g. synth.dfew.clips=50 synth.dfew.label_noise=0.2")
    add_quiet_arg(ap)
    args = ap.parse_args(argv)

    from dfer.config import ConfigError

    params, _ = stage_params(args)
    synth = dict(params["synth"])
    if args.scale is not None:
        synth["scale"] = args.scale
    try:
        settings = resolve_settings(synth)
    except KeyError as exc:
        raise ConfigError(f"params.yaml synth: {exc.args[0]}") from None
    seed = args.seed if args.seed is not None else settings["seed"]
    seed = int(params["seed"] if seed is None else seed)
    out = args.out or settings["out"]
    t0 = time.time()
    summary = generate(out, args.datasets or settings["datasets"], seed, settings, progress=not args.quiet)
    print(f"dfer synth: wrote {', '.join(summary)} under {out} (seed {seed})")
    print(_format_summary(summary, time.time() - t0))
    return 0
