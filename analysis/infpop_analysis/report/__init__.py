"""``infpop report``: one self-contained ``report.html`` per study, a view of what exists.

A user wants one page to open (and send on) rather than folders of PNGs, CSVs and Markdown. The
page reads the tidy table and, when present beside it, what the other commands wrote (where, is
:mod:`infpop_analysis.layout`): the statistics, the figures, the HPO replay and benchmark and a
live search's summaries. It runs no statistics of its own: numbers come from those files, or from
the table through the functions the statistics, the figures and the workload analysis use. What is
absent is said so, with the command that makes it.

One module per section of the page, each with its anchor (``KEY``), its ``HEADING`` and
``render(df, src, tokens)``; :mod:`~infpop_analysis.report.page` puts them together with the
styles of ``report.css``. The page works offline: styles and plotly.js are inline, once for every
interactive figure, and the PNGs are inline as data URIs.
"""
