"""Finetuning throughput and peak memory: litgpt vs transformers + PEFT on the same model, data and settings.

    python benchmarks/finetune.py [--model smollm2|gemma3] [--methods lora full] [--dtype bfloat16|float32] [--steps 8]

Each variant runs in a fresh process (so peak resident memory is its own): load SmolLM2-135M-Instruct or
Gemma-3-270M (dequantized from the GGUF files shipped on PyPI), wrap it (litgpt: ``litgpt.finetune.LoRA``'s preparation / all parameters; peers:
``peft.LoraConfig`` on q_proj and v_proj with the same r/alpha/dropout / all parameters), then time optimizer steps
(forward, loss, backward, AdamW) after two warm-up steps on fixed random token batches. Each side uses its own
defaults: litgpt the training loop's loss (``model(inputs, targets=...)``) and optimizer (``make_optimizer``, fused
AdamW); transformers ``labels=`` and fused AdamW (``transformers.Trainer``'s default, ``adamw_torch_fused``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
MODELS = {  # name: (repo id, vocabulary size)
    "smollm2": ("HuggingFaceTB/SmolLM2-135M-Instruct", 49152),
    "gemma3": ("google/gemma-3-270m", 262144),
}


def batches(vocab: int, steps: int, micro_batch: int, seq: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, vocab, (micro_batch, seq + 1), generator=g) for _ in range(steps)]


def run_ours(method: str, args) -> float:
    from litgpt.finetune import LoRA
    from litgpt.kernels import cpu_linear
    from litgpt.loading import load_model, resolve_checkpoint
    from litgpt.lora import LoRASettings
    from litgpt.training import Method, make_optimizer

    checkpoint = resolve_checkpoint(MODELS[args.model][0])
    model = load_model(checkpoint, dtype=DTYPES[args.dtype])
    strategy = LoRA(checkpoint, LoRASettings(r=8, alpha=16, dropout=0.05)) if method == "lora" else Method(checkpoint)
    strategy.prepare(model)
    cpu_linear(model)  # as the training loop does on a CPU
    model.train()
    model.activation_checkpointing = args.activation_checkpointing  # what --train.activation_checkpointing sets
    if args.compile:
        model = torch.compile(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer("AdamW", params, lr=2e-4)  # what `litgpt finetune` builds: fused AdamW
    data = batches(MODELS[args.model][1], args.steps + 2, args.micro_batch, args.seq)

    def step(batch):
        inputs, targets = batch[:, :-1], batch[:, 1:]
        loss = model(inputs, targets=targets)  # the training loop's loss (litgpt.loss)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return timed(step, data)


def run_theirs(method: str, args) -> float:
    from transformers import AutoModelForCausalLM

    from litgpt.reference import hf_reference_folder

    hf_dir = hf_reference_folder(args.model, Path(args.workdir) / f"hf-{args.model}")
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=DTYPES[args.dtype])
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"])
        )
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-4, fused=True)  # transformers.Trainer's default, adamw_torch_fused
    data = batches(MODELS[args.model][1], args.steps + 2, args.micro_batch, args.seq)

    def step(batch):
        out = model(input_ids=batch[:, :-1], labels=batch[:, :-1])  # transformers shifts the labels itself
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return timed(step, data)


def timed(step, data: list[torch.Tensor]) -> float:
    for batch in data[:2]:  # warm-up
        step(batch)
    start = time.perf_counter()
    for batch in data[2:]:
        step(batch)
    elapsed = time.perf_counter() - start
    return sum(b[:, :-1].numel() for b in data[2:]) / elapsed


def child(args) -> None:
    os.chdir(args.workdir)
    speed = (run_ours if args.impl == "litgpt" else run_theirs)(args.method, args)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(json.dumps({"speed": speed, "peak_gb": peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2", choices=sorted(MODELS))
    parser.add_argument("--methods", nargs="+", default=["lora", "full"], choices=["lora", "full"])
    parser.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--micro_batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--compile", action="store_true", help="torch.compile litgpt's model")
    parser.add_argument("--activation_checkpointing", action="store_true",
                        help="also measure litgpt with --train.activation_checkpointing (memory for compute)")  # fmt: skip
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "litgpt-bench"))
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    args = parser.parse_args()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    if args.impl:
        return child(args)
    print(f"# Finetuning benchmark: {MODELS[args.model][0]}, micro-batch {args.micro_batch} x {args.seq} tokens, "
          f"{args.dtype}, {args.steps} timed steps, {os.cpu_count()} cores, torch {torch.__version__}\n")  # fmt: skip
    print("| method | implementation | tokens/s | peak resident memory (GB) | speed ratio |")
    print("|---|---|---|---|---|")
    for method in args.methods:
        results = {}
        impls = ["transformers+peft" if method == "lora" else "transformers", "litgpt"]
        impls += ["litgpt, activation checkpointing"] if args.activation_checkpointing else []
        for impl in impls:
            flags = {
                "--impl": impl.split("+")[0].split(",")[0],
                "--method": method,
                "--model": args.model,
                "--dtype": args.dtype,
                "--steps": args.steps,
                "--micro_batch": args.micro_batch,
                "--seq": args.seq,
                "--workdir": args.workdir,
            }
            cmd = [sys.executable, __file__, *(str(x) for pair in flags.items() for x in pair)]
            cmd += ["--compile"] if args.compile else []
            cmd += ["--activation_checkpointing"] if "checkpointing" in impl else []  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            results[impl] = json.loads(out)
        base = next(iter(results.values()))["speed"]
        for impl, r in results.items():
            print(f"| {method} | {impl} | {r['speed']:.0f} | {r['peak_gb']:.2f} | {r['speed'] / base:.2f}x |")


if __name__ == "__main__":
    main()
