"""The kinds of job, declared once (search/kinds.py), and the pieces that read them: the
driver's requests (engine/runner.py), the job dispatch (engine/jobs.py), the pipeline's
jobs, the run log's description, compare's savings, the figures' styles and seeds, the
tables' model names and best_model's folder. No training: the pipeline's run_* functions
are replaced by recorders. (tests/test_kinds_ray.py: a kind declared in a test, through
a real Ray task.)"""

import inspect

import pytest

from petrinas.compare import saved_by_duplicates
from petrinas.config_loader import load_config
from petrinas.engine.jobs import job_function, run_job
from petrinas.engine.runner import JobRequests
from petrinas.model_desc.builder import build_seed
from petrinas.report import figures
from petrinas.runs import best_model
from petrinas.search import strategy
from petrinas.search.kinds import EVAL, KINDS, RANDOM, SEARCH, SEED, JobKind, Kinds
from petrinas.search.strategy import JobSpec
from petrinas.tables import frontier_tables
from petrinas.train import pipeline
from support import TINY

CELLS = {"normal": [[[0, "skip_connect"]]], "reduce": [[[1, "max_pool_3x3"]]]}
WEIGHTS = b"the parent's weights"
CTX = pipeline.JobContext(seed=7)


def claim(arch_hash):
    return None


@pytest.fixture(scope="module")
def config():
    return load_config("petridish_digits", TINY)


@pytest.fixture
def run_dir(tmp_path, config):
    """A run directory holding one trained parent, t0000 (its desc and weights)."""
    trial = tmp_path / "trials" / "t0000"
    trial.mkdir(parents=True)
    build_seed(config, cells=1, reductions=0, nodes=1).save(trial / "desc.yaml")
    (trial / "weights.pt").write_bytes(WEIGHTS)
    return tmp_path


@pytest.fixture
def parent_desc(run_dir):
    from petrinas.engine.store import read_trial_desc
    return read_trial_desc(run_dir, "t0000")


# kind -> (a spec of it, the pipeline function its job calls, that call's arguments as
# a function of (config, parent_desc): positional, keyword)
CASES = {
    SEED: (JobSpec(SEED, macro=(1, 0, 1)), "run_seed",
           lambda config, parent: ((config, (1, 0, 1), CTX, claim), {})),
    SEARCH: (JobSpec(SEARCH, parent_id="t0000", selection="random"), "run_search",
             lambda config, parent: ((config, parent, WEIGHTS, CTX),
                                     {"selection": "random", "claim": claim})),
    RANDOM: (JobSpec(RANDOM, macro=(1, 0, 2), cells=CELLS), "run_random",
             lambda config, parent: ((config, (1, 0, 2), CELLS, CTX, claim), {})),
    EVAL: (JobSpec(EVAL, parent_id="t0000"), "run_eval",
           lambda config, parent: ((config, parent, CTX), {})),
}


def test_every_declared_kind_has_a_case_here():
    assert list(CASES) == [kind.name for kind in KINDS]


def test_the_stage_names_are_still_importable_from_strategy():
    assert (strategy.SEED, strategy.SEARCH, strategy.RANDOM, strategy.EVAL) == \
        ("seed", "search", "random", "eval")
    assert [kind.name for kind in KINDS] == ["seed", "search", "random", "eval"]


@pytest.mark.parametrize("kind", list(KINDS), ids=lambda k: k.name)
def test_a_kinds_job_takes_the_common_signature(kind):
    job = job_function(kind)
    assert list(inspect.signature(job).parameters) == \
        ["config", "payload", "weights", "ctx", "claim"]


@pytest.mark.parametrize("kind", list(KINDS), ids=lambda k: k.name)
def test_a_kinds_request_reaches_its_pipeline_function(kind, config, run_dir, parent_desc,
                                                       monkeypatch):
    """The spec -> the driver's request -> the job the worker runs -> the pipeline's
    function for the kind, called with the spec's values (a parent's description and
    weights where the kind has them)."""
    spec, function, expected = CASES[kind.name]
    calls = []
    for name in ("run_seed", "run_search", "run_random", "run_eval"):
        monkeypatch.setattr(pipeline, name,
                            lambda *a, _name=name, **k: calls.append((_name, a, k)) or "out")
    request = JobRequests(run_dir)(spec)
    assert request.kind is kind
    assert request.weights_key == ("t0000" if kind.inherits_weights else None)
    weights = request.load_weights() if request.load_weights else None
    assert run_job(request.kind, config, request.payload, weights, CTX, claim) == "out"
    assert calls == [(function, *expected(config, parent_desc))]


