"""CONTRIBUTING.md's recipes, each followed at run time: one registry entry (monkeypatched in,
so nothing else of the package changes) must be usable from the command line, the settings'
validation, the help texts and the comparison. A test fails if its recipe needs a second place.
"""

import numpy as np
import pytest

from evoprune.cli import build_parser
from evoprune.errors import ConfigError
from evoprune.runs.config import RunConfig


@pytest.fixture
def restored():
    """``restored(registry)``: the registry (a dict) is given back its entries after the test,
    in place, so that every module holding it sees the test's additions and then none."""
    saved: list[tuple[dict, dict]] = []
    yield lambda registry: saved.append((registry, dict(registry)))
    for registry, entries in saved:
        registry.clear()
        registry.update(entries)


def _run_config(*options: str) -> RunConfig:
    """The validated settings of ``evoprune run OPTIONS`` (no run)."""
    args = build_parser().parse_args(["run", *options])
    from evoprune.cli import _config_from_args

    return _config_from_args(args).validate()


def _compare(*options: str):
    from evoprune.cli.compare import compare_config_from_args

    return compare_config_from_args(build_parser().parse_args(["compare", *options]))


def _help(*command: str) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])
    return " ".join(out.getvalue().split())


# --- add a backbone -----------------------------------------------------------------------------


def test_recipe_backbone_one_register_call(restored):
    from torch import nn

    from evoprune.backbones import Preprocessing, get_backbone, list_backbones, registry

    restored(registry.REGISTRY)
    restored(registry._built)
    registry.register_backbone(
        "toy-pool",
        lambda: nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten()),
        feature_dim=12,
        preprocessing=Preprocessing(image_size=16, mean=(0.5,) * 3, std=(0.5,) * 3),
        description="toy: 2x2 average pool",
    )
    cfg = _run_config("--backbone", "toy-pool")
    assert cfg.backbone == "toy-pool"
    assert _compare("--backbone", "toy-pool", "--encodings", "fs").base.backbone == "toy-pool"
    assert "toy-pool" in {info.name for info in list_backbones()}
    import torch

    backbone = get_backbone("toy-pool")
    assert backbone.image_size == 16
    assert backbone.feature_extractor()(torch.zeros(1, 3, 16, 16)).shape == (1, 12)


# --- add an encoding ----------------------------------------------------------------------------


def test_recipe_encoding_one_register_call(restored):
    from evoprune import encodings
    from evoprune.compare.baselines import methods_for
    from evoprune.compare.rankings import rankings_for
    from evoprune.encodings import EncodingSpec, PruneTarget, make_encoding

    restored(encodings.REGISTRY)
    encodings.register_encoding(
        EncodingSpec(
            "toy-inputs-fc2",
            "toy: two-layer head; genes for the input features, then FC2's neurons",
            hidden_layers=2,
            targets=(PruneTarget(0, "inputs"), PruneTarget(1, "neurons")),
            default_evaluations=77,
        )
    )
    cfg = _run_config("--encoding", "toy-inputs-fc2", "--population", "6")
    assert (cfg.encoding, cfg.evaluations) == ("toy-inputs-fc2", 77)  # its budget
    assert (cfg.init, cfg.variation) == ("ranked", "guided")  # its genes switch whole units
    assert "toy: two-layer head" in _help("run")
    cc = _compare("--encodings", "fs,toy-inputs-fc2", "--population", "6")
    assert cc.run_config("toy-inputs-fc2", 1).evaluations == 77
    encoding = make_encoding("toy-inputs-fc2", 10, 8)
    assert encoding.n_genes == 18 and len(encoding.hidden) == 2
    # the baselines and the rankings that prune both kinds of unit apply to it
    assert {"neuron", "norm_retrained"} <= set(methods_for(encoding))
    assert rankings_for(encoding) == ("norm_retrained",)


def test_recipe_encoding_family_one_register_call(restored):
    """A family of encodings (one per layer, ``--encoding NAME --layer LAYER``) is its
    entries' ``family``: the ``--layer`` choices and help come from it."""
    from evoprune import encodings
    from evoprune.encodings import EncodingSpec, PruneTarget

    restored(encodings.REGISTRY)
    for i, layer in enumerate(("first", "second")):
        encodings.register_encoding(
            EncodingSpec(
                f"toyfam-{layer}",
                f"toy: genes for the neurons of hidden layer {i + 1}",
                hidden_layers=2,
                targets=(PruneTarget(i, "neurons"),),
                family="toyfam",
            )
        )
    assert _run_config("--encoding", "toyfam", "--layer", "second").encoding == "toyfam-second"
    assert "--encoding toyfam: first or second" in _help("run")
    with pytest.raises(ConfigError, match="--layer first or --layer second"):
        _run_config("--encoding", "toyfam")
    with pytest.raises(ConfigError, match="needs the layer"):
        RunConfig(encoding="toyfam").validate()


