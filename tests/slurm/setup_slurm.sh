#!/usr/bin/env bash
# Start a real single-node SLURM cluster on this machine for the tests (Debian 12, slurm 22.05):
# munged, MariaDB + slurmdbd (so sacct works, as on real clusters), slurmctld, slurmd, and NGPU fake GPUs
# (GRES backed by character devices) so that GPU requests are scheduled. Idempotent; needs root.
# Stop everything with stop_slurm.sh. Each pitfall of a single-node cluster is commented where it is handled.
set -euo pipefail
NGPU=${NGPU:-2}
STATE=${SLURM_FAKE_STATE:-/var/lib/slurm-fake}
export DEBIAN_FRONTEND=noninteractive
if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null; then
  bash "$(dirname "$0")/../apt_install.sh" slurm-wlm munge slurmdbd mariadb-server
fi

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 755 /run/munge
alive /run/munge/munged.pid || su -s /bin/sh munge -c /usr/sbin/munged
munge -n | unmunge >/dev/null

# Slurm 22.05 drops file-less GPU GRES and wants character devices: symlink fake GPUs to /dev/null & co.
mkdir -p "$STATE/fakedev"
devs=(/dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty /dev/ptmx /dev/console)
for ((i=0; i<NGPU; i++)); do ln -sfn "${devs[$i]}" "$STATE/fakedev/gpu$i"; done

CPUS=$(nproc)
MEM=$(( $(awk '/MemTotal/{print int($2/1024)}' /proc/meminfo) * 8 / 10 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=600
JobRequeue=1
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
GresTypes=gpu
NodeName=localhost CPUs=$CPUS RealMemory=$MEM Gres=gpu:$NGPU State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
{ echo "AutoDetect=off"
  echo "NodeName=localhost Name=gpu File=$STATE/fakedev/gpu[0-$((NGPU-1))]"; } > /etc/slurm/gres.conf

install -d -o mysql -g mysql /run/mysqld
if ! alive /run/mysqld/mysqld.pid; then
  setsid /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 >/var/log/slurm/mariadb.log 2>&1 < /dev/null &
  for i in $(seq 60); do mariadb -e 'select 1' >/dev/null 2>&1 && break; sleep 1; done
fi
mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
  CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
cat > /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
CONF
chmod 600 /etc/slurm/slurmdbd.conf
alive /run/slurmdbd.pid || /usr/sbin/slurmdbd
for i in $(seq 30); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 1; done
sacctmgr -i add cluster local >/dev/null 2>&1 || true
sacctmgr -i add account research Description=ci Organization=ci >/dev/null 2>&1 || true
sacctmgr -i add user "$(id -un)" Account=research DefaultAccount=research >/dev/null 2>&1 || true

alive /run/slurmctld.pid || /usr/sbin/slurmctld
alive /run/slurmd.pid || /usr/sbin/slurmd -N localhost
# slurmctld keeps a node's DRAIN across restarts (StateSaveLocation), e.g. "SlurmdSpoolDir is full" from a disk
# that has since been freed: resume it once; slurmd drains it again if the cause is still there.
for i in $(seq 10); do sinfo -h -o %t 2>/dev/null | grep -q . && break; sleep 1; done
if sinfo -h -o %t | grep -q '^drain'; then scontrol update nodename=localhost state=resume || true; fi
for i in $(seq 30); do sinfo -h -o %t 2>/dev/null | grep -qx idle && break; sleep 1; done
sinfo -h -o %t | grep -qx idle || { echo "slurm node did not become idle:" >&2; sinfo >&2;
  scontrol show node localhost | grep -i reason >&2; exit 1; }
echo "slurm cluster up: $(sinfo -h -o '%P %D %t %G')"
