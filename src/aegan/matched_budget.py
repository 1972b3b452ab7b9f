"""The matched budget: every strategy gets the same number of generator-side updates.

A strategy that uses the pretrained AE is charged its pretraining steps, so it
trains `budget - ae_steps` of its own; with `train.match_budget: false` every
strategy trains the whole budget itself (the AE's steps are then a head start).
"""


def own_steps(budget: int, match_budget: bool, ae_steps: int) -> int:
    """Steps a strategy trains itself when its AE pretraining took `ae_steps` (0: it uses no AE)."""
    return budget - ae_steps if match_budget else budget