def test_an_encoding_with_two_targets_in_one_layer_is_refused():
    """The baselines keep a count of units per pruned layer: inputs and FC1's neurons (both
    of layer 0) would share one count (the comparison stopped with "does not have one gene
    per unit")."""
    from evoprune.encodings import EncodingSpec, PruneTarget

    with pytest.raises(ConfigError, match="several targets in layer 0.*one target per layer"):
        EncodingSpec(
            "inputs-fc1",
            "x",
            hidden_layers=1,
            targets=(PruneTarget(0, "inputs"), PruneTarget(0, "neurons")),
        )


# --- add a search algorithm ---------------------------------------------------------------------


class _RandomSearch:
    """A toy ask/tell algorithm: four random masks per ask."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.iteration = 0

    def setup(self, n_genes: int, n_obj: int) -> None:
        self.n_genes = n_genes

    def ask(self) -> np.ndarray:
        return (self.rng.random((4, self.n_genes)) < 0.5).astype(np.uint8)

    def tell(self, chromosomes: np.ndarray, F: np.ndarray) -> None:
        self.iteration += 1


def test_recipe_algorithm_one_register_call(restored):
    from evoprune.search import algorithms
    from evoprune.search.algorithms import AlgorithmSpec, make_algorithm, register_algorithm
    from evoprune.search.evaluator import Evaluator, run_search
    from evoprune.search.ssga import FunctionProblem

    restored(algorithms.ALGORITHMS)
    register_algorithm(AlgorithmSpec("toyrandom", "toy random search", _toy_build))
    cfg = _run_config("--algorithm", "toyrandom", "--population", "6")
    assert cfg.algorithm == "toyrandom"
    assert "toyrandom (toy random search; one objective)" in _help("run")
    # a search runs it
    algorithm = make_algorithm(cfg.algorithm, cfg)
    problem = FunctionProblem(lambda c: 1.0 - c.mean(axis=1), n_genes=12)
    result = run_search(algorithm, Evaluator(problem, 10))
    assert result.evaluations == 10 and isinstance(algorithm, _RandomSearch)
    # its declared abilities are checked: one objective, not asynchronous
    with pytest.raises(ConfigError, match="toy random search optimises one objective"):
        _run_config("--algorithm", "toyrandom", "--objectives", "accuracy,size")
    with pytest.raises(ConfigError, match="toy random search evaluates in synchronous"):
        _run_config("--algorithm", "toyrandom", "--async")
    # the comparison runs it under its own rows
    assert "toyrandom" in _help("compare")
    cc = _compare("--algorithms", "ssga,toyrandom", "--encodings", "fs,edges-out")
    assert cc.variants == ("fs", "edges-out", "fs-toyrandom", "edges-out-toyrandom")
    run = cc.run_config("edges-out-toyrandom", 0)
    assert (run.encoding, run.algorithm, run.objectives) == (
        "edges-out",
        "toyrandom",
        ("accuracy",),
    )
    assert cc.run_config("fs", 0).algorithm == "ssga"


def _toy_build(settings, rankings):
    return _RandomSearch(settings.seed)


def test_recipe_algorithm_of_several_objectives(restored):
    from evoprune.search import algorithms
    from evoprune.search.algorithms import AlgorithmSpec, register_algorithm

    restored(algorithms.ALGORITHMS)
    register_algorithm(
        AlgorithmSpec("toyfront", "toy front search", _toy_build, several_objectives=True)
    )
    cfg = _run_config("--algorithm", "toyfront", "--objectives", "accuracy,size")
    assert (cfg.algorithm, cfg.select) == ("toyfront", "one-se")
    run = _compare("--algorithms", "toyfront", "--encodings", "fc").run_config("fc-toyfront", 0)
    assert (run.algorithm, run.objectives) == ("toyfront", ("accuracy", "size"))


# --- add a comparison method --------------------------------------------------------------------


def test_recipe_comparison_method_and_ranking_one_entry_each(restored):
    from evoprune.compare import baselines, curves, rankings, tables
    from evoprune.compare.baselines import (
        COMPARISON_METHODS,
        BaselineResult,
        ComparisonMethod,
        register_comparison_method,
    )
    from evoprune.compare.rankings import Ranking, register_ranking
    from evoprune.encodings import make_encoding

    restored(rankings.RANKINGS)
    restored(COMPARISON_METHODS._own)  # type: ignore[attr-defined]
    register_ranking(
        Ranking("toy_rank", "Toy ranking", ("neurons",), scores=lambda ranker, t: np.ones(3))
    )
    register_comparison_method(
        ComparisonMethod(
            "toy_method",
            "Toy method",
            lambda encoding: encoding.name == "fc",
            lambda ctx: BaselineResult("toy_method", 0.5, 1.0, 10, 0.0),
        )
    )
    fc, fs = make_encoding("fc", 6, 4), make_encoding("fs", 6, 4)
    assert {"toy_rank", "toy_method"} <= set(baselines.methods_for(fc))
    assert "toy_rank" not in baselines.methods_for(
        fs
    ) and "toy_method" not in baselines.methods_for(fs)
    assert list(baselines.METHODS)[-1] == "toy_method"  # after the others
    assert list(baselines.METHODS).index("toy_rank") < list(baselines.METHODS).index("narrow")
    assert "toy_rank" in baselines.available_methods()  # saved baselines without it are redone
    assert "toy_rank" in baselines.sized_methods_for(fc) and "toy_rank" in curves.CURVE_LABELS
    # the tables label its rows
    rows = [
        {"method": m, "encoding": "fc", "test_accuracy": 0.5, "active_fraction": 0.5}
        for m in ("evoprune", "toy_rank", "toy_method")
    ]
    table = "\n".join(tables._method_table(rows, ["fc"]))
    assert "| Toy ranking |" in table and "| Toy method |" in table
    with pytest.raises(ConfigError, match="exists already"):
        register_ranking(Ranking("toy_rank", "again", ("inputs",), scores=lambda r, t: None))


# --- add an objective ---------------------------------------------------------------------------


def _blocks_off(chromosome: np.ndarray) -> float:
    """Toy objective: the fraction of 4-gene blocks with no gene on (higher is better)."""
    genes = np.asarray(chromosome).astype(bool)
    blocks = np.add.reduceat(genes, np.arange(0, genes.size, 4))
    return float(np.mean(blocks == 0))


def test_recipe_objective_one_register_call(restored):
    from evoprune import EvoPruneClassifier, pareto
    from evoprune.pareto import Objective, register_objective
    from evoprune.runs.store.history import known_evaluations

    restored(pareto.OBJECTIVE_REGISTRY)
    register_objective(
        Objective("blocks_off", "1 - fraction of 4-gene blocks switched off", of_mask=_blocks_off)
    )
    cfg = _run_config("--objectives", "blocks_off,accuracy")
    assert (cfg.objectives, cfg.algorithm) == (("accuracy", "blocks_off"), "nsga2")
    assert "blocks_off: 1 - fraction of 4-gene blocks switched off" in _help("run")
    assert "[,blocks_off]" in _help("run")
    # a search minimises it: every evaluation's objectives, recomputed from its mask
    g = np.random.default_rng(0)
    y = g.integers(0, 2, 120)
    X = (g.normal(size=(120, 16)) + y[:, None]).astype(np.float32)
    clf = EvoPruneClassifier(
        encoding="fs",
        hidden_size=8,
        population=6,
        evaluations=12,
        objectives=("accuracy", "blocks_off"),
        init="random",
        variation="paper",
    ).fit(X, y)
    history = clf.search_.history
    expected = [1.0 - _blocks_off(r.mask()) for r in history]
    assert np.array_equal(clf.search_.F[:, 1], expected)
    assert len(set(expected)) > 1  # the masks differ in it
    # a resumed run gets the same values back from the history's masks
    known = known_evaluations(history, ("accuracy", "blocks_off"))
    assert [known[(r.mask().tobytes(), r.fidelity)].F[1] for r in history] == expected


def test_recipe_objective_that_needs_a_setting(restored):
    from evoprune import pareto
    from evoprune.pareto import Objective, register_objective

    restored(pareto.OBJECTIVE_REGISTRY)
    register_objective(
        Objective(
            "toy_ood_size",
            "fraction of active genes",
            higher_is_better=False,
            of_mask=lambda c: float(np.mean(c)),
            needs="ood",
            needs_why="--ood PATH: toy",
        )
    )
    with pytest.raises(ConfigError, match="toy_ood_size needs --ood PATH: toy"):
        _run_config("--objectives", "accuracy,toy_ood_size")
    assert _run_config("--objectives", "accuracy,toy_ood_size", "--ood", "digits").ood == "digits"
