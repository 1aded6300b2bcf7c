"""Converting published checkpoints into vps_d2 checkpoints: the registry and the shared core.

A converter (:class:`WeightConverter`, registered in :data:`CONVERTER_REGISTRY` under its
``--from`` name) maps every tensor of a published state dict through an explicit table of
:class:`Rule` objects (a regular expression on the source name, the target name, an optional
transform, and for tensors a target is assembled from, the part index); nothing is matched by
shape. Each method owns its converter (``vps_d2/methods/<m>/convert.py``), the backbone
converters live beside the backbone loader (``vps_d2/modeling/backbone/convert.py``), and
``tools/convert_weights.py`` drives them.

Shared here:

* :func:`read_state_dict`: a plain state dict, or one wrapped in ``{"state_dict" | "model" |
  "net" | "module": ...}``, with or without the ``module.`` prefixes of DataParallel/DDP;
* :meth:`WeightConverter.convert` -> :class:`ConversionResult` (the converted tensors, the
  source tensors no rule maps, those the table declares unused);
* :func:`compare_with_model`: the model's tensors nothing was mapped to and shape mismatches;
* :func:`save_converted`: an atomic write of ``{"model": state_dict, "conversion":
  metadata}`` (source file, converter name and version, config name), which
  ``MODEL.WEIGHTS`` loads;
* :func:`detect_source`: which converter's published format a state dict is in (so that
  ``MODEL.WEIGHTS`` pointing at an unconverted file can name the ``--from`` to use).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from vps_d2.utils.file_io import atomic_write_bytes
from vps_d2.utils.registry import Registry

__all__ = [
    "CONVERTER_REGISTRY",
    "ConversionError",
    "ConversionResult",
    "Rule",
    "WeightConverter",
    "compare_with_model",
    "detect_source",
    "read_state_dict",
    "register_converter",
    "save_converted",
    "unwrap_state_dict",
]

logger = logging.getLogger(__name__)

CONVERTER_REGISTRY = Registry("WEIGHT_CONVERTER")
CONVERTER_REGISTRY.__doc__ = """
Checkpoint converters by ``--from`` name (``tools/convert_weights.py --from NAME``): each an
instance of :class:`WeightConverter`, registered with ``CONVERTER_REGISTRY.register(obj)``.
"""

#: Keys a training script may wrap its state dict in (checked in this order).
WRAPPER_KEYS = ("state_dict", "model", "net", "module")


class ConversionError(RuntimeError):
    """A state dict that a converter cannot map (the message names the tensors)."""


def unwrap_state_dict(obj: Any, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensors of a loaded checkpoint: unwraps ``{"state_dict" | "model" | "net" |
    "module": {...}}`` (repeatedly) and strips the ``module.`` prefix of DataParallel/DDP when
    every key has it. Non-tensor entries of a plain state dict are dropped."""
    seen = 0
    while isinstance(obj, Mapping) and seen < 4:
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj, seen = inner, seen + 1
    if not isinstance(obj, Mapping):
        raise ConversionError(f"{what} holds no state dict (a {type(obj).__name__})")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ConversionError(
            f"{what} holds no tensors (keys: {list(obj)[:8]}); expected a state dict, "
            f"possibly wrapped in one of {WRAPPER_KEYS}"
        )
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Read a checkpoint file (torch or safetensors) -> its tensors (:func:`unwrap_state_dict`).

    Raises:
        FileNotFoundError: no such file.
        ConversionError: unreadable, or no state dict inside.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path!r}")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file  # optional dependency, read on demand

            obj: Any = load_file(path)
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised naming the file
        raise ConversionError(f"cannot read {path!r} (not a torch/safetensors file?): {e}") from e
    return unwrap_state_dict(obj, what=repr(path))


# ---------------------------------------------------------------------------- transforms
def linear_to_conv1x1(t: torch.Tensor) -> torch.Tensor:
    """nn.Linear weight (out, in) -> 1x1 conv weight (out, in, 1, 1); biases unchanged."""
    return t[:, :, None, None] if t.dim() == 2 else t


TRANSFORMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "": lambda t: t,
    "linear_to_conv1x1": linear_to_conv1x1,
}


@dataclass(frozen=True)
class Rule:
    """One line of a conversion table.

    Attributes:
        source: regular expression matched against the whole source name.
        target: the vps_d2 name (``re.sub`` template: ``\\1`` etc. refer to groups); "" with
            ``ignore`` for tensors the vps_d2 model has no use for.
        transform: a name in :data:`TRANSFORMS` applied to the tensor.
        part: ``(index, count)``: the target is the concatenation along dim 0 of ``count``
            source tensors, this one at ``index`` (e.g. k and v into timm's kv).
        ignore: the tensor is known and unused (listed as such, never an error).
        reason: why it is ignored (shown in the report).
    """

    source: str
    target: str = ""
    transform: str = ""
    part: tuple[int, int] | None = None
    ignore: bool = False
    reason: str = ""

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            raise ValueError(f"Rule {self.source!r}: unknown transform {self.transform!r}")
        if not self.ignore and not self.target:
            raise ValueError(f"Rule {self.source!r}: a target is needed unless ignore=True")


