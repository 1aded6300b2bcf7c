"""Export of a model's streaming step with its state as explicit tensors (ONNX, torch.export).

A streaming model (:class:`~vps_d2.modeling.meta_arch.VideoMetaArch`) keeps Python state
between frames (a deque of features, memory banks, a frame counter), which a plain trace
would bake in as constants. Each method that can be exported registers, in
:data:`STREAMING_STEP_REGISTRY` under its meta-architecture's name, a
:class:`StreamingStep`: a pure function of one step,

``forward(image, *state, *frame_inputs) -> (*outputs, *next_state)``

* ``image``: uint8 (T, 3, H, W) in INPUT.FORMAT channel order, T = ``frames_per_step``
  (1 for online models, the clip length for clip models), H and W dynamic: the graph
  normalises and resizes to INPUT.SIZE_TEST itself, as the eager model does;
* ``state``: fixed-size tensors (:meth:`StreamingStep.state_specs`), zeros at the start of a
  video; which slots hold something is told by validity masks that are themselves state
  (e.g. ``valid`` (N,) float 0/1), so "empty memory" and "full memory" are the same graph;
* ``frame_inputs``: per-frame tensors the graph cannot make itself (Diff-VPS's seeded noise),
  computed outside by a function registered in :data:`FRAME_INPUT_REGISTRY`;
* ``outputs``: ``prob`` float (T, H, W) in [0, 1] first, then the model's optional outputs
  (``class_scores`` (T, C), ``box`` (T, 4), ``box_score`` (T,)).

:func:`export_streaming_step` writes the step as ONNX (opset :data:`EXPORT_OPSET`, the
``torch.onnx`` dynamo exporter) or as a ``torch.export`` program (``.pt2``), with a JSON
description (:meth:`StreamingStep.metadata`: input/output names, state shapes, frame
inputs, frames per step) in the ONNX model's ``metadata_props`` / the program's extra files,
under :data:`METADATA_KEY`. :class:`StepStreamer` streams a video through any
implementation of the step (the eager module, an ONNX Runtime session), so the state logic
is written once. Ops without an ONNX mapping are replaced by pure-torch equivalents in
:mod:`vps_d2.modeling.layers` (``deform_conv2d``) or refused by name (:class:`ExportError`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vps_d2.utils.file_io import atomic_write_bytes, make_temp_path
from vps_d2.utils.registry import Registry

__all__ = [
    "EXPORT_FORMATS",
    "EXPORT_OPSET",
    "FRAME_INPUT_REGISTRY",
    "METADATA_KEY",
    "STREAMING_STEP_REGISTRY",
    "ExportError",
    "StepStreamer",
    "StreamingStep",
    "TensorSpec",
    "build_streaming_step",
    "export_streaming_step",
    "read_metadata",
]

logger = logging.getLogger(__name__)

#: The ONNX opset written (the lowest the ``torch.onnx`` dynamo exporter targets natively).
EXPORT_OPSET = 18
#: ``tools/export.py --format`` values.
EXPORT_FORMATS = ("onnx", "torch-export")
#: Key of the JSON description in the ONNX metadata_props / the torch.export extra files.
METADATA_KEY = "vps_d2_export"
#: Version of that description (bumped when its meaning changes).
METADATA_VERSION = 1

#: Meta-architecture name -> ``fn(model) -> StreamingStep`` (registered by each method).
STREAMING_STEP_REGISTRY = Registry("STREAMING_STEP")
STREAMING_STEP_REGISTRY.__doc__ = "Meta-architecture name -> fn(model) -> StreamingStep."
#: Frame-input kind -> ``fn(params: dict, frame: dict, index: int) -> Tensor`` (one frame's
#: tensor, without the leading T axis).
FRAME_INPUT_REGISTRY = Registry("FRAME_INPUT")
FRAME_INPUT_REGISTRY.__doc__ = "Frame-input kind -> fn(params, frame, index) -> Tensor."


class ExportError(RuntimeError):
    """A model that cannot be exported (the message names the model or the op and why)."""


@dataclass(frozen=True)
class TensorSpec:
    """One explicit input of the step: name, shape (fixed), dtype and, for a frame input,
    its ``kind`` in :data:`FRAME_INPUT_REGISTRY` and the ``params`` given to it."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    kind: str = ""
    params: dict = field(default_factory=dict)

    def zeros(self) -> np.ndarray:
        return np.zeros(self.shape, dtype=self.dtype)


