"""MemoryBank / memory_read (vps_d2/modeling/memory.py): numbers against direct computations."""

from __future__ import annotations

import math

import pytest
import torch

from vps_d2.modeling.memory import (
    MemoryBank,
    compute_affinity,
    dot_affinity,
    l2_affinity,
    memory_read,
)


def _naive_read(q, mk, mv, top_k):
    """Loop version: per query position, keep the top_k affinities, softmax, weighted sum."""
    b, ck, m = q.shape
    out = torch.zeros(b, mv.shape[1], m, dtype=torch.float64)
    for i in range(b):
        for j in range(m):
            # -|k - q|^2 + |q|^2: independent of the (2 k.q - |k|^2) formula
            s = [
                (-((mk[i, :, n] - q[i, :, j]) ** 2).sum() + (q[i, :, j] ** 2).sum()).item()
                / math.sqrt(ck)
                for n in range(mk.shape[2])
            ]
            order = sorted(range(len(s)), key=lambda n: -s[n])[:top_k]
            mx = max(s[n] for n in order)
            w = [math.exp(s[n] - mx) for n in order]
            tot = sum(w)
            for n, wn in zip(order, w):
                out[i, :, j] += wn / tot * mv[i, :, n].double()
    return out


def test_l2_affinity_matches_negative_squared_distance():
    g = torch.Generator().manual_seed(0)
    mk, q = torch.randn(2, 4, 7, generator=g), torch.randn(2, 4, 5, generator=g)
    expected = (
        -(torch.cdist(mk.transpose(1, 2), q.transpose(1, 2)) ** 2) + (q**2).sum(1, keepdim=True)
    ) / 2.0  # sqrt(Ck) = 2
    assert torch.allclose(l2_affinity(mk, q), expected, atol=1e-4)
    with pytest.raises(ValueError, match="l2_affinity"):
        l2_affinity(mk, torch.randn(2, 3, 5))


@pytest.mark.parametrize("top_k,chunk", [(3, 0), (3, 2), (100, 0), (0, 4)])
def test_memory_read_topk_softmax(top_k, chunk):
    g = torch.Generator().manual_seed(1)
    q, mk, mv = (
        torch.randn(2, 4, 6, generator=g),
        torch.randn(2, 4, 9, generator=g),
        torch.randn(2, 5, 9, generator=g),
    )
    out, usage, rel = memory_read(q, mk, mv, top_k=top_k, query_chunk=chunk)
    k_eff = 9 if top_k <= 0 else min(top_k, 9)
    assert out.shape == (2, 5, 6) and rel is None
    assert torch.allclose(out.double(), _naive_read(q, mk, mv, k_eff), atol=1e-5)
    # every query position distributes a total weight of 1 over the memory
    assert torch.allclose(usage.sum(1), torch.full((2,), 6.0), atol=1e-5)
    assert int((usage[0] > 0).sum()) <= min(9, k_eff * 6)


@pytest.mark.parametrize("slots", [[0, 0, 1, 1, 2, 2], [2, 0, 1, 0, 2, 1]])
def test_memory_read_frame_relevance(slots):
    """Relevance of frame f = mean over queries of its best affinity (contiguous frames use a
    reshape, interleaved ones a scatter: both against a direct computation)."""
    g = torch.Generator().manual_seed(2)
    q, mk, mv = (
        torch.randn(1, 4, 5, generator=g),
        torch.randn(1, 4, 6, generator=g),
        torch.randn(1, 2, 6, generator=g),
    )
    _, _, rel = memory_read(
        q, mk, mv, top_k=2, query_chunk=2, frame_slots=torch.tensor([slots]), num_frames=3
    )
    dist = torch.cdist(mk[0].T, q[0].T) ** 2  # N, M
    aff = (-dist + (q[0] ** 2).sum(0)) / 2.0
    expected = [aff[[n for n in range(6) if slots[n] == f]].amax(0).mean() for f in range(3)]
    assert torch.allclose(rel[0], torch.stack(expected), atol=1e-4)


