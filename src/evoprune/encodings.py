"""Chromosome layouts: which units of the head one binary gene switches, and decoding to masks.

A chromosome is a 0/1 vector. Decoding it gives a :class:`HeadMasks`: which input features
the head reads and which neurons each hidden layer keeps. The head (``model/head.py``) turns those
masks into a physically smaller network; the search never sees any of this.

Every encoding is an :class:`EncodingSpec` in one registry (:data:`REGISTRY`), which owns all of
its rules: the head's number of hidden layers, the gene count, the decoding, the layers the
pruning baselines act on, the paper's default budget and the help text. Nothing else branches on
an encoding's name. The paper's encodings are declared as data (the units their genes switch, in
gene order); a new layout subclasses :class:`EncodingSpec` and is added with
:func:`register_encoding`::

    @register_encoding
    class Blocks(EncodingSpec):  # one gene per block of 4 input features
        def __init__(self):
            super().__init__("blocks", "one-layer head; one gene per 4 features", hidden_layers=1,
                             targets=(PruneTarget(0, "inputs"),))
        def n_genes(self, n_features, hidden):
            return -(-n_features // 4)
        def decode_genes(self, genes, n_features, hidden):
            return HeadMasks(np.repeat(genes, 4)[:n_features],
                             tuple(np.ones(h, dtype=bool) for h in hidden))
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from evoprune._views import RegistryField
from evoprune.errors import ConfigError

__all__ = [
    "ENCODINGS",
    "LAYER_FAMILIES",
    "REGISTRY",
    "EdgesSpec",
    "Encoding",
    "EncodingSpec",
    "HeadMasks",
    "PruneTarget",
    "encoding_for_layer",
    "encoding_spec",
    "make_encoding",
    "register_encoding",
]

#: The paper's budget for encodings that do not say otherwise.
DEFAULT_BUDGET = 200


@dataclass(frozen=True)
class HeadMasks:
    """Boolean masks of the units that exist: input features, then each hidden layer.

    ``connections`` (the ``edges`` encodings) maps a layer of the head (its index in
    ``head.layers``) to a boolean (out, in) matrix of the weights that exist in it, over the
    layer's full sizes; a weight switched off is zero and stays zero in training.
    """

    features: np.ndarray
    hidden: tuple[np.ndarray, ...]
    connections: Mapping[int, np.ndarray] = field(default_factory=dict)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Active units per layer: (features, hidden1, ...)."""
        return (int(self.features.sum()),) + tuple(int(m.sum()) for m in self.hidden)


@dataclass(frozen=True)
class PruneTarget:
    """Units the genes switch in ``head.layers[layer]``: its ``"inputs"`` (the input features;
    layer 0 only) or its output ``"neurons"`` (a hidden layer). The pruning baselines prune the
    same units, so they act where the search acts."""

    layer: int
    units: str  # "inputs", "neurons" or "weights" (the connections of head.layers[layer])

    def size(self, n_features: int, hidden: tuple[int, ...]) -> int:
        """How many units the target has in a head of these sizes."""
        return int(n_features) if self.units == "inputs" else int(hidden[self.layer])


