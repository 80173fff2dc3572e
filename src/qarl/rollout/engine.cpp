#include "qarl/rollout/engine.h"

#include <omp.h>

#include <algorithm>
#include <chrono>

#include "qarl/core/error.h"
#include "qarl/model/forward.h"
#include "qarl/rollout/paged_store.h"

namespace qarl::rollout {

struct Engine::Seq {
  int64_t request = 0;
  int sample = 0;        // -1: the shared prompt prefill of a request with n > 1 samples
  uint64_t key = 0;      // scheduling order: (request, sample)
  uint64_t seed = 0;
  int64_t rng_index = 0;  // request index of the RNG stream
  const SamplingParams* params = nullptr;  // owned by the request record
  std::shared_ptr<const GenRequest> req;
  int prompt_len = 0;
  int max_new = 0;       // max_new_tokens capped by the context
  std::vector<int32_t> tokens;  // prompt + generated
  std::vector<float> logprobs;
  int n_cached = 0;      // tokens whose K/V are in the cache
  std::vector<int32_t> blocks;
  bool preempted_once = false;
  std::function<bool(int32_t)> stop;  // this sample's stop-string checker (created lazily)
};

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

uint64_t seq_key(int64_t request, int sample) {
  return (uint64_t(request) << 24) + uint64_t(sample + 1);
}
}  // namespace

Engine::Engine(const model::Model& model, EngineConfig cfg) : model_(model), cfg_(cfg) {
  const auto& mc = model.config();
  vocab_ = mc.vocab_size;
  max_context_ = cfg.max_context > 0 ? cfg.max_context : mc.max_position_embeddings;
  if (max_context_ <= 0) max_context_ = 1 << 30;
  if (cfg.block_size < 1) throw usage_err("--block-size must be >= 1, got {}", cfg.block_size);
  if (cfg.max_batch_tokens < 1) throw usage_err("max batch tokens must be >= 1");
  if (cfg.max_running < 1) throw usage_err("max running sequences must be >= 1");
  KVCacheShape shape{mc.num_hidden_layers, model.kv_dim(), cfg.block_size, cfg.kv_mode};
  uint64_t bytes =
      cfg.kv_cache_bytes > 0 ? cfg.kv_cache_bytes : KVCache::bytes_for_fraction(cfg.kv_cache_fraction);
  int nb = KVCache::blocks_for_bytes(shape, bytes);
  if (nb < 1)
    throw usage_err("a KV cache budget of {} bytes holds no block of {} tokens ({} bytes each)",
                    bytes, cfg.block_size,
                    kv_bytes_per_token(cfg.kv_mode, shape.n_layers, shape.row_values) *
                        size_t(cfg.block_size));
  cache_ = std::make_unique<KVCache>(shape, nb);
  setup_codecs();
}

Engine::~Engine() = default;

void Engine::setup_codecs() {
  const KVCacheMode mode = cfg_.kv_mode;
  if (mode == KVCacheMode::Auto) return;
  const quant::Format want = mode == KVCacheMode::FP8 ? quant::Format::FP8 : quant::Format::NVFP4;
  std::vector<KVRowCodec> k, v;
  for (int l = 0; l < model_.config().num_hidden_layers; ++l) {
    for (char which : {'k', 'v'}) {
      const quant::TensorQuantizer& q = which == 'k' ? model_.k_quantizer(l) : model_.v_quantizer(l);
      if (!q.enabled() || q.config().format != want)
        throw usage_err("--kv-cache {} stores the {} quantizer's codes, but {} is {}; a native "
                        "cache needs the recipe to enable {} K/V quantizers (use --kv-cache auto "
                        "otherwise)",
                        kv_cache_mode_name(mode), quant::format_name(want),
                        model::kv_quantizer_name(l, which),
                        q.enabled() ? quant::format_name(q.config().format) : "disabled",
                        quant::format_name(want));
      (which == 'k' ? k : v).push_back(KVRowCodec::make(mode, model_.kv_dim(), q.effective_amax()));
    }
  }
  cache_->set_codecs(std::move(k), std::move(v));
}

