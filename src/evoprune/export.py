"""The deployable model: frozen backbone + feature selection + compact head + softmax, one file.

The exported model maps a preprocessed image batch (N, 3, H, W) to class probabilities. Pruned
units are physically absent (the head is the :class:`CompactHead` of the run, not a masked dense
one). What the model needs around it (class names, how to preprocess images) is written beside it
as ``FILE.json`` and, for ONNX, also inside it as ``metadata_props``.

Before anything is written the head is checked against ``result.json`` (the evolved head must be
the one the best mask describes, the reference head the not-pruned one), and nothing written
names a path of the user's machine: the metadata holds the run folder's name only and the
TorchScript archive is stored without its debug data (source file paths and line numbers).
"""

from __future__ import annotations

import io
import json
import logging
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from evoprune import __version__
from evoprune.encodings import EdgesSpec, encoding_spec, make_encoding
from evoprune.errors import ConfigError, EvoPruneError
from evoprune.io import atomic_write, atomic_write_json, check_file_target, claim_file
from evoprune.model.head import CompactHead, nonzero_params
from evoprune.runs.store import (
    HEAD_FILE,
    REFERENCE_HEAD_FILE,
    RESULT_FILE,
    RunFolder,
    open_run,
)

log = logging.getLogger(__name__)

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
ONNX_OPSET = 17
#: Name of the metadata JSON stored inside TorchScript files (``_extra_files``).
TORCHSCRIPT_METADATA = "evoprune.json"
#: ONNX metadata_props key that holds the whole metadata as JSON.
ONNX_METADATA_KEY = "evoprune"
#: Bytes an ONNX sparse initializer spends per kept weight: its float32 value and an int64
#: index (the format allows no smaller index), against 4 per weight stored dense.
SPARSE_BYTES_PER_WEIGHT = 12


class ImageClassifier(nn.Module):
    """(N, 3, H, W) preprocessed images -> (N, C) class probabilities."""

    def __init__(self, features: nn.Module, head: CompactHead):
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.head(self.features(images)), dim=1)


class HeadClassifier(nn.Module):
    """(N, feature_dim) backbone features -> (N, C) class probabilities (the head alone)."""

    def __init__(self, head: CompactHead):
        super().__init__()
        self.head = head

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.head(features), dim=1)


@dataclass
class ExportedModel:
    path: Path
    metadata_path: Path
    metadata: dict


def default_export_path(
    run_dir: str | Path,
    format: str = "onnx",
    reference: bool = False,
    head_only: bool = False,
    rank: int | None = None,
) -> Path:
    """``RUN_DIR/[reference_]model[_rankN].onnx`` (``head_model...`` for the head alone;
    ``.pt``)."""
    stem = ("reference_" if reference else "") + ("head_model" if head_only else "model")
    stem += "" if rank is None else f"_rank{rank}"
    return Path(run_dir) / (stem + _suffix(format))


def _suffix(format: str) -> str:
    if format not in FORMATS:
        raise ConfigError(f"format={format!r} is unknown; choose one of {', '.join(FORMATS)}")
    return FORMATS[format]


def _expected_sizes(
    run: RunFolder, reference: bool, rank: int | None = None
) -> tuple[tuple[int, ...], np.ndarray]:
    """(layer sizes, selected features) of the evolved or the not-pruned head (or front member
    ``rank``) per result.json."""
    r = run.result
    encoding = make_encoding(r.encoding, r.feature_dim, r.hidden_size, r.n_classes)
    chromosome = encoding.full() if reference else run.mask(rank)
    try:
        masks = encoding.decode(chromosome)
    except EvoPruneError as exc:
        raise EvoPruneError(
            f"{run.path / RESULT_FILE}: best_mask does not fit encoding "
            f"{r.encoding!r}: {exc}; rerun 'evoprune run' to rewrite the run "
            "folder"
        ) from None
    return masks.sizes + (len(r.classes),), np.flatnonzero(masks.features)


def _matches(head: CompactHead, expected: tuple[tuple[int, ...], np.ndarray]) -> bool:
    sizes, features = expected
    return head.sizes == sizes and np.array_equal(head.feature_index.numpy(), features)


