"""User-facing errors: one line naming the problem and the fix, exit code 2, no traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad parameter, missing file, ...). The CLI prints it as one line."""

    exit_code = 2


def one_line(err: BaseException, limit: int = 160) -> str:
    """An exception's message on one line, shortened to `limit` characters (for a message built around it)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
