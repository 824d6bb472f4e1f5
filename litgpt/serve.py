"""`litgpt serve`: an HTTP server for a model, built on LitServe.

Layout (one LitServe ``LitAPI`` with a custom ``LitSpec``):

* The HTTP process parses and checks every request (types, sizes, the prompt against the context, token budgets)
  and tokenizes it, so a bad request gets a 4xx JSON answer there and never reaches the model. Only valid jobs
  (token ids + sampling settings) go to the inference worker.
* The inference worker collects concurrent jobs into batches (LitServe's ``max_batch_size`` / ``batch_timeout``)
  and generates each batch in one pass of the shared generation core (:meth:`litgpt.api.LLM.stream_rows`). Jobs
  whose sampling settings differ, or that would not fit the context together, are split into sub-batches.
* Routes: ``POST /predict`` (``{"prompt": ...}`` -> ``{"output": ...}``, newline-delimited JSON pieces with
  ``--stream true``); with ``--openai_spec true`` also ``POST /v1/chat/completions``, ``POST /v1/completions`` and
  ``GET /v1/models`` (OpenAI-compatible, with SSE streaming) and a chat page at ``/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import pickle
import sys
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, ValidationError

from litgpt.errors import LitGPTError

try:  # the server needs LitServe; the rest of litgpt does not
    import litserve as ls
    from fastapi import Request
    from litserve.specs.base import LitSpec
    from litserve.utils import LitAPIStatus, ResponseBufferItem
except ImportError:  # pragma: no cover - reported by main()
    ls = None
    LitSpec = Request = object

STATIC_DIR = Path(__file__).parent / "static"
MAX_STOP_STRINGS = 16
# paths that need no API key: the chat page (it asks for the key itself) and the health probe
PUBLIC_PATHS = frozenset({"/", "/health", "/favicon.ico"})


class BadRequest(Exception):
    """A request the server refuses: answered with ``status`` and an OpenAI-style error object."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.param, self.status = message, param, status


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def error_response(err: BadRequest):
    from fastapi.responses import JSONResponse

    kind = {401: "authentication_error", 413: "request_too_large"}.get(err.status, "invalid_request_error")
    return JSONResponse(error_body(err.message, kind, err.param), status_code=err.status)


# ---------------------------------------------------------------------------------------------- request bodies
class _Body(BaseModel):
    # strict: "5" is not a number and 1.5 is not an integer; unknown fields (user, metadata, ...) are ignored
    model_config = ConfigDict(strict=True, extra="ignore")


class ContentPart(_Body):
    type: str
    text: Optional[str] = None


class Message(_Body):
    role: str
    content: Union[str, list[ContentPart], None] = None


class Sampling(_Body):
    temperature: Optional[float] = None
    top_k: Optional[int] = None
    top_p: Optional[float] = None


class PredictBody(Sampling):
    prompt: Union[str, list[Message]]
    sys_prompt: Optional[str] = None
    max_new_tokens: Optional[int] = None


class StreamOptions(_Body):
    include_usage: bool = False


class ResponseFormat(_Body):
    type: str


class OpenAIBody(Sampling):
    model: Optional[str] = None
    max_tokens: Optional[int] = None
    max_completion_tokens: Optional[int] = None
    stop: Union[str, list[str], None] = None
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    n: int = 1
    seed: Optional[int] = None
    # OpenAI features this server does not have: accepted at their neutral values only (see `refuse_unsupported`),
    # so a client that relies on one gets a clear refusal instead of an answer that quietly ignores it
    tools: Optional[list] = None
    tool_choice: Union[str, dict, None] = None
    functions: Optional[list] = None
    function_call: Union[str, dict, None] = None
    logprobs: Union[bool, int, None] = None
    top_logprobs: Optional[int] = None
    response_format: Optional[ResponseFormat] = None
    presence_penalty: Optional[float] = None
    frequency_penalty: Optional[float] = None
    logit_bias: Optional[dict] = None
    echo: Optional[bool] = None
    best_of: Optional[int] = None
    suffix: Optional[str] = None


def refuse_unsupported(body: OpenAIBody) -> None:
    """A one-line 400 for an OpenAI option this server cannot honour (answering without it would mislead)."""
    in_use = {
        "tools": bool(body.tools) and "tools (function calling)",
        "functions": bool(body.functions) and "functions (function calling)",
        "tool_choice": body.tool_choice not in (None, "none", "auto") and "tool_choice (function calling)",
        "function_call": body.function_call not in (None, "none", "auto") and "function_call (function calling)",
        "logprobs": bool(body.logprobs) and "logprobs",
        "top_logprobs": bool(body.top_logprobs) and "top_logprobs",
        "response_format": body.response_format is not None and body.response_format.type != "text"
        and f"response_format {body.response_format.type!r} (only 'text')",
        "presence_penalty": bool(body.presence_penalty) and "presence_penalty other than 0",
        "frequency_penalty": bool(body.frequency_penalty) and "frequency_penalty other than 0",
        "logit_bias": bool(body.logit_bias) and "logit_bias",
        "echo": bool(body.echo) and "echo",
        "best_of": body.best_of not in (None, 1) and "best_of other than 1",
        "suffix": bool(body.suffix) and "suffix",
    }  # fmt: skip
    for param, what in in_use.items():
        if what:
            raise BadRequest(f"{what} is not supported by litgpt serve; leave it out of the request", param=param)


class ChatBody(OpenAIBody):
    messages: list[Message]