@dataclass(frozen=True)
class EncodingSpec:
    """The rules of one chromosome layout, for any head size.

    ``targets`` lists the units the genes switch, in gene order: by default the chromosome is
    one gene per unit of each target, concatenated (``both`` is FC1's neurons then FC2's).
    Subclasses may override :meth:`n_genes` and :meth:`decode_genes` for other layouts;
    ``targets`` still says which layers the pruning baselines prune.
    """

    name: str
    description: str
    hidden_layers: int
    targets: tuple[PruneTarget, ...]
    default_evaluations: int = DEFAULT_BUDGET
    #: A family of encodings that come one per layer (``edges``: ``edges-fc``, ``edges-out``):
    #: the encoding is named ``<family>-<layer>`` and chosen by ``--encoding <family> --layer
    #: <layer>`` (:data:`LAYER_FAMILIES`); None for a stand-alone encoding.
    family: str | None = None

    def __post_init__(self) -> None:
        if int(self.hidden_layers) < 0:
            raise ConfigError(
                f"encoding {self.name!r}: hidden_layers={self.hidden_layers} must be at least 0"
            )
        if not self.targets:
            raise ConfigError(
                f"encoding {self.name!r} has no targets; give the units its genes "
                "switch, e.g. PruneTarget(0, 'inputs')"
            )
        for t in self.targets:
            if t.units == "inputs" and t.layer == 0:
                continue
            if t.units == "neurons" and 0 <= t.layer < int(self.hidden_layers):
                continue
            if t.units == "weights" and 0 <= t.layer <= int(self.hidden_layers):
                continue
            raise ConfigError(
                f"encoding {self.name!r}: target {t} does not exist in a head of "
                f"{self.hidden_layers} hidden layer(s); use PruneTarget(0, 'inputs') or "
                f"PruneTarget(i, 'neurons') with 0 <= i < {self.hidden_layers}"
            )
        layers = [t.layer for t in self.targets]
        shared = sorted({i for i in layers if layers.count(i) > 1})
        if shared:
            raise ConfigError(
                f"encoding {self.name!r}: several targets in layer {shared[0]} "
                f"({', '.join(str(t) for t in self.targets if t.layer == shared[0])}); the "
                "comparison's baselines keep a number of units per pruned layer, so give one "
                "target per layer"
            )
        if self.family is not None and not self.name.startswith(f"{self.family}-"):
            raise ConfigError(
                f"encoding {self.name!r} of family {self.family!r} must be named "
                f"'{self.family}-<layer>'"
            )
        if int(self.default_evaluations) < 1:
            raise ConfigError(
                f"encoding {self.name!r}: default_evaluations="
                f"{self.default_evaluations} must be at least 1"
            )

    def n_genes(self, n_features: int, hidden: tuple[int, ...]) -> int:
        """Genes of a chromosome for a head on ``n_features`` inputs with ``hidden`` sizes."""
        return sum(t.size(n_features, hidden) for t in self.targets)

    def decode_genes(
        self, genes: np.ndarray, n_features: int, hidden: tuple[int, ...]
    ) -> HeadMasks:
        """Masks for boolean ``genes`` of the right length; units no gene switches stay on."""
        features = np.ones(n_features, dtype=bool)
        layers = [np.ones(h, dtype=bool) for h in hidden]
        start = 0
        for t in self.targets:
            part = genes[start : start + t.size(n_features, hidden)]
            start += part.size
            if t.units == "inputs":
                features = part
            else:
                layers[t.layer] = part
        return HeadMasks(features=features, hidden=tuple(layers))

    @property
    def switches_units(self) -> bool:
        """Whether each gene switches one whole unit (input feature or neuron) in the default
        gene order of :meth:`decode_genes`: what a shared head's masks can express, and what
        lets heads of several masks train together padded to one shape
        (:func:`evoprune.model.batched.train_heads`)."""
        return type(self).decode_genes is EncodingSpec.decode_genes and all(
            t.units in ("inputs", "neurons") for t in self.targets
        )

    def genes_for(self, encoding: Encoding) -> int:
        """Genes of a chromosome for ``encoding`` (a layout that needs the class count, such
        as ``edges-out``, overrides this and reads ``encoding.n_classes``)."""
        return self.n_genes(encoding.n_features, encoding.hidden)

    def decode_for(self, genes: np.ndarray, encoding: Encoding) -> HeadMasks:
        """Masks for boolean ``genes`` of ``encoding``'s length (see :meth:`genes_for`)."""
        return self.decode_genes(genes, encoding.n_features, encoding.hidden)


#: Every encoding by name, in the order help texts list them.
REGISTRY: dict[str, EncodingSpec] = {}

_S = TypeVar("_S", EncodingSpec, type)


def register_encoding(spec: _S, *, replace: bool = False) -> _S:
    """Add ``spec`` (an :class:`EncodingSpec`, or a subclass that takes no arguments, so this
    also works as a class decorator) to the registry; returns it unchanged.

    Raises ConfigError if the name is taken, unless ``replace``.
    """
    instance = spec() if isinstance(spec, type) else spec
    if not isinstance(instance, EncodingSpec):
        raise ConfigError(f"register_encoding needs an EncodingSpec, got {type(instance).__name__}")
    families = {other.family for other in REGISTRY.values() if other.family is not None}
    if instance.name in families or instance.family in REGISTRY:
        clash = instance.name if instance.name in families else instance.family
        raise ConfigError(
            f"{clash!r} would be both an encoding and a family of encodings "
            "(--encoding NAME --layer LAYER); rename one"
        )
    if instance.name in REGISTRY and not replace:
        raise ConfigError(
            f"encoding {instance.name!r} is registered already; pick another name "
            "or pass replace=True"
        )
    REGISTRY[instance.name] = instance
    return spec


