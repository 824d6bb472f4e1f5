"""LoRA layers: the fused qkv under grouped-query attention, merging, established file layout, PEFT export."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn as nn
import yaml

from litgpt.config import Config
from litgpt.lora import (
    LoRALinear,
    LoRASettings,
    add_lora,
    lora_state_dict,
    merge_lora_state,
    plain_state_dict,
    unwrap_lora,
)
from litgpt.model import GPT
from tests.finetune_helpers import TINY_CONFIG, make_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def randomize_lora(model: nn.Module, seed: int = 0) -> None:
    """B starts at zero (no update); give every LoRA pair visible values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


@pytest.mark.parametrize("enabled", [e for e in itertools.product([True, False], repeat=3) if any(e)])
def test_fused_qkv_with_gqa_matches_separate_q_k_v(enabled):
    n_head, n_groups, hs, C, r, alpha = 8, 2, 4, 16, 3, 6
    sizes = (n_head * hs, n_groups * hs, n_groups * hs)
    torch.manual_seed(0)
    base = nn.Linear(C, sum(sizes))
    layer = LoRALinear(base, r=r, alpha=alpha, sizes=sizes, enabled=enabled)
    assert layer.lora_A.shape == (r * sum(enabled), C)
    assert layer.lora_B.shape == (sum(s for s, on in zip(sizes, enabled) if on), r)
    randomize_lora(layer)
    x = torch.randn(2, 5, C)

    # explicit: each of Q, K, V is its own linear plus its own low-rank pair
    W = base.weight.split(sizes, dim=0)
    b = base.bias.split(sizes, dim=0)
    A_parts = layer.lora_A.split(r, dim=0)
    B_parts = layer.lora_B.split([s for s, on in zip(sizes, enabled) if on], dim=0)
    outs, k = [], 0
    for part in range(3):
        y = x @ W[part].T + b[part]
        if enabled[part]:
            y = y + (alpha / r) * (x @ A_parts[k].T @ B_parts[k].T)
            k += 1
        outs.append(y)
    expected = torch.cat(outs, dim=-1)
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)

    # merged weight gives the same output
    layer.merge()
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


def tiny_model(seed: int = 0) -> GPT:
    config = Config.from_name("tiny-llama-1.1b", **TINY_CONFIG)
    torch.manual_seed(seed)
    model = GPT(config)
    model.init_weights()
    return model


ALL = LoRASettings(r=4, alpha=8, dropout=0.0, query=True, key=True, value=True, projection=True, mlp=True, head=True)


def test_merge_gives_the_same_logits():
    model = tiny_model()
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    add_lora(model, ALL)
    randomize_lora(model)
    lora = {k: v.clone() for k, v in lora_state_dict(model).items()}
    x = torch.randint(0, 300, (2, 16))
    base = GPT(model.config)
    base.load_state_dict(base_state)
    with torch.no_grad():
        unmerged = model(x)
        assert not torch.allclose(unmerged, base(x), atol=1e-3)  # the update does something

        # merging from state dicts (what merge_lora and the loading hook do)
        merged_state = merge_lora_state(base_state, lora, model.config, ALL)
        plain = GPT(model.config)
        plain.load_state_dict(merged_state)
        torch.testing.assert_close(plain(x), unmerged, atol=1e-4, rtol=1e-4)

        # merging in place, then unwrapping into a plain GPT
        state = plain_state_dict(model)
        assert set(state) == set(base_state)
        torch.testing.assert_close(model(x), unmerged, atol=1e-4, rtol=1e-4)
        unwrap_lora(model)
        assert not any("lora" in k for k in model.state_dict())
        torch.testing.assert_close(model(x), unmerged, atol=1e-4, rtol=1e-4)


