"""A bounded key/value memory bank for online video models (space-time memory reading).

One implementation, shared by every method that keeps a long-term memory of past frames.
Shapes (``B`` batch, ``Ck`` key channels, ``Cv`` value channels, ``N`` memory elements,
``M`` query positions; a frame written with spatial size ``h x w`` adds ``h * w`` elements):

* memory keys ``(B, Ck, N)``, memory values ``(B, Cv, N)``;
* query keys ``(B, Ck, M)`` -> readout ``(B, Cv, M)``.

Reading (:func:`memory_read`) uses the L2 affinity of STCN,

    s(k_m, q) = (-|k_m|^2 + 2 k_m^T q) / sqrt(Ck)            (B, N, M)

(``-|k_m - q|^2`` up to a term constant over the memory), or with ``affinity="dot"`` the
scaled dot product of attention, ``s(k_m, q) = k_m^T q / sqrt(Ck)``; it keeps the ``top_k``
largest affinities of every query position, softmaxes over the kept elements and sums their
values.

:class:`MemoryBank` stores whole frames, at most ``capacity`` frames' worth of elements,
and says when a frame is due (``should_write``: every ``write_every`` frames, frame 0
included). The protocol is *read before write*: frame ``t`` reads the memory of frames
``< t`` and is then written (when due). When the bank is full a write makes room first,
by one of three policies:

* ``"relevance"`` (the SALI paper's "least relevant historical frame by the L2
  similarities"): after every read, each stored frame ``f`` gets the relevance
  ``r_f = mean over batch and query positions of max_{j in f} s(k_j, q)`` (``s`` the
  bank's affinity) -- how close the best-matching element of ``f`` is to each pixel of the
  frame being segmented; the frame
  with the lowest ``r_f`` at the latest read is evicted (ties: the oldest; frames never
  read yet are kept).
* ``"usage"`` (XMem-style, as SALI's public code): every read adds, per element, the sum
  over query positions of the top-k softmax weights it received (``usage``) and 1 to its
  ``life``; after a write that brings the bank above ``capacity * h * w`` elements, the
  elements stored before this write are pruned, per batch sample, to the ones with the
  highest ``usage / life`` (elements never read yet count as +inf), so that the total is
  exactly the capacity. The frame just written is always kept whole.
* ``"fifo"``: the oldest frame is evicted.
"""

from __future__ import annotations

import logging
import math

import torch

__all__ = [
    "AFFINITIES",
    "EVICTION_POLICIES",
    "MemoryBank",
    "compute_affinity",
    "dot_affinity",
    "l2_affinity",
    "memory_read",
]

logger = logging.getLogger(__name__)

EVICTION_POLICIES = ("relevance", "usage", "fifo")
AFFINITIES = ("l2", "dot")  # negative squared L2 distance (STCN), scaled dot product


def _check_affinity_shapes(name: str, mem_key: torch.Tensor, query_key: torch.Tensor) -> None:
    if mem_key.dim() != 3 or query_key.dim() != 3 or mem_key.shape[:2] != query_key.shape[:2]:
        raise ValueError(
            f"{name}: need mem_key (B, Ck, N) and query_key (B, Ck, M) with the same B, Ck; "
            f"got {tuple(mem_key.shape)} and {tuple(query_key.shape)}"
        )


def l2_affinity(
    mem_key: torch.Tensor, query_key: torch.Tensor, query_major: bool = False
) -> torch.Tensor:
    """Affinity ``(-|k_m|^2 + 2 k_m^T q) / sqrt(Ck)``.

    Args:
        mem_key: (B, Ck, N).
        query_key: (B, Ck, M).
        query_major: return (B, M, N) instead of (B, N, M) (memory index last, which makes
            top-k over the memory much faster on CPU).
    Returns:
        (B, N, M), or (B, M, N) with ``query_major``.
    """
    _check_affinity_shapes("l2_affinity", mem_key, query_key)
    ck = mem_key.shape[1]
    # One matrix product with an extra channel: [k; |k|^2] . [2q; -1] / sqrt(Ck) (no
    # element-wise pass over the (N, M) matrix).
    mk = torch.cat([mem_key, mem_key.pow(2).sum(1, keepdim=True)], 1)  # B, Ck+1, N
    q = torch.cat([2 * query_key, -torch.ones_like(query_key[:, :1])], 1) / math.sqrt(ck)
    if query_major:
        return torch.bmm(q.transpose(1, 2), mk)  # B, M, N
    return torch.bmm(mk.transpose(1, 2), q)  # B, N, M


