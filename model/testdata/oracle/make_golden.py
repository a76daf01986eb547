#!/usr/bin/python3
"""Regenerates model/testdata/golden/<variant>/{config.json, model.safetensors, golden.json}.

    /usr/bin/python3 model/testdata/oracle/make_golden.py            # all variants
    /usr/bin/python3 model/testdata/oracle/make_golden.py llama-gqa  # some

Deterministic: weights come from numpy PCG64 with a fixed seed per variant, token ids from
a second fixed seed, and the logits are computed in float64 (then rounded to float32), so a
rerun writes byte-identical files (and, float64 being far below float32 rounding, the same
bytes on another machine in practice). See ../golden/README.md.
"""

import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep __pycache__ out of testdata
sys.path.insert(0, HERE)
import llama_ref as L  # noqa: E402

GOLDEN = os.path.normpath(os.path.join(HERE, "..", "golden"))
STD = 0.1  # weight std for the goldens (see README: 0.02 leaves RoPE effects ~1e-3)
NORM_NOISE = 0.1
MAX_BYTES = 210_000
MIN_MARGIN = 2e-3


def base_cfg(**kw):
    c = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 48,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "max_position_embeddings": 256,
        "vocab_size": 128,
        "tie_word_embeddings": False,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "hidden_act": "silu",
        "initializer_range": STD,
        "torch_dtype": "float32",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "use_cache": True,
    }
    c.update(kw)
    return c


def _drop(c, *keys):
    for k in keys:
        c.pop(k, None)
    return c


# name -> (config, weights seed, ids seed, dtype, sequence lengths, greedy prompt length, description)
VARIANTS = {
    "llama-gqa": (
        base_cfg(),
        1001, 2001, "f32", [7, 12, 1], 5,
        "LlamaForCausalLM, 4 query heads sharing 2 KV heads (GQA, head_dim 12), untied lm_head, rope_theta 1e4.",
    ),
    "llama-tied": (
        base_cfg(num_key_value_heads=4, tie_word_embeddings=True),
        1002, 2002, "f32", [7, 12, 1], 5,
        "LlamaForCausalLM, tie_word_embeddings true (no lm_head.weight in the checkpoint), 4 heads = 4 KV heads.",
    ),
    "llama3-rope-scaling": (
        base_cfg(hidden_size=32, num_attention_heads=2, num_key_value_heads=1, vocab_size=96,
                 rope_theta=500000.0, max_position_embeddings=512,
                 rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                               "original_max_position_embeddings": 64, "rope_type": "llama3"}),
        1003, 2003, "f32", [7, 40, 1], 24,
        "LlamaForCausalLM, head_dim 16, rope_theta 5e5 with llama3 rope_scaling (factor 8, low 1, high 4, "
        "original_max_position_embeddings 64 so that 7 of the 8 inverse frequencies change: 1 smoothed, "
        "6 divided by 8); a 40-token sequence and a 24+16-token greedy run.",
    ),
    "qwen2-bias": (
        _drop(base_cfg(architectures=["Qwen2ForCausalLM"], model_type="qwen2", rope_theta=1000000.0,
                       tie_word_embeddings=True, rms_norm_eps=1e-6, use_sliding_window=False,
                       sliding_window=32768, max_window_layers=2), "attention_bias", "mlp_bias"),
        1004, 2004, "f32", [7, 12, 1], 5,
        "Qwen2ForCausalLM: q/k/v projections with bias (o_proj without), GQA 4/2, tied embeddings, "
        "rope_theta 1e6; use_sliding_window false (sliding_window is present and must be ignored).",
    ),
    "qwen3-qknorm": (
        _drop(base_cfg(architectures=["Qwen3ForCausalLM"], model_type="qwen3", head_dim=16, rope_theta=1000000.0,
                 tie_word_embeddings=True, rms_norm_eps=1e-6, use_sliding_window=False, sliding_window=None,
                 max_window_layers=2), "mlp_bias"),
        1005, 2005, "f32", [7, 12, 1], 5,
        "Qwen3ForCausalLM: per-head RMSNorm q_norm/k_norm over head_dim before RoPE, explicit head_dim 16 "
        "!= hidden_size/heads (48/4 = 12, so q_proj is [64, 48] and o_proj [48, 64]), GQA 4/2, tied, no bias.",
    ),
    "llama-bf16": (
        base_cfg(hidden_size=64, intermediate_size=128, torch_dtype="bfloat16"),
        1006, 2006, "bf16", [7, 12, 1], 5,
        "LlamaForCausalLM stored in BF16 (torch_dtype bfloat16), hidden 64, head_dim 16, GQA 4/2, untied. "
        "Golden logits use the bf16 weights upcast exactly to float (no bf16 arithmetic).",
    ),
    "mistral": (
        _drop(base_cfg(architectures=["MistralForCausalLM"], model_type="mistral", sliding_window=None,
                       rms_norm_eps=1e-5), "attention_bias", "mlp_bias"),
        1007, 2007, "f32", [7, 12, 1], 5,
        "MistralForCausalLM: GQA 4/2, untied, sliding_window null (plain causal attention), rope_theta 1e4.",
    ),
}


