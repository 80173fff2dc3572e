#!/usr/bin/env python3
"""Golden values for qarl's quantizers, computed with PyTorch (run on the H200 machine).

The ModelOpt formulas (reference-spec 2.2/2.3; ModelOpt HEAD fp4_kernel_hopper.py +
common/nvfp4_quant.py for NVFP4, cuda_ext_fp8.fake_e4m3fy / _fp8_eager for FP8) written in
torch ops, in fp32, evaluated on CUDA and on CPU. E4M3 rounding is PyTorch's own
float8_e4m3fn conversion (clamped to +-448 first, as ModelOpt's _fp8_eager does, which
equals __NV_SATFINITE).

Writes golden.safetensors:
  e4m3.decoded            [256] f32  every code decoded (torch uint8 -> float8_e4m3fn view)
  e4m3.mid.x              [M] f32    midpoints between neighbouring codes, +-1 ulp, saturation
  e4m3.mid.code           [M] u8     their E4M3 codes
  input.{f32,bf16}        [37,160]   random inputs (with zero / outlier / equal / tiny / tie blocks)
  amax                    [K] f32    the amax values used
  fp8.{dtype}.{k}         output of FP8 fake quant with amax[k] (CUDA)
  nvfp4.{dtype}.{k}       output of NVFP4 fake quant with amax[k] (CUDA)
metadata: cuda_cpu_agree ("true"/"false" and details), torch version, device name.
Usage: python3 make_golden.py OUT_DIR
"""
import json
import math
import struct
import sys

import zlib

import torch
from safetensors.torch import save_file

try:
    import triton
    import triton.language as tl
    TRITON = None
except Exception as e:  # noqa: BLE001
    triton = None
    TRITON = repr(e)

