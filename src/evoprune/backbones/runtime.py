"""A backbone's feature module in its fastest form that keeps the features of plain eager float32.

Forms (measured for EfficientNet-Lite0 on ELPV, 2 CPU cores; benchmarks/features.py):

- ``eager``: the torch module as built, in inference mode (the reference).
- ``channels_last``: a copy of the module in channels-last memory format (oneDNN's preferred
  layout for depthwise convolutions on a CPU, cuDNN's on a GPU).
- ``onnxruntime``: the module exported to ONNX (in memory, which needs the ``onnx`` package) and
  run by onnxruntime, one intra-op thread per call and one call per CPU thread at once, without
  spinning threads. Both packages are core dependencies, so a plain install runs this form.
- ``auto``: onnxruntime on a CPU when onnxruntime and onnx are installed and the module
  exports, else channels-last; channels-last on a GPU (with TF32 off, so features stay
  float32-exact).

Every form is checked once, when built, against eager float32 on a probe batch: a form whose
features differ by more than :data:`TOLERANCE` (max abs) is not used (a WARNING says so). Forms
that pass still differ by about 1e-5, enough for a search to take another path, so the feature
cache key and a run's ``result.json`` name the form (:attr:`Runner.identity`,
:func:`planned_identity`).
"""

from __future__ import annotations

import copy
import importlib.util
import io
import logging
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch
from torch import nn

from evoprune.errors import ConfigError

__all__ = [
    "FORMS",
    "TOLERANCE",
    "Runner",
    "build_runner",
    "eager_features",
    "form_identity",
    "planned_identity",
]

logger = logging.getLogger(__name__)

FORMS = ("auto", "eager", "channels_last", "onnxruntime")
TOLERANCE = 1e-4  # max abs difference to eager float32 features
_PROBE_SEED = 0
_GPU_FORWARD_BATCH = 64


class Runner:
    """(N, 3, H, W) float32 batch -> (N, feature_dim) float32 features in one form.

    ``concurrent``: calls are single-threaded and meant to run several at once from different
    threads, one per CPU thread (onnxruntime); otherwise one call at a time, which parallelises
    inside (torch). ``forward_batch`` is how many images one call should get.
    """

    def __init__(
        self,
        form: str,
        device: torch.device,
        run: Callable[[np.ndarray], np.ndarray],
        forward_batch: int,
        concurrent: bool = False,
    ) -> None:
        self.form = form
        self.device = device
        self._run = run
        self.forward_batch = forward_batch
        self.concurrent = concurrent

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self._run(np.ascontiguousarray(batch, dtype=np.float32))

    @property
    def identity(self) -> str:
        """The form and the kind of device, ``onnxruntime/cpu``: what features depend on."""
        return form_identity(self.form, self.device)

    def __repr__(self) -> str:
        return f"Runner(form={self.form!r}, device={str(self.device)!r})"


def form_identity(form: str, device: torch.device | str) -> str:
    """``<form>/<device type>``: forms, and one form on a CPU or a GPU, give features that
    differ by up to :data:`TOLERANCE`, so feature-cache keys and results name both."""
    return f"{form}/{torch.device(device).type}"


def planned_identity(form: str, device: torch.device | str) -> str:
    """The identity of the form :func:`build_runner` tries first for ``form`` on ``device``
    (it is the one built unless it fails its check, which logs a WARNING)."""
    device = torch.device(device)
    return form_identity(_candidates(form, device)[0], device)


def eager_features(module: nn.Module, batch: np.ndarray | torch.Tensor) -> np.ndarray:
    """Plain eager float32 features on the CPU: the reference every form is checked against."""
    with torch.inference_mode():
        return module(torch.as_tensor(batch, dtype=torch.float32)).numpy()


def _no_tf32() -> AbstractContextManager:
    """cuDNN convolutions in full float32 (TF32 would move features by ~1e-3)."""
    return torch.backends.cudnn.flags(enabled=True, benchmark=True, allow_tf32=False)


