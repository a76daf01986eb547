#!/usr/bin/python3
"""Self-checks of llama_ref.py and of the goldens. Run:

    /usr/bin/python3 model/testdata/oracle/selfcheck.py

Prints one line per check (PASS/FAIL + numbers) and exits non-zero on any failure.
"""

import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep __pycache__ out of testdata
sys.path.insert(0, HERE)
import llama_ref as L  # noqa: E402
import make_golden as MG  # noqa: E402

GOLDEN = MG.GOLDEN
VARIANTS = list(MG.VARIANTS)
failures = []


def check(name, ok, detail=""):
    print(f"{'PASS' if ok else 'FAIL'}  {name}" + (f"  [{detail}]" if detail else ""))
    if not ok:
        failures.append(name)


def load(variant, dtype=torch.float64):
    return L.Model.load(os.path.join(GOLDEN, variant), dtype=dtype)


def golden(variant):
    with open(os.path.join(GOLDEN, variant, "golden.json")) as f:
        return json.load(f)


def maxdiff(a, b):
    return float((torch.as_tensor(a, dtype=torch.float64) - torch.as_tensor(b, dtype=torch.float64)).abs().max())


# ------------------------------------------------------------------ an independent numpy oracle


def numpy_forward(cfg, w, ids):
    """Second implementation, float64 numpy, explicit loops over heads and positions; rotation
    written as 2-D rotations of the pairs (j, j + hd/2) by angle pos * inv_freq[j]; GQA by
    indexing kv head h // (H/KV). Shares nothing with llama_ref.Model except rope_inv_freq
    (which is checked separately against Meta's scalar apply_scaling)."""
    W = {k: np.asarray(v, dtype=np.float64) for k, v in w.items()}
    H, KV, hd, eps = cfg.n_heads, cfg.n_kv, cfg.head_dim, cfg.eps
    inv = L.rope_inv_freq(cfg).numpy().astype(np.float64)
    S = len(ids)

    def norm(x, g):
        return g * x / np.sqrt(np.mean(x * x) + eps)

    def rot(vec, pos):
        out = vec.copy()
        half = hd // 2
        for j in range(half):
            a = pos * inv[j]
            c, s = math.cos(a), math.sin(a)
            x0, x1 = vec[j], vec[j + half]
            out[j] = x0 * c - x1 * s
            out[j + half] = x1 * c + x0 * s
        return out

    def lin(x, name, bias):
        y = W[name + ".weight"] @ x
        if bias:
            y = y + W[name + ".bias"]
        return y

    x = [W["model.embed_tokens.weight"][t].copy() for t in ids]
    for i in range(cfg.n_layers):
        p = f"model.layers.{i}."
        a_in = [norm(v, W[p + "input_layernorm.weight"]) for v in x]
        Q, K, V = [], [], []
        for pos, v in enumerate(a_in):
            q = lin(v, p + "self_attn.q_proj", cfg.qkv_bias).reshape(H, hd)
            k = lin(v, p + "self_attn.k_proj", cfg.qkv_bias).reshape(KV, hd)
            vv = lin(v, p + "self_attn.v_proj", cfg.qkv_bias).reshape(KV, hd)
            if cfg.qk_norm:
                q = np.stack([norm(q[h], W[p + "self_attn.q_norm.weight"]) for h in range(H)])
                k = np.stack([norm(k[h], W[p + "self_attn.k_norm.weight"]) for h in range(KV)])
            Q.append(np.stack([rot(q[h], pos) for h in range(H)]))
            K.append(np.stack([rot(k[h], pos) for h in range(KV)]))
            V.append(vv)
        new_x = []
        for t in range(S):
            heads = []
            for h in range(H):
                g = h // (H // KV)
                lo = 0 if cfg.sliding_window is None else max(0, t - cfg.sliding_window + 1)
                sc = np.array([Q[t][h] @ K[s][g] / math.sqrt(hd) for s in range(lo, t + 1)])
                e = np.exp(sc - sc.max())
                pr = e / e.sum()
                heads.append(sum(pr[j] * V[lo + j][g] for j in range(len(pr))))
            o = lin(np.concatenate(heads), p + "self_attn.o_proj", cfg.o_bias)
            hmid = x[t] + o
            m = norm(hmid, W[p + "post_attention_layernorm.weight"])
            gate = lin(m, p + "mlp.gate_proj", cfg.mlp_bias)
            up = lin(m, p + "mlp.up_proj", cfg.mlp_bias)
            act = gate / (1.0 + np.exp(-gate)) * up
            new_x.append(hmid + lin(act, p + "mlp.down_proj", cfg.mlp_bias))
        x = new_x
    head = W["model.embed_tokens.weight"] if cfg.tie else W["lm_head.weight"]
    return np.stack([head @ norm(v, W["model.norm.weight"]) for v in x])


