"""`litgpt serve`: real servers (subprocesses on free 127.0.0.1 ports) around a tiny random model that uses
SmolLM2's tokenizer and chat template. Greedy replies are compared with `LLM.generate`."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.serve_helpers import Server, make_tiny_checkpoint

requests = pytest.importorskip("requests")
pytest.importorskip("litserve")

API_KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
CHAT = [{"role": "user", "content": "What food do llamas eat?"}]


@pytest.fixture(scope="module")
def tiny_checkpoint(smollm2_hf_dir, tmp_path_factory) -> Path:
    return make_tiny_checkpoint(smollm2_hf_dir, tmp_path_factory.mktemp("serve-tiny"))


@pytest.fixture(scope="module")
def llm(tiny_checkpoint):
    from litgpt.api import LLM

    return LLM.load(tiny_checkpoint)


@pytest.fixture(scope="module")
def servers(tiny_checkpoint, tmp_path_factory, request):
    """Two servers started side by side: the OpenAI-compatible one (with an API key) and a streaming /predict."""
    logs = tmp_path_factory.mktemp("serve-logs")
    openai = Server(
        tiny_checkpoint, logs / "openai.log", "--openai_spec", "true", "--api_key", API_KEY, "--temperature", "0",
        "--max_batch_size", "8", "--batch_timeout", "0.3", "--max_new_tokens", "8", "--max_request_bytes", "20000",
    )  # fmt: skip
    stream = Server(  # with the established release's options: its route path, a timeout, one replica in sequence
        tiny_checkpoint, logs / "stream.log", "--stream", "true", "--temperature", "0", "--api_path", "/generate",
        "--timeout", "120", "--generate_strategy", "sequential", "--devices", "2", "--accelerator", "cpu", "--precision", "32-true",
    )  # fmt: skip
    try:
        request.getfixturevalue("llm")  # load the reference model while the servers start
        openai.wait_ready()
        stream.wait_ready()
        yield {"openai": openai, "stream": stream}
    finally:
        openai.stop()
        stream.stop()


@pytest.fixture(scope="module")
def api(servers) -> Server:
    return servers["openai"]


def post(server: Server, path: str, payload, **kwargs):
    data = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
    return requests.post(
        server.url + path, data=data, headers={**AUTH, **kwargs.pop("headers", {})}, timeout=120, **kwargs
    )


def sse_events(response) -> list:
    """The JSON payloads of a server-sent-events response; the terminating `[DONE]` becomes the string "[DONE]"."""
    events = []
    for line in response.iter_lines(decode_unicode=True):
        if not line:
            continue
        assert line.startswith("data: "), line
        data = line[len("data: ") :]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


# ---------------------------------------------------------------------------------------------- /predict
def test_predict_matches_llm_generate(api, llm):
    r = post(api, "/predict", {"prompt": "Hello there", "max_new_tokens": 12})
    assert r.status_code == 200, r.text
    assert r.json() == {"output": llm.generate("Hello there", temperature=0, max_new_tokens=12)}
    # the server default (--max_new_tokens 8) applies when the request does not say
    r = post(api, "/predict", {"prompt": "Hello there"})
    assert r.json()["output"] == llm.generate("Hello there", temperature=0, max_new_tokens=8)


def test_predict_streaming(servers, tiny_checkpoint):
    from litgpt.api import LLM

    llm = LLM.load(tiny_checkpoint, distribute=None)
    llm.distribute(precision="32-true")  # the server's precision (its model spread over two CPU "devices")
    server = servers["stream"]
    r = requests.post(server.url + "/generate", json={"prompt": "Hello there", "max_new_tokens": 12}, stream=True)
    assert r.status_code == 200
    pieces = [json.loads(line)["output"] for line in r.iter_lines(decode_unicode=True) if line]
    assert len(pieces) > 1
    assert "".join(pieces) == llm.generate("Hello there", temperature=0, max_new_tokens=12)
    # this server has no OpenAI routes and no key, and its route is where --api_path put it
    assert requests.post(server.url + "/v1/chat/completions", json={"messages": CHAT}).status_code in (404, 405)
    assert requests.post(server.url + "/predict", json={"prompt": "Hello there"}).status_code == 404


# ---------------------------------------------------------------------------------------------- chat completions
def test_chat_completion(api, llm):
    r = post(api, "/v1/chat/completions", {"model": "whatever", "messages": CHAT, "max_tokens": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "tiny-serve-test"
    (choice,) = body["choices"]
    expected = llm.generate(CHAT, temperature=0, max_new_tokens=10)
    assert choice["message"] == {"role": "assistant", "content": expected}
    assert choice["finish_reason"] == "length"
    prompt_tokens = len(llm.prompt_ids(CHAT))
    assert body["usage"] == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": 10,
        "total_tokens": prompt_tokens + 10,
    }
    # max_completion_tokens is the newer spelling; content given as a list of text parts
    parts = [{"role": "user", "content": [{"type": "text", "text": CHAT[0]["content"]}]}]
    r = post(api, "/v1/chat/completions", {"messages": parts, "max_completion_tokens": 4})
    assert r.json()["choices"][0]["message"]["content"] == llm.generate(CHAT, temperature=0, max_new_tokens=4)


def test_chat_completion_streaming(api, llm):
    payload = {"messages": CHAT, "max_tokens": 10, "stream": True, "stream_options": {"include_usage": True}}
    r = post(api, "/v1/chat/completions", payload, stream=True)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r)
    assert events[-1] == "[DONE]"
    *chunks, last = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == llm.generate(CHAT, temperature=0, max_new_tokens=10)
    assert len([c for c in chunks if c["choices"][0]["delta"].get("content")]) > 1
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    # asked for with stream_options.include_usage: as OpenAI sends it, a last chunk with no choices
    assert last["choices"] == []
    prompt_tokens = len(llm.prompt_ids(CHAT))
    assert last["usage"] == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": 10,
        "total_tokens": prompt_tokens + 10,
    }
    assert all(c["usage"] is None for c in chunks)
    # not asked for: no usage at all
    chunks = sse_events(post(api, "/v1/chat/completions", {**payload, "stream_options": None}, stream=True))[:-1]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all(c["usage"] is None for c in chunks)


def test_stop_strings(api, llm):
    full = llm.generate(CHAT, temperature=0, max_new_tokens=12)
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    expected = full[: full.index(stop)]
    r = post(api, "/v1/chat/completions", {"messages": CHAT, "max_tokens": 12, "stop": stop})
    choice = r.json()["choices"][0]
    assert choice["message"]["content"] == expected
    assert choice["finish_reason"] == "stop"
    assert r.json()["usage"]["completion_tokens"] < 12
    # a list of stop strings, streamed: the stop string never shows, not even in part
    payload = {"messages": CHAT, "max_tokens": 12, "stop": ["never-there", stop], "stream": True}
    chunks = sse_events(post(api, "/v1/chat/completions", payload, stream=True))[:-1]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == expected
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


# ---------------------------------------------------------------------------------------------- completions, models
def test_completions(api, llm):
    tokenizer = llm.preprocessor.tokenizer
    r = post(api, "/v1/completions", {"prompt": "The capital of France is", "max_tokens": 6})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion"
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "length" and isinstance(choice["text"], str)
    # a raw completion: the prompt is not wrapped in the chat template
    prompt_tokens = len(tokenizer.encode("The capital of France is"))
    assert body["usage"] == {"prompt_tokens": prompt_tokens, "completion_tokens": 6, "total_tokens": prompt_tokens + 6}
    # several prompts: one choice each (generated together), usage summed
    r = post(api, "/v1/completions", {"prompt": ["The capital of France is", "Once upon"], "max_tokens": 6})
    body = r.json()
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert body["choices"][0]["text"] == choice["text"]
    assert body["usage"]["completion_tokens"] == 12
    # streamed
    payload = {"prompt": "The capital of France is", "max_tokens": 6, "stream": True, "stream_options": {"include_usage": True}}
    events = sse_events(post(api, "/v1/completions", payload, stream=True))
    assert events[-1] == "[DONE]"
    assert "".join(e["choices"][0]["text"] for e in events[:-2]) == choice["text"]
    assert events[-2]["choices"] == [] and events[-2]["usage"]["completion_tokens"] == 6
    # the prompt given as token ids (OpenAI's completions take them): the same completion as its text
    ids = tokenizer.encode("The capital of France is").tolist()
    for prompt in (ids, [ids, ids]):
        r = post(api, "/v1/completions", {"prompt": prompt, "max_tokens": 6})
        assert r.status_code == 200, r.text
        assert {c["text"] for c in r.json()["choices"]} == {choice["text"]}


def test_models(api):
    r = requests.get(api.url + "/v1/models", headers=AUTH)
    assert r.status_code == 200
    assert r.json()["object"] == "list"
    assert [m["id"] for m in r.json()["data"]] == ["tiny-serve-test"]
    r = requests.get(api.url + "/v1/models/tiny-serve-test", headers=AUTH)  # the client's models.retrieve
    assert r.status_code == 200 and r.json() == requests.get(api.url + "/v1/models", headers=AUTH).json()["data"][0]
    r = requests.get(api.url + "/v1/models/org/other", headers=AUTH)
    assert r.status_code == 404 and "tiny-serve-test" in r.json()["error"]["message"]


def test_seeded_sampling_is_reproducible(api):
    """A request with a seed gets the same reply each time, whatever else the server sampled meanwhile."""
    payload = {"messages": CHAT, "max_tokens": 8, "temperature": 1.0, "top_k": None, "seed": 1234}
    first = post(api, "/v1/chat/completions", payload).json()["choices"][0]["message"]["content"]
    post(api, "/v1/chat/completions", {**payload, "seed": None})  # unseeded sampling in between
    def text(p):
        return post(api, "/v1/chat/completions", p).json()["choices"][0]["message"]["content"]

    with ThreadPoolExecutor(3) as pool:  # and beside other sampling requests
        replies = list(pool.map(text, [payload, {**payload, "seed": None}, payload]))
    assert replies[0] == replies[2] == first
    assert len({text({**payload, "seed": s}) for s in range(4)} | {first}) > 1  # the seed does choose the draws


def test_roles_and_content_parts(api, llm):
    system = [{"role": "system", "content": "Be brief."}, *CHAT]
    developer = [{"role": "developer", "content": "Be brief."}, *CHAT]  # newer clients' name for the system role
    replies = [post(api, "/v1/chat/completions", {"messages": m, "max_tokens": 5}).json() for m in (system, developer)]
    assert replies[0]["choices"][0]["message"] == replies[1]["choices"][0]["message"]
    assert replies[0]["choices"][0]["message"]["content"] == llm.generate(system, temperature=0, max_new_tokens=5)
    # several text parts are joined by a newline
    parts = [{"role": "user", "content": [{"type": "text", "text": "What food"}, {"type": "text", "text": "do llamas eat?"}]}]
    joined = [{"role": "user", "content": "What food\ndo llamas eat?"}]
    r = post(api, "/v1/chat/completions", {"messages": parts, "max_tokens": 5})
    assert r.json()["choices"][0]["message"]["content"] == llm.generate(joined, temperature=0, max_new_tokens=5)


def test_unknown_routes_and_methods_answer_with_the_error_object(api):
    r = requests.get(api.url + "/v1/engines", headers=AUTH)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error", r.text
    assert "/v1/engines" in r.json()["error"]["message"]
    r = requests.get(api.url + "/v1/chat/completions", headers=AUTH)
    assert r.status_code == 405 and r.json()["error"]["type"] == "invalid_request_error", r.text
    assert "POST" in r.headers["allow"]


# ---------------------------------------------------------------------------------------------- bad requests, auth
@pytest.mark.parametrize(
    ("path", "payload", "param"),
    [
        ("/v1/chat/completions", "{not json", None),
        ("/v1/chat/completions", "", None),
        ("/v1/chat/completions", {"messages": "hello"}, "messages"),
        ("/v1/chat/completions", {"messages": CHAT, "temperature": "hot"}, "temperature"),
        ("/v1/chat/completions", {"messages": CHAT, "max_tokens": "5"}, "max_tokens"),
        ("/v1/chat/completions", {"messages": CHAT, "max_tokens": -1}, "max_tokens"),
        ("/v1/chat/completions", {"messages": CHAT, "max_completion_tokens": 0}, "max_completion_tokens"),
        ("/v1/chat/completions", {"messages": CHAT, "temperature": -1.0}, "temperature"),
        ("/v1/chat/completions", {"messages": CHAT, "stop": 5}, "stop"),
        ("/v1/chat/completions", {"messages": CHAT, "n": 2}, "n"),
        ("/v1/chat/completions", {"messages": CHAT, "tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ("/v1/chat/completions", {"messages": CHAT, "tool_choice": "required"}, "tool_choice"),
        ("/v1/chat/completions", {"messages": CHAT, "logprobs": True, "top_logprobs": 2}, "logprobs"),
        ("/v1/chat/completions", {"messages": CHAT, "response_format": {"type": "json_object"}}, "response_format"),
        ("/v1/chat/completions", {"messages": CHAT, "presence_penalty": 0.5}, "presence_penalty"),
        ("/v1/chat/completions", {"messages": CHAT, "logit_bias": {"42": 5}}, "logit_bias"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": None}]}, "messages"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages"),
        ("/v1/completions", {"prompt": "hi", "echo": True}, "echo"),
        ("/v1/completions", {"prompt": "hi", "logprobs": 2}, "logprobs"),
        ("/v1/completions", {"prompt": [1, 10**9]}, "prompt"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "llama " * 200}]}, "messages"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "stream": True, "max_tokens": -5}, "max_tokens"),
        ("/v1/completions", {"prompt": 42}, "prompt"),
        ("/v1/completions", {"prompt": "word " * 200}, "prompt"),
        ("/predict", {"prompt": None}, "prompt"),
        ("/predict", {"prompt": "hi", "max_new_tokens": -2}, "max_new_tokens"),
    ],
)  # fmt: skip
def test_bad_requests_get_4xx(api, path, payload, param):
    r = post(api, path, payload)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    if param is not None:
        assert error["param"] == param


def test_server_keeps_serving_after_bad_requests(api, llm):
    for payload in ("{oops", {"messages": CHAT, "max_tokens": -3}, {"messages": [{"role": "user", "content": 7}]}):
        assert post(api, "/v1/chat/completions", payload).status_code == 400
    too_big = json.dumps({"messages": [{"role": "user", "content": "a" * 30000}]})
    r = post(api, "/v1/chat/completions", too_big)
    assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"
    r = post(api, "/v1/chat/completions", {"messages": CHAT, "max_tokens": 3})
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == llm.generate(CHAT, temperature=0, max_new_tokens=3)


def test_neutral_values_of_unsupported_options_are_accepted(api, llm):
    """Clients often send these at their defaults: such a request is answered as if they were not there."""
    neutral = {"tools": [], "tool_choice": "none", "logprobs": False, "response_format": {"type": "text"},
               "presence_penalty": 0.0, "frequency_penalty": 0, "logit_bias": {}, "user": "me", "metadata": {"a": "b"}}  # fmt: skip
    r = post(api, "/v1/chat/completions", {"messages": CHAT, "max_tokens": 4, **neutral})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == llm.generate(CHAT, temperature=0, max_new_tokens=4)


def test_max_tokens_are_capped_by_the_context(api, llm):
    k = 1
    while len(llm.prompt_ids([{"role": "user", "content": "llama " * (k + 1)}])) < llm.context_length - 6:
        k += 1
    long_prompt = [{"role": "user", "content": "llama " * k}]
    room = llm.context_length - len(llm.prompt_ids(long_prompt))
    assert 0 < room < 20
    r = post(api, "/v1/chat/completions", {"messages": long_prompt, "max_tokens": 1000})
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]
    assert usage["completion_tokens"] == room and r.json()["choices"][0]["finish_reason"] == "length"


def test_api_key(api):
    payload = json.dumps({"messages": CHAT, "max_tokens": 2})
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
        r = requests.post(api.url + "/v1/chat/completions", data=payload, headers=headers)
        assert r.status_code == 401
        assert r.json()["error"]["type"] == "authentication_error"
    assert requests.get(api.url + "/v1/models").status_code == 401
    assert requests.post(api.url + "/predict", json={"prompt": "hi"}).status_code == 401
    r = requests.post(api.url + "/v1/chat/completions", data=payload, headers=AUTH)
    assert r.status_code == 200


def test_chat_page(api):
    r = requests.get(api.url + "/")  # public: the page asks for the key itself
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "/v1/chat/completions" in r.text and "stream: true" in r.text


# ---------------------------------------------------------------------------------------------- batching
def test_concurrent_requests_are_batched(api, llm):
    # 8 concurrent requests (the number): fewer model passes than requests, each reply as if alone.
    # Wall-clock speed is measured by benchmarks/serve.py, not asserted here.
    prompts = [
        "Hello there", "What food do llamas eat?", "Tell me a story about a very small dog", "Hi",
        "Name a color.", "What is 2 + 2?", "Write a haiku about rain", "Who are you?",
    ]  # fmt: skip
    before = len(api.batch_sizes())

    def ask(prompt):
        messages = [{"role": "user", "content": prompt}]
        return post(api, "/v1/chat/completions", {"messages": messages, "max_tokens": 6}).json()

    with ThreadPoolExecutor(len(prompts)) as pool:
        replies = list(pool.map(ask, prompts))
    sizes = api.batch_sizes()[before:]
    assert sum(sizes) == len(prompts)
    assert len(sizes) < len(prompts), sizes  # served together, not one after another
    assert max(sizes) > 1
    for prompt, reply in zip(prompts, replies):
        # rows of different lengths are left-padded: each still decodes as it would alone
        expected = llm.generate([{"role": "user", "content": prompt}], temperature=0, max_new_tokens=6)
        assert reply["choices"][0]["message"]["content"] == expected


# ---------------------------------------------------------------------------------------------- unit level
def test_stop_strings_hold_back_partial_matches():
    from litgpt.serve import StopStrings

    cut = StopStrings(["STOP", "xyz"])
    assert cut.feed("hello ST") == ("hello ", False)
    assert cut.feed("ORE") == ("STORE", False)
    assert cut.feed(" and x") == (" and ", False)
    assert cut.feed("yz tail") == ("", True)
    cut = StopStrings(["END"])
    assert cut.feed("abc EN") == ("abc ", False)
    assert cut.flush() == "EN"


def test_plan_batches_respects_sampling_and_context():
    from litgpt.serve import plan_batches

    def job(n, max_tokens=10, temperature=0.0):
        return {"ids": [1] * n, "max_tokens": max_tokens, "temperature": temperature, "top_k": None, "top_p": 1.0}

    assert plan_batches([job(5), job(7), job(3)], context=100) == [[0, 1, 2]]
    assert plan_batches([job(5), job(5, temperature=0.7), job(6)], context=100) == [[0, 2], [1]]
    # 90 + 30 does not fit 100 tokens: the long prompt goes alone
    assert plan_batches([job(10, 30), job(90, 5), job(12, 20)], context=100) == [[0, 2], [1]]


def test_a_cancelled_job_stops_at_the_next_step(llm):
    """A client that goes away names its job in the shared `cancelled` mapping: the worker ends that row at the next
    step and the batch once no row is left (it generated every job to its max_tokens)."""
    from litgpt.serve import generate_events

    def job(uid):
        ids = llm.preprocessor.encode("Hello there").tolist()
        return {"id": uid, "ids": ids, "max_tokens": 40, "temperature": 0.0, "top_k": None, "top_p": 1.0, "stop": []}

    cancelled: dict = {}
    steps = 0
    for out in generate_events(llm, [job("a"), job("b")], cancelled=cancelled):
        steps += 1
        if steps == 3:
            cancelled["a"] = time.time()
        if steps == 6:
            cancelled["b"] = time.time()
        assert steps < 9
        if steps > 3:
            assert out[0] == ""  # nothing more for the cancelled job
    assert steps == 7 and cancelled == {}  # the step after the second cancel found no job left
    old = time.time() - 3600  # an id no batch claims is forgotten after a while
    cancelled.update(stale=old, fresh=time.time())
    for _ in generate_events(llm, [job("c")], cancelled=cancelled):
        pass
    assert set(cancelled) == {"fresh"}


def test_a_reply_sent_whole_is_cancelled_when_its_client_leaves():
    """A non-streamed reply notices a client that went away (a timeout, a closed tab) and cancels its work, whose
    cleanup names the job cancelled for the worker; while the client stays, the work's result is returned."""
    import asyncio

    from litgpt.serve import ServeSpec

    cleaned = []

    async def long_work():
        try:
            await asyncio.sleep(60)
        finally:
            cleaned.append(True)

    class Leaves:
        checks = 0

        async def is_disconnected(self):
            self.checks += 1
            return self.checks >= 2

    class Stays:
        async def is_disconnected(self):
            return False

    async def quick():
        await asyncio.sleep(0.6)
        return 7

    start = time.monotonic()
    assert asyncio.run(ServeSpec.unless_gone(Leaves(), long_work())) is None
    assert cleaned == [True] and time.monotonic() - start < 5
    assert asyncio.run(ServeSpec.unless_gone(Stays(), quick())) == 7


