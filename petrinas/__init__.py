"""petrinas: Petridish-style forward architecture search, with its training jobs on Ray.

From the shell (also `python -m petrinas`, and scripts/*.py):

    petrinas search --conf petridish_digits        # run or resume a search
    petrinas eval --run runs/petridish_digits      # train the gallery fully
    petrinas --help                                 # every command, the bundled configs

From Python:

    import petrinas
    run = "runs/petridish_digits"
    model = petrinas.load_model(petrinas.best_model(run))    # trained nn.Module, eval mode
    test = petrinas.load_dataset("digits", split="test")    # the tensors training used

The functions below import their modules when called, so the pure parts (the hull, the
strategies) load without torch. Comparing runs: `from petrinas.compare import compare`.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["load_config", "load_model", "load_dataset", "best_model", "__version__"]


def load_config(path_or_name="petridish_digits", overrides=()):
    """A validated Config from a YAML file or a bundled config's name, with `a.b=value`
    overrides applied (an unknown key is an error)."""
    from petrinas.config_loader import load_config as load
    return load(path_or_name, overrides)


def load_model(path):
    """The trained nn.Module of a trial, gallery or eval folder (or its desc.yaml), in
    eval mode."""
    from petrinas.model_desc.model import load_model as load
    return load(path)


def load_dataset(name_or_config, split="test", **options):
    """A split ("train", "val" or "test") of a dataset (a name, a DatasetConfig or a
    whole Config) as the same normalized tensors that training used."""
    from petrinas.data import load_dataset as load
    return load(name_or_config, split, **options)


def best_model(run_dir, max_cost=None, *, cost="macs"):
    """The gallery folder of a finished run's lowest-validation-error model, optionally
    among those costing at most `max_cost` (macs or params)."""
    from petrinas.runs import best_model as best
    return best(run_dir, max_cost, cost=cost)