class CompletionBody(OpenAIBody):
    # text, several texts, token ids, or several lists of token ids (as OpenAI's completions take)
    prompt: Union[str, list[str], list[int], list[list[int]]]


def parse_body(model: type[BaseModel], raw: bytes) -> Any:
    try:
        return model.model_validate_json(raw or b"")
    except ValidationError as err:
        problems = []
        for e in err.errors():
            where = ".".join(str(p) for p in e["loc"])
            problems.append(f"{where}: {e['msg']}" if where else e["msg"])
        first = err.errors()[0]["loc"] if err.errors() else ()
        raise BadRequest(
            "Invalid request body: " + "; ".join(problems), param=str(first[0]) if first else None
        ) from None


def message_text(message: Message, index: int = 0) -> str:
    if message.content is None:
        if message.role != "assistant":  # OpenAI lets only an assistant message (one that called tools) have none
            raise BadRequest(f"messages[{index}] ({message.role}) has no content", param="messages")
        return ""
    if isinstance(message.content, str):
        return message.content
    parts = []
    for part in message.content:
        if part.type != "text":
            raise BadRequest(f"Only text content is supported, got a {part.type!r} part", param="messages")
        if part.text is None:
            raise BadRequest(f"A text part of messages[{index}] has no 'text' string", param="messages")
        parts.append(part.text)
    return "\n".join(parts)  # as vLLM joins a text-only model's parts


ROLE_SPELLINGS = {"developer": "system"}  # newer OpenAI clients send the system prompt as "developer"


# ---------------------------------------------------------------------------------------------- HTTP-side checks
class Frontend:
    """Tokenizer, prompt style and limits of the served model, used by the HTTP process to check requests."""

    def __init__(
        self,
        llm,
        model_name: str,
        max_new_tokens: int,
        temperature: float,
        top_k: int | None,
        top_p: float,
        max_tokens_cap: int,
    ) -> None:
        self.llm = llm
        self.model_name = model_name
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.max_tokens_cap = max_tokens_cap
        self.created = int(time.time())

    @property
    def context_length(self) -> int:
        return self.llm.context_length

    def chat_ids(self, messages: Sequence[Message], sys_prompt: str | None = None, param: str = "messages"):
        if not messages:
            raise BadRequest("messages must hold at least one message", param=param)
        turns = [
            {"role": ROLE_SPELLINGS.get(m.role, m.role), "content": message_text(m, i)} for i, m in enumerate(messages)
        ]
        return self._laid_out(turns, sys_prompt, param)

    def text_ids(self, text: str, sys_prompt: str | None = None, param: str = "prompt") -> list[int]:
        return self._laid_out(text, sys_prompt, param)

    def raw_ids(self, prompt: str | list[int], param: str = "prompt") -> list[int]:
        """A completion prompt as token ids: text is encoded as it is (no chat template); ids are checked."""
        if isinstance(prompt, str):
            return self.llm.preprocessor.tokenizer.encode(prompt).tolist()
        vocab = self.llm.config.padded_vocab_size
        bad = next((t for t in prompt if not 0 <= t < vocab), None)
        if bad is not None:
            raise BadRequest(f"token id {bad} is outside the model's vocabulary (0..{vocab - 1})", param=param)
        return list(prompt)

    def _laid_out(self, prompt, sys_prompt: str | None, param: str) -> list[int]:
        try:
            return self.llm.prompt_ids(prompt, sys_prompt).tolist()
        except Exception as err:  # the prompt style or the chat template rejected the input
            raise BadRequest(f"Cannot lay out the prompt for this model: {err}", param=param) from None

    def job(
        self,
        ids: list[int],
        *,
        max_tokens: int | None,
        temperature: float | None,
        top_k: int | None,
        top_p: float | None,
        stop: str | list[str] | None = None,
        tokens_param: str = "max_tokens",
        prompt_param: str = "prompt",
        seed: int | None = None,
    ) -> dict:
        """A validated generation job for the worker (plain data, so it crosses process boundaries)."""
        from litgpt.generation import SamplingParams

        context = self.context_length
        if not ids:
            raise BadRequest("The prompt is empty", param=prompt_param)
        if len(ids) >= context:
            raise BadRequest(
                f"The prompt has {len(ids)} tokens but the model's context holds {context}; shorten the prompt",
                param=prompt_param,
            )
        if max_tokens is None:
            max_tokens = self.max_new_tokens
        elif max_tokens < 1:
            raise BadRequest(f"{tokens_param} must be a positive integer, got {max_tokens}", param=tokens_param)
        max_tokens = min(max_tokens, self.max_tokens_cap, context - len(ids))
        temperature = self.temperature if temperature is None else temperature
        top_k = self.top_k if top_k is None else top_k
        top_p = self.top_p if top_p is None else top_p
        try:
            SamplingParams(temperature, top_k, top_p)
        except LitGPTError as err:
            param = next((p for p in ("temperature", "top_k", "top_p") if p in str(err)), None)
            raise BadRequest(str(err), param=param) from None
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if len(stops) > MAX_STOP_STRINGS or any(not s for s in stops):
            raise BadRequest(f"stop takes at most {MAX_STOP_STRINGS} non-empty strings", param="stop")
        return {
            "ids": ids,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_k": top_k,
            "top_p": top_p,
            "stop": stops,
            "seed": None if seed is None else seed % 2**64,  # torch.Generator takes 64 bits
        }


