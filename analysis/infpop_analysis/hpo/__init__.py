"""InfPop: hyperparameter optimisation of inference throughput over (GPU count, batch size).

- :mod:`.landscape` — a measured grid for one (engine, model, hardware), with its failures;
- :mod:`.optimizers` — grid, random, TPE (hyperopt, the study's) and a structured search, all
  proposing the next configuration from what has been measured so far;
- :mod:`.prior` — what other landscapes say about where a new one peaks (leave-one-model-out
  in the benchmark, the user's own tables in a live search);
- :mod:`.replay` — the study's RQ5 replay on published landscapes;
- :mod:`.benchmark` — evaluations and GPU-seconds each optimizer needs to reach the optimum;
- :mod:`.search` — the same optimizers driving real trial jobs (local or SLURM).
"""
