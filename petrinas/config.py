"""Typed configuration: YAML files with `extends`, `--set` overrides, a declared schema.

The schema is the dataclasses below. Every field's type, range and choices are declared
next to it, so validation, error messages ("did you mean ...?") and documentation all come
from one place. An unknown key is an error, never ignored.

A config file may name the files it builds on:

    extends: petridish.yaml        # or a list; paths relative to this file
    dataset: {name: digits}

Later files win, key by key. Overrides (`a.b.c=value`) are applied last and parsed as YAML
scalars, so `--set search.max_trials=20` gives an int and `--set eval.enabled=true` a bool.
String values may contain `${run_dir}`, which `Config.with_run_dir` fills in.

The names of ops and strategies are defined by registries above this module (which the
model and the search read their keys from), so they are checked against a `Vocabulary`
the caller gives: `petrinas.config_loader.load_config` gathers it.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from petrinas.errors import ConfigError

CONFS_DIR = Path(__file__).resolve().parent.parent / "confs"
DATASETS = ("digits", "cifar10", "cifar100", "imagefolder", "npz", "synthetic", "dots")
RUN_DIR_VAR = "${run_dir}"


class _YamlLoader(yaml.SafeLoader):
    """yaml.safe_load's loader (no Python tags), which also reads `1e-3` as a float:
    YAML 1.1 needs a dot (`1.0e-3`) and would give the string '1e-3'."""


_YamlLoader.add_implicit_resolver(  # copies SafeLoader's resolvers; SafeLoader is untouched
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def _safe_load(text: str) -> Any:
    """Parse one YAML document with the safe loader above (what yaml.safe_load does)."""
    loader = _YamlLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


class Role(enum.Enum):
    """What other modules must know about a key, declared at the key (`spec(roles=...)`)
    so that their lists of keys (`keys_with`) cannot drift apart. A section that declares
    a role declares it for every key in it, those an older version wrote there included."""
    RESUMABLE = "may change when a search resumes (engine/store.py)"
    EVAL_RESUMABLE = "may change when an eval stage resumes (evaluate.py)"
    COMPARE_IGNORED = "never splits compare's groups (compare.py)"
    DERIVED = "0: derived from other keys and written to config.yaml (engine/runner.py)"


def spec(default: Any = dataclasses.MISSING, *, lo: float | None = None,
         hi: float | None = None, lo_open: bool = False, hi_open: bool = False,
         choices: Iterable[str] | None = None, factory: Any = None, doc: str = "",
         roles: Iterable[Role] = ()) -> Any:
    """A dataclass field with its valid range or choices, and its roles, declared beside
    it."""
    roles = frozenset(roles)
    if not all(isinstance(role, Role) for role in roles):
        raise TypeError(f"roles must be Role members, not {sorted(map(repr, roles))}")
    meta = {"lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open,
            "choices": tuple(choices) if choices else None, "doc": doc, "roles": roles}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """One training phase (seed, search, post-train or eval)."""
    epochs: int = spec(10, lo=0, doc="passes over the train split")
    batch_size: int = spec(64, lo=1)
    lr: float = spec(0.025, lo=0, lo_open=True, doc="peak SGD learning rate")
    lr_min: float = spec(0.0, lo=0, doc="cosine schedule floor")
    warmup_epochs: int = spec(0, lo=0)
    momentum: float = spec(0.9, lo=0, hi=1, hi_open=True)
    nesterov: bool = spec(False)
    weight_decay: float = spec(3e-4, lo=0)
    label_smoothing: float = spec(0.0, lo=0, hi=1, hi_open=True)
    grad_clip: float = spec(5.0, lo=0, doc="max gradient norm; 0 turns clipping off")
    drop_path: float = spec(0.0, lo=0, hi=1, hi_open=True)
    aux_weight: float = spec(0.0, lo=0, doc="auxiliary-head loss weight (needs model.aux_head)")
    augment: bool = spec(False, doc="random crop (padding 4) and horizontal flip")
    cutout: int = spec(0, lo=0, doc="cutout square side in pixels; 0 turns it off")
    amp: bool = spec(True, doc="mixed precision on CUDA (ignored on CPU): see amp_dtype")
    amp_dtype: str = spec("auto", choices=("auto", "bfloat16", "float16"),
                          doc="auto: bfloat16 where the GPU supports it (Ampere and later), "
                          "else float16 with a gradient scaler")
    channels_last: bool = spec(True, doc="channels_last memory format on CUDA")
    compile: bool = spec(False, doc="torch.compile the training steps' model, on CUDA "
                         "(ignored on CPU, where torch 2.14.1's compiled backward of 1x1 "
                         "stride-2 convolutions corrupts memory). Off by default: not yet "
                         "measured on a GPU; benchmarks/gpu_throughput.py measures it")
    test_every_epoch: bool = spec(False, doc="evaluate the test split after every epoch "
                                  "(per-epoch test curves); off: once, after the last epoch")
    bn_recalibrate: bool = spec(False, doc="after the last epoch, re-estimate every "
                                "BatchNorm's running statistics with the final weights (one "
                                "forward pass over the train split) before the final "
                                "evaluation; the statistics of the last epochs lag behind "
                                "weights that moved at a high learning rate")


@dataclass
class DatasetConfig:
    name: str = spec("digits", choices=DATASETS)
    root: str = spec("", doc="folder (cifar, imagefolder) or file (npz); never downloaded")
    val_fraction: float = spec(0.1, lo=0, hi=0.9, lo_open=True,
                               doc="share of the non-test data held out for validation")
    test_fraction: float = spec(0.2, lo=0, hi=0.9, lo_open=True,
                                doc="fixed test share for datasets without a test split")
    image_size: int = spec(0, lo=0, doc="imagefolder: resize to this square; 0 keeps size")
    max_train: int = spec(0, lo=0, doc="cap on training examples; 0 uses all")
    synthetic_shape: list[int] = spec(factory=lambda: [3, 32, 32],
                                      doc="synthetic: C, H, W of the images")
    synthetic_classes: int = spec(10, lo=2, doc="synthetic: number of classes")
    synthetic_size: int = spec(60000, lo=3, doc="synthetic, dots: examples in all, the "
                               "test_fraction held out for testing included")
    synthetic_seed: int = spec(0, lo=0, doc="synthetic, dots: seed of the generated images; "
                               "not the run's seed, so the test split is the same in every "
                               "run, as for the other datasets")


@dataclass
class ModelConfig:
    init_channels: int = spec(16, lo=1, doc="channels of the first cell")
    stem_multiplier: int = spec(3, lo=1)
    seed_op: str = spec("sep_conv_3x3", doc="op of the seed cells' nodes")
    candidate_ops: list[str] = spec(factory=lambda: [
        "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5", "max_pool_3x3",
        "avg_pool_3x3", "skip_connect", "mbconv_e1", "mbconv_e2", "mbconv_e3", "none"])
    top_k: int = spec(3, lo=1, doc="(input, op) pairs kept when a candidate is finalized")
    aux_head: bool = spec(False, doc="auxiliary classifier at 2/3 depth")


@dataclass
class SeedRanges:
    """Inclusive [min, max] ranges of the seed models' macro parameters."""
    cells: list[int] = spec(factory=lambda: [3, 5])
    reductions: list[int] = spec(factory=lambda: [1, 2])
    nodes: list[int] = spec(factory=lambda: [1, 3])


