"""The backbone interface: a frozen pretrained CNN with its preprocessing and feature size."""

from __future__ import annotations

import functools
import hashlib
import importlib
import logging
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from PIL import Image
from torch import nn

from evoprune.backbones.runtime import Runner, build_runner, planned_identity
from evoprune.errors import BackboneError, ConfigError
from evoprune.io import file_sha256

__all__ = [
    "Backbone",
    "BackboneInfo",
    "Extractor",
    "GlobalPool",
    "Preprocessing",
    "freeze",
    "import_optional",
    "sha256_file",
    "state_dict_id",
]

logger = logging.getLogger(__name__)

#: How ``Preprocessing.resize`` names map to PIL filters.
RESIZE_FILTERS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}
CHANNEL_ORDERS = ("RGB", "BGR")


@functools.lru_cache(maxsize=16)
def _scaling_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(3, 256) float32: entry (c, v) is pixel value v scaled for input channel c, computed as
    ``v / (255 * std[c]) - mean[c] / std[c]`` in float32."""
    scale = np.float32(255.0) * np.asarray(std, dtype=np.float32)
    offset = np.asarray(mean, dtype=np.float32) / np.asarray(std, dtype=np.float32)
    table = np.ascontiguousarray((np.arange(256, dtype=np.float32)[:, None] / scale - offset).T)
    table.setflags(write=False)
    return table


def _grey_pixels(image: Image.Image) -> np.ndarray | None:
    """The (H, W) uint8 pixels of a grey image (mode L, or RGB with equal channels), else None."""
    if image.mode == "L":
        return np.asarray(image)
    if image.mode != "RGB":
        return None
    rgb = np.asarray(image)
    first = rgb[:, :, 0]
    if np.array_equal(first, rgb[:, :, 1]) and np.array_equal(first, rgb[:, :, 2]):
        return np.ascontiguousarray(first)
    return None


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a backbone's input, as data: the one description that feature
    extraction, prediction and the exported model's metadata all read.

    The whole image is resized (no crop, so nothing at the borders is lost) to ``image_size`` x
    ``image_size`` with the ``resize`` filter, its pixels scaled to [0, 1], normalised per channel
    by ``(x - mean) / std`` and laid out CHW in ``channels`` order (``mean`` and ``std`` are in
    that order too).
    """

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "bilinear"
    channels: str = "RGB"

    def __post_init__(self) -> None:
        def fail(what: str) -> ConfigError:
            return ConfigError(f"Preprocessing: {what}")

        if isinstance(self.image_size, bool) or int(self.image_size) < 1:
            raise fail(f"image_size={self.image_size!r} must be a positive number of pixels")
        object.__setattr__(self, "image_size", int(self.image_size))
        for key in ("mean", "std"):
            values = tuple(float(v) for v in getattr(self, key))
            if len(values) != 3:
                raise fail(f"{key}={getattr(self, key)!r} needs one value per channel (3)")
            object.__setattr__(self, key, values)
        if min(self.std) <= 0:
            raise fail(f"std={self.std} must be positive")
        if self.resize not in RESIZE_FILTERS:
            raise fail(
                f"resize={self.resize!r} is unknown; choose one of {', '.join(RESIZE_FILTERS)}"
            )
        if self.channels not in CHANNEL_ORDERS:
            raise fail(
                f"channels={self.channels!r} is unknown; choose one of {', '.join(CHANNEL_ORDERS)}"
            )

    def __call__(self, image: Image.Image) -> np.ndarray:
        """PIL image -> float32 (3, image_size, image_size) network input.

        Grey images (mode L, or RGB with three equal channels, as grey files are opened) are
        resized as one channel and pixels are scaled through a 256-entry table per channel:
        bit for bit the arithmetic below, in about 60% of its time (ELPV: 1.4 instead of 2.4 ms
        an image, which on 2 cores is a fifth of the CNN's time).
        """
        size = (self.image_size, self.image_size)
        resample = RESIZE_FILTERS[self.resize]
        grey = _grey_pixels(image)
        if grey is None:
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            pixels = np.asarray(rgb.resize(size, resample))  # HWC uint8
            order = (2, 1, 0) if self.channels == "BGR" else (0, 1, 2)
            planes = [pixels[:, :, c] for c in order]
        else:
            planes = [np.asarray(Image.fromarray(grey, mode="L").resize(size, resample))] * 3
        table = _scaling_table(self.mean, self.std)
        out = np.empty((3, *size), dtype=np.float32)
        for channel, plane in enumerate(planes):
            np.take(table[channel], plane, out=out[channel])
        return out

    @property
    def identity(self) -> str:
        """Every setting, as a string for feature-cache keys."""
        size = self.image_size
        return (
            f"resize={size}x{size},{self.resize},nocrop;{self.channels.lower()}/255;"
            f"mean={','.join(f'{m:.6g}' for m in self.mean)};"
            f"std={','.join(f'{s:.6g}' for s in self.std)}"
        )

    def metadata(self) -> dict:
        """The description written beside an exported model (JSON-ready)."""
        size = self.image_size
        return {
            "image_size": [size, size],
            "resize": f"whole image resized to image_size, {self.resize}, no crop",
            "color": f"{self.channels} (grey repeated over 3 channels, transparency on white)",
            "scale": "pixel / 255",
            "mean": list(self.mean),
            "std": list(self.std),
            "normalize": "(pixel / 255 - mean) / std per channel",
            "layout": "NCHW",
        }