void Engine::weights_changed() {
  if (!running_.empty() || !waiting_.empty())
    throw runtime_err("the rollout engine's weights changed while {} sequences are in flight",
                      running_.size() + waiting_.size());
  setup_codecs();
}

int64_t Engine::add_request(GenRequest r) {
  const int64_t id = next_request_++;
  auto req = std::make_shared<const GenRequest>(std::move(r));
  const SamplingParams& p = req->params;
  const int P = int(req->prompt.size());
  auto fail = [&](std::string msg) {
    SampleOutput o;
    o.request = id;
    o.prompt_tokens = req->prompt;
    o.error = std::move(msg);
    finished_.push_back(std::move(o));
    return id;
  };
  if (id >= (int64_t(1) << 39) || req->rng_index >= (int64_t(1) << 39))
    return fail("request index beyond 2^39");
  if (P == 0) return fail("empty prompt");
  for (int i = 0; i < P; ++i)
    if (req->prompt[size_t(i)] < 0 || req->prompt[size_t(i)] >= vocab_)
      return fail(fmt::format("prompt token {} at position {} is outside the vocabulary [0, {})",
                              req->prompt[size_t(i)], i, vocab_));
  if (P >= max_context_)
    return fail(fmt::format("prompt has {} tokens; the context is {} tokens, so at most {} "
                            "prompt tokens leave room to generate", P, max_context_, max_context_ - 1));
  if (std::string e = validate_sampling(p, vocab_); !e.empty()) return fail(e);
  const int max_new = std::min(p.max_new_tokens, max_context_ - P);
  // The last generated token is never fed back, so a sample holds P + max_new - 1 tokens.
  const int64_t need = (int64_t(P) + max_new - 1 + cfg_.block_size - 1) / cfg_.block_size;
  if (need > cache_->blocks().num_blocks())
    return fail(fmt::format("needs {} KV blocks of {} tokens ({} prompt + {} new tokens) but the "
                            "whole cache has {}; raise the KV cache budget",
                            need, cfg_.block_size, P, max_new, cache_->blocks().num_blocks()));
  auto s = std::make_unique<Seq>();
  s->request = id;
  s->sample = p.n > 1 ? -1 : 0;
  s->key = seq_key(id, s->sample);
  s->seed = p.seed ? *p.seed : cfg_.seed;
  s->rng_index = req->rng_index >= 0 ? req->rng_index : id;
  s->req = req;
  s->params = &req->params;
  s->prompt_len = P;
  s->max_new = max_new;
  s->tokens = req->prompt;
  insert_waiting(s.get());
  seqs_.push_back(std::move(s));
  return id;
}

void Engine::insert_running(Seq* s) {
  auto it = std::lower_bound(running_.begin(), running_.end(), s,
                             [](const Seq* a, const Seq* b) { return a->key < b->key; });
  running_.insert(it, s);
}

void Engine::insert_waiting(Seq* s) {
  auto it = std::lower_bound(waiting_.begin(), waiting_.end(), s,
                             [](const Seq* a, const Seq* b) { return a->key < b->key; });
  waiting_.insert(it, s);
}

bool Engine::idle() const { return running_.empty() && waiting_.empty(); }

// Makes sure blocks exist for tokens [0, upto) and that the block receiving token n_cached is
// not shared. Allocates nothing unless everything fits with `watermark` blocks to spare.
bool Engine::reserve(Seq& s, int upto, int watermark) {
  const int bs = cfg_.block_size;
  BlockAllocator& a = cache_->blocks();
  const int have = int(s.blocks.size());
  const int want = (upto + bs - 1) / bs;
  const int first = s.n_cached / bs;
  const bool cow = first < have && a.refcount(s.blocks[size_t(first)]) > 1;
  const int need = std::max(0, want - have) + (cow ? 1 : 0);
  if (need + watermark > a.num_free()) return false;
  if (cow) {
    int nb = a.allocate();
    cache_->copy_block_rows(s.blocks[size_t(first)], nb, s.n_cached % bs);
    a.decref(s.blocks[size_t(first)]);
    s.blocks[size_t(first)] = nb;
    ++stats_.cow_copies;
  }
  while (int(s.blocks.size()) < want) s.blocks.push_back(a.allocate());
  return true;
}

