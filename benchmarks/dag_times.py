"""Where the time of a workflow run goes: job-seconds per rule from a Snakemake log.

    .venv/bin/python benchmarks/dag_times.py [.snakemake/log/<run>.snakemake.log]   (default: the newest)

Each job's time runs from the log line that starts it to its "Finished jobid" line (second resolution, so
sub-second jobs count as 0-1 s). Prints per rule: jobs, job-seconds, share, mean and longest job, then the wall
time and the total.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


def job_times(log: str) -> dict[int, tuple[str, float]]:
    """jobid -> (rule, seconds)."""
    now: datetime | None = None
    start: dict[int, datetime] = {}
    out: dict[int, tuple[str, float]] = {}
    for line in log.splitlines():
        m = STAMP.match(line.strip())
        if m:
            now = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
            continue
        m = re.match(r"^Job (\d+): ", line) or re.match(r"^\s+jobid: (\d+)$", line)
        if m and now is not None:
            start.setdefault(int(m.group(1)), now)
            continue
        m = re.match(r"^Finished jobid: (\d+) \(Rule: (\w+)\)", line)
        if m and now is not None and int(m.group(1)) in start:
            out[int(m.group(1))] = (m.group(2), (now - start[int(m.group(1))]).total_seconds())
    return out


def report(log: str) -> str:
    times = job_times(log)
    stamps = [datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
              for m in (STAMP.match(line.strip()) for line in log.splitlines()) if m]
    per: dict[str, list[float]] = defaultdict(list)
    for rule, sec in times.values():
        per[rule].append(sec)
    total = sum(sum(v) for v in per.values())
    lines = [f"{'rule':<18} {'jobs':>5} {'job-s':>8} {'share':>6} {'mean s':>7} {'max s':>6}"]
    for rule, secs in sorted(per.items(), key=lambda kv: -sum(kv[1])):
        lines.append(f"{rule:<18} {len(secs):>5} {sum(secs):>8.0f} {100 * sum(secs) / max(total, 1):>5.1f}% "
                     f"{sum(secs) / len(secs):>7.1f} {max(secs):>6.0f}")
    wall = (max(stamps) - min(stamps)).total_seconds() if stamps else 0.0
    lines.append(f"{'total':<18} {len(times):>5} {total:>8.0f}   wall {wall:.0f} s ({wall / 60:.1f} min)")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log", nargs="?", help="a Snakemake log (default: the newest under .snakemake/log/)")
    args = ap.parse_args()
    path = Path(args.log) if args.log else max(Path(".snakemake/log").glob("*.snakemake.log"),
                                               key=lambda p: p.stat().st_mtime, default=None)
    if path is None or not path.is_file():
        print("no Snakemake log found; pass its path", file=sys.stderr)
        return 2
    print(f"{path}:")
    print(report(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
