"""The one exception type a user sees as a one-line message (exit code 2)."""


class UserError(Exception):
    """Bad input from the user: a file, a field or a flag. The message names it.

    The CLI prints ``katib-digits: error: <message>`` and exits 2; no traceback
    unless ``--debug``.
    """

    exit_code = 2
