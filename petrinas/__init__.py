"""petrinas: Petridish-style forward architecture search, with its training jobs on Ray.

    from petrinas import load_config, load_model

Names are imported lazily so that pure parts (the hull, the strategy) load without torch.
"""

__version__ = "0.1.0"
__all__ = ["load_config", "load_model", "__version__"]


def __getattr__(name: str):
    if name == "load_config":
        from petrinas.config import load_config
        return load_config
    if name == "load_model":
        from petrinas.model_desc.model import load_model
        return load_model
    raise AttributeError(f"module 'petrinas' has no attribute {name!r}")
