"""Shared test settings."""

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread per test module: on a 2-core machine shared with other work, two
    threads stall each other (measured 3-6x slower), and results do not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
