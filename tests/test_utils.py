"""litgpt.utils helpers that the rest of the suite does not exercise on their own."""

import resource
import sys

import pytest
import torch

from litgpt.utils import keep_freed_memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator: Linux only")


def resident_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def touch_blocks(n: int = 50, size: int = 4 << 20) -> int:
    """Allocate and fill n blocks of ``size`` bytes, free them; the page faults it took."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [torch.empty(size, dtype=torch.uint8).fill_(1) for _ in range(n)]
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    del blocks
    return faults


def test_keep_freed_memory_reuses_the_pages_of_freed_blocks_and_returns_them_on_leaving():
    """A training step's activations are freed and allocated again in the next step: within the block the second
    round of 200 MB of 4 MB blocks takes (almost) no page faults, where glibc's defaults fault each page again (51,200
    pages); on leaving, the kept memory goes back to the kernel."""
    with keep_freed_memory() as applies:
        assert applies  # Linux with glibc, as CI
        touch_blocks()
        second = touch_blocks()
        kept = resident_mb()
    returned = resident_mb()
    assert second < 5_000, second
    assert kept - returned > 150, (kept, returned)
