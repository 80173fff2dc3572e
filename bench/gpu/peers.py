#!/usr/bin/env python3
"""Peers of qarl's GPU benchmarks, measured in the same call on the same GPU (issue 9).

PyTorch eager and torch.compile FP8 / NVFP4 fake quant with ModelOpt's formulas
(reference-spec section 2) on the tensor qarl bench uses (bf16 [2^21, 128]), the device
copy bandwidth and the bf16 matmul rate (the limits), and optionally HF transformers
generate / train step on the Qwen3-0.6B shape with random weights (targets.md). Prints a
side-by-side table with qarl's figures (from `qarl bench --json`) and their ratios.

Usage: python3 bench/gpu/peers.py [--qarl-json F] [--out F.json] [--transformers]
"""
import argparse
import json
import statistics
import sys
import time

import torch


def median_ms(fn, warmup=3, reps=20):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


# ---- ModelOpt formulas in torch (fp32 arithmetic, as fake_e4m3fy / fp4_fake_quant_block) ----
def fp8_fake_quant(x, amax):
    a = amax.float()
    a = torch.where(a <= 2.0 ** -24, torch.ones_like(a), a)
    s = 448.0 / a
    inv = 1.0 / s
    q = (x.float() * s).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)
    return (q.float() * inv).to(x.dtype)


def nvfp4_fake_quant(x, amax):
    shape = x.shape
    xf = x.float().reshape(-1, 16)
    gs = amax.float() / 2688.0
    gs = torch.where(gs > 0, gs, torch.full_like(gs, 1e-12))
    m = xf.abs().amax(dim=-1, keepdim=True)
    sr = m / (6.0 * gs)
    s8 = sr.clamp(max=448.0).to(torch.float8_e4m3fn).float()
    S = s8 * gs
    r = xf.abs() / S
    q = torch.where(r <= 0.25, 0.0, torch.where(r < 0.75, 0.5, torch.where(r <= 1.25, 1.0,
        torch.where(r < 1.75, 1.5, torch.where(r <= 2.5, 2.0, torch.where(r < 3.5, 3.0,
        torch.where(r <= 5.0, 4.0, 6.0)))))))
    y = torch.where(xf >= 0, q, -q) * S
    return y.to(x.dtype).reshape(shape)


def measure_quant(rows, cols, results):
    dev = "cuda"
    x = torch.randn(rows, cols, device=dev, dtype=torch.bfloat16)
    amax = x.abs().amax().float()
    nbytes = x.numel() * x.element_size()
    moved = 2 * nbytes  # read x, write y
    y = torch.empty_like(x)
    ms = median_ms(lambda: y.copy_(x))
    results["copy_gbps"] = moved / ms / 1e6
    print(f"device copy: {ms:.3f} ms, {results['copy_gbps']:.0f} GB/s", flush=True)
    for name, fn in (("fp8", fp8_fake_quant), ("nvfp4", nvfp4_fake_quant)):
        ms = median_ms(lambda: fn(x, amax), warmup=2, reps=10)
        results[f"{name}_eager_gbps"] = moved / ms / 1e6
        print(f"{name} eager: {ms:.3f} ms, {moved / ms / 1e6:.0f} GB/s", flush=True)
        t = time.time()
        cfn = torch.compile(fn)
        ye = fn(x, amax)
        yc = cfn(x, amax)
        torch.cuda.synchronize()
        results[f"{name}_compile_s"] = time.time() - t
        same = torch.equal(ye.view(torch.int16), yc.view(torch.int16))
        results[f"{name}_compile_equals_eager"] = bool(same)
        ms = median_ms(lambda: cfn(x, amax), warmup=3, reps=20)
        results[f"{name}_compile_gbps"] = moved / ms / 1e6
        print(f"{name} torch.compile: {ms:.3f} ms, {moved / ms / 1e6:.0f} GB/s "
              f"(compile {results[f'{name}_compile_s']:.1f} s, bitwise equal to eager: {same})",
              flush=True)
        del ye, yc, cfn
    del x, y
    torch.cuda.empty_cache()


def measure_matmul(results, n=8192):
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    ms = median_ms(lambda: a @ b, warmup=3, reps=10)
    results["matmul_tflops"] = 2 * n ** 3 / ms / 1e9
    print(f"bf16 matmul {n}^3: {ms:.3f} ms, {results['matmul_tflops']:.0f} TFLOP/s", flush=True)


