"""stream.ordered_pool: frames worked on side by side come back in the order they went in."""
from __future__ import annotations

import threading
import time

import pytest

from stream.ordered_pool import OrderedPool


def test_results_come_back_in_submit_order_with_at_most_size_in_flight():
    running, most, lock = [0], [0], threading.Lock()

    def work(i: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.03 if i % 3 == 0 else 0.001)  # every third call is slow: later ones finish first
        with lock:
            running[0] -= 1
        return i * i

    pool: OrderedPool[int, int] = OrderedPool(3, threads=1)
    out = []
    for i in range(20):
        out += pool.submit(i, work, i)
        assert len(pool) <= 2  # the oldest is waited for once 3 are in flight
    out += pool.drain()
    pool.close()
    assert out == [(i, i * i) for i in range(20)]
    assert most[0] == 3  # side by side, not one after another


def test_a_failed_call_raises_in_the_callers_thread_in_its_turn():
    def work(i: int) -> int:
        if i == 1:
            raise ValueError("frame 1 is bad")
        return i

    pool: OrderedPool[int, int] = OrderedPool(2, threads=1)
    assert pool.submit(0, work, 0) in ([], [(0, 0)])
    with pytest.raises(ValueError, match="frame 1 is bad"):
        pool.submit(1, work, 1)
        pool.drain()
    pool.close()


def test_one_frame_at_a_time_is_no_pool():
    with pytest.raises(ValueError, match="at least 2"):
        OrderedPool(1, threads=2)
