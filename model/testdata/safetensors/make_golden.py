#!/usr/bin/python3
"""Writes golden.safetensors with a hand-written encoder that follows the
safetensors spec (u64 little-endian header length, JSON header, data),
independently of the Go writer; numpy and torch do the dtype conversions.
Tensors are deliberately not in name order, as real writers order by dtype.
Usage: make_golden.py OUT.safetensors
"""
import json
import struct
import sys

import numpy as np
import torch


def bf16_bytes(values):
    t = torch.tensor(values, dtype=torch.float32).to(torch.bfloat16)
    return t.view(torch.int16).numpy().astype("<i2").tobytes()


tensors = [
    ("model.embed_tokens.weight", "F32", [2, 3],
     np.array([0, 1, -1.5, 3.25, 1e-3, -65504], dtype="<f4").tobytes()),
    ("model.layers.0.self_attn.q_proj.weight", "BF16", [2, 2],
     bf16_bytes([1.0, -2.0, 0.1, 3.0e38])),
    ("lm_head.weight", "F16", [3], np.array([0.5, -0.1, 65504], dtype="<f2").tobytes()),
    ("model.norm.eps", "F64", [], np.array(1e-5, dtype="<f8").tobytes()),
    ("position_ids", "I64", [1, 4], np.array([[0, 1, 2, -3]], dtype="<i8").tobytes()),
    ("mask", "BOOL", [2], np.array([True, False], dtype=np.bool_).tobytes()),
    ("empty.weight", "F32", [0, 4], b""),
    ("scalar", "F32", [], np.array(2.5, dtype="<f4").tobytes()),
]

header = {"__metadata__": {"format": "pt", "source": "make_golden.py"}}
data = b""
for name, dtype, shape, raw in tensors:
    header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
    data += raw
hb = json.dumps(header, separators=(",", ":")).encode()
hb += b" " * ((8 - len(hb) % 8) % 8)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(hb)))
    f.write(hb)
    f.write(data)
