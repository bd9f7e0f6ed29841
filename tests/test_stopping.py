"""The stop rules, in the one place that decides them: submit, drain or stop."""

import pytest

from petrinas.config import load_config
from petrinas.search.stopping import Action, Budget, Verdict

BUDGET = Budget(max_trials=10, max_seconds=3600.0, max_pool=5)


@pytest.mark.parametrize("trials,pooled,elapsed,expected", [
    (0, 0, 0.0, Verdict(Action.SUBMIT)),
    (9, 4, 3599.9, Verdict(Action.SUBMIT)),
    (10, 4, 10.0, Verdict(Action.DRAIN, "max_trials")),     # the trial budget drains
    (3, 5, 10.0, Verdict(Action.DRAIN, "max_pool")),        # so does the pool budget
    (3, 2, 3600.0, Verdict(Action.STOP, "max_hours")),      # time is a hard stop
    (10, 5, 7200.0, Verdict(Action.STOP, "max_hours")),     # and outranks the others
])
def test_verdicts(trials, pooled, elapsed, expected):
    assert BUDGET.verdict(trials=trials, pooled=pooled, elapsed=elapsed) == expected


def test_no_pool_limit_by_default():
    budget = Budget(max_trials=10)
    assert budget.verdict(trials=1, pooled=10 ** 6, elapsed=1e9).action is Action.SUBMIT


def test_from_config():
    config = load_config("petridish_digits", ["search.max_trials=7", "search.max_hours=0.5",
                                              "search.max_pool=3"])
    assert Budget.from_config(config) == Budget(max_trials=7, max_seconds=1800.0,
                                                max_pool=3)