def test_state_dict_layout_of_the_established_release():
    model = add_lora(tiny_model(), LoRASettings(r=8))
    state = model.state_dict()
    cfg = model.config
    assert state["transformer.h.0.attn.qkv.lora_A"].shape == (8 * 2, cfg.n_embd)  # query + value
    assert state["transformer.h.0.attn.qkv.lora_B"].shape == (cfg.n_head * cfg.head_size + cfg.n_query_groups * cfg.head_size, 8)
    assert "transformer.h.0.attn.qkv.linear.weight" in state
    assert model.lm_head.weight is state["lm_head.weight"] or torch.equal(model.lm_head.weight, state["lm_head.weight"])


def test_settings_need_a_target():
    from litgpt.errors import LitGPTError

    with pytest.raises(LitGPTError, match="no layer"):
        LoRASettings(query=False, value=False)


@pytest.mark.parametrize("alpha", [0, -4])
def test_settings_need_a_positive_alpha(alpha):
    """--lora_alpha 0 trained a LoRA scaled by zero: it changed nothing."""
    from litgpt.errors import LitGPTError

    with pytest.raises(LitGPTError, match=f"--lora_alpha must be positive .*, got {alpha}"):
        LoRASettings(alpha=alpha)


PHI3 = dict(TINY_CONFIG, n_query_groups=4, sliding_window_indices=None, sliding_window_size=None)
QV = LoRASettings(r=2, alpha=5, dropout=0.0, query=True, value=True, projection=True)
K = LoRASettings(r=3, alpha=4, dropout=0.0, query=False, key=True, value=False)
ALL_BUT_MLP = LoRASettings(r=2, alpha=3, dropout=0.0, query=True, key=True, value=True, projection=True, head=True)


