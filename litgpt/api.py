"""The Python API: ``LLM.load(...)``, ``.generate``, ``.benchmark``, ``.save`` and training hooks.

The command-line ``generate`` and ``chat`` and the server all drive this class, so there is one code path from a
prompt to text.
"""

from __future__ import annotations

import numbers
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import torch

from litgpt.config import Config
from litgpt.errors import LitGPTError, LitGPTWarning
from litgpt.generation import SamplingParams, StopMatcher, forget_prefix, generate_batch, stream_tokens
from litgpt.loading import load_model, parse_precision, resolve_checkpoint
from litgpt.utils import peak_rss_gb

Prompt = Union[str, list]  # text, or a list of {"role", "content"} messages


@dataclass
class RowStep:
    """What one row of :meth:`LLM.stream_rows` produced in one step."""

    ids: list[int]
    finish_reason: str | None = None  # "stop" (a stop sequence) or "length" (its token budget) on the last step


class Preprocessor:
    """Turns text into token ids on the model's device and back."""

    def __init__(self, tokenizer, device: torch.device | str = "cpu") -> None:
        self.tokenizer = tokenizer
        self.device = torch.device(device)

    def encode(self, text: str) -> torch.Tensor:
        return self.tokenizer.encode(text, device=self.device)

    def decode(self, token_ids) -> str:
        return self.tokenizer.decode(token_ids)


