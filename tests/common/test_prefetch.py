"""Tests of common.training.prefetch: the overlapped path returns what the sequential one does, runs ahead, stays
bounded,
hands exceptions over and carries the caller's torch state into its thread."""

import threading
import time

import pytest
import torch

from common.training.prefetch import prefetch


def _make(item):
    gen = torch.Generator().manual_seed(item)
    x = torch.randn(8, 16, generator=gen)
    return {"x": x, "y": (x @ x.T).sum(dim=1)}


@pytest.mark.timeout(60)
class TestPrefetch:
    def test_same_items_same_values_in_order(self, device):
        def produce(item):
            out = _make(item)
            return {k: v.to(device) for k, v in out.items()}

        items = list(range(7))
        seq = list(prefetch(produce, items, overlap=False, device=device))
        ovl = list(prefetch(produce, items, overlap=True, depth=2, device=device))
        assert [i for i, _ in seq] == [i for i, _ in ovl] == items
        for (_, a), (_, b) in zip(seq, ovl, strict=True):
            assert torch.equal(a["x"], b["x"]) and torch.equal(a["y"], b["y"])
        assert list(prefetch(produce, [], overlap=True)) == []

    def test_runs_ahead_in_another_thread_and_stays_bounded(self):
        produced, threads = [], set()

        def produce(item):
            produced.append(item)
            threads.add(threading.get_ident())
            return torch.tensor(item)

        depth = 2
        stream = prefetch(produce, range(10), overlap=True, depth=depth)
        item, value = next(stream)
        assert (item, int(value)) == (0, 0)
        deadline = time.monotonic() + 10
        while len(produced) < depth + 2 and time.monotonic() < deadline:  # 1 taken, `depth` queued, 1 waiting
            time.sleep(0.01)
        time.sleep(0.3)
        assert len(produced) == depth + 2  # ahead of the consumer, but no further than the bound
        assert threads and threading.get_ident() not in threads
        assert [i for i, _ in stream] == list(range(1, 10))
        assert produced == list(range(10))

    def test_sequential_path_runs_in_the_callers_thread_on_demand(self):
        produced = []

        def produce(item):
            produced.append((item, threading.get_ident()))
            return torch.tensor(item)

        stream = prefetch(produce, range(3), overlap=False)
        assert produced == []
        next(stream)
        assert produced == [(0, threading.get_ident())]

    def test_exception_reaches_the_consumer_at_its_item(self):
        def produce(item):
            if item == 2:
                raise ValueError("bad item 2")
            return torch.tensor(item)

        for overlap in (False, True):
            stream = prefetch(produce, range(5), overlap=overlap)
            assert [next(stream)[0], next(stream)[0]] == [0, 1]
            with pytest.raises(ValueError, match="bad item 2"):
                next(stream)

    def test_early_exit_stops_the_producer(self):
        before = threading.active_count()
        stream = prefetch(lambda i: torch.tensor(i), range(1000), overlap=True, depth=1)
        for item, _ in stream:
            if item == 3:
                break
        stream.close()
        assert threading.active_count() == before

    def test_thread_sees_the_callers_grad_mode_autocast_and_threads(self):
        def produce(_):
            return (
                torch.tensor(torch.is_grad_enabled()),
                torch.tensor(torch.is_autocast_enabled("cpu")),
                torch.tensor(torch.get_num_threads()),
            )

        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            results = [tuple(v.item() for v in r) for _, r in prefetch(produce, range(2), overlap=True)]
        assert results == [(False, True, torch.get_num_threads())] * 2
        results = [tuple(v.item() for v in r) for _, r in prefetch(produce, range(2), overlap=True)]
        assert results == [(True, False, torch.get_num_threads())] * 2

    def test_exception(self):
        with pytest.raises(ValueError, match="depth must be >= 1"):
            prefetch(lambda i: i, [1], depth=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.timeout(60)
def test_cuda_producer_uses_its_own_stream_and_waits_for_the_caller():
    device = torch.device("cuda")
    streams = set()
    base = torch.zeros(1 << 20, device=device)
    base += 1  # queued on the caller's stream before prefetch: the producer must see it

    def produce(item):
        streams.add(torch.cuda.current_stream(device).cuda_stream)
        return base * item

    out = [v.sum().item() for _, v in prefetch(produce, range(4), overlap=True, device=device)]
    assert out == [float(i * (1 << 20)) for i in range(4)]
    assert streams and torch.cuda.current_stream(device).cuda_stream not in streams
