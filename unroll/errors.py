"""Errors meant for the person at the keyboard.

`UserError` carries a one-line message that names the file/argument and what was expected.
The CLI prints it as ``unroll: error: <message>`` and exits with status 2, never a traceback.
Library code raises it for bad input that a user (not a programmer) caused: a missing data
directory, a malformed file, an unknown preset. API misuse (wrong tensor shape) raises
`ValueError` as PyTorch does.
"""


class UserError(ValueError):
    """Bad input from the user: the message is one line and says what was expected."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread (`unroll.cli.main` installs the handler) so that it
    unwinds like Ctrl-C: the run says how to resume it, and the command exits with 143."""
