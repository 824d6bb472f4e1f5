"""Pretraining step throughput: litgpt's GPT vs a plain PyTorch loop over transformers' LlamaForCausalLM.

    python benchmarks/pretrain.py [--model_name pythia-14m|SmolLM2-135M] [--steps 6] [--micro_batch 4] [--seq 256]
                                  [--device cpu|cuda] [--precision float32|bfloat16]

Both models are built from the same registry architecture with random weights (transformers' config is written by
litgpt's converter, so the two are the same network), trained on the same fixed random batches with fused AdamW (each
side's default): forward, loss, backward, step. Two warm-up steps, then timed steps; each implementation runs in its own process.
The device defaults to the GPU where there is one.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DTYPES, batches, default_device, device_name, run_child, tokens_per_second  # noqa: E402


def child(args) -> None:
    from litgpt.config import Config
    from litgpt.convert_hf import hf_config_dict, hf_model_type

    torch.manual_seed(0)
    config = Config.from_name(args.model_name, block_size=args.seq)
    data = batches(config.vocab_size, args.steps + 2, args.micro_batch, args.seq, args.device)
    if args.impl == "litgpt":
        from litgpt.kernels import cpu_linear
        from litgpt.model import GPT
        from litgpt.training import make_optimizer

        model = GPT(config)
        model.init_weights()
        model.to(args.device, DTYPES[args.precision])
        if args.device == "cpu":
            cpu_linear(model)  # as the training loop does on a CPU
        optimizer = make_optimizer("AdamW", model.parameters(), lr=3e-4)  # the training loop's: fused AdamW

        def loss_of(batch):
            return model(batch[:, :-1], targets=batch[:, 1:])  # the training loop's loss (litgpt.loss)
    else:
        from transformers import AutoConfig, AutoModelForCausalLM

        model_type = hf_model_type(config)
        hf = AutoConfig.for_model(**hf_config_dict(config, model_type))
        model = AutoModelForCausalLM.from_config(hf).to(args.device, DTYPES[args.precision])

        def loss_of(batch):
            return model(input_ids=batch[:, :-1], labels=batch[:, :-1]).loss

        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=True)  # transformers.Trainer's default

    model.train()

    def step(batch):
        loss_of(batch).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    from litgpt.utils import keep_freed_memory

    keep = keep_freed_memory(args.device) if args.impl == "litgpt" else nullcontext()  # as `litgpt pretrain` does
    with keep:
        print(json.dumps({"speed": tokens_per_second(step, data)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_name", default="pythia-14m")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--micro_batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--device", default=default_device(), choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.impl:
        return child(args)
    print(f"# Pretraining step benchmark: {args.model_name} (random init), micro-batch {args.micro_batch} x "
          f"{args.seq} tokens, {args.precision}, {args.steps} timed steps, {device_name(args.device)}, torch {torch.__version__}\n")  # fmt: skip
    print("| implementation | tokens/s | speed ratio |")
    print("|---|---|---|")
    speeds = {}
    for impl in ("transformers", "litgpt"):
        cmd = [sys.executable, __file__, "--impl", impl, "--model_name", args.model_name, "--steps", str(args.steps),
               "--micro_batch", str(args.micro_batch), "--seq", str(args.seq), "--device", args.device,
               "--precision", args.precision]  # fmt: skip
        speeds[impl] = run_child(cmd)["speed"]
    for impl, speed in speeds.items():
        print(f"| {impl} | {speed:.0f} | {speed / speeds['transformers']:.2f}x |")


if __name__ == "__main__":
    main()
