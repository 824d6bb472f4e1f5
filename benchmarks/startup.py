"""Time from a cold `litgpt generate` process to its first generated token, and peak resident memory.

    python benchmarks/startup.py [--model HuggingFaceTB/SmolLM2-135M-Instruct] [--runs 3] [--precision 32-true]

The checkpoint is converted beforehand (conversion is not on the hot path); each run starts a fresh interpreter.
A checkpoint whose weights are float32 (as one dequantized from a GGUF file) is also timed as a bfloat16 copy, the
dtype in which the Hub publishes SmolLM2 and most models: with the default precision (bfloat16 on CPUs with
AVX512-BF16) that file is memory-mapped as is, where the float32 one is cast at every start.
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


def generate_command(checkpoint: Path, new_tokens: int, precision: str | None = None) -> list[str]:
    return [sys.executable, "-m", "litgpt", "generate", str(checkpoint), "--max_new_tokens", str(new_tokens),
            "--temperature", "0", *(["--precision", precision] if precision else [])]  # fmt: skip


def first_token_seconds(checkpoint: Path, cwd: Path, precision: str | None = None) -> float:
    start = time.perf_counter()
    command = generate_command(checkpoint, 8, precision)
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    proc.stdout.read(1)  # the first character the model writes
    elapsed = time.perf_counter() - start
    proc.stdout.read()
    proc.wait()
    return elapsed


# Runs a command's interpreter and writes its own peak resident memory (litgpt.utils.peak_rss_gb, torch-free) to
# stderr as it exits. The peak that wait4 reports (ru_maxrss) is no use here: Linux carries it over from the forked
# parent, so every child would report at least this benchmark's own size.
PEAK_HOOK = """
import atexit, runpy, sys
from litgpt.utils import peak_rss_gb
atexit.register(lambda: sys.stderr.write(f"PEAK_GB {peak_rss_gb()}\\n"))
flag, target, *rest = sys.argv[1:]
sys.argv = [target, *rest]
if flag == "-m":
    runpy.run_module(target, run_name="__main__", alter_sys=True)
else:
    exec(compile(target, "<string>", "exec"), {"__name__": "__main__"})
"""


def peak_rss_mb(command: list[str], cwd: Path) -> float:
    """Peak resident memory of one Python process running ``command`` (``python -m ...`` or ``python -c ...``)."""
    proc = subprocess.run([command[0], "-c", PEAK_HOOK, *command[1:]], cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(command)} failed with exit code {proc.returncode}:\n{proc.stderr[-2000:]}")
    peaks = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("PEAK_GB ")]
    return float(peaks[-1]) * 1e6 / 1024  # peak_rss_gb gives /proc's kB / 1e6; the table has kB / 1024


def bfloat16_copy(checkpoint: Path, work: Path) -> Path | None:
    """A copy of ``checkpoint`` with its float32 weights in bfloat16 (made once), or None if it has none."""
    import shutil

    import torch

    from litgpt.checkpoint import load_state_dict, save_state_dict

    state = load_state_dict(checkpoint / "lit_model.pth")
    if not any(t.dtype == torch.float32 for t in state.values()):
        return None
    target = work / "checkpoints-bfloat16" / checkpoint.name
    if not (target / "lit_model.pth").is_file():
        target.mkdir(parents=True, exist_ok=True)
        for f in checkpoint.iterdir():
            if f.is_file() and f.name != "lit_model.pth":
                shutil.copy2(f, target / f.name)
        cast = {k: t.to(torch.bfloat16) if t.dtype == torch.float32 else t for k, t in state.items()}
        save_state_dict(cast, target / "lit_model.pth")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "litgpt-bench"))
    parser.add_argument("--precision", default=None, help="litgpt generate's --precision (default: its default)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from litgpt.loading import resolve_checkpoint

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    checkpoint = resolve_checkpoint(args.model).resolve()
    files = {"as converted": checkpoint}
    if (copy := bfloat16_copy(checkpoint, work)) is not None:
        files = {"float32 (as converted)": checkpoint, "bfloat16 copy": copy}
    for folder in files.values():
        first_token_seconds(folder, work, args.precision)  # page cache warm, as on a second run
    times = {name: [] for name in files}
    for _ in range(args.runs):  # alternating, so that the machine's drift hits each alike
        for name, folder in files.items():
            times[name].append(first_token_seconds(folder, work, args.precision))
    print("| model | weights file | precision | cold process to first token (s), median | min | max |")
    print("|---|---|---|---|---|---|")
    for name, t in times.items():
        row = f"{statistics.median(t):.2f} | {min(t):.2f} | {max(t):.2f}"
        print(f"| {args.model} | {name} | {args.precision or 'default'} | {row} |")
    weights = sum(f.stat().st_size for f in checkpoint.glob("*.safetensors")) or sum(
        f.stat().st_size for f in checkpoint.glob("*.pth")
    )
    load = [sys.executable, "-c", f"from litgpt.api import LLM; LLM.load({str(checkpoint)!r})"]
    baseline = [sys.executable, "-c", "import torch, litgpt.api"]
    print("\n| process | peak resident memory (MB) |")
    print("|---|---|")
    print(f"| weights on disk | {weights / 2**20:.0f} |")
    print(f"| python + torch + litgpt imported, no model | {peak_rss_mb(baseline, work):.0f} |")
    print(f"| `LLM.load` (memory-mapped weights) | {peak_rss_mb(load, work):.0f} |")
    generate = generate_command(checkpoint, 128, args.precision)
    print(f"| `litgpt generate`, 128 new tokens | {peak_rss_mb(generate, work):.0f} |")


if __name__ == "__main__":
    main()