def checked_head(run: RunFolder, reference: bool = False, rank: int | None = None) -> CompactHead:
    """The run's evolved head (or with ``reference=True`` its not-pruned head), checked.

    The evolved head must have the layer sizes and selected features that result.json's best
    mask decodes to, the reference head those of the full mask; otherwise (for instance the two
    head files swapped) a pruned model would be exported labelled as not pruned, or the reverse.
    """
    head = run.head(reference=reference, rank=rank)
    expected = _expected_sizes(run, reference, rank)
    if _matches(head, expected):
        return head
    path = run.head_path(reference, rank)
    what = (
        "the not-pruned (reference) head"
        if reference
        else ("the evolved head that result.json's best mask describes")
    )
    message = (
        f"{path} does not hold {what}: its layer sizes are "
        f"{'-'.join(map(str, head.sizes))}, expected "
        f"{'-'.join(map(str, expected[0]))}"
    )
    try:
        swapped = _matches(head, _expected_sizes(run, not reference))
    except EvoPruneError:  # no usable best mask: nothing to compare with
        swapped = False
    if swapped:
        message += (
            f"; it holds the {'evolved' if reference else 'not-pruned'} head, so "
            f"{HEAD_FILE} and {REFERENCE_HEAD_FILE} look swapped"
        )
    raise EvoPruneError(
        message + f". The run folder {run.path} is inconsistent: rerun 'evoprune run' to rewrite it"
    )


def check_output_path(path: str | Path, option: str = "--out", example: str = "model.onnx") -> Path:
    """``path`` if a file can be created there: not a folder, no regular file among its parents.

    Checked before the (slow) work, so a mistyped ``--out`` fails at once. Permissions are found
    out when writing (see :func:`writing_to`): ``os.access`` says yes to root on any folder.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; give a file name such as {path / example}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(
                    f"{option} {path} cannot be written: {parent} is a file, not a "
                    f"folder; give {option} a path inside a folder"
                )
            break
    return path


@contextmanager
def writing_to(path: str | Path, option: str = "--out") -> Iterator[None]:
    """Turn an OSError while writing ``path`` (read-only folder, disk full...) into one message."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise EvoPruneError(
            f"cannot write {path}: {reason}; give {option} a file in a folder you can write to"
        ) from None


def build_model(
    run: RunFolder, reference: bool = False, head_only: bool = False, rank: int | None = None
) -> tuple[HeadClassifier | ImageClassifier, dict]:
    """The run's deployable torch module (eval mode) and the metadata that goes with it
    (``rank``: front member ``rank`` instead of the shipped head)."""
    from .backbones import get_backbone

    head = checked_head(run, reference=reference, rank=rank)
    backbone = get_backbone(run.backbone)
    module = (
        HeadClassifier(head) if head_only else ImageClassifier(backbone.feature_extractor(), head)
    )
    metadata = model_metadata(run, backbone, head, reference, head_only)
    if rank is not None:
        member = run.front_member(rank)
        metadata["head"] = f"front rank {rank}" + (" (shipped)" if member.get("selected") else "")
        metadata["test_accuracy"] = member.get("test_accuracy")
    return module.eval(), metadata


def model_metadata(
    run: RunFolder, backbone, head: CompactHead, reference: bool, head_only: bool
) -> dict:
    """What a user of the exported file needs: its input, classes and preprocessing."""
    r = run.result
    size = backbone.image_size
    if head_only:
        inputs = {
            "name": "features",
            "shape": ["batch", backbone.feature_dim],
            "description": f"pooled {backbone.name} features (float32)",
        }
    else:
        inputs = {
            "name": "images",
            "shape": ["batch", 3, size, size],
            "description": "preprocessed RGB images (float32), see preprocessing",
        }
    return {
        "format": "evoprune-model-v1",
        "input": inputs,
        "output": {
            "name": "probabilities",
            "shape": ["batch", len(r["classes"])],
            "description": "softmax class probabilities, in the order of classes",
        },
        "classes": [str(c) for c in r["classes"]],
        "preprocessing": backbone.preprocessing.metadata(),
        "backbone": backbone.name,
        "head": "not pruned" if reference else "pruned",
        "head_sizes": list(head.sizes),
        "head_params": nonzero_params(head),
        "head_macs": head.n_macs(),
        "encoding": r["encoding"],
        "dataset": r.get("dataset"),
        "test_accuracy": r.get("reference_test_accuracy" if reference else "test_accuracy"),
        "leaked_test_set": bool(r.get("leaked_test_set", False)),
        # The folder's name, not its path: exports are shared beyond the user's machine.
        "run": run.path.resolve().name,
        "evoprune_version": __version__,
    }


