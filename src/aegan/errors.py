"""User-facing errors: one line naming the problem and the fix, exit code 2, no traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad parameter, missing file, ...). The CLI prints it as one line."""

    exit_code = 2