# ---------------------------------------------------------------------------------------------- worker side
class StopStrings:
    """Cuts text at the first stop string; holds back a tail that may be the start of one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """The text safe to emit now, and whether a stop string was hit (the text then ends before it)."""
        buf = self.pending + text
        hits = [i for i in (buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.pending = ""
            return buf[: min(hits)], True
        keep = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(buf)), keep, -1):
                if buf.endswith(s[:k]):
                    keep = k
                    break
        self.pending = buf[len(buf) - keep :]
        return buf[: len(buf) - keep], False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


class _Row:
    """Decoding state of one request inside a batch."""

    def __init__(self, tokenizer, job: dict) -> None:
        self.decoder = tokenizer.decode_stream()
        self.stops = StopStrings(job["stop"])
        self.prompt_tokens = len(job["ids"])
        self.completion_tokens = 0
        self.finished = False

    def advance(self, step) -> dict | None:
        """The event for this step's tokens (``step`` is a :class:`litgpt.api.RowStep`), or None if nothing new."""
        text = "".join(self.decoder.step(t) for t in step.ids)
        self.completion_tokens += len(step.ids)
        if step.finish_reason is not None:
            text += self.decoder.flush()
        text, hit = self.stops.feed(text)
        reason = "stop" if hit else step.finish_reason
        if reason is not None and not hit:
            text += self.stops.flush()
        if reason is None:
            return {"text": text} if text else None
        self.finished = True
        return {
            "text": text,
            "finish_reason": reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


def plan_batches(jobs: Sequence[dict], context: int) -> list[list[int]]:
    """Split jobs (by index) into model batches: same sampling settings, and prompts + budgets that fit the context
    together (prompts are left-padded to the longest one)."""
    from litgpt.generation import SamplingParams

    by_params: dict[tuple, list[int]] = {}
    for i, job in enumerate(jobs):
        params = SamplingParams(job["temperature"], job["top_k"], job["top_p"])
        if params.greedy:
            key: tuple = ("greedy",)
        elif job.get("seed") is not None:  # alone in its batch: its draws depend on its seed only, not on traffic
            key = ("seeded", i)
        else:
            key = (params.temperature, params.top_k, params.top_p)
        by_params.setdefault(key, []).append(i)
    batches = []
    for members in by_params.values():
        members = sorted(members, key=lambda i: -len(jobs[i]["ids"]))
        current: list[int] = []
        longest = budget = 0
        for i in members:
            need = max(budget, jobs[i]["max_tokens"])
            if current and longest + need > context:
                batches.append(current)
                current, budget = [], 0
            if not current:
                longest = len(jobs[i]["ids"])
            current.append(i)
            budget = max(budget, jobs[i]["max_tokens"])
        if current:
            batches.append(current)
    return sorted((sorted(b) for b in batches), key=lambda b: b[0])


def generate_events(llm, jobs: Sequence[dict], log=None, cancelled=None) -> Iterator[list[str]]:
    """Run a list of jobs; yield per step one JSON event string per job ("" where a job has nothing new).

    ``cancelled``: a mapping shared with the HTTP process whose keys are the ids of jobs whose client went away; such
    a job ends at the next step, and a batch ends once none of its jobs is left."""
    import torch

    rows = [_Row(llm.preprocessor.tokenizer, job) for job in jobs]
    for batch in plan_batches(jobs, llm.context_length):
        start = time.perf_counter()
        first = jobs[batch[0]]
        seed = first.get("seed")
        steps = llm.stream_rows(
            [torch.tensor(jobs[i]["ids"], dtype=torch.long) for i in batch],
            [jobs[i]["max_tokens"] for i in batch],
            temperature=first["temperature"],
            top_k=first["top_k"],
            top_p=first["top_p"],
            seed=seed if len(batch) == 1 else None,
        )
        try:
            for step in steps:
                _drop_cancelled(jobs, rows, batch, cancelled)
                out = [""] * len(jobs)
                for i, row_step in zip(batch, step):
                    if row_step is None or rows[i].finished:
                        continue
                    event = rows[i].advance(row_step)
                    if event is not None:
                        out[i] = json.dumps(event)
                yield out
                if all(rows[i].finished for i in batch):
                    break
        finally:
            steps.close()
        if log is not None:
            new = sum(rows[i].completion_tokens for i in batch)
            log(f"batch of {len(batch)} request(s): {new} new tokens in {time.perf_counter() - start:.2f}s")


CANCEL_MEMORY_S = 600.0  # a cancelled id no batch claims (its job had ended already) is forgotten after this


def _drop_cancelled(jobs: Sequence[dict], rows: Sequence[_Row], batch: Sequence[int], cancelled) -> None:
    if not cancelled:  # one round trip to the manager per step while nothing is cancelled
        return
    gone = dict(cancelled.items())
    for i in batch:
        uid = jobs[i].get("id")
        if uid in gone:
            rows[i].finished = True
            cancelled.pop(uid, None)
    now = time.time()
    for uid, since in gone.items():
        if now - since > CANCEL_MEMORY_S:
            cancelled.pop(uid, None)


def _log(message: str) -> None:
    print(f"litgpt serve: {message}", file=sys.stderr, flush=True)


class LitGPTAPI(ls.LitAPI if ls is not None else object):
    """The inference worker: loads the model on its device and generates batches of validated jobs."""

    def __init__(
        self,
        checkpoint_dir: Path,
        spec: LitSpec,
        precision: str | None = None,
        quantize: str | None = None,
        max_batch_size: int = 8,
        batch_timeout: float = 0.05,
        cancelled=None,
        sequential_devices: int = 0,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, spec=spec)
        self.sequential_devices = sequential_devices  # > 0: one replica spread over this many devices
        self.cancelled = cancelled  # ids of jobs whose client went away (shared with the HTTP process)
        self.checkpoint_dir = Path(checkpoint_dir)
        self.precision = precision
        self.quantize = quantize
        self.llm = None

    def setup(self, device) -> None:
        import signal

        import torch

        # Ctrl+C reaches the whole process group: the main process shuts the server down and ends this worker
        signal.signal(signal.SIGINT, signal.SIG_IGN)

        from litgpt.api import LLM

        llm = LLM.load(self.checkpoint_dir, distribute=None)
        accelerator = "cuda" if str(device).startswith("cuda") else "cpu"
        if accelerator == "cuda":
            torch.cuda.set_device(torch.device(device))
        spread = dict(devices=self.sequential_devices, generate_strategy="sequential") if self.sequential_devices else {}
        llm.distribute(accelerator=accelerator, precision=self.precision, quantize=self.quantize, **spread)
        self.llm = llm
        _log(f"model ready on {device}")

    def decode_request(self, request, **kwargs):
        return request  # checked and tokenized by the HTTP process

    def batch(self, inputs):
        return list(inputs)

    def predict(self, jobs, **kwargs):
        if isinstance(jobs, dict):  # max_batch_size=1: LitServe hands over one job at a time
            for out in generate_events(self.llm, [jobs], log=_log, cancelled=self.cancelled):
                yield out[0]
            return
        yield from generate_events(self.llm, jobs, log=_log, cancelled=self.cancelled)

    def unbatch(self, output):
        yield from output

    def encode_response(self, output, **kwargs):
        yield from output


# ---------------------------------------------------------------------------------------------- HTTP routes
class WorkerError(Exception):
    pass


def _describe_worker_error(data) -> str:
    try:
        err = pickle.loads(data) if isinstance(data, bytes) else data
    except Exception:
        err = data
    detail = getattr(err, "detail", None) or str(err)
    return f"Generation failed: {detail}"


class ServeSpec(LitSpec):
    """The routes of `litgpt serve`: they check requests, queue jobs for the worker and shape its events."""

    def __init__(
        self, frontend: Frontend, stream_predict: bool = False, openai: bool = False, cancelled=None,
        predict_path: str = "/predict",
    ) -> None:  # fmt: skip
        super().__init__()
        self.predict_path = predict_path
        self.cancelled = cancelled  # where a job whose client went away is named for the worker
        self.frontend = frontend
        self.stream_predict = stream_predict
        self.openai = openai
        self.api_path = "/v1/chat/completions" if openai else predict_path

    @property
    def stream(self) -> bool:  # the worker always streams events; non-streaming routes gather them
        return True

    def __getstate__(self):  # the worker gets a copy without the HTTP-side state
        state = super().__getstate__()
        state.update(frontend=None, _endpoints=[], response_buffer=None)
        return state

    def pre_setup(self, lit_api) -> None:
        self.add_endpoint(self.predict_path, self.predict_route, ["POST"])
        if self.openai:
            self.add_endpoint("/v1/chat/completions", self.chat_route, ["POST"])
            self.add_endpoint("/v1/completions", self.completions_route, ["POST"])
            self.add_endpoint("/v1/models", self.models_route, ["GET"])
            self.add_endpoint("/v1/models/{model_id:path}", self.model_route, ["GET"])

    def decode_request(self, request, context_kwargs=None):
        return request

    def encode_response(self, output, context_kwargs=None):
        yield from output

    # -- talking to the worker
    async def events(self, job: dict) -> AsyncIterator[dict]:
        """The worker's events for one job, up to and including the one with ``finish_reason``."""
        uid = uuid.uuid4().hex
        queue: deque = deque()
        ready = asyncio.Event()
        self.response_buffer[uid] = ResponseBufferItem(event=ready, response_queue=queue)
        stream = self.data_streamer(queue, ready, send_status=True)
        finished = False
        try:
            self.request_queue.put((self.response_queue_id, uid, time.monotonic(), {**job, "id": uid}))
            async for data, status in stream:
                if status == LitAPIStatus.ERROR:
                    finished = True
                    raise WorkerError(_describe_worker_error(data))
                if not data:
                    continue
                event = json.loads(data)
                finished = bool(event.get("finish_reason"))
                yield event
                if finished:
                    return
            raise WorkerError("Generation ended without a result")
        finally:
            if not finished and self.cancelled is not None:  # the client went away: the worker stops this job
                self.cancelled[uid] = time.time()
            self.response_buffer.pop(uid, None)
            await stream.aclose()

    @staticmethod
    async def unless_gone(request: Request, work: Awaitable):
        """Await ``work`` (the gathering of a non-streamed reply) unless the client goes away first: its jobs are
        then cancelled (the worker stops them at its next step) and None is returned. A stream sees a client leave
        when its next piece cannot be sent; a reply sent whole would otherwise run to its end for nobody."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
                if done:
                    return task.result()
                if await request.is_disconnected():
                    return None
        finally:
            if not task.done():
                task.cancel()  # runs the `finally` of each job's `events`, which names it cancelled for the worker
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def reply_whole(self, request: Request, work: Awaitable, shape: Callable[[Any], dict]):
        """The JSON answer ``shape(result)`` once ``work`` (the gathering of a reply sent whole) is done; a failed
        generation answers 500, a client that went away gets nothing (its jobs are cancelled)."""
        from fastapi.responses import JSONResponse

        try:
            result = await self.unless_gone(request, work)
        except WorkerError as err:
            return JSONResponse(error_body(str(err), "server_error"), status_code=500)
        return _client_gone() if result is None else JSONResponse(shape(result))

    async def gather(self, job: dict) -> dict:
        """Run one job to the end: ``{"text", "finish_reason", "prompt_tokens", "completion_tokens"}``."""
        pieces = []
        final: dict = {}
        async for event in self.events(job):
            pieces.append(event["text"])
            final = event
        return {**final, "text": "".join(pieces)}

    # -- /predict
    async def predict_route(self, request: Request):
        from fastapi.responses import StreamingResponse

        try:
            body = parse_body(PredictBody, await request.body())
            fe = self.frontend
            if isinstance(body.prompt, str):
                ids = fe.text_ids(body.prompt, body.sys_prompt)
            else:
                ids = fe.chat_ids(body.prompt, body.sys_prompt, param="prompt")
            job = fe.job(
                ids, max_tokens=body.max_new_tokens, temperature=body.temperature, top_k=body.top_k,
                top_p=body.top_p, tokens_param="max_new_tokens",
            )  # fmt: skip
        except BadRequest as err:
            return error_response(err)
        if self.stream_predict:

            async def lines():
                try:
                    async for event in self.events(job):
                        if event["text"]:
                            yield json.dumps({"output": event["text"]}) + "\n"
                except WorkerError as err:
                    yield json.dumps(error_body(str(err), "server_error")) + "\n"

            return StreamingResponse(lines(), media_type="application/x-ndjson")
        return await self.reply_whole(request, self.gather(job), lambda result: {"output": result["text"]})

    # -- OpenAI-compatible routes
    def _openai_job(self, body: OpenAIBody, ids: list[int], prompt_param: str) -> dict:
        if body.n != 1:
            raise BadRequest("Only n=1 is supported", param="n")
        refuse_unsupported(body)
        tokens_param = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        return self.frontend.job(
            ids, max_tokens=max_tokens, temperature=body.temperature, top_k=body.top_k, top_p=body.top_p,
            stop=body.stop, tokens_param=tokens_param, prompt_param=prompt_param, seed=body.seed,
        )  # fmt: skip

    async def chat_route(self, request: Request):
        from fastapi.responses import StreamingResponse

        try:
            body = parse_body(ChatBody, await request.body())
            job = self._openai_job(body, self.frontend.chat_ids(body.messages), "messages")
        except BadRequest as err:
            return error_response(err)
        rid, created, model = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time()), self.frontend.model_name
        if body.stream:

            def chunk(delta: dict | None, finish_reason=None, usage=None) -> str:
                choices = [] if delta is None else [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
                ]  # fmt: skip
                data = {
                    "id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "system_fingerprint": None, "choices": choices, "usage": usage,
                }  # fmt: skip
                return f"data: {json.dumps(data)}\n\n"

            async def sse():
                yield chunk({"role": "assistant", "content": ""})
                try:
                    async for event in self.events(job):
                        if event["text"]:
                            yield chunk({"content": event["text"]})
                        if event.get("finish_reason"):
                            yield chunk({}, event["finish_reason"])
                            if wants_usage(body):  # as OpenAI: a last chunk with no choices, only when asked
                                yield chunk(None, usage=usage_of(event))
                except WorkerError as err:
                    yield f"data: {json.dumps(error_body(str(err), 'server_error'))}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(sse(), media_type="text/event-stream", headers=SSE_HEADERS)
        def completion(result: dict) -> dict:
            message = {"role": "assistant", "content": result["text"]}
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": result["finish_reason"]}
            return {"id": rid, "object": "chat.completion", "created": created, "model": model,
                    "system_fingerprint": None, "choices": [choice], "usage": usage_of(result)}  # fmt: skip

        return await self.reply_whole(request, self.gather(job), completion)

    async def completions_route(self, request: Request):
        from fastapi.responses import StreamingResponse

        try:
            body = parse_body(CompletionBody, await request.body())
            prompts = body.prompt
            if isinstance(prompts, str) or (prompts and isinstance(prompts[0], int)):
                prompts = [prompts]
            if not prompts:
                raise BadRequest("prompt must be a string or a non-empty list of strings or token ids", param="prompt")
            jobs = [self._openai_job(body, self.frontend.raw_ids(p), "prompt") for p in prompts]
        except BadRequest as err:
            return error_response(err)
        rid, created, model = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time()), self.frontend.model_name

        def envelope(choices: list, usage=None) -> dict:
            return {"id": rid, "object": "text_completion", "created": created, "model": model,
                    "system_fingerprint": None, "choices": choices, "usage": usage}  # fmt: skip

        if body.stream:

            async def sse():
                totals: list[dict] = []
                try:
                    async for index, event in merge([self.events(job) for job in jobs]):
                        reason = event.get("finish_reason")
                        if reason:
                            totals.append(usage_of(event))
                        if event["text"] or reason:
                            choice = {"index": index, "text": event["text"], "logprobs": None, "finish_reason": reason}
                            yield f"data: {json.dumps(envelope([choice]))}\n\n"
                    if wants_usage(body):  # as OpenAI: a last chunk with no choices, only when asked
                        yield f"data: {json.dumps(envelope([], sum_usage(totals)))}\n\n"
                except WorkerError as err:
                    yield f"data: {json.dumps(error_body(str(err), 'server_error'))}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(sse(), media_type="text/event-stream", headers=SSE_HEADERS)
        def completions(results: list[dict]) -> dict:
            choices = [
                {"index": i, "text": r["text"], "logprobs": None, "finish_reason": r["finish_reason"]}
                for i, r in enumerate(results)
            ]
            return envelope(choices, sum_usage([usage_of(r) for r in results]))

        return await self.reply_whole(request, asyncio.gather(*(self.gather(job) for job in jobs)), completions)

    def model_card(self) -> dict:
        return {"id": self.frontend.model_name, "object": "model", "created": self.frontend.created, "owned_by": "litgpt"}

    async def models_route(self, request: Request):
        from fastapi.responses import JSONResponse

        return JSONResponse({"object": "list", "data": [self.model_card()]})

    async def model_route(self, request: Request):
        """GET /v1/models/{id}: the served model's card under its name (requests may name it any way they like,
        but a lookup of another name is answered 404, as OpenAI answers an unknown model)."""
        from fastapi.responses import JSONResponse

        name = request.path_params.get("model_id", "")
        if name != self.frontend.model_name:
            message = f"The model {name!r} does not exist: this server serves {self.frontend.model_name!r}"
            return JSONResponse(error_body(message, "not_found_error", "model"), status_code=404)
        return JSONResponse(self.model_card())


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DISCONNECT_POLL_S = 0.25  # how often a non-streamed reply checks that its client is still there
SHUTDOWN_GRACE_S = 5  # seconds open connections get to finish on shutdown (uvicorn's default here is 30)


def _client_gone():
    from fastapi.responses import Response

    return Response(status_code=499)  # nobody reads it: the client closed the connection ("client closed request")


def wants_usage(body: OpenAIBody) -> bool:
    return body.stream_options is not None and body.stream_options.include_usage


def usage_of(event: dict) -> dict:
    prompt, completion = event.get("prompt_tokens", 0), event.get("completion_tokens", 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def sum_usage(usages: Sequence[dict]) -> dict:
    return {k: sum(u[k] for u in usages) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}


async def merge(streams: Sequence[AsyncIterator[dict]]) -> AsyncIterator[tuple[int, dict]]:
    """Interleave several event streams as ``(stream index, event)`` in arrival order."""
    if len(streams) == 1:
        async for event in streams[0]:
            yield 0, event
        return
    queue: asyncio.Queue = asyncio.Queue()
    done = object()

    async def pump(index: int, stream: AsyncIterator[dict]) -> None:
        try:
            async for event in stream:
                await queue.put((index, event))
        except Exception as err:  # handed to the consumer, which raises it
            await queue.put((index, err))
        finally:
            await queue.put((index, done))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(tasks)
        while remaining:
            index, item = await queue.get()
            if item is done:
                remaining -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()


# ---------------------------------------------------------------------------------------------- middleware
class GuardMiddleware:
    """Checks the Bearer API key (when one is set) and caps the request body size, answering in JSON."""

    def __init__(self, app, api_key: str | None = None, max_request_bytes: int = 1 << 20) -> None:
        self.app = app
        self.api_key = api_key
        self.max_request_bytes = max_request_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.api_key and scope["path"] not in PUBLIC_PATHS and scope["method"] != "OPTIONS":
            given = headers.get("authorization", "")
            expected = f"Bearer {self.api_key}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                message = "Missing or wrong API key: send the header 'Authorization: Bearer <key>'"
                await self._reply(
                    send, 401, error_body(message, "authentication_error"), {"www-authenticate": "Bearer"}
                )
                return
        too_big = BadRequest(f"The request body exceeds {self.max_request_bytes} bytes", status=413)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_request_bytes:
            await self._reply(send, 413, error_body(too_big.message, "request_too_large"))
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        # read the body up front (it is small JSON) so an oversized one is refused before any route sees it
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_request_bytes:
                await self._reply(send, 413, error_body(too_big.message, "request_too_large"))
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _reply(send, status: int, body: dict, extra_headers: dict | None = None) -> None:
        payload = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        headers += [(k.encode(), v.encode()) for k, v in (extra_headers or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def answer_http_errors_as_json(app) -> None:
    """Unknown paths (404) and wrong methods (405) answer with the same error object as every other refusal."""
    from starlette.exceptions import HTTPException

    kinds = {401: "authentication_error", 404: "not_found_error", 405: "invalid_request_error"}

    async def handler(request, exc: HTTPException):
        from fastapi.responses import JSONResponse

        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404:
            message = f"No route {request.url.path!r}: see /docs for the routes this server has"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path!r}"
        body = error_body(message, kinds.get(exc.status_code, "invalid_request_error"))
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    app.add_exception_handler(HTTPException, handler)


def add_chat_page(app) -> None:
    """Serve the chat page at ``/`` in place of LitServe's plain-text index."""
    from fastapi.responses import HTMLResponse

    page = (STATIC_DIR / "chat.html").read_text(encoding="utf-8")
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) != "/"]

    async def index():
        return HTMLResponse(page)

    app.add_api_route("/", index, methods=["GET"], include_in_schema=False)