def meta_apply_scaling(freqs, rs):
    """Meta's llama3 reference (llama/model.py apply_scaling), scalar Python."""
    factor, lo, hi, old = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
    low_wl, high_wl = old / lo, old / hi
    out, kinds = [], []
    for f in freqs:
        wl = 2 * math.pi / f
        if wl < high_wl:
            out.append(f)
            kinds.append("kept")
        elif wl > low_wl:
            out.append(f / factor)
            kinds.append("divided")
        else:
            s = (old / wl - lo) / (hi - lo)
            out.append((1 - s) * f / factor + s * f)
            kinds.append("smoothed")
    return out, kinds


# ------------------------------------------------------------------ checks


def check_safetensors():
    rng = np.random.default_rng(7)
    a = rng.standard_normal((3, 5)).astype(np.float32) * 3
    a[0, 0] = 1.00390625  # halfway case for bf16 rounding (ties to even)
    a[0, 1] = 1.01171875  # halfway, rounds up to even
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x.safetensors")
        L.write_safetensors(p, {"b": (a, "BF16"), "a": (a, "F32"), "h": (a, "F16")}, {"format": "pt"})
        t, meta = L.read_safetensors(p)
        with open(p, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
        check("safetensors: F32 round trip exact", np.array_equal(t["a"], a))
        ref_bf16 = torch.from_numpy(a).to(torch.bfloat16).to(torch.float32).numpy()
        check("safetensors: BF16 write = torch .to(bfloat16) (RNE), read back exact", np.array_equal(t["b"], ref_bf16))
        check("safetensors: F16 round trip = numpy float16", np.array_equal(t["h"], a.astype(np.float16).astype(np.float32)))
        check("safetensors: header length multiple of 8, metadata kept", n % 8 == 0 and meta == {"format": "pt"})
        bits = np.array([0x3F80, 0xBF80, 0x4049, 0x0001], dtype=np.uint16)
        want = np.array([1.0, -1.0, 3.140625, 9.183549615799121e-41], dtype=np.float32)
        check("safetensors: bf16 bits -> f32 (incl. negative, subnormal)", np.array_equal(L.bf16_bits_to_f32(bits), want))
    # The golden bf16 file really holds BF16 and the f32 ones F32.
    for v in VARIANTS:
        with open(os.path.join(GOLDEN, v, "model.safetensors"), "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            hdr = json.loads(f.read(n))
        dts = {i["dtype"] for k, i in hdr.items() if k != "__metadata__"}
        want = {"BF16"} if v == "llama-bf16" else {"F32"}
        check(f"golden/{v}: tensors stored as {sorted(want)[0]}", dts == want, f"dtypes {sorted(dts)}")


def check_sharded():
    src = os.path.join(GOLDEN, "llama-gqa")
    t, _ = L.read_safetensors(os.path.join(src, "model.safetensors"))
    names = sorted(t)
    with tempfile.TemporaryDirectory() as d:
        wm = {}
        for si, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :])):
            fn = f"model-0000{si + 1}-of-00002.safetensors"
            L.write_safetensors(os.path.join(d, fn), {k: (t[k], "F32") for k in part})
            wm.update({k: fn for k in part})
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": wm}, f)
        with open(os.path.join(src, "config.json")) as f, open(os.path.join(d, "config.json"), "w") as g:
            g.write(f.read())
        ids = golden("llama-gqa")["ids"][1]
        d0 = maxdiff(L.Model.load(d, torch.float64).logits(ids), load("llama-gqa").logits(ids))
        check("sharded checkpoint (index.json, 2 shards) = single file", d0 == 0.0, f"max|d| {d0:.1e}")


def check_goldens_reproduce():
    for v in VARIANTS:
        g = golden(v)
        m64, m32 = load(v), load(v, torch.float32)
        exact, d32, dnp = True, 0.0, 0.0
        for ids, want in zip(g["ids"], g["logits"]):
            l64 = m64.logits(ids)
            exact &= L.f32s(l64) == want
            d32 = max(d32, maxdiff(m32.logits(ids), want))
        # independent numpy implementation on the longest golden sequence
        ids = max(g["ids"], key=len)
        cfg = m64.cfg
        npl = numpy_forward(cfg, L.load_checkpoint(os.path.join(GOLDEN, v)), ids)
        dnp = maxdiff(npl, m64.logits(ids))
        check(f"golden/{v}: logits reproduce bit-exactly (f64); f32 compute close; numpy loop oracle agrees",
              exact and d32 < 2e-5 and dnp < 1e-10, f"f32 max|d| {d32:.1e}, numpy-vs-torch(f64) max|d| {dnp:.1e}")