@dataclass
class ConversionResult:
    """What :meth:`WeightConverter.convert` produced.

    Attributes:
        state_dict: the converted tensors (vps_d2 names).
        unmapped: source names no rule matches (an error unless partial conversion is allowed).
        ignored: ``{source name: reason}`` for the tensors the table declares unused.
        sources: ``{target name: [source names]}`` (where each converted tensor came from).
    """

    state_dict: dict[str, torch.Tensor]
    unmapped: list[str] = field(default_factory=list)
    ignored: dict[str, str] = field(default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=dict)


class WeightConverter:
    """A table-driven converter of one published checkpoint format.

    Attributes:
        name: the ``--from`` name.
        version: bumped whenever the table changes what a file converts to.
        description: one line for ``--help`` and the model-zoo page.
        config: the shipped config the converted weights load with ("" for backbone files).
        target: ``"model"`` (a checkpoint for MODEL.WEIGHTS) or ``"backbone"`` (a state dict
            for MODEL.BACKBONE.WEIGHTS).
        signature: source names whose presence identifies the format (all of them must be
            present; see :func:`detect_source`).
    """

    name: str = ""
    version: int = 1
    description: str = ""
    config: str = ""
    target: str = "model"
    signature: tuple[str, ...] = ()

    def rules(self, state: Mapping[str, torch.Tensor]) -> list[Rule]:
        """The conversion table (may depend on the source, e.g. its number of blocks)."""
        raise NotImplementedError

    def preprocess(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Hook run before the table (e.g. a library's own checkpoint filter)."""
        return state

    def matches(self, state: Mapping[str, torch.Tensor]) -> bool:
        return bool(self.signature) and all(k in state for k in self.signature)

    def convert(self, state: Mapping[str, torch.Tensor]) -> ConversionResult:
        """Map every source tensor through :meth:`rules`. Each name must match exactly one
        rule; the parts of a combined target must all be present."""
        state = self.preprocess(dict(state))
        compiled = [(re.compile(r.source), r) for r in self.rules(state)]
        out: dict[str, torch.Tensor] = {}
        parts: dict[str, dict[int, tuple[str, torch.Tensor]]] = {}
        counts: dict[str, int] = {}
        res = ConversionResult(state_dict=out)
        for name, tensor in state.items():
            hits = [(p, r) for p, r in compiled if p.fullmatch(name)]
            if not hits:
                res.unmapped.append(name)
                continue
            if len(hits) > 1:
                raise ConversionError(
                    f"converter {self.name!r}: {name} matches {len(hits)} rules "
                    f"({[r.source for _, r in hits]}): the table is ambiguous"
                )
            pattern, rule = hits[0]
            if rule.ignore:
                res.ignored[name] = rule.reason
                continue
            target = pattern.sub(rule.target, name)
            value = TRANSFORMS[rule.transform](tensor)
            if rule.part is None:
                if target in out:
                    raise ConversionError(
                        f"converter {self.name!r}: {target} is produced twice "
                        f"({res.sources[target][0]} and {name})"
                    )
                out[target] = value
                res.sources[target] = [name]
            else:
                index, count = rule.part
                parts.setdefault(target, {})[index] = (name, value)
                counts[target] = count
        for target, pieces in parts.items():
            count = counts[target]
            absent = [i for i in range(count) if i not in pieces]
            if absent:
                have = [pieces[i][0] for i in sorted(pieces)]
                raise ConversionError(
                    f"converter {self.name!r}: {target} is assembled from {count} tensors but "
                    f"part(s) {absent} are missing (have {have})"
                )
            out[target] = torch.cat([pieces[i][1] for i in range(count)], 0)
            res.sources[target] = [pieces[i][0] for i in range(count)]
        return res

    def metadata(self, source_path: str) -> dict[str, Any]:
        return {
            "source": os.path.abspath(source_path),
            "converter": self.name,
            "converter_version": self.version,
            "config": self.config,
        }


def compare_with_model(
    converted: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """(missing, extra, wrong_shape): the expected (model) tensors nothing was mapped to, the
    converted tensors the model does not have, and ``"name: converted vs model"`` shape
    mismatches."""
    missing = [k for k in expected if k not in converted]
    extra = [k for k in converted if k not in expected]
    wrong = [
        f"{k}: {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in converted.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    return missing, extra, wrong


def save_converted(path: str, state_dict: Mapping[str, torch.Tensor], meta: dict) -> None:
    """Write ``{"model": state_dict, "conversion": meta}`` atomically (temp file + rename)."""
    data = {"model": {k: v.contiguous() for k, v in state_dict.items()}, "conversion": dict(meta)}
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    atomic_write_bytes(path, lambda f: torch.save(data, f))


def register_converter(converter: WeightConverter) -> WeightConverter:
    """Register ``converter`` under its ``name`` (the ``--from`` value)."""
    if not converter.name:
        raise ValueError(f"{type(converter).__name__}: a converter needs a name")
    CONVERTER_REGISTRY.register_as(converter.name)(converter)
    return converter


def detect_source(
    state: Mapping[str, torch.Tensor], converters: Iterable[WeightConverter] | None = None
) -> WeightConverter | None:
    """The registered converter whose published format ``state`` is in (None if none)."""
    if converters is None:
        converters = [obj for _, obj in sorted(CONVERTER_REGISTRY, key=lambda kv: kv[0])]
    for conv in converters:
        if conv.matches(state):
            return conv
    return None