@pytest.mark.parametrize("spec, text", [
    (JobSpec(SEED, macro=(1, 0, 2)), "seed cells=1 reductions=0 nodes=2"),
    (JobSpec(SEARCH, parent_id="t0003"), "child of t0003"),
    (JobSpec(SEARCH, parent_id="t0003", selection="random"),
     "child of t0003 (random selection)"),
    (JobSpec(RANDOM, macro=(2, 1, 3), cells=CELLS), "random cells=2 reductions=1 nodes=3"),
    (JobSpec(EVAL, parent_id="t0004"), "eval of t0004"),
])
def test_the_log_names_a_trial_as_before(spec, text):
    assert KINDS.get(spec.stage).describe(spec) == text


def test_a_child_whose_parent_weights_are_gone_names_the_weights(run_dir):
    """The loop marks the parent lost, naming the file that is missing: the weights,
    checked before the description is read."""
    (run_dir / "trials" / "t0000" / "weights.pt").unlink()
    (run_dir / "trials" / "t0000" / "desc.yaml").unlink()
    with pytest.raises(FileNotFoundError) as error:
        JobRequests(run_dir)(JobSpec(SEARCH, parent_id="t0000"))
    assert error.value.filename == str(run_dir / "trials" / "t0000" / "weights.pt")


UNKNOWN = r"unknown job kind 'lemonade' \(known: seed, search, random, eval\)"


def test_an_unknown_kind_is_refused_by_name(config, run_dir):
    """By the registry and the driver's requests; a job receives a declaration, never a
    name, so nothing past the driver looks a kind up."""
    with pytest.raises(ValueError, match=UNKNOWN):
        KINDS.get("lemonade")
    with pytest.raises(ValueError, match=UNKNOWN):
        JobRequests(run_dir)(JobSpec("lemonade", macro=(1, 0, 1)))
    assert "lemonade" not in KINDS and SEED in KINDS


def test_a_kind_declared_twice_is_refused():
    with pytest.raises(ValueError, match="job kind 'seed' is declared twice"):
        KINDS.adding(JobKind(SEED, job="petrinas.train.pipeline:seed_job"))


# ------------------------------------------------------- a kind added by a declaration

def mutant_job(config, payload, weights, ctx, claim):
    return {"payload": payload, "weights": weights, "seed": ctx.seed}


MUTANT = JobKind("mutant", job=f"{__name__}:mutant_job", spec_fields=("macro",),
                 parent=True, inherits_weights=True, parent_title="mutation",
                 counts_savings=True, label="mutated")


def test_a_new_kind_flows_through_requests_dispatch_log_and_compare(config, run_dir,
                                                                     parent_desc):
    kinds = KINDS.adding(MUTANT)
    spec = JobSpec("mutant", macro=(1, 0, 2), parent_id="t0000")
    request = JobRequests(run_dir, kinds)(spec)
    assert request.payload == {"macro": [1, 0, 2], "parent": parent_desc}
    assert request.weights_key == "t0000" and request.load_weights() == WEIGHTS
    assert run_job(request.kind, config, request.payload, WEIGHTS, CTX, claim) == \
        {"payload": request.payload, "weights": WEIGHTS, "seed": 7}
    assert request.kind.describe(spec) == "mutation of t0000"

    rows = [{"stage": "mutant", "status": status, "compute_s": compute}
            for status, compute in (("ok", 10), ("ok", 20), ("ok", 30), ("duplicate", 5))]
    assert saved_by_duplicates(rows, kinds) == 20 - 5
    assert saved_by_duplicates(rows) == 0.0        # not a kind of the built-in set
    with pytest.raises(ValueError, match="unknown job kind 'mutant'"):
        JobRequests(run_dir)(spec)


def test_compare_counts_the_savings_of_random_duplicates_not_of_seed_ones():
    """Random models skip all their training when duplicates; seeds are not counted."""
    rows = [{"stage": stage, "status": status, "compute_s": compute}
            for stage, status, compute in (("seed", "ok", 50), ("seed", "duplicate", 0),
                                           ("random", "ok", 40), ("random", "ok", 60),
                                           ("random", "duplicate", 1))]
    assert saved_by_duplicates(rows) == 50 - 1
    assert saved_by_duplicates(rows, Kinds(*(k for k in KINDS if k.name != RANDOM))) == 0.0