def _positive_int(name: str, value) -> int:
    """``value`` if it is a positive integer (not a bool, a float or a string), else a one-line error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise LitGPTError(f"{name} must be a positive integer, got {value!r}")
    return value


def _share_random_state(device: torch.device) -> None:
    """Give every process rank 0's random state for ``device``: tensor-parallel ranks then draw the same tokens, and
    the same ones a single process seeded alike draws (as the established release, which seeds every rank alike)."""
    import torch.distributed as dist

    if device.type == "cuda":
        state = torch.cuda.get_rng_state(device).to(device)
        dist.broadcast(state, src=0)
        torch.cuda.set_rng_state(state.cpu(), device)
    else:
        state = torch.get_rng_state()
        dist.broadcast(state, src=0)
        torch.set_rng_state(state)


class LLM(torch.nn.Module):
    def __init__(
        self,
        model,
        preprocessor: Preprocessor,
        prompt_style,
        checkpoint_dir: Path | None = None,
        config: Config | None = None,
        init: str = "pretrained",
    ) -> None:
        super().__init__()
        self.model = model
        self.preprocessor = preprocessor
        self.prompt_style = prompt_style
        self.checkpoint_dir = checkpoint_dir
        self.config = config or (model.config if model is not None else None)
        self.init = init
        self.fixed_kv_cache_size: int | None = None
        self.generator: torch.Generator | None = None  # sampling draws from it when set, else from torch's global RNG
        self.global_rank = 0  # this process's rank under generate_strategy="tensor_parallel"
        self.decode_fn: Callable | None = None  # a compiled decode step, see compile()
        self.compile_settings: dict | None = None  # compile()'s arguments: distribute() compiles the new model too
        self.generate_strategy: str | None = None  # distribute()'s, which save() needs to know

    @property
    def tokenizer(self):
        return self.preprocessor.tokenizer

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        model: str | Path,
        init: Literal["pretrained", "random"] = "pretrained",
        tokenizer_dir: str | Path | None = None,
        access_token: str | None = None,
        distribute: Literal["auto"] | None = "auto",
    ) -> LLM:
        """Load a registry name or repo id (local first, then the hub, then a package that ships it), a checkpoint
        folder, or a ``.gguf`` file. ``init="random"`` builds the architecture with fresh weights and needs
        ``tokenizer_dir``. ``distribute=None`` leaves the model unplaced until :meth:`distribute`."""
        from litgpt.prompts import resolve_prompt_style
        from litgpt.tokenizer import Tokenizer

        if init not in ("pretrained", "random"):
            raise LitGPTError(f"init must be 'pretrained' or 'random', got {init!r}")
        if distribute not in ("auto", None):
            raise LitGPTError(f"distribute must be 'auto' or None, got {distribute!r}")
        access_token = access_token or os.getenv("HF_TOKEN")
        if init == "random":
            if tokenizer_dir is None:
                raise LitGPTError('init="random" needs tokenizer_dir, a folder (or model name) with tokenizer files')
            tok_dir = resolve_checkpoint(tokenizer_dir, access_token=access_token, tokenizer_only=True)
            config = Config.from_checkpoint(model) if Path(model).is_dir() else Config.from_name(str(model))
            checkpoint_dir = None
        else:
            checkpoint_dir = resolve_checkpoint(model, access_token=access_token)
            tok_dir = checkpoint_dir
            if tokenizer_dir is not None:  # a folder or a model name, found as for init="random"
                tok_dir = resolve_checkpoint(tokenizer_dir, access_token=access_token, tokenizer_only=True)
            config = Config.from_checkpoint(checkpoint_dir)
        tokenizer = Tokenizer(tok_dir)
        prompt_style = resolve_prompt_style(checkpoint_dir or tok_dir, config, tokenizer)
        llm = cls(None, Preprocessor(tokenizer), prompt_style, checkpoint_dir, config, init)
        if distribute == "auto":
            llm.distribute()
        return llm

    def distribute(
        self,
        accelerator: str = "auto",
        devices: int | str = 1,
        precision: str | None = None,
        quantize: str | None = None,
        generate_strategy: Literal["sequential", "tensor_parallel"] | None = None,
        fixed_kv_cache_size: int | None = None,
    ) -> None:
        """Place the model: pick the device(s) and precision and allocate the KV cache.

        ``generate_strategy="sequential"`` spreads the blocks over ``devices`` (a model larger than one device
        fits); ``"tensor_parallel"`` launches one process per device and shards every block across them.
        """
        if accelerator == "auto":
            accelerator = "cuda" if torch.cuda.is_available() else "cpu"
        if accelerator not in ("cpu", "cuda", "gpu"):
            raise LitGPTError(f"accelerator must be 'auto', 'cpu' or 'cuda', got {accelerator!r}")
        kind = "cuda" if accelerator in ("cuda", "gpu") else "cpu"
        if kind == "cuda" and not torch.cuda.is_available():
            raise LitGPTError("accelerator='cuda' but no CUDA device is visible; use accelerator='cpu'")
        available = torch.cuda.device_count() if kind == "cuda" else None
        n = (available or 1) if devices in ("auto", -1) else _positive_int("devices", devices)
        if fixed_kv_cache_size is not None:
            _positive_int("fixed_kv_cache_size", fixed_kv_cache_size)
        if available is not None and n > available:
            raise LitGPTError(f"devices={n} but only {available} CUDA device(s) are visible")
        if generate_strategy not in (None, "sequential", "tensor_parallel"):
            raise LitGPTError(f"generate_strategy must be None, 'sequential' or 'tensor_parallel', got {generate_strategy!r}")
        if generate_strategy is None and n != 1:
            raise LitGPTError(f"devices={n} needs generate_strategy='sequential' or 'tensor_parallel'")
        if generate_strategy is not None and self.init == "random":
            raise LitGPTError(
                "a model loaded with init='random' has no pretrained weights to distribute; "
                "save it with llm.save(dir) and load that folder, or use generate_strategy=None"
            )
        if generate_strategy == "sequential" and n > self.config.n_layer:
            raise LitGPTError(f"devices={n} for {self.config.n_layer} layers: use at most {self.config.n_layer} devices")
        if generate_strategy == "tensor_parallel":
            from litgpt.distribute import head_split

            head_split(self.config.n_head, self.config.n_query_groups, 0, n)  # can the heads be split n ways?
        if quantize is not None:
            from litgpt.quantize import check_mode, load_quantized, quantize_model

            check_mode(quantize, kind, generate_strategy)
        rank = 0
        if generate_strategy == "tensor_parallel":
            rank, device = self._launch(kind, n)
        else:
            # the current CUDA device (0 unless set: each `litgpt serve` replica sets its own, evaluate --device cuda:N)
            device = torch.device("cuda", torch.cuda.current_device()) if kind == "cuda" else torch.device("cpu")
        self.global_rank = rank  # the process that prints (tensor_parallel runs one process per device)
        if rank == 0:
            print(f"Using {n} device(s)", file=sys.stderr)
        dtype = parse_precision(precision, device)
        if self.init == "random":
            from litgpt.model import GPT

            with torch.device(device):
                self.model = GPT(self.config)
            self.model.init_weights()
            self.model.to(dtype)
            if quantize is not None:
                quantize_model(self.model, quantize)
        elif quantize is not None:  # loaded memory-mapped and quantized onto the device layer by layer
            self.model = load_quantized(self.checkpoint_dir, quantize, device=device, dtype=dtype, config=self.config)
        elif generate_strategy is None:
            self.model = load_model(self.checkpoint_dir, device=device, dtype=dtype, config=self.config)
        else:
            from litgpt.distribute import place_sequentially, shard_tensor_parallel

            model = load_model(self.checkpoint_dir, device="cpu", config=self.config)  # memory-mapped
            if generate_strategy == "sequential":
                stages = [torch.device(f"cuda:{i}") if kind == "cuda" else torch.device("cpu") for i in range(n)]
                self.model = place_sequentially(model.to(dtype), stages)
            else:
                self.model = shard_tensor_parallel(model, rank, n).to(device=device, dtype=dtype)
                _share_random_state(device)  # every rank samples what rank 0 samples, as one process would
        self.model.eval()
        if device.type == "cpu" and generate_strategy is None:
            from litgpt.kernels import use_decode_kernels

            use_decode_kernels(self.model)  # decode steps run our fused matrix-vector kernels
            from litgpt import hugepages

            hugepages.move_later(self.model)  # into 2 MB pages at its first decode step (not before the first token)
        self.preprocessor.device = device
        self.generate_strategy = generate_strategy
        self.fixed_kv_cache_size = fixed_kv_cache_size
        if fixed_kv_cache_size is not None:
            self.model.set_kv_cache(1, max_seq_length=min(fixed_kv_cache_size, self.config.block_size))
        self.decode_fn = None  # compiled for the model replaced above: its decode steps would run on the old cache
        if self.compile_settings is not None:
            self.compile(**self.compile_settings)

    @staticmethod
    def _launch(kind: str, n: int) -> tuple[int, torch.device]:
        """Start one process per device (this script is re-run for the other ranks) and join the process group."""
        import lightning as L

        fabric = L.Fabric(accelerator=kind, devices=n, strategy="ddp")
        fabric.launch()
        return fabric.global_rank, fabric.device

    def compile(self, mode: str | None = None, backend: str = "inductor") -> None:
        """Compile the one-token decode step (fixed shapes thanks to the static KV cache); prefill stays eager.

        ``fullgraph=True``: a graph break is an error, not a silent slowdown. On a GPU the default mode is
        "reduce-overhead" (CUDA graphs)."""
        self._require_model()
        self.compile_settings = dict(mode=mode, backend=backend)
        if mode is None and self.preprocessor.device.type == "cuda" and backend == "inductor":
            mode = "reduce-overhead"
        from litgpt import kernels

        kernels.register_for_compile()  # our CPU kernels as a custom op inside the graph
        self.decode_fn = torch.compile(self.model, mode=mode, backend=backend, dynamic=False, fullgraph=True)

    def _require_model(self) -> None:
        if self.model is None:
            raise LitGPTError(
                "The model is not placed yet: call llm.distribute() (or llm.trainer_setup()) first, "
                'or load with distribute="auto"'
            )

    # ------------------------------------------------------------------ generation
    def _prompt_ids(self, prompt: Prompt, sys_prompt: str | None) -> torch.Tensor:
        text = self.prompt_style.apply(prompt, sys_prompt=sys_prompt)
        return self.preprocessor.encode(text)

    def _stop_tokens(self) -> tuple:
        return tuple(self.prompt_style.stop_tokens(self.preprocessor.tokenizer))

    def _max_new(self, prompts: Sequence[torch.Tensor], max_new_tokens: int) -> list[int]:
        """Each prompt's token budget: ``max_new_tokens``, or what the context leaves after that prompt (a warning
        then says so)."""
        if max_new_tokens != 0:
            _positive_int("max_new_tokens", max_new_tokens)
        limit = self.context_length
        empty = [i for i, p in enumerate(prompts) if len(p) == 0]
        if empty:
            which = "The prompt" if len(prompts) == 1 else f"Prompt {empty[0]}"
            raise LitGPTError(f"{which} encodes to no tokens; give it some text")
        longest = max(len(p) for p in prompts)
        if longest >= limit:
            raise LitGPTError(f"The prompt has {longest} tokens but the context holds {limit}; shorten the prompt")
        budgets = [min(max_new_tokens, limit - len(p)) for p in prompts]
        if min(budgets) < max_new_tokens:
            warnings.warn(
                f"max_new_tokens={max_new_tokens} does not fit in the context of {limit} tokens after a {longest}-token "
                f"prompt: generating at most {limit - longest} new tokens there",
                LitGPTWarning,
                stacklevel=4,  # the caller of generate (under its inference_mode wrapper)
            )
        return budgets

    @torch.inference_mode()
    def generate(
        self,
        prompt: Prompt | list[Prompt],
        sys_prompt: str | None = None,
        max_new_tokens: int = 50,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float = 1.0,
        return_as_token_ids: bool = False,
        stream: bool = False,
    ) -> Union[str, torch.Tensor, list, Iterator]:
        """Complete ``prompt`` (text or a message list); a list of prompts is generated as one batch."""
        self._require_model()
        params = SamplingParams(temperature, top_k, top_p)
        if isinstance(prompt, list) and not prompt:
            raise LitGPTError("no prompt to generate from: give a prompt, a list of prompts or a list of messages")
        batched = isinstance(prompt, list) and not isinstance(prompt[0], dict)
        prompts = list(prompt) if batched else [prompt]
        if stream and batched:
            raise LitGPTError("stream=True takes one prompt, not a list")
        ids = [self._prompt_ids(p, sys_prompt) for p in prompts]
        budgets = self._max_new(ids, max_new_tokens)
        stops = self._stop_tokens()
        if stream:
            steps = stream_tokens(self.model, ids, budgets[0], params, stops, self.generator, self.decode_fn)
            return self._stream_text(steps, return_as_token_ids)
        outputs: list[list[int]] = [[] for _ in prompts]
        # one batch, unless the context leaves some prompts less room than max_new_tokens: rows with the same budget
        # share a batch, so each row gets as many tokens as it would alone
        for budget in dict.fromkeys(budgets):
            rows = [i for i, b in enumerate(budgets) if b == budget]
            batch = [ids[i] for i in rows]
            for step in stream_tokens(self.model, batch, budget, params, stops, self.generator, self.decode_fn):
                for row, tokens in zip(rows, step):
                    outputs[row].extend(tokens)
        if return_as_token_ids:
            results = [torch.tensor(o, dtype=torch.long) for o in outputs]
        else:
            results = [self.preprocessor.decode(o) for o in outputs]
        return results if batched else results[0]

    def _stream_text(self, steps: Iterator[list[list[int]]], as_ids: bool) -> Iterator:
        decoder = self.preprocessor.tokenizer.decode_stream()
        for step in steps:
            for token in step[0]:
                if as_ids:
                    yield torch.tensor([token])
                    continue
                piece = decoder.step(token)
                if piece:
                    yield piece
        tail = decoder.flush()
        if tail and not as_ids:
            yield tail

    def prompt_ids(self, prompt: Prompt, sys_prompt: str | None = None) -> torch.Tensor:
        """The token ids :meth:`generate` feeds the model for ``prompt`` (laid out with the prompt style)."""
        return self._prompt_ids(prompt, sys_prompt)

    @property
    def context_length(self) -> int:
        """How many tokens (prompt + completion) one sequence may hold."""
        return self.fixed_kv_cache_size or self.config.block_size

    @torch.inference_mode()
    def stream_rows(
        self,
        prompt_ids: Sequence[torch.Tensor],
        max_new_tokens: int | Sequence[int] = 50,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> Iterator[list[RowStep | None]]:
        """Generate for already-encoded prompts as one batch, each row with its own token budget.

        Yields one list per decoding step with, per row, a :class:`RowStep` (the token ids safe to emit now, stop
        sequences removed, and ``finish_reason`` "stop" or "length" on the row's last step) or ``None`` once that
        row has finished. The batch ends when every row has finished. The server drives this to serve concurrent
        requests together. ``seed``: the batch draws from its own generator seeded with it (the same seed and inputs
        give the same tokens, whatever was sampled before).
        """
        self._require_model()
        params = SamplingParams(temperature, top_k, top_p)
        n = len(prompt_ids)
        budgets = [max_new_tokens] * n if isinstance(max_new_tokens, int) else [int(m) for m in max_new_tokens]
        if len(budgets) != n or any(m < 0 for m in budgets):
            raise LitGPTError("max_new_tokens must be one non-negative integer or one per prompt")
        ids = [p.to(self.preprocessor.device) for p in prompt_ids]
        steps = min(self._max_new(ids, max(budgets, default=0)))  # rows share the room the longest prompt leaves
        budgets = [min(m, steps) for m in budgets]
        stops = self._stop_tokens()
        matchers = [StopMatcher(stops) for _ in ids]
        done = [m == 0 for m in budgets]
        counts = [0] * n
        if all(done):
            yield [RowStep([], "length") for _ in ids]
            return
        generator = self.generator
        if seed is not None:
            generator = torch.Generator(self.preprocessor.device).manual_seed(seed)
        for tokens in generate_batch(self.model, ids, steps, params, stops, generator, self.decode_fn):
            out: list[RowStep | None] = []
            for row, token in enumerate(tokens.tolist()):
                if done[row]:
                    out.append(None)
                    continue
                matcher = matchers[row]
                new = matcher.push(token)
                counts[row] += 1
                reason = None
                if matcher.done:
                    reason = "stop"
                elif counts[row] >= budgets[row]:
                    new += matcher.flush()
                    reason = "length"
                done[row] = reason is not None
                out.append(RowStep(new, reason))
            yield out
            if all(done):
                return

    def benchmark(self, num_iterations: int = 1, **generate_kwargs: Any) -> tuple[str, dict[str, list]]:
        """Run ``generate`` ``num_iterations`` times; return the last text and per-iteration measurements."""
        self._require_model()
        _positive_int("num_iterations", num_iterations)
        prompt = generate_kwargs.get("prompt")
        if isinstance(prompt, list) and prompt and not isinstance(prompt[0], dict):
            raise LitGPTError("benchmark takes one prompt (text or a list of messages), not a list of prompts")
        device = self.preprocessor.device
        keys = ["Seconds total", "Seconds to first token", "Tokens generated", "Inference speed in tokens/sec"]
        results: dict[str, list] = {k: [] for k in keys}
        text = ""
        for _ in range(num_iterations):
            forget_prefix(self.model)  # every iteration computes its whole prompt (none reuses the last one's)
            sync(device)
            start = time.perf_counter()
            first = None
            pieces = []
            n_tokens = 0
            for token in self.generate(**{**generate_kwargs, "stream": True, "return_as_token_ids": True}):
                sync(device)
                first = first or time.perf_counter() - start
                pieces.append(int(token))
                n_tokens += 1
            total = time.perf_counter() - start
            text = self.preprocessor.decode(pieces)
            if generate_kwargs.get("stream"):
                print(text)
            results["Seconds total"].append(total)
            results["Seconds to first token"].append(first if first is not None else total)
            results["Tokens generated"].append(n_tokens)
            results["Inference speed in tokens/sec"].append(n_tokens / total if total > 0 else 0.0)
            if device.type == "cuda":
                results.setdefault("Total GPU memory allocated in GB", []).append(
                    torch.cuda.max_memory_allocated(device) / 1e9
                )
            else:
                results.setdefault("Peak resident memory in GB", []).append(peak_rss_gb())
        return text, results

    # ------------------------------------------------------------------ training hooks and saving
    def forward(
        self,
        input_ids: torch.Tensor,
        target_ids: torch.Tensor | None = None,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        self._require_model()
        logits = self.model(input_ids)
        loss = None
        if target_ids is not None:
            loss_fn = loss_fn or chunked_cross_entropy
            loss = loss_fn(logits[..., :-1, :], target_ids[..., 1:])
        return logits, loss

    def trainer_setup(self, trainer_ckpt: str | Path | None = None) -> None:
        """Materialise the model for a Lightning Trainer (which places it); optionally load a Trainer checkpoint."""
        if self.model is None:
            if self.init == "random":
                from litgpt.model import GPT

                self.model = GPT(self.config)
                self.model.init_weights()
            else:
                self.model = load_model(self.checkpoint_dir, device="cpu", dtype=torch.float32, config=self.config)
        if trainer_ckpt is not None:
            from litgpt.checkpoint import load_state_dict, require_shapes

            trainer_ckpt = _checkpoint_file(Path(trainer_ckpt))
            state = load_state_dict(trainer_ckpt)
            state = state.get("state_dict", state)
            # the keys sit under the LightningModule's attributes ("llm.model." in the documented LitLLM)
            anchor = next((k for k in state if k == "lm_head.weight" or k.endswith(".lm_head.weight")), None)
            if anchor is None:
                raise LitGPTError(f"{trainer_ckpt} holds no GPT weights (no lm_head.weight under any prefix)")
            prefix = anchor[: -len("lm_head.weight")]
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            require_shapes(
                state, self.model.state_dict(), trainer_ckpt, self.config.name or "this model",
                "was the checkpoint trained from another model?",
            )  # fmt: skip
            missing, unexpected = self.model.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise LitGPTError(
                    f"{trainer_ckpt} does not fit this model: missing {missing[:3]}, unexpected {unexpected[:3]}"
                )

    def save(self, out_dir: str | Path, prompt_style=None) -> None:
        """Write a checkpoint folder (weights, config, tokenizer files, prompt style) usable by every command.

        A model quantized to int8 or int4 by :meth:`distribute` is written dequantized: float weights in its compute
        dtype, which carry the quantization's rounding (bitsandbytes' modes cannot be saved). After
        ``generate_strategy="tensor_parallel"`` every process must call ``save``: the slices are gathered and the
        first process writes the folder."""
        import shutil

        from litgpt.prompts import save_prompt_style
        from litgpt.utils import atomic_torch_save

        self._require_model()
        out_dir = Path(out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise LitGPTError(f"{out_dir} is a file, not a folder: give save() a folder path (new or existing)")
        state = _float_state(self.model)
        if self.generate_strategy == "tensor_parallel":
            import torch.distributed as dist

            from litgpt.distribute import gather_tensor_parallel

            state = gather_tensor_parallel(state, self.config)
            if dist.get_rank() != 0:
                dist.barrier()  # returns once rank 0 has written the folder
                return
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(state, out_dir / "lit_model.pth")
        self.config.save(out_dir / "model_config.yaml")
        tok_dir = Path(self.preprocessor.tokenizer.checkpoint_dir)
        # config.json only from the model's own folder: the tokenizer's may describe another model
        sources = [(tok_dir, name) for name in TOKENIZER_FILES if name != "config.json"]
        if self.checkpoint_dir is not None:
            sources.append((Path(self.checkpoint_dir), "config.json"))
        for folder, name in sources:
            if (folder / name).is_file() and folder.resolve() != out_dir.resolve():
                shutil.copy2(folder / name, out_dir / name)
        save_prompt_style(prompt_style or self.prompt_style, out_dir)
        if self.generate_strategy == "tensor_parallel":
            dist.barrier()


def _checkpoint_file(path: Path) -> Path:
    """``path``, or the one checkpoint inside the folder ``path`` (a ``.ckpt`` at any depth, else ``lit_model.pth``)."""
    if not path.is_dir():
        return path
    found = sorted(path.rglob("*.ckpt")) or [p for p in [path / "lit_model.pth"] if p.is_file()]
    if len(found) != 1:
        which = f"{len(found)} .ckpt files" if found else "no .ckpt file and no lit_model.pth"
        raise LitGPTError(f"trainer_ckpt {str(path)!r} is a folder with {which}: pass the checkpoint file itself")
    return found[0]


def _float_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with every int8/int4 layer's codes replaced by its dequantized float weight."""
    state = model.state_dict()
    from litgpt.quantize import BnbLinear, QuantizedLinear

    for name, module in model.named_modules():
        if isinstance(module, BnbLinear):
            raise LitGPTError(
                "a model quantized with bitsandbytes cannot be saved; save the model loaded without quantize "
                "(the quantization is applied again at load time)"
            )
        if isinstance(module, QuantizedLinear):
            for key in [k for k in state if k.startswith(name + ".")]:
                del state[key]
            state[name + ".weight"] = module.dequantize().to(module.weight.dtype)
            if module.bias is not None:
                state[name + ".bias"] = module.bias
    return state


TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "generation_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "config.json",
)


def chunked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=ignore_index
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def benchmark_dict_to_markdown_table(data: dict[str, list]) -> str:
    """Metric / Mean / Std Dev table; a single measurement has a standard deviation of 0."""
    import statistics

    width = max([len("Metric")] + [len(k) for k in data]) + 2
    lines = [
        f"| {'Metric':<{width}}| {'Mean':<28}| {'Std Dev':<28}|",
        f"|{'-' * (width + 1)}|{'-' * 29}|{'-' * 29}|",
    ]
    for key, values in data.items():
        values = [float(v) for v in values]
        mean = statistics.fmean(values) if values else float("nan")
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        lines.append(f"| {key:<{width}}| {mean:<28.2f}| {std:<28.2f}|")
    return "\n".join(lines)
