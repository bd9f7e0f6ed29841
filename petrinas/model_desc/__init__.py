"""Descriptions of cell networks and the models they build (no Ray here)."""

from petrinas.model_desc.builder import build_eval, build_seed
from petrinas.model_desc.cost import cost
from petrinas.model_desc.desc import CandidateDesc, CellDesc, EdgeDesc, ModelDesc, NodeDesc, OpDesc
from petrinas.model_desc.model import build_model, load_model

__all__ = ["ModelDesc", "CellDesc", "NodeDesc", "EdgeDesc", "OpDesc", "CandidateDesc",
           "build_seed", "build_eval", "build_model", "load_model", "cost"]
