"""Where numbers come from: the cores a process may really use."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cnnbench.env import usable_cpus


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
def test_pools_are_sized_from_the_affinity_not_the_host():
    """A process pinned to one core (taskset, a scheduler's cpuset) sizes its pools for one."""
    code = (
        "import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
        "from cnnbench.env import usable_cpus; from cnnbench.serve.limits import default_workers; "
        "from cnnbench.bench.latency import default_threads; "
        "print(usable_cpus(), default_workers(), default_threads())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().split(maxsplit=2) == ["1", "1", "[1]"]
    assert 1 <= usable_cpus() <= (os.cpu_count() or 1)
