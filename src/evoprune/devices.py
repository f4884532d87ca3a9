"""Where torch work runs: ``--device auto|cpu|cuda`` resolved once, for features and heads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from evoprune.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` -> the first GPU when torch sees one, else the CPU; ``cuda`` without a visible
    GPU is refused with what to do instead."""
    import torch  # here, so that the run settings read DEVICES without importing torch

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


def describe_device(device: str | torch.device) -> str:
    """The device as a run records it: ``cpu`` or ``cuda:0 (NVIDIA H100 80GB HBM3)``."""
    import torch

    dev = resolve_device(device)
    if dev.type != "cuda":
        return str(dev)
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
