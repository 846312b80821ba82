"""Where a partition's jobs run, one executor per kind in submitit's shape: :mod:`.local` (this
machine) and :mod:`.slurm` (sbatch job arrays), on the interface of :mod:`.base`. Sweeps
(:mod:`infpop.sweep`) and live searches submit through them alone; the registry
:data:`infpop.plugins.EXECUTORS` maps a profile's ``executor:`` to its class."""
