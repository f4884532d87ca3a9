"""Backbones named by a spec rather than registered: any model a user has, from the command line.

- ``timm:NAME``: ``timm.create_model(NAME, pretrained=True, num_classes=0)`` (its pooled
  features), with timm's own preprocessing for it; timm loads the weights from its cache or
  downloads them (an optional extra: ``pip install timm``).
- ``torchvision:NAME``: ``torchvision.models.get_model(NAME, weights="DEFAULT")``; the features
  are the input of its last ``Linear`` layer (the ImageNet classifier), the preprocessing that of
  its weights (resized whole to their crop size, no crop).
- ``PATH.pt`` / ``PATH.pth``: a TorchScript module (``torch.jit.save``); ``PATH.onnx``: an ONNX
  model, run by onnxruntime. Either maps (N, 3, H, W) images to (N, D) features, or to
  (N, D, h, w) maps that are averaged.
- ``MODULE:FUNCTION`` (or ``path/to/file.py:FUNCTION``): ``FUNCTION()`` returns a torch module
  or an :class:`~evoprune.backbones.base.Extractor`; a ``preprocessing`` attribute (a
  :class:`~evoprune.backbones.base.Preprocessing`) on what it returns or on the function sets
  the preprocessing.

Files and factories take preprocessing options after ``?`` (quote the spec in a shell):
``model.onnx?size=64&mean=0.5,0.5,0.5&std=0.25,0.25,0.25&resize=bicubic&channels=BGR``. Without
them: ImageNet mean and std, bilinear, RGB, and 224 pixels (an ONNX model with a fixed input size:
that size). The feature size is measured with one probe batch. A file's bytes are its weights'
identity, so editing the file misses the feature cache.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from evoprune.backbones.base import (
    Backbone,
    Extractor,
    GlobalPool,
    Preprocessing,
    freeze,
    import_optional,
    sha256_file,
    state_dict_id,
)
from evoprune.errors import BackboneError, ConfigError

__all__ = [
    "FILE_SUFFIXES",
    "build_spec",
    "check_spec",
    "is_spec",
    "local_path",
    "spec_file",
    "with_local_path",
]

logger = logging.getLogger(__name__)

FILE_SUFFIXES = (".pt", ".pth", ".onnx")
LIBRARIES = ("timm", "torchvision")
IMAGENET = Preprocessing(image_size=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
_OPTIONS = ("size", "mean", "std", "resize", "channels")
_FACTORY = re.compile(r"^(?P<module>[A-Za-z_][\w.]*|.+\.py):(?P<function>[A-Za-z_]\w*)$")
SPEC_FORMS = (
    "timm:NAME, torchvision:NAME, a TorchScript (.pt, .pth) or ONNX (.onnx) file, or module:factory"
)


def _split(spec: str) -> tuple[str, str]:
    """(spec without options, the options after '?')."""
    head, _, query = str(spec).strip().partition("?")
    return head, query


def _library(spec: str) -> tuple[str, str] | None:
    head, _ = _split(spec)
    prefix, sep, name = head.partition(":")
    if sep and prefix.lower() in LIBRARIES:
        return prefix.lower(), name.strip()
    return None


def spec_file(spec: str) -> str | None:
    """The model file a spec names (``model.onnx?size=64`` -> ``model.onnx``), else None."""
    head, _ = _split(spec)
    if _library(spec) is None and head.lower().endswith(FILE_SUFFIXES):
        return head
    return None


def local_path(spec: str) -> str | None:
    """The file on this machine a spec names: its model file, or a factory's ``.py`` file."""
    found = spec_file(spec)
    if found is not None:
        return found
    factory = _factory(spec)
    return factory[0] if factory is not None and factory[0].endswith(".py") else None


def with_local_path(spec: str, path: str) -> str:
    """``spec`` with its :func:`local_path` replaced by ``path`` (function and options kept);
    how results store it relative to their folder and read it back."""
    head, query = _split(spec)
    factory = _factory(spec)
    if spec_file(spec) is None and factory is not None:
        head = f"{path}:{factory[1]}"
    else:
        head = path
    return f"{head}?{query}" if query else head


