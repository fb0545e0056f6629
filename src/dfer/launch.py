"""``dfer launch RUN.yaml``: submit one training run outside the DAG with submitit (debugging, quick sweeps).

The job runs the same code as ``dfer train`` (no second training path). On SLURM, submitit sends USR2 before
a preemption or time limit and requeues the job through ``TrainJob.checkpoint``; the requeued job resumes
from the run's own resume checkpoint (``<output_dir>/resume/checkpoint.pt``, written atomically every epoch),
so at most the current epoch is recomputed. ``--local`` uses submitit's local executor (subprocesses).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import submitit
import yaml

from dfer.cli import command_parser


class TrainJob(submitit.helpers.Checkpointable):
    """A picklable ``dfer train --config RUN.yaml`` call; ``checkpoint()`` (inherited) resubmits it as is."""

    def __init__(self, config: str, device: str | None = None, track: bool = True) -> None:
        self.config = str(Path(config).resolve())
        self.device = device
        self.track = track

    def __call__(self) -> int:
        from dfer.engine.train import main

        argv = ["--config", self.config, "--quiet"]
        if self.device:
            argv += ["--device", self.device]
        if not self.track:
            argv.append("--no-tracking")
        rc = main(argv)
        if rc != 0:
            raise RuntimeError(f"dfer train --config {self.config} exited with {rc}; see the job's log")
        return rc


def build_executor(folder: Path, local: bool, args: argparse.Namespace) -> submitit.Executor:
    executor = submitit.AutoExecutor(folder=str(folder), cluster="local" if local else "slurm")
    params = dict(timeout_min=args.timeout_min, cpus_per_task=args.cpus, mem_gb=args.mem_gb, name=args.name)
    if not local:
        params.update(slurm_gres=f"gpu:{args.gpus}" if args.gpus else None, slurm_partition=args.partition,
                      slurm_account=args.account, slurm_max_num_timeout=args.max_requeue)
        params = {k: v for k, v in params.items() if v is not None}
    executor.update_parameters(**params)
    return executor


def main(argv: list[str] | None = None) -> int:
    ap = command_parser("launch", __doc__)
    ap.add_argument("config", help="resolved run config (e.g. results/runs/<hash>/config.yaml)")
    ap.add_argument("--local", action="store_true", help="submitit's local executor instead of SLURM")
    ap.add_argument("--folder", default=None, help="submitit logs (default: <output_dir>/submitit)")
    ap.add_argument("--partition", default=None)
    ap.add_argument("--account", default=None)
    ap.add_argument("--gpus", type=int, default=1, help="GPUs per job on SLURM (0 for a CPU job)")
    ap.add_argument("--cpus", type=int, default=8)
    ap.add_argument("--mem-gb", type=int, default=32)
    ap.add_argument("--timeout-min", type=int, default=24 * 60)
    ap.add_argument("--max-requeue", type=int, default=3, help="requeues after a time limit (preemptions: unlimited)")
    ap.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    ap.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    ap.add_argument("--name", default="dfer-train")
    ap.add_argument("--no-wait", action="store_true", help="print the job id and return")
    args = ap.parse_args(argv)

    cfg = yaml.safe_load(Path(args.config).read_text()) or {}
    out = Path(cfg.get("output_dir") or Path(args.config).parent)
    folder = Path(args.folder) if args.folder else out / "submitit"
    job = build_executor(folder, args.local, args).submit(TrainJob(args.config, args.device, not args.no_tracking))
    print(f"submitted job {job.job_id} ({'local' if args.local else 'slurm'}); logs in {folder}")
    if args.no_wait:
        return 0
    job.result()  # raises with the job's log path when it failed
    print(f"job {job.job_id} finished: {out}")
    return 0