def encoding_spec(name: str) -> EncodingSpec:
    """The registered encoding ``name``; ConfigError naming the known ones otherwise."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"encoding={name!r} is unknown; choose one of {', '.join(REGISTRY)}"
        ) from None


#: name -> one-line description, for help texts and choices (a view of :data:`REGISTRY`).
ENCODINGS: Mapping[str, str] = RegistryField(REGISTRY, lambda spec: spec.description)

_INPUTS = PruneTarget(0, "inputs")
_FC1, _FC2 = PruneTarget(0, "neurons"), PruneTarget(1, "neurons")
for _spec in (
    EncodingSpec(
        "fs",
        "one-layer head; one gene per input feature (feature selection)",
        hidden_layers=1,
        targets=(_INPUTS,),
    ),
    EncodingSpec(
        "fc",
        "one-layer head; one gene per neuron of the hidden layer",
        hidden_layers=1,
        targets=(_FC1,),
    ),
    EncodingSpec(
        "fc1",
        "two-layer head; one gene per neuron of the first hidden layer",
        hidden_layers=2,
        targets=(_FC1,),
    ),
    EncodingSpec(
        "fc2",
        "two-layer head; one gene per neuron of the second hidden layer",
        hidden_layers=2,
        targets=(_FC2,),
    ),
    # The paper gives both layers' genes together a larger budget.
    EncodingSpec(
        "both",
        "two-layer head; genes for the neurons of both hidden layers (first half FC1)",
        hidden_layers=2,
        targets=(_FC1, _FC2),
        default_evaluations=300,
    ),
):
    register_encoding(_spec)


class _Families(Mapping[str, tuple[str, ...]]):
    """Read-only view family -> its layers, in registry order (always current)."""

    def _all(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        for spec in REGISTRY.values():
            if spec.family is not None:
                out[spec.family] = (*out.get(spec.family, ()), spec.name[len(spec.family) + 1 :])
        return out

    def __getitem__(self, family: str) -> tuple[str, ...]:
        return self._all()[family]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __repr__(self) -> str:
        return repr(self._all())


#: Encodings that come in one variant per layer: ``--encoding edges --layer out`` is the
#: registered encoding ``edges-out`` (a view of the ``family`` of the :data:`REGISTRY`'s specs).
LAYER_FAMILIES: Mapping[str, tuple[str, ...]] = _Families()


def layer_help() -> str:
    """``--layer``'s help text, from the families of the registry."""
    parts = [
        f"with --encoding {family}: {' or '.join(layers)} (recorded as encoding "
        f"{' or '.join(f'{family}-{layer}' for layer in layers)})"
        for family, layers in LAYER_FAMILIES.items()
    ]
    return "the layer whose genes the encoding switches; " + "; ".join(parts)


@dataclass(frozen=True)
class EdgesSpec(EncodingSpec):
    """One gene per connection (weight) of one layer of the one-layer head, the paper's
    ``edges`` ablation: ``layer`` ``"fc"`` is the features -> hidden matrix (features x
    hidden genes), ``"out"`` the hidden -> classes one (hidden x classes genes). Genes run over
    the weight matrix row by row in torch's (out, in) layout; every unit stays."""

    layer: str = "fc"
    family: str | None = "edges"

    @property
    def index(self) -> int:
        """The layer's position in ``head.layers``."""
        return 0 if self.layer == "fc" else 1

    def shape(self, encoding: Encoding) -> tuple[int, int]:
        """(out, in) of the pruned weight matrix."""
        if self.layer == "fc":
            return encoding.hidden[0], encoding.n_features
        if encoding.n_classes is None:
            raise ConfigError(
                f"encoding {self.name!r} has one gene per hidden -> class weight, so it needs "
                "the number of classes: make_encoding(..., n_classes=C)"
            )
        return encoding.n_classes, encoding.hidden[0]

    def n_genes(self, n_features: int, hidden: tuple[int, ...]) -> int:
        return self.genes_for(Encoding(self.name, n_features, hidden))

    def genes_for(self, encoding: Encoding) -> int:
        rows, cols = self.shape(encoding)
        return rows * cols

    def decode_for(self, genes: np.ndarray, encoding: Encoding) -> HeadMasks:
        return HeadMasks(
            features=np.ones(encoding.n_features, dtype=bool),
            hidden=tuple(np.ones(h, dtype=bool) for h in encoding.hidden),
            connections={self.index: genes.reshape(self.shape(encoding))},
        )


