#!/usr/bin/env python3
"""Reference data for qarl's model tests, from Hugging Face transformers (fp32, eager attention).

Builds three small random-init models (Llama with llama3 RoPE scaling, Qwen2 with q/k/v bias
saved in bf16, Qwen3 with per-head q/k norm and tied embeddings), saves them with
save_pretrained, and records per-token logprobs of fixed token sequences:
  * unquantized (and Llama also at temperature 0.7),
  * with K/V fake-quantized after RoPE (patched eager attention) in torch fp32 with ModelOpt's
    formulas (reference-spec 2.2 / 2.3): FP8 calibrated amax, FP8 constant amax (448), NVFP4.
The calibrated amax (max |K|, max |V| per layer over the sequences, from the unquantized
forward, as ModelOpt max calibration) is stored in <family>_kv_amax.safetensors as the 0-d
`model.layers.{i}.self_attn.{k,v}_bmm_quantizer._amax` tensors and in reference.json.

Run on a machine with torch + transformers: python3 make_reference.py OUTDIR
"""
import inspect
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import (LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM,
                          Qwen3Config, Qwen3ForCausalLM)
from transformers.models.llama import modeling_llama
from transformers.models.qwen2 import modeling_qwen2
from transformers.models.qwen3 import modeling_qwen3

torch.set_num_threads(4)
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
VOCAB = 256
SEQ_LENS = [2, 7, 19, 40]


def sequences(seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB, (n,), generator=g).tolist() for n in SEQ_LENS]


# ---- ModelOpt fake quant in torch fp32 (reference-spec 2.2, 2.3) -------------------------
def fake_fp8(x, amax):
    a = torch.tensor(float(amax), dtype=torch.float32)
    a = torch.where(a <= 2.0 ** -24, torch.ones_like(a), a)
    s = torch.tensor(448.0, dtype=torch.float32) / a
    inv = torch.tensor(1.0, dtype=torch.float32) / s
    y = (x.float() * s).clamp(-448.0, 448.0).to(torch.float8_e4m3fn).float() * inv
    return y


def fake_nvfp4(x, amax):
    shape = x.shape
    xb = x.float().reshape(-1, 16)
    gs = torch.tensor(float(amax), dtype=torch.float32) / torch.tensor(2688.0)
    gs = torch.where(gs > 0, gs, torch.tensor(1e-12))
    m = xb.abs().amax(dim=-1, keepdim=True)
    sr = m / (torch.tensor(6.0) * gs)
    s8 = sr.clamp(max=448.0).to(torch.float8_e4m3fn).float()
    S = s8 * gs
    r = xb.abs() / S
    c = lambda v: torch.full_like(r, v)
    q = c(6.0)
    # Ladder from the top so that the lowest matching rung wins (NaN falls through to 6).
    for thr, le, val in [(5.0, True, 4.0), (3.5, False, 3.0), (2.5, True, 2.0), (1.75, False, 1.5),
                         (1.25, True, 1.0), (0.75, False, 0.5), (0.25, True, 0.0)]:
        cond = (r <= thr) if le else (r < thr)
        q = torch.where(cond, c(val), q)
    y = torch.where(xb >= 0, q, -q) * S
    return y.reshape(shape)


# ---- attention patch: quantize key/value states (after RoPE, un-expanded KV heads) ----------
STATE = {"mode": None, "amax": {}, "calib": {}}
MODULES = [m for m in (modeling_llama, modeling_qwen2, modeling_qwen3)
           if hasattr(m, "eager_attention_forward")]
ORIG = {mod: mod.eager_attention_forward for mod in MODULES}


def make_patched(orig):
    def patched(module, query, key, value, *args, **kwargs):
        i = module.layer_idx
        mode = STATE["mode"]
        if mode == "calib":
            for w, t in (("k", key), ("v", value)):
                n = f"model.layers.{i}.self_attn.{w}_bmm_quantizer._amax"
                STATE["calib"][n] = max(STATE["calib"].get(n, 0.0), float(t.detach().abs().max()))
        elif mode is not None:
            ka = STATE["amax"][f"model.layers.{i}.self_attn.k_bmm_quantizer._amax"]
            va = STATE["amax"][f"model.layers.{i}.self_attn.v_bmm_quantizer._amax"]
            if mode == "fp8_calibrated":
                key, value = fake_fp8(key, ka), fake_fp8(value, va)
            elif mode == "fp8_constant":
                key, value = fake_fp8(key, 448.0), fake_fp8(value, 448.0)
            elif mode == "nvfp4":
                key, value = fake_nvfp4(key, ka), fake_nvfp4(value, va)
            elif mode == "nvfp4_half_amax":  # amax / 2: saturating blocks
                key, value = fake_nvfp4(key, 0.5 * ka), fake_nvfp4(value, 0.5 * va)
            else:
                raise ValueError(mode)
        return orig(module, query, key, value, *args, **kwargs)
    return patched


