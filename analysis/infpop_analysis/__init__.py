"""infpop analysis: the tidy table and everything computed from it.

Runs on the login node (pandas, scipy, matplotlib; never torch). Every analysis reads the one
tidy schema in :mod:`infpop_analysis.table`, whether the rows came from ``infpop aggregate``
or from the study's published data.
"""