void Engine::free_blocks(Seq& s) {
  for (int b : s.blocks) cache_->blocks().decref(b);
  s.blocks.clear();
}

void Engine::preempt(Seq& s) {
  free_blocks(s);
  stats_.recomputed_tokens += s.n_cached;
  s.n_cached = 0;
  s.preempted_once = true;
  ++stats_.preemptions;
  insert_waiting(&s);
}

void Engine::finish(Seq& s, const char* reason) {
  free_blocks(s);
  SampleOutput o;
  o.request = s.request;
  o.sample = s.sample;
  o.prompt_tokens = s.req->prompt;
  o.tokens.assign(s.tokens.begin() + s.prompt_len, s.tokens.end());
  o.logprobs = std::move(s.logprobs);
  o.finish_reason = reason;
  finished_.push_back(std::move(o));
}

bool Engine::step() {
  if (idle()) return false;
  int budget = cfg_.max_batch_tokens;
  std::vector<Seq*> batch;
  std::vector<int> chunk;
  bool preempted = false;
  // 1. Running sequences, oldest first; preempt from the newest end when blocks run out.
  for (size_t i = 0; i < running_.size() && budget > 0;) {
    Seq* s = running_[i];
    int want = std::min(int(s->tokens.size()) - s->n_cached, budget);
    if (!reserve(*s, s->n_cached + want, 0)) {
      Seq* victim = running_.back();
      running_.pop_back();
      preempt(*victim);
      preempted = true;
      if (victim == s) break;
      continue;
    }
    batch.push_back(s);
    chunk.push_back(want);
    budget -= want;
    ++i;
  }
  // 2. Admit waiting sequences in order (never skipping the head, so none starves). A small
  // watermark keeps room for the running decodes unless nothing runs.
  const int watermark = std::max(1, cache_->blocks().num_blocks() / 100);
  while ((!preempted || running_.empty()) && !waiting_.empty() && budget > 0 &&
         int(running_.size()) < cfg_.max_running) {
    Seq* s = waiting_.front();
    int want = std::min(int(s->tokens.size()) - s->n_cached, budget);
    if (!reserve(*s, s->n_cached + want, running_.empty() ? 0 : watermark)) break;
    waiting_.erase(waiting_.begin());
    insert_running(s);
    batch.push_back(s);
    chunk.push_back(want);
    budget -= want;
  }
  if (batch.empty()) {
    QARL_ASSERT(running_.empty() && waiting_.empty(), "no progress with {} running, {} waiting",
                running_.size(), waiting_.size());
    return false;
  }

  // 3. Forward.
  std::vector<model::SeqChunk> chunks(batch.size());
  std::vector<const std::vector<int32_t>*> tables(batch.size());
  std::vector<int> logit_row(batch.size(), -1);
  int n_rows = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    Seq* s = batch[i];
    bool last = s->n_cached + chunk[i] == int(s->tokens.size());
    chunks[i] = {s->tokens.data() + s->n_cached, chunk[i], s->n_cached, last ? 1 : 0};
    tables[i] = &s->blocks;
    if (last) logit_row[i] = n_rows++;
    stats_.prefill_tokens += chunk[i] - (last ? 1 : 0);
    stats_.decode_tokens += last ? 1 : 0;
  }
  auto t0 = Clock::now();
  PagedKVStore store(*cache_, std::move(tables));
  std::vector<float> logits = model::forward_tokens(model_, chunks, store);
  stats_.forward_seconds += since(t0);
  QARL_ASSERT(logits.size() == size_t(n_rows) * size_t(vocab_), "logits {} for {} rows",
              logits.size(), n_rows);
  for (size_t i = 0; i < batch.size(); ++i) batch[i]->n_cached += chunk[i];

  // 4. Sampling: one job per (sequence, sample); a prompt prefill yields its n samples.
  struct Job {
    Seq* seq;
    int sample;
    const float* logits;
    int32_t token = 0;
    float logprob = 0;
  };
  std::vector<Job> jobs;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (logit_row[i] < 0) continue;
    const float* row = logits.data() + size_t(logit_row[i]) * size_t(vocab_);
    Seq* s = batch[i];
    if (s->sample < 0)
      for (int j = 0; j < s->params->n; ++j) jobs.push_back({s, j, row});
    else
      jobs.push_back({s, s->sample, row});
  }
  t0 = Clock::now();