@dataclass
class SearchConfig:
    max_trials: int = spec(100, lo=1, doc="trained models (seeds + children), never exceeded",
                           roles=(Role.RESUMABLE, Role.EVAL_RESUMABLE))
    max_hours: float = spec(24.0, lo=0, lo_open=True,
                            roles=(Role.RESUMABLE, Role.EVAL_RESUMABLE, Role.COMPARE_IGNORED))
    cost: str = spec("macs", choices=("macs", "params", "latency"),
                     doc="the cost axis of the hull, band, sampling, gallery, plots and "
                         "tables (latency: ms per example on the job's own device)")
    max_macs: float = spec(0.0, lo=0, doc="models above it are not grown (search.cost="
                           "macs); 0: no limit")
    max_params: float = spec(0.0, lo=0, doc="the same for search.cost=params")
    max_latency_ms: float = spec(0.0, lo=0, doc="the same for search.cost=latency")
    max_pool: int = spec(1000, lo=1)
    max_compute_hours: float = spec(0.0, lo=0, doc="no new trials once the finished "
                                    "trials' device time, summed, reaches it (the "
                                    "equal-compute budget of a comparison); 0: no limit",
                                    roles=(Role.RESUMABLE, Role.EVAL_RESUMABLE))
    convex_hull_eps: float = spec(0.025, lo=0)
    l1: float = spec(0.001, lo=0, doc="weight of sum(|alpha|) in the search-phase loss")
    alpha_lr: float = spec(0.0, lo=0, doc="the alphas' own peak learning rate in the "
                           "search phase (same schedule); 0: search_train.lr, as the "
                           "weights")
    seeds: SeedRanges = spec(factory=SeedRanges)
    seed_train: TrainConfig = spec(factory=TrainConfig)
    search_train: TrainConfig = spec(factory=TrainConfig)
    post_train: TrainConfig = spec(factory=TrainConfig)
    plot_interval_s: float = spec(30.0, lo=0, doc="least seconds between plot refreshes",
                                  roles=(Role.RESUMABLE, Role.EVAL_RESUMABLE,
                                         Role.COMPARE_IGNORED))
    strategy: str = spec("petridish", doc="search strategy (search/strategies/): petridish, "
                         "random_selection, random_parent or random_search")
    hv_ref_cost: float = spec(0.0, lo=0, doc="hypervolume reference cost; 0: ten times "
                              "the costliest seed model's (written to config.yaml)",
                              roles=(Role.DERIVED,))
    hv_ref_error: float = spec(0.0, lo=0, hi=1, doc="hypervolume reference error; 0: "
                               "chance, 1 - 1/classes (written to config.yaml)",
                               roles=(Role.DERIVED,))
    hv_cost_floor: float = spec(0.0, lo=0, doc="hypervolume cost floor: a cost below it "
                                "counts as the floor, so no single cheap model dominates "
                                "the measure; 0: the cheapest seed model's cost (latency: "
                                "hv_ref_cost / 100) (written to config.yaml)",
                                roles=(Role.DERIVED,))
    max_children_in_flight: int = spec(0, lo=0, doc="cap on a parent's children training "
                                       "at once (parents are drawn least busy first "
                                       "anyway); 0: no cap")
    finalize_init: str = spec("inherit", choices=("inherit", "fresh"),
                              doc="the finalized node's ops: the candidate's trained "
                                  "weights, or a fresh initialization (ablation)")
    candidate_affine: bool = spec(True, doc="BatchNorms of the candidate's ops learn a "
                                  "scale and shift; false: they do not (as in DARTS), so "
                                  "|alpha| alone measures an op's contribution")
    pair_score: str = spec("alpha", doc="how finalize ranks the candidate's pairs "
                           "(model_desc/pair_scores.py): alpha (|alpha|, the paper's), "
                           "alpha_rms, alpha_cell, gradient or residual")
    duplicate_retries: int = spec(0, lo=0, doc="a child whose top-k pairs make a model "
                                  "the run already has tries up to this many next-best "
                                  "pair sets (one kind's last pair swapped for the next "
                                  "in rank) before it counts as a duplicate; 0: none")
    random_nodes: str = spec("uniform", choices=("uniform", "log_uniform"),
                             doc="random_search: a model's node count drawn uniformly "
                                 "from the seeds' least to growth's reach, or "
                                 "log-uniformly, so that its cost spreads evenly on a "
                                 "log scale and most of the budget goes to cheap models")
    child_schedule: str = spec("per_phase", choices=("per_phase", "continuous"),
                               doc="a grown child's learning rate: per_phase restarts "
                                   "each phase's schedule at its peak; continuous runs "
                                   "one schedule over the search and post-train epochs, "
                                   "so post-training goes on where the search phase left "
                                   "off (each phase's own lr is the peak it scales)")