def export_model(
    run_dir: str | Path,
    out: str | Path | None = None,
    format: str = "onnx",
    reference: bool = False,
    head_only: bool = False,
    rank: int | None = None,
) -> ExportedModel:
    """Write the run's model as ONNX or TorchScript, with its metadata as ``out + '.json'``.

    ``reference=True`` exports the not-pruned head instead of the evolved one, ``rank`` front
    member ``rank`` of a multi-objective run; ``head_only=True`` leaves the backbone out
    (input: features instead of images).
    """
    suffix = _suffix(format)
    run = open_run(run_dir)
    if rank is not None:
        run.head_path(reference, rank)  # a bad --rank is one message before any work
    out = (
        Path(out)
        if out is not None
        else default_export_path(run.path, format, reference, head_only, rank)
    )
    check_output_path(out, example="model" + suffix)
    meta_out = check_output_path(Path(str(out) + ".json"), example=out.name + ".json")
    for target in (out, meta_out):
        check_file_target(target, "export", "--out", run.data_roots())
    module, metadata = build_model(run, reference, head_only, rank)
    sparse = _pruned_connections(run, module.head, format, reference, metadata)
    module, example, backbone_onnx = _traced_form(run, module, metadata, format, head_only)
    with claim_file([out, meta_out], "export"):
        with writing_to(out):
            if format == "onnx":
                _write_onnx(module, example, out, metadata, sparse, backbone_onnx)
            else:
                _write_torchscript(module, example, out, metadata)
        try:
            with writing_to(meta_out):
                meta_path = atomic_write_json(meta_out, metadata)
        except EvoPruneError:
            out.unlink(missing_ok=True)  # no model without the metadata that says how to feed it
            raise
    log.info(
        "exported %s (%s head, %s) to %s",
        format,
        metadata["head"],
        "head only" if head_only else "with backbone",
        out,
    )
    return ExportedModel(path=out, metadata_path=meta_path, metadata=metadata)


def _traced_form(run, module, metadata: dict, format: str, head_only: bool):
    """(module to trace, example input, the backbone's ONNX bytes or None): a backbone that is
    an ONNX file has no torch graph to trace, so only its head is traced and the graphs are
    joined afterwards."""
    if head_only:
        example = torch.zeros(2, run.result.get("feature_dim", module.head.n_inputs))
    else:
        example = torch.zeros(2, 3, *metadata["preprocessing"]["image_size"])
    backbone_onnx = None if head_only else getattr(module.features, "onnx_model_bytes", None)
    if backbone_onnx is not None:
        if format != "onnx":
            raise ConfigError(
                f"{run.path}: the run's backbone is an ONNX file, which has no TorchScript "
                "form; export --format onnx (the backbone's graph joined to the head's), or "
                "--head-only"
            )
        module = HeadClassifier(module.head).eval()
        example = torch.zeros(2, module.head.n_inputs)
    return module, example, backbone_onnx


def _pruned_connections(
    run: RunFolder, head: CompactHead, format: str, reference: bool, metadata: dict
) -> list[np.ndarray]:
    """For a head of an ``edges`` encoding: the weight matrices to store sparse (ONNX, and only
    where that makes the file smaller), with ``metadata["connections"]`` saying how the pruned
    layer is stored; a warning when the file is not smaller than a dense one."""
    spec = encoding_spec(run.result.encoding)
    if reference or not isinstance(spec, EdgesSpec):
        return []
    weight = head.linears[spec.index].weight.detach().numpy()
    kept, total = int(np.count_nonzero(weight)), int(weight.size)
    sparse = format == "onnx" and kept * SPARSE_BYTES_PER_WEIGHT < total * 4
    if sparse:
        note = (
            f"stored as an ONNX sparse initializer ({SPARSE_BYTES_PER_WEIGHT} bytes per kept "
            "weight)"
        )
    elif format != "onnx":
        note = f"{format} stores the layer dense, zeros included: the file is not smaller"
    else:
        note = (
            f"stored dense, zeros included: the file is not smaller ({kept / total:.0%} of the "
            f"weights kept; a sparse initializer pays off below {4 / SPARSE_BYTES_PER_WEIGHT:.0%})"
        )
    metadata["connections"] = {
        "layer": spec.layer,
        "weights_kept": kept,
        "weights_total": total,
        "storage": "sparse" if sparse else "dense",
        "note": note,
    }
    if not sparse:
        log.warning("%s: the pruned %s layer is %s", run.path.name, spec.layer, note)
    return [weight] if sparse else []


