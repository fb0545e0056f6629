#!/usr/bin/env bash
# Stop the daemons setup_slurm.sh started, each by its pid file (no package is purged: a purge would also
# remove packages other tests share, e.g. chromium).
for f in /run/slurmd.pid /run/slurmctld.pid /run/slurmdbd.pid /run/mysqld/mysqld.pid /run/munge/munged.pid; do
  if [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then
    pid=$(cat "$f"); kill "$pid"
    for i in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  fi
done
