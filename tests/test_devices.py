"""Device helper: the same node code on CPU (streams are no-ops) and CUDA (its own stream)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stream.devices import open_device, resolve_device
from stream.node import NodeError


def test_auto_resolves_to_what_the_machine_has():
    assert resolve_device("auto") == ("cuda:0" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_asking_for_a_missing_gpu_is_a_clear_fatal_error():
    with pytest.raises(NodeError, match="device 'cuda:0' requested but CUDA has 0 device"):
        open_device("cuda:0")


def test_round_trip_through_the_device_context():
    dev = open_device("auto")
    frame = np.arange(12, dtype=np.float32).reshape(3, 4)
    with dev:
        t = dev.tensor(frame) * 2
    event = dev.record()
    assert (event is None) == (not dev.is_cuda)
    dev.wait(event)
    np.testing.assert_array_equal(dev.to_numpy(t), frame * 2)
