"""Errors a user can act on. The CLI prints them without a traceback and exits 2."""


class InputError(Exception):
    """Bad input (manifest, profile, table, CLI value): the message names the field and value."""