def check_causal_prefix_batch():
    for v in VARIANTS:
        g = golden(v)
        m = load(v)
        full_ids = max(g["ids"], key=len)
        full = m.logits(full_ids)
        worst = 0.0
        for n in (1, 3, len(full_ids) - 1):
            worst = max(worst, maxdiff(m.logits(full_ids[:n]), full[:n]))
        changed = list(full_ids)
        changed[-1] = (changed[-1] + 1) % m.cfg.vocab
        after = m.logits(changed)
        causal = maxdiff(after[:-1], full[:-1])
        last_moves = maxdiff(after[-1], full[-1])
        # right-padded batch = per-sequence
        bl = m.logits_batch(g["ids"])
        db = max(maxdiff(b, w) for b, w in zip(bl, g["logits"]))
        check(f"{v}: prefix logits = prefix of full logits; later token can't change earlier logits; batch=single",
              worst < 1e-12 and causal < 1e-12 and last_moves > 1e-3 and db < 1e-6,
              f"prefix {worst:.1e}, earlier {causal:.1e}, last moved {last_moves:.2f}, batch vs golden {db:.1e}")


def check_cache_and_greedy():
    for v in VARIANTS:
        g = golden(v)
        m = load(v)
        ids = max(g["ids"], key=len)
        full = m.logits(ids)
        # feed in chunks through the KV cache
        past, outs, i = None, [], 0
        for step in (3, 1, 2, len(ids)):
            chunk = ids[i : i + step]
            if not chunk:
                break
            o, past = m.forward(torch.tensor([chunk]), past)
            outs.append(o[0])
            i += len(chunk)
        dc = maxdiff(torch.cat(outs), full)
        # greedy: independent loop of full forwards + argmax
        seq = list(g["greedy"]["prompt"])
        for _ in range(16):
            seq.append(int(torch.argmax(m.logits(seq)[-1])))
        loop_ids = seq[len(g["greedy"]["prompt"]) :]
        cache_ids, tops, _ = m.generate(g["greedy"]["prompt"], 16, cache=True)
        m32 = load(v, torch.float32)
        c32, _, _ = m32.generate(g["greedy"]["prompt"], 16, cache=True)
        lp_ok = all(abs(a[1] - b[1]) < 1e-5 and a[0] == b[0] for t1, t2 in zip(tops, g["greedy"]["logprobs"]) for a, b in zip(t1, t2))
        check(f"{v}: KV-cache chunked forward = full forward; greedy = argmax of repeated full forwards = golden",
              dc < 1e-12 and loop_ids == g["greedy"]["ids"] == cache_ids == c32 and lp_ok,
              f"cache max|d| {dc:.1e}, min top1 margin {g['greedy']['min_top1_margin']}")


def check_rope():
    cfg_d = MG.VARIANTS["llama3-rope-scaling"][0]
    cfg = L.Config(cfg_d)
    inv = L.rope_inv_freq(cfg)
    saved = cfg.rope_type
    cfg.rope_type = "default"
    inv0 = L.rope_inv_freq(cfg)
    cfg.rope_type = saved
    meta, kinds = meta_apply_scaling([float(f) for f in inv0], cfg.rope_scaling)
    dm = max(abs(a - b) / b for a, b in zip(meta, inv.tolist()))
    changed = int((inv != inv0).sum())
    check("rope llama3: HF-style vectorised = Meta scalar apply_scaling; frequencies changed",
          dm < 1e-6 and changed >= 4, f"{changed}/{inv.numel()} changed ({', '.join(f'{k}:{kinds.count(k)}' for k in ('kept', 'smoothed', 'divided'))}), rel diff {dm:.1e}")
    # The real Llama 3.1 numbers (head_dim 128, theta 5e5, factor 8, 1, 4, 8192): HF documents
    # that this changes the low frequencies; count them as a sanity figure.
    big = L.Config(dict(cfg_d, hidden_size=4096, num_attention_heads=32, num_key_value_heads=8,
                        rope_scaling=dict(cfg_d["rope_scaling"], original_max_position_embeddings=8192)))
    ib = L.rope_inv_freq(big)
    big.rope_type = "default"
    ib0 = L.rope_inv_freq(big)
    mb, kb = meta_apply_scaling([float(f) for f in ib0], big.rope_scaling)
    check("rope llama3 at Llama-3.1-8B sizes = Meta scalar formula",
          max(abs(a - b) / b for a, b in zip(mb, ib.tolist())) < 1e-6,
          f"{int((ib != ib0).sum())}/64 changed, {kb.count('smoothed')} smoothed")
    # linear scaling: inv_freq / factor  <=> positions / factor
    lin = L.Config(dict(cfg_d, rope_scaling={"type": "linear", "factor": 4.0}))
    check("rope linear: inv_freq = default / factor", torch.allclose(L.rope_inv_freq(lin), inv0 / 4.0, rtol=0, atol=0))
    # relative-position property: <R(p+s) q, R(p'+s) k> = <R(p) q, R(p') k>
    m = load("llama-gqa")
    q = torch.randn(1, 1, 1, m.cfg.head_dim, dtype=torch.float64)
    k = torch.randn(1, 1, 1, m.cfg.head_dim, dtype=torch.float64)

    def score(pq, pk):
        cq, sq = m._cos_sin(torch.tensor([pq]))
        ck, sk = m._cos_sin(torch.tensor([pk]))
        return float((m._rope(q, cq, sq) * m._rope(k, ck, sk)).sum())

    dr = max(abs(score(p + s, p2 + s) - score(p, p2)) for p, p2, s in ((5, 2, 7), (9, 0, 31), (3, 3, 100)))
    check("rope: attention score depends only on relative position", dr < 1e-10, f"max|d| {dr:.1e}")