def _torch_runner(
    module: nn.Module, device: torch.device, forward_batch: int, channels_last: bool
) -> Runner:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last or device.type != "cpu":  # a private copy: the shared module stays as is
        module = copy.deepcopy(module).to(device)
        module = module.to(memory_format=fmt).eval()  # type: ignore[call-overload]
    on_gpu = device.type == "cuda"
    flags = _no_tf32 if on_gpu else nullcontext

    def run(batch: np.ndarray) -> np.ndarray:
        inputs = torch.from_numpy(batch).to(device, non_blocking=on_gpu)
        with torch.inference_mode(), flags():
            return module(inputs.contiguous(memory_format=fmt)).float().cpu().numpy()

    form = "channels_last" if channels_last else "eager"
    return Runner(form, device, run, _GPU_FORWARD_BATCH if on_gpu else forward_batch)


def onnxruntime_available() -> bool:
    """Whether the onnxruntime form can be built: onnxruntime runs it, and torch's ONNX export
    needs the onnx package (without it: "Module onnx is not installed!")."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def _onnx_bytes(module: nn.Module, image_size: int) -> bytes:
    """The module as an in-memory ONNX model with a variable batch size (a module that is an
    ONNX file already, :class:`evoprune.backbones.specs.OnnxFeatures`, as it is)."""
    given = getattr(module, "onnx_model_bytes", None)
    if isinstance(given, bytes):
        return given
    buffer = io.BytesIO()
    example = torch.zeros(1, 3, image_size, image_size)
    with warnings.catch_warnings():  # torch.onnx's deprecation and tracer notices
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            buffer,  # type: ignore[arg-type]  # a file object is accepted
            input_names=["images"],
            output_names=["features"],
            dynamic_axes={"images": {0: "n"}, "features": {0: "n"}},
            dynamo=False,
        )
    return buffer.getvalue()


def _onnx_runner(module: nn.Module, image_size: int, forward_batch: int) -> Runner:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # parallel calls, not parallel operators: measured faster
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(
        _onnx_bytes(module, image_size), options, providers=["CPUExecutionProvider"]
    )

    name = session.get_inputs()[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: batch})[0], dtype=np.float32)

    return Runner("onnxruntime", torch.device("cpu"), run, forward_batch, concurrent=True)


def _make(
    form: str, module: nn.Module, device: torch.device, image_size: int, forward_batch: int
) -> Runner:
    if form == "onnxruntime":
        if device.type != "cpu":
            raise ConfigError(f"form 'onnxruntime' runs on the CPU only, not on {device}")
        return _onnx_runner(module, image_size, forward_batch)
    return _torch_runner(module, device, forward_batch, channels_last=form == "channels_last")


def _candidates(form: str, device: torch.device) -> list[str]:
    if form not in FORMS:
        raise ConfigError(f"unknown backbone form {form!r}; choose one of {', '.join(FORMS)}")
    if form != "auto":
        return [form, "eager"] if form != "eager" else ["eager"]
    if device.type == "cpu" and onnxruntime_available():
        return ["onnxruntime", "channels_last", "eager"]
    return ["channels_last", "eager"]


def build_runner(
    module: nn.Module,
    *,
    image_size: int,
    forward_batch: int,
    device: torch.device,
    form: str = "auto",
) -> Runner:
    """The first form of ``form``'s candidates that builds and matches eager float32 within
    :data:`TOLERANCE` on a probe batch; eager on the CPU or ``device`` as the last resort."""
    probe = np.random.default_rng(_PROBE_SEED).standard_normal((2, 3, image_size, image_size))
    probe = probe.astype(np.float32)
    reference = eager_features(module, probe)
    for candidate in _candidates(form, device):
        try:
            runner = _make(candidate, module, device, image_size, forward_batch)
            diff = float(np.max(np.abs(runner(probe) - reference)))
        except ConfigError:
            raise
        except Exception as exc:  # export or runtime failures of a custom module: next form
            logger.warning("backbone form %s is unusable here (%s); next form", candidate, exc)
            continue
        if diff <= TOLERANCE:
            logger.debug("backbone form %s on %s: max abs diff %.2g", candidate, device, diff)
            return runner
        logger.warning(
            "backbone form %s on %s differs from eager float32 by %.2g (over %g); not used",
            candidate,
            device,
            diff,
            TOLERANCE,
        )
    return _torch_runner(module, torch.device("cpu"), forward_batch, channels_last=False)
