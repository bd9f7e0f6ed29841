"""Dataset loading for users of petrinas: `load_dataset("digits", split="test")`."""

from petrinas.train.data import TensorData, dataset_info, load_dataset, load_splits

__all__ = ["TensorData", "dataset_info", "load_dataset", "load_splits"]
