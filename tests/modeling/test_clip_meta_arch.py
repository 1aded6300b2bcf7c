"""ClipVideoMetaArch: the shared streaming helper of clip models (windows, latency, memory)."""

import pytest
import torch

from vps_d2.modeling import ClipVideoMetaArch, WindowMemory, stream_video


class WindowRecorder(ClipVideoMetaArch):
    """Logit of a frame = its mean pixel value + 100 * (memory entries seen): records calls."""

    def __init__(self, clip_length=3, stream_mode="clip", memory_length=2):
        super().__init__(
            clip_length=clip_length,
            stream_mode=stream_mode,
            memory_length=memory_length,
            pixel_mean=[0.0] * 3,
            pixel_std=[1.0] * 3,
            test_size=(4, 4),
        )
        self.calls = []

    @classmethod
    def clip_contract(cls, cfg):
        return cls.stream_contract(cfg["L"], cfg["mode"])

    def forward_clip(self, images, memory, num_new):
        ids = images[:, 0, 0, 0].round().long().tolist()  # the frame index painted in
        self.calls.append((ids, num_new, [e for e in memory.entries]))
        seen = len(memory)
        memory.append(ids[-1])  # read before write
        logits = images.mean(dim=(1, 2, 3)).view(-1, 1, 1, 1).expand(-1, 1, 2, 2) + 100 * seen
        t = images.shape[0]
        return {
            "logits": logits,
            "class_logits": torch.zeros(t, 6),
            "boxes": torch.full((t, 4), 0.5),
            "box_scores": torch.ones(t),
        }


def _frames(n, vid="v"):
    return [
        {
            "image": torch.full((3, 4, 4), float(i), dtype=torch.uint8),
            "height": 8,
            "width": 6,
            "video_id": vid,
            "frame_index": i,
        }
        for i in range(n)
    ]


def test_clip_mode_consecutive_clips_latency_and_memory():
    m = WindowRecorder(clip_length=3, memory_length=2).eval()
    assert not m.online and m.frames_per_call == 3
    contract = WindowRecorder.clip_contract({"L": 3, "mode": "clip"})
    assert (contract.test_frames_per_batch, contract.latency, contract.online) == (3, 2, False)
    sliding = WindowRecorder.clip_contract({"L": 3, "mode": "sliding"})
    assert (sliding.test_frames_per_batch, sliding.latency, sliding.online) == (1, 0, True)
    frames = _frames(8)
    consumed = []

    def feed():
        for f in frames:
            consumed.append(f["frame_index"])
            yield f

    arrivals = []
    for frame, out in stream_video(m, feed()):
        arrivals.append((frame["frame_index"], len(consumed)))
        assert out["prob"].shape == (8, 6)
        assert out["class_scores"].shape == (6,) and out["box"].tolist() == [0.5] * 4
    # clips [0,1,2], [3,4,5], [6,7]; latency <= L - 1: frame i is answered once frame
    # min(3 * (i // 3) + 2, 7) was read
    assert [c[0] for c in m.calls] == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert [(i, n) for i, n in arrivals] == [(i, min(3 * (i // 3) + 3, 8)) for i in range(8)]
    assert all(n - 1 - i <= 2 for i, n in arrivals)
    # the memory of past clips is read before the write and bounded by memory_length
    assert [c[2] for c in m.calls] == [[], [2], [2, 5]]


def test_sliding_mode_repeats_the_first_frame_and_keeps_one_output_per_step():
    m = WindowRecorder(clip_length=3, stream_mode="sliding", memory_length=0).eval()
    assert m.online and m.frames_per_call == 1
    outs = list(m.stream(_frames(5)))
    assert len(outs) == 5
    assert [c[0] for c in m.calls] == [[0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4]]
    assert all(c[1] == 1 for c in m.calls)
    # the output is the newest frame's (its mean value), not the window's first frame
    assert [round(float(torch.logit(o["prob"][0, 0].double()))) for o in outs] == [0, 1, 2, 3, 4]


def test_forward_keeps_state_per_video_and_resets_on_a_new_one():
    m = WindowRecorder(clip_length=2, memory_length=3).eval()
    a = _frames(4, "a")
    m(a[:2])
    m(a[2:])
    assert [c[2] for c in m.calls] == [[], [1]]
    m(_frames(2, "b"))  # another video: memory cleared
    assert m.calls[-1][2] == []
    with pytest.raises(ValueError, match="consecutive frames of one video"):
        m([a[0], a[2]])


def test_window_memory_bounded():
    mem = WindowMemory(2)
    for i in range(5):
        mem.append(torch.zeros(i + 1))
    assert len(mem) == 2 and [e.numel() for e in mem.entries] == [4, 5]
    assert mem.nbytes() == 9 * 4
    assert len(WindowMemory(0)) == 0
    with pytest.raises(ValueError):
        WindowMemory(-1)