if triton is not None:
    @triton.jit
    def _ladder(r):
        return tl.where(r <= 0.25, 0.0, tl.where(r < 0.75, 0.5, tl.where(r <= 1.25, 1.0, tl.where(
            r < 1.75, 1.5, tl.where(r <= 2.5, 2.0, tl.where(r < 3.5, 3.0, tl.where(r <= 5.0, 4.0, 6.0)))))))

    @triton.jit
    def _nvfp4_kernel(x_ptr, y_ptr, gs_ptr, n_blocks, OUT: tl.constexpr, BPP: tl.constexpr):
        # The operations of ModelOpt HEAD fp4_kernel_hopper.fp4_fake_quant_kernel (+ common/
        # nvfp4_quant.fp8_quantize_scale / fp4_round_magnitude), on rows of one block.
        pid = tl.program_id(0)
        rows = pid * BPP + tl.arange(0, BPP)
        cols = tl.arange(0, 16)
        offs = rows[:, None] * 16 + cols[None, :]
        mask = rows[:, None] < n_blocks
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        gs = tl.load(gs_ptr).to(tl.float32)
        gs = tl.where(gs > 0.0, gs, 1e-12)
        xa = tl.abs(x)
        bm = tl.max(xa, axis=1, keep_dims=True)
        sr = bm / (6.0 * gs)
        sr = tl.minimum(sr, 448.0)
        S = sr.to(tl.float8e4nv).to(tl.float32) * gs
        r = xa / S
        q = _ladder(r)
        v = q * S
        v = tl.where(x >= 0, v, -v)
        tl.store(y_ptr + offs, v.to(OUT), mask=mask)

    @triton.jit
    def _div_kernel(a_ptr, b_ptr, q_ptr, r_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = offs < n
        a = tl.load(a_ptr + offs, mask=m, other=1.0)
        b = tl.load(b_ptr + offs, mask=m, other=1.0)
        tl.store(q_ptr + offs, a / b, mask=m)
        tl.store(r_ptr + offs, 1.0 / b, mask=m)


def triton_nvfp4(x, amax):
    xc = x.contiguous().cuda()
    y = torch.empty_like(xc)
    gs = torch.tensor(amax, dtype=torch.float32, device="cuda") / (6.0 * 448.0)
    nb = xc.numel() // 16
    out = tl.bfloat16 if x.dtype == torch.bfloat16 else tl.float32
    _nvfp4_kernel[(triton.cdiv(nb, 16),)](xc, y, gs, nb, OUT=out, BPP=16)
    return y.cpu()


def triton_division_study(meta, out_dir):
    """Is Triton's fp32 `/` IEEE (div.rn) or div.full (= a * rcp.approx(b))?"""
    g = torch.Generator(device="cuda").manual_seed(7)
    n = 1 << 22
    a = torch.exp(torch.randn(n, device="cuda", generator=g) * 3)
    b = torch.exp(torch.randn(n, device="cuda", generator=g) * 3)
    q = torch.empty_like(a)
    r = torch.empty_like(a)
    _div_kernel[(triton.cdiv(n, 1024),)](a, b, q, r, n, BLOCK=1024)
    ieee = a / b
    model = a * r
    meta["triton_div_vs_ieee_mismatch"] = str(int((q != ieee).sum()))
    meta["triton_div_vs_a_times_rcp_mismatch"] = str(int((q != model).sum()))
    meta["triton_rcp_vs_ieee_mismatch"] = str(int((r != 1.0 / b).sum()))
    meta["triton_div_samples"] = str(n)
    # The example: 4.6875 / 0.9375 (exactly 5, an E2M1 tie).
    a1 = torch.tensor([4.6875], device="cuda"); b1 = torch.tensor([0.9375], device="cuda")
    q1 = torch.empty_like(a1); r1 = torch.empty_like(a1)
    _div_kernel[(1,)](a1, b1, q1, r1, 1, BLOCK=16)
    meta["triton_4.6875_div_0.9375"] = repr(float(q1))
    # rcp table for every mantissa in [1, 2): delta (int) to the IEEE reciprocal, zlib'ed.
    m = torch.arange(1 << 23, dtype=torch.int32, device="cuda") | 0x3F800000
    bb = m.view(torch.float32)
    rr = torch.empty_like(bb); qq = torch.empty_like(bb)
    ones = torch.ones_like(bb)
    _div_kernel[(triton.cdiv(1 << 23, 1024),)](ones, bb, qq, rr, 1 << 23, BLOCK=1024)
    delta = (rr.view(torch.int32) - (1.0 / bb).view(torch.int32)).cpu()
    meta["triton_rcp_delta_min_max"] = f"{int(delta.min())},{int(delta.max())}"
    meta["triton_rcp_delta_nonzero"] = str(int((delta != 0).sum()))
    if int(delta.abs().max()) < 127:
        blob = zlib.compress(delta.to(torch.int8).numpy().tobytes(), 9)
        with open(f"{out_dir}/triton_rcp_delta_1_2.int8.zlib", "wb") as f:
            f.write(blob)
        meta["triton_rcp_table_bytes"] = str(len(blob))
    # Scaling check: rcp(b * 2^k) == rcp(b) * 2^-k for a sample of k.
    bad = 0
    for k in (-20, -3, -1, 1, 3, 20):
        bk = bb[::977] * (2.0 ** k)
        rk = torch.empty_like(bk); qk = torch.empty_like(bk)
        _div_kernel[(triton.cdiv(bk.numel(), 1024),)](torch.ones_like(bk), bk, qk, rk, bk.numel(), BLOCK=1024)
        bad += int((rk != rr[::977] * (2.0 ** -k)).sum())
    meta["triton_rcp_scaling_mismatch"] = str(bad)

F8 = torch.float8_e4m3fn


def fp8_fake_quant(x, amax):
    """ModelOpt's CUDA extension fake_e4m3fy: ATen C++ `448.f / safe_amax` is
    empty_like(a).fill_(448).div_(a), a true fp32 division; likewise `1.f / scale`."""
    a = torch.tensor(amax, dtype=torch.float32, device=x.device)
    a = torch.where(a <= 2.0**-24, torch.ones_like(a), a)
    s = torch.full_like(a, 448.0) / a      # fp32 true division
    inv = torch.ones_like(s) / s           # fp32, NOT a/448
    q = torch.clamp(x.float() * s, -448.0, 448.0).to(F8).float()
    return (q * inv).to(x.dtype)


def fp8_fake_quant_eager(x, amax):
    """ModelOpt's _fp8_eager (CPU tensors or no CUDA extension), literally: Python
    `448.0 / safe_amax` is safe_amax.reciprocal() * 448."""
    dtype = x.dtype
    amax = torch.tensor(amax, dtype=torch.float32, device=x.device)
    safe_amax = torch.where(amax <= 1.0 / (1 << 24), torch.ones_like(amax), amax)
    scale = 448.0 / safe_amax
    scale_inv = 1 / scale
    y = (x.to(torch.float32) * scale).clamp(min=-448.0, max=448.0).to(F8)
    return (y.to(torch.float32) * scale_inv).to(dtype)


def fp4_round_magnitude(r):
    """ModelOpt's ladder (common/nvfp4_quant.py), outermost comparison first."""
    c = lambda v: torch.full_like(r, v)
    out = c(6.0)
    for thr, val, inclusive in reversed([(0.25, 0.0, True), (0.75, 0.5, False), (1.25, 1.0, True),
                                          (1.75, 1.5, False), (2.5, 2.0, True), (3.5, 3.0, False),
                                          (5.0, 4.0, True)]):
        out = torch.where(r <= thr if inclusive else r < thr, c(val), out)
    return out


def nvfp4_fake_quant(x, amax):
    shape = x.shape
    xf = x.float().reshape(-1, 16)
    # ModelOpt (fp4_fake_quant_block): global_amax.float() / (6.0 * 448.0), amax a CUDA tensor.
    # On CUDA, PyTorch divides by a CPU scalar as a * (1/b); on CPU it divides. Kept literal.
    gs = torch.tensor(amax, dtype=torch.float32, device=x.device) / (6.0 * 448.0)
    gs = torch.where(gs > 0.0, gs, torch.tensor(1e-12, dtype=torch.float32, device=x.device))
    m = xf.abs().amax(dim=1, keepdim=True)
    sr = m / (6.0 * gs)           # 6*gs first (fp8_quantize_scale)
    sr = torch.minimum(sr, torch.tensor(448.0, device=x.device))
    S = sr.to(F8).float() * gs
    q = fp4_round_magnitude(xf.abs() / S)   # no 1e-5 guard (HEAD): S == 0 -> 6 * 0 = 0
    y = q * S
    y = torch.where(xf >= 0, y, -y)
    return y.reshape(shape).to(x.dtype)


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


def nextafter32(v, direction):
    b = struct.unpack("<I", struct.pack("<f", v))[0]
    if v == 0.0:
        return struct.unpack("<f", struct.pack("<I", 1))[0] if direction > 0 else -struct.unpack("<f", struct.pack("<I", 1))[0]
    b = b + 1 if (direction > 0) == (v > 0) else b - 1
    return struct.unpack("<f", struct.pack("<I", b))[0]


def midpoint_table(decoded):
    vals = []
    pos = [float(decoded[c]) for c in range(0, 0x7f)]
    for c in range(0, 0x7e):
        mid = (pos[c] + pos[c + 1]) / 2.0  # exact in fp32
        for v in (mid, nextafter32(mid, -1), nextafter32(mid, +1)):
            vals += [v, -v]
    vals += [448.0, 449.0, 464.0, 479.0, 480.0, 1e6, 3e38, math.inf, -math.inf, -1e6, 0.0, -0.0,
             2.0**-10, 2.0**-11, 1e-30, -1e-30, 2.0**-9 * 1.5]
    return torch.tensor(vals, dtype=torch.float32)


def make_input(gen):
    x = torch.randn(37, 160, generator=gen, dtype=torch.float32)
    scales = torch.exp(torch.randn(37, 1, generator=gen) * 2.0)
    x = x * scales
    x[0, 0:16] = 0.0                                   # all-zero block
    x[1, 16:32] = 0.01; x[1, 20] = 50.0                # one outlier
    x[2, 32:48] = -0.7                                 # all equal
    x[3, 48:64] = 1e-9 * torch.sign(torch.randn(16, generator=gen))   # S == 0 for big amax
    x[4, 0:16] = torch.arange(1, 17, dtype=torch.float32) * 2e-6      # tiny S
    # E2M1 tie points for gs = 1 (amax 2688), block max 6 -> S = 1 exactly
    x[5, 0:16] = torch.tensor([6.0, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0,
                               -0.25, -0.75, -1.25, -1.75, -2.5, -3.5, -5.0, -6.0])
    x[6, 16:32] = torch.tensor([6.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.5,
                                0.2, 0.3, 0.7, 0.8, 1.2, 1.3, 4.9, -0.0])
    x[7, 0:16] = 1e5                                   # beyond amax
    # E2M1 ties at block scales S = s8 (gs = 1 for amax 2688) whose Triton reciprocal is not
    # the IEEE one: |x|/S lands exactly on a ladder threshold in IEEE but may not in Triton.
    s8s = [0.9375, 1.125, 1.375, 0.6875, 1.625, 1.875, 3.5, 0.8125, 2.75, 0.5625,
           1.0625, 1.1875, 1.3125, 1.4375, 1.5625, 1.6875, 1.8125, 0.078125, 0.0234375, 13.0,
           26.0, 52.0, 104.0, 208.0, 416.0, 0.4375, 0.3125, 0.21875, 0.15625, 0.109375,
           0.09375, 0.046875, 0.01953125, 7.5, 9.0, 11.0, 15.0, 30.0, 60.0, 120.0]
    ties = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]
    for i, s8 in enumerate(s8s):
        block = [6.0 * s8] + [t * s8 for t in ties] + [-t * s8 for t in ties] + [-0.0]
        r, c = 8 + i // 10, (i % 10) * 16
        x[r, c:c + 16] = torch.tensor(block, dtype=torch.float32)
    return x