def test_memory_read_is_differentiable():
    q = torch.randn(1, 4, 5, requires_grad=True)
    mk = torch.randn(1, 4, 8, requires_grad=True)
    mv = torch.randn(1, 3, 8, requires_grad=True)
    out, _, _ = memory_read(q, mk, mv, top_k=3)
    out.pow(2).sum().backward()
    for t in (q, mk, mv):
        assert t.grad is not None and t.grad.abs().sum() > 0


def test_memory_read_rejects_bad_shapes():
    with pytest.raises(ValueError, match="memory_read"):
        memory_read(torch.randn(1, 4, 5), torch.randn(1, 4, 8), torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match="empty"):
        memory_read(torch.randn(1, 4, 5), torch.randn(1, 4, 0), torch.randn(1, 3, 0))


def _frame(value: float, n: int = 2, ck: int = 2, cv: int = 1):
    """A frame whose keys all equal `value` (one key channel) and values equal `value`."""
    key = torch.zeros(1, ck, n)
    key[:, 0] = value
    return key, torch.full((1, cv, n), float(value))


def test_write_cadence_and_bad_arguments():
    bank = MemoryBank(capacity=3, write_every=5)
    assert [t for t in range(16) if bank.should_write(t)] == [0, 5, 10, 15]
    assert MemoryBank(write_every=1).should_write(7)
    for kwargs, match in [
        ({"capacity": 0}, "capacity"),
        ({"write_every": 0}, "write_every"),
        ({"eviction": "lru"}, "eviction"),
    ]:
        with pytest.raises(ValueError, match=match):
            MemoryBank(**kwargs)


def test_read_before_write_and_single_frame_read():
    bank = MemoryBank(capacity=2, write_every=1, top_k=20)
    with pytest.raises(RuntimeError, match="empty"):
        bank.read(torch.randn(1, 2, 3))
    k, v = torch.randn(1, 2, 1), torch.tensor([[[3.0]], [[-1.0]]]).view(1, 2, 1)
    bank.write(k, v, frame_index=0)
    # one element in memory: the softmax weight is 1, the readout is its value everywhere
    out = bank.read(torch.randn(1, 2, 4))
    assert torch.allclose(out, v.expand(1, 2, 4))
    assert bank.num_frames == 1 and bank.num_elements == 1


def test_write_errors():
    bank = MemoryBank(capacity=2)
    bank.write(*_frame(1.0), frame_index=0)
    with pytest.raises(ValueError, match="already stored"):
        bank.write(*_frame(2.0), frame_index=0)
    with pytest.raises(ValueError, match="n=3"):
        bank.write(*_frame(2.0, n=3), frame_index=1)
    with pytest.raises(ValueError, match="need key"):
        bank.write(torch.zeros(1, 2, 2), torch.zeros(1, 1, 3), frame_index=2)


def test_fifo_capacity_and_order():
    bank = MemoryBank(capacity=3, write_every=1, eviction="fifo")
    for t in range(6):
        bank.write(*_frame(float(t)), frame_index=t)
        assert bank.num_frames == min(t + 1, 3)
        assert bank.num_elements == 2 * bank.num_frames
    assert bank.stored_frames() == [3, 4, 5]
    assert torch.equal(bank.values[0, 0], torch.tensor([3.0, 3, 4, 4, 5, 5]))


