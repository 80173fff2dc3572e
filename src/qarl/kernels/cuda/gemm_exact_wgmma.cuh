// The exact GEMM's large-M kernel on Hopper's warpgroup MMA (wgmma), included by gemm_exact.cu.
//
// Same per-element contract as every other exact tile (gemm_exact.cu's header): C(i, j) is
// one fp32 accumulator that starts at 0 and takes one m64nNk16 step per k16 in ascending
// order, ceil(K/16) steps, then the epilogue of store_out. wgmma's k16 step gives the same
// bits as mma.sync.m16n8k16's (bench/gpu/wgmma_probe.cu: 0 differing results in 1.6 M
// products on the H200 over seven input families, wide exponents, cancellation and
// subnormals included; tests/data/cuda/s7_1511_wgmma_probe.txt), so this kernel and the
// mma.sync decode tiles agree bitwise and the kernel may serve any M
// (CudaGemm.ExactConfigsAgreeBitwise forces it against the others). What changes is the
// issue rate: mma.sync tops out near 330 TFLOP/s on the H200 (docs/cuda-measurements.md).
//
// Layout: a CTA computes 128 x 256 of C with three warpgroups. Warpgroup 0 is the producer:
// one thread issues TMA copies of the next k-tile (A 128 x 64 and W 256 x 64, bf16, in the
// 128-byte swizzle layout wgmma reads; TMA zero-fills rows past M / N and columns past K)
// into a ring of kStages stages, each with a "full" barrier (TMA bytes landed) and an
// "empty" one (both consumers done reading). Warpgroups 1 and 2 each own 64 rows x 256
// columns (128 accumulators per thread) and issue the four k16 steps of each k-tile,
// skipping steps wholly past K. The producer gives its registers to the consumers
// (setmaxnreg). Aligned operands only (TMA: 16-byte aligned base and row strides).
#pragma once
#include <cuda.h>  // CUtensorMap (types only; the encoder comes through the runtime)
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>

#include <cstdint>
#include <string>

#include "qarl/kernels/cuda/gemm_exact_ptx.cuh"
#include "qarl/kernels/cuda/wgmma_ptx.cuh"

namespace qarl::kernels::gpu::detail {
namespace {

struct WgmmaTile {
  static constexpr int BM = 128, BN = 256, BK = 64, kStages = 4;
  static constexpr int kThreads = 384;  // producer + two consumer warpgroups
  static constexpr int kStageBytes = (BM + BN) * BK * 2;
  static constexpr size_t kSmemBytes = size_t(kStageBytes) * kStages + 1024 /* align */ + 256 /* barriers */;
};

#if QARL_HAS_WGMMA
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// Waits until the phase with this parity has completed.
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred p;\nWAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
      "@!p bra WAIT;\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap* map, uint32_t bar,
                                            int32_t c_inner, int32_t c_outer) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4}], [%2];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(c_inner), "r"(c_outer)
      : "memory");
}
#endif

