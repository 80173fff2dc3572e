// On-policy distillation losses over the vocabulary (QAD): the student (quantized K/V)
// generated the tokens; at every generated position both models give logits over the
// vocabulary and the loss is a per-token KL between their softmax distributions:
//   reverse KL (student || teacher) = sum_v q_v (log q_v - log p_v)    (mode seeking)
//   forward KL (teacher || student) = sum_v p_v (log p_v - log q_v)
// with q = softmax(student_logits / T), p = softmax(teacher_logits / T). With top_k > 0 both
// distributions are restricted to the teacher's k most likely tokens and renormalized there
// (log_softmax over the gathered logits), the student gets no gradient elsewhere.
// Aggregation: token mean (sum over valid positions / number of valid positions, or a
// global count for micro-batching). Gradients are with respect to the student logits.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace qarl::rl {

enum class DistillKl { Reverse, Forward };
DistillKl parse_distill_kl(const std::string& s);  // "reverse" | "forward"

struct DistillOptions {
  DistillKl kl = DistillKl::Reverse;
  int top_k = 0;            // 0: full vocabulary
  double temperature = 1.0;
  double global_valid_tokens = 0;  // 0: this batch's own count
};

template <typename T>
struct DistillResult {
  double loss = 0;
  std::vector<T> d_student_logits;  // [positions * vocab]
  double valid_tokens = 0;
};

// student_logits, teacher_logits: [positions, vocab] row-major; mask: [positions].
template <typename T>
DistillResult<T> distill_loss(std::span<const T> student_logits, std::span<const T> teacher_logits,
                              std::span<const T> mask, int64_t vocab, const DistillOptions& o);

}  // namespace qarl::rl
