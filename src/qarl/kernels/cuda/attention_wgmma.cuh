// Shared-memory layout and wgmma forms of the head_dim-128 attention kernels on wgmma
// (attention_backward_wgmma.cu, attention_forward_wgmma.cu). A [rows x 128] bf16 matrix
// (rows of head_dim, e.g. a Q tile or a K block) is stored as two 64-column blocks of
// [rows][128 bytes] in the 128-byte swizzle layout (wgmma_ptx.cuh), the blocks rows * 128
// bytes apart. Read K-major (head_dim as the product's k: S = Q K^T) through desc_sw128 at
// block (k16 step / 4), + 32 bytes per step; read N-major (head_dim as the product's n:
// O += P V, dV += P^T dO) through desc_nmajor at row 16 * step. The forms, their descriptor
// strides and their equality with mma.sync were checked on the H200 (bench/gpu/
// wgmma_probe.cu, wgmma_forms_probe.cu).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "qarl/kernels/cuda/wgmma_ptx.cuh"

namespace qarl::kernels::gpu::attn::wg {

inline constexpr int kD = 128;

// Byte offset of 16-byte chunk `chunk` (head_dim 8 * chunk ..; 0..15) of row `row` in a
// matrix of kRows rows.
template <int kRows>
__device__ __forceinline__ int swizzled(int row, int chunk) {
  return (chunk >> 3) * (kRows * 128) + row * 128 + (((chunk & 7) ^ (row & 7)) << 4);
}

// K-major operand, k16 step kk (head_dim 16 kk ..) of the matrix at `base` (kRows rows),
// starting at row `row0` (a multiple of 8).
template <int kRows>
__device__ __forceinline__ uint64_t desc_kmajor(const uint8_t* base, int row0, int kk) {
  return wgmma::desc_sw128(base + (kk >> 2) * (kRows * 128) + row0 * 128 + (kk & 3) * 32);
}

#if QARL_HAS_WGMMA
// N-major B operand: rows row0 .. row0 + 15 of the matrix at `base` (kRows rows), n spanning
// both 64-column blocks (leading byte offset: the block stride; stride byte offset: 8 rows).
template <int kRows>
__device__ __forceinline__ uint64_t desc_nmajor(const uint8_t* base, int row0) {
  const uint64_t addr = static_cast<uint64_t>(__cvta_generic_to_shared(base + row0 * 128));
  return ((addr & 0x3FFFF) >> 4) | (uint64_t((kRows * 128) >> 4) << 16) | (uint64_t(1024 >> 4) << 32) |
         (uint64_t(1) << 62);
}

// D(64 x 128) += A(64 x 16, registers: mma.sync's A fragment per warp) B(16 x 128, N-major).
__device__ __forceinline__ void wgmma_rs_n128(float (&d)[64], const uint32_t (&a)[4], uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "{%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]),
        "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]),
        "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]),
        "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]),
        "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]),
        "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]),
        "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),
        "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b));
}
#else
template <int kRows>
__device__ __forceinline__ uint64_t desc_nmajor(const uint8_t*, int) { __trap(); return 0; }
__device__ __forceinline__ void wgmma_rs_n128(float (&)[64], const uint32_t (&)[4], uint64_t) { __trap(); }
#endif


}  // namespace qarl::kernels::gpu::attn::wg
