"""Chromosome layouts: which units of the head one binary gene switches, and decoding to masks.

A chromosome is a 0/1 vector. Decoding it gives a :class:`HeadMasks`: which input features
the head reads and which neurons each hidden layer keeps. The head (``model/head.py``) turns those
masks into a physically smaller network; the search never sees any of this.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

ENCODINGS = {
    "fs": "one-layer head; one gene per input feature (feature selection)",
    "fc": "one-layer head; one gene per neuron of the hidden layer",
    "fc1": "two-layer head; one gene per neuron of the first hidden layer",
    "fc2": "two-layer head; one gene per neuron of the second hidden layer",
    "both": "two-layer head; genes for the neurons of both hidden layers (first half FC1)",
}


@dataclass(frozen=True)
class HeadMasks:
    """Boolean masks of the units that exist: input features, then each hidden layer."""

    features: np.ndarray
    hidden: tuple[np.ndarray, ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        """Active units per layer: (features, hidden1, ...)."""
        return (int(self.features.sum()),) + tuple(int(m.sum()) for m in self.hidden)


@dataclass(frozen=True)
class Encoding:
    """A chromosome layout for a head of ``hidden`` layer sizes on ``n_features`` inputs."""

    name: str
    n_features: int
    hidden: tuple[int, ...]

    @property
    def n_genes(self) -> int:
        if self.name == "fs":
            return self.n_features
        if self.name == "both":
            return sum(self.hidden)
        return self.hidden[self._layer_index()]

    def _layer_index(self) -> int:
        return {"fc": 0, "fc1": 0, "fc2": 1}[self.name]

    def decode(self, chromosome: np.ndarray) -> HeadMasks:
        """Masks of the units switched on by ``chromosome`` (all other units stay on)."""
        genes = np.asarray(chromosome).astype(bool).ravel()
        if genes.size != self.n_genes:
            raise ConfigError(
                f"chromosome has {genes.size} genes but encoding {self.name!r} "
                f"needs {self.n_genes}"
            )
        features = np.ones(self.n_features, dtype=bool)
        hidden = [np.ones(h, dtype=bool) for h in self.hidden]
        if self.name == "fs":
            features = genes
        elif self.name == "both":
            hidden[0] = genes[: self.hidden[0]]
            hidden[1] = genes[self.hidden[0]:]
        else:
            hidden[self._layer_index()] = genes
        return HeadMasks(features=features, hidden=tuple(hidden))

    def full(self) -> np.ndarray:
        """The chromosome with every gene on (the not-pruned head)."""
        return np.ones(self.n_genes, dtype=np.uint8)

    def layer_names(self) -> tuple[str, ...]:
        return ("features",) + tuple(f"fc{i + 1}" for i in range(len(self.hidden)))


def make_encoding(name: str, n_features: int, hidden_size: int = 512) -> Encoding:
    """The encoding ``name`` for a head on ``n_features`` inputs with hidden layers of ``hidden_size``.

    ``fs`` and ``fc`` use the paper's one-layer head, ``fc1``, ``fc2`` and ``both`` its two-layer head.
    """
    if name not in ENCODINGS:
        raise ConfigError(f"encoding={name!r} is unknown; choose one of {', '.join(ENCODINGS)}")
    if int(n_features) < 1:
        raise ConfigError(f"n_features={n_features} must be at least 1")
    if int(hidden_size) < 1:
        raise ConfigError(f"hidden_size={hidden_size} must be at least 1")
    layers = 1 if name in ("fs", "fc") else 2
    return Encoding(name=name, n_features=int(n_features), hidden=(int(hidden_size),) * layers)