def check_tied_gqa():
    # Tied: llama-tied has no lm_head.weight; untying with a copy of the embedding gives the same logits.
    d = os.path.join(GOLDEN, "llama-tied")
    w = L.load_checkpoint(d)
    with open(os.path.join(d, "config.json")) as f:
        cd = json.load(f)
    ids = golden("llama-tied")["ids"][1]
    untied = L.Model(L.Config(dict(cd, tie_word_embeddings=False)), dict(w, **{"lm_head.weight": w["model.embed_tokens.weight"]}), torch.float64)
    dt = maxdiff(untied.logits(ids), load("llama-tied").logits(ids))
    try:
        L.Model(L.Config(dict(cd, tie_word_embeddings=False)), w)
        raised = False
    except KeyError:
        raised = True
    check("tied: no lm_head.weight in file; = untied model with lm_head := embed; untied config without lm_head fails",
          "lm_head.weight" not in w and dt == 0.0 and raised, f"max|d| {dt:.1e}")
    # Untied: llama-gqa's lm_head differs from its embedding and matters.
    w2 = L.load_checkpoint(os.path.join(GOLDEN, "llama-gqa"))
    with open(os.path.join(GOLDEN, "llama-gqa", "config.json")) as f:
        cd2 = json.load(f)
    ids2 = golden("llama-gqa")["ids"][1]
    tied2 = L.Model(L.Config(dict(cd2, tie_word_embeddings=True)), {k: v for k, v in w2.items() if k != "lm_head.weight"}, torch.float64)
    du = maxdiff(tied2.logits(ids2), load("llama-gqa").logits(ids2))
    check("untied: tying llama-gqa's head to its embedding changes the logits", du > 0.1, f"max|d| {du:.2f}")
    # GQA = MHA with kv heads duplicated (query head h uses kv head h // (H/KV)).
    cfg = L.Config(cd2)
    rep = cfg.n_heads // cfg.n_kv
    w3 = dict(w2)
    for i in range(cfg.n_layers):
        for nm in ("k_proj", "v_proj"):
            key = f"model.layers.{i}.self_attn.{nm}.weight"
            w3[key] = np.repeat(w2[key].reshape(cfg.n_kv, cfg.head_dim, -1), rep, axis=0).reshape(cfg.n_heads * cfg.head_dim, -1)
    mha = L.Model(L.Config(dict(cd2, num_key_value_heads=cfg.n_heads)), w3, torch.float64)
    dg = maxdiff(mha.logits(ids2), load("llama-gqa").logits(ids2))
    check("GQA (4 q / 2 kv heads) = MHA with each kv head repeated for consecutive q heads", dg < 1e-12, f"max|d| {dg:.1e}")


