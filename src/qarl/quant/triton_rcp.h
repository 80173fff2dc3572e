// Triton's fp32 division, bit for bit. ModelOpt's NVFP4 fake-quant kernel is Triton, and
// Triton lowers fp32 `a / b` to PTX div.full.f32, which is NOT IEEE division: measured on an
// H200 (Triton 3.6.0, tests/data/quant/make_golden.py), div.full(a, b) == fl(a * rcp(b))
// on 4M random pairs, where rcp = rcp.approx.f32 differs from the IEEE 1/b by -1, 0 or +1
// ulp depending only on b's mantissa (13% of mantissas), and scales exactly with b's
// exponent. The 2^23-entry table of those deltas is embedded (triton_rcp_table.cpp, zlib).
// It answers reference-spec section 9 Q2: with IEEE division instead, about 1-3% of NVFP4
// outputs differ from ModelOpt's.
#pragma once

namespace qarl::quant {

// rcp.approx.f32(b) as sm_90 computes it, for normal |b| in [2^-126, 2^126); 0 -> +-inf,
// inf -> +-0, NaN -> NaN; outside that range it falls back to the IEEE 1/b (never reached
// by NVFP4 scales, whose magnitudes lie in [2^-50, 2^126)).
float triton_rcp(float b);
// Triton's fp32 `a / b` (div.full.f32).
inline float triton_div(float a, float b) { return a * triton_rcp(b); }

}  // namespace qarl::quant
