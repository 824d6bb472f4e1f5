"""The one generation core behind `litgpt generate`, `litgpt chat`, the Python API and the server.

Prefill runs in one pass; each decode step feeds one token per sequence through the static KV cache. Sampling
(top-k, then temperature, then top-p, then a draw) stays on the device. Batches of prompts of different lengths are
left-padded: padded keys are masked and, because RoPE only sees position differences, every row decodes as it would
alone: exactly in float32; in bfloat16 or float16 a row's positions (shifted by its padding) round differently, so a
greedy row may part from its one-by-one completion where two tokens score almost alike.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Optional

import torch

from litgpt import hugepages
from litgpt.errors import LitGPTError
from litgpt.kernels.fused import fused_decoder, screened_head
from litgpt.model import GPT
from litgpt.utils import keep_freed_memory


@dataclass
class SamplingParams:
    temperature: float = 1.0
    top_k: Optional[int] = None
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.temperature, numbers.Real) or not isinstance(self.top_p, numbers.Real):
            raise LitGPTError(f"temperature and top_p must be numbers, got {self.temperature!r} and {self.top_p!r}")
        if not 0 <= self.temperature < float("inf"):  # NaN included
            raise LitGPTError(f"temperature must be a finite number >= 0, got {self.temperature} (0 means greedy)")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, numbers.Integral) or self.top_k < 1):
            raise LitGPTError(f"top_k must be a positive integer or None, got {self.top_k!r}")
        if not 0.0 <= self.top_p <= 1.0:
            raise LitGPTError(f"top_p must be in [0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        # below float32's smallest normal number a temperature leaves all the mass on the best token (and as a
        # float32 it may round to 0: 0 / 0 = NaN)
        return self.temperature < 1.1754944e-38 or self.top_p == 0 or self.top_k == 1


def filtered_probs(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """The distribution sampling draws from: top-k, then temperature, then top-p (the best token always stays)."""
    logits = logits.float()
    if params.top_k is not None:
        k = min(params.top_k, logits.shape[-1])
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    # shifted first: a tiny temperature sends the best token to 0 and the rest to -inf, not to inf - inf = NaN
    logits = (logits - logits.amax(dim=-1, keepdim=True)) / params.temperature
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        sorted_probs = sorted_logits.softmax(dim=-1)
        drop_sorted = sorted_probs.cumsum(dim=-1) - sorted_probs >= params.top_p  # mass before this token
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits.softmax(dim=-1)


def draw(probs: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A sample from each row of ``probs`` without a host sync: argmax of p / Exp(1) noise."""
    noise = torch.empty_like(probs).exponential_(1, generator=generator)
    return (probs / noise).argmax(dim=-1)


def sample(logits: torch.Tensor, params: SamplingParams, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Next token ids (B,) from last-position logits (B, V)."""
    if params.greedy:  # max's indices: the first largest, as argmax's, in half its time or less on a CPU
        return logits.max(dim=-1).indices
    return draw(filtered_probs(logits, params), generator)


def left_pad(prompts: Sequence[torch.Tensor], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack 1-D prompts into (B, T) aligned on the right, with a (B, T) mask of real tokens."""
    T = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), T), pad_id, dtype=torch.long, device=prompts[0].device)
    valid = torch.zeros((len(prompts), T), dtype=torch.bool, device=prompts[0].device)
    for row, p in enumerate(prompts):
        ids[row, T - len(p) :] = p
        valid[row, T - len(p) :] = True
    return ids, valid


