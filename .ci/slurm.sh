#!/usr/bin/env bash
# Start a throw-away single-node Slurm cluster (munged, slurmctld, slurmd on this host, no systemd) for the
# `--backend slurm` tests, and export SCALETUNE_TEST_SLURM=1 once its node is idle. Meant to be `source`d by
# .ci/run (it must not change the caller's shell options), and also runnable on its own (`bash .ci/slurm.sh`).
# Installs Debian's slurm-wlm and munge when `slurmctld` is missing (needs root and apt).
#
# Containers have no cgroups for Slurm: processes are tracked by parent pid (proctrack/linuxproc) and not
# confined (task/none). The node advertises SCALETUNE_SLURM_CPUS CPUs (default 4, even on a 2-core box;
# `SlurmdParameters=config_overrides` lets slurmd accept more than it detects), so the tests can run three
# one-CPU jobs at once.

_st_slurm_start() {
  local host cpus mem conf=/etc/slurm/slurm.conf
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    echo "slurm.sh: installing slurm-wlm and munge (apt-get)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || return 1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >&2 || return 1
  fi
  host="$(hostname -s)"
  cpus="${SCALETUNE_SLURM_CPUS:-4}"

  # munge: one key shared by the daemons and the clients (sbatch, squeue) of this host.
  mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none || return 1
  fi
  chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
  chmod 0700 /etc/munge /var/lib/munge /var/log/munge
  chmod 0400 /etc/munge/munge.key
  chmod 0755 /run/munge
  if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged || return 1
    for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  fi

  if ! scontrol ping 2>/dev/null | grep -q UP; then
    # RealMemory from what slurmd detects; CPUs raised to $cpus (one core per socket entry, no threads).
    mem="$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')"
    mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
    cat >"$conf" <<CONF
# Written by scaletune/.ci/slurm.sh: a single-node test cluster.
ClusterName=scaletune
SlurmctldHost=$host(127.0.0.1)
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
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
KillWait=5
MinJobAge=300
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=${mem:-1000} State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    slurmctld || return 1
    pgrep -x slurmd >/dev/null || slurmd || return 1
  fi
  # Ready when the node accepts jobs (after a restart it may come back as down: resume it).
  local state
  for _ in $(seq 60); do
    state="$(sinfo -h -n "$host" -o %t 2>/dev/null | head -n 1)"
    case "$state" in
      idle|mix|alloc) break ;;
      down*|drain*) scontrol update nodename="$host" state=resume >/dev/null 2>&1 ;;
    esac
    sleep 1
  done
  case "$state" in idle|mix|alloc) ;; *) echo "slurm.sh: node $host is '$state'" >&2; return 1 ;; esac
  export SCALETUNE_TEST_SLURM=1
  sinfo
}

_st_slurm_start || echo "slurm.sh: could not start Slurm; the slurm tests will be skipped" >&2
unset -f _st_slurm_start
