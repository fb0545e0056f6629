"""The `slurm` profile against a real single-node SLURM cluster (slurmctld, slurmd, slurmdbd, fake GPU GRES).

tests/slurm/setup_slurm.sh starts the cluster (installing slurm from Debian's packages when missing; needs
root, as on CI) and stop_slurm.sh stops it at the end of the test session (`slurm_cluster` in conftest.py).
"""
import json
import re
import subprocess
import time

import pytest
import yaml

from workflow_project import BIN, clean_checkout, env_for, planned, run, shrink, tables_of

pytestmark = pytest.mark.slow   # `pytest -m "not slow"` leaves the end-to-end runs out

# The profile as a user types it, plus a short first status check so the tests do not wait 40 s.
PROFILE = ["--profile", "slurm", "--slurm-init-seconds-before-status-checks", "5"]
# The test node has 2 CPUs and ~19 GB: shrink the profile's per-rule requests without editing it, the way
# the README tells users to fit their cluster (targets go before --set-resources, which takes many values).
GPU_RULES = ("train_detector", "align", "train_landmarks", "extract_features", "train")
SMALL_NODE = ["--set-resources", *[f"{r}:{k}={v}" for r in GPU_RULES
                                   for k, v in (("cpus_per_gpu", 1), ("mem_mb", 1500), ("runtime", 30))]]


def test_profile_submits_rule_jobs_to_slurm(slurm_cluster, tmp_path):
    proj = clean_checkout(tmp_path / "project")
    env = env_for(proj)
    subprocess.run([str(BIN / "dfer"), "synth", "--datasets", "RAF-DB", "--out", "results/synth", "--quiet"],
                   cwd=proj, env=env, check=True, timeout=300)
    proc = subprocess.run(
        ["timeout", "-s", "INT", "-k", "30", "420", str(BIN / "snakemake"), "results/data_check/RAF-DB.txt",
         *PROFILE],
        cwd=proj, env=env, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "submitted with SLURM jobid" in log
    assert "RAF-DB: ok" in (proj / "results/data_check/RAF-DB.txt").read_text()
    job_id = re.search(r"submitted with SLURM jobid (\d+)", log).group(1)
    state = subprocess.run(["sacct", "-X", "-n", "-j", job_id, "-o", "State"], capture_output=True, text=True).stdout
    assert state.split() == ["COMPLETED"], state   # accounting (slurmdbd) saw the job finish


def test_profile_reproduces_a_table_like_a_local_run(slurm_cluster, reproduced, tmp_path):
    proj = clean_checkout(tmp_path / "project")
    shrink(proj)
    # Every kind of stage as a SLURM job (synth, MAE pre-training, landmark net, feature caches, SFER and DFER
    # training, a table; the detector and the alignment of MAFW's raw videos) at a size CI affords: the other
    # tables are more jobs of the same rules, which the local `dvc repro` of the same checkout runs.
    targets = ["table_5", "results/align/MAFW"]
    proc, seconds = run(proj, "timeout", "-s", "INT", "-k", "60", "1500", "snakemake", *targets, *PROFILE,
                        *SMALL_NODE, timeout=1600)
    log = proc.stdout + proc.stderr
    jobs = re.findall(r"submitted with SLURM jobid (\d+)", log)
    # Every rule that computes something ran as a SLURM job; each unique run trained once, on the cluster.
    states = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,State,Comment", "-j", ",".join(jobs)],
                            capture_output=True, text=True).stdout.splitlines()
    assert len(states) == len(jobs) and all(s.split("|")[1] == "COMPLETED" for s in states), states
    rules = {re.match(r"rule_(.+?)(_wildcards|$)", s.split("|")[2]).group(1) for s in states}
    assert {"synth", "pretrain_mae", "train_landmarks", "extract_features", "train", "train_detector",
            "align"} <= rules, rules
    trained = [s for s in states if "rule_train_wildcards" in s]
    assert len(trained) == len(planned(proj, tmp_path, ["table_5"]))
    # Same numbers as the local `dvc repro` of the same checkout.
    ours = {name: text for name, text in tables_of(proj).items() if name.startswith("table_5.")}
    assert len(ours) == 3 and ours == {name: reproduced.tables[name] for name in ours}
    print(f"\ntable_5 and MAFW's alignment through the slurm profile: {seconds:.0f} s, {len(jobs)} SLURM jobs")

def _running_job(rule: str, workflow: subprocess.Popen, timeout: float = 600) -> str:
    t0 = time.time()
    while time.time() - t0 < timeout:
        assert workflow.poll() is None, f"snakemake ended early:\n{workflow.stdout.read()[-5000:]}"
        out = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            job_id, comment = line.split("|", 1)
            if comment.startswith(f"rule_{rule}_wildcards"):
                return job_id
        time.sleep(0.5)
    raise AssertionError(f"no running {rule} job within {timeout} s")


