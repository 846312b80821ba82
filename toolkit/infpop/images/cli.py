"""Build the trial images a profile names, each with its partition's runtime; render their recipes.

``make containers PROFILE=...`` runs ``python -m infpop.images build``: every image a partition
names is built from its lock with the partition's runtime (:mod:`infpop.images.build`); without
a profile, every lock's image is built into ``--image-dir`` with ``--runtime``. ``--jobs N``
builds N images side by side, each logging to ``IMAGE.build.log``.

``python -m infpop.images recipes`` rewrites every recipe of every lock (``containers/<name>.def``,
``containers/<name>.Dockerfile``); ``--check`` only reports stale ones.

``python -m infpop.images resolve [NAME ...]`` checks that each GPU lock (or each one named)
resolves on PyPI with exactly its pins, without installing (:mod:`infpop.images.resolve`).

``python -m infpop.images arches FILE ... [--cc 8.0]`` lists the GPU architectures a CUDA shared
object holds kernels for (:mod:`infpop.images.fatbin`), so a site checks a library without
``cuobjdump``; with ``--cc`` it exits 1 when a file holds nothing that loads on that GPU.

The one module of :mod:`infpop.images` that reads a profile and picks runtimes: it is the command,
at the top of the import graph, where the rest of the package sits at the bottom.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from infpop.errors import InputError
from infpop.images.build import Target, build_all
from infpop.images.context import BuildOptions
from infpop.images.fatbin import fatbins
from infpop.images.lock import image_lock, locks
from infpop.images.recipe import stale_recipes
from infpop.images.resolve import resolve
from infpop.profile import load_profile
from infpop.runtimes import DEFAULT, get_runtime


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
    s = sub.add_parser("resolve", help="check that GPU locks resolve on PyPI with exactly their pins (no install)")
    s.add_argument("names", nargs="*", help="locks to check (default: every GPU lock)")
    a = sub.add_parser("arches", help="list the GPU architectures a CUDA shared object holds kernels for")
    a.add_argument("files", nargs="+", type=Path, help="shared objects (vllm/_C.abi3.so, libtorch_cuda.so, ...)")
    a.add_argument("--cc", default=None, help="compute capability (8.0): exit 1 when a file holds nothing for it")
    args = parser.parse_args(argv)
    try:
        if args.command == "arches":
            return _arches(args.files, args.cc)
        if args.command == "resolve":
            return _resolve(args.names)
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


def _resolve(names: list[str]) -> int:
    """Resolve the named locks (default: every GPU lock), one line each; InputError on the first
    that does not resolve."""
    chosen = [lock for lock in locks() if (lock.name in names if names else lock.cuda is not None)]
    unknown = set(names) - {lock.name for lock in chosen}
    if unknown:
        raise InputError(f"resolve: no containers/<name>.lock.toml for {', '.join(sorted(unknown))}")
    for lock in chosen:
        resolved = resolve(lock)
        print(f"{lock.name}: resolves on PyPI, {len(resolved)} packages, every pin at its version")
    return 0


def _arches(files: list[Path], cc: str | None) -> int:
    """One line per file: its cubin and PTX architectures; with ``cc``, how many of its fatbins
    load on that GPU, and exit 1 when one file has none. Every file is read before anything is
    printed, so a bad one (InputError) prints nothing."""
    if cc is not None and not re.fullmatch(r"\d{1,2}\.\d", cc):
        raise InputError(f"arches: --cc {cc!r} is not a compute capability such as 8.0")
    read = [fatbins(path) for path in files]
    missing = 0
    for found in read:
        line = f"{found.path}: {found.summary()}"
        if cc is not None:
            n = found.loading_on(cc)
            missing += n == 0
            line += f"; {n} of {len(found.containers)} load on compute capability {cc}"
        print(line)
    return 1 if missing else 0
