"""Drawing predictions: overlays, side-by-side GT, contact sheets, worst-case dumps."""

from .visualizer import (
    BOX_COLOR,
    GT_COLOR,
    OVERLAY_MODES,
    PRED_COLOR,
    TEXT_COLOR,
    ContactSheet,
    Visualizer,
    WorstCaseKeeper,
    draw_box,
    draw_contours,
    draw_text,
    overlay_heatmap,
    overlay_mask,
    render_case,
    save_worst_cases,
    side_by_side,
)

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
    "draw_text",
    "overlay_heatmap",
    "overlay_mask",
    "render_case",
    "save_worst_cases",
    "side_by_side",
]