@dataclass(frozen=True)
class BackboneInfo:
    """What the registry knows about a backbone before building it."""

    name: str
    feature_dim: int
    image_size: int
    source: str
    available: bool
    description: str
    preprocessing: Preprocessing | None = None


@dataclass
class Extractor:
    """What a backbone's builder returns: its frozen modules and their identity.

    ``feature_module`` maps a (N, 3, H, W) batch to (N, feature_dim) features;
    ``classifier_module``, if any, to ImageNet logits. ``weights_id`` identifies the weights in
    feature-cache keys (by default a hash of the feature module's state dict).
    ``forward_batch`` is how many images go through the network at a time.
    """

    feature_module: nn.Module
    classifier_module: nn.Module | None = None
    weights_id: str | None = None
    forward_batch: int = 4


def state_dict_id(model: nn.Module) -> str:
    """First 16 hex digits of a sha256 over the state dict's names and tensor bytes."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def import_optional(
    library: str, what: str, pip: str, then: str = "", *, torch_build: bool = False
) -> ModuleType:
    """``library`` imported for ``what`` (a backbone), or a :class:`BackboneError` that says
    why not and what to install (``pip``: the pip requirement; ``then``: what else the user
    should know). With ``torch_build`` (torchvision, and timm which imports it) the library
    must be built for the installed torch: pip wheels built for another torch fail with
    RuntimeError, not ImportError (PyPI's torchvision beside a CPU-only torch stops on its
    first operator), so a CPU-only torch is told to take torchvision from its own index."""
    try:
        return importlib.import_module(library)
    except Exception as exc:
        fix = f"pip install {pip}"
        # PyPI's Linux and Windows wheels are CUDA builds; macOS has no other kind
        if torch_build and torch.version.cuda is None and sys.platform != "darwin":
            fix = (
                f"the installed torch {torch.__version__} is a CPU-only build, so first take "
                "torchvision from the same CPU wheel index as torch (pip install torchvision "
                "--index-url <that index>; PyPI's wheels are built for a CUDA torch and fail "
                f"beside it), then {fix}"
            )
        elif torch_build:
            fix = f"{fix} (a build made for the installed torch {torch.__version__})"
        raise BackboneError(
            f"{what} needs {library}, which cannot be imported here ({exc}). Install it: "
            f"{fix}. {then}".rstrip()
        ) from exc


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    return file_sha256(path).hex()


def freeze(module: nn.Module) -> nn.Module:
    """Put ``module`` in eval mode with every parameter frozen; returns it."""
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module.eval()


class GlobalPool(nn.Module):
    """``body`` (N,3,H,W) -> (N,C,h,w) maps, optionally ReLU'd, averaged to (N,C) features."""

    def __init__(self, body: nn.Module, relu: bool = False) -> None:
        super().__init__()
        self.body = body
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.body(x)
        if self.relu:
            maps = torch.relu(maps)
        return maps.mean(dim=(2, 3))


