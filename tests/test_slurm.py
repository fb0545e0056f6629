"""The `slurm` profile against a real single-node SLURM cluster (slurmctld, slurmd, slurmdbd, fake GPU GRES).

tests/slurm/setup_slurm.sh starts the cluster (installing slurm from Debian's packages when missing; needs
root, as on CI) and stop_slurm.sh stops it again after the module.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def slurm_cluster():
    if os.geteuid() != 0:
        pytest.fail("the SLURM tests start a real cluster and need root (CI runs as root)")
    subprocess.run(["bash", str(ROOT / "tests/slurm/setup_slurm.sh")], check=True, timeout=600)
    yield
    subprocess.run(["bash", str(ROOT / "tests/slurm/stop_slurm.sh")], timeout=120)


def project_copy(dst: Path) -> Path:
    for name in ("Snakefile", "params.yaml"):
        shutil.copy(ROOT / name, dst / name)
    for name in ("rules", "workflow", "slurm"):
        shutil.copytree(ROOT / name, dst / name)
    return dst


def test_profile_submits_rule_jobs_to_slurm(slurm_cluster, tmp_path):
    proj = project_copy(tmp_path)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DFER_ROOT": str(proj)}
    subprocess.run([str(BIN / "dfer"), "synth", "--datasets", "RAF-DB", "--out", "results/synth", "--quiet"],
                   cwd=proj, env=env, check=True, timeout=300)
    # The command a user types, plus a short first status check so the test does not wait 40 s.
    proc = subprocess.run(
        ["timeout", "-s", "INT", "-k", "30", "420", str(BIN / "snakemake"), "--profile", "slurm",
         "--slurm-init-seconds-before-status-checks", "5", "results/data_check/RAF-DB.txt"],
        cwd=proj, env=env, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "submitted with SLURM jobid" in log
    assert "RAF-DB: ok" in (proj / "results/data_check/RAF-DB.txt").read_text()
    job_id = re.search(r"submitted with SLURM jobid (\d+)", log).group(1)
    state = subprocess.run(["sacct", "-X", "-n", "-j", job_id, "-o", "State"], capture_output=True, text=True).stdout
    assert state.split() == ["COMPLETED"], state   # accounting (slurmdbd) saw the job finish
