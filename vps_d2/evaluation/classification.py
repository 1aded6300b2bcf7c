"""ClassificationEvaluator: the pathological class of each frame and of each case.

The six classes are :data:`vps_d2.data.CLASS_NAMES` (SUN-SEG's diagnoses). Per frame, the
model's ``"class_scores"`` (float (6,), probabilities) are compared with the frame's
``"class_id"`` (the video's class; -1 = unknown, such frames are not scored):

* frame prediction = ``argmax(class_scores)``;
* case prediction = ``argmax`` of the mean of its scored frames' ``class_scores`` (a
  running sum per case, so memory is bounded by the number of cases, not of frames).

Ties go to the lowest class index (``numpy.argmax``). From a 6 x 6 confusion matrix ``C``
(rows = ground truth, columns = prediction), at both levels:

* ``accuracy`` = trace(C) / sum(C);
* ``balanced_accuracy`` = mean recall ``C[k, k] / sum(C[k, :])`` over the classes present
  in the ground truth (scikit-learn's ``balanced_accuracy_score``);
* ``macro_f1`` = mean of ``F1_k = 2 C[k, k] / (sum(C[k, :]) + sum(C[:, k]))`` over the
  classes present in the ground truth OR predicted (a class in neither has an undefined
  F1 and is left out; a class predicted but absent from the GT counts with F1 = 0). This
  is scikit-learn's ``f1_score(average="macro")`` with its default labels.

All values are fractions in [0, 1] (not percent).
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict

import numpy as np
import torch

from vps_d2.config import configurable
from vps_d2.data import CLASS_NAMES
from vps_d2.data.frame_order import case_sort_key
from vps_d2.utils import comm
from vps_d2.utils.file_io import atomic_write_json

from .build import EVALUATOR_REGISTRY
from .evaluator import DatasetEvaluator

__all__ = ["ClassificationEvaluator", "classification_metrics", "format_confusion_matrix"]

logger = logging.getLogger(__name__)

NUM_CLASSES = len(CLASS_NAMES)
# Abbreviations of the SUN-SEG case list, in CLASS_NAMES order (for the logged matrices).
_SHORT_NAMES = ("LA", "HA", "HP", "TSA", "SSL", "IC")


def classification_metrics(cm: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro F1 of a (K, K) confusion matrix (rows = GT).

    Conventions in the module docstring; NaN for an empty matrix.
    """
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    if total == 0:
        return {
            "accuracy": float("nan"),
            "balanced_accuracy": float("nan"),
            "macro_f1": float("nan"),
        }
    tp = np.diag(cm)
    gt_count, pred_count = cm.sum(axis=1), cm.sum(axis=0)
    in_gt = gt_count > 0
    in_any = in_gt | (pred_count > 0)
    recall = tp[in_gt] / gt_count[in_gt]
    f1 = 2.0 * tp[in_any] / (gt_count[in_any] + pred_count[in_any])
    return {
        "accuracy": float(tp.sum() / total),
        "balanced_accuracy": float(recall.mean()),
        "macro_f1": float(f1.mean()),
    }


def _per_class(cm: np.ndarray) -> dict[str, dict]:
    """{class name: {support, recall, precision, f1}} (None where undefined), for the JSON."""
    out = {}
    for k, name in enumerate(CLASS_NAMES):
        tp, n_gt, n_pred = int(cm[k, k]), int(cm[k].sum()), int(cm[:, k].sum())
        out[name] = {
            "support": n_gt,
            "recall": tp / n_gt if n_gt else None,
            "precision": tp / n_pred if n_pred else None,
            "f1": 2 * tp / (n_gt + n_pred) if n_gt + n_pred else None,
        }
    return out