class StreamingStep(nn.Module):
    """One streaming step of ``model`` as a pure function (see the module docstring).

    Subclasses implement ``forward(image, *inputs)`` (that signature: the export gives
    the image's dims by position) and declare :meth:`state_specs` (the state in the
    order of ``forward``'s arguments; the next state is returned in the same order, after the
    outputs), :meth:`frame_input_specs` and :attr:`output_names`.
    """

    #: Frames per call (clip models: the clip length).
    frames_per_step: int = 1
    #: Names of the outputs before the next state ("prob" first).
    output_names: tuple[str, ...] = ("prob",)

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()
        self.eval()

    # ------------------------------------------------------------------ declarations
    def state_specs(self) -> list[TensorSpec]:
        """The state tensors (zeros at the start of a video)."""
        return []

    def frame_input_specs(self) -> list[TensorSpec]:
        """Per-frame tensors computed outside the graph (shape without the T axis)."""
        return []

    @property
    def input_names(self) -> list[str]:
        return (
            ["image"]
            + [s.name for s in self.state_specs()]
            + [s.name for s in self.frame_input_specs()]
        )

    @property
    def all_output_names(self) -> list[str]:
        return list(self.output_names) + [f"next_{s.name}" for s in self.state_specs()]

    def metadata(self, **extra: Any) -> dict:
        """The JSON description stored with the exported file."""
        return {
            "version": METADATA_VERSION,
            "meta_architecture": type(self.model).__name__,
            "frames_per_step": int(self.frames_per_step),
            "inputs": self.input_names,
            "outputs": list(self.output_names),
            "states": [asdict(s) for s in self.state_specs()],
            "frame_inputs": [asdict(s) for s in self.frame_input_specs()],
            "test_size": list(self.model.test_size),
            **extra,
        }

    def example_inputs(self, size: Sequence[int] | None = None) -> tuple[torch.Tensor, ...]:
        """Inputs of one call at ``size`` (default INPUT.SIZE_TEST): a random image, the
        initial state, frame inputs of zeros."""
        h, w = size or self.model.test_size
        g = torch.Generator().manual_seed(0)
        image = torch.randint(0, 256, (self.frames_per_step, 3, h, w), generator=g)
        states = [torch.from_numpy(s.zeros()) for s in self.state_specs()]
        extras = [
            torch.zeros((self.frames_per_step, *s.shape), dtype=getattr(torch, s.dtype))
            for s in self.frame_input_specs()
        ]
        return (image.to(torch.uint8), *states, *extras)

    # ------------------------------------------------------------------ helpers
    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 (T, 3, H, W) -> normalised float (T, 3, *test_size). Always resizes (a
        bilinear resize to the same size is the identity), so H and W stay symbolic."""
        m = self.model
        x = (image.float() - m.pixel_mean) / m.pixel_std
        return F.interpolate(x, size=m.test_size, mode="bilinear", align_corners=False)

    @staticmethod
    def to_probs(logits: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Logits (T, 1, h, w) -> probabilities (T, H, W) at the image's size."""
        logits = F.interpolate(
            logits.float(), size=image.shape[-2:], mode="bilinear", align_corners=False
        )
        return logits.sigmoid()[:, 0]


def build_streaming_step(model: nn.Module) -> StreamingStep:
    """The registered :class:`StreamingStep` of ``model`` (ExportError when none is)."""
    name = type(model).__name__
    if name not in STREAMING_STEP_REGISTRY:
        raise ExportError(
            f"{name} has no exportable streaming step (registered: "
            f"{sorted(k for k, _ in STREAMING_STEP_REGISTRY)}); a method registers one in "
            "vps_d2.modeling.export.STREAMING_STEP_REGISTRY (its export.py)"
        )
    return STREAMING_STEP_REGISTRY.get(name)(model)


# ---------------------------------------------------------------------- export
def _dynamic_shapes(step: StreamingStep, dynamic_size: bool) -> tuple | None:
    """``forward(image, *inputs)``'s dynamic shapes: the image's height and width."""
    if not dynamic_size:
        return None
    h = torch.export.Dim("height", min=16, max=8192)
    w = torch.export.Dim("width", min=16, max=8192)
    rest = tuple(None for _ in step.input_names[1:])
    return ({2: h, 3: w}, rest) if rest else ({2: h, 3: w},)


