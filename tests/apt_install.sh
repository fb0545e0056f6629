#!/usr/bin/env bash
# Install Debian packages for the tests (needs root): `bash tests/apt_install.sh PKG...`.
# CI machines have been seen with dpkg left half-configured (systemd 252.38 vs 252.39 after an interrupted
# upgrade: "dpkg was interrupted, you must manually run 'dpkg --configure -a'"), which makes every
# `apt-get install` exit 100. Repair that first, wait for a held dpkg lock, and retry transient mirror errors.
set -uo pipefail
export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -q -y -o DPkg::Lock::Timeout=600)
log=$(mktemp)
for attempt in 1 2 3; do
  dpkg --configure -a >>"$log" 2>&1
  "${APT[@]}" -f install >>"$log" 2>&1
  "${APT[@]}" update >>"$log" 2>&1
  if "${APT[@]}" install "$@" >>"$log" 2>&1; then rm -f "$log"; exit 0; fi
  echo "apt-get install $* failed (attempt $attempt of 3); retrying" >&2
  sleep $((attempt * 10))
done
echo "apt-get install $* failed three times; its last output:" >&2
tail -n 40 "$log" >&2
exit 100
