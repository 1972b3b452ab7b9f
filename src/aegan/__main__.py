"""The `aegan` command (`python -m aegan` too): run in the warm process of `aegan run` where it started one
(warm.py), else here (cli.py). Runner code: no stage imports it."""

from __future__ import annotations


def main() -> None:
    from aegan.warm import forward_if_warm

    forward_if_warm()  # with a warm server: the command runs there and this process exits with its status
    from aegan.cli import app

    app()


if __name__ == "__main__":  # pragma: no cover
    main()