def format_confusion_matrix(cm: np.ndarray, title: str) -> str:
    """A text table of a (6, 6) confusion matrix: rows = GT, columns = prediction."""
    width = max(6, len(str(int(np.max(cm)))) + 1)
    head = f"{title} (rows: ground truth, columns: prediction)\n" + "GT\\pred".ljust(8)
    head += "".join(s.rjust(width) for s in _SHORT_NAMES)
    rows = [
        _SHORT_NAMES[k].ljust(8) + "".join(str(int(v)).rjust(width) for v in cm[k])
        for k in range(len(cm))
    ]
    legend = ", ".join(f"{s} = {n}" for s, n in zip(_SHORT_NAMES, CLASS_NAMES))
    return "\n".join([head, *rows, legend])


def _scores(out: dict, inp: dict) -> np.ndarray | None:
    """The output's class_scores as float64 (6,), None when absent; ValueError when malformed."""
    scores = out.get("class_scores")
    if scores is None:
        return None
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().to("cpu", torch.float64).numpy()
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape not in ((NUM_CLASSES,), (1, NUM_CLASSES)) or not np.isfinite(scores).all():
        raise ValueError(
            f"ClassificationEvaluator: output 'class_scores' of frame {inp.get('frame_index')} "
            f"of video {inp.get('video_id')!r} must be {NUM_CLASSES} finite probabilities "
            f"(shape ({NUM_CLASSES},)), got shape {tuple(scores.shape)}"
        )
    return scores.reshape(NUM_CLASSES)


