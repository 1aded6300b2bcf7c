"""PGN+AEN's exportable streaming step: one clip of CLIP_LENGTH frames with the clip memory
as fixed-size state (STREAM_MODE "clip").

State (M = MEMORY_LENGTH windows, L = CLIP_LENGTH frames each, oldest first):

* ``past_fused`` (M * L, C, h8, w8): the PGN's memory, the fused 1/8 maps of the last M
  windows' frames (CFFM mines them as past frames, positions -1, -2, ... from the newest);
* ``csa_states`` (M, L, q, D): the CSA's output states of the last M windows;
* ``count`` (1,): how many of the M windows are valid (0 at the start of a video).

The eager model reads a memory of 0..M windows; its reference selection (CFFM, by temporal
distance) and its clip-memory softmax depend on how many there are. The graph computes the
PGN and the AEN for every count k = 0..M on the k newest windows (the backbone once) and
keeps the branch of the actual count, so every clip equals the eager one (at (M + 1) times
the cost of the PGN and the AEN). The video's last, shorter clip is padded by repeating its
last frame (:class:`~vps_d2.modeling.export.StepStreamer`): its outputs are those of a full
window, not of the eager model's shorter one. STREAM_MODE "sliding" is not exported.
"""

from __future__ import annotations

import torch

from vps_d2.modeling.export import STREAMING_STEP_REGISTRY, ExportError, StreamingStep, TensorSpec

from .model import past_frames

__all__ = ["PGNAENStep"]


@STREAMING_STEP_REGISTRY.register_as("PGNAEN")
class PGNAENStep(StreamingStep):
    """``forward(image (L, 3, H, W), *state) -> (prob (L, H, W), *next_state)``."""

    def __init__(self, model) -> None:
        super().__init__(model)
        if model.stream_mode != "clip":
            raise ExportError(
                "PGN+AEN: MODEL.PGN_AEN.STREAM_MODE 'sliding' is not exported (its window "
                "overlaps the memory); export with STREAM_MODE 'clip'"
            )
        self.frames_per_step = model.clip_length
        self._slots = model.memory.maxlen
        with torch.no_grad():
            x = torch.zeros(1, model.clip_length, 3, *model.test_size, device=model.device)
            _, entry = model.window(x, [], model.clip_length)
        fused = (entry.get("pgn") or {}).get("fused")
        self._fused = tuple(fused.shape[2:]) if fused is not None else None
        aen = entry.get("aen")
        self._aen = tuple(aen.shape[2:]) if aen is not None else None

    def state_specs(self) -> list[TensorSpec]:
        m, n = self._slots, self.frames_per_step
        if m == 0:
            return []
        specs = []
        if self._fused is not None:
            specs.append(TensorSpec("past_fused", (m * n, *self._fused)))
        if self._aen is not None:
            specs.append(TensorSpec("csa_states", (m, n, *self._aen)))
        return specs + [TensorSpec("count", (1,))]

    def _entries(self, k: int, fused, states) -> list[dict]:
        """The k newest windows of the state as the eager memory's entries, oldest first."""
        n, m = self.frames_per_step, self._slots
        out = []
        for e in range(m - k, m):
            entry = {"num_new": n, "pgn": {}, "aen": None}
            if fused is not None:
                entry["pgn"] = {"fused": fused[e * n : (e + 1) * n][None]}
            if states is not None:
                entry["aen"] = states[e][None]
            out.append(entry)
        return out

    def forward(self, image: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m = self.model
        n = self.frames_per_step
        x = self.preprocess(image)  # L, 3, h, w
        feats = m.backbone(x)
        feats = {f: feats[f][None] for f in m.in_features}  # 1, L, C, h, w
        state = list(state)
        fused = state.pop(0) if self._slots and self._fused is not None else None
        states = state.pop(0) if self._slots and self._aen is not None else None
        count = state.pop(0) if self._slots else None
        logits = None
        for k in range(self._slots + 1):
            entries = self._entries(k, fused, states)
            out = m.pgn(feats, past_frames(entries, n, n), n)
            csa_state = None
            if m.aen is not None:
                mem = [e["aen"] for e in entries if e["aen"] is not None]
                lk, csa_state = m.aen(out.stage_features, feats, out.proposals, mem)
            else:
                lk = out.proposals
            if logits is None:
                logits, new_fused, new_state = lk, out.memory.get("fused"), csa_state
            else:
                hit = count == float(k)
                logits = torch.where(hit, lk, logits)
                if csa_state is not None:
                    new_state = torch.where(hit, csa_state, new_state)
        probs = self.to_probs(m._upsample(logits, x.shape[-2:])[0], image)
        next_state = []
        if self._slots:
            if fused is not None:
                next_state.append(torch.cat([fused[n:], new_fused[0]]))
            if states is not None:
                next_state.append(torch.cat([states[1:], new_state]))
            next_state.append(torch.clamp(count + 1, max=float(self._slots)))
        return (probs, *next_state)