def dot_affinity(
    mem_key: torch.Tensor, query_key: torch.Tensor, query_major: bool = False
) -> torch.Tensor:
    """Affinity ``k_m^T q / sqrt(Ck)`` (scaled dot product).

    Args:
        mem_key: (B, Ck, N).
        query_key: (B, Ck, M).
        query_major: return (B, M, N) instead of (B, N, M).
    Returns:
        (B, N, M), or (B, M, N) with ``query_major``.
    """
    _check_affinity_shapes("dot_affinity", mem_key, query_key)
    q = query_key / math.sqrt(mem_key.shape[1])
    if query_major:
        return torch.bmm(q.transpose(1, 2), mem_key)  # B, M, N
    return torch.bmm(mem_key.transpose(1, 2), q)  # B, N, M


_AFFINITY_FNS = {"l2": l2_affinity, "dot": dot_affinity}


def _check_affinity_name(where: str, name: str) -> None:
    if name not in AFFINITIES:
        raise ValueError(f"{where}: affinity must be one of {AFFINITIES}, got {name!r}")


def compute_affinity(
    mem_key: torch.Tensor, query_key: torch.Tensor, kind: str = "l2", query_major: bool = False
) -> torch.Tensor:
    """:func:`l2_affinity` (``kind="l2"``) or :func:`dot_affinity` (``kind="dot"``):
    mem_key (B, Ck, N), query_key (B, Ck, M) -> (B, N, M) (or (B, M, N), ``query_major``)."""
    _check_affinity_name("compute_affinity", kind)
    return _AFFINITY_FNS[kind](mem_key, query_key, query_major=query_major)


