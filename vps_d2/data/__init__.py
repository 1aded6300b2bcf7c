"""Video data: dataset records, readers, clip sampling, mappers and loaders.

Video record (one per video/case; what every registered dataset loader returns)::

    {
        "dataset_name": str,          # registered name, e.g. "sun_seg_easy_unseen"
        "split": str,                 # e.g. "TestEasyDataset/Unseen", "train"
        "video_id": str,              # case name, e.g. "case1_1"
        "length": int,                # number of frames
        "file_names": list[str],      # frame paths in temporal order
        "gt_file_names": list[str | None],  # mask path per frame (None: no GT)
        "frame_names": list[str],     # file stems, e.g. "..._image0001"
        "class_id": int,              # pathological class (CLASS_NAMES index), -1 unknown
        "class_name": str,            # "" when unknown
        "boxes": Sequence[list[float] | None],  # per frame [x_min, y_min, w, h] in
                                      # pixels (a lazy MaskBoxes when derived from masks)
    }

Training mapper output (one clip of T frames, augmentation shared by all frames)::

    {
        "image": uint8 Tensor (T, 3, H, W),    # INPUT.FORMAT channel order
        "sem_seg": float Tensor (T, H, W),     # 1 = polyp, 0 = background
        "class_id": int, "boxes": float Tensor (T, 4),  # (cx, cy, w, h) / image size
        "box_valid": bool Tensor (T,),         # False where the frame has no polyp
        "frame_names": list[str], "frame_indices": list[int], "video_id": str,
    }

Test frames (streamed one at a time, in order, at their original size)::

    {
        "image": uint8 Tensor (3, H, W), "height": int, "width": int,
        "video_id": str, "frame_index": int, "video_length": int,
        "file_name": str, "gt_file_name": str | None, "frame_name": str,
        "class_id": int,              # the video's class, -1 unknown
        "gt_box": list[float] | None, # [x_min, y_min, w, h] pixels, None: no box
    }
"""

from .catalog import DatasetCatalog, Metadata, MetadataCatalog

CLASS_NAMES = (
    "low_grade_adenoma",
    "high_grade_adenoma",
    "hyperplastic_polyp",
    "traditional_serrated_adenoma",
    "sessile_serrated_lesion",
    "invasive_cancer",
)

from . import datasets  # noqa: E402,F401  (registers the built-in datasets at import)
from .build import build_test_loader, build_train_loader, get_video_records  # noqa: E402
from .frame_order import sort_frames  # noqa: E402

__all__ = [
    "CLASS_NAMES",
    "DatasetCatalog",
    "Metadata",
    "MetadataCatalog",
    "build_test_loader",
    "build_train_loader",
    "get_video_records",
    "sort_frames",
]
