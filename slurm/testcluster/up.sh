#!/usr/bin/env bash
# Start a real one-host SLURM cluster for the tests: munge, MariaDB, slurmdbd, slurmctld and two
# slurmd (a100-node, v100-node, 8 fake GPUs each), all on loopback, all state under DIR.
#
#   slurm/testcluster/up.sh DIR     # prints the client SLURM_CONF; DIR/env.sh exports it
#   slurm/testcluster/down.sh DIR   # stops the daemons by the PIDs recorded in DIR/pids
#
# Needs root and Debian's slurmctld slurmd slurm-client munge slurmdbd mariadb-server. The SLURM
# daemons run in their own UTS namespace with hostname "localhost" so they bind 127.0.0.1 only
# (see ../../../shared/docs/slurm-test-cluster.md for why each setting is here).
set -euo pipefail

DIR=${1:?usage: up.sh DIR}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)

if [[ -s "$DIR/pids" ]]; then
    echo "up.sh: $DIR/pids exists: a cluster may be running there; run down.sh $DIR first" >&2
    exit 1
fi
# munged needs every directory above its socket to be searchable by all users.
chmod 755 "$DIR"
p=$DIR
while [[ "$p" != / ]]; do
    p=$(dirname "$p")
    if [[ $(( 0$(stat -c %a "$p") & 1 )) -eq 0 ]]; then
        echo "up.sh: $p is not searchable by all users (mode $(stat -c %a "$p")); munge needs that: choose another DIR" >&2
        exit 1
    fi
done
mkdir -p "$DIR"/{etc/client,munge,mysql,state/ctld,state/a100-node,state/v100-node,log,run,dev/a100,dev/v100}

# Free loopback ports, chosen once: slurmctld, slurmdbd, mysqld, one per slurmd.
read -r CTLD_PORT DBD_PORT SQL_PORT A100_PORT V100_PORT < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
PY
)

# Fake GPUs: slurmd only counts a GRES File= that is a character device (a /dev/null symlink).
for gpu in a100 v100; do
    for i in 0 1 2 3 4 5 6 7; do ln -sfn /dev/null "$DIR/dev/$gpu/nvidia$i"; done
done

started() {  # NAME PID: record a daemon so down.sh can stop it by PID
    echo "$1 $2" >> "$DIR/pids"
}