def _unsupported_op(err: BaseException) -> str | None:
    """The op an exporter error names (``namespace::op``), if any."""
    text = str(err)
    for token in text.replace("'", " ").replace('"', " ").split():
        if "::" in token and not token.startswith("torch.") and len(token) < 80:
            return token.strip(".,:()[]")
    return None


def _refuse(step: StreamingStep, fmt: str, err: BaseException) -> ExportError:
    op = _unsupported_op(err)
    what = f"op {op}" if op else "the graph"
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    summary = [ln for ln in lines if ln.startswith("<class ")]
    first = (summary or lines or [type(err).__name__])[0]
    return ExportError(
        f"{type(step.model).__name__}: {fmt} export failed on {what} ({first[:300]}); "
        "give the op a pure-torch replacement in vps_d2.modeling.layers or export another "
        "configuration"
    )


def export_streaming_step(
    model: nn.Module,
    path: str,
    fmt: str = "onnx",
    *,
    input_format: str = "RGB",
    dynamic_size: bool = True,
    opset: int = EXPORT_OPSET,
) -> dict:
    """Export ``model``'s streaming step to ``path`` (written atomically); returns the
    metadata stored with it.

    Args:
        model: an eval-mode meta-architecture with a registered step (weights loaded).
        fmt: "onnx" or "torch-export" (:data:`EXPORT_FORMATS`).
        input_format: INPUT.FORMAT ("RGB"/"BGR"), recorded for the runtime.
        dynamic_size: the image's height and width symbolic (else fixed at SIZE_TEST).
    Raises:
        ExportError: no registered step, or an op the exporter cannot map (named).
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export format must be one of {EXPORT_FORMATS}, got {fmt!r}")
    step = build_streaming_step(model).eval()
    meta = json.loads(json.dumps(step.metadata(input_format=input_format, format=fmt, opset=opset)))
    args = step.example_inputs()
    dyn = _dynamic_shapes(step, dynamic_size)
    text = json.dumps(meta)
    tmp = make_temp_path(path, keep_ext=True)
    try:
        with torch.no_grad():
            if fmt == "onnx":
                _export_onnx(step, args, dyn, tmp, opset, text)
            else:
                _export_program(step, args, dyn, tmp, text)
        with open(tmp, "rb") as f:
            data = f.read()
    except ExportError:
        raise
    except ImportError as e:
        raise ExportError(
            f"{fmt} export needs onnx, onnxscript and onnxruntime (pip install "
            f"'vps_d2[deploy]'): {e}"
        ) from e
    except Exception as e:  # the exporters raise many types
        raise _refuse(step, fmt, e) from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
        for extra in (tmp + ".data",):
            if os.path.exists(extra):
                os.remove(extra)
    atomic_write_bytes(path, data)
    logger.info(
        "Exported %s (%s, %.1f MB) to %s", meta["meta_architecture"], fmt, len(data) / 1e6, path
    )
    return meta


def _export_onnx(step, args, dyn, path: str, opset: int, text: str) -> None:
    import onnx  # optional dependency (the "deploy" extra)

    exported = torch.export.export(step, args, dynamic_shapes=dyn, strict=False)
    program = torch.onnx.export(
        exported,
        args,
        dynamo=True,
        opset_version=opset,
        input_names=step.input_names,
        output_names=step.all_output_names,
        # onnxscript's graph optimiser (0.7.2) dropped a node of SALI's graph, leaving an
        # invalid model; ONNX Runtime optimises the graph itself when it loads it.
        optimize=False,
        verbose=False,
    )
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, text
    onnx.save_model(proto, path)


def _export_program(step, args, dyn, path: str, text: str) -> None:
    program = torch.export.export(step, args, dynamic_shapes=dyn, strict=False)
    torch.export.save(program, path, extra_files={METADATA_KEY + ".json": text})


def read_metadata(path: str) -> dict:
    """The JSON description of an exported file (ONNX or torch.export ``.pt2``)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"exported model not found: {path!r}")
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):  # a torch.export zip archive
        extra = {METADATA_KEY + ".json": ""}
        torch.export.load(path, extra_files=extra)
        text = extra[METADATA_KEY + ".json"]
    else:
        import onnx

        try:
            proto = onnx.load_model(path, load_external_data=False)
        except Exception as e:
            raise ValueError(f"{path}: not an ONNX model ({type(e).__name__})") from e
        text = next((p.value for p in proto.metadata_props if p.key == METADATA_KEY), "")
    if not text:
        raise ValueError(f"{path}: no {METADATA_KEY!r} description; export it with tools/export.py")
    meta = json.loads(text)
    if int(meta.get("version", 0)) != METADATA_VERSION:
        raise ValueError(
            f"{path}: export description version {meta.get('version')}, this vps_d2 reads "
            f"{METADATA_VERSION}; export it again with this version's tools/export.py"
        )
    return meta


