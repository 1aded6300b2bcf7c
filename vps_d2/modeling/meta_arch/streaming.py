"""``stream_video``: the one loop that runs a video through a model's ``stream``.

Beside the meta-architecture protocol (:class:`~vps_d2.modeling.meta_arch.base.VideoMetaArch`):
the evaluation's inference loop, :class:`~vps_d2.engine.VideoPredictor` and the tests all
pair each frame with its output through it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

__all__ = ["stream_video"]


def stream_video(model, frames: Iterable[dict]) -> Iterator[tuple[dict, dict]]:
    """Yield ``(frame_input, output)`` pairs of one video through ``model.stream``.

    Frames the model has consumed but not yet answered (clip models) wait in a queue,
    so only the model's own look-ahead is ever held in memory.
    """
    pending: deque = deque()

    def feed() -> Iterator[dict]:
        for f in frames:
            pending.append(f)
            yield f

    for out in model.stream(feed()):
        yield pending.popleft(), out
    if pending:
        raise RuntimeError(f"{type(model).__name__}.stream returned fewer outputs than frames")
