#!/usr/bin/env bash
# Build the trial images with apptainer: `make containers` runs this from the repository root.
#   containers/build.sh PYTHON [PROFILE] [IMAGE_DIR]
# With a profile, each image a partition names (infpop-<name>.sif) is built from
# containers/<name>.def at that path; without one, every def is built into IMAGE_DIR.
# An image newer than its def and lock is kept. IMAGE.sha256 is written next to each image;
# jobs pass it to the results, so the SIF is not hashed at every submission.
set -euo pipefail
PY=${1:?python interpreter}
PROFILE=${2:-}
IMAGE_DIR=${3:-build/containers}

if ! command -v apptainer >/dev/null 2>&1; then
    echo "make containers: apptainer is not installed on this machine; build on a node that has it" >&2
    echo "(https://apptainer.org/docs/admin/main/installation.html), or copy the SIF files to the profile's paths." >&2
    exit 1
fi

if [ -n "$PROFILE" ]; then
    targets=$("$PY" -c '
import sys
from infpop.container import image_lock
from infpop.profile import load_profile
images = sorted({i for p in load_profile(sys.argv[1]).partitions.values() for i in p.images.values()})
for image in images:
    lock = image_lock(image)
    if lock is None:
        sys.exit(f"{image}: no containers/<name>.lock.toml for this image name (expected infpop-<name>.sif)")
    print(f"containers/{lock.name}.def {image}")
' "$PROFILE")
else
    targets=$(for def in containers/*.def; do name=$(basename "$def" .def); echo "$def $IMAGE_DIR/infpop-$name.sif"; done)
fi

# Unprivileged builds need fakeroot (or user namespaces, which apptainer then uses itself).
FAKEROOT=()
if [ "$(id -u)" != 0 ] && apptainer build --help | grep -q -- --fakeroot; then FAKEROOT=(--fakeroot); fi

while read -r def image; do
    lock="${def%.def}.lock.toml"
    if [ -f "$image" ] && [ "$image" -nt "$def" ] && [ "$image" -nt "$lock" ]; then
        echo "up to date: $image"
        continue
    fi
    mkdir -p "$(dirname "$image")"
    echo "building $image from $def"
    apptainer build "${FAKEROOT[@]}" --force "$image" "$def"
    (cd "$(dirname "$image")" && sha256sum "$(basename "$image")" > "$(basename "$image").sha256")
done <<< "$targets"