@dataclass
class EvalConfig:
    enabled: bool = spec(False, doc="run the eval stage right after the search")
    cell_count_scale: float = spec(2.0, lo=1)
    max_cells: int = spec(20, lo=1, doc="cap on eval cells")
    init_channels: int = spec(36, lo=1)
    max_models: int = spec(0, lo=0, doc="train at most this many gallery models; 0: all",
                           roles=(Role.EVAL_RESUMABLE,))
    train: TrainConfig = spec(factory=TrainConfig)


@dataclass
class ResourcesConfig:
    gpus_per_job: float = spec(0.0, lo=0)
    cpus_per_job: float = spec(1.0, lo=0, lo_open=True)
    max_retries: int = spec(2, lo=0, doc="retries after a system failure (a dead worker)")
    memory_per_job_mb: int = spec(0, lo=0, doc="Ray memory reservation per job; 0: none")
    max_concurrent: int = spec(0, lo=0, doc="cap on jobs at once; 0: every free slot")


@dataclass
class Config:
    seed: int = spec(0, lo=0, roles=(Role.COMPARE_IGNORED,))
    dataset: DatasetConfig = spec(factory=DatasetConfig)
    model: ModelConfig = spec(factory=ModelConfig)
    search: SearchConfig = spec(factory=SearchConfig)
    # The eval stage does not change the search's trials; resources say how a job runs,
    # not what it computes (compare checks the per-job shares apart: compare.PER_JOB).
    eval: EvalConfig = spec(factory=EvalConfig,
                            roles=(Role.RESUMABLE, Role.COMPARE_IGNORED))
    resources: ResourcesConfig = spec(factory=ResourcesConfig,
                                      roles=(Role.RESUMABLE, Role.EVAL_RESUMABLE,
                                             Role.COMPARE_IGNORED))
    name: str = spec("petridish", doc="configuration name; default run dir is runs/<name>",
                     roles=(Role.COMPARE_IGNORED,))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping, names: Vocabulary) -> "Config":
        config = _build(cls, data, "")
        validate(config, names)
        return config

    def with_run_dir(self, run_dir: str | Path) -> "Config":
        """A copy whose string values have `${run_dir}` replaced by `run_dir`."""
        # Checked again as from_dict checks. Its op and strategy names were checked when
        # this config was loaded and no known name holds ${run_dir}, so its own names
        # are all the copy may use.
        own = Vocabulary(ops=(self.model.seed_op, *self.model.candidate_ops),
                         strategies=(self.search.strategy,),
                         pair_scores=(self.search.pair_score,))
        return Config.from_dict(_substitute(self.to_dict(), str(run_dir)), own)