def memory_read(
    query_key: torch.Tensor,
    mem_key: torch.Tensor,
    mem_value: torch.Tensor,
    top_k: int = 20,
    query_chunk: int = 0,
    frame_slots: torch.Tensor | None = None,
    num_frames: int = 0,
    affinity: str = "l2",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Top-k softmax read of a key/value memory (differentiable).

    Args:
        query_key: (B, Ck, M).
        mem_key: (B, Ck, N).
        mem_value: (B, Cv, N).
        top_k: memory elements kept per query position (<= 0 or >= N: all of them).
        query_chunk: process this many query positions at a time (0: all at once); bounds
            the (B, chunk, N) affinity held in memory.
        frame_slots: optional (B, N) long, the slot (0..num_frames-1) of each element's
            frame; when given, the per-frame relevance is returned.
        num_frames: number of frame slots (with ``frame_slots``).
        affinity: ``"l2"`` (STCN's, default) or ``"dot"`` (scaled dot product).
    Returns:
        readout (B, Cv, M); usage (B, N), the sum over query positions of the softmax weight
        each element received; relevance (B, num_frames), the mean over query positions of
        each frame's best affinity (None without ``frame_slots``).
    """
    _check_affinity_name("memory_read", affinity)
    affinity_fn = _AFFINITY_FNS[affinity]
    b, ck, m = query_key.shape
    if mem_key.shape[0] != b or mem_key.shape[1] != ck or mem_value.shape[0] != b:
        raise ValueError(
            f"memory_read: query_key {tuple(query_key.shape)}, mem_key {tuple(mem_key.shape)} "
            f"and mem_value {tuple(mem_value.shape)} disagree (need (B, Ck, M), (B, Ck, N), "
            "(B, Cv, N))"
        )
    n = mem_key.shape[2]
    if n == 0 or mem_value.shape[2] != n:
        raise ValueError(
            f"memory_read: empty or inconsistent memory (keys N={n}, values N={mem_value.shape[2]})"
        )
    cv = mem_value.shape[1]
    k = n if top_k <= 0 else min(top_k, n)
    chunk = m if query_chunk <= 0 else min(query_chunk, m)
    readouts = []
    usage = mem_key.new_zeros(b, n)
    relevance = None
    blocks = False  # frames stored as equal contiguous blocks: a reshape replaces the scatter
    if frame_slots is not None:
        relevance = mem_key.new_zeros(b, num_frames)
        if num_frames and n % num_frames == 0:
            per = torch.arange(num_frames, device=frame_slots.device).repeat_interleave(
                n // num_frames
            )
            blocks = bool((frame_slots == per).all())
    for start in range(0, m, chunk):
        q = query_key[:, :, start : start + chunk]
        mc = q.shape[2]
        aff = affinity_fn(mem_key, q, query_major=True)  # B, mc, N
        if frame_slots is not None:
            with torch.no_grad():
                if blocks:
                    best = aff.view(b, mc, num_frames, n // num_frames).amax(3)
                else:
                    best = aff.new_full((b, mc, num_frames), float("-inf"))
                    best.scatter_reduce_(2, frame_slots[:, None].expand(-1, mc, -1), aff, "amax")
                relevance += best.sum(1)
        if k < n:
            vals, idx = aff.topk(k, dim=2)  # B, mc, k
            weights = torch.softmax(vals, dim=2)
            gathered = torch.gather(
                mem_value, 2, idx.reshape(b, 1, mc * k).expand(-1, cv, -1)
            ).view(b, cv, mc, k)
            readouts.append((gathered * weights[:, None]).sum(3))  # B, Cv, mc
            with torch.no_grad():
                usage.scatter_add_(1, idx.reshape(b, mc * k), weights.reshape(b, mc * k))
        else:
            weights = torch.softmax(aff, dim=2)  # B, mc, N
            readouts.append(torch.bmm(mem_value, weights.transpose(1, 2)))  # B, Cv, mc
            with torch.no_grad():
                usage += weights.sum(1)
    if relevance is not None:
        relevance = relevance / m
    return torch.cat(readouts, dim=2), usage.detach(), relevance


class MemoryBank:
    """Bounded memory of past frames' keys and values (see the module docstring).

    State (after the first write): ``keys`` (B, Ck, N), ``values`` (B, Cv, N),
    ``frame_ids`` (B, N) long (the ``frame_index`` each element was written with),
    ``usage`` and ``life`` (B, N) float, ``relevance`` {frame_index: float}.
    ``affinity``: ``"l2"`` (default) or ``"dot"``, used for reading and for the relevance.
    """

    def __init__(
        self,
        *,
        capacity: int = 35,
        write_every: int = 5,
        top_k: int = 20,
        eviction: str = "relevance",
        query_chunk: int = 0,
        affinity: str = "l2",
    ) -> None:
        _check_affinity_name("MemoryBank", affinity)
        if capacity < 1:
            raise ValueError(f"MemoryBank: capacity must be >= 1 frame, got {capacity}")
        if write_every < 1:
            raise ValueError(f"MemoryBank: write_every must be >= 1, got {write_every}")
        if eviction not in EVICTION_POLICIES:
            raise ValueError(
                f"MemoryBank: eviction must be one of {EVICTION_POLICIES}, got {eviction!r}"
            )
        self.capacity = int(capacity)
        self.write_every = int(write_every)
        self.top_k = int(top_k)
        self.eviction = eviction
        self.query_chunk = int(query_chunk)
        self.affinity = affinity
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget everything (start of a video)."""
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None
        self.frame_ids: torch.Tensor | None = None
        self.usage: torch.Tensor | None = None
        self.life: torch.Tensor | None = None
        self.relevance: dict[int, float] = {}
        self.elements_per_frame = 0

    @property
    def is_empty(self) -> bool:
        return self.keys is None or self.keys.shape[2] == 0

    @property
    def num_elements(self) -> int:
        """Elements per batch sample currently stored (N)."""
        return 0 if self.keys is None else int(self.keys.shape[2])

    @property
    def capacity_elements(self) -> int:
        return self.capacity * self.elements_per_frame

    def stored_frames(self) -> list[int]:
        """Frame indices with at least one element stored (any batch sample), oldest first."""
        if self.frame_ids is None:
            return []
        return sorted(int(f) for f in torch.unique(self.frame_ids))

    @property
    def num_frames(self) -> int:
        return len(self.stored_frames())

    def nbytes(self) -> int:
        """Bytes held by the stored tensors."""
        ts = (self.keys, self.values, self.frame_ids, self.usage, self.life)
        return sum(t.numel() * t.element_size() for t in ts if t is not None)

    def should_write(self, frame_index: int) -> bool:
        """True on frames 0, write_every, 2 * write_every, ..."""
        return frame_index % self.write_every == 0

    # ------------------------------------------------------------------ read / write
    def read(self, query_key: torch.Tensor) -> torch.Tensor:
        """Query keys (B, Ck, M) -> readout (B, Cv, M); updates usage / relevance."""
        if self.is_empty:
            raise RuntimeError("MemoryBank.read: the memory is empty (write a frame first)")
        frames = self.stored_frames()
        slots = None
        if self.eviction == "relevance":
            lookup = torch.full(
                (max(frames) + 1,), -1, dtype=torch.long, device=self.frame_ids.device
            )
            lookup[torch.tensor(frames, device=lookup.device)] = torch.arange(
                len(frames), device=lookup.device
            )
            slots = lookup[self.frame_ids]
        readout, usage, relevance = memory_read(
            query_key,
            self.keys,
            self.values,
            self.top_k,
            self.query_chunk,
            slots,
            len(frames),
            affinity=self.affinity,
        )
        # out of place: the bank may hold inference-mode tensors
        self.usage = self.usage + usage
        self.life = self.life + 1
        if relevance is not None:
            rel = relevance.mean(0).tolist()
            self.relevance = {f: r for f, r in zip(frames, rel)}
        return readout

    def write(self, key: torch.Tensor, value: torch.Tensor, frame_index: int) -> None:
        """Store one frame: key (B, Ck, n), value (B, Cv, n) with n = h * w of that frame."""
        if (
            key.dim() != 3
            or value.dim() != 3
            or key.shape[0] != value.shape[0]
            or (key.shape[2] != value.shape[2])
        ):
            raise ValueError(
                f"MemoryBank.write: need key (B, Ck, n) and value (B, Cv, n), got "
                f"{tuple(key.shape)} and {tuple(value.shape)}"
            )
        b, _, n = key.shape
        if self.is_empty:
            self.elements_per_frame = n
        elif n != self.elements_per_frame or b != self.keys.shape[0]:
            raise ValueError(
                f"MemoryBank.write: frame {frame_index} has B={b}, n={n} elements but the bank "
                f"holds B={self.keys.shape[0]}, n={self.elements_per_frame} per frame "
                "(reset() between videos of different sizes)"
            )
        if frame_index in self.stored_frames():
            raise ValueError(f"MemoryBank.write: frame {frame_index} is already stored")
        if self.eviction in ("relevance", "fifo") and self.num_frames >= self.capacity:
            self._evict_frame()
        ids = torch.full((b, n), int(frame_index), dtype=torch.long, device=key.device)
        zeros = key.new_zeros(b, n, dtype=torch.float32)
        if self.is_empty:
            self.keys, self.values, self.frame_ids = key, value, ids
            self.usage, self.life = zeros, zeros.clone()
        else:
            self.keys = torch.cat([self.keys, key], 2)
            self.values = torch.cat([self.values, value], 2)
            self.frame_ids = torch.cat([self.frame_ids, ids], 1)
            self.usage = torch.cat([self.usage, zeros], 1)
            self.life = torch.cat([self.life, zeros.clone()], 1)
        if self.eviction == "usage" and self.num_elements > self.capacity_elements:
            self._prune_by_usage(keep_new=n)

    # ------------------------------------------------------------------ eviction
    def _keep(self, index: torch.Tensor) -> None:
        """Keep the elements ``index`` (B, N') of every sample, in that order."""
        b = index.shape[0]
        ck, cv = self.keys.shape[1], self.values.shape[1]
        self.keys = torch.gather(self.keys, 2, index[:, None].expand(b, ck, -1))
        self.values = torch.gather(self.values, 2, index[:, None].expand(b, cv, -1))
        self.frame_ids = torch.gather(self.frame_ids, 1, index)
        self.usage = torch.gather(self.usage, 1, index)
        self.life = torch.gather(self.life, 1, index)

    def _evict_frame(self) -> None:
        frames = self.stored_frames()
        if self.eviction == "fifo":
            victim = frames[0]
        else:
            scores = [self.relevance.get(f, float("inf")) for f in frames]
            low = min(scores)
            victim = frames[scores.index(low)]  # first = oldest among ties
        keep = (self.frame_ids[0] != victim).nonzero()[:, 0]
        self._keep(keep[None].expand(self.frame_ids.shape[0], -1))
        self.relevance.pop(victim, None)
        logger.debug("MemoryBank: evicted frame %d (%s)", victim, self.eviction)

    def _prune_by_usage(self, keep_new: int) -> None:
        n_old = self.num_elements - keep_new
        n_keep_old = self.capacity_elements - keep_new
        score = torch.where(
            self.life[:, :n_old] > 0,
            self.usage[:, :n_old] / self.life[:, :n_old].clamp(min=1),
            torch.full_like(self.usage[:, :n_old], float("inf")),
        )
        top = score.topk(n_keep_old, dim=1).indices.sort(dim=1).values  # keep time order
        new = torch.arange(n_old, self.num_elements, device=top.device)
        self._keep(torch.cat([top, new[None].expand(top.shape[0], -1)], 1))
