"""SALI's exportable streaming step: the previous frame and the memory banks as fixed-size
state with validity masks.

State, per level l (finest first; C channels, Ck / Cv key / value channels, h_l x w_l the
level's size at INPUT.SIZE_TEST, S = MEMORY.CAPACITY slots):

* ``prev<l>`` (1, C, h_l, w_l): the previous frame's RFB features (SAM's neighbour);
  ``prev_valid`` (1,) 0 at the start of a video (the frame is then its own neighbour);
* ``mem_keys<l>`` (S, Ck, h_l * w_l), ``mem_values<l>`` (S, Cv, h_l * w_l): one stored frame
  per slot; ``mem_valid<l>`` (S,) 0/1; ``mem_relevance<l>`` (S,) the latest read's relevance
  of each slot's frame (1e30 for a frame not read yet); ``mem_frame<l>`` (S,) the step
  index the slot was written at (its age, for FIFO and for ties);
* ``t`` (1,): frames seen in this video (writes every MEMORY.WRITE_EVERY frames).

Reads mask the empty slots out of the top-k (their affinity is -inf); a write goes to the
first empty slot, or replaces the frame MEMORY.EVICTION chooses ("relevance": the lowest
relevance, the oldest among ties; "fifo": the oldest), per level as the eager
:class:`~vps_d2.modeling.memory.MemoryBank` does. The slot order differs from the eager
bank's element order, which changes sums only by float rounding. Eviction "usage" is not
exported (a clear refusal). ``torchvision::deform_conv2d`` is traced as the plain-op
:func:`~vps_d2.modeling.layers.deform_conv2d_torch`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vps_d2.modeling.export import STREAMING_STEP_REGISTRY, ExportError, StreamingStep, TensorSpec
from vps_d2.modeling.memory import compute_affinity

__all__ = ["SALIStep"]

#: Relevance of a frame not read yet (the eager bank's +inf, finite for the graph).
UNREAD = 1e30


@STREAMING_STEP_REGISTRY.register_as("SALI")
class SALIStep(StreamingStep):
    """``forward(image (1, 3, H, W), *state) -> (prob (1, H, W), *next_state)``."""

    def __init__(self, model) -> None:
        super().__init__(model)
        banks = model.banks
        if banks and banks[0].eviction == "usage":
            raise ExportError(
                "SALI: MODEL.SALI.MEMORY.EVICTION 'usage' (per-element pruning) has no "
                "fixed-size export; export with EVICTION 'relevance' or 'fifo'"
            )
        with torch.no_grad():
            feats = model.extract(torch.zeros(1, 3, *model.test_size, device=model.device))
        self._levels = [tuple(f.shape[1:]) for f in feats]
        self._use_prev = model.sam is not None
        self._use_mem = model.lim is not None
        if self._use_mem:
            lim = model.lim
            self._ck = lim.key_proj[0].out_channels
            self._cv = lim.value_proj[0].out_channels
            self._slots = banks[0].capacity
            self._every = banks[0].write_every
            self._top_k = banks[0].top_k
            self._eviction = banks[0].eviction
            self._affinity = banks[0].affinity

    def state_specs(self) -> list[TensorSpec]:
        specs = []
        if self._use_prev:
            specs += [TensorSpec(f"prev{i}", (1, *s)) for i, s in enumerate(self._levels)]
            specs.append(TensorSpec("prev_valid", (1,)))
        if self._use_mem:
            s = self._slots
            for i, (_, h, w) in enumerate(self._levels):
                specs += [
                    TensorSpec(f"mem_keys{i}", (s, self._ck, h * w)),
                    TensorSpec(f"mem_values{i}", (s, self._cv, h * w)),
                    TensorSpec(f"mem_valid{i}", (s,)),
                    TensorSpec(f"mem_relevance{i}", (s,)),
                    TensorSpec(f"mem_frame{i}", (s,)),
                ]
            specs.append(TensorSpec("t", (1,)))
        return specs

    # ------------------------------------------------------------------ memory
    def _read(self, q: torch.Tensor, keys, values, valid):
        """Query keys (1, Ck, M), a level's slots -> readout (1, Cv, M), relevance (S,)."""
        s, ck, hw = keys.shape
        mk = keys.permute(1, 0, 2).reshape(1, ck, s * hw)
        mv = values.permute(1, 0, 2).reshape(1, values.shape[1], s * hw)
        aff = compute_affinity(mk, q, self._affinity, query_major=True)  # 1, M, S*hw
        ok = (valid > 0)[:, None].expand(s, hw).reshape(1, 1, s * hw)
        aff = torch.where(ok, aff, torch.full_like(aff, float("-inf")))
        m = q.shape[2]
        k = min(self._top_k, s * hw) if self._top_k > 0 else s * hw
        vals, idx = aff.topk(k, dim=2)  # 1, M, k
        weights = torch.softmax(vals, dim=2)
        cv = mv.shape[1]
        gathered = torch.gather(mv, 2, idx.reshape(1, 1, m * k).expand(1, cv, m * k))
        readout = (gathered.view(1, cv, m, k) * weights[:, None]).sum(3)
        relevance = aff.view(1, m, s, hw).amax(3).sum(1)[0] / m  # S
        return readout, relevance

    def _self_read(self, q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The empty-memory read of the eager model ("self"): the frame's own keys/values."""
        return self.model.lim.interact([q], [v], [q.flatten(2)], [v.flatten(2)])[0]

    def _victim(self, valid, relevance, frame):
        """The slot written: the first empty one, else the one the eviction policy picks."""
        if self._eviction == "fifo":
            key = frame
        else:
            low = relevance.min()
            key = torch.where(relevance == low, frame, torch.full_like(frame, 1e9))
        key = torch.where(valid > 0, key, torch.full_like(key, -1.0))
        return torch.argmin(key)

    # ------------------------------------------------------------------ step
    def forward(self, image: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m = self.model
        x = self.preprocess(image)
        cur = m.extract(x)
        n = len(self._levels)
        state = list(state)
        next_state: list[torch.Tensor] = []
        nbr = None
        if self._use_prev:
            prev, prev_valid, state = state[:n], state[n], state[n + 1 :]
            nbr = [torch.where(prev_valid > 0, p, c) for p, c in zip(prev, cur)]
            next_state += list(cur) + [torch.ones_like(prev_valid)]
        read = None
        mem = []
        if self._use_mem:
            mem = [state[5 * i : 5 * i + 5] for i in range(n)]
            t = state[5 * n]
            any_valid = mem[0][2].max() > 0
            new_relevance = []

            def read(keys, values):
                out = []
                for (mk, mv, valid, rel, _), k, v in zip(mem, keys, values):
                    r, relevance = self._read(k.flatten(2), mk, mv, valid)
                    bank = torch.cat([r.view_as(v), v], 1)
                    if m.empty_read == "zeros":
                        empty = torch.cat([torch.zeros_like(v), v], 1)
                    else:
                        empty = self._self_read(k, v)
                    out.append(torch.where(any_valid, bank, empty))
                    new_relevance.append(torch.where(any_valid & (valid > 0), relevance, rel))
                return out

        feats_out, keys, values = m.features_to_decode(cur, nbr, read)
        maps = m.decode(feats_out)
        logits = maps[m.final_output]
        if self._use_mem:
            if m.write_mask == "level":
                masks = [maps[name] for name in m.decoder.level_names]
                stored = [
                    m.lim.memory_values([v], mk, is_logits=True)[0] for v, mk in zip(values, masks)
                ]
            else:
                stored = m.lim.memory_values(values, logits, is_logits=True)
            write = torch.remainder(t, float(self._every)) == 0  # (1,)
            for (mk, mv, valid, _, frame), rel, k, v in zip(mem, new_relevance, keys, stored):
                slot = self._victim(valid, rel, frame)
                hit = (torch.arange(valid.shape[0]) == slot) & write  # S
                h3 = hit[:, None, None]
                next_state += [
                    torch.where(h3, k.flatten(2), mk),
                    torch.where(h3, v.flatten(2), mv),
                    torch.where(hit, torch.ones_like(valid), valid),
                    torch.where(hit, torch.full_like(rel, UNREAD), rel),
                    torch.where(hit, t.expand_as(frame), frame),
                ]
            next_state.append(t + 1)
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        prob = self.to_probs(logits, image)
        if m.test_minmax_norm:
            lo = prob.amin((1, 2), keepdim=True)
            hi = prob.amax((1, 2), keepdim=True)
            prob = (prob - lo) / (hi - lo + 1e-8)
        return (prob, *next_state)
