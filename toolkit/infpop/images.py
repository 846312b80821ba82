"""Build the trial images a profile names, each with its partition's runtime; render their recipes.

``make containers PROFILE=...`` runs ``python -m infpop.images build``: for every image a partition
names, the lock ``containers/<name>.lock.toml`` is staged with infpop's sources into a build
context (plus extra CA certificates and local wheels when asked), the runtime builds the image at
the profile's path, and ``IMAGE.sha256`` is written beside it (results record it; jobs do not hash
gigabytes at every submission). An image whose staged context has not changed since it was built
(``IMAGE.inputs``) is kept. ``--jobs N`` builds N images side by side, each logging to
``IMAGE.build.log``: a build spends long stretches waiting on the network (pip) while another
compresses (SquashFS), so two builds on two cores take well under the time of one after the other.

``python -m infpop.images recipes`` rewrites every runtime's recipe of every lock
(``containers/<name>.def``, ``containers/<name>.Dockerfile``); ``--check`` only reports stale ones.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from infpop.checksums import file_sha256
from infpop.container import CONTAINERS_DIR, ImageLock, image_lock, read_lock
from infpop.errors import InputError
from infpop.profile import load_profile
from infpop.runtimes import DEFAULT, get_runtime, known_runtimes
from infpop.runtimes.base import BuildOptions, ContainerRuntime, stage_context, tree_digest

REPO = CONTAINERS_DIR.parent


@dataclass(frozen=True)
class Target:
    lock: ImageLock
    runtime: ContainerRuntime
    image: Path
    #: Shared roots of the profile: where jobs bind host folders into the image.
    mount_points: tuple[str, ...] = ()


def locks(containers_dir: Path = CONTAINERS_DIR) -> list[ImageLock]:
    return [read_lock(p) for p in sorted(containers_dir.glob("*.lock.toml"))]


def targets(profile: str | None, image_dir: Path, runtime: str = DEFAULT) -> list[Target]:
    """The images to build: each one a profile names (with its partition's runtime), or without a
    profile every lock's image in ``image_dir`` with ``runtime``."""
    if not profile:
        rt = get_runtime(runtime)
        return [Target(lock, rt, image_dir / f"infpop-{lock.name}{rt.image_suffix}") for lock in locks()]
    found: dict[str, Target] = {}
    loaded = load_profile(profile)
    for name, part in loaded.partitions.items():
        rt = get_runtime(part.runtime)
        for engine, image in part.images.items():
            lock = image_lock(image)
            if lock is None:
                raise InputError(
                    f"{profile}: partition {name!r}: images.{engine}: {image} has no containers/<name>.lock.toml "
                    f"(expected infpop-<name>{rt.image_suffix})"
                )
            previous = found.setdefault(image, Target(lock, rt, Path(image), tuple(loaded.shared_roots)))
            if previous.runtime is not rt:
                raise InputError(f"{profile}: {image} is named by partitions of two runtimes")
    return list(found.values())


def build(target: Target, opts: BuildOptions) -> bool:
    """Build one image unless it is up to date; True when it was built."""
    rt, image = target.runtime, target.image
    opts = replace(opts, mount_points=target.mount_points)
    missing = [tool for tool in rt.build_tools if shutil.which(tool) is None]
    if missing:
        raise InputError(
            f"make containers: {', '.join(missing)} not installed on this machine, needed by runtime {rt.name!r} "
            f"for {image}; build on a node that has it, or copy the images to the profile's paths"
        )
    context = stage_context(
        target.lock,
        rt.recipe(target.lock),
        f"{target.lock.name}{rt.recipe_suffix}",
        REPO,
        opts,
        opts.cache.parent / "context" / f"{target.lock.name}-{rt.name}",
    )
    inputs = tree_digest(context)
    stamp = Path(f"{image}.inputs")
    if image.is_file() and stamp.is_file() and stamp.read_text().strip() == inputs:
        print(f"up to date: {image}")
        return False
    image.parent.mkdir(parents=True, exist_ok=True)
    where = f", log {opts.log}" if opts.log is not None else ""
    print(f"building {image} with {rt.name} (context {context}{where})", flush=True)
    if opts.log is not None:
        opts.log.write_text("")
    rt.build(target.lock, context, image, opts)
    Path(f"{image}.sha256").write_text(f"{file_sha256(image)}  {image.name}\n")
    stamp.write_text(inputs + "\n")
    return True


def build_all(targets: Sequence[Target], opts: BuildOptions, jobs: int = 1) -> list[str]:
    """Build every target, ``jobs`` at a time; the failures, one line each (empty: all built).

    One failed build does not stop the others: what did build is kept, and a rerun builds only
    the rest (an image is built to ``IMAGE.part`` and moved into place when whole).
    """
    if jobs < 1:
        raise InputError(f"make containers: JOBS (--jobs) is {jobs}; it must be at least 1")

    def one(target: Target) -> str | None:
        log = Path(f"{target.image}.build.log") if jobs > 1 else None
        try:
            build(target, replace(opts, log=log))
        except (subprocess.CalledProcessError, RuntimeError) as err:
            tail = "".join(log.read_text().splitlines(keepends=True)[-40:]) if log is not None else ""
            return f"{target.image}: {err}" + (f"\n--- last lines of {log}:\n{tail}" if tail else "")
        return None

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return [failure for failure in pool.map(one, targets) if failure is not None]


def stale_recipes(write: bool) -> list[Path]:
    """Recipes that differ from their render (rewritten when ``write``)."""
    stale = []
    for lock in locks():
        for name in sorted(known_runtimes()):
            rt = get_runtime(name)
            path = CONTAINERS_DIR / f"{lock.name}{rt.recipe_suffix}"
            text = rt.recipe(lock)
            if not path.is_file() or path.read_text() != text:
                stale.append(path)
                if write:
                    path.write_text(text)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infpop.images", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the images a profile names (make containers)")
    b.add_argument("--profile", default=None, help="profile YAML; without one, every lock's image into --image-dir")
    b.add_argument("--image-dir", type=Path, default=Path("build/containers"))
    b.add_argument("--runtime", default=DEFAULT, help="runtime without a profile (default: %(default)s)")
    b.add_argument("--ca-certs", type=Path, default=None, help="directory of extra CA certificates (*.crt) to trust")
    b.add_argument("--wheels", type=Path, default=None, help="directory of wheels for pins not on PyPI")
    b.add_argument("--cache", type=Path, default=Path("build/containers/cache"), help="kept between builds")
    b.add_argument("--jobs", type=int, default=1, help="images built side by side (default: %(default)s)")
    r = sub.add_parser("recipes", help="render containers/*.def and *.Dockerfile from the locks")
    r.add_argument("--check", action="store_true", help="only list recipes that differ from their lock's render")
    args = parser.parse_args(argv)
    try:
        if args.command == "recipes":
            stale = stale_recipes(write=not args.check)
            for path in stale:
                print(f"{'stale' if args.check else 'wrote'}: {path}")
            return 1 if args.check and stale else 0
        for opt in (args.ca_certs, args.wheels):
            if opt is not None and not opt.is_dir():
                raise InputError(f"make containers: {opt} is not a directory")
        opts = BuildOptions(ca_certs=args.ca_certs, wheels=args.wheels, cache=args.cache)
        failures = build_all(targets(args.profile, args.image_dir, args.runtime), opts, args.jobs)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