for mod in MODULES:
    mod.eager_attention_forward = make_patched(ORIG[mod])


def config(cls, rope_llama3=False, **kw):
    theta = 10000.0
    rope = {"rope_type": "default", "rope_theta": theta}
    if rope_llama3:
        rope = {"rope_type": "llama3", "rope_theta": theta, "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
    common = dict(vocab_size=VOCAB, max_position_embeddings=128, rms_norm_eps=1e-6,
                  hidden_act="silu", attn_implementation="eager")
    try:
        cfg = cls(rope_parameters=rope, **common, **kw)
        assert getattr(cfg, "rope_parameters", None), "no rope_parameters"
    except Exception as e:  # older transformers: rope_theta + rope_scaling
        print("rope_parameters not accepted:", repr(e))
        kw["rope_theta"] = theta
        if rope_llama3:
            kw["rope_scaling"] = {k: v for k, v in rope.items() if k != "rope_theta"}
        cfg = cls(**common, **kw)
    try:
        cfg._attn_implementation = "eager"
    except Exception as e:
        print("_attn_implementation:", repr(e))
    return cfg


def randomize(model, seed, bf16_values=False):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                v = 1.0 + 0.2 * torch.randn(p.shape, generator=g)
            elif name.endswith(".bias"):
                v = 0.2 * torch.randn(p.shape, generator=g)
            else:
                v = 0.12 * torch.randn(p.shape, generator=g)
            if bf16_values:
                v = v.to(torch.bfloat16).float()
            p.copy_(v)


def logprobs(model, seq, temperature=1.0):
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([seq])).logits[0].float()
        lp = torch.log_softmax(logits / temperature, dim=-1)
        return [float(lp[t, seq[t + 1]]) for t in range(len(seq) - 1)]


def build(family):
    if family == "llama":
        cfg = config(LlamaConfig, rope_llama3=True, hidden_size=64, intermediate_size=96,
                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                     head_dim=16, tie_word_embeddings=False, attention_bias=False)
        return LlamaForCausalLM(cfg), False
    if family == "qwen2":
        cfg = config(Qwen2Config, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                     num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
                     use_sliding_window=False)
        return Qwen2ForCausalLM(cfg), True
    if family == "qwen3":
        cfg = config(Qwen3Config, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                     tie_word_embeddings=True, attention_bias=False, use_sliding_window=False)
        return Qwen3ForCausalLM(cfg), False
    raise ValueError(family)


def main():
    ref = {"transformers": transformers.__version__, "torch": torch.__version__, "families": {}}
    for k, family in enumerate(["llama", "qwen2", "qwen3"]):
      try:
        torch.manual_seed(1000 + k)
        model, bf16 = build(family)
        model = model.float().eval()
        if hasattr(model, "set_attn_implementation"):
            try:
                model.set_attn_implementation("eager")
            except Exception as e:
                print("set_attn_implementation:", repr(e))
        randomize(model, 2000 + k, bf16_values=bf16)
        if family == "qwen3" and model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
            print("qwen3: tying lm_head by hand")
            model.lm_head.weight = model.model.embed_tokens.weight
        seqs = sequences(3000 + k)
        entry = {"sequences": seqs, "logprobs": {}}
        try:
            entry["inv_freq"] = [float(v) for v in model.model.rotary_emb.inv_freq]
        except Exception as e:
            print("inv_freq:", repr(e))
        STATE["mode"] = "calib"
        STATE["calib"] = {}
        entry["logprobs"]["none"] = [logprobs(model, s) for s in seqs]
        STATE["mode"] = None
        assert len(STATE["calib"]) == 2 * model.config.num_hidden_layers, "attention patch not hit"
        if family == "llama":
            entry["logprobs"]["none_t0.7"] = [logprobs(model, s, 0.7) for s in seqs]
        amax = dict(STATE["calib"])
        entry["amax"] = amax
        STATE["amax"] = amax
        for mode in ["fp8_calibrated", "fp8_constant", "nvfp4", "nvfp4_half_amax"]:
            STATE["mode"] = mode
            entry["logprobs"][mode] = [logprobs(model, s) for s in seqs]
        STATE["mode"] = None
        d = os.path.join(OUT, family)
        if bf16:
            model = model.to(torch.bfloat16)
        model.save_pretrained(d)
        print(family, "saved:", sorted(os.listdir(d)))
        save_file({n: torch.tensor(v, dtype=torch.float32) for n, v in amax.items()},
                  os.path.join(OUT, f"{family}_kv_amax.safetensors"))
        ref["families"][family] = entry
        print(family, {m: max(abs(a) for s in v for a in s) for m, v in entry["logprobs"].items()})
        print(family, "amax", amax)
        print(family, "config", json.dumps(json.load(open(os.path.join(d, "config.json")))))
      except Exception:
        import traceback
        traceback.print_exc()
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)


if __name__ == "__main__":
    main()
