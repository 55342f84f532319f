"""Fixtures the test files share (one place, not a copy per file)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """torch on one thread for the test: the models in tests are tiny, so threads only add
    overhead, and on a shared 2-core machine a second busy-waiting thread can make a test
    10-20x slower. Files use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
