#!/usr/bin/python3
"""Independent PyTorch reference ("oracle") for the HF decoder-only Llama family.

Written by hand from the HuggingFace formulas (modeling_llama / modeling_mistral /
modeling_qwen2 / modeling_qwen3 and modeling_rope_utils); it does not import
transformers or safetensors. Supported model_type values: llama, mistral, qwen2, qwen3.

Subcommands (run with Debian's /usr/bin/python3, which has torch):

  llama_ref.py logits   --model DIR --ids 1,2,3 [--compute f32|f64]
  llama_ref.py logits   --model DIR --batch "1,2,3;4,5,6,7" [--compute f32|f64]
      -> {"logits": [[vocab floats] per position]}            (--ids)
      -> {"logits": [[[vocab floats] per position] per seq]}   (--batch; sequences are
         right-padded into one batch; causal attention means padding never reaches a
         real position, so each sequence's logits are its unpadded logits)

  llama_ref.py generate --model DIR --ids 1,2,3 --max-new N [--cache] [--stop-eos] [--compute f32|f64]
      -> {"prompt": [...], "ids": [N new ids], "logprobs": [[[id, logprob] x top-5] per step]}
      Greedy decode. Default: every step re-runs the full (cache-free) forward over the whole
      sequence; --cache uses the KV cache instead (selfcheck.py checks both agree).

  llama_ref.py init --config config.json --out DIR --seed S [--dtype f32|bf16] [--std 0.02] [--norm-noise 0.1]
      Writes DIR/config.json (a copy, torch_dtype set from --dtype) and DIR/model.safetensors with
      HF parameter names and shapes; weights ~ N(0, std^2), norm weights 1 + N(0, norm_noise^2),
      biases N(0, std^2). Random numbers come from numpy's PCG64 (platform independent).

Floats are printed as the shortest decimal that round-trips the float32 value.
The compute dtype defaults to float32, as HF runs an f32 checkpoint; bf16/f16 weights are
upcast exactly to the compute dtype before use.
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

# --------------------------------------------------------------------------------------
# safetensors (hand-written reader/writer)
# --------------------------------------------------------------------------------------

_ST_DTYPES = {
    "F64": (np.dtype("<f8"), 8),
    "F32": (np.dtype("<f4"), 4),
    "F16": (np.dtype("<f2"), 2),
    "BF16": (np.dtype("<u2"), 2),
    "I64": (np.dtype("<i8"), 8),
    "I32": (np.dtype("<i4"), 4),
    "I16": (np.dtype("<i2"), 2),
    "I8": (np.dtype("i1"), 1),
    "U8": (np.dtype("u1"), 1),
    "BOOL": (np.dtype("?"), 1),
}


def bf16_bits_to_f32(bits):
    """uint16/int16 array of bf16 bit patterns -> float32 array (exact)."""
    return (bits.astype(np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def f32_to_bf16_bits(x):
    """float32 array -> uint16 bf16 bit patterns, round to nearest even (as torch does)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError("f32_to_bf16_bits: non-finite value")
    u = x.view(np.uint32).astype(np.uint64)
    rounding = ((u >> np.uint64(16)) & np.uint64(1)) + np.uint64(0x7FFF)
    return ((u + rounding) >> np.uint64(16)).astype(np.uint16)


