"""vps_d2's models with outputs in Detectron2's conventions ("sem_seg", "instances").

vps_d2's core never imports Detectron2, so its models answer ``{"prob": (H, W), ...}``.
:func:`d2_meta_arch` gives, for each vps_d2 meta-architecture, a subclass (same name, same
parameters, so checkpoints load unchanged) registered in Detectron2's ``META_ARCH_REGISTRY``
whose eval-mode ``forward`` adds to each frame's output (keys ``TEST.D2_OUTPUTS.*``):

* ``"sem_seg"``: float (2, H, W) = ``[1 - prob, prob]`` (``stuff_classes`` background,
  polyp), so ``argmax(0)`` is ``prob > 0.5`` (a tie goes to background);
* ``"instances"``: a Detectron2 ``Instances`` of the frame's (height, width) with
  ``pred_boxes`` (XYXY, pixels), ``scores``, ``pred_classes`` (``thing_classes`` index)
  and ``pred_masks`` (bool (N, H, W); not with INSTANCE_MASKS False), made by
  :func:`to_instances` from the model's box and class outputs ("auto": Diff-VPS: one
  instance per frame, box (cx, cy, w, h) scaled to the frame, score ``box_score``, class
  the argmax of ``class_scores``, mask ``prob > MASK_THRESHOLD``) or from the
  connected components of the mask ("components").

``detectron2.modeling.build_model(cfg)`` builds these once :mod:`vps_d2.d2` is imported;
:func:`build_model` does the same with vps_d2's device fallback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from detectron2.structures import Boxes, Instances

from vps_d2.modeling import get_meta_arch
from vps_d2.modeling.meta_arch import resolve_device

__all__ = ["D2Outputs", "OutputOptions", "build_model", "d2_meta_arch", "to_d2_outputs"]
__all__ += ["to_instances"]

logger = logging.getLogger(__name__)

INSTANCE_MODES = ("auto", "components", "none")


@dataclass(frozen=True)
class OutputOptions:
    """TEST.D2_OUTPUTS.* (see vps_d2/config/defaults.py)."""

    sem_seg: bool = True
    instances: str = "auto"
    instance_masks: bool = True
    mask_threshold: float = 0.5
    min_area: int = 0
    score_thresh: float = 0.0

    def __post_init__(self) -> None:
        if self.instances not in INSTANCE_MODES:
            raise ValueError(
                f"TEST.D2_OUTPUTS.INSTANCES must be one of {INSTANCE_MODES}, got {self.instances!r}"
            )
        if not 0.0 <= float(self.mask_threshold) < 1.0:
            raise ValueError(
                f"TEST.D2_OUTPUTS.MASK_THRESHOLD must be in [0, 1), got {self.mask_threshold}"
            )

    @classmethod
    def from_config(cls, cfg) -> OutputOptions:
        o = cfg.TEST.D2_OUTPUTS
        return cls(
            sem_seg=bool(o.SEM_SEG),
            instances=str(o.INSTANCES),
            instance_masks=bool(o.INSTANCE_MASKS),
            mask_threshold=float(o.MASK_THRESHOLD),
            min_area=int(o.MIN_AREA),
            score_thresh=float(o.SCORE_THRESH),
        )


def _components(prob: torch.Tensor, opts: OutputOptions, class_id: int | None) -> Instances:
    h, w = prob.shape
    fg = (prob > opts.mask_threshold).cpu().numpy().astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    labels_t = torch.from_numpy(labels).to(prob.device)
    boxes, scores, masks = [], [], []
    for k in range(1, n):
        x, y, bw, bh, area = (int(v) for v in stats[k])
        if area < opts.min_area:
            continue
        m = labels_t == k
        boxes.append([x, y, x + bw, y + bh])
        scores.append(prob[m].mean())
        masks.append(m)
    inst = Instances((h, w))
    inst.pred_boxes = Boxes(
        torch.tensor(boxes, dtype=torch.float32, device=prob.device).view(-1, 4)
    )
    inst.scores = torch.stack(scores).float() if scores else prob.new_zeros(0)
    inst.pred_masks = torch.stack(masks) if masks else torch.zeros(0, h, w, dtype=torch.bool)
    if class_id is not None:
        inst.pred_classes = torch.full((len(boxes),), class_id, dtype=torch.int64)
    return inst


def to_instances(out: dict, opts: OutputOptions = OutputOptions()) -> Instances | None:
    """One frame's vps_d2 output -> Detectron2 ``Instances`` (module doc), or None.

    Args:
        out: ``{"prob": (H, W), "class_scores": (C,), "box": (4,) normalised (cx, cy, w,
            h), "box_score": ()}`` (the last three optional).
    """
    if opts.instances == "none":
        return None
    prob = out["prob"]
    h, w = prob.shape
    scores = out.get("class_scores")
    class_id = int(scores.argmax()) if scores is not None else None
    if opts.instances == "components":
        inst = _components(prob, opts, class_id)
    elif out.get("box") is None or class_id is None:
        return None
    else:
        cx, cy, bw, bh = (float(v) for v in out["box"])
        box = [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h]
        inst = Instances((h, w))
        inst.pred_boxes = Boxes(torch.tensor([box], dtype=torch.float32, device=prob.device))
        inst.pred_boxes.clip((h, w))
        score = out.get("box_score")
        score = prob.max() if score is None else torch.as_tensor(score, device=prob.device)
        inst.scores = score.float().reshape(1)
        inst.pred_classes = torch.tensor([class_id], dtype=torch.int64, device=prob.device)
        inst.pred_masks = (prob > opts.mask_threshold)[None]
    if not opts.instance_masks:
        inst.remove("pred_masks")
    if opts.score_thresh > 0 and len(inst):
        inst = inst[inst.scores >= opts.score_thresh]
    return inst


def to_d2_outputs(out: dict, opts: OutputOptions = OutputOptions()) -> dict:
    """``out`` plus "sem_seg" (2, H, W) and "instances" as asked by ``opts`` (a new dict)."""
    res = dict(out)
    prob = out["prob"]
    if opts.sem_seg:
        res["sem_seg"] = torch.stack([1.0 - prob, prob])
    inst = to_instances(out, opts)
    if inst is not None:
        res["instances"] = inst
    return res


class D2Outputs:
    """Mixin of the Detectron2-registered models: eval-mode outputs through
    :func:`to_d2_outputs` (training, streaming and the parameters are the model's own)."""

    d2_outputs: OutputOptions = OutputOptions()

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cfg = args[0] if args else kwargs.get("cfg")
        if cfg is not None and hasattr(cfg, "TEST") and "D2_OUTPUTS" in cfg.TEST:
            self.d2_outputs = OutputOptions.from_config(cfg)

    def inference(self, frames: list[dict]) -> list[dict]:
        return [to_d2_outputs(o, self.d2_outputs) for o in super().inference(frames)]


_CLASSES: dict[type, type] = {}


def d2_meta_arch(cls: type) -> type:
    """The subclass of vps_d2 meta-architecture ``cls`` with Detectron2 outputs (cached)."""
    if cls not in _CLASSES:
        _CLASSES[cls] = type(
            cls.__name__,
            (D2Outputs, cls),
            {
                "__module__": __name__,
                "__doc__": f"{cls.__name__} with Detectron2 outputs ("
                f"{__name__}.D2Outputs): {cls.__doc__ or ''}",
            },
        )
    return _CLASSES[cls]


def build_model(cfg) -> torch.nn.Module:
    """``cfg.MODEL.META_ARCHITECTURE`` with Detectron2 outputs on ``cfg.MODEL.DEVICE`` (the
    CPU, with a warning, when CUDA is asked for but absent); no weights loaded."""
    model = d2_meta_arch(get_meta_arch(cfg))(cfg)
    model.to(resolve_device(cfg.MODEL.DEVICE))
    return model