def _factory(spec: str) -> tuple[str, str] | None:
    head, _ = _split(spec)
    if _library(spec) is not None or spec_file(spec) is not None:
        return None
    found = _FACTORY.match(head)
    return (found["module"], found["function"]) if found else None


def is_spec(name: str) -> bool:
    """Whether ``name`` is a backbone spec (not a registered name)."""
    return any(
        (_library(name) is not None, spec_file(name) is not None, _factory(name) is not None)
    )


def _floats(key: str, text: str, spec: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ConfigError(f"backbone {spec!r}: {key}={text!r} needs 3 numbers, as {key}=a,b,c")
    return values


def _options(spec: str) -> dict[str, Any]:
    """The preprocessing options after '?', checked (ConfigError names the bad one)."""
    _, query = _split(spec)
    options: dict[str, Any] = {}
    for part in filter(None, query.split("&")):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in _OPTIONS:
            raise ConfigError(
                f"backbone {spec!r}: unknown option {part!r}; the options after '?' are "
                f"{', '.join(o + '=' for o in _OPTIONS)} joined by '&'"
            )
        if key == "size":
            if not value.strip().isdigit() or int(value) < 1:
                raise ConfigError(f"backbone {spec!r}: size={value!r} must be a pixel count")
            options["image_size"] = int(value)
        elif key in ("mean", "std"):
            options[key] = _floats(key, value, spec)
        else:
            options[key] = value.strip()
    if options:
        Preprocessing(**{**_preprocessing_fields(IMAGENET), **options})  # checks the values
    return options


def _preprocessing_fields(p: Preprocessing) -> dict[str, Any]:
    return {
        "image_size": p.image_size,
        "mean": p.mean,
        "std": p.std,
        "resize": p.resize,
        "channels": p.channels,
    }


def check_spec(spec: str) -> str | None:
    """What is wrong with a spec, found without building it (None when it looks right): the
    form, the options, a missing file, an unknown module."""
    library = _library(spec)
    try:
        _options(spec)
    except ConfigError as exc:
        return str(exc)
    if library is not None:
        if not library[1]:
            return f"names no model: write {library[0]}:MODEL_NAME"
        return None
    path = spec_file(spec)
    if path is not None:
        if not Path(path).is_file():
            return f"is not a file ({path} does not exist); give the path of a {SPEC_FORMS}"
        return None
    factory = _factory(spec)
    if factory is None:
        return f"is not a known backbone or a spec ({SPEC_FORMS})"
    module = factory[0]
    if module.endswith(".py"):
        return None if Path(module).is_file() else f"names {module}, which does not exist"
    with _cwd_importable():
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
    if found is None:
        return (
            f"names module {module!r}, which cannot be imported here; put it on PYTHONPATH "
            "or in the current folder, or give path/to/file.py:FUNCTION"
        )
    return None


class _CwdImportable:
    """The current folder on sys.path while importing a factory's module (as ``python -m``
    would have it; the ``evoprune`` script's own sys.path lacks it)."""

    def __enter__(self) -> None:
        self.added = os.getcwd() not in sys.path and "" not in sys.path
        if self.added:
            sys.path.insert(0, os.getcwd())

    def __exit__(self, *exc: object) -> None:
        if self.added and os.getcwd() in sys.path:
            sys.path.remove(os.getcwd())


def _cwd_importable() -> _CwdImportable:
    return _CwdImportable()


# --- building ---------------------------------------------------------------------------------


def _optional(library: str, spec: str) -> Any:
    torch_build = library in ("torchvision", "timm")  # timm imports torchvision
    pip = '"evoprune[torchvision]"' if library == "torchvision" else library
    return import_optional(
        library, f"backbone {spec!r}", pip, "Or choose another backbone.", torch_build=torch_build
    )


def _probe(module: nn.Module, size: int, spec: str) -> tuple[nn.Module, int]:
    """The feature module (maps averaged) and its feature size, from one probe batch."""
    probe = torch.zeros(2, 3, size, size)
    try:
        with torch.inference_mode():
            out = module(probe)
    except Exception as exc:
        raise BackboneError(
            f"backbone {spec!r} fails on a (2, 3, {size}, {size}) batch ({exc}); give its "
            "input size as ?size=N"
        ) from exc
    if isinstance(out, (tuple, list)) and out:
        raise BackboneError(
            f"backbone {spec!r} returns {len(out)} outputs; it must return one (N, D) "
            "feature tensor or (N, D, h, w) maps"
        )
    if not isinstance(out, torch.Tensor) or out.ndim not in (2, 4) or out.shape[0] != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise BackboneError(
            f"backbone {spec!r} gave {shape} for 2 images; it must give (N, D) features or "
            "(N, D, h, w) maps"
        )
    if out.ndim == 4:
        return GlobalPool(module), int(out.shape[1])
    return module, int(out.shape[1])


def _last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise BackboneError("the model has no Linear classifier layer to take features before")
    return found[-1]


def _without(model: nn.Module, name: str) -> nn.Module:
    """A copy of ``model`` with its submodule ``name`` replaced by an identity."""
    features = copy.deepcopy(model)
    parent_name, _, child = name.rpartition(".")
    parent = features.get_submodule(parent_name) if parent_name else features
    setattr(parent, child, nn.Identity())
    return features


def _interpolation(value: Any) -> str:
    text = str(getattr(value, "value", value)).lower()
    return "bicubic" if "bicubic" in text else "nearest" if "nearest" in text else "bilinear"


def _timm(name: str, spec: str) -> tuple[Extractor, Preprocessing]:
    timm = _optional("timm", spec)
    try:
        model = timm.create_model(name, pretrained=True, num_classes=0)
        config = timm.data.resolve_data_config({}, model=model)
    except Exception as exc:
        raise BackboneError(
            f"timm cannot build {name!r} with its pretrained weights ({exc}); the weights must "
            "be in timm's cache or downloadable; see timm.list_models(pretrained=True)"
        ) from exc
    preprocessing = Preprocessing(
        image_size=int(config["input_size"][-1]),
        mean=tuple(config["mean"]),
        std=tuple(config["std"]),
        resize=_interpolation(config.get("interpolation", "bilinear")),
    )
    return Extractor(feature_module=model, weights_id=state_dict_id(model)), preprocessing


def _torchvision(name: str, spec: str) -> tuple[Extractor, Preprocessing]:
    tv = _optional("torchvision", spec)
    try:
        weights = tv.models.get_model_weights(name).DEFAULT
        model = tv.models.get_model(name, weights=weights)
    except Exception as exc:
        raise BackboneError(
            f"torchvision cannot build {name!r} with its default weights ({exc}); the weights "
            "must be in the torch hub cache ($TORCH_HOME) or downloadable; see "
            "torchvision.models.list_models()"
        ) from exc
    transform = weights.transforms()
    crop = getattr(transform, "crop_size", [224])
    preprocessing = Preprocessing(
        image_size=int(crop[0] if isinstance(crop, (list, tuple)) else crop),
        mean=tuple(transform.mean),
        std=tuple(transform.std),
        resize=_interpolation(getattr(transform, "interpolation", "bilinear")),
    )
    layer, _ = _last_linear(model)
    extractor = Extractor(
        feature_module=_without(model, layer),
        classifier_module=model,
        weights_id=state_dict_id(model),
    )
    return extractor, preprocessing


class OnnxFeatures(nn.Module):
    """An ONNX model file run by onnxruntime behind a torch module's interface (inference
    only). Its bytes are what the ``onnxruntime`` form runs, as they are (no export)."""

    def __init__(self, model: bytes) -> None:
        super().__init__()
        import onnxruntime

        self.onnx_model_bytes = model
        self._session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        out = self._session.run(None, {self._input: batch})[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32)).to(x.device)

    def __deepcopy__(self, memo: dict) -> OnnxFeatures:
        return self  # stateless; onnxruntime sessions may be called from several threads

    def input_size(self) -> int | None:
        """The model's fixed square input size, if its graph has one."""
        shape = self._session.get_inputs()[0].shape
        if len(shape) == 4 and isinstance(shape[2], int) and shape[2] == shape[3]:
            return int(shape[2])
        return None