# ---------------------------------------------------------------------------------------------- CLI
def build_server(
    checkpoint_dir: Path,
    *,
    quantize: str | None = None,
    precision: str | None = None,
    temperature: float = 0.8,
    top_k: int | None = 50,
    top_p: float = 1.0,
    max_new_tokens: int = 50,
    accelerator: str = "auto",
    devices: int = 1,
    stream: bool = False,
    openai_spec: bool = False,
    chat_page: bool = True,
    api_key: str | None = None,
    max_batch_size: int = 8,
    batch_timeout: float = 0.05,
    max_tokens_cap: int = 2048,
    max_request_bytes: int = 1 << 20,
    api_path: str = "/predict",
    timeout: Optional[float] = None,
    generate_strategy: Optional[str] = None,
):
    """The configured ``LitServer`` (not started) for a resolved checkpoint folder."""
    from litgpt.api import LLM
    from litgpt.generation import SamplingParams

    for option, value, least in (
        ("max_new_tokens", max_new_tokens, 1), ("max_tokens_cap", max_tokens_cap, 1),
        ("max_batch_size", max_batch_size, 1), ("batch_timeout", batch_timeout, 0),
        ("max_request_bytes", max_request_bytes, 1),
    ):  # fmt: skip
        if value < least:
            raise LitGPTError(f"--{option} must be at least {least}, got {value}")
    SamplingParams(temperature, top_k, top_p)
    if accelerator not in ("auto", "cpu", "cuda", "gpu"):
        raise LitGPTError(f"accelerator must be 'auto', 'cpu' or 'cuda', got {accelerator!r}")
    import torch

    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    accelerator = "cuda" if accelerator == "gpu" else accelerator
    if not isinstance(devices, int) or devices < 1:
        raise LitGPTError(f"devices must be a positive integer, got {devices!r}")
    if accelerator == "cpu" and devices != 1 and generate_strategy is None:
        raise LitGPTError("devices > 1 needs CUDA GPUs (one model replica is served per GPU)")
    if accelerator == "cuda" and not torch.cuda.is_available():
        raise LitGPTError("--accelerator cuda, but no CUDA GPU is visible; use --accelerator cpu (or auto)")
    if accelerator == "cuda" and devices > torch.cuda.device_count():
        raise LitGPTError(f"devices={devices} but only {torch.cuda.device_count()} CUDA GPU(s) are visible")

    llm = LLM.load(checkpoint_dir, distribute=None)  # tokenizer, prompt style and config: no weights
    from litgpt.loading import check_weights

    check_weights(checkpoint_dir, llm.config)  # here, in one line: the worker that loads them would print a traceback
    frontend = Frontend(
        llm, llm.config.name, max_new_tokens, temperature, top_k, top_p, min(max_tokens_cap, llm.context_length)
    )
    import multiprocessing

    cancelled = multiprocessing.Manager().dict()  # job ids the HTTP process cancels and the worker reads
    spec = ServeSpec(frontend, stream_predict=stream, openai=openai_spec, cancelled=cancelled, predict_path=api_path)
    sequential = devices if generate_strategy == "sequential" else 0
    api = LitGPTAPI(checkpoint_dir, spec, precision, quantize, max_batch_size, batch_timeout, cancelled, sequential)
    server = ls.LitServer(
        api,
        accelerator=accelerator,
        devices=1 if sequential else devices,
        timeout=timeout or False,  # none by default: generation on a busy server may keep requests queued a while
        middlewares=[(GuardMiddleware, {"api_key": api_key, "max_request_bytes": max_request_bytes})],
        model_metadata={"model": frontend.model_name, "checkpoint_dir": str(checkpoint_dir)},
    )
    server.uvicorn_graceful_timeout = SHUTDOWN_GRACE_S  # Ctrl-C during a long reply: out in seconds, not half a minute
    if openai_spec and chat_page:
        add_chat_page(server.app)
    answer_http_errors_as_json(server.app)
    return server