class Backbone:
    """A frozen pretrained feature extractor, with its preprocessing and identity for cache keys.

    Built by the registry (:func:`evoprune.backbones.get_backbone`); one instance per name and
    process. The modules it hands out are shared, frozen and in eval mode.
    """

    def __init__(
        self,
        *,
        name: str,
        feature_dim: int,
        preprocessing: Preprocessing,
        weights_id: str,
        feature_module: nn.Module,
        classifier_module: nn.Module | None = None,
        forward_batch: int = 4,
    ) -> None:
        self.name = name
        self.feature_dim = int(feature_dim)
        self.preprocessing = preprocessing
        self.weights_id = weights_id
        # Images per forward pass. On small CPUs big batches are slower, not faster: their
        # activation buffers exceed glibc's mmap threshold and are page-faulted in afresh on every
        # call (EfficientNet-Lite0 on 2 cores: ~75 img/s in passes of 4, ~36 img/s in passes of 32).
        self.forward_batch = max(1, int(forward_batch))
        self._feature_module = freeze(feature_module)
        self._classifier_module = None if classifier_module is None else freeze(classifier_module)
        self._runners: dict[tuple[str, str], Runner] = {}
        self._runners_lock = threading.Lock()

    # Read-only views of the preprocessing (it is the one place these numbers live).
    @property
    def image_size(self) -> int:
        return self.preprocessing.image_size

    @property
    def mean(self) -> tuple[float, float, float]:
        return self.preprocessing.mean

    @property
    def std(self) -> tuple[float, float, float]:
        return self.preprocessing.std

    @property
    def preprocess_id(self) -> str:
        return self.preprocessing.identity

    def __repr__(self) -> str:
        return (
            f"Backbone(name={self.name!r}, feature_dim={self.feature_dim}, "
            f"image_size={self.image_size}, weights_id={self.weights_id!r})"
        )

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """PIL image -> float32 (3, image_size, image_size) network input."""
        return self.preprocessing(image)

    def feature_extractor(self) -> nn.Module:
        """Frozen eval-mode module: (N,3,H,W) float -> (N, feature_dim) pooled features.

        Plain torch ops only, so it traces with ``torch.jit`` and exports to ONNX.
        """
        return self._feature_module

    def feature_maps(self) -> nn.Module:
        """Frozen eval-mode module: (N,3,H,W) float -> (N, feature_dim, h, w), the last feature
        map whose spatial mean is the feature vector (what heatmaps such as Grad-CAM need)."""
        pool = self._feature_module
        if not isinstance(pool, GlobalPool):
            raise BackboneError(
                f'Backbone "{self.name}" does not expose its feature map (its feature module '
                "is not a GlobalPool); register it with GlobalPool(body) to get heatmaps"
            )
        return nn.Sequential(pool.body, nn.ReLU()) if pool.relu else pool.body

    def runner(self, device: torch.device | str = "cpu", form: str = "auto") -> Runner:
        """The feature module in its fastest form on ``device`` that gives the features of
        :meth:`features` within 1e-4 (see :mod:`evoprune.backbones.runtime`); built once."""
        key = (str(torch.device(device)), form)
        with self._runners_lock:
            if key not in self._runners:
                self._runners[key] = build_runner(
                    self._feature_module,
                    image_size=self.image_size,
                    forward_batch=self.forward_batch,
                    device=torch.device(device),
                    form=form,
                )
                logger.info("Backbone %s runs as %r", self.name, self._runners[key])
            return self._runners[key]

    def form_identity(self, device: torch.device | str = "cpu", form: str = "auto") -> str:
        """The identity (``onnxruntime/cpu``...) of the form :meth:`runner` gives for ``device``
        and ``form``: the built one's, else the one it will try first. Feature-cache keys and
        results name it, since forms differ by up to 1e-4."""
        key = (str(torch.device(device)), form)
        with self._runners_lock:
            built = self._runners.get(key)
        return built.identity if built is not None else planned_identity(form, device)

    def classifier(self) -> nn.Module:
        """Frozen eval-mode module: (N,3,H,W) float -> (N, 1000) ImageNet logits."""
        if self._classifier_module is None:
            raise BackboneError(
                f'Backbone "{self.name}" has no ImageNet classifier; its '
                "builder returned a feature module only"
            )
        return self._classifier_module

    def features(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N,3,H,W) preprocessed batch -> float32 (N, feature_dim) features.

        Runs the network ``forward_batch`` images at a time, whatever N is.
        """
        inputs = torch.as_tensor(batch, dtype=torch.float32)
        if inputs.ndim != 4 or inputs.shape[1] != 3:
            raise ConfigError(
                f"features() expects a (N, 3, H, W) batch, got shape {tuple(inputs.shape)}"
            )
        out = np.empty((inputs.shape[0], self.feature_dim), dtype=np.float32)
        module = self._feature_module.eval()
        with torch.inference_mode():
            for start in range(0, inputs.shape[0], self.forward_batch):
                stop = start + self.forward_batch
                part = module(inputs[start:stop])
                if tuple(part.shape) != (min(stop, len(out)) - start, self.feature_dim):
                    raise BackboneError(
                        f'Backbone "{self.name}" gave features of shape {tuple(part.shape)} '
                        f"for {min(stop, len(out)) - start} images; it is registered with "
                        f"feature_dim={self.feature_dim}: fix its module or its feature_dim"
                    )
                out[start:stop] = part.numpy()
        return out
