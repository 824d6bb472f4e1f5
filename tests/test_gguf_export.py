"""GGUF export: the two offline models written as GGUF and read back by transformers and by our importer, checked
against the source checkpoint's logits and tokenizer, and against the llama.cpp files they came from; tiny models
for exact round trips and refusals."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from litgpt.config import Config
from litgpt.errors import LitGPTError
from litgpt.gguf_export import export_gguf
from litgpt.gguf_import import convert_gguf, read_gguf
from tests.conftest import build_tiny_checkpoint, gguf_source
from tests.test_gguf import HARD_STRINGS, SPECIAL_STRINGS

REPOS = {"smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct", "gemma3": "google/gemma-3-270m"}
PROMPT = "The capital of France is Paris. def f(x):\n    return x**2  # 12345 naïve café 😀"
# Bounds on max|logits - source logits| / max|source logits| over the prompt's positions and the whole vocabulary,
# a few times the measured values (in the comments; our importer and transformers measure the same to 3 digits).
# f16 rounds each weight to 11 significant bits (relative error <= 2**-11), so the logits move by ~1e-3 of their
# range. q8_0 rounds each weight to one of 255 steps of its block of 32 (error <= max|block| / 254, ~0.4% of the
# block's largest weight); over 30 (SmolLM2) or 18 (Gemma) layers that gives a few percent at the worst logit.
BOUNDS = {
    ("smollm2", "f16"): 5e-3,  # measured 9.3e-4
    ("smollm2", "q8_0"): 8e-2,  # measured 3.5e-2
    ("gemma3", "f16"): 5e-3,  # measured 7.0e-4
    ("gemma3", "q8_0"): 8e-2,  # measured 1.65e-2
}
# share of prompt positions whose most likely next token must be unchanged (measured: 1.0 for f16; 1.0 and 27/28
# for q8_0, where Gemma flips one near-tie)
ARGMAX_AGREEMENT = {"f16": 0.95, "q8_0": 0.9}
TIMINGS: dict[str, float] = {}


class _Cache:
    """Exports and reference logits, built on first use and shared by the module's tests."""

    def __init__(self, workdir: Path, out: Path) -> None:
        self.workdir, self.out = workdir, out
        self.sources: dict[str, Path] = {}
        self.files: dict[tuple[str, str], Path] = {}
        self.refs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def source(self, name: str) -> Path:
        if name not in self.sources:
            from litgpt.loading import resolve_checkpoint

            self.sources[name] = resolve_checkpoint(
                REPOS[name], checkpoints=self.workdir / "checkpoints", prefer_offline=True, download=False,
                log=lambda *a, **k: None,
            )  # fmt: skip
        return self.sources[name]

    def export(self, name: str, dtype: str) -> Path:
        if (name, dtype) not in self.files:
            start = time.perf_counter()
            path = export_gguf(self.source(name), self.out / name / f"{name}-{dtype}.gguf", dtype, progress=False)
            TIMINGS[f"export {name} {dtype}"] = time.perf_counter() - start
            self.files[name, dtype] = path
        return self.files[name, dtype]

    def reference(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(prompt ids, the source checkpoint's float32 logits)."""
        if name not in self.refs:
            from litgpt.loading import load_model
            from litgpt.tokenizer import Tokenizer

            ids = Tokenizer(self.source(name)).encode(PROMPT, bos=True)[None]
            with torch.no_grad():
                self.refs[name] = ids, load_model(self.source(name))(ids)
        return self.refs[name]


@pytest.fixture(scope="module")
def cache(offline_workdir, tmp_path_factory):
    c = _Cache(offline_workdir, tmp_path_factory.mktemp("gguf-export"))
    yield c
    if TIMINGS:
        print(f"\nGGUF export timings: {', '.join(f'{k} {v:.1f}s' for k, v in TIMINGS.items())}")


def _relative_error(logits: torch.Tensor, ref: torch.Tensor) -> float:
    return float((logits - ref).abs().max() / ref.abs().max())


def _agreement(logits: torch.Tensor, ref: torch.Tensor) -> float:
    return float((logits.argmax(-1) == ref.argmax(-1)).float().mean())


CASES = [
    pytest.param("smollm2", "f16", id="smollm2-f16"),
    pytest.param("smollm2", "q8_0", id="smollm2-q8_0"),
    pytest.param("gemma3", "f16", id="gemma3-f16"),
    pytest.param("gemma3", "q8_0", id="gemma3-q8_0"),
]


@pytest.mark.parametrize(("name", "dtype"), CASES)
def test_our_importer_reads_the_export(cache, tmp_path, name, dtype):
    from litgpt.loading import load_model

    path = cache.export(name, dtype)
    start = time.perf_counter()
    folder = convert_gguf(path, tmp_path / "back", progress=False)
    TIMINGS[f"import {name} {dtype}"] = time.perf_counter() - start
    source_config = Config.from_checkpoint(cache.source(name)).to_dict()
    assert Config.from_checkpoint(folder).to_dict() == source_config  # the registry entry is found again

    ids, ref = cache.reference(name)
    with torch.no_grad():
        logits = load_model(folder)(ids)
    err = _relative_error(logits, ref)
    agree = _agreement(logits, ref)
    print(f"\n{name} {dtype}: our importer, max|diff|/max|logit| = {err:.2e}, top-1 agreement {agree:.2f}")
    assert err < BOUNDS[name, dtype]
    assert agree >= ARGMAX_AGREEMENT[dtype]

    if dtype == "f16":  # the tokenizer does not depend on the weights' dtype
        from litgpt.tokenizer import Tokenizer

        ours, theirs = Tokenizer(folder), Tokenizer(cache.source(name))
        for text in HARD_STRINGS + SPECIAL_STRINGS[name]:
            assert ours.encode(text).tolist() == theirs.encode(text).tolist(), text
        assert (ours.bos_id, ours.eos_id, ours.use_bos, ours.stop_ids, ours.chat_template) == (
            theirs.bos_id, theirs.eos_id, theirs.use_bos, theirs.stop_ids, theirs.chat_template,
        )  # fmt: skip


# transformers parses the metadata with gguf.GGUFReader (one numpy view per vocabulary entry, more than once per
# load): about 20 s for SmolLM2 and a minute for Gemma's 262k vocabulary, so transformers reads one file per
# architecture, covering both dtypes between them; our importer checks every architecture/dtype pair.
HF_CASES = [
    pytest.param("smollm2", "f16", id="smollm2-f16"),
    pytest.param("gemma3", "q8_0", id="gemma3-q8_0", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("name", "dtype"), HF_CASES)
def test_transformers_reads_the_export(cache, name, dtype):
    from transformers import AutoModelForCausalLM

    path = cache.export(name, dtype)
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    TIMINGS[f"transformers {name} {dtype}"] = time.perf_counter() - start
    ids, ref = cache.reference(name)
    with torch.no_grad():
        logits = model(ids).logits
    err = _relative_error(logits, ref)
    agree = _agreement(logits, ref)
    print(f"\n{name} {dtype}: transformers, max|diff|/max|logit| = {err:.2e}, top-1 agreement {agree:.2f}")
    assert err < BOUNDS[name, dtype]
    assert agree >= ARGMAX_AGREEMENT[dtype]


@pytest.mark.parametrize(
    "name", ["smollm2", pytest.param("gemma3", marks=pytest.mark.slow)]
)  # Gemma's 262k vocabulary takes transformers a long time to turn into a tokenizer
def test_transformers_tokenizer_matches_the_original_file(cache, name, smollm2_hf_dir, gemma3_hf_dir):
    """transformers builds the same tokenizer from our file as from the llama.cpp file the model came from (its
    reading of that file is saved in the reference folder). Against our source tokenizer it differs only where
    transformers itself loses llama.cpp's pre-tokenizer (SmolLM2's one-digit splitting), so that is not compared."""
    from transformers import AutoTokenizer

    path = cache.export(name, "f16")
    start = time.perf_counter()
    ours = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    TIMINGS[f"transformers tokenizer {name}"] = time.perf_counter() - start
    reference = AutoTokenizer.from_pretrained({"smollm2": smollm2_hf_dir, "gemma3": gemma3_hf_dir}[name])
    for text in HARD_STRINGS + SPECIAL_STRINGS[name]:
        assert ours(text)["input_ids"] == reference(text)["input_ids"], text
    assert ours.bos_token == reference.bos_token and ours.eos_token == reference.eos_token


@pytest.mark.parametrize("name", ["smollm2", "gemma3"])
def test_export_matches_the_llama_cpp_file(cache, name):
    """Tokenizer metadata, shape keys, tensor names/shapes and the stored values (Q/K row order, Gemma's +1 norms)
    agree with the llama.cpp file the checkpoint was converted from."""
    original, ours = read_gguf(gguf_source(name)), read_gguf(cache.export(name, "f16"))
    try:
        a, b = original.metadata, ours.metadata
        same = ["tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"]
        same += [f"tokenizer.ggml.{k}_token_id" for k in ("bos", "eos", "unknown", "padding")]
        same += ["tokenizer.ggml.add_bos_token", "tokenizer.chat_template", "general.architecture"]
        arch = original.architecture
        same += [
            f"{arch}.{k}"
            for k in (
                "context_length", "embedding_length", "block_count", "feed_forward_length", "attention.head_count",
                "attention.head_count_kv", "attention.layer_norm_rms_epsilon", "rope.freq_base",
                "attention.sliding_window",
            )
        ]  # fmt: skip
        for key in same:
            assert a.get(key) == b.get(key), key
        if name == "smollm2":
            assert b["tokenizer.ggml.pre"] == a["tokenizer.ggml.pre"] == "smollm"
            assert b["general.file_type"] == 1
        assert {n: t.shape for n, t in ours.tensors.items()} == {n: t.shape for n, t in original.tensors.items()}
        for tensor in ("blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.3.attn_norm.weight", "output_norm.weight"):
            x, y = torch.from_numpy(original.load(tensor)), torch.from_numpy(ours.load(tensor))
            assert torch.allclose(x, y, rtol=1e-3, atol=1e-4 * float(x.abs().max())), tensor
        if name == "gemma3":
            for tensor in ("blk.0.attn_q_norm.weight", "blk.0.post_ffw_norm.weight"):
                assert torch.allclose(torch.from_numpy(original.load(tensor)), torch.from_numpy(ours.load(tensor)))
    finally:
        original.close()
        ours.close()


# ---------------------------------------------------------------------------------------------------------------
# tiny models
# ---------------------------------------------------------------------------------------------------------------
def _tiny_gemma3(folder: Path) -> Path:
    return build_tiny_checkpoint(
        folder, name="tiny-gemma3", mlp_class_name="GemmaMLP", gelu_approximate="tanh", post_attention_norm=True,
        post_mlp_norm=True, norm_qk=True, scale_embeddings=True, sliding_window_size=8, sliding_window_indices=[1, 0],
        rope_indices=[1, 0], rope_local_base_freq=10000.0, rope_base=1000000, attention_scores_scalar=16, norm_eps=1e-6,
    )  # fmt: skip


def _state(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "lit_model.pth", weights_only=True)


@pytest.mark.parametrize("kind", ["llama", "llama-bias-untied", "gemma3"])
def test_tiny_round_trip_is_exact_in_f32(tmp_path, kind):
    if kind == "gemma3":
        src = _tiny_gemma3(tmp_path / "src")
    else:
        src = build_tiny_checkpoint(tmp_path / "src", attn_bias=kind != "llama")
    state = _state(src)
    if kind == "llama-bias-untied":
        state["lm_head.weight"] = state["lm_head.weight"] + 0.5
        torch.save(state, src / "lit_model.pth")
    else:
        state["lm_head.weight"] = state["transformer.wte.weight"].clone()  # tied: the export leaves it out
        torch.save(state, src / "lit_model.pth")
    path = export_gguf(src, tmp_path / "out", "f32", progress=False)
    assert path == tmp_path / "out" / f"tiny-{'gemma3' if kind == 'gemma3' else 'llama'}-f32.gguf"
    g = read_gguf(path)
    assert ("output.weight" in g.tensors) == (kind == "llama-bias-untied")
    assert g.metadata["general.file_type"] == 0
    g.close()
    back = convert_gguf(path, tmp_path / "back", progress=False)
    config, config_back = Config.from_checkpoint(src).to_dict(), Config.from_checkpoint(back).to_dict()
    for key, value in config.items():  # GGUF stores floats as float32
        if key not in ("name", "hf_config"):
            assert config_back[key] == (pytest.approx(value, rel=1e-6) if isinstance(value, float) else value), key
    restored = _state(back)
    assert set(restored) == set(state)
    for key, value in state.items():
        # Gemma's norms go through +1 and -1, which may round in the last bit
        tol = dict(rtol=0, atol=1e-6) if kind == "gemma3" and "norm" in key else dict(rtol=0, atol=0)
        torch.testing.assert_close(restored[key], value, **tol, msg=key)


def test_tiny_dtypes_and_paths(tmp_path):
    src = build_tiny_checkpoint(tmp_path / "src")
    ref = _state(src)["transformer.h.0.attn.proj.weight"]
    for dtype, expected_type, tol in (("bf16", 30, 1e-2), (torch.float16, 1, 1e-3), ("q8_0", 8, 2e-2)):
        path = export_gguf(src, tmp_path / f"m-{dtype}.gguf", dtype, progress=False)
        assert path == tmp_path / f"m-{dtype}.gguf"
        g = read_gguf(path)
        assert g.tensors["blk.0.attn_output.weight"].ggml_type == expected_type
        assert g.tensors["blk.0.attn_norm.weight"].ggml_type == 0  # 1-D tensors stay F32
        got = torch.from_numpy(g.load("blk.0.attn_output.weight"))
        assert (got - ref).abs().max() <= tol * ref.abs().max()
        g.close()
    with pytest.raises(LitGPTError, match="dtype 'q4_k' is not supported"):
        export_gguf(src, tmp_path / "x.gguf", "q4_k")
    assert not (tmp_path / "x.gguf").exists()


def test_unsupported_architecture_is_refused(tmp_path):
    src = build_tiny_checkpoint(
        tmp_path / "neox", name="tiny-neox", mlp_class_name="GptNeoxMLP", parallel_residual=True,
        norm_class_name="LayerNorm", bias=True, rotary_percentage=0.25,
    )  # fmt: skip
    with pytest.raises(LitGPTError, match="^export to GGUF is not supported for tiny-neox yet") as e:
        export_gguf(src, tmp_path / "neox.gguf")
    assert "\n" not in str(e.value)
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".*tmp"))


def test_convert_from_litgpt_format_gguf_dispatches(offline_workdir, tmp_path, monkeypatch):
    from litgpt.__main__ import main as cli
    from litgpt.gguf_import import read_gguf
    from litgpt.loading import resolve_checkpoint

    monkeypatch.chdir(offline_workdir)
    checkpoint = resolve_checkpoint("HuggingFaceTB/SmolLM2-135M-Instruct")
    cli(["convert_from_litgpt", str(checkpoint), str(tmp_path), "--format", "gguf", "--dtype", "q8_0"])
    out = tmp_path / "SmolLM2-135M-Instruct-q8_0.gguf"
    assert out.read_bytes()[:4] == b"GGUF"
    assert read_gguf(out).metadata["general.architecture"] == "llama"
