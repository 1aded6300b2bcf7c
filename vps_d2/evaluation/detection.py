"""DetectionEvaluator: COCO-style box AP of the polyp and the mean IoU of the top box.

Outputs (per frame, optional): ``"box"`` float (4,) normalised ``(cx, cy, w, h)`` in
fractions of the frame's width/height, ``"box_score"`` float scalar (its confidence; 1.0
when the output has a box but no score). Each frame has at most one predicted box. The box
is scored as the model gives it (not clipped to the frame).

Ground truth per frame, in pixels of the original frame (``[x_min, y_min, w, h]``):

* the input's ``"gt_box"`` when it is not None (from ``bbox_annotation.json`` or the
  dataset's mask-derived boxes);
* else the tight box of the GT mask ``"gt_file_name"``, read with
  :func:`vps_d2.data.io.read_mask` (foreground = value > 128, a mask whose maximum is 1 is
  0/1, as the toolbox); an empty mask has no GT box, so a box predicted there is a false
  positive;
* frames without a GT file (``gt_file_name`` None) and without ``gt_box`` are not scored.

Metrics (fractions in [0, 1], not percent as in Detectron2's COCOEvaluator):

* ``AP`` (IoU 0.50:0.95), ``AP50``, ``AP75``: pycocotools' ``COCOeval`` (iouType "bbox",
  area "all", maxDets 100) on a COCO set built in memory: one image per scored frame, one
  category "polyp", GT boxes with ``iscrowd`` 0 and ``area = w * h``; NaN when no scored
  frame has a GT box, 0 when the model predicted no box on any scored frame;
* ``mean_iou``: mean over the scored frames that have a GT box of the IoU between the
  predicted box and the GT box (0 for a frame without a predicted box);
* ``num_frames`` (scored frames), ``num_gt_boxes``, ``num_pred_boxes``.

Memory: a few floats per scored frame (COCOeval needs every box at the end).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections import OrderedDict

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_convert, box_iou

from vps_d2.config import configurable
from vps_d2.data.frame_order import case_sort_key
from vps_d2.data.io import mask_to_box, read_mask
from vps_d2.utils import comm

from .build import EVALUATOR_REGISTRY
from .evaluator import DatasetEvaluator

__all__ = ["DetectionEvaluator", "coco_box_ap"]

logger = logging.getLogger(__name__)

# Default confidence of a predicted box whose output has no "box_score".
DEFAULT_BOX_SCORE = 1.0


def coco_box_ap(
    frames: list[tuple[float, float, list[float] | None, list[float] | None, float]],
) -> tuple[dict[str, float], str]:
    """AP, AP50, AP75 of one-box-per-frame predictions with pycocotools' COCOeval.

    Args:
        frames: one ``(width, height, gt_box, pred_box, score)`` per image; boxes are
            ``[x_min, y_min, w, h]`` in pixels or None.

    Returns:
        ({"AP", "AP50", "AP75"} in [0, 1] (NaN without any GT box), COCOeval's summary text).
    """
    images, gts, dets = [], [], []
    for i, (width, height, gt, pred, score) in enumerate(frames, 1):
        images.append({"id": i, "width": width, "height": height})
        if gt is not None:
            gts.append(
                {
                    "id": len(gts) + 1,
                    "image_id": i,
                    "category_id": 1,
                    "bbox": list(gt),
                    "area": float(gt[2] * gt[3]),
                    "iscrowd": 0,
                }
            )
        if pred is not None:
            dets.append(
                {"image_id": i, "category_id": 1, "bbox": list(pred), "score": float(score)}
            )
    if not gts:
        nan = float("nan")
        return {"AP": nan, "AP50": nan, "AP75": nan}, "no GT box: AP undefined"
    if not dets:
        return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}, "no predicted box: AP = 0"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        coco_gt = COCO()
        coco_gt.dataset = {
            "images": images,
            "annotations": gts,
            "categories": [{"id": 1, "name": "polyp"}],
        }
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        coco_eval = COCOeval(coco_gt, coco_dt, iouType="bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    stats = coco_eval.stats  # -1 where undefined
    keys = ("AP", "AP50", "AP75")
    out = {k: float(stats[j]) if stats[j] >= 0 else float("nan") for j, k in enumerate(keys)}
    summary = "\n".join(
        ln
        for ln in buf.getvalue().splitlines()
        if "Average Precision" in ln or "Average Recall" in ln
    )
    return out, summary


def _pred_box(out: dict, inp: dict, width: float, height: float) -> list[float] | None:
    """The output's box as [x_min, y_min, w, h] pixels (None when absent); ValueError if bad."""
    box = out.get("box")
    if box is None:
        return None
    if isinstance(box, torch.Tensor):
        box = box.detach().to("cpu", torch.float64)
    box = torch.as_tensor(np.asarray(box, dtype=np.float64))
    if tuple(box.shape) not in ((4,), (1, 4)) or not torch.isfinite(box).all():
        raise ValueError(
            f"DetectionEvaluator: output 'box' of frame {inp.get('frame_index')} of video "
            f"{inp.get('video_id')!r} must be 4 finite numbers (cx, cy, w, h) normalised, "
            f"got shape {tuple(box.shape)}"
        )
    box = box.reshape(1, 4).clone()
    box[:, 2:] = box[:, 2:].clamp(min=0.0)  # a negative size is an empty box
    box *= torch.tensor([width, height, width, height], dtype=torch.float64)
    return box_convert(box, "cxcywh", "xywh")[0].tolist()


def _score(out: dict, inp: dict) -> float:
    score = out.get("box_score")
    if score is None:
        return DEFAULT_BOX_SCORE
    if isinstance(score, torch.Tensor):
        ok = score.numel() == 1
        score = float(score.detach().reshape(-1)[0]) if ok else float("nan")
    score = float(score)
    if not math.isfinite(score):
        raise ValueError(
            f"DetectionEvaluator: output 'box_score' of frame {inp.get('frame_index')} of "
            f"video {inp.get('video_id')!r} must be one finite number"
        )
    return score


def _iou(a: list[float], b: list[float]) -> float:
    """IoU of two [x_min, y_min, w, h] boxes (torchvision's box_iou)."""
    t = torch.tensor([a, b], dtype=torch.float64)
    t = box_convert(t, "xywh", "xyxy")
    if (t[:, 2:] - t[:, :2]).prod(dim=1).eq(0).all():
        return 0.0  # box_iou divides 0 by 0 for two empty boxes
    return float(box_iou(t[:1], t[1:])[0, 0])


@EVALUATOR_REGISTRY.register()
class DetectionEvaluator(DatasetEvaluator):
    """Box AP (COCO) and mean IoU of one dataset (see module docstring).

    ``process`` takes test frame dicts (``video_id``, ``frame_index``, ``height``,
    ``width``, ``gt_box``, ``gt_file_name``) and outputs with optional ``"box"`` (4,) /
    ``"box_score"``. ``evaluate`` returns, on the main process ({} elsewhere)::

        {f"{dataset_name}/detection": {"AP", "AP50", "AP75", "mean_iou", "num_frames",
                                       "num_gt_boxes", "num_pred_boxes"}}   # floats

    and logs COCOeval's summary. A model that output no ``box`` gives {} (one info line).
    """

    @configurable
    def __init__(
        self, dataset_name: str, output_dir: str | None = None, *, distributed: bool = True
    ) -> None:
        self.dataset_name = dataset_name
        self.output_dir = output_dir  # unused: the metrics go to the engine's results
        self.distributed = distributed
        self.reset()

    @classmethod
    def from_config(cls, cfg, dataset_name: str, output_dir: str | None = None) -> dict:
        return {
            "dataset_name": dataset_name,
            "output_dir": output_dir if output_dir is not None else cfg.OUTPUT_DIR,
        }

    def reset(self) -> None:
        # (video_id, frame_index) -> (width, height, gt box | None, pred box | None, score, iou)
        self._frames: dict[tuple[str, int], tuple] = {}
        self._any_box = False

    def _gt_box(self, inp: dict, width: float, height: float) -> tuple[bool, list | None]:
        """(scored, GT box in frame pixels or None)."""
        box = inp.get("gt_box")
        if box is not None:
            return True, [float(v) for v in box]
        gt_file = inp.get("gt_file_name")
        if not gt_file:
            return False, None
        mask = read_mask(gt_file)  # H, W bool
        box = mask_to_box(mask)
        if box is not None and mask.shape != (int(height), int(width)):
            sx, sy = width / mask.shape[1], height / mask.shape[0]
            box = [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]
        return True, box

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        """Keep each scored frame's GT box, predicted box (pixels), score and their IoU."""
        for inp, out in zip(inputs, outputs):
            if out.get("box") is not None:
                self._any_box = True
            if "height" not in inp or "width" not in inp:
                raise KeyError(
                    f"DetectionEvaluator({self.dataset_name!r}): test frame dicts need "
                    f"'height' and 'width' (frame {inp.get('frame_index')} of video "
                    f"{inp.get('video_id')!r} has keys {sorted(inp)})"
                )
            width, height = float(inp["width"]), float(inp["height"])
            scored, gt = self._gt_box(inp, width, height)
            if not scored:
                continue
            pred = _pred_box(out, inp, width, height)
            score = _score(out, inp) if pred is not None else 0.0
            iou = _iou(pred, gt) if pred is not None and gt is not None else 0.0
            key = (str(inp["video_id"]), int(inp["frame_index"]))
            self._frames[key] = (width, height, gt, pred, score, iou)

    def state(self) -> dict:
        """This process's accumulated state (picklable; what ``evaluate`` gathers)."""
        return {"frames": dict(self._frames), "any_box": self._any_box}

    def evaluate(self) -> OrderedDict:
        if self.distributed and comm.get_world_size() > 1:
            states = comm.all_gather(self.state())
            if not comm.is_main_process():
                return OrderedDict()
        else:
            states = [self.state()]
        if not any(st["any_box"] for st in states):
            logger.info(
                "DetectionEvaluator(%s): the model output no 'box'; detection not evaluated",
                self.dataset_name,
            )
            return OrderedDict()
        frames: dict[tuple[str, int], tuple] = {}
        repeated = 0
        for st in states:
            for key, value in st["frames"].items():
                repeated += key in frames
                frames[key] = value
        if repeated:
            logger.warning(
                "DetectionEvaluator(%s): %d frame(s) were processed more than once; the last "
                "output of each is scored",
                self.dataset_name,
                repeated,
            )
        if not frames:
            logger.warning("DetectionEvaluator(%s): no frame has ground truth", self.dataset_name)
            return OrderedDict()
        order = sorted(frames, key=lambda k: (case_sort_key(k[0]), k[1]))
        rows = [frames[k] for k in order]
        ap, summary = coco_box_ap([r[:5] for r in rows])
        ious = [r[5] for r in rows if r[2] is not None]
        result = dict(ap)
        result["mean_iou"] = float(np.mean(ious)) if ious else float("nan")
        result["num_frames"] = float(len(rows))
        result["num_gt_boxes"] = float(len(ious))
        result["num_pred_boxes"] = float(sum(r[3] is not None for r in rows))
        logger.info(
            "DetectionEvaluator(%s): %d frames, %d GT boxes, %d predicted boxes, mean IoU %.4f\n%s",
            self.dataset_name,
            len(rows),
            len(ious),
            int(result["num_pred_boxes"]),
            result["mean_iou"],
            summary,
        )
        return OrderedDict([(f"{self.dataset_name}/detection", result)])
