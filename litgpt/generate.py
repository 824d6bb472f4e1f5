"""`litgpt generate`: complete a prompt with a model (default: the bundled Gemma-3-270M)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, Optional


def load_for_cli(
    checkpoint_dir: Optional[Path],
    precision: Optional[str],
    quantize: Optional[str],
    access_token: Optional[str] = None,
    **distribute_kwargs,
):
    """Resolve and place a model for a CLI command; say which model is used."""
    import torch

    from litgpt.api import LLM
    from litgpt.loading import resolve_checkpoint

    torch.manual_seed(1234)
    print("Seed set to 1234", file=sys.stderr)
    folder = resolve_checkpoint(checkpoint_dir, access_token=access_token)
    llm = LLM.load(folder, distribute=None)
    llm.distribute(precision=precision, quantize=quantize, **distribute_kwargs)
    print(f"Loaded {llm.config.name} from {folder}", file=sys.stderr)
    return llm


def main(
    checkpoint_dir: Optional[Path] = None,
    prompt: str = "What food do llamas eat?",
    *,
    input: str = "",
    sys_prompt: Optional[str] = None,
    num_samples: int = 1,
    max_new_tokens: int = 50,
    top_k: Optional[int] = 50,
    top_p: float = 1.0,
    temperature: float = 0.8,
    quantize: Optional[str] = None,
    precision: Optional[str] = None,
    access_token: Optional[str] = None,
    accelerator: str = "auto",
    devices: int = 1,
    generate_strategy: Optional[Literal["sequential", "tensor_parallel"]] = None,
    compile: bool = False,
) -> None:
    """Generate text from a prompt.

    Args:
        checkpoint_dir: A checkpoint folder, a registry name or repo id, or a .gguf file. Default: the bundled model.
        prompt: The prompt (formatted with the model's prompt style).
        input: An optional input for the instruction in ``prompt`` (prompt styles with an input section: Alpaca).
        sys_prompt: An optional system prompt for chat-style models.
        num_samples: How many completions to generate one after the other.
        max_new_tokens: The most tokens to generate.
        top_k: Sample among the k most likely tokens (None: all).
        top_p: Nucleus sampling threshold in [0, 1]; 0 means greedy.
        temperature: Sampling temperature; 0 means greedy.
        quantize: Weight quantization for inference.
        precision: Weight dtype, e.g. "bf16-true" or "32-true" (default: bf16 where the hardware computes in it,
            CPUs with AVX512-BF16 included; else fp16 on GPUs, fp32 on CPUs).
        access_token: Hugging Face token for gated repos (default: $HF_TOKEN).
        accelerator: "auto", "cpu" or "cuda".
        devices: How many devices to spread the model over (with a generate_strategy).
        generate_strategy: "sequential" (blocks spread over devices) or "tensor_parallel" (one process per device).
        compile: Compile the decode step with torch.compile (slower start, faster tokens).
    """
    check_settings(temperature, top_k, top_p, max_new_tokens, num_samples)  # before the model loads
    llm = load_for_cli(
        checkpoint_dir, precision, quantize, access_token,
        accelerator=accelerator, devices=devices, generate_strategy=generate_strategy,
    )  # fmt: skip
    if compile:
        llm.compile()
    if input:  # the style renders the instruction with its input section
        render = llm.prompt_style.apply
        llm.prompt_style.apply = lambda text, **kwargs: render(text, input=input, **kwargs)
    for i in range(num_samples):
        start = time.perf_counter()
        tokens = llm.generate(
            prompt, sys_prompt=sys_prompt, max_new_tokens=max_new_tokens, temperature=temperature,
            top_k=top_k, top_p=top_p, stream=True, return_as_token_ids=True,
        )  # fmt: skip
        if llm.global_rank != 0:  # tensor parallel: every process computes each token, rank 0 prints it
            for _ in tokens:
                pass
            continue
        n = len(print_reply(llm, tokens))
        elapsed = time.perf_counter() - start
        print(f"Time for inference {i + 1}: {elapsed:.02f} sec total, {n / elapsed:.02f} tokens/sec", file=sys.stderr)


def generate_finetuned(
    checkpoint_dir: Optional[Path] = None,
    prompt: str = "What food do llamas eat?",
    *,
    input: str = "",
    sys_prompt: Optional[str] = None,
    adapter_path: Optional[Path] = None,
    finetuned_path: Optional[Path] = None,
    quantize: Optional[str] = None,
    max_new_tokens: int = 100,
    top_k: Optional[int] = 50,
    top_p: float = 1.0,
    temperature: float = 0.8,
    precision: Optional[str] = None,
) -> None:
    """Generate with a finetuned checkpoint, as the established `generate_adapter`, `generate_adapter_v2` and
    `generate_full` commands do (`litgpt generate OUT_DIR/final` does the same).

    Args:
        checkpoint_dir: The base model's folder (a LoRA/adapter run's hyperparameters.yaml names it too), or, without
            --adapter_path/--finetuned_path, the finetuning output folder itself.
        prompt: The instruction (formatted with the finetuned model's prompt style).
        input: An optional input for the instruction (Alpaca style).
        sys_prompt: An optional system prompt for chat-style models.
        adapter_path: The adapter weights (`lit_model.pth.adapter` or `.adapter_v2` in a finetuning output folder).
        finetuned_path: The weights of a full finetuning run (`lit_model.pth` in its output folder).
        quantize: Weight quantization for inference.
        max_new_tokens: The most tokens to generate.
        top_k: Sample among the k most likely tokens (None: all).
        top_p: Nucleus sampling threshold in [0, 1]; 0 means greedy.
        temperature: Sampling temperature; 0 means greedy.
        precision: Weight dtype, e.g. "bf16-true" or "32-true".
    """
    from litgpt.errors import LitGPTError
    from litgpt.finetuned import KINDS, base_checkpoint, read_hyperparameters

    settings = dict(
        input=input, sys_prompt=sys_prompt, quantize=quantize, max_new_tokens=max_new_tokens, top_k=top_k,
        top_p=top_p, temperature=temperature, precision=precision,
    )  # fmt: skip
    path = adapter_path or finetuned_path
    if adapter_path and finetuned_path:
        raise LitGPTError("give the finetuned weights with either --adapter_path FILE or --finetuned_path FILE")
    if path is None:  # `generate_adapter OUT_DIR/final`: the finetuning output folder itself
        if checkpoint_dir is None:
            raise LitGPTError("give a finetuning output folder, or the weights with --adapter_path/--finetuned_path")
        return main(checkpoint_dir, prompt, **settings)
    option = "--adapter_path" if adapter_path else "--finetuned_path"
    expected = {*KINDS, "lit_model.pth"} if finetuned_path else set(KINDS)
    path = Path(path)
    if path.is_dir():  # the finetuning output folder: its one weights file
        found = sorted(name for name in expected if (path / name).is_file())
        if len(found) != 1:
            held = f"holds several ({', '.join(found)})" if found else f"holds none of {', '.join(sorted(expected))}"
            raise LitGPTError(f"{option} {path} is a folder that {held}; give the weights file, such as {option} FILE")
        path = path / found[0]
    if not path.is_file():
        raise LitGPTError(f"{option} {path} does not exist: give the weights file of a finetuning output folder")
    if path.name not in expected:
        raise LitGPTError(f"{path} must be one of {sorted(expected)} in a finetuning output folder")
    if adapter_path and checkpoint_dir is not None:
        base = base_checkpoint(path.parent, read_hyperparameters(path.parent))
        if Path(checkpoint_dir).resolve() != base.resolve():
            print(f"Using the base model the run names in hyperparameters.yaml: {base}", file=sys.stderr)
    if path.name == "lit_model.pth" and not has_config(path.parent):
        with beside_base_files(path, checkpoint_dir) as folder:
            return main(folder, prompt, **settings)
    main(path.parent, prompt, **settings)


def has_config(folder: Path) -> bool:
    return (folder / "model_config.yaml").is_file() or (folder / "config.json").is_file()


@contextmanager
def beside_base_files(weights: Path, checkpoint_dir: Optional[Path]) -> Iterator[Path]:
    """A temporary folder holding ``weights`` as lit_model.pth beside the config, tokenizer and prompt style of the
    base model ``checkpoint_dir``: as the established `generate_full`, which reads all but the weights from there."""
    import tempfile

    from litgpt.errors import LitGPTError
    from litgpt.loading import WEIGHTS, resolve_checkpoint

    if checkpoint_dir is None:
        raise LitGPTError(
            f"{weights.parent} has neither model_config.yaml nor config.json; give the base model folder, which "
            "has them, as the checkpoint_dir"
        )
    base = resolve_checkpoint(checkpoint_dir)
    if not has_config(base):
        raise LitGPTError(f"neither {weights.parent} nor {base} has model_config.yaml or config.json")
    print(f"Using the config and tokenizer of {base} with the weights {weights}", file=sys.stderr)
    weight_suffixes = (".pth", ".safetensors", ".bin", ".lora", ".adapter", ".adapter_v2", ".gguf")
    with tempfile.TemporaryDirectory(prefix="litgpt-finetuned-") as tmp:
        files = {f.name: f for f in Path(base).iterdir() if f.is_file() and not f.name.endswith(weight_suffixes)}
        files[WEIGHTS] = weights
        for name, source in files.items():
            (Path(tmp) / name).symlink_to(source.resolve())
        yield Path(tmp)


def check_settings(
    temperature: float, top_k, top_p: float, max_new_tokens: int, num_samples: Optional[int] = None
) -> None:
    """The sampling and length options, checked before a model is loaded for them (``num_samples``: for the
    commands that have that option)."""
    from litgpt.errors import LitGPTError
    from litgpt.generation import SamplingParams

    SamplingParams(temperature, top_k, top_p)
    if max_new_tokens < 0:
        raise LitGPTError(f"--max_new_tokens must be at least 0, got {max_new_tokens}")
    if num_samples is not None and num_samples < 1:
        raise LitGPTError(f"--num_samples must be at least 1, got {num_samples}")


def print_reply(llm, tokens) -> list[int]:
    """Print streamed token ids as text as they come (a character split over tokens once complete), then a newline;
    Ctrl-C stops the reply. Returns the ids printed."""
    decoder = llm.preprocessor.tokenizer.decode_stream()
    ids: list[int] = []
    try:
        for token in tokens:
            ids.append(int(token))
            print(decoder.step(ids[-1]), end="", flush=True)
    except KeyboardInterrupt:
        tokens.close()
        print(" [stopped]", end="")
    print(decoder.flush(), flush=True)
    return ids
