#!/usr/bin/python3
"""Independent PyTorch check of an AutoAWQ "GEMM" checkpoint.

Dequantizes every `<module>.qweight/qzeros/scales` the way AutoAWQ's
awq/utils/packing_utils.py dequantize_gemm does (unpack each int32 with right
shifts 0, 4, ..., 28, undo the pack order with AWQ_REVERSE_ORDER, mask 4 bits,
w = (q - z) * s per group of input rows), transposes to HF's [out, in], and runs
the rebuilt float model with the hand-written reference in
model/testdata/oracle/llama_ref.py. The dequantization is done in float32 (AutoAWQ
multiplies in float16; the products (q - z) * s are exact in float32).

  awq_oracle.py --model DIR --batch "1,2,3;4,5"   -> {"logits": [[[vocab] per position] per seq]}
"""

import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "model", "testdata", "oracle"))
import llama_ref  # noqa: E402

AWQ_REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7]


def unpack(packed, bits=4):
    """int32 [rows, cols] -> int32 [rows, cols * 8] in output order."""
    shifts = torch.arange(0, 32, bits, dtype=torch.int32)
    x = torch.bitwise_right_shift(packed[:, :, None], shifts[None, None, :]).to(torch.int8)
    x = x.view(x.shape[0], -1)
    order = torch.arange(x.shape[-1], dtype=torch.long).view(-1, 32 // bits)[:, AWQ_REVERSE_ORDER].view(-1)
    x = x[:, order]
    return torch.bitwise_and(x.to(torch.int32), (1 << bits) - 1)


def dequantize(weights, qc):
    out = {}
    for name, arr in weights.items():
        if name.endswith(".qzeros") or name.endswith(".scales"):
            continue
        if not name.endswith(".qweight"):
            out[name] = arr
            continue
        module = name[: -len(".qweight")]
        q = unpack(torch.from_numpy(np.ascontiguousarray(arr, dtype=np.int32)))
        z = unpack(torch.from_numpy(np.ascontiguousarray(weights[module + ".qzeros"], dtype=np.int32)))
        s = torch.from_numpy(np.asarray(weights[module + ".scales"], dtype=np.float32))
        g = qc["group_size"] if qc["group_size"] > 0 else q.shape[0]
        w = (q - z.repeat_interleave(g, dim=0)).to(torch.float32) * s.repeat_interleave(g, dim=0)
        out[module + ".weight"] = w.t().contiguous().numpy()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", required=True)
    a = ap.parse_args()
    with open(os.path.join(a.model, "config.json")) as f:
        raw = json.load(f)
    qc = raw["quantization_config"]
    if qc["quant_method"] != "awq" or qc["bits"] != 4 or qc["version"] != "gemm" or not qc["zero_point"]:
        raise SystemExit(f"not an AutoAWQ GEMM checkpoint: {qc}")
    cfg = llama_ref.Config(raw)
    m = llama_ref.Model(cfg, dequantize(llama_ref.load_checkpoint(a.model), qc))
    seqs = [[int(t) for t in s.split(",")] for s in a.batch.split(";")]
    json.dump({"logits": [llama_ref.f32s(x) for x in m.logits_batch(seqs)]}, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