def _sparsify(model, weight: np.ndarray) -> None:
    """Move the initializer that holds ``weight`` (as exported, or transposed) into the graph's
    sparse initializers: the kept values and their int64 positions in the flattened matrix."""
    from onnx import helper, numpy_helper

    graph = model.graph
    for k, init in enumerate(graph.initializer):
        values = numpy_helper.to_array(init)
        if values.shape not in (weight.shape, weight.T.shape) or values.dtype != weight.dtype:
            continue
        if not (np.array_equal(values, weight) or np.array_equal(values, weight.T)):
            continue
        flat = values.ravel()
        index = np.flatnonzero(flat)
        sparse = helper.make_sparse_tensor(
            numpy_helper.from_array(flat[index], name=init.name),
            numpy_helper.from_array(index.astype(np.int64), name=init.name + "_indices"),
            list(values.shape),
        )
        del graph.initializer[k]
        graph.sparse_initializer.append(sparse)
        return
    raise EvoPruneError(
        "the exported ONNX graph holds no initializer equal to the pruned weight matrix; "
        "export with --format torchscript, or report this as a bug"
    )


def _write_onnx(
    module: nn.Module,
    example: torch.Tensor,
    out: Path,
    metadata: dict,
    sparse: Sequence[np.ndarray] = (),
    backbone_onnx: bytes | None = None,
) -> None:
    """``module`` as ONNX with ``metadata`` inside; with ``backbone_onnx`` (a backbone that is
    an ONNX file), ``module`` is the head alone and the backbone's graph is joined before it."""
    try:
        import onnx
    except ImportError:
        raise ConfigError(
            "--format onnx needs the onnx package, a dependency of evoprune that is missing "
            "here: pip install onnx (or reinstall evoprune), or use --format torchscript"
        ) from None

    in_name = "features" if backbone_onnx is not None else metadata["input"]["name"]

    def write(tmp: Path) -> None:
        _torch_onnx_export(module, example, tmp, in_name)
        model = onnx.load(str(tmp))
        if backbone_onnx is not None:
            model = _joined(onnx.load_from_string(backbone_onnx), model, metadata["input"]["name"])
        for weight in sparse:
            _sparsify(model, weight)
        del model.metadata_props[:]
        # One key per item for people reading the file; "evoprune" holds all of it as JSON.
        items = list(metadata.items()) + [(ONNX_METADATA_KEY, metadata)]
        for key, value in items:
            entry = model.metadata_props.add()
            entry.key = key
            entry.value = value if isinstance(value, str) else json.dumps(value, allow_nan=False)
        model.producer_name = "evoprune"
        model.producer_version = __version__
        onnx.save(model, str(tmp))

    atomic_write(out, write)


def _torch_onnx_export(module: nn.Module, example: torch.Tensor, tmp: Path, in_name: str) -> None:
    """torch's ONNX export of ``module`` (batch axis dynamic), with its known warnings quiet."""
    with warnings.catch_warnings():
        # The legacy (TorchScript-based) exporter is chosen on purpose: the dynamo exporter
        # needs onnxscript, which evoprune does not depend on.
        warnings.filterwarnings(
            "ignore",
            message=".*legacy TorchScript-based ONNX export",
            category=DeprecationWarning,
        )
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        # The backbone's static padding gives Slice ops with step -1 that the exporter does
        # not fold; onnxruntime folds them when it loads the model.
        warnings.filterwarnings(
            "ignore", message="Constant folding - Only steps=1", category=UserWarning
        )
        torch.onnx.export(
            module,
            (example,),
            str(tmp),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=[in_name],
            output_names=["probabilities"],
            dynamic_axes={in_name: {0: "batch"}, "probabilities": {0: "batch"}},
        )


def _joined(backbone, head, in_name: str):
    """One ONNX model: the backbone's graph (its output) -> the head's graph (its input
    ``features``), with the backbone's input renamed ``in_name``."""
    import onnx
    from onnx import compose, version_converter

    def opset(model) -> int:
        return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))

    if opset(backbone) != opset(head):
        head = version_converter.convert_version(head, opset(backbone))
    backbone.ir_version = head.ir_version = max(backbone.ir_version, head.ir_version)
    backbone = compose.add_prefix(backbone, "backbone/")
    joined = compose.merge_models(
        backbone, head, io_map=[(backbone.graph.output[0].name, "features")]
    )
    old = joined.graph.input[0].name
    for node in joined.graph.node:
        node.input[:] = [in_name if name == old else name for name in node.input]
    joined.graph.input[0].name = in_name
    onnx.checker.check_model(joined)
    return joined


