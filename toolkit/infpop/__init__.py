"""infpop: measure LLM inference throughput over a grid of settings, on SLURM or locally.

Data flow: manifest -> plan -> jobs -> trial -> result -> table -> statistics/figures/HPO.
"""

__version__ = "0.1.0"
