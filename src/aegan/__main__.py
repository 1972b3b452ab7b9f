"""The `aegan` command (`python -m aegan` too): cli.py's app. Runner code: no stage imports it."""

from __future__ import annotations


def main() -> None:
    from aegan.cli import app

    app()


if __name__ == "__main__":  # pragma: no cover
    main()
