"""Library warnings once per trial, not once per batch.

transformers logs some warnings on every ``generate`` call (``Both max_new_tokens and
max_length seem to have been set``, and others), so a trial of many small batches filled its
job's log with the same lines: six times the size of the results. Python's own ``warnings``
already show once per code location; these are ``logging`` records, which repeat.

:func:`once_per_trial` lets each distinct warning (logger, level, text) through once while a
trial runs. It is a filter on the handlers that exist when the trial starts (the libraries
install theirs when the engine loads), removed when the trial ends: nothing is silenced
globally, records below WARNING are untouched, and the next trial shows its warnings again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


class _FirstOfEach(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, record.getMessage())
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def _handlers() -> set[logging.Handler]:
    """Every handler of every logger: libraries (transformers, vLLM) keep their own, not propagating."""
    loggers = [
        logging.getLogger(),
        *(v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger)),
    ]
    return {h for lg in loggers for h in lg.handlers}


@contextmanager
def once_per_trial() -> Iterator[None]:
    """Within the block, each distinct warning record is emitted once."""
    first = _FirstOfEach()
    handlers = _handlers()
    for h in handlers:
        h.addFilter(first)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(first)
