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

import torch
from safetensors.torch import save_file

F8 = torch.float8_e4m3fn


def fp8_fake_quant(x, amax):
    a = torch.tensor(amax, dtype=torch.float32, device=x.device)
    a = torch.where(a <= 2.0**-24, torch.ones_like(a), a)
    s = 448.0 / a                 # fp32
    inv = 1.0 / s                 # fp32, NOT a/448
    q = torch.clamp(x.float() * s, -448.0, 448.0).to(F8).float()
    return (q * inv).to(x.dtype)


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

    meta["devices"] = ",".join(devices)
    meta["device_name"] = torch.cuda.get_device_name(0) if "cuda" in devices else "cpu"
    meta["torch"] = torch.__version__
    meta["cuda_cpu_agree"] = "true" if not disagree else "false"
    meta["cuda_cpu_disagree"] = json.dumps(disagree)
    save_file(tensors, f"{out}/golden.safetensors", metadata=meta)
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
