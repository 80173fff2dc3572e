// The embedded default's model: a tiny Qwen3-style transformer over qarl's tiny byte-level
// tokenizer, small enough to train on two CPU cores in minutes, and the supervised warm start
// that teaches it the answer format of the arithmetic task before RL.
#pragma once
#include <cstdint>
#include <string>

#include "qarl/io/hf_config.h"

namespace qarl::rl {

// hidden 64, 2 layers, 4 heads of 16 (NVFP4 blocks of 16 fit a head), 2 KV heads (GQA),
// SwiGLU 192, tied embeddings, q/k norm; vocab from the tiny tokenizer.
io::HFConfig tiny_model_config(int vocab_size);

// Writes a complete checkpoint directory: config.json, model.safetensors (seeded random
// init, fp32), tokenizer.json and tokenizer_config.json. Atomic (built aside, renamed).
void write_tiny_checkpoint(const std::string& dir, uint64_t seed);

}  // namespace qarl::rl