@torch.inference_mode()
def generate_batch(
    model: GPT,
    prompts: Sequence[torch.Tensor],
    max_new_tokens: int,
    params: SamplingParams = SamplingParams(),
    stop_tokens: Sequence[Sequence[int]] = (),
    generator: Optional[torch.Generator] = None,
    decode_fn: Optional[Callable] = None,
) -> Iterator[torch.Tensor]:
    """Yield (B,) tensors of new tokens, one step at a time, until every row stopped or ``max_new_tokens``.

    A row that finished keeps being fed its last token (the output for it is ignored by the caller, who tracks stops
    with :class:`StopMatcher`). The KV cache must hold at least ``longest prompt + max_new_tokens`` positions; it is
    (re)allocated here when it does not. ``decode_fn`` (default: the model) runs the one-token decode steps, e.g. a
    ``torch.compile``d model: the prefill has other shapes and stays eager.
    """
    if max_new_tokens < 0:
        raise LitGPTError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    ids, valid = left_pad(prompts)
    B, T = ids.shape
    total = T + max_new_tokens
    if total > model.config.block_size:
        raise LitGPTError(
            f"prompt ({T} tokens) + max_new_tokens ({max_new_tokens}) exceeds the model's context of "
            f"{model.config.block_size} tokens; shorten the prompt or lower max_new_tokens"
        )
    cache = model.transformer.h[0].attn.kv_cache
    if cache is None or cache.k.shape[0] != B or cache.k.shape[2] < total:
        # size the static cache to this request (rounded up so nearby lengths reuse it), never to the whole context;
        # a new batch size alone keeps the length (LLM.distribute(fixed_kv_cache_size=...) set it)
        held = cache.k.shape[2] if cache is not None else 0
        length = held if held >= total else max(held, min(model.config.block_size, -(-total // 256) * 256))
        model.set_kv_cache(B, max_seq_length=length)
    S = model.max_seq_length
    padding = None
    if not bool(valid.all()):
        padding = torch.ones((B, S), dtype=torch.bool, device=ids.device)
        padding[:, :T] = valid
    # prefill: the head runs on the last position only (a large vocabulary makes the others expensive). What the
    # cache still holds from the previous generation (a chat's history) is not computed again. On a CPU the layers
    # reuse the pages the first one freed (litgpt.utils.keep_freed_memory): glibc would hand them back and fault them
    # in again, layer after layer (a quarter of a 2,000-token prefill's time)
    start = reusable_prefix(model, ids) if padding is None else 0
    model.cached_prefix = None  # the cache is being written
    owner = object()  # this generation's mark on the cache: a later one replaces it (see _decode and the finally)
    model.cache_writer = owner
    with keep_freed_memory(ids.device):
        positions = torch.arange(start, T, device=ids.device)
        hidden = model(ids[:, start:], positions, input_pos_maxp1=T, key_padding_mask=padding, return_hidden=True)
    logits = model.project(hidden[:, -1])
    fed: list[torch.Tensor] = []  # the tokens written into the cache after the prompt
    try:
        yield from _decode(model, ids, max_new_tokens, params, generator, decode_fn, logits, padding, fed, owner)
    finally:
        # a stream closed late (say, by garbage collection after another generation) no longer holds the cache
        if padding is None and B == 1 and model.cache_writer is owner:
            remember_prefix(model, ids[0].tolist() + (torch.cat(fed).tolist() if fed else []))


def _decode(
    model, ids, max_new_tokens, params, generator, decode_fn, logits, padding, fed, owner
) -> Iterator[torch.Tensor]:
    """:func:`generate_batch`'s decode steps after the prefill, appending every token fed to the model to ``fed``.
    A generation resumed after another one wrote the cache (``model.cache_writer`` is no longer ``owner``) stops with
    an error: its keys and values are gone."""
    T = ids.shape[1]
    eager = decode_fn is None  # eager steps read only the filled part of the cache; a compiled one keeps fixed shapes
    # On the CPU, set up after the first token is out (building the output layer's int8 copy must not delay it):
    # the whole decode step of the batch runs in one C call where the architecture allows (litgpt.kernels); other
    # steps keep PyTorch's forward with the output layer's top logits from its int8 copy (kernels/head.c)
    fused, screened = None, None
    try_fused = eager and max_new_tokens > 1 and ids.device.type == "cpu"
    top = 1 if params.greedy else params.top_k or 0  # the logits sampling can pick from; the others may be skipped
    for i in range(max_new_tokens):
        token = sample(logits, params, generator)
        yield token
        if i + 1 == max_new_tokens:
            break
        if model.cache_writer is not owner:
            raise LitGPTError(
                "another generation ran on this LLM while this stream was paused, and its KV cache now holds that "
                "generation's prompt: finish or close the stream before starting another generation on the same LLM"
            )
        if try_fused:
            try_fused = False
            if max_new_tokens >= hugepages.MIN_TOKENS:  # a move pays off over enough tokens
                hugepages.settle(model)
            fused = fused_decoder(model)
            screened = screened_head(model) if fused is None and top else None
        if fused is not None:
            logits = fused(token.tolist(), T + i, top, padding)
        else:
            pos = torch.tensor([T + i], device=ids.device)
            if screened is not None:
                hidden = model(
                    token[:, None], pos, input_pos_maxp1=T + i + 1, key_padding_mask=padding, return_hidden=True
                )[:, -1]
                logits = screened(hidden, top)
            elif eager:
                logits = model(token[:, None], pos, input_pos_maxp1=T + i + 1, key_padding_mask=padding)[:, -1]
            else:
                logits = decode_fn(token[:, None], pos, key_padding_mask=padding)[:, -1]
        fed.append(token)


@dataclass
class CachedPrefix:
    """The tokens whose keys and values a model's KV cache holds at positions 0, 1, ... after a generation of one
    sequence, the cache tensor they are in, a fingerprint of those positions (exact sums of the bits of the first and
    last layers' keys and values) and of the weights that computed them (see :func:`_weights_state`): a later prompt
    that starts with these tokens prefills only the rest, unless something else wrote over them since (the
    fingerprint then differs), the cache was replaced, or the weights changed (a training step, a loaded state dict,
    a merged LoRA)."""

    tokens: list[int]
    cache: torch.Tensor
    fingerprint: torch.Tensor
    weights: tuple


def _fingerprint(model: GPT, n: int) -> torch.Tensor:
    sums = []
    for block in (model.transformer.h[0], model.transformer.h[-1]):
        for t in (block.attn.kv_cache.k, block.attn.kv_cache.v):
            bits = t[:, :, :n].view({1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])
            sums.append(bits.sum(dtype=torch.int64).cpu())  # the layers may sit on different devices
    return torch.stack(sums)


def _weights_state(model: GPT) -> tuple | None:
    """Where each weight of the model (parameters and persistent buffers such as quantized codes) lives and how many
    times it was changed in place (PyTorch's version counter, which optimizers' steps and ``load_state_dict`` bump;
    replacing a tensor changes its address). None for weights made under ``torch.inference_mode``, which keep no
    counter: their cached keys and values are then never reused. A change made through ``.data`` in place is not
    seen; call :func:`forget_prefix` after one."""
    try:
        return tuple((t.data_ptr(), t._version) for t in model.state_dict(keep_vars=True).values() if t is not None)
    except RuntimeError:
        return None


def remember_prefix(model: GPT, tokens: list[int]) -> None:
    """Record that the model's cache holds ``tokens`` at positions 0..len-1 (see :class:`CachedPrefix`)."""
    cache = model.transformer.h[0].attn.kv_cache
    weights = _weights_state(model)
    if cache is not None and weights is not None and 0 < len(tokens) <= cache.k.shape[2]:
        model.cached_prefix = CachedPrefix(tokens, cache.k, _fingerprint(model, len(tokens)), weights)


def forget_prefix(model: GPT) -> None:
    """Make the next generation prefill its whole prompt (benchmarks measuring the prefill call it)."""
    model.cached_prefix = None


def reusable_prefix(model: GPT, ids: torch.Tensor) -> int:
    """How many leading tokens of the one prompt in ``ids`` (1, T) the cache already holds, at most T - 1 (the last
    prompt token is always run, for the first logits); 0 when it holds none or cannot be trusted."""
    record: Optional[CachedPrefix] = getattr(model, "cached_prefix", None)
    cache = model.transformer.h[0].attn.kv_cache
    if record is None or ids.shape[0] != 1 or cache is None or record.cache is not cache.k:
        return 0
    prompt = ids[0].tolist()
    n = 0
    limit = min(len(record.tokens), len(prompt) - 1)
    while n < limit and record.tokens[n] == prompt[n]:
        n += 1
    if n and (
        _weights_state(model) != record.weights
        or not torch.equal(_fingerprint(model, len(record.tokens)), record.fingerprint)
    ):
        return 0
    return n


class StopMatcher:
    """Tracks one sequence's tokens against stop sequences; ``push`` returns the tokens safe to emit now.

    Tokens that could begin a stop sequence are held back until it is clear they do not complete one, so a stream
    never shows part of a stop sequence.
    """

    def __init__(self, stop_tokens: Sequence[Sequence[int]]) -> None:
        self.stops = [list(s) for s in stop_tokens if len(s)]
        self.held: list[int] = []
        self.done = False

    def push(self, token: int) -> list[int]:
        if self.done:
            return []
        self.held.append(token)
        for stop in self.stops:
            if self.held[-len(stop) :] == stop:
                self.done = True
                out = self.held[: len(self.held) - len(stop)]
                self.held = []
                return out
        # keep the longest suffix that is a proper prefix of some stop sequence
        keep = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(self.held)), keep, -1):
                if self.held[-n:] == stop[:n]:
                    keep = n
                    break
        out = self.held[: len(self.held) - keep]
        self.held = self.held[len(self.held) - keep :]
        return out

    def flush(self) -> list[int]:
        out, self.held = self.held, []
        return out


def stream_tokens(
    model: GPT,
    prompts: Sequence[torch.Tensor],
    max_new_tokens: int,
    params: SamplingParams = SamplingParams(),
    stop_tokens: Sequence[Sequence[int]] = (),
    generator: Optional[torch.Generator] = None,
    decode_fn: Optional[Callable] = None,
) -> Iterator[list[list[int]]]:
    """Yield, per step, the list of newly emittable token ids for each row (stop sequences removed)."""
    matchers = [StopMatcher(stop_tokens) for _ in prompts]
    for tokens in generate_batch(model, prompts, max_new_tokens, params, stop_tokens, generator, decode_fn):
        step = [m.push(t) for m, t in zip(matchers, tokens.tolist())]
        yield step
        if all(m.done for m in matchers):
            return
    tail = [m.flush() for m in matchers]
    if any(tail):
        yield tail


def generate(
    model: GPT,
    prompt: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: float = 1.0,
    stop_tokens: Sequence[Sequence[int]] = (),
    include_prompt: bool = True,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Generate for one 1-D prompt and return the token ids (prompt + completion by default)."""
    params = SamplingParams(temperature, top_k, top_p)
    new: list[int] = []
    for step in stream_tokens(model, [prompt], max_new_tokens, params, stop_tokens, generator):
        new.extend(step[0])
    out = torch.tensor(new, dtype=torch.long, device=prompt.device)
    return torch.cat((prompt, out)) if include_prompt else out
