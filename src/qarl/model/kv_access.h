// How attention reads keys and values, and how a forward pass hands new K/V rows to whoever
// keeps them. One interface for the trainer (each sequence's K/V contiguous in memory) and the
// rollout engine (a paged cache), so that both run the very same attention arithmetic.
//
// Row layout everywhere: one token's K (or V) row is n_kv_heads * head_dim floats, head-major
// ([kv_head][head_dim]), post q/k-norm, post-RoPE and post K/V quantizer (fake-quantized values
// in fp32; a native FP8/NVFP4 cache must dequantize to exactly these floats).
#pragma once
#include <cstdint>

namespace qarl::model {

// Keys/values 0..n_tokens-1 of one sequence in one layer. Token t lives in block
// t / block_size at row t % block_size: k_blocks[t / block_size] + (t % block_size) * row_stride.
// Contiguous storage is one block (block_size >= n_tokens). Storage block size is unrelated to
// the attention kernel's key-block size (kAttnKeyBlock), which is fixed by absolute key index.
struct KVView {
  int block_size = 0;                      // tokens per storage block
  int n_tokens = 0;                        // tokens visible (keys 0..n_tokens-1)
  int64_t row_stride = 0;                  // floats between consecutive tokens of a block
  const float* const* k_blocks = nullptr;  // [ceil(n_tokens / block_size)] block pointers
  const float* const* v_blocks = nullptr;

  const float* k_row(int t) const { return k_blocks[t / block_size] + (t % block_size) * row_stride; }
  const float* v_row(int t) const { return v_blocks[t / block_size] + (t % block_size) * row_stride; }
};

// The K/V store a forward pass writes into and reads from. For every layer, in order, the model
// first calls write() for each sequence's new tokens, then view() for each sequence, then runs
// attention. The K/V rows passed to write() are final (quantized) and must be returned verbatim
// by view(). `seq` is the index of the sequence in the batch given to forward_tokens().
class KVStore {
 public:
  virtual ~KVStore() = default;
  // k, v: n rows (tokens pos .. pos+n-1) of n_kv_heads*head_dim floats each, densely packed.
  virtual void write(int layer, int seq, int pos, int n, const float* k, const float* v) = 0;
  // View of tokens 0..n_tokens-1 (n_tokens = pos + n of the last write for this seq).
  virtual KVView view(int layer, int seq, int n_tokens) = 0;
  // Native low-precision caches (the rollout's FP8/NVFP4 KV storage) encode the K/V rows from
  // the values BEFORE the K/V quantizer, whose codes decode bitwise to the quantizer's output
  // (re-encoding already quantized NVFP4 values is not exact in general). When this returns
  // true, the model calls write_unquantized() with those rows (same layout as write())
  // right before it quantizes them and calls write() for the same tokens.
  virtual bool wants_unquantized() const { return false; }
  virtual void write_unquantized(int layer, int seq, int pos, int n, const float* k,
                                 const float* v) {
    (void)layer, (void)seq, (void)pos, (void)n, (void)k, (void)v;
  }
};

}  // namespace qarl::model
