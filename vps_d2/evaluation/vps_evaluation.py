"""VPSEvaluator: the SUN-SEG toolbox protocol inside the training/inference loop.

Per frame, the model's probability map is quantised to 8 bits with
:func:`~vps_d2.evaluation.metrics.quantize_probability` (``rint(prob * 255)``), the rule
also used to save the PNGs, then resized to the GT size and scored exactly as
``tools/evaluate.py`` scores a PNG read from disk: saving the predictions and running the
CLI on them gives the same numbers.

Which frames count: the toolbox lists a case's GT files, sorts them in SUN-SEG order and
drops the first and the last. The evaluator takes the GT file names of each video from
``DatasetCatalog.get(dataset_name)`` (``gt_file_names``; frames without GT are never
scored) and applies the same rule, so it does not depend on the order in which frames
arrive or on how videos are split across processes. Memory: one
:class:`~vps_d2.evaluation.protocol.CaseAccumulator` per video.

GT is read with :func:`~vps_d2.evaluation.protocol.read_gt` (0/1 masks as binary masks unless
``literal_gt`` = ``TEST.VPS.LITERAL_GT``; one warning per evaluation of a dataset that has
them), the reading of ``tools/evaluate.py``.
"""

from __future__ import annotations

import logging
import os
import re
from collections import OrderedDict

import cv2
import numpy as np
import torch

from vps_d2.config import configurable
from vps_d2.data import DatasetCatalog
from vps_d2.data.frame_order import case_sort_key
from vps_d2.utils import comm
from vps_d2.utils.file_io import atomic_write_bytes

from .build import EVALUATOR_REGISTRY
from .evaluator import DatasetEvaluator
from .metrics import frame_metrics, quantize_probability
from .protocol import (
    CaseAccumulator,
    aggregate_cases,
    case_metrics,
    match_prediction,
    read_gt,
    toolbox_frames,
    warn_zero_one_gt,
    write_results_csv,
    write_results_json,
)
from .worst_cases import WorstCaseKeeper, write_worst_cases

__all__ = ["VPSEvaluator", "prediction_subdir", "worst_cases_folder"]

logger = logging.getLogger(__name__)

_SUN_SPLIT_RE = re.compile(r"^(Train|Test\w*)Dataset(/\w+)?$")


def prediction_subdir(split: str, dataset_name: str) -> str:
    """Folder of a dataset's predictions under ``predictions/<model>/``.

    SUN-SEG split folders (``TestEasyDataset/Unseen``, ``TrainDataset``) are kept so that
    ``tools/evaluate.py --splits <split>`` finds them; anything else uses the dataset name.
    """
    return split if split and _SUN_SPLIT_RE.match(split) else dataset_name


def worst_cases_folder(output_dir: str, dataset_name: str) -> str:
    """Where ``TEST.VPS.DUMP_WORST_CASES`` keeps a dataset's worst frames (maps + index,
    :mod:`vps_d2.evaluation.worst_cases`); the engine draws them there."""
    return os.path.join(output_dir, "worst_cases", dataset_name)


def _norm(path: str) -> str:
    return os.path.normcase(os.path.abspath(path))