def test_stream_rows_budgets_per_row(llm):
    prompts = ["Hello there", "What food do llamas eat?"]
    ids = [llm.prompt_ids(p) for p in prompts]
    steps = list(llm.stream_rows(ids, [3, 7], temperature=0))
    assert len(steps) == 7
    for row, budget in enumerate((3, 7)):
        row_steps = [s[row] for s in steps]
        assert all(s is not None for s in row_steps[:budget]) and all(s is None for s in row_steps[budget:])
        assert [s.finish_reason for s in row_steps[:budget]] == [None] * (budget - 1) + ["length"]
        tokens = [t for s in row_steps[:budget] for t in s.ids]
        alone = llm.generate(prompts[row], temperature=0, max_new_tokens=budget, return_as_token_ids=True)
        assert tokens == alone.tolist()


# ---------------------------------------------------------------------------------------------- the official client
def test_official_openai_client(api, llm):
    """The `openai` package talks to the server as to OpenAI: chat and completions, streaming and not."""
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=api.url + "/v1", api_key=API_KEY)
    expected = llm.generate(CHAT, temperature=0, max_new_tokens=10)
    reply = client.chat.completions.create(model="tiny-serve-test", messages=CHAT, max_tokens=10)
    assert reply.choices[0].message.content == expected and reply.usage.completion_tokens == 10
    stream = client.chat.completions.create(model="tiny-serve-test", messages=CHAT, max_tokens=10, stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == expected
    raw = post(api, "/v1/completions", {"prompt": "Hello there", "max_tokens": 6}).json()["choices"][0]["text"]
    completion = client.completions.create(model="tiny-serve-test", prompt="Hello there", max_tokens=6)
    assert completion.choices[0].text == raw and completion.usage.completion_tokens == 6
    pieces = client.completions.create(model="tiny-serve-test", prompt="Hello there", max_tokens=6, stream=True)
    assert "".join(c.choices[0].text for c in pieces if c.choices) == raw
    assert [m.id for m in client.models.list()] == ["tiny-serve-test"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=api.url + "/v1", api_key="wrong").chat.completions.create(
            model="x", messages=CHAT, max_tokens=2
        )


# ---------------------------------------------------------------------------------------------- shutting down
def test_sigterm_to_the_server_process_ends_all_of_its_processes(tiny_checkpoint, tmp_path):
    """`kill PID` (docker stop, systemd) reaches the main process only: its worker and HTTP processes end with it
    and the port is free (they outlived it, still serving). `--host localhost` is 127.0.0.1."""
    import os
    import signal
    import socket
    import time

    server = Server(tiny_checkpoint, tmp_path / "serve.log", "--host", "localhost")
    try:
        server.wait_ready()
        os.kill(server.proc.pid, signal.SIGTERM)
        server.proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.killpg(server.proc.pid, 0)  # the session's group: the main process and everything it started
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"processes of the server outlived it:\n{server.log.read_text()}")
        with socket.socket() as s:
            s.bind(("127.0.0.1", server.port))  # the port is free again
        assert "Traceback" not in server.log.read_text()
    finally:
        server.stop()