def test_relevance_evicts_frame_least_similar_to_last_query():
    bank = MemoryBank(capacity=3, write_every=1, eviction="relevance")
    for t, val in enumerate([0.0, 5.0, 1.0]):
        bank.write(*_frame(val), frame_index=t)
    # query near 0.8: frame 1 (keys at 5.0) has the lowest L2 affinity
    q = torch.zeros(1, 2, 4)
    q[:, 0] = 0.8
    bank.read(q)
    rel = bank.relevance
    expected = {
        t: (-((val - 0.8) ** 2) + 0.8**2) / math.sqrt(2) for t, val in enumerate([0.0, 5.0, 1.0])
    }
    assert rel.keys() == expected.keys()
    assert all(abs(rel[t] - expected[t]) < 1e-5 for t in rel)
    bank.write(*_frame(0.9), frame_index=3)
    assert bank.stored_frames() == [0, 2, 3]
    # the next query is near 5: frame 0 is now the least relevant; frame 3 was read too
    q[:, 0] = 4.5
    bank.read(q)
    bank.write(*_frame(2.0), frame_index=4)
    assert bank.stored_frames() == [2, 3, 4]
    assert bank.num_elements == 6


def test_relevance_ties_evict_oldest_and_unread_frames_are_kept():
    bank = MemoryBank(capacity=2, write_every=1, eviction="relevance")
    bank.write(*_frame(1.0), frame_index=0)
    bank.write(*_frame(1.0), frame_index=1)
    bank.read(torch.zeros(1, 2, 3))  # equal relevance: the oldest goes
    bank.write(*_frame(1.0), frame_index=2)
    assert bank.stored_frames() == [1, 2]
    # frame 2 has never been read: frame 1 (read, finite relevance) is evicted
    bank.write(*_frame(-9.0), frame_index=3)
    assert bank.stored_frames() == [2, 3]


def test_usage_pruning_keeps_most_used_elements_and_the_new_frame():
    bank = MemoryBank(capacity=2, write_every=1, top_k=1, eviction="usage")
    # frame 0: elements with keys 0 and 10; frame 1: keys 20 and 30 (one key channel)
    k0, v0 = torch.tensor([[[0.0, 10.0]], [[0.0, 0.0]]]).view(1, 2, 2), torch.tensor([[[0.0, 1.0]]])
    k1, v1 = (
        torch.tensor([[[20.0, 30.0]], [[0.0, 0.0]]]).view(1, 2, 2),
        torch.tensor([[[2.0, 3.0]]]),
    )
    bank.write(k0, v0, 0)
    bank.write(k1, v1, 1)
    # two queries at 11 and 29: with top_k = 1 they use the elements 10 and 30 only
    q = torch.tensor([[[11.0, 29.0]], [[0.0, 0.0]]]).view(1, 2, 2)
    bank.read(q)
    assert torch.allclose(bank.usage, torch.tensor([[0.0, 1.0, 0.0, 1.0]]))
    assert torch.allclose(bank.life, torch.ones(1, 4))
    k2, v2 = (
        torch.tensor([[[50.0, 60.0]], [[0.0, 0.0]]]).view(1, 2, 2),
        torch.tensor([[[5.0, 6.0]]]),
    )
    bank.write(k2, v2, 2)
    # capacity 2 frames = 4 elements: the new frame (2 elements) + the 2 most used old ones
    assert bank.num_elements == 4
    assert torch.equal(bank.values[0, 0], torch.tensor([1.0, 3.0, 5.0, 6.0]))
    assert torch.equal(bank.frame_ids[0], torch.tensor([0, 1, 2, 2]))
    # the kept elements carry their statistics; the new ones have not been read yet
    assert torch.allclose(bank.life[0], torch.tensor([1.0, 1.0, 0.0, 0.0]))


def test_usage_bank_never_exceeds_capacity_over_a_long_stream():
    torch.manual_seed(0)
    bank = MemoryBank(capacity=4, write_every=3, top_k=5, eviction="usage")
    for t in range(60):
        if not bank.is_empty:
            bank.read(torch.randn(2, 4, 6))
        if bank.should_write(t):
            bank.write(torch.randn(2, 4, 6), torch.randn(2, 3, 6), t)
        assert bank.num_elements <= 4 * 6
    assert bank.num_elements == 24
    assert bank.keys.shape == (2, 4, 24) and bank.values.shape == (2, 3, 24)
    nbytes = bank.nbytes()
    bank.reset()
    assert bank.is_empty and bank.nbytes() == 0 < nbytes