@EVALUATOR_REGISTRY.register()
class VPSEvaluator(DatasetEvaluator):
    """SUN-SEG toolbox metrics of one dataset (see :mod:`vps_d2.evaluation.protocol`).

    ``process`` takes test frame dicts (``video_id``, ``gt_file_name``, ``frame_name``
    ...) and outputs ``{"prob": float Tensor (H, W) in [0, 1]}``; ``evaluate`` returns
    ``{dataset_name: {metric: value}}`` on the main process ({} elsewhere) and writes
    ``<output_dir>/vps_<dataset_name>.json`` and ``..._per_case.csv``. With
    ``save_predictions``, every frame is also written as an 8-bit PNG to
    ``<output_dir>/predictions/<model_name>/<split or dataset>/<case>/<GT file name>``
    (as a PNG; frames without GT: ``<frame_name>.png``).
    """

    @configurable
    def __init__(
        self,
        dataset_name: str,
        output_dir: str | None = None,
        *,
        save_predictions: bool = False,
        model_name: str = "vps_d2",
        distributed: bool = True,
        dump_worst_cases: int = 0,
        literal_gt: bool = False,
    ) -> None:
        if save_predictions and not output_dir:
            raise ValueError("VPSEvaluator: save_predictions=True needs an output_dir")
        if not model_name or os.sep in model_name or model_name in (".", ".."):
            raise ValueError(f"VPSEvaluator: invalid model_name {model_name!r}")
        self.dataset_name = dataset_name
        self.output_dir = output_dir
        self.save_predictions = save_predictions
        self.model_name = model_name
        self.distributed = distributed
        # Read GT as the toolbox (> 128), 0/1 masks included (see protocol.read_gt).
        self.literal_gt = bool(literal_gt)
        self._videos: dict | None = None  # video_id -> (dropped GT paths, n scored, subdir)
        self._cases: dict[str, CaseAccumulator] = {}
        # Qualitative dump of the k frames with the lowest Dice at 0.5 (0 = off).
        self.dump_worst_cases = int(dump_worst_cases)
        self._worst = None

    @classmethod
    def from_config(cls, cfg, dataset_name: str, output_dir: str | None = None) -> dict:
        return {
            "dataset_name": dataset_name,
            "output_dir": output_dir if output_dir is not None else cfg.OUTPUT_DIR,
            "save_predictions": cfg.TEST.VPS.SAVE_PREDICTIONS,
            "model_name": cfg.TEST.VPS.MODEL_NAME,
            "dump_worst_cases": cfg.TEST.VPS.DUMP_WORST_CASES,
            "literal_gt": cfg.TEST.VPS.LITERAL_GT,
        }

    # ---------------------------------------------------------------------------------
    def _video_info(self) -> dict:
        if self._videos is None:
            videos = {}
            for rec in DatasetCatalog.get(self.dataset_name):
                vid = rec["video_id"]
                gts = [g for g in rec.get("gt_file_names", []) if g]
                ordered = toolbox_frames(gts, vid)
                dropped = {_norm(g) for g in gts} - {_norm(g) for g in ordered}
                sub = prediction_subdir(rec.get("split", ""), self.dataset_name)
                videos[vid] = (dropped, len(ordered), sub)
            self._videos = videos
        return self._videos

    def reset(self) -> None:
        self._cases = {}
        if self.dump_worst_cases > 0:
            self._worst = WorstCaseKeeper(self.dump_worst_cases)

    def _save(self, q: np.ndarray, sub: str, inp: dict) -> None:
        gt_file = inp.get("gt_file_name")
        name = os.path.basename(gt_file) if gt_file else f"{inp['frame_name']}.png"
        if not name.lower().endswith(".png"):
            name = os.path.splitext(name)[0] + ".png"
        path = os.path.join(
            self.output_dir, "predictions", self.model_name, sub, str(inp["video_id"]), name
        )
        ok, buf = cv2.imencode(".png", q)
        if not ok:
            raise RuntimeError(f"Could not encode the prediction PNG for {path}")
        atomic_write_bytes(path, buf.tobytes())

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        """Score (and optionally save) each frame: prob (H, W) -> uint8 -> GT size -> metrics."""
        videos = self._video_info()
        for inp, out in zip(inputs, outputs):
            vid = inp["video_id"]
            if vid not in videos:
                raise KeyError(
                    f"VPSEvaluator({self.dataset_name!r}): video {vid!r} is not in the "
                    "dataset's records"
                )
            prob = out["prob"]
            if isinstance(prob, torch.Tensor):
                prob = prob.detach().to("cpu", torch.float64).numpy()
            prob = np.asarray(prob)
            if prob.ndim == 3 and prob.shape[0] == 1:
                prob = prob[0]
            if prob.ndim != 2:
                raise ValueError(
                    f"VPSEvaluator: output 'prob' of frame {inp.get('frame_name')!r} "
                    f"(video {vid!r}) must be (H, W), got shape {tuple(prob.shape)}"
                )
            q = quantize_probability(prob)
            dropped, _, sub = videos[vid]
            if self.save_predictions:
                self._save(q, sub, inp)
            gt_file = inp.get("gt_file_name")
            if not gt_file or _norm(gt_file) in dropped:
                continue
            gt, zero_one = read_gt(gt_file, self.literal_gt)
            q = match_prediction(q, gt.shape)
            acc = self._cases.setdefault(vid, CaseAccumulator())
            acc.add(frame_metrics(q, gt))
            if zero_one:
                acc.note_zero_one(gt_file)
            if self._worst is not None:
                prob01 = q.astype(np.float32) / 255.0
                self._worst.add(
                    _dice_at_half(q, gt),
                    file_name=inp["file_name"],
                    gt_file_name=gt_file,
                    prob=prob01,
                )

    def evaluate(self) -> OrderedDict:
        states = {vid: acc.state() for vid, acc in self._cases.items()}
        worst = self._worst.cases() if self._worst is not None else []
        if self.distributed and comm.get_world_size() > 1:
            all_states = comm.all_gather(states)
            worst = [c for part in comm.all_gather(worst) for c in part]
            if not comm.is_main_process():
                return OrderedDict()
        else:
            all_states = [states]
        if worst and self.output_dir:
            folder = worst_cases_folder(self.output_dir, self.dataset_name)
            write_worst_cases(worst, folder, k=self.dump_worst_cases, metric="Dice@0.5")
            n = min(len(worst), self.dump_worst_cases)
            logger.info(
                "VPSEvaluator(%s): the %d worst frames kept in %s", self.dataset_name, n, folder
            )
        cases: dict[str, CaseAccumulator] = {}
        for part in all_states:
            for vid, st in part.items():
                acc = CaseAccumulator.from_state(st)
                if vid in cases:
                    cases[vid].merge(acc)
                else:
                    cases[vid] = acc
        videos = self._video_info()
        missing = [v for v, (_, n, _) in videos.items() if n > 0 and v not in cases]
        if missing:
            logger.warning(
                "VPSEvaluator(%s): %d video(s) with scored frames received no prediction: %s",
                self.dataset_name,
                len(missing),
                ", ".join(missing[:10]),
            )
        incomplete = [v for v, acc in cases.items() if acc.n != videos[v][1]]
        if incomplete:
            logger.warning(
                "VPSEvaluator(%s): %d video(s) scored on fewer frames than the toolbox would: %s",
                self.dataset_name,
                len(incomplete),
                ", ".join(incomplete[:10]),
            )
        if not cases:
            logger.warning("VPSEvaluator(%s): no frame was scored", self.dataset_name)
            return OrderedDict()
        warn_zero_one_gt(
            f"VPSEvaluator({self.dataset_name})",
            cases,
            literal=self.literal_gt,
            literal_option="TEST.VPS.LITERAL_GT True",
        )
        result = aggregate_cases(cases)
        if self.output_dir and result:
            base = os.path.join(self.output_dir, f"vps_{self.dataset_name}")
            write_results_json(base + ".json", {self.dataset_name: result})
            rows = [
                (self.dataset_name, v, cases[v].n, case_metrics(cases[v]))
                for v in sorted(cases, key=case_sort_key)
                if cases[v].n
            ]
            write_results_csv(base + "_per_case.csv", rows)
        return OrderedDict([(self.dataset_name, result)])


def _dice_at_half(q: np.ndarray, gt: np.ndarray) -> float:
    """Dice of ``q >= 128`` (uint8 prediction) against the bool GT; 1 when both are empty."""
    p = q >= 128
    denom = int(p.sum()) + int(gt.sum())
    return 1.0 if denom == 0 else 2.0 * int(np.logical_and(p, gt).sum()) / denom