# ------------------------------------------------------------ what the reports read

def test_the_built_in_kinds_are_drawn_as_before():
    """The markers, colours and labels the figures had when they spelled stage names:
    a figure of a run is unchanged."""
    assert figures.stage_styles() == {
        "seed": dict(marker="s", color="#1f77b4", label="seed"),
        "search": dict(marker="o", color="#ff7f0e", label="grown"),
        "random": dict(marker="D", color="#9467bd", label="random"),
        "eval": dict(marker="^", color="#2ca02c", label="eval"),
    }
    assert KINDS.names(lambda kind: kind.starts_search) == (SEED,)
    assert KINDS.names(lambda kind: kind.retrains_parent) == (EVAL,)


def _row(trial_id, stage, macs, parent_id=""):
    return dict(trial_id=trial_id, parent_id=parent_id, stage=stage, status="ok", cells=1,
                reductions=0, nodes=1, macs=macs, params=macs / 10, latency_ms=0.1,
                val_top1=0.9, test_top1=0.9)


def _scattered(fig):
    """label -> (marker's path vertices, edge colour) of each scatter of a figure."""
    import matplotlib.colors as mcolors
    return {c.get_label(): (c.get_paths()[0].vertices.round(3).tolist(),
                            mcolors.to_hex(c.get_edgecolors()[0]))
            for ax in fig.axes for c in ax.collections if len(c.get_offsets())}


def test_a_new_kind_gets_the_next_style_its_label_and_a_place_after_the_others():
    kinds = KINDS.adding(MUTANT)
    assert figures.stage_styles(kinds)["mutant"] == \
        dict(marker="v", color="#8c564b", label="mutated")
    rows = [_row("t0000", "mutant", 300, "t0001"), _row("t0001", "seed", 100),
            _row("t0002", "lemonade", 200)]
    fig = figures.pool_figure(rows, [], kinds)
    assert [c.get_label() for c in fig.axes[0].collections] == ["seed", "mutated", "other"]
    drawn = _scattered(fig)
    assert drawn["mutated"][1] == "#8c564b" and drawn["other"][1] == "#7f7f7f"
    assert drawn["mutated"][0] != drawn["seed"][0] != drawn["other"][0]
    # Without the declaration, its stage is one of no kind (each such stage is drawn
    # on its own, in the fallback style).
    assert [c.get_label() for c in figures.pool_figure(rows, []).axes[0].collections] == \
        ["seed", "other", "other"]


SPROUT = JobKind("sprout", job=f"{__name__}:mutant_job", spec_fields=("macro",),
                 starts_search=True)
REDO = JobKind("redo", job=f"{__name__}:mutant_job", parent=True, retrains_parent=True)


def test_a_kind_that_starts_the_search_is_in_the_seeds_figure():
    kinds = KINDS.adding(SPROUT)
    rows = [_row("t0000", "sprout", 100), _row("t0001", "seed", 200),
            _row("t0002", "search", 300, "t0001")]
    assert [r["trial_id"] for r in figures.seed_rows(rows, kinds)] == ["t0000", "t0001"]
    assert [r["trial_id"] for r in figures.seed_rows(rows)] == ["t0001"]
    points = figures.seeds_figure(rows, kinds=kinds).axes[0].collections
    assert sum(len(c.get_offsets()) for c in points) == 2


def test_a_row_of_a_kind_that_retrains_its_parent_is_named_by_the_parent():
    rows = [_row("e0000", "redo", 100, "t0007"), _row("e0001", "eval", 200, "t0008"),
            _row("t0009", "search", 300, "t0001")]
    names = lambda markdown: [line.split(" | ")[0].strip("| ")
                              for line in markdown.splitlines()[2:]]
    assert names(frontier_tables(rows, kinds=KINDS.adding(REDO))[0]) == \
        ["t0007", "t0008", "t0009"]
    assert names(frontier_tables(rows)[0]) == ["e0000", "t0008", "t0009"]


@pytest.mark.parametrize("stage, folder", [(EVAL, "trials"), (SEARCH, "gallery"),
                                           (SEED, "gallery")])
def test_best_model_looks_for_a_retrained_parent_in_trials(tmp_path, stage, folder):
    (tmp_path / "frontier_eps.tsv").write_text(
        "trial_id\tparent_id\tstage\tmacs\tval_top1\n"
        f"x0003\tt0001\t{stage}\t100\t0.9\n")
    assert best_model(tmp_path) == tmp_path / folder / "x0003"
