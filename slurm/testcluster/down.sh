#!/usr/bin/env bash
# Stop the test cluster started by up.sh DIR: TERM each recorded PID (newest first), wait, then
# KILL what is left. A PID is only signalled while its command line (or SLURM_CONF) names DIR, so a
# recycled PID is never hit. Idempotent: a second call finds no pids file and does nothing.
set -uo pipefail

DIR=${1:?usage: down.sh DIR}
DIR=$(cd "$DIR" 2>/dev/null && pwd) || exit 0
[[ -f "$DIR/pids" ]] || exit 0

ours() {  # PID: still a live process of this cluster? (DIR in its arguments or its SLURM_CONF)
    [[ -r /proc/$1/cmdline ]] || return 1
    grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null && return 1
    tr '\0' '\n' 2>/dev/null < "/proc/$1/cmdline" | grep -qF -- "$DIR" && return 0
    tr '\0' '\n' 2>/dev/null < "/proc/$1/environ" | grep -qxF -- "SLURM_CONF=$DIR/etc/slurm.conf"
}

# Cancel leftover jobs first, so no job step outlives its slurmd.
if [[ -f "$DIR/etc/client/slurm.conf" ]]; then
    SLURM_CONF="$DIR/etc/client/slurm.conf" timeout 10 scancel --full --user="$(id -un)" 2>/dev/null || true
fi
mapfile -t entries < <(tac "$DIR/pids")
for entry in "${entries[@]}"; do
    read -r name pid <<<"$entry"
    if ours "$pid"; then kill -TERM "$pid" 2>/dev/null && echo "down.sh: stopping $name ($pid)"; fi
    # Stop the SLURM daemons before the database they write to.
    if [[ $name == slurmdbd ]]; then
        for _ in $(seq 50); do ours "$pid" || break; sleep 0.2; done
    fi
done
for _ in $(seq 75); do
    alive=0
    for entry in "${entries[@]}"; do
        read -r name pid <<<"$entry"
        ours "$pid" && alive=1
    done
    [[ $alive == 0 ]] && break
    sleep 0.2
done
for entry in "${entries[@]}"; do
    read -r name pid <<<"$entry"
    if ours "$pid"; then kill -KILL "$pid" 2>/dev/null && echo "down.sh: killed $name ($pid)"; fi
done
rm -f "$DIR/pids"