def read_safetensors(path):
    """Returns ({name: np.ndarray}, metadata). BF16/F16 tensors come back as float32."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError(f"{path}: header length {n} past end of file")
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    base = 8 + n
    meta = header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        dt = info["dtype"]
        if dt not in _ST_DTYPES:
            raise ValueError(f"{path}: {name}: unsupported dtype {dt}")
        npdt, size = _ST_DTYPES[dt]
        shape = [int(s) for s in info["shape"]]
        start, end = info["data_offsets"]
        count = int(np.prod(shape)) if shape else 1
        if end - start != count * size or base + end > len(data):
            raise ValueError(f"{path}: {name}: bad data_offsets {start},{end} for {dt}{shape}")
        arr = np.frombuffer(data, dtype=npdt, count=count, offset=base + start).reshape(shape).copy()
        if dt == "BF16":
            arr = bf16_bits_to_f32(arr)
        elif dt == "F16":
            arr = arr.astype(np.float32)
        out[name] = arr
    return out, meta


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: (np.ndarray, dtype)} with dtype in F32, F16, BF16. Names are written
    sorted; the header is compact JSON padded with spaces to a multiple of 8 bytes."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    off = 0
    for name in sorted(tensors):
        arr, dt = tensors[name]
        if dt == "F32":
            raw = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        elif dt == "F16":
            raw = np.ascontiguousarray(arr, dtype="<f2").tobytes()
        elif dt == "BF16":
            raw = f32_to_bf16_bits(arr).astype("<u2").tobytes()
        else:
            raise ValueError(f"write_safetensors: unsupported dtype {dt}")
        header[name] = {"dtype": dt, "shape": [int(s) for s in arr.shape], "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def load_checkpoint(model_dir):
    """Reads model.safetensors or the shards listed in model.safetensors.index.json."""
    single = os.path.join(model_dir, "model.safetensors")
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(single):
        return read_safetensors(single)[0]
    if os.path.exists(index):
        with open(index) as f:
            wm = json.load(f)["weight_map"]
        out = {}
        for shard in sorted(set(wm.values())):
            t, _ = read_safetensors(os.path.join(model_dir, shard))
            for k, v in t.items():
                if k in out:
                    raise ValueError(f"tensor {k} in more than one shard")
                out[k] = v
        missing = set(wm) - set(out)
        if missing:
            raise ValueError(f"index lists tensors not found in shards: {sorted(missing)[:5]}")
        return out
    raise FileNotFoundError(f"{model_dir}: no model.safetensors or model.safetensors.index.json")


# --------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------

SUPPORTED = ("llama", "mistral", "qwen2", "qwen3")


class Config:
    def __init__(self, d):
        self.raw = d
        self.model_type = d.get("model_type", "llama")
        if self.model_type not in SUPPORTED:
            raise ValueError(f"model_type {self.model_type!r} not supported ({', '.join(SUPPORTED)})")
        self.hidden = int(d["hidden_size"])
        self.inter = int(d["intermediate_size"])
        self.n_layers = int(d["num_hidden_layers"])
        self.n_heads = int(d["num_attention_heads"])
        self.n_kv = int(d.get("num_key_value_heads") or self.n_heads)
        self.head_dim = int(d.get("head_dim") or self.hidden // self.n_heads)
        self.eps = float(d.get("rms_norm_eps", 1e-6))
        self.vocab = int(d["vocab_size"])
        self.tie = bool(d.get("tie_word_embeddings", False))
        act = d.get("hidden_act", "silu")
        if act != "silu":
            raise ValueError(f"hidden_act {act!r} not supported (only silu)")
        if self.n_heads % self.n_kv:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        # RoPE: classic keys (rope_theta, rope_scaling) or transformers-v5 rope_parameters.
        rp = d.get("rope_parameters")
        if rp:
            self.theta = float(rp.get("rope_theta", d.get("rope_theta", 10000.0)))
            rs = dict(rp)
        else:
            self.theta = float(d.get("rope_theta", 10000.0))
            rs = dict(d.get("rope_scaling") or {})
        rtype = rs.get("rope_type", rs.get("type", "default")) if rs else "default"
        if rtype not in ("default", "llama3", "linear"):
            raise ValueError(f"rope type {rtype!r} not supported (default, llama3, linear)")
        if float(d.get("partial_rotary_factor", 1.0)) != 1.0:
            raise ValueError("partial_rotary_factor != 1 not supported")
        self.rope_type = rtype
        self.rope_scaling = rs
        # Biases, per the HF modeling files.
        ab = bool(d.get("attention_bias", False))
        if self.model_type == "qwen2":
            self.qkv_bias, self.o_bias = True, False
        elif self.model_type == "mistral":
            self.qkv_bias, self.o_bias = False, False
        else:  # llama, qwen3
            self.qkv_bias, self.o_bias = ab, ab
        self.mlp_bias = bool(d.get("mlp_bias", False)) if self.model_type == "llama" else False
        self.qk_norm = self.model_type == "qwen3"
        # Sliding window: only Mistral applies config.sliding_window unconditionally.
        self.sliding_window = None
        if self.model_type == "mistral" and d.get("sliding_window") is not None:
            self.sliding_window = int(d["sliding_window"])
        if self.model_type in ("qwen2", "qwen3") and d.get("use_sliding_window"):
            raise ValueError("use_sliding_window true not supported for qwen2/qwen3")
        self.bos = d.get("bos_token_id")
        self.eos = d.get("eos_token_id")


def load_config(path):
    with open(path) as f:
        return Config(json.load(f))


def param_shapes(cfg):
    """HF parameter names -> shapes (Linear weights are [out_features, in_features])."""
    H, KV, hd, d, I, V = cfg.n_heads, cfg.n_kv, cfg.head_dim, cfg.hidden, cfg.inter, cfg.vocab
    s = {"model.embed_tokens.weight": (V, d), "model.norm.weight": (d,)}
    for i in range(cfg.n_layers):
        p = f"model.layers.{i}."
        s[p + "self_attn.q_proj.weight"] = (H * hd, d)
        s[p + "self_attn.k_proj.weight"] = (KV * hd, d)
        s[p + "self_attn.v_proj.weight"] = (KV * hd, d)
        s[p + "self_attn.o_proj.weight"] = (d, H * hd)
        if cfg.qkv_bias:
            s[p + "self_attn.q_proj.bias"] = (H * hd,)
            s[p + "self_attn.k_proj.bias"] = (KV * hd,)
            s[p + "self_attn.v_proj.bias"] = (KV * hd,)
        if cfg.o_bias:
            s[p + "self_attn.o_proj.bias"] = (d,)
        if cfg.qk_norm:
            s[p + "self_attn.q_norm.weight"] = (hd,)
            s[p + "self_attn.k_norm.weight"] = (hd,)
        s[p + "mlp.gate_proj.weight"] = (I, d)
        s[p + "mlp.up_proj.weight"] = (I, d)
        s[p + "mlp.down_proj.weight"] = (d, I)
        if cfg.mlp_bias:
            s[p + "mlp.gate_proj.bias"] = (I,)
            s[p + "mlp.up_proj.bias"] = (I,)
            s[p + "mlp.down_proj.bias"] = (d,)
        s[p + "input_layernorm.weight"] = (d,)
        s[p + "post_attention_layernorm.weight"] = (d,)
    if not cfg.tie:
        s["lm_head.weight"] = (V, d)
    return s


# --------------------------------------------------------------------------------------
# RoPE
# --------------------------------------------------------------------------------------


def rope_inv_freq(cfg, dtype=torch.float32):
    """inv_freq as HF computes it (float32), with llama3 / linear scaling applied."""
    dim = cfg.head_dim
    inv = 1.0 / (cfg.theta ** (torch.arange(0, dim, 2, dtype=torch.int64).to(torch.float32) / dim))
    rs = cfg.rope_scaling
    if cfg.rope_type == "linear":
        inv = inv / float(rs["factor"])
    elif cfg.rope_type == "llama3":
        # HF modeling_rope_utils._compute_llama3_parameters
        factor = float(rs["factor"])
        low_ff = float(rs["low_freq_factor"])
        high_ff = float(rs["high_freq_factor"])
        old_ctx = float(rs["original_max_position_embeddings"])
        low_freq_wavelen = old_ctx / low_ff
        high_freq_wavelen = old_ctx / high_ff
        wavelen = 2 * math.pi / inv
        inv_l = torch.where(wavelen > low_freq_wavelen, inv / factor, inv)
        smooth = (old_ctx / wavelen - low_ff) / (high_ff - low_ff)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        inv = torch.where(is_medium, smoothed, inv_l)
    return inv.to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


# --------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------


def rms_norm(x, w, eps):
    # HF LlamaRMSNorm: in float32 (or wider), weight * normalized.
    xf = x.to(torch.float32) if x.dtype in (torch.float16, torch.bfloat16) else x
    var = xf.pow(2).mean(-1, keepdim=True)
    return w * (xf * torch.rsqrt(var + eps)).to(x.dtype)


def repeat_kv(x, n_rep):
    # [B, KV, T, hd] -> [B, KV*n_rep, T, hd], each kv head repeated n_rep times consecutively.
    if n_rep == 1:
        return x
    B, KV, T, hd = x.shape
    return x[:, :, None, :, :].expand(B, KV, n_rep, T, hd).reshape(B, KV * n_rep, T, hd)


class Model:
    """Weights as plain tensors (name -> tensor); forward is a function of them.

    Attributes that selfcheck.py toggles to prove the goldens are sensitive to a feature
    (never changed by the CLI): ablate_rope_scaling, ablate_qk_norm, ablate_bias,
    ablate_norm_weights, rope_interleaved."""

    def __init__(self, cfg, weights, dtype=torch.float32, strict=True):
        self.cfg = cfg
        self.dtype = dtype
        shapes = param_shapes(cfg)
        w = {}
        for name, shape in shapes.items():
            if name not in weights:
                raise KeyError(f"checkpoint lacks {name}")
            if tuple(weights[name].shape) != tuple(shape):
                raise ValueError(f"{name}: shape {tuple(weights[name].shape)}, want {shape}")
            w[name] = torch.from_numpy(np.asarray(weights[name])).to(dtype)
        extra = [k for k in weights if k not in shapes and not k.endswith("rotary_emb.inv_freq")]
        if cfg.tie and "lm_head.weight" in extra:
            extra.remove("lm_head.weight")
            print("llama_ref: tie_word_embeddings is true; ignoring lm_head.weight in checkpoint", file=sys.stderr)
        if extra:
            msg = f"checkpoint has unexpected tensors: {sorted(extra)[:8]}"
            if strict:
                raise ValueError(msg)
            print("llama_ref: " + msg, file=sys.stderr)
        self.w = w
        self.ablate_rope_scaling = False
        self.ablate_qk_norm = False
        self.ablate_bias = False
        self.ablate_norm_weights = False
        self.rope_interleaved = False

    @classmethod
    def load(cls, model_dir, dtype=torch.float32):
        cfg = load_config(os.path.join(model_dir, "config.json"))
        return cls(cfg, load_checkpoint(model_dir), dtype=dtype)

    def parameters(self):
        return list(self.w.values())

    # -- pieces --
    def _lin(self, x, name, bias):
        b = self.w.get(name + ".bias") if bias and not self.ablate_bias else None
        return F.linear(x, self.w[name + ".weight"], b)

    def _norm(self, x, name):
        w = self.w[name]
        if self.ablate_norm_weights:
            w = torch.ones_like(w)
        return rms_norm(x, w, self.cfg.eps)

    def _cos_sin(self, positions):
        cfg = self.cfg
        if self.ablate_rope_scaling:
            saved = cfg.rope_type
            cfg.rope_type = "default"
            inv = rope_inv_freq(cfg)
            cfg.rope_type = saved
        else:
            inv = rope_inv_freq(cfg)
        if self.dtype == torch.float64:
            inv = inv.to(torch.float64)
        freqs = positions.to(inv.dtype)[:, None] * inv[None, :]  # [S, hd/2]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(self.dtype), emb.sin().to(self.dtype)

    def _rope(self, x, cos, sin):
        # x: [B, heads, S, hd]; cos/sin: [S, hd]
        if self.rope_interleaved:  # GPT-J style pairing, only used to test sensitivity
            h = x.shape[-1] // 2
            c, s = cos[:, :h], sin[:, :h]
            x1, x2 = x[..., 0::2], x[..., 1::2]
            return torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1).flatten(-2)
        return x * cos + rotate_half(x) * sin

    def _mask(self, q_pos, k_pos):
        allowed = k_pos[None, :] <= q_pos[:, None]
        if self.cfg.sliding_window is not None:
            allowed = allowed & (k_pos[None, :] > q_pos[:, None] - self.cfg.sliding_window)
        return allowed  # [S, T] bool

    def _attn(self, i, x, cos, sin, mask, past):
        cfg = self.cfg
        B, S, _ = x.shape
        H, KV, hd = cfg.n_heads, cfg.n_kv, cfg.head_dim
        p = f"model.layers.{i}.self_attn."
        q = self._lin(x, p + "q_proj", cfg.qkv_bias).view(B, S, H, hd)
        k = self._lin(x, p + "k_proj", cfg.qkv_bias).view(B, S, KV, hd)
        v = self._lin(x, p + "v_proj", cfg.qkv_bias).view(B, S, KV, hd)
        if cfg.qk_norm and not self.ablate_qk_norm:  # Qwen3: per-head RMSNorm before RoPE
            q = self._norm(q, p + "q_norm.weight")
            k = self._norm(k, p + "k_norm.weight")
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        q = self._rope(q, cos, sin)
        k = self._rope(k, cos, sin)
        if past is not None:
            k = torch.cat((past[0], k), dim=2)
            v = torch.cat((past[1], v), dim=2)
        new_past = (k, v)
        kr, vr = repeat_kv(k, H // KV), repeat_kv(v, H // KV)
        scores = torch.matmul(q, kr.transpose(2, 3)) * (1.0 / math.sqrt(hd))
        scores = scores.masked_fill(~mask, float("-inf"))
        sdt = torch.float64 if scores.dtype == torch.float64 else torch.float32
        probs = torch.softmax(scores.to(sdt), dim=-1).to(q.dtype)
        out = torch.matmul(probs, vr).transpose(1, 2).reshape(B, S, H * hd)
        return self._lin(out, p + "o_proj", cfg.o_bias), new_past

    def _mlp(self, i, x):
        p = f"model.layers.{i}.mlp."
        b = self.cfg.mlp_bias
        return self._lin(F.silu(self._lin(x, p + "gate_proj", b)) * self._lin(x, p + "up_proj", b), p + "down_proj", b)

    def forward(self, ids, past=None):
        """ids: LongTensor [B, S]. past: None or list (per layer) of (k, v) [B, KV, T, hd]
        (keys after RoPE, before repeat_kv). Returns (logits [B, S, V], new_past)."""
        cfg = self.cfg
        if ids.dim() == 1:
            ids = ids[None]
        B, S = ids.shape
        if int(ids.min()) < 0 or int(ids.max()) >= cfg.vocab:
            raise ValueError(f"token id out of range [0, {cfg.vocab})")
        T0 = 0 if past is None else past[0][0].shape[2]
        q_pos = torch.arange(T0, T0 + S)
        k_pos = torch.arange(0, T0 + S)
        cos, sin = self._cos_sin(q_pos)
        mask = self._mask(q_pos, k_pos)
        h = F.embedding(ids, self.w["model.embed_tokens.weight"])
        new_past = []
        for i in range(cfg.n_layers):
            p = f"model.layers.{i}."
            a, kv = self._attn(i, self._norm(h, p + "input_layernorm.weight"), cos, sin, mask,
                               None if past is None else past[i])
            new_past.append(kv)
            h = h + a
            h = h + self._mlp(i, self._norm(h, p + "post_attention_layernorm.weight"))
        h = self._norm(h, "model.norm.weight")
        head = self.w["model.embed_tokens.weight"] if cfg.tie else self.w["lm_head.weight"]
        return F.linear(h, head), new_past

    # -- convenience --
    @torch.no_grad()
    def logits(self, ids):
        """ids: list[int] -> float tensor [S, V] (no cache)."""
        return self.forward(torch.tensor([ids], dtype=torch.long))[0][0]

    @torch.no_grad()
    def logits_batch(self, seqs):
        """Right-pads the sequences into one batch; returns a list of [len_i, V] tensors."""
        L = max(len(s) for s in seqs)
        ids = torch.zeros(len(seqs), L, dtype=torch.long)
        for b, s in enumerate(seqs):
            ids[b, : len(s)] = torch.tensor(s, dtype=torch.long)
        out, _ = self.forward(ids)
        return [out[b, : len(s)] for b, s in enumerate(seqs)]

    @torch.no_grad()
    def generate(self, prompt, max_new, cache=False, stop_eos=False, topk=5):
        """Greedy decode. Returns (new_ids, per-step top-k [(id, logprob)], per-step last logits)."""
        seq = list(prompt)
        new, tops, lasts = [], [], []
        past = None
        nxt_input = torch.tensor([seq], dtype=torch.long)
        eos = self.cfg.eos
        eos_set = set(eos if isinstance(eos, list) else ([eos] if eos is not None else []))
        for _ in range(max_new):
            if cache:
                out, past = self.forward(nxt_input, past)
            else:
                out, _ = self.forward(torch.tensor([seq], dtype=torch.long))
            last = out[0, -1]
            lp = torch.log_softmax(last.to(torch.float64 if last.dtype == torch.float64 else torch.float32), -1)
            tok = int(torch.argmax(last))
            vals, idx = torch.topk(lp, topk)
            tops.append([(int(j), float(v)) for v, j in zip(vals, idx)])
            lasts.append(last.clone())
            new.append(tok)
            seq.append(tok)
            nxt_input = torch.tensor([[tok]], dtype=torch.long)
            if stop_eos and tok in eos_set:
                break
        return new, tops, lasts


# --------------------------------------------------------------------------------------
# init (random checkpoints)
# --------------------------------------------------------------------------------------


def init_weights(cfg, seed, std=0.02, norm_noise=0.1):
    """Deterministic (numpy PCG64, float64 draws cast to float32) random weights."""
    rng = np.random.Generator(np.random.PCG64(seed))
    out = {}
    for name, shape in param_shapes(cfg).items():  # insertion order is fixed
        if name.endswith("norm.weight"):
            a = 1.0 + norm_noise * rng.standard_normal(shape)
        else:
            a = std * rng.standard_normal(shape)
        out[name] = a.astype(np.float32)
    return out


def write_checkpoint(out_dir, cfg_dict, weights, dtype="f32"):
    os.makedirs(out_dir, exist_ok=True)
    st = "BF16" if dtype == "bf16" else "F32"
    cfg_dict = dict(cfg_dict)
    cfg_dict["torch_dtype"] = "bfloat16" if dtype == "bf16" else "float32"
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg_dict, f, indent=2)
        f.write("\n")
    write_safetensors(os.path.join(out_dir, "model.safetensors"), {k: (v, st) for k, v in weights.items()},
                      metadata={"format": "pt"})
    return cfg_dict


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def f32s(x):
    """float32-shortest-repr floats (nested lists) for JSON."""
    a = np.asarray(x.detach().cpu().numpy() if torch.is_tensor(x) else x, dtype=np.float32)
    if a.ndim == 0:
        return float(str(a[()]))
    return [f32s(r) for r in a] if a.ndim > 1 else [float(str(v)) for v in a]


def _ids(s):
    return [int(t) for t in s.replace(" ", "").split(",") if t != ""]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="llama_ref.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    lg = sub.add_parser("logits")
    lg.add_argument("--model", required=True)
    g = lg.add_mutually_exclusive_group(required=True)
    g.add_argument("--ids")
    g.add_argument("--batch", help='sequences separated by ";", e.g. "1,2,3;4,5"')
    lg.add_argument("--compute", choices=("f32", "f64"), default="f32")
    gn = sub.add_parser("generate")
    gn.add_argument("--model", required=True)
    gn.add_argument("--ids", required=True)
    gn.add_argument("--max-new", type=int, required=True)
    gn.add_argument("--cache", action="store_true", help="use the KV cache (default: full forward per step)")
    gn.add_argument("--stop-eos", action="store_true")
    gn.add_argument("--compute", choices=("f32", "f64"), default="f32")
    it = sub.add_parser("init")
    it.add_argument("--config", required=True)
    it.add_argument("--out", required=True)
    it.add_argument("--seed", type=int, required=True)
    it.add_argument("--dtype", choices=("f32", "bf16"), default="f32")
    it.add_argument("--std", type=float, default=0.02)
    it.add_argument("--norm-noise", type=float, default=0.1)
    a = ap.parse_args(argv)

    if a.cmd == "init":
        with open(a.config) as f:
            d = json.load(f)
        cfg = Config(d)
        write_checkpoint(a.out, d, init_weights(cfg, a.seed, a.std, a.norm_noise), a.dtype)
        return 0
    dt = torch.float64 if a.compute == "f64" else torch.float32
    m = Model.load(a.model, dtype=dt)
    if a.cmd == "logits":
        if a.ids is not None:
            res = {"logits": f32s(m.logits(_ids(a.ids)))}
        else:
            seqs = [_ids(s) for s in a.batch.split(";")]
            res = {"logits": [f32s(x) for x in m.logits_batch(seqs)]}
    else:
        prompt = _ids(a.ids)
        new, tops, _ = m.generate(prompt, a.max_new, cache=a.cache, stop_eos=a.stop_eos)
        res = {"prompt": prompt, "ids": new,
               "logprobs": [[[j, float(str(np.float32(v)))] for j, v in t] for t in tops]}
    json.dump(res, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
