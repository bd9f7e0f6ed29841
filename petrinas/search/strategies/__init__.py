"""The search strategies, one per file; each registers itself by name (strategy.py).

Adding one: a new file here with a `@register("name")` subclass of `Strategy` (or of
`PoolStrategy`, which keeps the pool, the RNG and the trials in flight) that has a
`from_config(config, shapes=None)` classmethod, imported below, plus a test.
`search.strategy: name` then selects it.

Imported here by name, not found by listing this folder: the search reads no files and
imports nothing by name (tests/test_layers.py).
"""

from petrinas.search.strategies import (petridish, random_parent,  # noqa: F401
                                        random_search, random_selection)