def main():
    out = sys.argv[1]
    gen = torch.Generator().manual_seed(20261129)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    tensors, meta, disagree = {}, {}, []

    codes = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    dec = {d: codes.to(d).view(F8).float().cpu() for d in devices}
    tensors["e4m3.decoded"] = dec[devices[-1]]
    mid = midpoint_table(dec["cpu"])
    enc = {d: torch.clamp(mid.to(d), -448.0, 448.0).to(F8).view(torch.uint8).cpu() for d in devices}
    tensors["e4m3.mid.x"] = mid
    tensors["e4m3.mid.code"] = enc[devices[-1]]
    for d in devices[1:]:
        if not torch.equal(dec[d].view(torch.int32), dec["cpu"].view(torch.int32)):
            disagree.append("e4m3.decoded")
        if not torch.equal(enc[d], enc["cpu"]):
            disagree.append("e4m3.mid.code")

    x32 = make_input(gen)
    inputs = {"f32": x32, "bf16": x32.to(torch.bfloat16)}
    amaxes = [0.0, 2.0**-24, 2.0**-100, 0.0009765625, 0.375, 3.0, 448.0, 2688.0, 10000.0]
    tensors["amax"] = torch.tensor(amaxes, dtype=torch.float32)
    for name, x in inputs.items():
        tensors["input." + name] = x.contiguous()
        for k, a in enumerate(amaxes):
            a32 = f32(a)
            for fmt, fn in (("fp8", fp8_fake_quant), ("nvfp4", nvfp4_fake_quant)):
                res = {d: fn(x.to(d), a32).cpu() for d in devices}
                key = f"{fmt}.{name}.{k}"
                tensors[key] = res[devices[-1]].contiguous()
                for d in devices[1:]:
                    bits = torch.int32 if x.dtype == torch.float32 else torch.int16
                    if not torch.equal(res[d].view(bits), res["cpu"].view(bits)):
                        disagree.append(key)
                        tensors[key + ".cpu"] = res["cpu"].contiguous()
            # ModelOpt's eager FP8 path vs its CUDA extension: how often do they differ?
            bits = torch.int32 if x.dtype == torch.float32 else torch.int16
            eager = fp8_fake_quant_eager(x.to(devices[-1]), a32).cpu()
            ne = int((eager.view(bits) != tensors[f"fp8.{name}.{k}"].view(bits)).sum())
            meta[f"fp8_eager_vs_ext_mismatch.{name}.{k}"] = str(ne)
            if ne:
                tensors[f"fp8eager.{name}.{k}"] = eager.contiguous()

    if "cuda" in devices:
        # How does PyTorch compute ModelOpt's gs = amax.float() / 2688 on each device?
        g2 = torch.Generator().manual_seed(3)
        av = torch.exp(torch.randn(1 << 20, generator=g2) * 4).float()
        cuda_gs = (av.cuda() / (6.0 * 448.0)).cpu()
        cpu_gs = av / (6.0 * 448.0)
        true_div = av / torch.full_like(av, 2688.0)
        recip_mul = av * torch.full_like(av, float(torch.tensor(1.0 / 2688.0, dtype=torch.float32)))
        meta["gs_cuda_eq_truediv"] = str(int((cuda_gs == true_div).sum()))
        meta["gs_cuda_eq_recip_mul"] = str(int((cuda_gs == recip_mul).sum()))
        meta["gs_cpu_eq_truediv"] = str(int((cpu_gs == true_div).sum()))
        meta["gs_samples"] = str(av.numel())
        if triton is None:
            meta["triton"] = "unavailable: " + str(TRITON)
        else:
            meta["triton"] = triton.__version__
            try:
                tri_dis = []
                for name, x in inputs.items():
                    for k, a in enumerate(amaxes):
                        key = f"nvfp4.{name}.{k}"
                        y = triton_nvfp4(x, f32(a))
                        bits = torch.int32 if x.dtype == torch.float32 else torch.int16
                        if not torch.equal(y.view(bits), tensors[key].view(bits)):
                            nbad = int((y.view(bits) != tensors[key].view(bits)).sum())
                            tri_dis.append(f"{key}:{nbad}")
                            tensors[key + ".triton"] = y.contiguous()
                meta["triton_vs_torch_cuda_nvfp4"] = json.dumps(tri_dis)
                triton_division_study(meta, out)
            except Exception as e:  # noqa: BLE001
                meta["triton_error"] = repr(e)[:2000]
    meta["devices"] = ",".join(devices)
    meta["device_name"] = torch.cuda.get_device_name(0) if "cuda" in devices else "cpu"
    meta["torch"] = torch.__version__
    meta["cuda_cpu_agree"] = "true" if not disagree else "false"
    meta["cuda_cpu_disagree"] = json.dumps(disagree)
    save_file(tensors, f"{out}/golden.safetensors", metadata=meta)
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