@EVALUATOR_REGISTRY.register()
class ClassificationEvaluator(DatasetEvaluator):
    """Frame- and case-level classification metrics of one dataset (see module docstring).

    ``process`` takes test frame dicts (``video_id``, ``frame_index``, ``class_id``) and
    outputs with an optional ``"class_scores"`` float (6,). ``evaluate`` returns, on the
    main process ({} elsewhere)::

        {f"{dataset_name}/classification": {
            "frame_accuracy", "frame_balanced_accuracy", "frame_macro_f1",
            "case_accuracy", "case_balanced_accuracy", "case_macro_f1",
            "num_frames", "num_cases"}}            # floats; metrics in [0, 1]

    logs both confusion matrices and writes them (with per-class recall/precision/F1 and
    every case's prediction) to ``<output_dir>/classification/<dataset_name>.json``. A model
    that output no ``class_scores`` gives {} (one info line, no error).
    """

    @configurable
    def __init__(
        self, dataset_name: str, output_dir: str | None = None, *, distributed: bool = True
    ) -> None:
        self.dataset_name = dataset_name
        self.output_dir = output_dir
        self.distributed = distributed
        self.reset()

    @classmethod
    def from_config(cls, cfg, dataset_name: str, output_dir: str | None = None) -> dict:
        return {
            "dataset_name": dataset_name,
            "output_dir": output_dir if output_dir is not None else cfg.OUTPUT_DIR,
        }

    def reset(self) -> None:
        self._frame_cm = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)  # GT, pred
        self._cases: dict[str, list] = {}  # video_id -> [class_id, n frames, score sum (6,)]
        self._num_with_scores = 0  # frames with class_scores, labelled or not

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        """Count each labelled frame's argmax and add its scores to its case's sum."""
        for inp, out in zip(inputs, outputs):
            scores = _scores(out, inp)
            if scores is None:
                continue
            self._num_with_scores += 1
            gt = int(inp.get("class_id", -1))
            if gt == -1:
                continue
            vid = str(inp["video_id"])
            if not 0 <= gt < NUM_CLASSES:
                raise ValueError(
                    f"ClassificationEvaluator({self.dataset_name!r}): frame "
                    f"{inp.get('frame_index')} of video {vid!r} has class_id {gt}; expected "
                    f"-1 (unknown) or 0..{NUM_CLASSES - 1} (vps_d2.data.CLASS_NAMES)"
                )
            self._frame_cm[gt, int(np.argmax(scores))] += 1
            case = self._cases.setdefault(vid, [gt, 0, np.zeros(NUM_CLASSES)])
            if case[0] != gt:
                raise ValueError(
                    f"ClassificationEvaluator({self.dataset_name!r}): frames of video {vid!r} "
                    f"have different class_id values ({case[0]} and {gt})"
                )
            case[1] += 1
            case[2] += scores

    def state(self) -> dict:
        """This process's accumulated state (picklable; what ``evaluate`` gathers)."""
        return {
            "frame_cm": self._frame_cm.copy(),
            "cases": {v: [c[0], c[1], c[2].copy()] for v, c in self._cases.items()},
            "num_with_scores": self._num_with_scores,
        }

    @staticmethod
    def _merge(states: list[dict]) -> dict:
        merged = {
            "frame_cm": np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64),
            "cases": {},
            "num_with_scores": 0,
        }
        for st in states:
            merged["frame_cm"] += st["frame_cm"]
            merged["num_with_scores"] += st["num_with_scores"]
            for vid, (gt, n, total) in st["cases"].items():
                if vid not in merged["cases"]:
                    merged["cases"][vid] = [gt, n, np.array(total, np.float64)]
                    continue
                case = merged["cases"][vid]
                if case[0] != gt:
                    raise ValueError(
                        f"ClassificationEvaluator: video {vid!r} has class_id {case[0]} in one "
                        f"process and {gt} in another"
                    )
                case[1] += n
                case[2] += total
        return merged

    def evaluate(self) -> OrderedDict:
        if self.distributed and comm.get_world_size() > 1:
            states = comm.all_gather(self.state())
            if not comm.is_main_process():
                return OrderedDict()
        else:
            states = [self.state()]
        merged = self._merge(states)
        if merged["num_with_scores"] == 0:
            logger.info(
                "ClassificationEvaluator(%s): the model output no 'class_scores'; "
                "classification not evaluated",
                self.dataset_name,
            )
            return OrderedDict()
        frame_cm, cases = merged["frame_cm"], merged["cases"]
        if frame_cm.sum() == 0:
            logger.warning(
                "ClassificationEvaluator(%s): no frame with class scores has a known class "
                "(class_id -1 everywhere); classification not evaluated",
                self.dataset_name,
            )
            return OrderedDict()
        case_cm = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
        predictions = {}
        for vid in sorted(cases, key=case_sort_key):
            gt, n, total = cases[vid]
            pred = int(np.argmax(total))  # argmax of the mean = argmax of the sum
            case_cm[gt, pred] += 1
            predictions[vid] = {
                "gt": CLASS_NAMES[gt],
                "pred": CLASS_NAMES[pred],
                "frames": n,
                "mean_scores": (total / n).tolist(),
            }
        result: dict[str, float] = {}
        for level, cm in (("frame", frame_cm), ("case", case_cm)):
            for name, value in classification_metrics(cm).items():
                result[f"{level}_{name}"] = value
        result["num_frames"] = float(frame_cm.sum())
        result["num_cases"] = float(case_cm.sum())

        frame_txt = format_confusion_matrix(frame_cm, "frame confusion matrix")
        case_txt = format_confusion_matrix(case_cm, "case confusion matrix")
        logger.info(
            "ClassificationEvaluator(%s): %d frames, %d cases\n%s\n%s",
            self.dataset_name,
            int(frame_cm.sum()),
            int(case_cm.sum()),
            frame_txt,
            case_txt,
        )
        if self.output_dir:
            path = os.path.join(self.output_dir, "classification", f"{self.dataset_name}.json")
            atomic_write_json(
                path,
                {
                    "dataset": self.dataset_name,
                    "class_names": list(CLASS_NAMES),
                    "confusion_matrix_layout": "rows = ground truth, columns = prediction",
                    "metrics": result,
                    "frame": {
                        "confusion_matrix": frame_cm.tolist(),
                        "per_class": _per_class(frame_cm),
                    },
                    "case": {
                        "confusion_matrix": case_cm.tolist(),
                        "per_class": _per_class(case_cm),
                        "cases": predictions,
                    },
                },
                indent=1,
            )
        return OrderedDict([(f"{self.dataset_name}/classification", result)])