def measure_transformers(results):
    from transformers import Qwen3Config, Qwen3ForCausalLM
    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=151936, hidden_size=1024, intermediate_size=3072,
                      num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                      head_dim=128, max_position_embeddings=40960, rope_theta=1000000.0,
                      rms_norm_eps=1e-6, tie_word_embeddings=True)
    t = time.time()
    with torch.device("cuda"):
        model = Qwen3ForCausalLM(cfg).to(torch.bfloat16)
    nparams = sum(p.numel() for p in model.parameters())
    results["hf_params"] = nparams
    print(f"transformers Qwen3-0.6B shape: {nparams / 1e6:.0f} M params, init {time.time() - t:.1f} s",
          flush=True)
    model.eval()
    for batch in (1, 64):
        ids = torch.randint(0, cfg.vocab_size, (batch, 128), device="cuda")
        kw = dict(max_new_tokens=128, min_new_tokens=128, do_sample=False, pad_token_id=0)
        with torch.no_grad():
            model.generate(ids, max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=0)
            torch.cuda.synchronize()
            t = time.time()
            out = model.generate(ids, **kw)
            torch.cuda.synchronize()
            dt = time.time() - t
        new = (out.shape[1] - 128) * batch
        results[f"hf_generate_b{batch}_tps"] = new / dt
        print(f"transformers generate batch {batch}: {new} tokens in {dt:.2f} s, {new / dt:.1f} tokens/s",
              flush=True)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    ids = torch.randint(0, cfg.vocab_size, (8, 1024), device="cuda")

    def step():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    s = median_step_s(step)
    results["hf_train_step_s"] = s
    results["hf_train_tps"] = 8 * 1024 / s
    results["hf_train_tflops"] = 6 * nparams * 8 * 1024 / s / 1e12
    print(f"transformers train step 8x1024: {s:.3f} s, {8 * 1024 / s / 1e3:.1f} k tokens/s, "
          f"{results['hf_train_tflops']:.0f} TFLOP/s (6 N T)", flush=True)
    del model, opt
    torch.cuda.empty_cache()
    measure_transformers_amp(cfg, ids, nparams, results)


def median_step_s(step, warmup=2, runs=5):
    """Median wall time of `step` (synchronized), after `warmup` untimed calls."""
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        t = time.time()
        step()
        torch.cuda.synchronize()
        times.append(time.time() - t)
    return statistics.median(times)


def measure_transformers_amp(cfg, ids, nparams, results):
    """The same step in qarl's precision recipe: fp32 master weights, gradients and AdamW
    state, bf16 products under autocast (qarl: fp32 masters and moments, bf16 working copies
    and activations). The bf16-parameter step above is the headline peer (less work per
    step); this one is the like-for-like one."""
    from transformers import Qwen3ForCausalLM
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen3ForCausalLM(cfg)  # fp32 parameters
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    s = median_step_s(step)
    results["hf_train_amp_step_s"] = s
    results["hf_train_amp_tps"] = 8 * 1024 / s
    results["hf_train_amp_tflops"] = 6 * nparams * 8 * 1024 / s / 1e12
    print(f"transformers train step 8x1024, fp32 masters + bf16 autocast: {s:.3f} s, "
          f"{8 * 1024 / s / 1e3:.1f} k tokens/s", flush=True)
    del model, opt
    torch.cuda.empty_cache()


def qarl_figures(path):
    """{(name, dtype): record} from `qarl bench --json` (a JSON list of records)."""
    out = {}
    if not path:
        return out
    try:
        with open(path) as f:
            for rec in json.load(f):
                if rec.get("backend") == "cuda":
                    out[(rec["name"], rec.get("dtype", ""))] = rec
    except (OSError, ValueError) as e:
        print(f"peers: could not read qarl figures from {path}: {e}", flush=True)
    return out


def fmt(v, digits=0):
    return "-" if v is None else f"{v:,.{digits}f}"


