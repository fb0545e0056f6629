"""Outputs restored by `dvc pull` / `dvc checkout` must not make Snakemake re-run anything.

DVC writes restored files with fresh timestamps in whatever order it likes, and Snakemake 9 re-runs a job
whose input is newer than its output (that check ignores ``--rerun-triggers``). So before Snakemake plans a
run, the Snakefile asks DVC whether every output is exactly what the current pipeline makes (``dvc status``
clean: same code, params and data as recorded in ``dvc.lock``); if so, the outputs are marked up to date in
DAG order with ``snakemake --touch`` (nothing is recomputed or rewritten). Done once per ``dvc.lock``
version; skipped inside ``dvc repro`` (DVC holds its lock and runs the DAG itself) and in jobs' own Snakemake
processes. Set ``DFER_NO_DVC_SETTLE=1`` to turn it off.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

GUARD = "DFER_NO_DVC_SETTLE"
MARKER = Path(".snakemake/dfer-dvc-settled")


def settle_restored_outputs(root: str | os.PathLike, target: str = "all_tables") -> bool:
    """Touch the DVC-restored outputs in DAG order when DVC vouches for them; True if it did."""
    root = Path(root)
    lock = root / "dvc.lock"
    if os.environ.get(GUARD) or os.environ.get("DVC_STAGE") or not lock.is_file():
        return False
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    marker = root / MARKER
    if marker.is_file() and marker.read_text().strip() == digest:
        return False
    bin_dir = Path(sys.executable).parent
    dvc = str(bin_dir / "dvc") if (bin_dir / "dvc").exists() else "dvc"
    status = subprocess.run([dvc, "status", "--json"], cwd=root, capture_output=True, text=True,
                            env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    try:
        clean = status.returncode == 0 and json.loads(status.stdout or "null") == {}
    except ValueError:
        clean = False
    if not clean:  # something changed since dvc.lock (or DVC is busy): Snakemake's own rules decide
        return False
    print("dfer: outputs match dvc.lock; marking them up to date in DAG order (snakemake --touch)",
          file=sys.stderr)
    touched = subprocess.run([sys.executable, "-m", "snakemake", target, "--touch", "--cores", "1", "--quiet",
                              "all"], cwd=root, env={**os.environ, GUARD: "1"}, capture_output=True, text=True)
    if touched.returncode != 0:
        print(f"dfer: snakemake --touch failed; Snakemake may re-run jobs:\n{touched.stderr[-2000:]}",
              file=sys.stderr)
        return False
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(digest + "\n")
    return True
