"""Shared by the `litgpt serve` tests: a tiny random checkpoint with SmolLM2's tokenizer and chat template, and a real
server started as a subprocess on a free 127.0.0.1 port."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
    "generation_config.json",
)


def make_tiny_checkpoint(smollm2_hf_dir: Path, out: Path) -> Path:
    """A 2-layer random model (seeded) in `out`, speaking through SmolLM2's tokenizer files."""
    from litgpt.config import Config
    from litgpt.model import GPT

    config = Config(
        name="tiny-serve-test", block_size=128, vocab_size=49152, padded_vocab_size=49152, n_layer=2, n_head=4,
        n_query_groups=2, n_embd=64, intermediate_size=128, norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP",
        bias=False, parallel_residual=False, rotary_percentage=1.0,
    )  # fmt: skip
    torch.manual_seed(0)
    torch.save(GPT(config).state_dict(), out / "lit_model.pth")
    config.save(out / "model_config.yaml")
    for name in TOKENIZER_FILES:
        if (smollm2_hf_dir / name).is_file():
            shutil.copy2(smollm2_hf_dir / name, out / name)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`litgpt serve <checkpoint> <args>` in its own process group, its output going to `log`."""

    def __init__(self, checkpoint: Path, log: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [sys.executable, "-m", "litgpt", "serve", str(checkpoint), "--port", str(self.port), *args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.out = log.open("w")
        self.proc = subprocess.Popen(
            cmd, stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=log.parent
        )

    def wait_ready(self, timeout: float = 180) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.out.close()

    def batch_sizes(self) -> list[int]:
        return [int(n) for n in re.findall(r"batch of (\d+) request", self.log.read_text())]
