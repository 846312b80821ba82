"""The conventions every statistical recipe shares, each set once here so that the study's
tests, the tests over repetitions and the per-configuration intervals cannot drift apart.

The counts of random draws are not shared: a permutation test and a bootstrap interval need
different numbers of them, and each module says why its number is enough.
"""

#: Significance level of every test (the published study's).
ALPHA = 0.05
#: Confidence of every interval: the level that matches ALPHA.
CI_LEVEL = 1 - ALPHA
#: The fewest values of one configuration that show the run-to-run noise: below it there is no
#: spread, no interval and no test over repetitions.
MIN_REPETITIONS = 2
#: Coefficient of variation over repetitions above which a configuration is flagged noisy.
CV_THRESHOLD = 0.10
#: The smallest change between two studies ``infpop compare`` reports (B/A outside [1/1.05, 1.05]),
#: as pyperf's ``--min-speed``: reruns of the same code differ by more than their repetitions show.
MIN_EFFECT = 0.05
#: Seed of every random draw (bootstrap resamples, permutations): the same table gives the same numbers.
SEED = 0
