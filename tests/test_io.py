"""dfer.io: atomic writes leave the old file or the new one, never half a file; formats of the JSON writers."""
import hashlib
import os

import numpy as np
import pytest

from dfer.io import atomic_path, file_sha256, write_json, write_jsonl, write_text


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "out.txt"
    write_text(path, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old\n" and os.listdir(path.parent) == ["out.txt"]


def test_json_formats_and_unchanged_files(tmp_path):
    path = tmp_path / "a.json"
    write_json(path, {"b": np.int64(1), "a": np.arange(2)})
    assert path.read_text() == '{\n  "b": 1,\n  "a": [\n    0,\n    1\n  ]\n}\n'
    write_json(path, {"b": 1, "a": 2}, indent=1, sort_keys=True, end="")
    assert path.read_text() == '{\n "a": 2,\n "b": 1\n}'
    mtime = path.stat().st_mtime_ns
    assert not write_json(path, {"b": 1, "a": 2}, indent=1, sort_keys=True, end="", if_changed=True)
    assert path.stat().st_mtime_ns == mtime
    write_jsonl(tmp_path / "m.jsonl", [{"x": 1}, {"x": 2}])
    assert (tmp_path / "m.jsonl").read_text() == '{"x": 1}\n{"x": 2}\n'
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
