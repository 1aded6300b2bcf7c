"""The K worst frames of an evaluation, kept in bounded memory and written as data.

:class:`WorstCaseKeeper` keeps, per evaluation, the ``k`` frames with the lowest score (the
evaluator's Dice at 0.5) with their probability maps as uint8. :func:`write_worst_cases`
writes them to a folder (``OUTPUT_DIR/worst_cases/<dataset>``): one 8-bit PNG per map,
``<rank>_<name>_prob.png``, and the index ``worst_cases.json`` (score, metric, frame and
GT paths, map file, worst first). :func:`load_worst_cases` reads them back as the dicts
:func:`vps_d2.visualization.save_worst_cases` draws: the evaluation never draws; the
engine (after each evaluation) or any caller renders a folder with
:func:`vps_d2.visualization.draw_worst_cases`.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import os
from collections.abc import Iterable

import cv2
import numpy as np
import torch

from vps_d2.data.io import read_image_bytes
from vps_d2.utils.events import dump_json_atomic
from vps_d2.utils.file_io import atomic_write_bytes

__all__ = ["WORST_CASES_INDEX", "WorstCaseKeeper", "load_worst_cases", "write_worst_cases"]

#: The index file of a worst-case folder.
WORST_CASES_INDEX = "worst_cases.json"


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


class WorstCaseKeeper:
    """Keep the ``k`` frames with the lowest score seen so far, in bounded memory.

    ``add(score, file_name=..., gt_file_name=..., prob=...)`` per evaluated frame; the
    probability map is stored as uint8 with its longer side at most ``max_side``, and
    only when the frame enters the current worst ``k``. :meth:`cases` returns the dicts
    :func:`write_worst_cases` and :func:`vps_d2.visualization.save_worst_cases` take,
    worst first.
    """

    def __init__(self, k: int = 8, *, max_side: int = 512) -> None:
        if k <= 0:
            raise ValueError(f"WorstCaseKeeper: k must be positive, got {k}")
        self.k, self.max_side = k, max_side
        self._heap: list[tuple[float, int, dict]] = []  # (-score, counter, case): max-heap
        self._counter = itertools.count()

    def add(
        self,
        score: float,
        *,
        file_name: str,
        gt_file_name: str | None,
        prob,
        name: str | None = None,
    ) -> None:
        """Offer one frame: ``prob`` float (H, W) in [0, 1]; lower ``score`` = worse."""
        score = float(score)
        if math.isnan(score):
            return
        if len(self._heap) >= self.k and score >= -self._heap[0][0]:
            return
        p = _to_numpy(prob).astype(np.float32)
        h, w = p.shape
        s = min(1.0, self.max_side / max(h, w))
        if s < 1.0:
            p = cv2.resize(
                p, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA
            )
        case = {
            "score": score,
            "file_name": file_name,
            "gt_file_name": gt_file_name,
            "prob": np.round(np.clip(p, 0, 1) * 255).astype(np.uint8),  # h, w
            "name": name or os.path.splitext(os.path.basename(file_name))[0],
        }
        item = (-score, next(self._counter), case)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, item)
        else:
            heapq.heapreplace(self._heap, item)

    def cases(self) -> list[dict]:
        """The kept frames, worst (lowest score) first."""
        return [c for _, _, c in sorted(self._heap, key=lambda t: (-t[0], t[1]))]


def write_worst_cases(
    cases: Iterable[dict], folder: str, *, k: int | None = None, metric: str = "Dice"
) -> list[str]:
    """Write the ``k`` lowest-scoring ``cases`` (all when ``k`` is None) to ``folder``.

    Each map goes to ``<rank>_<name>_prob.png`` (uint8, as kept), then the index
    ``worst_cases.json`` lists them worst first. Returns the paths written, index last
    (nothing when there is no case).
    """
    ordered = sorted(cases, key=lambda c: float(c["score"]))
    if k is not None:
        ordered = ordered[:k]
    if not ordered:
        return []
    entries, paths = [], []
    for rank, case in enumerate(ordered):
        name = case.get("name") or os.path.splitext(os.path.basename(case["file_name"]))[0]
        prob = _to_numpy(case["prob"])
        if prob.dtype != np.uint8:
            prob = np.round(np.clip(prob.astype(np.float32), 0, 1) * 255).astype(np.uint8)
        prob_file = f"{rank:02d}_{name}_prob.png"
        ok, buf = cv2.imencode(".png", prob)
        if not ok:
            raise RuntimeError(f"Could not encode the probability map of {case['file_name']}")
        path = os.path.join(folder, prob_file)
        atomic_write_bytes(path, buf.tobytes())
        paths.append(path)
        entries.append(
            {
                "rank": rank,
                "score": float(case["score"]),
                "metric": metric,
                "name": name,
                "file_name": case["file_name"],
                "gt_file_name": case.get("gt_file_name"),
                "prob_file": prob_file,
            }
        )
    index = os.path.join(folder, WORST_CASES_INDEX)
    dump_json_atomic(index, {"metric": metric, "cases": entries})
    paths.append(index)
    return paths


def load_worst_cases(folder: str) -> tuple[list[dict], str]:
    """``(cases, metric)`` of a folder written by :func:`write_worst_cases`, worst first;
    each case with its ``"prob"`` map (uint8). ``([], "")`` when the folder has no index."""
    index = os.path.join(folder, WORST_CASES_INDEX)
    if not os.path.isfile(index):
        return [], ""
    with open(index, encoding="utf-8") as f:
        data = json.load(f)
    cases = []
    for entry in data.get("cases", []):
        path = os.path.join(folder, entry["prob_file"])
        buf = np.frombuffer(read_image_bytes(path), np.uint8)
        prob = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
        if prob is None:
            raise ValueError(f"{path}: not a readable PNG (listed in {index})")
        cases.append({**entry, "prob": prob})
    return cases, str(data.get("metric", ""))
