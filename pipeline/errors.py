"""The one exception type a user sees as a one-line message (exit code 2)."""


class UserError(Exception):
    """Bad input from the user: a file, a field or a flag. The message names it.

    The CLI prints ``katib-digits: error: <message>`` and exits 2; no traceback
    unless ``--debug``.
    """

    exit_code = 2


def read_user_file(path, expected: str) -> str:
    """The text of a file the user named; a missing or unreadable one is a UserError
    (`expected` says what it should have been, e.g. "an Experiment YAML file")."""
    from pathlib import Path

    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected {expected}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None