# ---------------------------------------------------------------- dot-product affinity


def _dot_read(q, mk, mv, top_k):
    """Direct dot-product read: einsum affinity, top-k mask, softmax, weighted value sum."""
    aff = torch.einsum("bcn,bcm->bmn", mk.double(), q.double()) / math.sqrt(q.shape[1])
    kth = aff.topk(top_k, dim=2).values[..., -1:]  # B, M, 1
    w = torch.softmax(aff.masked_fill(aff < kth, float("-inf")), dim=2)  # B, M, N
    return torch.einsum("bvn,bmn->bvm", mv.double(), w), aff


def test_dot_affinity_is_scaled_dot_product():
    g = torch.Generator().manual_seed(3)
    mk, q = torch.randn(2, 4, 7, generator=g), torch.randn(2, 4, 5, generator=g)
    want = torch.einsum("bcn,bcm->bnm", mk, q) / 2.0  # sqrt(Ck) = 2
    torch.testing.assert_close(dot_affinity(mk, q), want)
    torch.testing.assert_close(dot_affinity(mk, q, query_major=True), want.transpose(1, 2))
    torch.testing.assert_close(compute_affinity(mk, q, "dot"), want)
    torch.testing.assert_close(compute_affinity(mk, q), l2_affinity(mk, q))
    with pytest.raises(ValueError, match="dot_affinity"):
        dot_affinity(mk, torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match="affinity must be one of"):
        compute_affinity(mk, q, "cosine")


@pytest.mark.parametrize("top_k,chunk", [(3, 0), (3, 2), (0, 0), (0, 4)])
def test_memory_read_dot_matches_einsum_softmax(top_k, chunk):
    g = torch.Generator().manual_seed(4)
    q, mk, mv = (
        torch.randn(2, 4, 6, generator=g),
        torch.randn(2, 4, 9, generator=g),
        torch.randn(2, 5, 9, generator=g),
    )
    out, usage, _ = memory_read(q, mk, mv, top_k=top_k, query_chunk=chunk, affinity="dot")
    want, _ = _dot_read(q, mk, mv, 9 if top_k <= 0 else top_k)
    torch.testing.assert_close(out.double(), want, atol=1e-5, rtol=1e-5)
    assert torch.allclose(usage.sum(1), torch.full((2,), 6.0), atol=1e-5)
    # the two affinities differ (|k|^2 term): so do the readouts
    l2_out, _, _ = memory_read(q, mk, mv, top_k=top_k, query_chunk=chunk)
    assert not torch.allclose(l2_out, out, atol=1e-3)


def test_memory_bank_dot_affinity_read_and_relevance():
    g = torch.Generator().manual_seed(5)
    bank = MemoryBank(capacity=3, write_every=1, top_k=4, affinity="dot")
    keys = [torch.randn(1, 4, 3, generator=g) for _ in range(2)]
    values = [torch.randn(1, 2, 3, generator=g) for _ in range(2)]
    for t in range(2):
        bank.write(keys[t], values[t], t)
    q = torch.randn(1, 4, 5, generator=g)
    got = bank.read(q)
    mk, mv = torch.cat(keys, 2), torch.cat(values, 2)
    want, aff = _dot_read(q, mk, mv, 4)
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)
    # relevance of frame f: mean over queries of its best dot affinity
    for t in range(2):
        best = aff[0, :, 3 * t : 3 * t + 3].amax(1).mean().item()
        assert bank.relevance[t] == pytest.approx(best, abs=1e-5)
    # default stays L2
    assert MemoryBank().affinity == "l2"
    with pytest.raises(ValueError, match="MemoryBank: affinity must be one of"):
        MemoryBank(affinity="cos")
    with pytest.raises(ValueError, match="memory_read: affinity"):
        memory_read(q, mk, mv, affinity="L2")
