// AdamW (Loshchilov & Hutter) over the flat parameter buffer, with decoupled weight decay on
// the tensors the parameter table marks as matrices, global-norm gradient clipping, and the
// learning-rate schedule (linear warm-up, then cosine decay to min_lr).
#pragma once
#include <string>
#include <vector>

#include "fela/io/safetensors.h"
#include "fela/model/params.h"

namespace fela {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double weight_decay = 0.1;
};

class AdamW {
 public:
  AdamW(const ParamTable& table, DType dtype, AdamWOptions opt);
  // params -= lr * (m_hat / (sqrt(v_hat) + eps) + wd * params) (wd on decay tensors only).
  void step(Tensor params, const Tensor& grads, double lr);
  int64_t steps() const { return t_; }
  void set_steps(int64_t t) { t_ = t; }
  // Moments as named tensors "adam.m.<param>" and "adam.v.<param>" (views, for saving).
  std::vector<io::TensorRef> state_tensors() const;
  void load_state(const io::SafetensorsReader& r);

 private:
  const ParamTable& table_;
  AdamWOptions opt_;
  Array m_, v_;
  int64_t t_ = 0;
};

// Scales grads so that their global L2 norm is at most max_norm (no-op when max_norm <= 0).
// Returns the norm before clipping.
double clip_grad_norm(Tensor grads, double max_norm);

// Linear warm-up over `warmup` steps from lr/warmup to lr, then cosine decay to min_lr at
// `total` steps. step counts from 0.
double lr_at(int64_t step, int64_t total, int64_t warmup, double lr, double min_lr);

}  // namespace fela
