"""Overlays of predictions on colonoscopy frames, contact sheets and worst-case dumps.

All images are BGR uint8 ``(H, W, 3)`` numpy arrays (OpenCV's order). Colours are chosen
to stay legible on pink/red mucosa: the prediction is cyan, the ground truth green, boxes
and text yellow; contours and text get a dark outline so they also read on bright
specular highlights.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Iterable, Sequence

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from vps_d2.data import CLASS_NAMES
from vps_d2.data.io import read_image

# WorstCaseKeeper is re-exported here for the old import path (it belongs to the evaluation).
from vps_d2.evaluation.worst_cases import WorstCaseKeeper, load_worst_cases
from vps_d2.io import read_gt_mask, write_image

__all__ = [
    "BOX_COLOR",
    "GT_COLOR",
    "OVERLAY_MODES",
    "PRED_COLOR",
    "TEXT_COLOR",
    "ContactSheet",
    "Visualizer",
    "WorstCaseKeeper",
    "draw_box",
    "draw_contours",
    "draw_worst_cases",
    "draw_text",
    "overlay_heatmap",
    "overlay_mask",
    "render_case",
    "save_worst_cases",
    "side_by_side",
]

logger = logging.getLogger(__name__)

PRED_COLOR = (255, 255, 0)  # cyan (BGR)
GT_COLOR = (0, 255, 0)  # green
BOX_COLOR = (0, 255, 255)  # yellow
TEXT_COLOR = (0, 255, 255)  # yellow
OUTLINE_COLOR = (0, 0, 0)
OVERLAY_MODES = ("mask", "contour", "heatmap")


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def _thickness(image: np.ndarray) -> int:
    return max(1, int(round(min(image.shape[:2]) / 250)))


def _font_scale(image: np.ndarray) -> float:
    """Text height in pixels for ``image``: legible at any size (12 px at least, about 1/22
    of the shorter side: 16 px on 352 x 352, 49 px on 1920 x 1080)."""
    return float(max(12, round(min(image.shape[:2]) / 22)))


@functools.lru_cache(maxsize=32)
def _font(px: int):
    """Pillow's built-in font at ``px`` pixels (scalable with Pillow >= 10.1; the bitmap
    font before, which :func:`_text_mask` scales)."""
    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow 10.0: no size
        return ImageFont.load_default()


@functools.lru_cache(maxsize=256)
def _text_mask(text: str, px: int) -> np.ndarray:
    """Coverage (h, w) float32 in [0, 1] of ``text`` drawn ``px`` pixels high (cap height
    + descenders), the glyphs' top at row 0. Drawn with Pillow: the same pixels whatever
    OpenCV is installed (cv2.putText's outlines differ between OpenCV 4 and 5)."""
    font = _font(px)
    left, top, right, bottom = font.getbbox(text)
    canvas = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
    ImageDraw.Draw(canvas).text((-left, -top), text, fill=255, font=font)
    mask = np.asarray(canvas, np.float32) / 255.0
    if not hasattr(font, "size"):  # the fixed-size bitmap font: scale it to px
        f = max(1, round(px / max(1, mask.shape[0])))
        mask = np.kron(mask, np.ones((f, f), np.float32))
    return mask


def text_size(text: str, scale: float) -> tuple[int, int]:
    """``(width, height)`` in pixels of ``text`` drawn by :func:`draw_text` at ``scale``."""
    h, w = _text_mask(text, int(round(scale))).shape
    return w, h


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"Expected a BGR uint8 image (H, W, 3), got {image.dtype} {image.shape}")


def _check_mask(mask: np.ndarray, image: np.ndarray, what: str) -> None:
    if mask.shape != image.shape[:2]:
        raise ValueError(f"{what} of shape {mask.shape} does not match the image {image.shape[:2]}")