def ratio(a, b):
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qarl-json")
    ap.add_argument("--out")
    ap.add_argument("--rows", type=int, default=1 << 21)
    ap.add_argument("--cols", type=int, default=128)
    ap.add_argument("--transformers", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("peers: no CUDA device", file=sys.stderr)
        return 1
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
               "shape": [args.rows, args.cols]}
    measure_quant(args.rows, args.cols, results)
    measure_matmul(results)
    if args.transformers:
        try:
            measure_transformers(results)
        except Exception as e:  # a peer failing must not hide qarl's figures
            print(f"peers: transformers peers failed: {type(e).__name__}: {e}", flush=True)
            results["hf_error"] = str(e)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)

    q = qarl_figures(args.qarl_json)
    g = lambda name: (q.get((name, "BF16")) or {}).get("gbps")
    q_copy = g("copy")
    copy = results["copy_gbps"]
    print()
    print(f"=== side by side: {results['device']}, torch {results['torch']}, "
          f"bf16 [{args.rows}, {args.cols}], GB/s = bytes read + written per second ===")
    hdr = f"{'figure':34} | {'qarl':>9} | {'torch eager':>11} | {'torch.compile':>13} | {'qarl/compile':>12} | {'qarl % copy':>11} | {'compile % copy':>14}"
    print(hdr)
    print("-" * len(hdr))
    print(f"{'device copy (GB/s)':34} | {fmt(q_copy):>9} | {fmt(copy):>11} | {'-':>13} | {'-':>12} | {'-':>11} | {'-':>14}")
    for name, label in (("fp8", "FP8 fake quant (GB/s)"), ("nvfp4", "NVFP4 fake quant (GB/s)")):
        qv = g(f"fake_quant_{name}")
        cv = results[f"{name}_compile_gbps"]
        lim = q_copy or copy
        qpct = "-" if qv is None else f"{100 * qv / lim:.0f}%"
        print(f"{label:34} | {fmt(qv):>9} | {fmt(results[f'{name}_eager_gbps']):>11} | {fmt(cv):>13} | "
              f"{ratio(qv, cv):>12} | {qpct:>11} | {100 * cv / copy:>13.0f}%")
    print(f"{'bf16 matmul 8192^3 (TFLOP/s)':34} | {'-':>9} | {fmt(results['matmul_tflops']):>11} | {'-':>13} | {'-':>12} | {'-':>11} | {'-':>14}")
    for key, label, d in (("hf_generate_b1_tps", "HF generate b1 (tokens/s)", 1),
                          ("hf_generate_b64_tps", "HF generate b64 (tokens/s)", 0),
                          ("hf_train_tps", "HF train step 8x1024 (tokens/s)", 0),
                          ("hf_train_amp_tps", "HF train step, fp32 + autocast", 0),
                          ("hf_train_tflops", "HF train step (TFLOP/s, 6NT)", 0)):
        if key in results:
            print(f"{label:34} | {'-':>9} | {fmt(results[key], d):>11} | {'-':>13} | {'-':>12} | {'-':>11} | {'-':>14}")
    model_table(q, results, copy, q_copy)
    return 0


def model_table(q, results, copy, q_copy):
    """qarl's GPU model (qarl bench case `model`) against transformers on the same shape."""
    rec = lambda name: q.get((name, "BF16"))
    if not any(rec(f"model_decode_b1_{m}") for m in ("fast", "exact")):
        return
    peak = results.get("matmul_tflops")
    lim = q_copy or copy
    print()
    print("=== GPU model vs transformers, Qwen3-0.6B shape, random init, bf16 (same machine, same run) ===")
    hdr = f"{'figure':40} | {'qarl fast':>10} | {'qarl exact':>10} | {'transformers':>12} | {'fast/HF':>7} | {'exact/HF':>8} | {'exact/fast':>10} | {'roofline (fast)':>15}"
    print(hdr)
    print("-" * len(hdr))
    for b in (1, 64):
        f, e = rec(f"model_decode_b{b}_fast"), rec(f"model_decode_b{b}_exact")
        fv = f and f.get("tokens_per_s")
        ev = e and e.get("tokens_per_s")
        hv = results.get(f"hf_generate_b{b}_tps")
        roof = "-" if not f else f"{100 * f['gbps'] / lim:.0f}% of copy"
        print(f"{f'generate b{b}, 128+128 (tokens/s)':40} | {fmt(fv, 1):>10} | {fmt(ev, 1):>10} | {fmt(hv, 1):>12} | "
              f"{ratio(fv, hv):>7} | {ratio(ev, hv):>8} | {ratio(ev, fv):>10} | {roof:>15}")
        fs = f and f.get("decode_tokens_per_s")
        es = e and e.get("decode_tokens_per_s")
        print(f"{f'  decode steps only b{b} (tokens/s)':40} | {fmt(fs, 1):>10} | {fmt(es, 1):>10} | {'-':>12} | "
              f"{'-':>7} | {'-':>8} | {ratio(es, fs):>10} | {'weights/step':>15}")
    f, e = rec("model_train_fast"), rec("model_train_exact")
    fv = f and f.get("tokens_per_s")
    ev = e and e.get("tokens_per_s")
    hv = results.get("hf_train_tps")
    roof = "-" if not f or not peak else f"{100 * f['tflops'] / peak:.0f}% of matmul"
    print(f"{'train step 8x1024 (tokens/s)':40} | {fmt(fv):>10} | {fmt(ev):>10} | {fmt(hv):>12} | "
          f"{ratio(fv, hv):>7} | {ratio(ev, hv):>8} | {ratio(ev, fv):>10} | {roof:>15}")
    hv = results.get("hf_train_amp_tps")
    if hv is not None:
        print(f"{'  HF fp32 masters + bf16 autocast':40} | {fmt(fv):>10} | {fmt(ev):>10} | {fmt(hv):>12} | "
              f"{ratio(fv, hv):>7} | {ratio(ev, hv):>8} | {'-':>10} | {'like for like':>15}")
    ft = f and f.get("tflops")
    et = e and e.get("tflops")
    print(f"{'train step (TFLOP/s at 6 N T)':40} | {fmt(ft):>10} | {fmt(et):>10} | {fmt(results.get('hf_train_tflops')):>12} | "
          f"{'-':>7} | {'-':>8} | {'-':>10} | {'-':>15}")


if __name__ == "__main__":
    sys.exit(main())