# ---------------------------------------------------------------------- streaming
class StepStreamer:
    """Streams a video through one implementation of an exported step.

    Args:
        run: ``fn(inputs: dict[name, np.ndarray]) -> list[np.ndarray]`` in the order of
            ``meta["outputs"]`` then the next state (an ONNX Runtime session's ``run``, or
            :meth:`from_module` for the eager step).
        meta: the step's metadata (:meth:`StreamingStep.metadata` / :func:`read_metadata`).

    :meth:`stream` takes test frame dicts (``"image"`` uint8 (3, H, W), optional
    ``"video_id"``, ``"frame_index"``) and yields one output dict per frame (``"prob"``
    (H, W) torch float32, plus the model's optional outputs), like ``model.stream``. Clip
    models get ``frames_per_step`` frames per call; the last, shorter clip of a video is
    padded by repeating its last frame (the padded outputs are dropped).
    """

    def __init__(self, run: Callable[[dict], list], meta: dict) -> None:
        self.run = run
        self.meta = meta
        self.states = [TensorSpec(**{**s, "shape": tuple(s["shape"])}) for s in meta["states"]]
        self.frame_inputs = [
            TensorSpec(**{**s, "shape": tuple(s["shape"])}) for s in meta["frame_inputs"]
        ]
        for s in self.frame_inputs:
            FRAME_INPUT_REGISTRY.get_for(s.kind, f"frame input {s.name!r} kind")
        self.frames_per_step = int(meta["frames_per_step"])
        self.state: list[np.ndarray] = []
        self.reset()

    @classmethod
    def from_module(cls, step: StreamingStep) -> StepStreamer:
        """The eager step as a ``run`` function (the reference of the exported one)."""

        @torch.no_grad()
        def run(inputs: dict) -> list[np.ndarray]:
            outs = step(*[torch.from_numpy(inputs[n]) for n in step.input_names])
            return [o.numpy() for o in outs]

        return cls(run, step.metadata())

    @property
    def frames_per_call(self) -> int:
        """Frames per call, the meta-architectures' name for it (``frames_per_step``)."""
        return self.frames_per_step

    def reset(self) -> None:
        self.state = [s.zeros() for s in self.states]

    def process(self, frames: list[dict], first_index: int) -> list[dict]:
        """``len(frames) <= frames_per_step`` consecutive frames -> their outputs."""
        n = len(frames)
        padded = list(frames) + [frames[-1]] * (self.frames_per_step - n)
        image = torch.stack([torch.as_tensor(f["image"]) for f in padded])
        if image.dtype != torch.uint8:
            raise ValueError(f"exported step: frame 'image' must be uint8, got {image.dtype}")
        inputs = {"image": np.ascontiguousarray(image.numpy())}
        inputs.update({s.name: v for s, v in zip(self.states, self.state)})
        for s in self.frame_inputs:
            fn = FRAME_INPUT_REGISTRY.get(s.kind)
            vals = [
                fn(s.params, f, int(f.get("frame_index", first_index + k)))
                for k, f in enumerate(padded)
            ]
            inputs[s.name] = np.ascontiguousarray(torch.stack(vals).numpy().astype(s.dtype))
        outs = self.run(inputs)
        k = len(self.meta["outputs"])
        self.state = [np.asarray(v) for v in outs[k:]]
        results = []
        for i in range(n):
            results.append(
                {
                    name: torch.from_numpy(np.array(o[i]))
                    for name, o in zip(self.meta["outputs"], outs[:k])
                }
            )
        return results

    def stream(self, frames: Iterable[dict]) -> Iterator[dict]:
        """``reset()`` then one output per frame, in order (``frames_per_step`` at a time)."""
        self.reset()
        chunk: list[dict] = []
        t = 0
        for frame in frames:
            chunk.append(frame)
            if len(chunk) == self.frames_per_step:
                yield from self.process(chunk, t)
                t += len(chunk)
                chunk = []
        if chunk:
            yield from self.process(chunk, t)
        self.reset()