def _write_torchscript(module: nn.Module, example: torch.Tensor, out: Path, metadata: dict) -> None:
    # Traced, not scripted: CompactHead has Python-only helpers that TorchScript cannot compile,
    # and tracing records the same operations for any batch size. torch.jit is deprecated in
    # torch 2.13 but is still the single-file format that loads without the defining code.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        traced = torch.jit.trace(module, (example,), check_trace=False)
    extra = {TORCHSCRIPT_METADATA: json.dumps(metadata, indent=2, allow_nan=False)}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        torch.jit.save(traced, buffer, _extra_files=extra)

    atomic_write(out, lambda tmp: _strip_debug_data(buffer.getvalue(), tmp))


def _strip_debug_data(archive: bytes, out: Path) -> None:
    """Copy a TorchScript zip archive to ``out`` without its ``*.debug_pkl`` records.

    Those hold the source ranges of every traced operation: absolute paths of the user's
    site-packages and source files (thousands of them) and their line numbers. They serve only
    error messages; ``torch.jit.load`` runs the model the same without them.
    """
    with (
        zipfile.ZipFile(io.BytesIO(archive)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst,
    ):
        for info in src.infolist():
            if not info.filename.endswith(".debug_pkl"):
                dst.writestr(info, src.read(info))


def read_onnx_metadata(path: str | Path) -> dict:
    """The evoprune metadata stored inside an exported ONNX file (values JSON-decoded)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    props = {prop.key: prop.value for prop in model.metadata_props}
    if ONNX_METADATA_KEY not in props:
        raise ConfigError(f"{path} holds no evoprune metadata; was it exported by evoprune?")
    return json.loads(props[ONNX_METADATA_KEY])


class EnsembleClassifier(nn.Module):
    """(N, 3, H, W) preprocessed images -> (N, C) probabilities averaged over several compact
    heads that share one backbone pass (a soft-vote ensemble of front heads)."""

    def __init__(self, features: nn.Module, heads: list[CompactHead]):
        super().__init__()
        self.features = features
        self.heads = nn.ModuleList(heads)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = self.features(images)
        return torch.stack([torch.softmax(h(pooled), dim=1) for h in self.heads]).mean(dim=0)


def check_ensemble_export(run: RunFolder, out: str | Path) -> tuple[Path, Path]:
    """The ensemble's ONNX file and its metadata file, checked before any work."""
    out = check_output_path(out, option="--export", example="ensemble.onnx")
    meta_out = check_output_path(Path(str(out) + ".json"), option="--export")
    for target in (out, meta_out):
        check_file_target(target, "ensemble", "--export", run.data_roots())
    return out, meta_out


def export_ensemble(
    run_dir: str | Path, members: list[int], out: str | Path, vote: str = "soft"
) -> Path:
    """Write the ensemble of front heads ``members`` (their ranks in pareto.csv) of a
    multi-objective run as one ONNX model, with its metadata as ``out + '.json'``."""
    from evoprune.backbones import get_backbone
    from evoprune.runs.store import front_head_path, load_head

    if vote != "soft":
        raise ConfigError(
            "the exported ensemble averages the heads' probabilities (a soft "
            "vote); use --vote soft with --export"
        )
    run = open_run(run_dir)
    front = {m["rank"]: m for m in run.result.front or []}
    missing = [k for k in members if k not in front]
    if missing or not members:
        raise ConfigError(
            f"{run.path} has no front heads {missing or members}; ensembles come "
            "from a multi-objective run's front (pareto.csv)"
        )
    out, meta_out = check_ensemble_export(run, out)
    heads = [load_head(front_head_path(run.path, k), run.result.feature_dim) for k in members]
    backbone = get_backbone(run.backbone)
    module = EnsembleClassifier(backbone.feature_extractor(), heads).eval()
    metadata = model_metadata(run, backbone, heads[0], reference=False, head_only=False)
    metadata.update(
        head=f"ensemble of {len(heads)} front heads (mean probability)",
        members=list(members),
        head_sizes=[list(h.sizes) for h in heads],
        head_params=sum(h.n_params() for h in heads),
        head_macs=sum(h.n_macs() for h in heads),
        test_accuracy=None,
    )
    example = torch.zeros(2, 3, *metadata["preprocessing"]["image_size"])
    with claim_file([out, meta_out], "ensemble", "--export"):
        with writing_to(out, "--export"):
            _write_onnx(module, example, out, metadata)
        try:
            with writing_to(meta_out, "--export"):
                atomic_write_json(meta_out, metadata)
        except EvoPruneError:
            out.unlink(missing_ok=True)
            raise
    log.info("exported an ensemble of %d front heads to %s", len(heads), out)
    return out
