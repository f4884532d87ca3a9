"""Where torch work runs: ``--device auto|cpu|cuda`` resolved once, for features and heads."""

from __future__ import annotations

import os
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


def free_cores(cores: int | None = None, load: float | None = None) -> int:
    """Cores this process may use that other work is not using now: the cores it may run on
    less the load average of the last minute (rounded), at least 1."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(int(cores or 1), int(cores or 1) - round(float(load))))


def choose_threads(environ: dict | None = None, **probe) -> int | None:
    """torch threads for this process: the free cores, unless ``OMP_NUM_THREADS`` or
    ``MKL_NUM_THREADS`` fixes them (then None: the user's setting is kept). ``probe`` passes
    ``cores`` and ``load`` to :func:`free_cores` (tests)."""
    env = os.environ if environ is None else environ
    if env.get("OMP_NUM_THREADS") or env.get("MKL_NUM_THREADS"):
        return None
    return free_cores(**probe)


def share_cores() -> int:
    """Set torch's threads to :func:`choose_threads` (at the start of a command); returns the
    number of threads torch uses."""
    import torch

    threads = choose_threads()
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return torch.get_num_threads()
