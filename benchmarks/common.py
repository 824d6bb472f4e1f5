"""What the training benchmarks share: the device, fixed random batches, timed steps and peak memory."""

from __future__ import annotations

import json
import os
import subprocess
import time

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def device_name(device: str) -> str:
    """The GPU's name, or the CPU's core count, for a benchmark's header."""
    return torch.cuda.get_device_name() if device == "cuda" else f"{os.cpu_count()} CPU cores"


def batches(vocab: int, steps: int, micro_batch: int, seq: int, device: str = "cpu") -> list[torch.Tensor]:
    """``steps`` batches of ``seq + 1`` random token ids (inputs and shifted targets), the same on every run."""
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, vocab, (micro_batch, seq + 1), generator=g).to(device) for _ in range(steps)]


def tokens_per_second(step, data: list[torch.Tensor], warmup: int = 2) -> float:
    """Input tokens per second of ``step(batch)`` over ``data[warmup:]``, after ``warmup`` untimed steps."""
    cuda = data[0].device.type == "cuda"
    for batch in data[:warmup]:
        step(batch)
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for batch in data[warmup:]:
        step(batch)
    if cuda:
        torch.cuda.synchronize()
    return sum(b[:, :-1].numel() for b in data[warmup:]) / (time.perf_counter() - start)


def peak_memory_gb(device: str) -> float:
    """The process's peak: GPU memory allocated on a GPU, resident memory on the CPU."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 1e9
    from litgpt.utils import peak_rss_gb

    return peak_rss_gb()


def run_child(cmd: list[str]) -> dict:
    """Run one measured variant in a fresh process and return the JSON object of its last line of output. A failing
    child ends the benchmark with its own error output (a GPU run's log must say what failed)."""
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {run.returncode}:\n{run.stderr[-4000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])
