"""The backbone interface: a frozen pretrained CNN with its preprocessing and feature size."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from evoprune.errors import ConfigError

__all__ = ["Backbone", "BackboneInfo", "GlobalPool", "freeze", "preprocess_image", "sha256_file"]


@dataclass(frozen=True)
class BackboneInfo:
    """What the registry knows about a backbone before building it."""

    name: str
    feature_dim: int
    image_size: int
    source: str
    available: bool
    description: str


def preprocess_image(
    image: Image.Image,
    image_size: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> np.ndarray:
    """RGB PIL image -> float32 CHW array.

    The whole image is resized (bilinear, no crop, so nothing at the borders is lost) to
    ``image_size`` x ``image_size``, scaled to [0, 1] and normalised per channel.
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    resized = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
    pixels = np.asarray(resized, dtype=np.float32)  # HWC in [0, 255]
    scale = np.float32(255.0) * np.asarray(std, dtype=np.float32)
    offset = np.asarray(mean, dtype=np.float32) / np.asarray(std, dtype=np.float32)
    chw = (pixels / scale - offset).transpose(2, 0, 1)
    return np.ascontiguousarray(chw, dtype=np.float32)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


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
        image_size: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        weights_id: str,
        feature_module: nn.Module,
        classifier_module: nn.Module,
        forward_batch: int = 4,
    ) -> None:
        self.name = name
        self.feature_dim = int(feature_dim)
        self.image_size = int(image_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.weights_id = weights_id
        self.preprocess_id = (
            f"resize={self.image_size}x{self.image_size},bilinear,nocrop;rgb/255;"
            f"mean={','.join(f'{m:.6g}' for m in self.mean)};"
            f"std={','.join(f'{s:.6g}' for s in self.std)}"
        )
        # Images per forward pass. On small CPUs big batches are slower, not faster: their
        # activation buffers exceed glibc's mmap threshold and are page-faulted in afresh on every
        # call (EfficientNet-Lite0 on 2 cores: ~75 img/s in passes of 4, ~36 img/s in passes of 32).
        self.forward_batch = max(1, int(forward_batch))
        self._feature_module = freeze(feature_module)
        self._classifier_module = freeze(classifier_module)

    def __repr__(self) -> str:
        return (
            f"Backbone(name={self.name!r}, feature_dim={self.feature_dim}, "
            f"image_size={self.image_size}, weights_id={self.weights_id!r})"
        )

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """RGB PIL image -> float32 (3, image_size, image_size) network input."""
        return preprocess_image(image, self.image_size, self.mean, self.std)

    def feature_extractor(self) -> nn.Module:
        """Frozen eval-mode module: (N,3,H,W) float -> (N, feature_dim) pooled features.

        Plain torch ops only, so it traces with ``torch.jit`` and exports to ONNX.
        """
        return self._feature_module

    def classifier(self) -> nn.Module:
        """Frozen eval-mode module: (N,3,H,W) float -> (N, 1000) ImageNet logits."""
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
                out[start:stop] = module(inputs[start:stop]).numpy()
        return out