def check_sensitivity():
    """Each golden must be sensitive to the feature it covers, well above float32 noise."""
    cases = [
        ("llama3-rope-scaling", "ablate_rope_scaling", "llama3 rope scaling off"),
        ("qwen3-qknorm", "ablate_qk_norm", "q_norm/k_norm off"),
        ("qwen2-bias", "ablate_bias", "q/k/v bias off"),
        ("llama-gqa", "ablate_norm_weights", "RMSNorm weights := 1"),
        ("llama-gqa", "rope_interleaved", "RoPE pairs (2j,2j+1) instead of rotate_half"),
        ("llama3-rope-scaling", "rope_interleaved", "RoPE pairs (2j,2j+1) instead of rotate_half"),
        ("mistral", "rope_interleaved", "RoPE pairs (2j,2j+1) instead of rotate_half"),
    ]
    for v, attr, what in cases:
        g = golden(v)
        m = load(v)
        setattr(m, attr, True)
        d = max(maxdiff(m.logits(ids), want) for ids, want in zip(g["ids"], g["logits"]))
        check(f"sensitivity {v}: {what} moves logits", d > 0.05, f"max|d| {d:.3f}")
    # qwen3's head_dim 16 != 48/4: a model using hidden/heads can't even load its weights.
    with open(os.path.join(GOLDEN, "qwen3-qknorm", "config.json")) as f:
        cd = json.load(f)
    cd.pop("head_dim")
    try:
        L.Model(L.Config(cd), L.load_checkpoint(os.path.join(GOLDEN, "qwen3-qknorm")))
        ok = False
    except ValueError:
        ok = True
    check("qwen3: ignoring head_dim (48/4=12) is a shape error against the checkpoint", ok)
    # bf16: the stored weights are bf16-rounded; f32 weights from the same seed give other logits.
    cfg_d, seed = MG.VARIANTS["llama-bf16"][0], MG.VARIANTS["llama-bf16"][1]
    cfg = L.Config(cfg_d)
    m32w = L.Model(cfg, L.init_weights(cfg, seed, MG.STD, MG.NORM_NOISE), torch.float64)
    g = golden("llama-bf16")
    d = maxdiff(m32w.logits(g["ids"][1]), g["logits"][1])
    check("llama-bf16: goldens use the bf16-rounded weights (un-rounded f32 weights differ)", d > 1e-3, f"max|d| {d:.3f}")


def check_cli():
    v = "qwen3-qknorm"
    g = golden(v)
    d = os.path.join(GOLDEN, v)
    py = sys.executable
    r = subprocess.run([py, os.path.join(HERE, "llama_ref.py"), "logits", "--model", d, "--ids", ",".join(map(str, g["ids"][0]))],
                       check=True, capture_output=True, text=True)
    a = maxdiff(json.loads(r.stdout)["logits"], g["logits"][0])
    r = subprocess.run([py, os.path.join(HERE, "llama_ref.py"), "logits", "--model", d, "--batch",
                        ";".join(",".join(map(str, s)) for s in g["ids"])], check=True, capture_output=True, text=True)
    b = max(maxdiff(x, w) for x, w in zip(json.loads(r.stdout)["logits"], g["logits"]))
    r = subprocess.run([py, os.path.join(HERE, "llama_ref.py"), "generate", "--model", d, "--ids",
                        ",".join(map(str, g["greedy"]["prompt"])), "--max-new", "16", "--cache"], check=True, capture_output=True, text=True)
    gen = json.loads(r.stdout)
    check("CLI logits --ids / --batch / generate --cache match golden.json", a < 2e-5 and b < 2e-5 and gen["ids"] == g["greedy"]["ids"],
          f"--ids {a:.1e}, --batch {b:.1e}")
    with tempfile.TemporaryDirectory() as t:
        cfgp = os.path.join(d, "config.json")
        for out in ("a", "b"):
            subprocess.run([py, os.path.join(HERE, "llama_ref.py"), "init", "--config", cfgp, "--out", os.path.join(t, out),
                            "--seed", "5", "--dtype", "bf16"], check=True)
        same = open(os.path.join(t, "a", "model.safetensors"), "rb").read() == open(os.path.join(t, "b", "model.safetensors"), "rb").read()
        w = L.load_checkpoint(os.path.join(t, "a"))
        cfg = L.Config(json.load(open(cfgp)))
        shapes_ok = {k: tuple(v.shape) for k, v in w.items()} == L.param_shapes(cfg)
        nw = w["model.layers.0.input_layernorm.weight"]
        check("CLI init: deterministic, HF names/shapes, norms = 1 + noise",
              same and shapes_ok and abs(float(nw.mean()) - 1) < 0.1 and float(nw.std()) > 0.01)


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    check_safetensors()
    check_sharded()
    check_goldens_reproduce()
    check_causal_prefix_batch()
    check_cache_and_greedy()
    check_rope()
    check_tied_gqa()
    check_sensitivity()
    check_cli()
    print(f"\n{len(failures)} failure(s)" + (": " + ", ".join(failures) if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