@dataclass(frozen=True)
class Vocabulary:
    """The names a config may use that are defined above this module: the ops (the
    registry in petrinas/model_desc/ops.py), the strategies (petrinas/search/
    strategy.py) and the pair scores (petrinas/model_desc/pair_scores.py). Validation
    checks against what it is given, so this module imports none of them;
    petrinas/config_loader.py gathers them."""
    ops: tuple[str, ...]         # in the registry's order (the order "did you mean" ranks)
    strategies: tuple[str, ...]  # sorted, as an error lists them
    pair_scores: tuple[str, ...] = ("alpha",)  # sorted


# ------------------------------------------------------------------------------ roles

def schema_fields(schema: type = Config, prefix: str = ""
                  ) -> Iterable[tuple[str, dataclasses.Field, Any]]:
    """(dotted key, field, type) of every key of `schema`, a section before its keys."""
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        key = f"{prefix}{f.name}"
        yield key, f, hints[f.name]
        if dataclasses.is_dataclass(hints[f.name]):
            yield from schema_fields(hints[f.name], f"{key}.")


def keys_with(role: Role) -> tuple[str, ...]:
    """The keys that declare `role`, in schema order. A section that declares it is
    named, not its keys: the name is a prefix, so it also covers keys that a run's
    config.yaml holds there and this version no longer knows."""
    found: list[str] = []
    for key, f, _ in schema_fields():
        if role in f.metadata["roles"] and not any(key.startswith(f"{k}.") for k in found):
            found.append(key)
    return tuple(found)


# ---------------------------------------------------------------------------- loading

def bundled_configs() -> list[str]:
    """The names `--conf` accepts without a path (the files under confs/)."""
    return sorted(p.stem for p in CONFS_DIR.glob("*.yaml"))


def resolve_config_path(path_or_name: str | Path) -> Path:
    """A path as given, else a file name (with or without .yaml) under confs/."""
    path = Path(path_or_name).expanduser()
    if path.is_file():
        return path
    for candidate in (CONFS_DIR / path.name, CONFS_DIR / f"{path.name}.yaml"):
        if not path.parent.parts and candidate.is_file():
            return candidate
    raise ConfigError(f"config file not found: {path_or_name}")


