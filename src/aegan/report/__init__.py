"""The report's building blocks: its numbers (tables, comparison, budget), figures, sentences and rendering.

The stage that reads the other stages' outputs and writes the report from
these is `aegan.stages.report`. This package's `__init__` imports nothing.
"""