#pragma omp parallel
  {
    SamplerScratch scratch;
#pragma omp for schedule(dynamic, 1)
    for (size_t j = 0; j < jobs.size(); ++j) {
      Job& job = jobs[j];
      const Seq& s = *job.seq;
      const SamplingParams& p = *s.params;
      const uint64_t step = uint64_t(s.tokens.size()) - uint64_t(s.prompt_len);  // 0 for a fork
      CounterRng rng = sample_rng(s.seed, uint64_t(s.rng_index), uint32_t(job.sample));
      job.token = sample_token(job.logits, vocab_, p, rng, step, scratch);
      job.logprob = model::token_logprob(job.logits, vocab_, p.logprob_temperature(), job.token);
    }
  }
  stats_.sample_seconds += since(t0);

  // 5. Apply: append tokens, fork, finish.
  auto is_stop = [](const SamplingParams& p, int32_t t) {
    return std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), t) != p.stop_token_ids.end();
  };
  std::vector<Seq*> done;
  std::vector<Seq*> parents;
  for (Job& job : jobs) {
    Seq* s = job.seq;
    Seq* target = s;
    if (s->sample < 0) {
      // Fork sample job.sample from the prompt prefill: share its blocks.
      auto c = std::make_unique<Seq>(*s);
      c->sample = job.sample;
      c->key = seq_key(s->request, job.sample);
      for (int b : c->blocks) cache_->blocks().incref(b);
      target = c.get();
      insert_running(target);
      seqs_.push_back(std::move(c));
      ++stats_.forks;
      if (job.sample == 0) parents.push_back(s);
    }
    target->tokens.push_back(job.token);
    target->logprobs.push_back(job.logprob);
    int generated = int(target->tokens.size()) - target->prompt_len;
    // A fork copies its parent before any token was generated, so each sample's checker
    // sees exactly its own tokens; a preempted sample keeps its checker and its tokens.
    if (target->params->stop_checker && !target->stop) target->stop = target->params->stop_checker();
    bool stop_string = target->stop && target->stop(job.token);
    if (is_stop(*target->params, job.token) || stop_string) {
      finish(*target, "stop");
      done.push_back(target);
    } else if (generated >= target->max_new) {
      finish(*target, "length");
      done.push_back(target);
    }
  }
  for (Seq* p : parents) {
    free_blocks(*p);
    done.push_back(p);
  }
  if (!done.empty()) {
    auto gone = [&](Seq* s) { return std::find(done.begin(), done.end(), s) != done.end(); };
    running_.erase(std::remove_if(running_.begin(), running_.end(), gone), running_.end());
    seqs_.erase(std::remove_if(seqs_.begin(), seqs_.end(),
                               [&](const std::unique_ptr<Seq>& s) { return gone(s.get()); }),
                seqs_.end());
  }
  ++stats_.steps;
  return true;
}

std::vector<SampleOutput> Engine::take_finished() {
  std::vector<SampleOutput> out;
  out.swap(finished_);
  return out;
}

std::vector<SampleOutput> Engine::generate(std::vector<GenRequest> requests,
                                           const std::function<void(int64_t)>& on_step) {
  std::vector<SampleOutput> out;
  const int64_t base = next_request_;
  for (size_t i = 0; i < requests.size(); ++i) {
    if (requests[i].rng_index < 0) requests[i].rng_index = int64_t(i);
    add_request(std::move(requests[i]));
  }
  int64_t done = 0;
  auto collect = [&] {
    for (auto& o : take_finished()) {
      out.push_back(std::move(o));
      ++done;
    }
  };
  collect();
  while (step()) {
    collect();
    if (on_step) on_step(done);
  }
  collect();
  for (auto& o : out) o.request -= base;
  std::sort(out.begin(), out.end(), [](const SampleOutput& a, const SampleOutput& b) {
    return a.request != b.request ? a.request < b.request : a.sample < b.sample;
  });
  return out;
}

}  // namespace qarl::rollout
