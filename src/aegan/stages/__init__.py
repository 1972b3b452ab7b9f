"""One module per dvc.yaml stage; `aegan <command>` (cli.py) parses arguments and calls its `run_*` function.

Each stage module imports only what its stage uses, and dvc.yaml lists
exactly those files as the stage's code dependencies (tests/test_stage_deps.py
derives them from the imports). This package's `__init__` imports nothing.
"""