def test_bad_settings_are_refused_before_the_server_starts():
    """A bad --precision / --quantize surfaced as a worker crash after "serving ... at http://..."; a port in use
    as uvicorn's log line and exit code 3."""
    import socket

    from litgpt.errors import LitGPTError
    from litgpt.serve import main

    with pytest.raises(LitGPTError, match="Unknown precision 'bf17'"):
        main("unused", precision="bf17")
    with pytest.raises(LitGPTError, match="Unknown quantize mode 'nf9'"):
        main("unused", quantize="nf9")
    with pytest.raises(LitGPTError, match="cannot serve: use 'sequential'"):
        main("unused", generate_strategy="tensor_parallel")
    with pytest.raises(LitGPTError, match="api_path must be a path"):
        main("unused", api_path="predict")
    with pytest.raises(LitGPTError, match="timeout must be a positive"):
        main("unused", timeout=0)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(LitGPTError, match=rf"cannot listen on 127\.0\.0\.1:{port} .*choose another --port"):
            main("unused", port=port)


def test_bad_weights_and_settings_are_refused_in_one_line_before_serving(tiny_checkpoint, tmp_path):
    """Weights are loaded by the worker process: truncated, missing or misshaped ones surfaced there as LitServe's
    traceback after "serving ... at http://..."; they are now checked (memory-mapped) first."""
    import shutil

    import torch

    from litgpt.errors import LitGPTError
    from litgpt.serve import build_server

    truncated = shutil.copytree(tiny_checkpoint, tmp_path / "truncated")
    data = (truncated / "lit_model.pth").read_bytes()
    (truncated / "lit_model.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(LitGPTError, match="lit_model.pth"):
        build_server(truncated)
    missing = shutil.copytree(tiny_checkpoint, tmp_path / "missing")
    (missing / "lit_model.pth").unlink()
    with pytest.raises(LitGPTError, match="has no lit_model.pth"):
        build_server(missing)
    misshaped = shutil.copytree(tiny_checkpoint, tmp_path / "misshaped")
    state = torch.load(misshaped / "lit_model.pth")
    state["lm_head.weight"] = state["lm_head.weight"][:-1]
    torch.save(state, misshaped / "lit_model.pth")
    with pytest.raises(LitGPTError, match="tensor lm_head.weight has shape"):
        build_server(misshaped)
    with pytest.raises(LitGPTError, match="--max_batch_size must be at least 1, got 0"):
        build_server(tiny_checkpoint, max_batch_size=0)
    if not torch.cuda.is_available():
        with pytest.raises(LitGPTError, match="no CUDA GPU is visible"):
            build_server(tiny_checkpoint, accelerator="cuda")
