"""Build litgpt/model_registry.json from the published hyperparameters (one JSON object a line).

Models are grouped into families (same Hugging Face org and MLP class); a family's template holds the value most of
its members share, and each model keeps only what differs. Run: python scripts/build_registry.py MODEL_CONFIGS.jsonl
"""

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

# models not in the published list, from their Hugging Face configs. Named "Gemma-..." like every other Gemma model
# (the established tool applies Gemma's norm offset only when "Gemma" is in the name); the repo ids stay lower case
EXTRA = [
    dict(name="Gemma-3-270m", hf_config={"org": "google", "name": "gemma-3-270m"}, block_size=32768, vocab_size=262144,
         padding_multiple=512, padded_vocab_size=262144, n_layer=18, n_head=4, head_size=256, n_embd=640,
         n_query_groups=1, intermediate_size=2048, rotary_percentage=1.0, parallel_residual=False, bias=False,
         attn_bias=False, lm_head_bias=False, norm_class_name="RMSNorm", norm_eps=1e-6, mlp_class_name="GemmaMLP",
         gelu_approximate="tanh", post_attention_norm=True, post_mlp_norm=True, norm_qk=True, norm_qk_type="default",
         scale_embeddings=True, attention_scores_scalar=256, rope_base=1000000, rope_local_base_freq=10000,
         rope_indices=[0 if (i + 1) % 6 == 0 else 1 for i in range(18)], sliding_window_size=512,
         sliding_window_indices=[0 if (i + 1) % 6 == 0 else 1 for i in range(18)]),
]
EXTRA.append({**EXTRA[0], "name": "Gemma-3-270m-it", "hf_config": {"org": "google", "name": "gemma-3-270m-it"}})


def canonical(v):
    return json.dumps(v, sort_keys=True)


def main(src: str, dst: str = "litgpt/model_registry.json") -> None:
    rows = [json.loads(line) for line in Path(src).read_text().splitlines() if line.strip()]
    names = {r["name"] for r in rows}
    base = next(r for r in rows if r["name"] == "Gemma-3-1b-it")  # fields the extras do not set
    rows += [{**base, **e} for e in EXTRA if e["name"] not in names]
    groups = defaultdict(list)
    for r in rows:
        groups[f"{r['hf_config']['org']}/{r['mlp_class_name']}"].append(r)
    families = {}
    for family, members in sorted(groups.items()):
        keys = sorted({k for r in members for k in r if k not in ("name", "hf_config")})
        template = {}
        for k in keys:
            value, _ = Counter(canonical(r.get(k)) for r in members).most_common(1)[0]
            template[k] = json.loads(value)
        template["org"] = members[0]["hf_config"]["org"]
        models = []
        for r in sorted(members, key=lambda r: r["name"]):
            diff = {"name": r["name"]}
            if r["hf_config"]["name"] != r["name"]:
                diff["hf_name"] = r["hf_config"]["name"]
            diff.update({k: r[k] for k in keys if canonical(r.get(k)) != canonical(template[k])})
            models.append(diff)
        families[family] = {"template": template, "models": models}
    text = compact(families)  # each model on one line: compact yet diffable
    Path(dst).write_text(text)
    print(f"{len(rows)} models in {len(families)} families -> {dst} ({len(text)} chars)")


def compact(families: dict) -> str:
    lines = ['{"families": {']
    fam_items = list(families.items())
    for i, (name, spec) in enumerate(fam_items):
        lines.append(f' {json.dumps(name)}: {{')
        lines.append(f'  "template": {json.dumps(spec["template"], sort_keys=True)},')
        lines.append('  "models": [')
        for j, m in enumerate(spec["models"]):
            lines.append("   " + json.dumps(m) + ("," if j < len(spec["models"]) - 1 else ""))
        lines.append("  ]")
        lines.append(" }" + ("," if i < len(fam_items) - 1 else ""))
    lines.append("}}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(*sys.argv[1:])