def _file(path: str, spec: str) -> tuple[nn.Module, str, int | None]:
    """(module, weights id, the file's fixed input size or None)."""
    weights_id = sha256_file(path)[:16]
    if path.lower().endswith(".onnx"):
        _optional("onnxruntime", spec)
        try:
            module = OnnxFeatures(Path(path).read_bytes())
        except Exception as exc:
            raise BackboneError(
                f"backbone {spec!r}: onnxruntime cannot load {path} ({exc})"
            ) from exc
        return module, weights_id, module.input_size()
    try:
        module = torch.jit.load(path, map_location="cpu")
    except Exception as exc:
        raise BackboneError(
            f"backbone {spec!r}: {path} is not a TorchScript file ({exc}); save the model with "
            "torch.jit.save(torch.jit.script(model), path) or torch.jit.trace, or export ONNX"
        ) from exc
    return module, weights_id, None


def _call_factory(module_name: str, function: str, spec: str) -> Any:
    if module_name.endswith(".py"):
        location = importlib.util.spec_from_file_location(Path(module_name).stem, module_name)
        if location is None or location.loader is None:
            raise ConfigError(f"backbone {spec!r}: cannot import {module_name}")
        module = importlib.util.module_from_spec(location)
        location.loader.exec_module(module)
    else:
        with _cwd_importable():
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise ConfigError(
                    f"backbone {spec!r}: cannot import module {module_name!r} ({exc}); put it "
                    "on PYTHONPATH or in the current folder"
                ) from exc
    factory = getattr(module, function, None)
    if not callable(factory):
        raise ConfigError(f"backbone {spec!r}: {module_name} has no function {function!r}")
    made = factory()
    return made, getattr(made, "preprocessing", None) or getattr(factory, "preprocessing", None)