def test_requeued_training_resumes_from_its_checkpoint(slurm_cluster, tmp_path):
    proj = clean_checkout(tmp_path / "project")
    # NR-DFERNet (no upstream run), small and long enough to be requeued mid-training: 64 px, 8 epochs
    shrink(proj, {"presets.synthetic.methods.nr_dfernet.train.epochs": 8,
                  "presets.synthetic.methods.nr_dfernet.data.input_size": 64})
    runs = planned(proj, tmp_path)
    h = next(h for h, r in runs.items() if r["name"] == "nr_dfernet/DFEW/fold1")
    target = f"results/runs/{h}/eval.json"
    env = env_for(proj)
    workflow = subprocess.Popen([str(BIN / "snakemake"), target, *PROFILE, *SMALL_NODE], cwd=proj, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        job_id = _running_job("train", workflow)
        checkpoint = proj / f"results/runs/{h}/resume/checkpoint.pt"
        t0 = time.time()
        while not checkpoint.exists():  # an epoch has ended: there is something to resume from
            assert workflow.poll() is None and time.time() - t0 < 600
            time.sleep(0.2)
        subprocess.run(["scontrol", "requeue", job_id], check=True)
        # slurmctld holds a requeued job for ~2 minutes (Reason=BeginTime); a busy cluster would start it
        # later anyway. Let it start as soon as the node is free so the test does not idle.
        for _ in range(100):
            state = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T|%r"], capture_output=True, text=True).stdout
            if state.startswith("PENDING"):
                subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)
                break
            time.sleep(0.2)
        log, _ = workflow.communicate(timeout=1500)
    finally:
        if workflow.poll() is None:
            workflow.kill()
    assert workflow.returncode == 0, log[-5000:]
    show = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    assert re.search(r"Restarts=[1-9]", show), show
    train_log = (proj / f"results/runs/{h}/train.log").read_text()
    assert "resuming from" in train_log, train_log[-3000:]
    # The same run, uninterrupted, outside SLURM: identical per-epoch metrics and final numbers.
    cfg = yaml.safe_load((proj / f"results/runs/{h}/config.yaml").read_text())
    cfg["output_dir"] = str(tmp_path / "uninterrupted")
    (tmp_path / "uninterrupted.yaml").write_text(yaml.safe_dump(cfg))
    subprocess.run([str(BIN / "dfer"), "train", "--config", str(tmp_path / "uninterrupted.yaml"), "--no-tracking",
                    "--quiet"], cwd=proj, env={**env, "OMP_NUM_THREADS": "1"}, check=True, timeout=900)
    stable = ("epoch", "train_loss", "lr")

    def metrics(folder):
        return [{k: r[k] for k in stable} for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())]

    assert metrics(proj / f"results/runs/{h}") == metrics(tmp_path / "uninterrupted")
    ours, ref = (json.loads((d / "eval.json").read_text()) for d in (proj / f"results/runs/{h}", tmp_path / "uninterrupted"))
    assert (ours["uar"], ours["war"]) == (ref["uar"], ref["war"])


def test_a_two_gpu_recipe_runs_ddp_in_one_slurm_job(slurm_cluster, tmp_path):
    """A run whose recipe asks for 2 GPUs is submitted with 2 GPUs (the rule's `gpu` resource = train.gpus) and
    trains as 2 DDP processes inside the job (torchrun; gloo on the CPU, as the test cluster's GPUs are fake)."""
    proj = clean_checkout(tmp_path / "project")
    # NR-DFERNet (no upstream run) with its synthetic recipe asking for 2 GPUs
    shrink(proj, {"presets.synthetic.methods.nr_dfernet.train.gpus": 2,
                  "presets.synthetic.methods.nr_dfernet.train.total_batch": 16})
    runs = planned(proj, tmp_path)
    h = next(h for h, r in runs.items() if r["name"] == "nr_dfernet/DFEW/fold1")
    proc, _ = run(proj, "timeout", "-s", "INT", "-k", "30", "900", "snakemake", f"results/runs/{h}/eval.json",
                  *PROFILE, *SMALL_NODE, "train:mem_mb=4000", timeout=1000)
    log = proc.stdout + proc.stderr
    jobs = re.findall(r"submitted with SLURM jobid (\d+)", log)
    rows = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,State,AllocTRES,Comment", "-j", ",".join(jobs)],
                          capture_output=True, text=True).stdout.splitlines()
    train = [r for r in rows if "rule_train_wildcards" in r]
    assert len(train) == 1 and train[0].split("|")[1] == "COMPLETED", rows
    assert "gres/gpu=2" in train[0], train[0]
    done = json.loads((proj / f"results/runs/{h}/done.json").read_text())
    assert done["batches"] == {"world_size": 2, "accum_steps": 1, "batch_size": 8, "effective_batch": 16}
    assert "2 DDP processes" in (proj / f"results/runs/{h}/train.log").read_text()
