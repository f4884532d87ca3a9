"""Where torch work runs: ``--device auto|cpu|cuda`` resolved once, for features and heads."""

from __future__ import annotations

import torch

from evoprune.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` -> the first GPU when torch sees one, else the CPU; ``cuda`` without a visible
    GPU is refused with what to do instead."""
    if isinstance(name, torch.device):
        return name
    text = str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {name}: torch sees no GPU here (torch {torch.__version__}, "
                f"CUDA build: {torch.version.cuda or 'no'}); use --device cpu or auto"
            )
        return torch.device(text)
    raise ConfigError(f"--device {name!r} is unknown; choose one of {', '.join(DEVICES)}")
