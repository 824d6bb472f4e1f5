"""The benchmark scripts run as a GPU machine runs them (``benchmarks/gpu_check.sh``: random weights, no GGUF files)
and print their tables; short settings, no speed asserted. Their figures live in benchmarks/README.md."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_script(name: str, *args: str, cwd: Path) -> str:
    run = subprocess.run([sys.executable, str(BENCHMARKS / name), *args], cwd=cwd, capture_output=True, text=True,
                         timeout=900)  # fmt: skip
    assert run.returncode == 0, f"{name} failed:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
    return run.stdout


def table_rows(output: str, header: str) -> list[list[str]]:
    """The cells of each row of the markdown table whose header row starts with ``header``."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def ratio(cell: str) -> float:
    match = re.fullmatch(r"([0-9.]+)x", cell)
    assert match, f"not a ratio: {cell!r}"
    return float(match.group(1))


def test_decode_benchmark_random_weights(tmp_path):
    out = run_script("decode.py", "--random", "--models", "smollm2", "--dtypes", "bfloat16", "--new_tokens", "4",
                     "--repeats", "1", "--quantize", "int8", "--workdir", str(tmp_path), cwd=tmp_path)  # fmt: skip
    rows = table_rows(out, "| model |")
    assert [r[2] for r in rows] == ["transformers", "litgpt", "litgpt int8"]
    assert ratio(rows[0][5]) == 1.0 and all(ratio(r[5]) > 0 for r in rows)
    assert "| model | weights | one batch" in out  # the batched-generation table


FAKE_LLAMA_CPP = """
import os, signal

class Llama:  # llama-cpp-python's interface as decode.py uses it
    def __init__(self, path, **kwargs):
        if os.environ.get("FAKE_LLAMA_CPP_CRASH"):  # as its AMX backend does on some Xeons
            os.kill(os.getpid(), signal.SIGSEGV)

    def token_eos(self):
        return 2

    def __call__(self, prompt, max_tokens, **kwargs):
        for _ in range(max_tokens):
            yield {"choices": [{"text": "x"}]}
"""


def test_decode_benchmark_measures_llama_cpp_in_a_child_that_may_crash(tmp_path, monkeypatch, capsys):
    (tmp_path / "llama_cpp.py").write_text(FAKE_LLAMA_CPP)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    decode = load_script("decode.py")
    ttft, speed = decode.llama_cpp_child("smollm2", 5, 2)
    assert 0 < ttft and speed > 0
    monkeypatch.setenv("FAKE_LLAMA_CPP_CRASH", "1")
    assert decode.llama_cpp_child("smollm2", 5, 2) is None
    out = capsys.readouterr().out
    assert "llama-cpp-python failed on smollm2 (signal SIGSEGV); its row is left out" in out
    assert "GGML_NATIVE=OFF" in out  # how to build it without the AMX backend


def test_finetune_benchmark_random_weights(tmp_path):
    out = run_script("finetune.py", "--random", "--methods", "lora", "full", "--steps", "3", "--rounds", "1",
                     "--micro_batch", "1", "--seq", "32", "--device", "cpu", "--workdir", str(tmp_path), cwd=tmp_path)  # fmt: skip
    rows = table_rows(out, "| method |")
    assert [(r[0], r[1]) for r in rows] == [
        ("lora", "transformers+peft"), ("lora", "litgpt"), ("full", "transformers"), ("full", "litgpt")
    ]  # fmt: skip
    for r in rows:
        assert float(r[2]) > 0 and float(r[3]) > 0 and ratio(r[4]) > 0


def test_pretrain_benchmark(tmp_path):
    out = run_script("pretrain.py", "--steps", "3", "--micro_batch", "2", "--seq", "32", "--device", "cpu", cwd=tmp_path)
    rows = table_rows(out, "| implementation |")
    assert [r[0] for r in rows] == ["transformers", "litgpt"]
    assert ratio(rows[0][2]) == 1.0 and float(rows[1][1]) > 0 and ratio(rows[1][2]) > 0


def load_script(name: str = "startup.py"):
    spec = importlib.util.spec_from_file_location(f"benchmark_{Path(name).stem}", BENCHMARKS / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_peak_memory_is_the_child_process_own(tmp_path):
    """Linux carries a process's peak resident memory (ru_maxrss) over from the parent it was forked from; the
    benchmarks (each variant in a child process) must report each child's own peak, whatever the parent's size."""
    startup = load_script()
    ballast = bytearray(800 * 2**20)  # this process: 800 MB more resident
    ballast[::4096] = b"x" * len(ballast[::4096])
    small = startup.peak_rss_mb([sys.executable, "-c", "pass"], tmp_path)
    large = startup.peak_rss_mb([sys.executable, "-c", "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096])"],
                                tmp_path)  # fmt: skip
    # what a finetuning benchmark's child reports of itself (litgpt.api.peak_rss_gb): torch and litgpt imported
    own = subprocess.run([sys.executable, "-c", "from litgpt.api import peak_rss_gb; print(peak_rss_gb())"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    del ballast
    assert small < 100, small
    assert 300 < large < 400, large
    assert float(own) < 0.7, own
    assert startup.peak_rss_mb([sys.executable, "-m", "json.tool", "--help"], tmp_path) < 100
    with pytest.raises(SystemExit, match="exit code 3"):
        startup.peak_rss_mb([sys.executable, "-c", "raise SystemExit(3)"], tmp_path)


def test_gpu_check_script_parses():
    """benchmarks/gpu_check.sh only runs where a GPU is lent: at least its syntax is checked everywhere."""
    run = subprocess.run(["bash", "-n", str(BENCHMARKS / "gpu_check.sh")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_startup_benchmark_times_the_file_and_a_bfloat16_copy(tiny_checkpoint, tmp_path):
    """A float32 checkpoint is timed as is and as the bfloat16 copy the benchmark makes of it (the Hub's dtype)."""
    import torch

    out = run_script("startup.py", "--model", str(tiny_checkpoint), "--runs", "1", "--workdir", str(tmp_path / "w"),
                     cwd=tmp_path)  # fmt: skip
    rows = table_rows(out, "| model | weights file |")
    assert [r[1] for r in rows] == ["float32 (as converted)", "bfloat16 copy"]
    assert all(0 < float(r[3]) for r in rows)
    copy = tmp_path / "w" / "checkpoints-bfloat16" / tiny_checkpoint.name
    source = torch.load(tiny_checkpoint / "lit_model.pth")
    cast = torch.load(copy / "lit_model.pth")
    assert cast.keys() == source.keys()
    assert all(cast[k].dtype == torch.bfloat16 and torch.equal(cast[k], source[k].bfloat16()) for k in source)
    assert {f.name for f in copy.iterdir()} == {f.name for f in tiny_checkpoint.iterdir()}
    # a bfloat16 checkpoint is timed as it is: no second copy
    assert load_script().bfloat16_copy(copy, tmp_path / "again") is None