wait_for() {  # SECONDS WHAT CMD...: poll until CMD succeeds
    local limit=$1 what=$2; shift 2
    for _ in $(seq $((limit * 5))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    echo "up.sh: $what did not come up within ${limit}s; logs in $DIR/log" >&2
    tail -n 20 "$DIR"/log/*.log >&2 || true
    exit 1
}

# --- munge -----------------------------------------------------------------------------------
dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$DIR/munge/munge.key"
chmod 755 "$DIR/munge"
SOCK=$DIR/munge/munge.socket
setsid munged -F --force --socket="$SOCK" --key-file="$DIR/munge/munge.key" \
    --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" \
    --seed-file="$DIR/munge/munged.seed" </dev/null >>"$DIR/log/munged.out" 2>&1 &
started munged $!
wait_for 20 munged munge --socket="$SOCK" -n

# --- MariaDB for slurmdbd (sacct is how submitit and `infpop status` learn final states) -------
mariadb-install-db --no-defaults --datadir="$DIR/mysql" --user=root --auth-root-authentication-method=normal \
    --skip-test-db >"$DIR/log/mysql-install.log" 2>&1
setsid mariadbd --no-defaults --datadir="$DIR/mysql" --socket="$DIR/run/mysql.sock" --port="$SQL_PORT" \
    --bind-address=127.0.0.1 --pid-file="$DIR/run/mysqld.pid" --user=root --skip-name-resolve \
    --log-error="$DIR/log/mysqld.log" --innodb-buffer-pool-size=64M --innodb-log-file-size=16M \
    </dev/null >>"$DIR/log/mysqld.out" 2>&1 &
started mariadbd $!
wait_for 60 mariadbd mariadb --no-defaults --socket="$DIR/run/mysql.sock" -uroot -e "select 1"
DB_PASS=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
mariadb --no-defaults --socket="$DIR/run/mysql.sock" -uroot <<SQL
CREATE DATABASE slurm_acct_db;
CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL

# --- configuration ---------------------------------------------------------------------------
cat > "$DIR/etc/client/slurm.conf" <<CONF
ClusterName=infpoptest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire=10: a requeued job restarts after ~10 s instead of the default 120 s.
AuthInfo=socket=$SOCK,cred_expire=10
StateSaveLocation=$DIR/state/ctld
SlurmdSpoolDir=$DIR/state/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
# No cgroups in a container: processes tracked by parentage, no task confinement.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
# Nodes declare more CPUs than the machine has, so GPUs (not cores) limit concurrency.
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=10
MinJobAge=600
InactiveLimit=0
SlurmdTimeout=300
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# The slurmdbd connection ignores AuthInfo's socket.
AccountingStoragePass=$SOCK
AccountingStorageTRES=gres/gpu,gres/gpu:a100,gres/gpu:v100
JobCompType=jobcomp/none
NodeName=a100-node NodeHostname=localhost NodeAddr=127.0.0.1 Port=$A100_PORT CPUs=32 RealMemory=128000 Gres=gpu:a100:8 State=UNKNOWN
NodeName=v100-node NodeHostname=localhost NodeAddr=127.0.0.1 Port=$V100_PORT CPUs=32 RealMemory=128000 Gres=gpu:v100:8 State=UNKNOWN
PartitionName=a100 Nodes=a100-node Default=YES MaxTime=INFINITE State=UP
PartitionName=v100 Nodes=v100-node MaxTime=INFINITE State=UP
# Trials in a container image (runtime: charliecloud in slurm/profiles/testcluster.yaml).
PartitionName=charliecloud Nodes=a100-node MaxTime=INFINITE State=UP
CONF
# Daemons bind the hostname's address only; clients (outside the namespace) use the plain copy.
{ cat "$DIR/etc/client/slurm.conf"; echo "CommunicationParameters=NoInAddrAny,NoCtldInAddrAny"; } > "$DIR/etc/slurm.conf"
cat > "$DIR/etc/gres.conf" <<CONF
AutoDetect=off
NodeName=a100-node Name=gpu Type=a100 File=$DIR/dev/a100/nvidia[0-7]
NodeName=v100-node Name=gpu Type=v100 File=$DIR/dev/v100/nvidia[0-7]
CONF
cp "$DIR/etc/gres.conf" "$DIR/etc/client/gres.conf"
# slurmdbd reads slurmdbd.conf next to SLURM_CONF and refuses it unless mode 600.
cat > "$DIR/etc/slurmdbd.conf" <<CONF
AuthType=auth/munge
AuthInfo=socket=$SOCK
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$SQL_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
CommunicationParameters=NoInAddrAny
CONF
chmod 600 "$DIR/etc/slurmdbd.conf"

in_localhost_ns() {  # run a daemon in its own UTS namespace whose hostname is "localhost"
    local name=$1; shift
    SLURM_CONF="$DIR/etc/slurm.conf" setsid unshare --uts sh -c 'hostname localhost && exec "$@"' sh "$@" \
        </dev/null >>"$DIR/log/$name.out" 2>&1 &
    started "$name" $!
}

# --- SLURM daemons ---------------------------------------------------------------------------
export SLURM_CONF=$DIR/etc/client/slurm.conf
in_localhost_ns slurmdbd slurmdbd -D
wait_for 30 slurmdbd bash -c "exec 3<>/dev/tcp/127.0.0.1/$DBD_PORT"
in_localhost_ns slurmctld slurmctld -D -i -f "$DIR/etc/slurm.conf"
wait_for 30 slurmctld scontrol ping
in_localhost_ns slurmd-a100 slurmd -D -N a100-node -f "$DIR/etc/slurm.conf"
in_localhost_ns slurmd-v100 slurmd -D -N v100-node -f "$DIR/etc/slurm.conf"
wait_for 60 "nodes idle" bash -c '[[ $(sinfo -h -N -o "%t" | sort -u | tr -d "\n") == idle ]]'

echo "export SLURM_CONF=$SLURM_CONF" > "$DIR/env.sh"
echo "$SLURM_CONF"