def read_config(path_or_name: str | Path, overrides: Iterable[str],
                names: Vocabulary) -> Config:
    """Read a config file (following `extends`), apply `a.b=value` overrides, validate
    (op and strategy names against `names`). petrinas.config_loader.load_config gives
    `names`."""
    path = resolve_config_path(path_or_name)
    data = _read_with_extends(path, chain=())
    data.setdefault("name", path.stem)
    for override in overrides:
        key, value = parse_override(override)
        _set_dotted(data, key, value)
    return Config.from_dict(data, names)


def parse_override(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key.sub=value")
    try:
        value = _safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({_first_line(exc)})")
    return key.strip(), value


def read_yaml_file(path: Path) -> Any:
    """yaml.safe_load of a file; syntax errors and Python tags become one-line errors."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return _safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where}: invalid YAML ({_first_line(exc)})") from None


def _first_line(exc: Exception) -> str:
    problem = getattr(exc, "problem", None)
    return str(problem or exc).strip().splitlines()[0]


def _read_with_extends(path: Path, chain: tuple[Path, ...]) -> dict:
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"{path}: extends itself through {' -> '.join(p.name for p in chain)}")
    data = read_yaml_file(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, not {type(data).__name__}")
    parents = data.pop("extends", None) or []
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise ConfigError(f"{path}: 'extends' must be a file name or a list of them")
    merged: dict = {}
    for parent in parents:
        parent_path = (path.parent / parent)
        if not parent_path.is_file():
            parent_path = CONFS_DIR / parent
        if not parent_path.is_file():
            raise ConfigError(f"{path}: extended file not found: {parent}")
        merged = _deep_merge(merged, _read_with_extends(parent_path, chain + (path,)))
    return _deep_merge(merged, data)


def _deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _set_dotted(data: dict, key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key}: {'.'.join(parts[:i + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def _substitute(value: Any, run_dir: str) -> Any:
    if isinstance(value, str):
        return value.replace(RUN_DIR_VAR, run_dir)
    if isinstance(value, dict):
        return {k: _substitute(v, run_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, run_dir) for v in value]
    return value


# ------------------------------------------------------------------------- validation

def _build(cls: type, data: Any, prefix: str) -> Any:
    """Instantiate dataclass `cls` from `data`, checking every key, type and range."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {_kind(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            full = f"{prefix}{key}"
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise ConfigError(f"unknown config key {full}{hint}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], f"{prefix}{name}", f.metadata)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, key: str, meta: Mapping) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value if value is not None else {}, f"{key}.")
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        (item,) = typing.get_args(hint)[:1]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {_kind(value)}")
        return [_coerce(item, v, f"{key}[{i}]", meta) for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _coerce(args[0], value, key, meta)
    return _check_scalar(hint, value, key, meta)


def _check_scalar(hint: type, value: Any, key: str, meta: Mapping) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {_kind(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(f"{key}: expected an integer, got {_kind(value)}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {_kind(value)}")
        value = float(value)
    elif hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {_kind(value)}")
    _check_range(value, key, meta)
    return value


def _check_range(value: Any, key: str, meta: Mapping) -> None:
    choices = meta.get("choices")
    if choices and value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(choices)}{hint}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and (value < lo or (meta.get("lo_open") and value == lo)):
        bound = f"> {lo}" if meta.get("lo_open") else f">= {lo}"
        raise ConfigError(f"{key}: {value} is out of range (must be {bound})")
    if hi is not None and (value > hi or (meta.get("hi_open") and value == hi)):
        bound = f"< {hi}" if meta.get("hi_open") else f"<= {hi}"
        raise ConfigError(f"{key}: {value} is out of range (must be {bound})")


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return f"{type(value).__name__} {value!r}"[:80]


# search.cost -> the pool.tsv column that holds it, and the key that caps it.
COST_COLUMNS = {"macs": "macs", "params": "params", "latency": "latency_ms"}
MAX_COST_KEYS = {"macs": "max_macs", "params": "max_params", "latency": "max_latency_ms"}


def cost_column(config: Config) -> str:
    return COST_COLUMNS[config.search.cost]


def max_cost(config: Config) -> float:
    return getattr(config.search, MAX_COST_KEYS[config.search.cost])


def _check_name(key: str, what: str, name: str, known: tuple[str, ...]) -> None:
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"{key}: unknown {what} {name!r}; known: {', '.join(known)}{hint}")


def validate(config: Config, names: Vocabulary) -> None:
    """Checks that span several keys (single keys were checked while building); op and
    strategy names are checked against `names`."""
    for key in ("cells", "reductions", "nodes"):
        pair = getattr(config.search.seeds, key)
        if len(pair) != 2 or pair[0] > pair[1] or pair[0] < (0 if key == "reductions" else 1):
            raise ConfigError(f"search.seeds.{key}: expected [min, max] with min <= max, "
                              f"got {pair}")
    _check_name("search.strategy", "strategy", config.search.strategy, names.strategies)
    _check_name("search.pair_score", "pair score", config.search.pair_score,
                names.pair_scores)
    for axis, key in MAX_COST_KEYS.items():
        if axis != config.search.cost and getattr(config.search, key):
            raise ConfigError(f"search.{key} limits the {axis} axis, but search.cost is "
                              f"{config.search.cost}: set search.{MAX_COST_KEYS[config.search.cost]}")
    if config.search.cost == "latency" and not config.search.hv_ref_cost:
        raise ConfigError("search.cost=latency needs search.hv_ref_cost (milliseconds): "
                          "latency depends on the device, so no reference can be derived "
                          "from the config")
    if config.search.hv_cost_floor and config.search.hv_ref_cost \
            and config.search.hv_cost_floor >= config.search.hv_ref_cost:
        raise ConfigError(f"search.hv_cost_floor: {config.search.hv_cost_floor:g} must be "
                          f"below search.hv_ref_cost ({config.search.hv_ref_cost:g})")
    if not seed_macros(config):
        raise ConfigError("search.seeds: no (cells, reductions, nodes) in these ranges "
                          "satisfies cells >= 2*reductions + 1, so there is no seed model")
    for key, name in [("model.seed_op", config.model.seed_op)] + [
            (f"model.candidate_ops[{i}]", op) for i, op in enumerate(config.model.candidate_ops)]:
        if name not in names.ops:
            close = difflib.get_close_matches(name, list(names.ops), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{key}: unknown op {name!r}{hint}")
    if not [op for op in config.model.candidate_ops if op != "none"]:
        raise ConfigError("model.candidate_ops: needs at least one op other than none")
    for phase in ("seed_train", "search_train"):
        if getattr(config.search, phase).epochs < 1:
            raise ConfigError(f"search.{phase}.epochs: must be >= 1")
    shape = config.dataset.synthetic_shape
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"dataset.synthetic_shape: expected [C, H, W] of positive sizes, "
                          f"got {shape}")
    if config.dataset.name in ("cifar10", "cifar100", "imagefolder", "npz") \
            and not config.dataset.root:
        raise ConfigError(f"dataset.root: required for dataset {config.dataset.name}")
    for train_key, train in (("search.seed_train", config.search.seed_train),
                             ("search.search_train", config.search.search_train),
                             ("search.post_train", config.search.post_train),
                             ("eval.train", config.eval.train)):
        if train.aux_weight > 0 and not config.model.aux_head:
            raise ConfigError(f"{train_key}.aux_weight: needs model.aux_head: true")
        if train.compile and train.drop_path > 0:
            raise ConfigError(f"{train_key}.compile: not with drop_path > 0 (the drop rate "
                              f"changes every epoch, which would recompile every epoch)")


def seed_macros(config: Config) -> list[tuple[int, int, int]]:
    """Every valid (cells, reductions, nodes) of the seed ranges, roughly cheapest first
    (by cells x (nodes + 1), then the triple)."""
    seeds = config.search.seeds
    macros = [(c, r, n)
              for r in range(seeds.reductions[0], seeds.reductions[1] + 1)
              for c in range(seeds.cells[0], seeds.cells[1] + 1)
              for n in range(seeds.nodes[0], seeds.nodes[1] + 1)
              if c >= 2 * r + 1]
    return sorted(macros, key=lambda m: (m[0] * (m[2] + 1), m))


def config_to_yaml(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
