"""Video and image input/output: readers of every source kind, atomic writers, and the
output-path checks of the tools.

- :mod:`.readers`: :class:`VideoReader` (video files, frame folders, globs, image lists,
  webcams) yielding the test frame dicts of :mod:`vps_d2.data`; ``read_gt_mask``,
  ``frame_to_bgr``.
- :mod:`.writers`: :class:`VideoWriter` (codec fallback, never half-written) and
  ``write_image``.
- :mod:`.paths`: ``check_output_path``, ``source_locations`` and
  ``check_not_overwriting_input`` (an output never overwrites its input).

It sits at the level of :mod:`vps_d2.data` (it uses its image readers and frame order);
nothing in data, modeling or below imports it.
"""

from .paths import check_not_overwriting_input, check_output_path, source_locations
from .readers import DEFAULT_FPS, VIDEO_EXTENSIONS, VideoReader, frame_to_bgr, read_gt_mask
from .writers import VideoWriter, codec_candidates, write_image

__all__ = [
    "DEFAULT_FPS",
    "VIDEO_EXTENSIONS",
    "VideoReader",
    "VideoWriter",
    "check_not_overwriting_input",
    "check_output_path",
    "codec_candidates",
    "frame_to_bgr",
    "read_gt_mask",
    "source_locations",
    "write_image",
]
