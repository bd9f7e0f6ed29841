"""The search strategies, one per file; each registers itself by name (strategy.py).

Adding one: a new file here with a `@register("name")` subclass of `Strategy` (or of
`PoolStrategy`, which keeps the pool, the RNG and the trials in flight) that has a
`from_config(config, shapes=None)` classmethod, plus a test. `search.strategy: name`
then selects it.
"""
