"""Finetuning throughput and peak memory: litgpt vs transformers + PEFT on the same model, data and settings.

    python benchmarks/finetune.py [--model smollm2|gemma3] [--methods lora full] [--dtype bfloat16|float32] [--steps 8]
                                  [--device cpu|cuda] [--random] [--rounds 3]

Each variant runs in a fresh process (so peak resident memory is its own): load SmolLM2-135M-Instruct or
Gemma-3-270M (dequantized from the GGUF files shipped on PyPI), wrap it (litgpt: ``litgpt.finetune.LoRA``'s preparation / all parameters; peers:
``peft.LoraConfig`` on q_proj and v_proj with the same r/alpha/dropout / all parameters), then time optimizer steps
(forward, loss, backward, AdamW) after two warm-up steps on fixed random token batches. Each side uses its own
defaults: litgpt the training loop's loss (``model(inputs, targets=...)``) and optimizer (``make_optimizer``, fused
AdamW); transformers ``labels=`` and fused AdamW (``transformers.Trainer``'s default, ``adamw_torch_fused``).
On a GPU (the default device where there is one) peak memory is the GPU memory allocated; ``--random`` takes each
model's architecture with random weights instead of the GGUF files (a machine without them, such as a GPU machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import DTYPES, batches, default_device, device_name, peak_memory_gb, run_child, tokens_per_second  # noqa: E402

MODELS = {"smollm2": 49152, "gemma3": 262144}  # name (litgpt.reference.OFFLINE_MODELS): vocabulary size


def models(args) -> tuple[Path, Path]:
    from litgpt.reference import model_pair

    return model_pair(args.model, Path(args.workdir), random=args.random)


def run_ours(method: str, args) -> float:
    from litgpt.finetune import LoRA
    from litgpt.kernels import cpu_linear
    from litgpt.loading import load_model
    from litgpt.lora import LoRASettings
    from litgpt.training import Method, make_optimizer, separate_shared_trainables
    from litgpt.utils import keep_freed_memory

    checkpoint, _ = models(args)
    model = load_model(checkpoint, device=args.device, dtype=DTYPES[args.dtype])
    strategy = LoRA(checkpoint, LoRASettings(r=8, alpha=16, dropout=0.05)) if method == "lora" else Method(checkpoint)
    strategy.prepare(model)
    separate_shared_trainables(model)  # as the training loop does
    if args.device == "cpu":
        cpu_linear(model)  # as the training loop does on a CPU
    model.to(args.device).train()
    model.activation_checkpointing = args.activation_checkpointing  # what --train.activation_checkpointing sets
    if args.compile:
        model = torch.compile(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer("AdamW", params, lr=2e-4)  # what `litgpt finetune` builds: fused AdamW
    data = batches(MODELS[args.model], args.steps + 2, args.micro_batch, args.seq, args.device)

    def step(batch):
        inputs, targets = batch[:, :-1], batch[:, 1:]
        loss = model(inputs, targets=targets)  # the training loop's loss (litgpt.loss)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with keep_freed_memory(args.device):  # as the training loop does
        return tokens_per_second(step, data)


def run_theirs(method: str, args) -> float:
    from transformers import AutoModelForCausalLM

    _, hf_dir = models(args)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=DTYPES[args.dtype]).to(args.device)
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"])
        )
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-4, fused=True)  # transformers.Trainer's default, adamw_torch_fused
    data = batches(MODELS[args.model], args.steps + 2, args.micro_batch, args.seq, args.device)

    def step(batch):
        out = model(input_ids=batch[:, :-1], labels=batch[:, :-1])  # transformers shifts the labels itself
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return tokens_per_second(step, data)


def child(args) -> None:
    os.chdir(args.workdir)
    speed = (run_ours if args.impl == "litgpt" else run_theirs)(args.method, args)
    print(json.dumps({"speed": speed, "peak_gb": peak_memory_gb(args.device)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2", choices=sorted(MODELS))
    parser.add_argument("--methods", nargs="+", default=["lora", "full"], choices=["lora", "full"])
    parser.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="runs of every implementation, alternating; the table "
                        "gives the median speed and the largest peak (a shared machine's speed can drift by tens of "
                        "percent within minutes)")  # fmt: skip
    parser.add_argument("--micro_batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--compile", action="store_true", help="torch.compile litgpt's model")
    parser.add_argument("--activation_checkpointing", action="store_true",
                        help="also measure litgpt with --train.activation_checkpointing (memory for compute)")  # fmt: skip
    parser.add_argument("--device", default=default_device(), choices=["cpu", "cuda"])
    parser.add_argument("--random", action="store_true", help="random weights in each model's architecture")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "litgpt-bench"))
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    args = parser.parse_args()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    if args.impl:
        return child(args)
    from litgpt.reference import OFFLINE_MODELS

    models(args)  # the model folders, once, before the timed processes
    weights = "random weights" if args.random else "GGUF weights"
    print(f"# Finetuning benchmark: {OFFLINE_MODELS[args.model]} ({weights}), micro-batch {args.micro_batch} x "
          f"{args.seq} tokens, {args.dtype}, {args.steps} timed steps, {device_name(args.device)}, torch {torch.__version__}\n")  # fmt: skip
    memory = "peak GPU memory allocated" if args.device == "cuda" else "peak resident memory"
    print(f"| method | implementation | tokens/s | {memory} (GB) | speed ratio |")
    print("|---|---|---|---|---|")
    for method in args.methods:
        results = {}
        impls = ["transformers+peft" if method == "lora" else "transformers", "litgpt"]
        impls += ["litgpt, activation checkpointing"] if args.activation_checkpointing else []
        for impl in impls * args.rounds:  # rounds alternate the implementations: the VM's drift hits each alike
            flags = {
                "--impl": impl.split("+")[0].split(",")[0],
                "--method": method,
                "--model": args.model,
                "--dtype": args.dtype,
                "--steps": args.steps,
                "--micro_batch": args.micro_batch,
                "--seq": args.seq,
                "--workdir": args.workdir,
                "--device": args.device,
            }
            cmd = [sys.executable, __file__, *(str(x) for pair in flags.items() for x in pair)]
            cmd += ["--compile"] if args.compile else []
            cmd += ["--random"] if args.random else []
            cmd += ["--activation_checkpointing"] if "checkpointing" in impl else []  # fmt: skip
            results.setdefault(impl, []).append(run_child(cmd))
        speed = {impl: statistics.median(r["speed"] for r in runs) for impl, runs in results.items()}
        base = speed[impls[0]]
        for impl, runs in results.items():
            peak = max(r["peak_gb"] for r in runs)
            print(f"| {method} | {impl} | {speed[impl]:.0f} | {peak:.2f} | {speed[impl] / base:.2f}x |")


if __name__ == "__main__":
    main()