def build_spec(spec: str) -> Backbone:
    """The backbone a spec names, built (see the module's docstring). ConfigError for a spec
    that is wrong, BackboneError for one that cannot be built here."""
    problem = check_spec(spec)
    if problem is not None:
        raise ConfigError(f"backbone {spec!r} {problem}")
    options = _options(spec)
    library = _library(spec)
    preprocessing: Preprocessing | None = None
    fixed_size: int | None = None
    if library is not None:
        build: Callable[[str, str], tuple[Extractor, Preprocessing]] = (
            _timm if library[0] == "timm" else _torchvision
        )
        extractor, preprocessing = build(library[1], spec)
    elif (path := spec_file(spec)) is not None:
        module, weights_id, fixed_size = _file(path, spec)
        extractor = Extractor(feature_module=module, weights_id=weights_id)
    else:
        module_name, function = _factory(spec)  # type: ignore[misc]
        made, preprocessing = _call_factory(module_name, function, spec)
        if isinstance(made, nn.Module):
            made = Extractor(feature_module=made)
        if not isinstance(made, Extractor):
            raise BackboneError(
                f"backbone {spec!r}: {function}() returned {type(made).__name__}, not a torch "
                "module or an evoprune.backbones.Extractor"
            )
        extractor = made
    base = preprocessing or IMAGENET
    if not isinstance(base, Preprocessing):
        raise ConfigError(f"backbone {spec!r}: its preprocessing is not a Preprocessing")
    fields = _preprocessing_fields(base)
    if fixed_size is not None:
        fields["image_size"] = fixed_size
    preprocessing = Preprocessing(**{**fields, **options})
    feature_module, feature_dim = _probe(
        freeze(extractor.feature_module), preprocessing.image_size, spec
    )
    if feature_module is not extractor.feature_module and isinstance(
        extractor.feature_module, OnnxFeatures
    ):
        raise BackboneError(
            f"backbone {spec!r} gives feature maps; export the ONNX model with the spatial "
            "average included, so that it gives (N, D) features"
        )
    return Backbone(
        name=str(spec).strip(),
        feature_dim=feature_dim,
        preprocessing=preprocessing,
        weights_id=extractor.weights_id or state_dict_id(feature_module),
        feature_module=feature_module,
        classifier_module=extractor.classifier_module,
        forward_batch=extractor.forward_batch,
    )


def spec_digest(spec: str) -> str:
    """A short digest of a spec, for folder names."""
    return hashlib.sha256(str(spec).encode()).hexdigest()[:8]
