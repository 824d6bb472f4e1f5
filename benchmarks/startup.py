"""Time from a cold `litgpt generate` process to its first generated token, and peak resident memory.

    python benchmarks/startup.py [--model HuggingFaceTB/SmolLM2-135M-Instruct] [--runs 3]

The checkpoint is converted beforehand (conversion is not on the hot path); each run starts a fresh interpreter.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def first_token_seconds(checkpoint: Path, cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "litgpt", "generate", str(checkpoint), "--max_new_tokens", "8", "--temperature", "0"],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    proc.stdout.read(1)  # the first character the model writes
    elapsed = time.perf_counter() - start
    proc.wait()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "litgpt-bench"))
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from litgpt.loading import resolve_checkpoint

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    checkpoint = resolve_checkpoint(args.model).resolve()
    first_token_seconds(checkpoint, work)  # page cache warm, as on a second run
    times = [first_token_seconds(checkpoint, work) for _ in range(args.runs)]
    print("| model | cold process to first token (s), median | min | max |")
    print("|---|---|---|---|")
    print(f"| {args.model} | {statistics.median(times):.2f} | {min(times):.2f} | {max(times):.2f} |")


if __name__ == "__main__":
    main()
