#!/usr/bin/env bash
# Build the trial images: `make containers` runs this from the repository root.
#   containers/build.sh PYTHON [PROFILE] [IMAGE_DIR]
# With a profile, each image a partition names (infpop-<name>.sif, .sqfs, ...) is built from
# containers/<name>.lock.toml at that path with the partition's runtime (apptainer by default,
# charliecloud); without one, every lock's image is built into IMAGE_DIR with $RUNTIME (apptainer).
# IMAGE.sha256 is written next to each image; results record it. An image whose build context has
# not changed since it was built is kept. Build options, from the environment (or make variables):
#   CA_CERTS=DIR  extra CA certificates (*.crt) trusted during the build (TLS-inspecting proxies)
#   WHEELS=DIR    wheels of pins that are not on PyPI (the CPU build of torch)
#   CACHE=DIR     kept between builds: debootstrap bases, the ch-image build cache (build/containers/cache)
#   JOBS=N        images built side by side, each logging to IMAGE.build.log (default 1)
set -euo pipefail
PY=${1:?python interpreter}
PROFILE=${2:-}
IMAGE_DIR=${3:-build/containers}
args=(build --image-dir "$IMAGE_DIR" --runtime "${RUNTIME:-apptainer}" --cache "${CACHE:-build/containers/cache}")
[[ -n "$PROFILE" ]] && args+=(--profile "$PROFILE")
[[ -n "${CA_CERTS:-}" ]] && args+=(--ca-certs "$CA_CERTS")
[[ -n "${WHEELS:-}" ]] && args+=(--wheels "$WHEELS")
[[ -n "${JOBS:-}" ]] && args+=(--jobs "$JOBS")
exec "$PY" -m infpop.images "${args[@]}"
