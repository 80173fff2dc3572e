// The generation engine: continuous batching over a paged KV cache.
//
// Every step() builds one batch for model::forward_tokens(): first the running sequences
// (oldest request first; decodes take one token, unfinished prefills a chunk), then waiting
// sequences are admitted in arrival order while the token budget and free blocks allow.
// When a running sequence cannot get the blocks it needs, the newest running sequence is
// preempted: its blocks are freed and it goes back to the waiting queue to be recomputed from
// its tokens (prompt + what it generated so far). Batch invariance of the forward and
// counter-based sampling make the recomputed sequence continue exactly as if it had never
// been preempted.
//
// A request with n > 1 samples first prefills its prompt once; at the end of that prefill the
// n samples fork from it, sharing the prompt's blocks (reference counts); a shared,
// partially filled block is copied before a sample writes into it (copy-on-write).
//
// Per-request problems (empty prompt, unknown token id, prompt not shorter than the context,
// invalid sampling parameters, a request that cannot fit in the whole cache) fail only that
// request: it finishes at once with an error message.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "qarl/model/model.h"
#include "qarl/rollout/kv_cache.h"
#include "qarl/rollout/sampling.h"

namespace qarl::rollout {

struct EngineConfig {
  int block_size = 16;
  KVCacheMode kv_mode = KVCacheMode::Auto;
  uint64_t kv_cache_bytes = 0;     // budget in bytes; 0: use kv_cache_fraction
  double kv_cache_fraction = 0.05;  // of physical RAM
  int max_batch_tokens = 512;       // tokens per forward step (decodes + prefill chunks)
  int max_running = 256;            // sequences per step
  uint64_t seed = 0;                // for requests without their own seed
  int max_context = 0;              // 0: the model's max_position_embeddings
};

struct GenRequest {
  std::vector<int32_t> prompt;
  SamplingParams params;
  // The request index of the RNG stream (seed, request, sample); -1: the engine's request id.
  // generate() sets it to the request's position in its list, so a list of requests samples
  // the same whatever was generated before.
  int64_t rng_index = -1;
};

struct SampleOutput {
  int64_t request = 0;
  int sample = 0;
  std::vector<int32_t> prompt_tokens;
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;  // log_softmax(logits / T)[token], before truncation
  std::string finish_reason;    // "stop" | "length"; empty when `error` is set
  std::string error;            // a failed request: one output, sample 0
};

struct EngineStats {
  int64_t steps = 0;
  int64_t prefill_tokens = 0;  // tokens fed that were not the last token of their sequence
  int64_t decode_tokens = 0;   // tokens fed whose logits were sampled
  int64_t preemptions = 0;
  int64_t recomputed_tokens = 0;
  int64_t cow_copies = 0;
  int64_t forks = 0;
  double forward_seconds = 0, sample_seconds = 0;
};

class Engine {
 public:
  // The model (weights and K/V quantizers) must outlive the engine. The KV cache codecs are
  // taken from the model's K/V quantizers: a native cache (fp8 / nvfp4) requires the
  // quantizers of every layer to be enabled in that same format (Error otherwise).
  Engine(const model::Model& model, EngineConfig cfg);
  ~Engine();

  // Queues a request and returns its id (0, 1, ...). An invalid request gets its error
  // output at once (available from take_finished()).
  int64_t add_request(GenRequest r);
  // One forward step. Returns false when there was nothing to do.
  bool step();
  bool idle() const;
  std::vector<SampleOutput> take_finished();

  // Runs requests to completion; outputs sorted by (request, sample), `request` being the
  // position in `requests`. `on_step(done_samples)` is called after every step.
  std::vector<SampleOutput> generate(std::vector<GenRequest> requests,
                                     const std::function<void(int64_t)>& on_step = {});

  // After the model's weights or K/V amax changed (a refit): re-reads the quantizer scales
  // and drops nothing else. Error if sequences are in flight (their cached K/V are stale).
  void weights_changed();

  const KVCache& cache() const { return *cache_; }
  const EngineStats& stats() const { return stats_; }
  int max_context() const { return max_context_; }

 private:
  struct Seq;
  void setup_codecs();
  bool reserve(Seq& s, int upto, int watermark);
  void free_blocks(Seq& s);
  void preempt(Seq& s);
  void finish(Seq& s, const char* reason);
  void insert_running(Seq* s);
  void insert_waiting(Seq* s);

  const model::Model& model_;
  EngineConfig cfg_;
  int vocab_ = 0, max_context_ = 0;
  std::unique_ptr<KVCache> cache_;
  std::vector<std::unique_ptr<Seq>> seqs_;  // every live sequence
  std::vector<Seq*> running_, waiting_;     // both sorted by key
  std::vector<SampleOutput> finished_;
  int64_t next_request_ = 0;
  EngineStats stats_;
};

}  // namespace qarl::rollout
