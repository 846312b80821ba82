"""InfPop: hyperparameter optimisation of inference throughput (or of serving capacity per GPU
under a latency SLO) over (GPU count, batch size).

- :mod:`.objective` — what a search maximises, read from results and tables: throughput, or capacity per GPU;
- :mod:`.landscape` — a measured grid for one (engine, model, hardware), with its failures;
- :mod:`.optimizers` — grid, random, TPE (hyperopt, the study's) and a structured search, all
  proposing the next configuration from what has been measured so far;
- :mod:`.methods` — the search methods as records (what each needs, its optimizer, its stopping
  rule) and the one stopping decision every search makes;
- :mod:`.stopping` — when a structured search may stop (no untried configuration can plausibly win);
- :mod:`.oom` — the physical prior of a landscape (:mod:`infpop.physics`: memory frontier and
  roofline) and its out-of-memory predictor scored on measured outcomes;
- :mod:`.prior` — what other landscapes say about where a new one peaks (leave-one-model-out
  in the benchmark, the user's own tables in a live search);
- :mod:`.replay` — the study's RQ5 replay on published landscapes;
- :mod:`.benchmark` — trials and billed GPU-hours each optimizer spends until it stops, and its pick:
  :mod:`.runs` (one method on one landscape), :mod:`.cost` (GPU-hours and loads billed),
  :mod:`.crossval` (tuned constants chosen on other folds), :mod:`.summary` (typed summaries)
  and :mod:`.benchmark_output` (the table printed, the JSON written);
- :mod:`.search` — the same optimizers driving real trial jobs (local or SLURM).
- :mod:`.equivalent` — ``--require-equivalent``: the search's pick restricted to configurations
  whose outputs match the reference's.
"""
