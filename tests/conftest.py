"""Shared fixtures. `slurm_cluster`: a real SLURM cluster on this machine. `reproduced`: the whole paper reproduced once per session as a user does it (clean
checkout, `dvc repro`), shrunk for CI; the workflow, DVC and SLURM tests compare against it."""
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from workflow_project import ROOT, clean_checkout, commit, planned, run, shrink, tables_of  # noqa: E402


@pytest.fixture(scope="session")
def slurm_cluster():
    """A real single-node SLURM cluster (tests/slurm/setup_slurm.sh: slurmctld, slurmd, slurmdbd, fake GPU
    GRES), up for the rest of the session and stopped at its end. Session-wide because the SLURM executor
    plugin runs `scontrol show config` whenever Snakemake starts, which hangs 10 s once the daemons are gone."""
    if os.geteuid() != 0:
        pytest.skip("the SLURM tests start a real cluster and need root (CI runs them as root)")
    subprocess.run(["bash", str(ROOT / "tests/slurm/setup_slurm.sh")], check=True, timeout=900)
    yield
    subprocess.run(["bash", str(ROOT / "tests/slurm/stop_slurm.sh")], timeout=120)


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory):
    proj = clean_checkout(tmp_path_factory.mktemp("e2e") / "project")
    shrink(proj)
    proc, seconds = run(proj, "dvc", "repro", timeout=3000)
    commit(proj, "reproduce all tables")  # dvc.lock
    print(f"\ndvc repro (all_tables, shrunk synthetic benchmark): {seconds:.0f} s")
    return SimpleNamespace(proj=proj, log=proc.stdout + proc.stderr, seconds=seconds,
                           runs=planned(proj, tmp_path_factory.mktemp("plan")), tables=tables_of(proj))