def draw_text(
    image: np.ndarray,
    text: str,
    org: tuple[int, int],
    *,
    color: tuple[int, int, int] = TEXT_COLOR,
    scale: float | None = None,
) -> np.ndarray:
    """Draw ``text`` in place with its bottom-left corner at ``org`` (x, y), outlined in
    black (an outline 1/8 of the height wide), ``scale`` pixels high (default: legible for
    the image's size, :func:`_font_scale`). Clipped at the image's borders.

    Shapes: ``image`` (H, W, 3) uint8 BGR; returns it."""
    px = int(round(_font_scale(image) if scale is None else scale))
    mask = _text_mask(text, px)
    r = max(1, px // 8)
    pad = np.pad(mask, r)
    outline = cv2.dilate(pad, np.ones((2 * r + 1, 2 * r + 1), np.uint8))
    mh, mw = pad.shape
    x0, y0 = int(org[0]) - r, int(org[1]) - mh + r
    H, W = image.shape[:2]
    ys, xs = slice(max(0, y0), min(H, y0 + mh)), slice(max(0, x0), min(W, x0 + mw))
    if ys.start >= ys.stop or xs.start >= xs.stop:
        return image
    crop = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
    a_out, a_txt = outline[crop][..., None], pad[crop][..., None]
    region = image[ys, xs].astype(np.float32)
    region = region * (1 - a_out) + np.float32(OUTLINE_COLOR) * a_out
    region = region * (1 - a_txt) + np.float32(color) * a_txt
    image[ys, xs] = np.clip(np.round(region), 0, 255).astype(np.uint8)
    return image


def draw_contours(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    color: tuple[int, int, int] = PRED_COLOR,
    thickness: int | None = None,
) -> np.ndarray:
    """Outline the regions of a bool (H, W) ``mask`` on ``image`` in place (dark-edged)."""
    _check_mask(mask, image, "mask")
    t = _thickness(image) if thickness is None else thickness
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    if contours:
        cv2.drawContours(image, contours, -1, OUTLINE_COLOR, t + 2, cv2.LINE_AA)
        cv2.drawContours(image, contours, -1, color, t, cv2.LINE_AA)
    return image


def overlay_mask(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    color: tuple[int, int, int] = PRED_COLOR,
    alpha: float = 0.45,
    outline: bool = True,
) -> np.ndarray:
    """Blend ``color`` over the True pixels of a bool (H, W) ``mask``; returns a new image."""
    _check_image(image)
    _check_mask(mask, image, "mask")
    out = image.copy()
    if mask.any():
        px = out[mask].astype(np.float32)
        out[mask] = np.clip((1 - alpha) * px + alpha * np.float32(color), 0, 255).astype(np.uint8)
        if outline:
            draw_contours(out, mask, color=color)
    return out


def overlay_heatmap(
    image: np.ndarray, prob: np.ndarray, *, alpha: float = 0.6, threshold: float | None = 0.5
) -> np.ndarray:
    """Viridis heat map of a float (H, W) ``prob`` in [0, 1], blended in proportion to it.

    Pixels with probability 0 keep the frame; high ones turn yellow. The contour at
    ``threshold`` (None: no contour) is drawn in cyan.
    """
    _check_image(image)
    _check_mask(prob, image, "prob")
    p = np.clip(prob.astype(np.float32), 0.0, 1.0)
    heat = cv2.applyColorMap(np.round(p * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    w = (alpha * p)[..., None]
    out = np.clip((1 - w) * image + w * heat, 0, 255).astype(np.uint8)
    if threshold is not None:
        draw_contours(out, p >= threshold, color=PRED_COLOR)
    return out


def draw_box(
    image: np.ndarray,
    box: Sequence[float],
    *,
    label: str | None = None,
    color: tuple[int, int, int] = BOX_COLOR,
) -> np.ndarray:
    """Draw a normalised (cx, cy, w, h) ``box`` (fractions of the image) in place."""
    h, w = image.shape[:2]
    cx, cy, bw, bh = (float(v) for v in box)
    x0, y0 = int(round((cx - bw / 2) * w)), int(round((cy - bh / 2) * h))
    x1, y1 = int(round((cx + bw / 2) * w)), int(round((cy + bh / 2) * h))
    x0, x1 = max(0, min(x0, w - 1)), max(0, min(x1, w - 1))
    y0, y1 = max(0, min(y0, h - 1)), max(0, min(y1, h - 1))
    t = _thickness(image)
    cv2.rectangle(image, (x0, y0), (x1, y1), OUTLINE_COLOR, t + 2)
    cv2.rectangle(image, (x0, y0), (x1, y1), color, t)
    if label:
        scale = _font_scale(image)
        _, th = text_size(label, scale)
        ty = y0 - 2 * t - 2 if y0 - th - 2 * t - 2 > 0 else min(h - 2, y1 + th + 2 * t + 2)
        draw_text(image, label, (x0, ty), color=color, scale=scale)
    return image


def side_by_side(images: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate images of the same height left to right, (H, sum(W), 3)."""
    heights = {im.shape[0] for im in images}
    if len(heights) != 1:
        raise ValueError(f"side_by_side: images must share their height, got {sorted(heights)}")
    return np.ascontiguousarray(np.concatenate(list(images), axis=1))


def _class_label(scores, class_names: Sequence[str]) -> tuple[str, float]:
    s = _to_numpy(scores).astype(np.float64).reshape(-1)
    if s.size == 0:
        return "", 0.0
    if s.min() < 0 or s.max() > 1:  # logits: softmax
        s = np.exp(s - s.max())
        s /= s.sum()
    k = int(s.argmax())
    name = class_names[k] if k < len(class_names) else f"class {k}"
    return name, float(s[k])


class Visualizer:
    """Draw one model output (the streaming protocol's per-frame dict) on its frame.

    Args:
        overlay: "mask" (translucent fill + contour), "contour" or "heatmap".
        threshold: probability above which a pixel is polyp (the demo's
            ``--confidence-threshold``).
        alpha: opacity of the mask fill / heat map.
        class_names: names of ``"class_scores"`` entries (default: the SUN-SEG classes).
        show_text: draw the frame index and latency in the top-left corner.
    """

    def __init__(
        self,
        *,
        overlay: str = "mask",
        threshold: float = 0.5,
        alpha: float = 0.45,
        class_names: Sequence[str] = CLASS_NAMES,
        show_text: bool = True,
    ) -> None:
        if overlay not in OVERLAY_MODES:
            raise ValueError(f"overlay must be one of {OVERLAY_MODES}, got {overlay!r}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold (confidence) must be in [0, 1], got {threshold}")
        self.overlay, self.threshold, self.alpha = overlay, float(threshold), float(alpha)
        self.class_names = tuple(class_names)
        self.show_text = show_text

    def draw_prob(self, image: np.ndarray, prob) -> np.ndarray:
        """Overlay a float (H, W) probability map on a BGR (H, W, 3) image (new image)."""
        _check_image(image)
        p = _to_numpy(prob).astype(np.float32)
        _check_mask(p, image, "prob")
        if self.overlay == "heatmap":
            return overlay_heatmap(image, p, alpha=max(self.alpha, 0.6), threshold=self.threshold)
        mask = p >= self.threshold
        if self.overlay == "contour":
            return draw_contours(image.copy(), mask, color=PRED_COLOR)
        return overlay_mask(image, mask, color=PRED_COLOR, alpha=self.alpha)

    def draw_prediction(
        self,
        image: np.ndarray,
        output: dict,
        *,
        frame_index: int | None = None,
        latency_ms: float | None = None,
    ) -> np.ndarray:
        """Frame + ``output["prob"]`` overlay + box/class label (when predicted) + text.

        The box (normalised (cx, cy, w, h) in ``output["box"]``) is drawn only when the
        mask has foreground pixels, labelled with the top class of ``"class_scores"``
        (softmax applied when they are logits) and its score.
        """
        out = self.draw_prob(image, output["prob"])
        positive = bool((_to_numpy(output["prob"]) >= self.threshold).any())
        label = ""
        if "class_scores" in output:
            name, score = _class_label(output["class_scores"], self.class_names)
            label = f"{name} {score:.2f}" if name else ""
        box = output.get("box")
        if box is not None and positive:
            b = _to_numpy(box).reshape(-1)
            if b.size == 4 and b[2] > 0 and b[3] > 0:
                draw_box(out, b, label=label or None)
                label = ""
        if label and positive:
            h = out.shape[0]
            draw_text(out, label, (4, h - 6))
        if self.show_text:
            parts = []
            if frame_index is not None:
                parts.append(f"#{frame_index}")
            if latency_ms is not None:
                parts.append(f"{latency_ms:.1f} ms")
            if parts:
                scale = _font_scale(out)
                _, th = text_size("#0", scale)
                draw_text(out, "  ".join(parts), (4, th + 6), scale=scale)
        return out

    def draw_ground_truth(self, image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """Frame with the GT mask (green fill + contour), or "no GT" when ``mask`` is None."""
        _check_image(image)
        if mask is None:
            out = image.copy()
            draw_text(out, "no GT", (4, out.shape[0] - 6), color=GT_COLOR)
            return out
        if self.overlay == "contour":
            return draw_contours(image.copy(), mask, color=GT_COLOR)
        return overlay_mask(image, mask, color=GT_COLOR, alpha=self.alpha)

    def draw_frame(
        self,
        image: np.ndarray,
        output: dict,
        *,
        frame_index: int | None = None,
        latency_ms: float | None = None,
        gt_mask: np.ndarray | None = None,
        with_gt: bool = False,
    ) -> np.ndarray:
        """The demo's picture: prediction, and when ``with_gt`` the GT to its right (2W)."""
        pred = self.draw_prediction(image, output, frame_index=frame_index, latency_ms=latency_ms)
        if not with_gt:
            return pred
        return side_by_side([pred, self.draw_ground_truth(image, gt_mask)])


# ---------------------------------------------------------------------------- #
# Contact sheet
# ---------------------------------------------------------------------------- #
def grid_cols(n: int, preferred: int = 4) -> int:
    """Columns of a grid of ``n`` tiles with no empty cell: the divisor of ``n`` closest to
    ``preferred`` (the larger one on a tie; a prime ``n`` > 2 * preferred: one row)."""
    divisors = [c for c in range(1, n + 1) if n % c == 0]
    return min(divisors, key=lambda c: (abs(c - preferred), -c))


def _fit(text: str, width: int, scale: float) -> str:
    """``text`` shortened with "..." in its middle until it fits ``width`` pixels."""
    if text_size(text, scale)[0] <= width:
        return text
    keep = len(text)
    while keep > 1:
        keep -= 1
        short = text[: (keep + 1) // 2] + "..." + text[len(text) - keep // 2 :]
        if text_size(short, scale)[0] <= width:
            return short
    return "..."


class ContactSheet:
    """A grid of evenly spaced frames, collected from a stream with bounded memory; each
    tile with its caption (``label``, e.g. case, frame and Dice) in a strip above it, and
    no empty cell (:func:`grid_cols`).

    With ``total`` (the number of frames) the tiles are the frames at
    ``round(linspace(0, total - 1, num_tiles))``. Without it, every ``stride``-th frame is
    kept and the stride doubles whenever more than ``2 * num_tiles`` are held, so at most
    ``2 * num_tiles`` downscaled tiles are in memory whatever the length.
    """

    def __init__(
        self,
        *,
        num_tiles: int = 16,
        cols: int = 4,
        tile_width: int = 320,
        total: int | None = None,
    ) -> None:
        if num_tiles <= 0 or cols <= 0 or tile_width <= 0:
            raise ValueError("ContactSheet: num_tiles, cols and tile_width must be positive")
        self.num_tiles, self.cols, self.tile_width = num_tiles, cols, tile_width
        self.total = total if total and total > 0 else None
        self._targets: set[int] | None = None
        if self.total is not None:
            n = min(num_tiles, self.total)
            self._targets = {int(round(v)) for v in np.linspace(0, self.total - 1, n)}
        self._stride = 1
        self._tiles: dict[int, np.ndarray] = {}
        self._labels: dict[int, str] = {}

    def wants(self, index: int) -> bool:
        """Whether the frame ``index`` would be kept (skip drawing it otherwise)."""
        if self._targets is not None:
            return index in self._targets
        return index % self._stride == 0

    def add(self, index: int, image: np.ndarray, label: str | None = None) -> None:
        """Offer frame ``index`` (BGR (H, W, 3)) and its caption; kept downscaled when
        :meth:`wants` it (the caption defaults to "frame <index>")."""
        if not self.wants(index):
            return
        h, w = image.shape[:2]
        tw = min(self.tile_width, w)
        tile = cv2.resize(image, (tw, max(1, round(h * tw / w))), interpolation=cv2.INTER_AREA)
        self._tiles[index] = tile
        self._labels[index] = label if label is not None else f"frame {index}"
        if self._targets is None and len(self._tiles) > 2 * self.num_tiles:
            self._stride *= 2
            self._tiles = {i: t for i, t in self._tiles.items() if i % self._stride == 0}
            self._labels = {i: self._labels[i] for i in self._tiles}

    def selected(self) -> list[int]:
        """Frame indices of the tiles of the sheet, in order."""
        kept = sorted(self._tiles)
        if len(kept) <= self.num_tiles:
            return kept
        pick = np.linspace(0, len(kept) - 1, self.num_tiles)
        return [kept[int(round(i))] for i in pick]

    def __len__(self) -> int:
        return len(self.selected())

    def render(self) -> np.ndarray:
        """The grid as a BGR image (dark-gray background, 4-pixel gaps), each tile under
        its caption (fitted to the tile's width: captions never overlap), every cell filled.

        Shapes: returns (rows * (caption + th + gap) + gap, cols * (tw + gap) + gap, 3)."""
        idx = self.selected()
        if not idx:
            raise ValueError("ContactSheet: no frame was added")
        tiles = [self._tiles[i] for i in idx]
        th = max(t.shape[0] for t in tiles)
        tw = max(t.shape[1] for t in tiles)
        cols = grid_cols(len(tiles), self.cols)
        rows = math.ceil(len(tiles) / cols)
        gap = 4
        scale = max(12.0, round(tw / 30))
        cap = int(scale) + 8
        sheet = np.full(
            (rows * (cap + th) + (rows + 1) * gap, cols * tw + (cols + 1) * gap, 3), 32, np.uint8
        )
        for k, (i, tile) in enumerate(zip(idx, tiles)):
            r, c = divmod(k, cols)
            y, x = gap + r * (cap + th + gap), gap + c * (tw + gap)
            label = _fit(self._labels.get(i, f"frame {i}"), tw - 8, scale)
            draw_text(sheet, label, (x + 4, y + cap - 4), scale=scale)
            sheet[y + cap : y + cap + tile.shape[0], x : x + tile.shape[1]] = tile
        return sheet

    def save(self, path: str) -> str:
        """Write the sheet (PNG/JPEG by extension) atomically; returns ``path``."""
        write_image(path, self.render())
        logger.info("Contact sheet (%d frames) saved to %s", len(self), path)
        return path


# ---------------------------------------------------------------------------- #
# Worst cases (drawn from what the evaluation kept: vps_d2.evaluation.worst_cases)
# ---------------------------------------------------------------------------- #
def _prob_at(prob, height: int, width: int) -> np.ndarray:
    p = _to_numpy(prob)
    p = p.astype(np.float32) / 255.0 if p.dtype == np.uint8 else p.astype(np.float32)
    if p.shape != (height, width):
        p = cv2.resize(p, (width, height), interpolation=cv2.INTER_LINEAR)
    return p


def render_case(
    file_name: str,
    prob,
    gt_file_name: str | None,
    *,
    threshold: float = 0.5,
    title: str | None = None,
    visualizer: Visualizer | None = None,
) -> np.ndarray:
    """[frame + prediction | frame + GT] for one frame; ``prob`` (h, w) float in [0, 1]
    or uint8 0-255, at any size (resized to the frame)."""
    vis = visualizer or Visualizer(overlay="mask", threshold=threshold, show_text=False)
    image = read_image(file_name, "BGR")
    h, w = image.shape[:2]
    pred = vis.draw_prediction(image, {"prob": _prob_at(prob, h, w)})
    gt = vis.draw_ground_truth(image, read_gt_mask(gt_file_name, h, w))
    out = side_by_side([pred, gt])
    if title:
        scale = _font_scale(out)
        _, th = text_size(title, scale)
        draw_text(out, title, (4, th + 6), scale=scale)
    return out


def save_worst_cases(
    cases: Iterable[dict],
    output_dir: str,
    *,
    k: int | None = None,
    threshold: float = 0.5,
    metric: str = "Dice",
    contact_sheet: bool = True,
) -> list[str]:
    """Render the ``k`` lowest-scoring frames of ``cases`` into ``output_dir``.

    Args:
        cases: dicts with ``"file_name"`` (frame path), ``"prob"`` ((h, w) float in
            [0, 1] or uint8), ``"gt_file_name"`` (mask path or None), ``"score"`` (lower
            is worse) and optional ``"name"``; e.g. :meth:`WorstCaseKeeper.cases`.
        output_dir: one folder per split, e.g. ``OUTPUT_DIR/worst_cases/<dataset>``.
        k: how many to render (default all).
        metric: name of the score, written on each image.
        contact_sheet: also write ``worst_cases.png``, a grid of them.

    Returns:
        Paths of the written images ``<rank>_<name>.jpg`` (worst first), then the sheet.
    """
    ordered = sorted(cases, key=lambda c: float(c["score"]))
    if k is not None:
        ordered = ordered[:k]
    if not ordered:
        logger.info("save_worst_cases: no case to save in %s", output_dir)
        return []
    os.makedirs(output_dir, exist_ok=True)
    vis = Visualizer(overlay="mask", threshold=threshold, show_text=False)
    sheet = ContactSheet(num_tiles=len(ordered), cols=4, tile_width=640)
    paths = []
    for rank, case in enumerate(ordered):
        name = case.get("name") or os.path.splitext(os.path.basename(case["file_name"]))[0]
        title = f"{metric} {float(case['score']):.3f}  {name}"
        img = render_case(
            case["file_name"],
            case["prob"],
            case.get("gt_file_name"),
            threshold=threshold,
            title=title,
            visualizer=vis,
        )
        path = os.path.join(output_dir, f"{rank:02d}_{name}.jpg")
        write_image(path, img)
        paths.append(path)
        sheet.add(rank, img, label=f"#{rank + 1}  {name}  {metric} {float(case['score']):.3f}")
    if contact_sheet:
        paths.append(sheet.save(os.path.join(output_dir, "worst_cases.png")))
    logger.info("Saved the %d worst cases (%s) to %s", len(ordered), metric, output_dir)
    return paths


def draw_worst_cases(folder: str, *, threshold: float = 0.5) -> list[str]:
    """Draw the worst cases an evaluation kept in ``folder``
    (:func:`vps_d2.evaluation.write_worst_cases`, e.g. ``OUTPUT_DIR/worst_cases/<dataset>``)
    with :func:`save_worst_cases`, into the same folder. Returns the paths written ([]
    when the folder holds no index)."""
    cases, metric = load_worst_cases(folder)
    if not cases:
        return []
    return save_worst_cases(cases, folder, threshold=threshold, metric=metric or "Dice")
