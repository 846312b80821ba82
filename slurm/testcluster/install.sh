#!/usr/bin/env bash
# Install what the test cluster runs (Debian/Ubuntu, as root) unless it is there already.
# Services must not start on install (no systemd in CI; up.sh runs its own daemons), hence a
# temporary policy-rc.d that forbids starting them.
set -euo pipefail
PKGS=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
if command -v slurmctld slurmd sbatch munged slurmdbd mariadbd >/dev/null 2>&1 \
    && [[ $(command -v slurmctld slurmd sbatch munged slurmdbd mariadbd | wc -l) == 6 ]]; then
    exit 0
fi
policy=/usr/sbin/policy-rc.d
own_policy=0
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && own_policy=1
fi
trap '[[ $own_policy == 1 ]] && rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