def _check_before_starting(host: str, port: int, precision, quantize, accelerator: str) -> None:
    """What the model worker would only find after the server has started (its error then reads as a crash)."""
    import socket

    import torch

    from litgpt.loading import parse_precision

    parse_precision(precision, "cpu")  # the name; the worker picks the dtype for its device
    if quantize is not None:
        from litgpt.quantize import check_mode

        on_gpu = accelerator in ("auto", "cuda", "gpu") and torch.cuda.is_available()
        check_mode(quantize, "cuda" if on_gpu else "cpu")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            raise LitGPTError(f"cannot listen on {host}:{port} ({e.strerror}); choose another --port") from None


def _stop_on_sigterm() -> None:
    """`kill`, `docker stop` and systemd send SIGTERM to this process alone: shut down as on Ctrl-C, where LitServe
    ends its worker and HTTP processes (else they outlive it, still holding the port)."""
    import signal

    main_pid = os.getpid()

    def interrupt(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if os.getpid() != main_pid:  # a forked child inherited the handler: end as it would have without it
            signal.raise_signal(signal.SIGTERM)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def main(
    checkpoint_dir: Optional[Path] = None,
    *,
    quantize: Optional[str] = None,
    precision: Optional[str] = None,
    temperature: float = 0.8,
    top_k: Optional[int] = 50,
    top_p: float = 1.0,
    max_new_tokens: int = 50,
    devices: int = 1,
    accelerator: str = "auto",
    port: int = 8000,
    host: str = "127.0.0.1",
    stream: bool = False,
    openai_spec: bool = False,
    chat_page: bool = True,
    api_key: Optional[str] = None,
    max_batch_size: int = 8,
    batch_timeout: float = 0.05,
    max_tokens_cap: int = 2048,
    max_request_bytes: int = 1 << 20,
    access_token: Optional[str] = None,
    api_path: str = "/predict",
    timeout: Optional[float] = None,
    generate_strategy: Optional[Literal["sequential", "tensor_parallel"]] = None,
) -> None:
    """Serve a model over HTTP with LitServe.

    POST /predict {"prompt": ...} answers {"output": ...}. With --openai_spec true the server also speaks the OpenAI
    API (POST /v1/chat/completions, POST /v1/completions, GET /v1/models; "stream": true for server-sent events)
    and serves a chat page at /. Concurrent requests are generated together in batches.

    Args:
        checkpoint_dir: A checkpoint folder, a registry name or repo id, or a .gguf file. Default: the bundled model.
        quantize: Weight quantization for inference.
        precision: Weight dtype, e.g. "bf16-true" or "32-true" (default: bf16 where the hardware computes in it,
            CPUs with AVX512-BF16 included; else fp16 on GPUs, fp32 on CPUs).
        temperature: Default sampling temperature (requests may override it); 0 means greedy.
        top_k: Default top-k (requests may override it); None samples among all tokens.
        top_p: Default nucleus sampling threshold in [0, 1] (requests may override it).
        max_new_tokens: Default number of new tokens when a request does not say.
        devices: How many GPUs to serve on, one model replica each.
        accelerator: "auto", "cpu" or "cuda".
        port: The TCP port to listen on.
        host: The interface to bind: "127.0.0.1" (this machine only), "0.0.0.0" or "::" (all interfaces).
        stream: Stream /predict replies as newline-delimited JSON pieces ({"output": piece} per line).
        openai_spec: Also serve the OpenAI-compatible API under /v1 and the chat page.
        chat_page: Serve the chat page at / (with --openai_spec true).
        api_key: Require "Authorization: Bearer <key>" on API requests (default: $LITGPT_API_KEY, else none).
        max_batch_size: The most requests generated together in one batch.
        batch_timeout: Seconds the worker waits to fill a batch.
        max_tokens_cap: The most new tokens one request may ask for (larger requests are capped).
        max_request_bytes: The largest accepted request body, in bytes.
        access_token: Hugging Face token for gated repos (default: $HF_TOKEN).
        api_path: The path of the plain prediction route.
        timeout: Seconds a request may wait for its reply before it is answered 504 (default: no limit).
        generate_strategy: "sequential": one replica spread block by block over --devices (a model too large for
            one device); "tensor_parallel" is not served (use `litgpt generate_tp`).
    """
    if ls is None:
        raise LitGPTError("litgpt serve needs LitServe: pip install litserve")
    from litgpt.loading import resolve_checkpoint

    api_key = api_key or os.environ.get("LITGPT_API_KEY") or None
    host = {"localhost": "127.0.0.1", "ip6-localhost": "::"}.get(host, host)
    if host not in ("127.0.0.1", "0.0.0.0", "::"):
        raise LitGPTError(f"host must be 'localhost' (127.0.0.1), '0.0.0.0' or '::' (LitServe binds no other), got {host!r}")
    if not 1024 <= port <= 65535:
        raise LitGPTError(f"port must be between 1024 and 65535, got {port}")
    if not api_path.startswith("/") or api_path.startswith("/v1/") or api_path == "/":
        raise LitGPTError(f"api_path must be a path such as '/predict' (not '/' nor under /v1), got {api_path!r}")
    if timeout is not None and timeout <= 0:
        raise LitGPTError(f"timeout must be a positive number of seconds (or unset for none), got {timeout}")
    if generate_strategy not in (None, "sequential"):
        raise LitGPTError(
            f"generate_strategy {generate_strategy!r} cannot serve: use 'sequential' (one replica spread over "
            "--devices) or none (one replica per device)"
        )
    _check_before_starting(host, port, precision, quantize, accelerator)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the HTTP process is forked after tokenizing
    folder = resolve_checkpoint(checkpoint_dir, access_token=access_token)
    server = build_server(
        folder, quantize=quantize, precision=precision, temperature=temperature, top_k=top_k, top_p=top_p,
        max_new_tokens=max_new_tokens, accelerator=accelerator, devices=devices, stream=stream,
        openai_spec=openai_spec, chat_page=chat_page, api_key=api_key, max_batch_size=max_batch_size,
        batch_timeout=batch_timeout, max_tokens_cap=max_tokens_cap, max_request_bytes=max_request_bytes,
        api_path=api_path, timeout=timeout, generate_strategy=generate_strategy,
    )  # fmt: skip
    routes = [f"POST {api_path}"]
    if openai_spec:
        routes += ["POST /v1/chat/completions", "POST /v1/completions", "GET /v1/models[/{id}]"]
        routes += ["GET / (chat page)"] if chat_page else []
    shown = "127.0.0.1" if host == "0.0.0.0" else host
    _log(f"serving {server.model_metadata['model']} from {folder} at http://{shown}:{port}: " + ", ".join(routes))
    if api_key:
        _log("API requests need 'Authorization: Bearer <key>'")
    _stop_on_sigterm()
    try:
        server.run(host=host, port=port, num_api_servers=1, generate_client_file=False)
    except RuntimeError as err:  # LitServe reports a worker that failed to load the model this way
        raise LitGPTError(f"{err} (see the error above)") from None
