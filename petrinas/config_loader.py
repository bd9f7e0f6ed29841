"""Loading a config checked against the code that will run it.

config.py (the schema) sits below the model and the search, which read their keys from
it; the op and strategy names it checks are defined by their registries, up there. This
module, above both, gathers those names and hands them to the schema's checks: it is the
loader the command line, the eval stage and the tests use (`petrinas.load_config` too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

from petrinas.config import Config, Vocabulary, read_config


def vocabulary() -> Vocabulary:
    """The names a config may use: the primitive ops, the registered strategies and
    pair scores."""
    # Imported when called (as config.py did): the op registry loads torch, which a
    # module importing this one (compare) should not pay for until it loads a config.
    from petrinas.model_desc.ops import PRIMITIVES  # the op registry is the source of truth
    from petrinas.model_desc.pair_scores import PAIR_SCORES
    from petrinas.search.strategy import known_strategies

    return Vocabulary(ops=tuple(PRIMITIVES), strategies=tuple(known_strategies()),
                      pair_scores=tuple(sorted(PAIR_SCORES)))


def load_config(path_or_name: str | Path = "petridish_digits",
                overrides: Iterable[str] = ()) -> Config:
    """Read a config file (following `extends`), apply `a.b=value` overrides, validate."""
    return read_config(path_or_name, overrides, vocabulary())


def config_from_dict(data: Mapping) -> Config:
    """A Config from plain data (a run's config.yaml), checked as load_config checks."""
    return Config.from_dict(data, vocabulary())
