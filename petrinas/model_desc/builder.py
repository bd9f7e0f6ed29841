"""Descriptions from macro parameters: seed models for the search, scaled models for eval."""

from __future__ import annotations

from dataclasses import replace

from petrinas.config import Config
from petrinas.errors import ConfigError
from petrinas.model_desc.desc import CellDesc, EdgeDesc, ModelDesc, NodeDesc, OpDesc


def seed_cell(nodes: int, seed_op: str) -> CellDesc:
    """A chain of `nodes` nodes: node 0 reads s1 through `seed_op` plus s0 through a skip
    connection; node k reads node k-1 through `seed_op`. Cheap, and every state is used."""
    chain = [NodeDesc(edges=(EdgeDesc(1, OpDesc(seed_op)), EdgeDesc(0, OpDesc("skip_connect"))))]
    for k in range(1, nodes):
        chain.append(NodeDesc(edges=(EdgeDesc(k + 1, OpDesc(seed_op)),)))
    return CellDesc(nodes=tuple(chain))


def build_seed(config: Config, cells: int, reductions: int, nodes: int) -> ModelDesc:
    """The seed model of one macro combination, for the config's dataset and model keys."""
    from petrinas.data import dataset_info  # data imports torch; keep builder import light

    if reductions < 0 or nodes < 1 or cells < 2 * reductions + 1:
        raise ConfigError(f"invalid seed shape cells={cells}, reductions={reductions}, "
                          f"nodes={nodes}: needs nodes >= 1 and cells >= 2*reductions + 1")
    info = dataset_info(config.dataset)
    cell = seed_cell(nodes, config.model.seed_op)
    return ModelDesc(cells=cells, reductions=reductions,
                     init_channels=config.model.init_channels,
                     stem_multiplier=config.model.stem_multiplier,
                     num_classes=info.num_classes, input_shape=tuple(info.input_shape),
                     normal=cell, reduce=cell, aux_head=config.model.aux_head,
                     meta={"seed": {"cells": cells, "reductions": reductions, "nodes": nodes}})


def build_random(config: Config, macro: tuple[int, int, int], cells: dict) -> ModelDesc:
    """A random-search model: macro shape (cells, reductions, nodes) and, per cell kind,
    its nodes as lists of [input, op] edges (what strategies/random_search.py draws)."""
    from petrinas.data import dataset_info

    n_cells, reductions, _ = macro
    info = dataset_info(config.dataset)

    def cell(nodes: list) -> CellDesc:
        return CellDesc(nodes=tuple(NodeDesc(edges=tuple(EdgeDesc(int(i), OpDesc(str(op)))
                                                         for i, op in node))
                                    for node in nodes))
    normal = cell(cells["normal"])
    # Without reduction cells the drawn reduction cell is never run: stored as a copy of
    # the normal cell, as seeds and growth store it (the strategy still draws it, so its
    # random stream, and a resumed run's, is what it was).
    return ModelDesc(cells=n_cells, reductions=reductions,
                     init_channels=config.model.init_channels,
                     stem_multiplier=config.model.stem_multiplier,
                     num_classes=info.num_classes, input_shape=tuple(info.input_shape),
                     normal=normal, reduce=cell(cells["reduce"]) if reductions else normal,
                     aux_head=config.model.aux_head, meta={"random": True})


def build_eval(desc: ModelDesc, config: Config) -> ModelDesc:
    """A gallery model for final training: the same cells, repeated over
    `cell_count_scale` times as many cells (capped by `eval.max_cells`), at the eval width.
    Reductions keep their count; the candidate (if any) is dropped."""
    scaled = round(desc.cells * config.eval.cell_count_scale)
    cells = max(min(scaled, config.eval.max_cells), 2 * desc.reductions + 1)
    strip = lambda cell: replace(cell, candidate=None)  # noqa: E731
    return replace(desc, cells=cells, init_channels=config.eval.init_channels,
                   normal=strip(desc.normal), reduce=strip(desc.reduce),
                   aux_head=config.model.aux_head,
                   meta={**desc.meta, "eval_of": {"cells": desc.cells,
                                                  "init_channels": desc.init_channels}})


def costliest_seed(config: Config, column: str = "macs") -> int:
    """The MACs (or params) of the costliest seed model of the config's seed ranges.

    Only the largest shape of each reduction count is measured: more cells or nodes
    never cost less, whereas a reduction both shrinks the maps and widens them."""
    from petrinas.config import seed_macros
    from petrinas.model_desc.cost import cost
    from petrinas.model_desc.model import build_model

    largest: dict[int, tuple[int, int, int]] = {}
    for macro in seed_macros(config):
        cells, reductions, nodes = macro
        if reductions not in largest or (cells, nodes) > largest[reductions][::2]:
            largest[reductions] = macro
    most = 0
    for cells, reductions, nodes in largest.values():
        desc = build_seed(config, cells=cells, reductions=reductions, nodes=nodes)
        most = max(most, cost(build_model(desc), desc.input_shape)[column])
    return most
