"""`dfer launch --local`: one run through submitit's local executor, resumable and idempotent."""
import json

import yaml

from dfer.launch import main
from engine_helpers import FAST, run_config, write_dfew


def test_launch_local_trains_the_run_through_submitit(tmp_path, capsys):
    data = write_dfew(tmp_path / "DFEW")
    cfg = run_config(data, tmp_path / "run", FAST)  # no landmark net: keep the job to seconds
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main([str(path), "--local", "--no-tracking", "--device", "cpu", "--cpus", "1", "--mem-gb", "2"]) == 0
    out = tmp_path / "run"
    done = json.loads((out / "done.json").read_text())
    assert (out / "model.pt").is_file() and (out / "eval.json").is_file()
    assert list((out / "submitit").glob("*_log.out")), "submitit wrote no job log"
    mtime = (out / "model.pt").stat().st_mtime_ns
    # A second launch of a finished run does nothing (the engine's done.json check).
    assert main([str(path), "--local", "--no-tracking", "--device", "cpu", "--cpus", "1", "--mem-gb", "2"]) == 0
    assert (out / "model.pt").stat().st_mtime_ns == mtime
    assert done
    assert "finished" in capsys.readouterr().out