def fmt(x):
    return json.dumps(x, separators=(",", ":"))


def dump_golden(path, g):
    """Stable, diff-friendly JSON: one logits row per line."""
    lines = ["{"]
    keys = list(g.keys())
    for n, k in enumerate(keys):
        comma = "," if n < len(keys) - 1 else ""
        if k == "logits":
            lines.append(' "logits": [')
            for si, seq in enumerate(g[k]):
                lines.append("  [")
                for pi, row in enumerate(seq):
                    lines.append("   " + fmt(row) + ("," if pi < len(seq) - 1 else ""))
                lines.append("  ]" + ("," if si < len(g[k]) - 1 else ""))
            lines.append(" ]" + comma)
        elif k == "greedy":
            lines.append(' "greedy": {')
            gk = list(g[k].keys())
            for m, kk in enumerate(gk):
                lines.append(f'  {fmt(kk)}: {fmt(g[k][kk])}' + ("," if m < len(gk) - 1 else ""))
            lines.append(" }" + comma)
        else:
            lines.append(f" {fmt(k)}: {fmt(g[k])}{comma}")
    lines.append("}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def make(name):
    cfg_d, wseed, iseed, dtype, lens, plen, desc = VARIANTS[name]
    out = os.path.join(GOLDEN, name)
    cfg = L.Config(cfg_d)
    weights = L.init_weights(cfg, wseed, STD, NORM_NOISE)
    L.write_checkpoint(out, cfg_d, weights, dtype)
    size = os.path.getsize(os.path.join(out, "model.safetensors"))
    assert size < MAX_BYTES, (name, size)

    # Reload from disk so the goldens are computed from exactly the stored (e.g. bf16) weights.
    m64 = L.Model.load(out, dtype=torch.float64)
    m32 = L.Model.load(out, dtype=torch.float32)
    rng = np.random.Generator(np.random.PCG64(iseed))
    seqs = [[int(t) for t in rng.integers(0, cfg.vocab, n)] for n in lens]
    prompt = [int(t) for t in rng.integers(0, cfg.vocab, plen)]

    logits, d32 = [], 0.0
    for s in seqs:
        l64 = m64.logits(s)
        d32 = max(d32, float((m32.logits(s).double() - l64).abs().max()))
        logits.append(L.f32s(l64))

    # Greedy: redraw the prompt (deterministically) until every step's top-1 beats the
    # runner-up by MIN_MARGIN, so a correct float32 implementation cannot flip an argmax.
    for _ in range(100):
        new, tops, lasts = m64.generate(prompt, 16)
        margins = [float(v[0] - v[1]) for v in (torch.topk(last, 2).values for last in lasts)]
        if min(margins) >= MIN_MARGIN:
            break
        prompt = [int(t) for t in rng.integers(0, cfg.vocab, plen)]
    else:
        raise SystemExit(f"{name}: no prompt with greedy margins >= {MIN_MARGIN}")
    new32, _, _ = m32.generate(prompt, 16)
    new32c, _, _ = m32.generate(prompt, 16, cache=True)
    assert new == new32 == new32c, (name, new, new32, new32c)

    inv = L.rope_inv_freq(cfg)
    g = {
        "variant": name,
        "description": desc,
        "generated_by": f"model/testdata/oracle/make_golden.py {name}",
        "weights": {"seed": wseed, "std": STD, "norm_noise": NORM_NOISE, "dtype": dtype},
        "compute_dtype": "float64, rounded to float32",
        "rope_inv_freq": L.f32s(inv),
        "ids": seqs,
        "logits": logits,
        "greedy": {
            "prompt": prompt,
            "ids": new,
            "logprobs": [[[j, float(str(np.float32(v)))] for j, v in t] for t in tops],
            "min_top1_margin": float(f"{min(margins):.3g}"),
            "note": "greedy argmax over 16 steps, no EOS stop; logprobs = top-5 (id, log_softmax) per step",
        },
    }
    if cfg.rope_type != "default":
        saved = cfg.rope_type
        cfg.rope_type = "default"
        inv0 = L.rope_inv_freq(cfg)
        cfg.rope_type = saved
        changed = int((inv != inv0).sum())
        g["rope_inv_freq_unscaled"] = L.f32s(inv0)
        g["rope_inv_freq_changed"] = changed
        print(f"{name}: rope scaling changes {changed} of {inv.numel()} inverse frequencies", file=sys.stderr)
    dump_golden(os.path.join(out, "golden.json"), g)
    print(f"{name}: model.safetensors {size} B, seqs {lens}, greedy {plen}+16, "
          f"min top1 margin {min(margins):.3g}, f32-vs-f64 max |dlogit| {d32:.2g}", file=sys.stderr)


def main(argv):
    names = argv or list(VARIANTS)
    for n in names:
        if n not in VARIANTS:
            raise SystemExit(f"unknown variant {n}; known: {', '.join(VARIANTS)}")
        make(n)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1:])
