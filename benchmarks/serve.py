"""Serving throughput: 8 concurrent chat requests vs the same 8 one after another, on one `litgpt serve` process.

    python benchmarks/serve.py [--model smollm2] [--requests 8] [--max_tokens 32] [--precision bf16-true]

The server batches concurrent requests through the batched generation core; this measures what that buys over
serving them one by one, and checks that every concurrent reply equals its sequential one (greedy decoding).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from litgpt.loading import resolve_checkpoint  # noqa: E402
from litgpt.reference import OFFLINE_MODELS  # noqa: E402

PROMPTS = [
    "What food do llamas eat?", "Tell me a story about a very small dog", "Name three colors.", "What is 12 * 7?",
    "Write a haiku about rain", "Who wrote Hamlet?", "Explain what a CPU does.", "Give me a tip for sleeping well.",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2", choices=sorted(OFFLINE_MODELS))
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--max_tokens", type=int, default=32)
    parser.add_argument("--precision", default="bf16-true")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "litgpt-bench"))
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = resolve_checkpoint(OFFLINE_MODELS[args.model])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (work / "serve.log").open("w")
    cmd = [sys.executable, "-m", "litgpt", "serve", str(checkpoint), "--port", str(port), "--openai_spec", "true",
           "--precision", args.precision, "--max_batch_size", str(args.requests)]  # fmt: skip
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the server did not start; see {work / 'serve.log'}") from None
                time.sleep(0.5)
        prompts = (PROMPTS * (args.requests // len(PROMPTS) + 1))[: args.requests]

        def ask(prompt: str) -> str:
            body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": args.max_tokens, "temperature": 0}
            return post(url + "/v1/chat/completions", body)["choices"][0]["message"]["content"]

        ask("Hello")  # warm-up
        start = time.perf_counter()
        sequential = [ask(p) for p in prompts]
        one_by_one = time.perf_counter() - start
        start = time.perf_counter()
        with ThreadPoolExecutor(len(prompts)) as pool:
            concurrent = list(pool.map(ask, prompts))
        together = time.perf_counter() - start
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    same = sum(a == b for a, b in zip(sequential, concurrent))
    print(f"# Serve benchmark: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{OFFLINE_MODELS[args.model]}, {args.precision}, {args.max_tokens} new tokens per request, greedy\n")  # fmt: skip
    print("| requests | one after another (s) | concurrent (s) | speed-up | identical replies |")
    print("|---|---|---|---|---|")
    print(f"| {len(prompts)} | {one_by_one:.2f} | {together:.2f} | {one_by_one / together:.2f}x | {same}/{len(prompts)} |")


if __name__ == "__main__":
    main()
