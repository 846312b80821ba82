#!/usr/bin/env bash
# Install what builds and runs the Charliecloud images (Debian/Ubuntu, as root) unless it is there:
# charliecloud (ch-image, ch-convert, ch-run; brings squashfs-tools and squashfuse) and debootstrap
# (the Debian base of the CPU image). Apptainer is not packaged for Debian 12: see containers/README.md.
set -euo pipefail
if command -v ch-image ch-run ch-convert mksquashfs debootstrap >/dev/null 2>&1 \
    && [[ $(command -v ch-image ch-run ch-convert mksquashfs debootstrap | wc -l) == 5 ]]; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends charliecloud debootstrap squashfs-tools squashfuse >/dev/null
