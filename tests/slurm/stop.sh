#!/usr/bin/env bash
# Stop the daemons that tests/slurm/start.sh started, through their PID files.
set -uo pipefail

stop() {  # stop NAME PIDFILE
    local pid
    if [ -s "$2" ] && pid=$(cat "$2") && kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "slurm-stop: $1 ($pid) did not stop" >&2
        else
            echo "slurm-stop: stopped $1 ($pid)"
        fi
    else
        echo "slurm-stop: $1 not running"
    fi
}

stop slurmd /run/slurm/slurmd.pid
stop slurmctld /run/slurm/slurmctld.pid
stop slurmdbd /run/slurm/slurmdbd.pid
# mysqld_safe restarts mariadbd when it dies; mysqladmin shutdown ends both
if command -v mysqladmin >/dev/null && mysqladmin ping >/dev/null 2>&1; then
    mysqladmin shutdown && echo "slurm-stop: stopped mariadb"
else
    echo "slurm-stop: mariadb not running"
fi
stop munged /run/munge/munged.pid
