#!/usr/bin/env python3
"""Reference safetensors files and HF checkpoints written by PyTorch/safetensors/transformers,
for tests/io/reference_files_test.cpp. Run on a machine with torch, safetensors, transformers:

    python3 tests/data/io/make_reference.py OUTDIR

It writes (all small, < 100 KB in total):
  dtypes.safetensors          F64 F32 BF16 F16 F8_E4M3 I64 I32 U8 tensors, 0-d bf16 amax,
                              metadata, via safetensors.torch.save_file
  empty.safetensors           no tensors, no metadata
  qwen3_sharded/              a tiny random Qwen3ForCausalLM saved with save_pretrained
                              (transformers' own sharding, index and config.json)
  llama_config/config.json    LlamaConfig with llama3 rope scaling, as transformers writes it
  qwen2_config/config.json    Qwen2Config, as transformers writes it
  expected.json               per file: sha256 of the file; per tensor: dtype, shape, sha256
                              of the raw bytes, and the values of small float tensors
"""
import hashlib
import inspect
import json
import os
import sys

import torch
import safetensors
from safetensors.torch import save_file, load_file
import transformers

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(20261129)

ST_NAME = {torch.float64: "F64", torch.float32: "F32", torch.bfloat16: "BF16",
           torch.float16: "F16", torch.float8_e4m3fn: "F8_E4M3", torch.int64: "I64",
           torch.int32: "I32", torch.uint8: "U8"}


def sha(b):
    return hashlib.sha256(b).hexdigest()


def raw_bytes(t):
    return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def describe(t):
    d = {"dtype": ST_NAME[t.dtype], "shape": list(t.shape), "sha256": sha(raw_bytes(t))}
    if t.dtype in (torch.float64, torch.float32, torch.bfloat16, torch.float16) and t.numel() <= 64:
        d["values"] = t.double().reshape(-1).tolist()  # exact: every value fits in a double
    return d


def file_entry(path, tensors):
    with open(path, "rb") as f:
        data = f.read()
    return {"sha256": sha(data), "size": len(data),
            "tensors": {k: describe(v) for k, v in tensors.items()}}


expected = {"versions": {"torch": torch.__version__, "safetensors": safetensors.__version__,
                         "transformers": transformers.__version__},
            "files": {}}

# 1. Every dtype qarl reads, written by safetensors.torch.save_file.
tensors = {
    "a.f64": torch.randn(3, dtype=torch.float64),
    "b.f32": torch.randn(3, 5),
    "c.bf16": torch.randn(4, 7).to(torch.bfloat16),
    "d.f16": torch.randn(2, 3).to(torch.float16),
    "e.f8": (torch.randn(16) * 4).to(torch.float8_e4m3fn),
    "f.i64": torch.tensor([-(2**40), -1, 0, 7, 2**62], dtype=torch.int64),
    "g.i32": torch.tensor([[1, -2], [2**31 - 1, -(2**31)]], dtype=torch.int32),
    "h.u8": torch.arange(250, 259, dtype=torch.int64).remainder(256).to(torch.uint8),
    "model.layers.0.self_attn.k_bmm_quantizer._amax": torch.tensor(3.140625, dtype=torch.bfloat16),
    "model.layers.0.self_attn.v_bmm_quantizer._amax": torch.tensor(0.123456789, dtype=torch.float32),
    "model.layers.0.mlp.up_proj.weight_quantizer._amax": torch.rand(3, 1).to(torch.bfloat16),
    "z.empty": torch.zeros(0, 4, dtype=torch.float32),
}
p = os.path.join(out, "dtypes.safetensors")
save_file(tensors, p, metadata={"format": "pt", "source": "make_reference.py", "note": "é \"q\""})
back = load_file(p)
assert all(torch.equal(back[k].view(torch.uint8) if back[k].dtype == torch.float8_e4m3fn else back[k],
                       v.view(torch.uint8) if v.dtype == torch.float8_e4m3fn else v)
           for k, v in tensors.items())
expected["files"]["dtypes.safetensors"] = file_entry(p, tensors)
expected["files"]["dtypes.safetensors"]["metadata"] = {"format": "pt", "source": "make_reference.py",
                                                        "note": "é \"q\""}

p = os.path.join(out, "empty.safetensors")
save_file({}, p)
expected["files"]["empty.safetensors"] = file_entry(p, {})

# 2. A tiny Qwen3 with transformers' own save_pretrained sharding and config.json.
cfg = transformers.Qwen3Config(vocab_size=64, hidden_size=16, intermediate_size=24,
                               num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                               head_dim=8, max_position_embeddings=128, tie_word_embeddings=True)
model = transformers.Qwen3ForCausalLM(cfg).to(torch.bfloat16)
d = os.path.join(out, "qwen3_sharded")
model.save_pretrained(d, max_shard_size="4KB")
with open(os.path.join(d, "model.safetensors.index.json")) as f:
    index = json.load(f)
sd = {}
for shard in sorted(set(index["weight_map"].values())):
    part = load_file(os.path.join(d, shard))
    expected["files"]["qwen3_sharded/" + shard] = file_entry(os.path.join(d, shard), part)
    sd.update(part)
expected["qwen3_sharded"] = {
    "num_tensors": len(sd), "shards": len(set(index["weight_map"].values())),
    "total_size": index["metadata"]["total_size"],
    "config": {"hidden_size": 16, "head_dim": 8, "num_key_value_heads": 1, "vocab_size": 64,
               "tie_word_embeddings": True},
}

# 3. Config files as this transformers version writes them (rope_parameters in v5).
llama3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 256}
common = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)
if "rope_parameters" in inspect.signature(transformers.LlamaConfig.__init__).parameters:
    lc = transformers.LlamaConfig(**common, rope_parameters=dict(llama3, rope_theta=500000.0))
    qc = transformers.Qwen2Config(**common, rope_parameters={"rope_type": "default",
                                                              "rope_theta": 1000000.0})
else:  # transformers 4
    lc = transformers.LlamaConfig(**common, rope_scaling=llama3, rope_theta=500000.0)
    qc = transformers.Qwen2Config(**common, rope_theta=1000000.0)
lc.save_pretrained(os.path.join(out, "llama_config"))
qc.save_pretrained(os.path.join(out, "qwen2_config"))
expected["configs"] = {
    "llama_config": {"model_type": "llama", "head_dim": 16, "rope_theta": 500000.0,
                     "rope_type": "llama3", "factor": 8.0,
                     "original_max_position_embeddings": 256},
    "qwen2_config": {"model_type": "qwen2", "head_dim": 16, "rope_theta": 1000000.0,
                     "rope_type": "default"},
}

with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump(expected, f, indent=1, sort_keys=True)
    f.write("\n")
print(json.dumps(expected["versions"]), "files:", sorted(expected["files"]))