template <class OutT>
__global__ void __launch_bounds__(WgmmaTile::kThreads, 1)
    gemm_exact_wgmma_kernel(const __grid_constant__ CUtensorMap map_a,
                            const __grid_constant__ CUtensorMap map_w, Args p, bool accumulate,
                            bool pair_stores) {
#if QARL_HAS_WGMMA
  using T = WgmmaTile;
  extern __shared__ uint4 smem_raw[];  // one name and type per translation unit
  // The swizzle pattern repeats every 1024 bytes: stage bases must be 1024-byte aligned.
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem + size_t(T::kStageBytes) * T::kStages);
  const uint32_t full0 = smem_u32(bars), empty0 = smem_u32(bars + T::kStages);

  int pid_m, pid_n;
  grouped_tile(int(blockIdx.x), p.num_m, p.num_n, pid_m, pid_n);
  const int64_t m0 = int64_t(pid_m) * T::BM, n0 = int64_t(pid_n) * T::BN;
  const int ktiles = int((p.K + T::BK - 1) / T::BK);

  const int wg = int(threadIdx.x) / 128, t = int(threadIdx.x) % 128;
  if (threadIdx.x == 0) {
    for (int s = 0; s < T::kStages; ++s) {
      mbar_init(full0 + 8 * s, 1);   // the producer's expect_tx arrival (+ TMA bytes)
      mbar_init(empty0 + 8 * s, 2);  // one arrival per consumer warpgroup
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  if (wg == 0) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
    if (t == 0) {
      for (int kt = 0; kt < ktiles; ++kt) {
        const int s = kt % T::kStages, round = kt / T::kStages;
        if (round > 0) mbar_wait(empty0 + 8 * s, uint32_t(round - 1) & 1);
        const uint32_t sa = smem_u32(smem + size_t(s) * T::kStageBytes);
        const uint32_t sb = sa + T::BM * T::BK * 2;
        mbar_expect_tx(full0 + 8 * s, T::kStageBytes);
        tma_load_2d(sa, &map_a, full0 + 8 * s, kt * T::BK, int32_t(m0));
        tma_load_2d(sb, &map_w, full0 + 8 * s, kt * T::BK, int32_t(n0));
      }
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
  const int c = wg - 1;  // consumer: rows [64c, 64c + 64) of the CTA tile
  float acc[128];
#pragma unroll
  for (int i = 0; i < 128; ++i) acc[i] = 0.0f;
  // One wgmma group per k-tile, kept one deep in flight: after issuing tile kt's group,
  // wait for tile kt-1's and release its stage (the accumulator chain itself is ordered by
  // the hardware, as within a group).
  for (int kt = 0; kt < ktiles; ++kt) {
    const int s = kt % T::kStages;
    mbar_wait(full0 + 8 * s, uint32_t(kt / T::kStages) & 1);
    const uint8_t* sa = smem + size_t(s) * T::kStageBytes + c * 64 * T::BK * 2;
    const uint8_t* sb = smem + size_t(s) * T::kStageBytes + T::BM * T::BK * 2;
    const int64_t k0 = int64_t(kt) * T::BK;
    wgmma::fence_operand(acc);
    wgmma::fence();
    if (k0 + T::BK <= p.K) {  // the common case, unconditional: no register shuffles between steps
#pragma unroll
      for (int j = 0; j < T::BK / 16; ++j)
        wgmma::wgmma_m64n256k16(acc, wgmma::desc_sw128(sa + 32 * j), wgmma::desc_sw128(sb + 32 * j));
    } else {  // the last k-tile: steps wholly past K are skipped (exactly ceil(K/16) links)
      const int steps = int((p.K - k0 + 15) / 16);
      wgmma::wgmma_m64n256k16(acc, wgmma::desc_sw128(sa), wgmma::desc_sw128(sb));
      if (steps > 1) wgmma::wgmma_m64n256k16(acc, wgmma::desc_sw128(sa + 32), wgmma::desc_sw128(sb + 32));
      if (steps > 2) wgmma::wgmma_m64n256k16(acc, wgmma::desc_sw128(sa + 64), wgmma::desc_sw128(sb + 64));
    }
    wgmma::commit();
    wgmma::wait<1>();
    wgmma::fence_operand(acc);
    if (kt > 0 && t == 0) mbar_arrive(empty0 + 8 * ((kt - 1) % T::kStages));
  }
  wgmma::wait<0>();
  wgmma::fence_operand(acc);

  // Epilogue: the accumulator layout (wgmma_ptx.cuh) is mma.sync's C fragment per n8 block.
  // Paired stores go by chunks of 8 n8 blocks whose addends (accumulate) are all loaded
  // before any store: C may alias Cin, so a load after a store could not be moved ahead of
  // it, and 64 serialized load latencies per thread would cost more than the product (the
  // o and down projections, which accumulate into the residual).
  const int w = t / 32, l = t % 32;
  const int64_t row0 = m0 + 64 * c + 16 * w + l / 4;
  const int64_t col0 = n0 + 2 * (l % 4);
  if (pair_stores) {
    constexpr int kChunk = 8;
#pragma unroll
    for (int q0 = 0; q0 < 32; q0 += kChunk) {
      float old[kChunk][2][2];
#pragma unroll
      for (int q = 0; q < kChunk; ++q)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int64_t i = row0 + 8 * h, j = col0 + 8 * (q0 + q);
          old[q][h][0] = old[q][h][1] = 0.0f;
          if (!accumulate || i >= p.M || j + 1 >= p.N) continue;
          if constexpr (sizeof(OutT) == 4) {
            const float2 o = *reinterpret_cast<const float2*>(static_cast<const float*>(p.Cin) + i * p.ldc + j);
            old[q][h][0] = o.x;
            old[q][h][1] = o.y;
          } else {
            const __nv_bfloat162 o = *reinterpret_cast<const __nv_bfloat162*>(
                static_cast<const __nv_bfloat16*>(p.Cin) + i * p.ldc + j);
            old[q][h][0] = __bfloat162float(o.x);
            old[q][h][1] = __bfloat162float(o.y);
          }
        }
#pragma unroll
      for (int q = 0; q < kChunk; ++q)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int64_t i = row0 + 8 * h, j = col0 + 8 * (q0 + q);
          if (i >= p.M) continue;
          float v0 = acc[4 * (q0 + q) + 2 * h], v1 = acc[4 * (q0 + q) + 2 * h + 1];
          if (j + 1 < p.N) {  // store_out2's arithmetic: one fp32 add, then RNE to OutT
            if (accumulate) {
              v0 = __fadd_rn(old[q][h][0], v0);
              v1 = __fadd_rn(old[q][h][1], v1);
            }
            if constexpr (sizeof(OutT) == 4) {
              *reinterpret_cast<float2*>(static_cast<float*>(p.C) + i * p.ldc + j) = make_float2(v0, v1);
            } else {
              __nv_bfloat162 v;
              v.x = __float2bfloat16_rn(v0);
              v.y = __float2bfloat16_rn(v1);
              *reinterpret_cast<__nv_bfloat162*>(static_cast<__nv_bfloat16*>(p.C) + i * p.ldc + j) = v;
            }
          } else if (j < p.N) {  // the last column of an odd N
            store_out<OutT>(p.C, p.Cin, p.ldc, i, j, v0, accumulate);
          }
        }
    }
  } else {
#pragma unroll
    for (int q = 0; q < 32; ++q) {
      const int64_t j = col0 + 8 * q;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int64_t i = row0 + 8 * h;
        if (i >= p.M) continue;
        if (j < p.N) store_out<OutT>(p.C, p.Cin, p.ldc, i, j, acc[4 * q + 2 * h], accumulate);
        if (j + 1 < p.N) store_out<OutT>(p.C, p.Cin, p.ldc, i, j + 1, acc[4 * q + 2 * h + 1], accumulate);
      }
    }
  }
