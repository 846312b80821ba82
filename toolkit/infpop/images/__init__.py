"""Trial images: their locks, their recipes, their build context and their build.

An image is described once, by its lock (``containers/<name>.lock.toml``, :mod:`.lock`): its
base, its pins, the GPU architecture it targets, what it serves and what its smoke test imports.
Every recipe format (the Apptainer def file, the Dockerfile) is rendered from the lock
(:mod:`.recipe`); a build stages the recipe with infpop's sources into a context
(:mod:`.context`) and hands it to a container runtime (:mod:`infpop.runtimes`), which only says
how its platform builds and enters an image. ``python -m infpop.images`` (:mod:`.cli`) is the
command ``make containers`` runs.

This package sits at the bottom of the toolkit: only :mod:`.cli`, the command, reads profiles
and picks runtimes; nothing else here imports the plan, the profile or the runtimes.
"""
