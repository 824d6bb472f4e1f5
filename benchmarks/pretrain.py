"""Pretraining step throughput: litgpt's GPT vs a plain PyTorch loop over transformers' LlamaForCausalLM.

    python benchmarks/pretrain.py [--model_name pythia-14m|SmolLM2-135M] [--steps 6] [--micro_batch 4] [--seq 256]

Both models are built from the same registry architecture with random weights (transformers' config is written by
litgpt's converter, so the two are the same network), trained on the same fixed random batches with fused AdamW (each
side's default): forward, loss, backward, step. Two warm-up steps, then timed steps; each implementation runs in its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def batches(vocab: int, steps: int, micro_batch: int, seq: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, vocab, (micro_batch, seq + 1), generator=g) for _ in range(steps)]


def child(args) -> None:
    from litgpt.config import Config
    from litgpt.convert_hf import hf_config_dict, hf_model_type

    torch.manual_seed(0)
    config = Config.from_name(args.model_name, block_size=args.seq)
    data = batches(config.vocab_size, args.steps + 2, args.micro_batch, args.seq)
    if args.impl == "litgpt":
        from litgpt.kernels import cpu_linear
        from litgpt.model import GPT
        from litgpt.training import make_optimizer

        model = GPT(config)
        model.init_weights()
        cpu_linear(model)  # as the training loop does on a CPU
        optimizer = make_optimizer("AdamW", model.parameters(), lr=3e-4)  # the training loop's: fused AdamW

        def loss_of(batch):
            return model(batch[:, :-1], targets=batch[:, 1:])  # the training loop's loss (litgpt.loss)
    else:
        from transformers import AutoConfig, AutoModelForCausalLM

        model_type = hf_model_type(config)
        hf = AutoConfig.for_model(**hf_config_dict(config, model_type))
        model = AutoModelForCausalLM.from_config(hf)

        def loss_of(batch):
            return model(input_ids=batch[:, :-1], labels=batch[:, :-1]).loss

        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=True)  # transformers.Trainer's default

    model.train()

    def step(batch):
        loss_of(batch).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in data[:2]:
        step(batch)
    start = time.perf_counter()
    for batch in data[2:]:
        step(batch)
    elapsed = time.perf_counter() - start
    print(json.dumps({"speed": sum(b[:, :-1].numel() for b in data[2:]) / elapsed}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_name", default="pythia-14m")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--micro_batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.impl:
        return child(args)
    print(f"# Pretraining step benchmark: {args.model_name} (random init), micro-batch {args.micro_batch} x "
          f"{args.seq} tokens, float32, {args.steps} timed steps, {os.cpu_count()} cores, torch {torch.__version__}\n")  # fmt: skip
    print("| implementation | tokens/s | speed ratio |")
    print("|---|---|---|")
    speeds = {}
    for impl in ("transformers", "litgpt"):
        cmd = [sys.executable, __file__, "--impl", impl, "--model_name", args.model_name, "--steps", str(args.steps),
               "--micro_batch", str(args.micro_batch), "--seq", str(args.seq)]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        speeds[impl] = json.loads(out)["speed"]
    for impl, speed in speeds.items():
        print(f"| {impl} | {speed:.0f} | {speed / speeds['transformers']:.2f}x |")


if __name__ == "__main__":
    main()