@pytest.mark.parametrize(
    "family, settings",
    [("llama", ALL), ("phi-3", QV), ("phi-3", K), ("phi-3", ALL_BUT_MLP)],
    ids=["llama-all", "phi3-query-value", "phi3-key", "phi3-qkv-proj-head"],
)
def test_peft_export_matches_merged_logits(tmp_path, family, settings):
    """adapter_model.safetensors + adapter_config.json load with PEFT on the base converted to Hugging Face and give
    the logits of our merged model. Phi-3 fuses q/k/v into one qkv_proj there too: its LoRA is one pair of rank
    r x (enabled parts), with rank_pattern/alpha_pattern (only the query's pair was exported)."""
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    from litgpt.convert_hf import convert_from_litgpt
    from litgpt.lora import LORA_WEIGHTS, export_peft

    if family == "llama":
        base_dir = make_checkpoint(tmp_path / "base")
    else:
        base_dir = tmp_path / "base"
        base_dir.mkdir()
        phi3 = Config.from_name("Phi-3-mini-4k-instruct", **PHI3)
        torch.manual_seed(0)
        reference = GPT(phi3)
        reference.init_weights()
        torch.save(reference.state_dict(), base_dir / "lit_model.pth")
        phi3.save(base_dir / "model_config.yaml")
    config = Config.from_checkpoint(base_dir)
    model = GPT(config)
    model.load_state_dict(torch.load(base_dir / "lit_model.pth", weights_only=True))
    add_lora(model, settings)
    randomize_lora(model, seed=3)
    run = tmp_path / "run"
    run.mkdir()
    torch.save(lora_state_dict(model), run / LORA_WEIGHTS)
    config.save(run / "model_config.yaml")
    hparams = {"checkpoint_dir": str(base_dir), **{f"lora_{k}": v for k, v in vars(settings).items()}}
    (run / "hyperparameters.yaml").write_text(yaml.safe_dump(hparams))

    export_peft(run, tmp_path / "peft")
    hf_dir = convert_from_litgpt(base_dir, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    peft_model = peft.PeftModel.from_pretrained(hf, tmp_path / "peft").eval()

    x = torch.randint(0, 300, (1, 16))
    with torch.no_grad():
        ours = model.eval()(x)
        theirs = peft_model(x).logits
        with peft_model.disable_adapter():
            base = peft_model(x).logits
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(base, ours, atol=1e-3)  # the adapter does something


def test_merging_into_a_weight_that_shares_storage_leaves_the_other_alone(tmp_path):
    """An output layer saved as the embedding it copies is one storage in the file, and loads as one (memory-mapped,
    or one cast copy): merging LoRA into the output layer must not change the embedding."""
    from litgpt.loading import load_model

    folder = make_checkpoint(tmp_path / "tied", tied=True)
    embedding = torch.load(folder / "lit_model.pth")["transformer.wte.weight"]
    for dtype in (None, torch.bfloat16):
        loaded = load_model(folder, dtype=dtype)
        assert loaded.lm_head.weight.data_ptr() == loaded.transformer.wte.weight.data_ptr()
        add_lora(loaded, ALL)
        randomize_lora(loaded)
        unwrap_lora(loaded)
        assert torch.equal(loaded.transformer.wte.weight, embedding.to(loaded.transformer.wte.weight.dtype))
        assert not torch.equal(loaded.lm_head.weight, loaded.transformer.wte.weight)  # the update did land


def lora_run(tmp_path, base_dir):
    """A LoRA finetuning output folder (query and value, r=4) on the base model ``base_dir``, without training."""
    import shutil

    run = tmp_path / "run"
    run.mkdir()
    for name in ("model_config.yaml", "tokenizer.json", "tokenizer_config.json"):
        if (base_dir / name).is_file():
            shutil.copy(base_dir / name, run / name)
    model = add_lora(GPT(Config.from_checkpoint(base_dir)), QV_ONLY)
    randomize_lora(model)
    torch.save(lora_state_dict(model), run / "lit_model.pth.lora")
    hparams = {"checkpoint_dir": str(base_dir), **{f"lora_{k}": v for k, v in vars(QV_ONLY).items()}}
    (run / "hyperparameters.yaml").write_text(yaml.safe_dump(hparams))
    return run


QV_ONLY = LoRASettings(r=4, alpha=8, dropout=0.0)


def test_merge_lora_names_a_truncated_file_and_a_base_of_another_model(tmp_path, capsys):
    """A truncated .lora file read '[Errno 22] Invalid argument'; a base of another size blamed the --lora_*
    settings in hyperparameters.yaml."""
    from litgpt.__main__ import main
    from tests.conftest import build_tiny_checkpoint

    base = build_tiny_checkpoint(tmp_path / "base")
    run = lora_run(tmp_path, base)
    main(["merge_lora", str(run)])  # the run merges into its own base
    assert (run / "lit_model.pth").is_file()

    bigger = build_tiny_checkpoint(tmp_path / "bigger", n_embd=128, head_size=32, intermediate_size=256)
    with pytest.raises(SystemExit) as e:
        main(["merge_lora", str(run), "--pretrained_checkpoint_dir", str(bigger), "--force", "true"])
    message = str(e.value.code)
    assert f"The base model {bigger} does not match the one the LoRA in {run} was trained on" in message
    assert "(it has head_size 32, n_embd 128, intermediate_size 256; the run's model_config.yaml head_size 16, " in message
    assert "--pretrained_checkpoint_dir" in message and "hyperparameters.yaml" not in message

    lora = run / "lit_model.pth.lora"
    lora.write_bytes(lora.read_bytes()[: lora.stat().st_size // 2])
    with pytest.raises(SystemExit, match=r"lit_model\.pth\.lora is corrupt or truncated .*save or copy it again"):
        main(["merge_lora", str(run), "--force", "true"])


def test_export_peft_to_a_file_says_so(tmp_path):
    from litgpt.__main__ import main
    from tests.conftest import build_tiny_checkpoint

    run = lora_run(tmp_path, build_tiny_checkpoint(tmp_path / "base"))
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(SystemExit, match=r"'.*a-file' is a file; choose another --out_dir$"):
        main(["export_peft", str(run), "--out_dir", str(tmp_path / "a-file")])