#else
  __trap();
#endif
}

// A 2-D tensor map of a row-major bf16 matrix (rows x K, leading dimension ld elements) in
// boxes of 64 columns x box_rows rows, 128-byte swizzle, zero fill out of bounds.
inline std::string encode_operand_map(CUtensorMap* map, const uint16_t* base, int64_t rows,
                                       int64_t K, int64_t ld, uint32_t box_rows) {
  static PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q) !=
            cudaSuccess ||
        q != cudaDriverEntryPointSuccess)
      fn = nullptr;
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  if (!encode) return "the driver has no cuTensorMapEncodeTiled";
  const cuuint64_t dims[2] = {cuuint64_t(K), cuuint64_t(rows)};
  const cuuint64_t strides[1] = {cuuint64_t(ld) * 2};
  const cuuint32_t box[2] = {64, box_rows};
  const cuuint32_t elem_strides[2] = {1, 1};
  const CUresult r = encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<uint16_t*>(base), dims,
                            strides, box, elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                            CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? std::string() : "cuTensorMapEncodeTiled failed (" + std::to_string(int(r)) + ")";
}

template <class OutT>
std::string launch_wgmma(Args p, bool accumulate, cudaStream_t stream) {
  using T = WgmmaTile;
  if (!wgmma::device_supported()) return "the wgmma tile needs an sm_90 device and an sm_90a build";
  auto kernel = gemm_exact_wgmma_kernel<OutT>;
  static const cudaError_t attr =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(T::kSmemBytes));
  if (attr != cudaSuccess) return std::string("cudaFuncSetAttribute failed: ") + cudaGetErrorString(attr);
  const int64_t nm = (p.M + T::BM - 1) / T::BM, nn = (p.N + T::BN - 1) / T::BN;
  if (nm * nn > int64_t(INT32_MAX) || nm * 8 * nn > int64_t(INT32_MAX) || p.M > INT32_MAX ||
      p.N > INT32_MAX || p.K > INT32_MAX)
    return "the output needs more than 2^31 tiles or rows";
  p.num_m = int(nm);
  p.num_n = int(nn);
  CUtensorMap map_a{}, map_w{};  // K = 0: no k-tile, the maps are never read (and cannot be encoded)
  if (p.K > 0 && p.M > 0 && p.N > 0) {
    std::string err = encode_operand_map(&map_a, p.A, p.M, p.K, p.lda, T::BM);
    if (err.empty()) err = encode_operand_map(&map_w, p.W, p.N, p.K, p.ldw, T::BN);
    if (!err.empty()) return err;
  }
  if (p.M == 0 || p.N == 0) return "";
  const size_t pair_bytes = 2 * sizeof(OutT);
  const bool pairs = p.ldc % 2 == 0 && reinterpret_cast<uintptr_t>(p.C) % pair_bytes == 0 &&
                     reinterpret_cast<uintptr_t>(p.Cin) % pair_bytes == 0;
  kernel<<<unsigned(nm * nn), T::kThreads, T::kSmemBytes, stream>>>(map_a, map_w, p, accumulate, pairs);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : std::string("launch failed: ") + cudaGetErrorString(e);
}

}  // namespace
}  // namespace qarl::kernels::gpu::detail
