"""The stop rules, in the one place that decides them: submit, drain or stop."""

import pytest

from petrinas.config_loader import load_config
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


def test_the_compute_budget_drains_once_reached():
    budget = Budget(max_trials=100, max_compute_s=600.0)
    assert budget.verdict(trials=5, pooled=5, elapsed=1.0, compute=599.9).action \
        is Action.SUBMIT
    assert budget.verdict(trials=5, pooled=5, elapsed=1.0, compute=600.0) == \
        Verdict(Action.DRAIN, "max_compute_hours")
    assert Budget(max_trials=100).verdict(trials=5, pooled=5, elapsed=1.0,
                                          compute=1e9).action is Action.SUBMIT


def test_no_pool_limit_by_default():
    budget = Budget(max_trials=10)
    assert budget.verdict(trials=1, pooled=10 ** 6, elapsed=1e9).action is Action.SUBMIT


def test_from_config():
    config = load_config("petridish_digits", ["search.max_trials=7", "search.max_hours=0.5",
                                              "search.max_pool=3",
                                              "search.max_compute_hours=0.25"])
    assert Budget.from_config(config) == Budget(max_trials=7, max_seconds=1800.0,
                                                max_pool=3, max_compute_s=900.0)