for _layer, _what in (("fc", "features -> hidden"), ("out", "hidden -> classes")):
    register_encoding(
        EdgesSpec(
            f"edges-{_layer}",
            f"one-layer head; one gene per {_what} weight (connection pruning; "
            f"--encoding edges --layer {_layer})",
            hidden_layers=1,
            targets=(PruneTarget(0 if _layer == "fc" else 1, "weights"),),
            layer=_layer,
        )
    )


def encoding_for_layer(name: str, layer: str | None) -> str:
    """The registered encoding that ``--encoding name --layer layer`` means (``edges``,
    ``out`` -> ``edges-out``); ``name`` itself without a layer. ConfigError for a family
    without a layer, or a layer given to an encoding that has none."""
    if name in LAYER_FAMILIES:
        layers = LAYER_FAMILIES[name]
        if layer not in layers:
            given = "no --layer" if layer is None else f"--layer {layer}"
            raise ConfigError(
                f"--encoding {name} with {given}: choose the layer whose connections the "
                f"genes switch, --layer {' or --layer '.join(layers)}"
            )
        return f"{name}-{layer}"
    if layer is not None:
        raise ConfigError(
            f"--layer {layer} applies to --encoding {' or '.join(LAYER_FAMILIES)} only "
            f"(not {name}); drop --layer"
        )
    return name


@dataclass(frozen=True)
class Encoding:
    """A chromosome layout for a head of ``hidden`` layer sizes on ``n_features`` inputs; its
    rules come from the registered :class:`EncodingSpec` called ``name``."""

    name: str
    n_features: int
    hidden: tuple[int, ...]
    n_classes: int | None = None  # needed by layouts over the output layer (edges-out)

    @property
    def spec(self) -> EncodingSpec:
        return encoding_spec(self.name)

    @property
    def n_genes(self) -> int:
        return int(self.spec.genes_for(self))

    @property
    def prune_targets(self) -> tuple[PruneTarget, ...]:
        """The layers the genes act on, which the pruning baselines prune too."""
        return self.spec.targets

    def decode(self, chromosome: np.ndarray) -> HeadMasks:
        """Masks of the units switched on by ``chromosome`` (all other units stay on)."""
        genes = np.asarray(chromosome).astype(bool).ravel()
        if genes.size != self.n_genes:
            raise ConfigError(
                f"chromosome has {genes.size} genes but encoding {self.name!r} needs {self.n_genes}"
            )
        masks = self.spec.decode_for(genes, self)
        sizes = (masks.features.size,) + tuple(m.size for m in masks.hidden)
        if sizes != (self.n_features,) + self.hidden:
            raise ConfigError(
                f"encoding {self.name!r} decoded masks of sizes {sizes}, not "
                f"{(self.n_features,) + self.hidden}; fix its decode_genes"
            )
        return masks

    def full(self) -> np.ndarray:
        """The chromosome with every gene on (the not-pruned head)."""
        return np.ones(self.n_genes, dtype=np.uint8)

    def layer_names(self) -> tuple[str, ...]:
        return ("features",) + tuple(f"fc{i + 1}" for i in range(len(self.hidden)))


def make_encoding(
    name: str, n_features: int, hidden_size: int = 512, n_classes: int | None = None
) -> Encoding:
    """The encoding ``name`` for a head on ``n_features`` inputs with hidden layers of
    ``hidden_size`` (and ``n_classes`` outputs, which ``edges-out`` needs).

    The number of hidden layers is the encoding's: ``fs``, ``fc`` and the ``edges`` encodings
    use the paper's one-layer head, ``fc1``, ``fc2`` and ``both`` its two-layer head.
    """
    spec = encoding_spec(name)
    if int(n_features) < 1:
        raise ConfigError(f"n_features={n_features} must be at least 1")
    if int(hidden_size) < 1:
        raise ConfigError(f"hidden_size={hidden_size} must be at least 1")
    return Encoding(
        name=name,
        n_features=int(n_features),
        hidden=(int(hidden_size),) * int(spec.hidden_layers),
        n_classes=None if n_classes is None else int(n_classes),
    )
