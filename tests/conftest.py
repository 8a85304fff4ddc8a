"""Test-wide settings. Tests run on CPU in two pytest-xdist workers (setup.cfg); one torch thread
per worker keeps the two cores busy without oversubscription, which slows small ops tenfold."""
import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("FACEDIS_TEST_THREADS", "1")))


@pytest.fixture(autouse=True)
def _grad_mode_is_restored(request):
    """Grad mode is process-global: a generator suspended inside `torch.no_grad()` leaks it into
    every later test (and into a user's training loop). Fail the test that leaves it off."""
    yield
    if not torch.is_grad_enabled():
        torch.set_grad_enabled(True)
        pytest.fail(f"{request.node.nodeid} left torch grad mode disabled")
