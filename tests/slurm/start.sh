#!/usr/bin/env bash
# Start a one-node SLURM cluster with accounting on this machine, for tests/test_slurm.py.
#
# Needs root on Debian/Ubuntu (apt); no systemd: every daemon is started in the background with
# a PID file, which tests/slurm/stop.sh uses. Idempotent: installs only what is missing, rewrites
# a config only when it changed, starts only daemons that are not running.
# Slurm 22.05 (Debian 12): about 20 s to install, a few seconds to start once installed.
set -euo pipefail

log() { echo "slurm-start: $*"; }
die() { echo "slurm-start: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (apt-get, daemons)"
command -v apt-get >/dev/null || die "needs apt-get (Debian/Ubuntu)"

CLUSTER=deepem
NODE=$(hostname -s)
DBPASS=deepem-slurmdbd
RUN=/run/slurm
STATE=/var/lib/slurm
LOGS=/var/log/slurm
CONF=/etc/slurm

# --- packages -------------------------------------------------------------------------------
PKGS="munge slurmctld slurmd slurm-client slurmdbd mariadb-server"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    log "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d keeps the packages from trying to start services (no systemd here)
    apt-get install -y -q $missing >/tmp/slurm-apt.log 2>&1 || {
        apt-get update -q >>/tmp/slurm-apt.log 2>&1 && apt-get install -y -q $missing >>/tmp/slurm-apt.log 2>&1
    } || die "apt-get install failed; see /tmp/slurm-apt.log"
else
    log "packages already installed"
fi

alive() {  # alive PIDFILE: the process in the PID file is running
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local n=$1 what=$2; shift 2
    for _ in $(seq "$((n * 5))"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    die "timed out waiting for $what"
}

mkdir -p "$RUN" "$STATE/slurmctld" "$STATE/slurmd" "$LOGS" "$CONF"

# --- munge ----------------------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
    log "creating munge key"
    mkdir -p /etc/munge
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null ||
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "munged already running"
else
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    wait_for 10 munged sh -c "munge -n | unmunge"
fi

# --- MariaDB --------------------------------------------------------------------------------
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
if mysqladmin ping >/dev/null 2>&1; then
    log "mariadb already running"
else
    log "starting mariadb"
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null
    nohup mysqld_safe --user=mysql --pid-file=/run/mysqld/mysqld.pid >/var/log/slurm/mysqld_safe.log 2>&1 &
    wait_for 60 mariadb mysqladmin ping
fi
mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
          CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
          GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
          FLUSH PRIVILEGES;"

# --- configuration --------------------------------------------------------------------------
CHANGED=0
install_conf() {  # install_conf FILE MODE: write stdin to FILE when it differs
    local tmp; tmp=$(mktemp)
    cat >"$tmp"
    if ! cmp -s "$tmp" "$1"; then
        install -m "$2" -o root -g root "$tmp" "$1"
        log "wrote $1"
        CHANGED=1
    fi
    rm -f "$tmp"
}

install_conf "$CONF/slurmdbd.conf" 600 <<EOF
# Written by tests/slurm/start.sh
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOGS/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DBPASS
StorageLoc=slurm_acct_db
EOF

# The node as slurmd sees it: CPUs, sockets, cores, threads, memory.
NODELINE=$(slurmd -C | head -n1 | sed "s/^NodeName=[^ ]*/NodeName=$NODE/")
install_conf "$CONF/slurm.conf" 644 <<EOF
# Written by tests/slurm/start.sh: one node, accounting through slurmdbd.
ClusterName=$CLUSTER
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=300
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
$NODELINE State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

# --- daemons --------------------------------------------------------------------------------
if [ "$CHANGED" = 1 ]; then  # a daemon started with an older config must reread it
    for d in slurmd slurmctld slurmdbd; do
        if alive "$RUN/$d.pid"; then
            log "stopping $d (config changed)"
            kill "$(cat "$RUN/$d.pid")"
            for _ in $(seq 50); do alive "$RUN/$d.pid" || break; sleep 0.2; done
        fi
    done
fi

if alive "$RUN/slurmdbd.pid"; then
    log "slurmdbd already running"
else
    log "starting slurmdbd"
    slurmdbd
    wait_for 30 slurmdbd sacctmgr -n list cluster
fi

if ! sacctmgr -n -P list cluster format=Cluster | grep -qx "$CLUSTER"; then
    log "adding cluster $CLUSTER to accounting"
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi
if ! sacctmgr -n -P list account format=Account | grep -qx root; then
    log "adding account root"
    sacctmgr -i add account root cluster="$CLUSTER" >/dev/null
fi
if ! sacctmgr -n -P list assoc cluster="$CLUSTER" user=root format=User | grep -qx root; then
    log "adding user root to account root"
    sacctmgr -i add user root account=root cluster="$CLUSTER" >/dev/null
fi

if alive "$RUN/slurmctld.pid"; then
    log "slurmctld already running"
else
    log "starting slurmctld"
    slurmctld
    wait_for 30 slurmctld scontrol ping
fi

if alive "$RUN/slurmd.pid"; then
    log "slurmd already running"
else
    log "starting slurmd"
    slurmd
fi

node_idle() { sinfo -h -N -n "$NODE" -o %T | grep -Eq '^(idle|mixed|allocated)'; }
if ! node_idle; then
    # a node left DOWN/DRAIN by an earlier run comes back
    scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
fi
wait_for 60 "node $NODE to be idle" node_idle
wait_for 30 "sacct" sacct -n -X
log "ready: $(sinfo -h -N -o '%N %P %T cpus=%c mem=%m')"
log "accounts: $(sacctmgr -n -P list assoc cluster=$CLUSTER format=Cluster,Account,User | tr '\n' ' ')"
