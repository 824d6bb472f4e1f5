"""Quality and speed of the inference quantization modes on two real models, as a markdown table.

For SmolLM2-135M-Instruct and Gemma-3-270M (built from the GGUF files their PyPI packages ship, exactly as the test
fixtures in tests/conftest.py build them) it reports, per mode:

* perplexity on ``benchmarks/data/public_domain.txt`` (Lincoln's Gettysburg Address and the opening of Lewis Carroll's
  "Alice's Adventures in Wonderland"), scored in one window;
* the same text's first 256 tokens scored one decode step at a time (the path of the int8/int4 decode kernels, which
  round activations to int8 blocks; the one-window score runs the prefill path);
* greedy decode speed at batch size 1: 100 new tokens after a warm-up, prefill excluded;
* the bytes held by the model's weights.

Usage (from the repository root; the Hugging Face folders and converted checkpoints are cached in ``--cache``)::

    python benchmarks/quantize.py [--models smollm2,gemma3] [--modes float32,bf16,int8,int4,bnb.nf4] [--threads 1]
        [--group_sizes 32,64,128] [--cache /tmp/litgpt-test-cache]

``--group_sizes`` adds int4 rows with other group sizes (the default mode uses 32). Note that both reference models
are dequantized from GGUF files whose weights were 4-bit with groups of 32 (Q4_1, Q4_K): int4 with groups of 32 can
land on nearly the same grid, so it looks better on them than it would on a model trained in 16 bits.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TEXT = ROOT / "benchmarks" / "data" / "public_domain.txt"
PROMPT = "Write a short story about a llama who learns to play the piano."
NAMES = {"smollm2": "SmolLM2-135M-Instruct", "gemma3": "Gemma-3-270M"}


def checkpoint(name: str, cache: Path) -> Path:
    """A converted LitGPT checkpoint of the bundled model ``name`` (built once, then reused)."""
    os.environ["LITGPT_TEST_CACHE"] = str(cache)
    from litgpt.convert_hf import convert_to_litgpt
    from tests.conftest import _hf_folder

    hf = _hf_folder(None, name)
    folder = cache / f"{name}-lit"
    if not (folder / "lit_model.pth").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        for f in hf.iterdir():
            if not (folder / f.name).exists():
                (folder / f.name).symlink_to(f)
        convert_to_litgpt(folder)
    return folder


def build(folder: Path, mode: str):
    """The model for one table row: float32, bf16, int8, int4[-gN] or a ``bnb.*`` mode (our quantized models compute
    in float32, bitsandbytes' in bfloat16, the dtype of its CPU kernel)."""
    from litgpt.kernels import use_decode_kernels
    from litgpt.loading import load_model
    from litgpt.quantize import load_quantized

    if mode in ("float32", "bf16"):  # as LLM.distribute prepares them on a CPU
        model = load_model(folder, dtype=torch.float32 if mode == "float32" else torch.bfloat16)
        use_decode_kernels(model)
        return model
    base, _, group = mode.partition("-g")
    kwargs = {"group_size": int(group)} if group else {}
    dtype = torch.bfloat16 if base.startswith("bnb.") else torch.float32
    return load_quantized(folder, base, device="cpu", dtype=dtype, **kwargs)


@torch.inference_mode()
def perplexity(model, tokenizer) -> tuple[float, int]:
    from litgpt.evaluate import LitEvalLM

    lm = LitEvalLM(model, tokenizer, max_length=2048)
    tokens = [lm.prefix_token_id] + tokenizer.encode(TEXT.read_text(), bos=False).tolist()
    windows = lm.rolling_windows(tokens)
    total = sum(logprob for logprob, _ in lm.score(windows, disable_tqdm=True))
    n = len(tokens) - 1
    return math.exp(-total / n), n


@torch.inference_mode()
def stepwise_perplexity(model, tokenizer, n_tokens: int) -> float:
    """Perplexity of the text's first ``n_tokens`` fed one token at a time through the KV cache: the decode path
    (where the int8/int4 kernels round activations to int8 blocks), unlike the one-window score of a prefill."""
    tokens = tokenizer.encode(TEXT.read_text(), bos=True).tolist()[: n_tokens + 1]
    model.set_kv_cache(1, max_seq_length=len(tokens))
    total = 0.0
    for i in range(len(tokens) - 1):
        pos = torch.tensor([i])
        logits = model(torch.tensor([[tokens[i]]]), input_pos=pos, input_pos_maxp1=i + 1)
        total += float(torch.log_softmax(logits[0, -1].float(), dim=-1)[tokens[i + 1]])
    model.clear_kv_cache()
    return math.exp(-total / (len(tokens) - 1))


@torch.inference_mode()
def decode_speed(model, tokenizer, new_tokens: int = 100) -> float:
    from litgpt.generation import SamplingParams, generate_batch

    prompt = tokenizer.encode(PROMPT)
    model.set_kv_cache(1, max_seq_length=len(prompt) + new_tokens + 8)  # a cache sized for the run
    greedy = SamplingParams(temperature=0.0)
    for _ in generate_batch(model, [prompt], 8, greedy):  # warm-up
        pass
    steps = generate_batch(model, [prompt], new_tokens + 1, greedy)
    next(steps)  # the prefill and the first token
    start = time.perf_counter()
    n = sum(1 for _ in steps)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="smollm2,gemma3")
    parser.add_argument("--modes", default="float32,bf16,int8,int4")
    parser.add_argument("--group_sizes", default="", help="extra int4 group sizes, e.g. 32,128")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--new_tokens", type=int, default=100)
    parser.add_argument("--step_tokens", type=int, default=840, help="tokens scored through decode steps (840: about the whole text; fewer tokens give noisier figures)")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("LITGPT_TEST_CACHE", ROOT / ".bench-cache")))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from litgpt.quantize import quantized_bytes
    from litgpt.tokenizer import Tokenizer

    modes = args.modes.split(",") + [f"int4-g{g}" for g in args.group_sizes.split(",") if g]
    rows = []
    for name in args.models.split(","):
        folder = checkpoint(name, args.cache)
        tokenizer = Tokenizer(folder)
        for mode in modes:
            model = build(folder, mode).eval()
            ppl, n = perplexity(model, tokenizer)
            step_ppl = stepwise_perplexity(model, tokenizer, args.step_tokens)
            speed = decode_speed(model, tokenizer, args.new_tokens)
            size = quantized_bytes(model) / 2**20
            label = "int4 (g32)" if mode == "int4" else mode.replace("-g", " (g") + (")" if "-g" in mode else "")
            rows.append(f"| {NAMES[name]} | {label} | {ppl:.3f} ({n} tokens) | {step_ppl:.3f} | {speed:.1f} | {size:.0f} |")
            print(rows[-1], file=sys.stderr, flush=True)
            del model
    print(f"\nPerplexity on {TEXT.name}; decode: greedy, batch 1, {args.new_tokens} new tokens after "
          f"a warm-up, prefill excluded; torch threads: {torch.get_num_threads()}\n")  # fmt: skip
    print(f"| model | mode | perplexity (one window) | perplexity (first {args.step_tokens} tokens, one decode step each) "
          "| decode tokens/s | weights MiB |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
