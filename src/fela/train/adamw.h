// AdamW (Loshchilov & Hutter) over the flat parameter buffer, with decoupled weight decay on
// the tensors the parameter table marks as matrices, global-norm gradient clipping, and the
// learning-rate schedule (linear warm-up, then cosine decay to min_lr). The update itself is the
// fused op ops::adamw_update (ops/adamw.h), on the CPU or the GPU.
#pragma once
#include <string>
#include <vector>

#include "fela/io/safetensors.h"
#include "fela/model/params.h"
#include "fela/ops/adamw.h"

namespace fela {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double weight_decay = 0.1;
};

class AdamW {
 public:
  // Moments m, v [P] of the given dtype on the given device (f32 on Device::Cuda, where they
  // sit beside the f32 master weights), zero.
  AdamW(const ParamTable& table, DType dtype, AdamWOptions opt, Device device = Device::Cpu);
  // params -= lr * (m_hat / (sqrt(v_hat) + eps) + wd * params) (wd on decay tensors only), with
  // the gradient taken as grad_scale * grads (the clipping factor, see clip_scale). shadow: the
  // bf16 compute copy [P] of the weights on the GPU, rewritten from the new params in the same
  // pass; leave it out on the CPU.
  void step(Tensor params, const Tensor& grads, double lr, double grad_scale = 1.0,
            Tensor shadow = Tensor());
  // The global L2 norm of grads (f32 or f64 on the CPU, f32 on the GPU); the same bits on every
  // call for the same gradients. On the GPU it waits for the work queued before it.
  double grad_norm(const Tensor& grads) const;
  int64_t steps() const { return t_; }
  void set_steps(int64_t t) { t_ = t; }
  // Moments as named tensors "adam.m.<param>" and "adam.v.<param>": views on the moments'
  // device (the caller copies GPU views to the host to save them).
  std::vector<io::TensorRef> state_tensors() const;
  // Reads the moments from a checkpoint (into host memory, then onto the moments' device).
  void load_state(const io::SafetensorsReader& r);

 private:
  const ParamTable& table_;
  AdamWOptions opt_;
  ops::DecayRanges decay_;
  Array m_, v_;
  int64_t t_ = 0;
};

// The factor that brings gradients of global norm `norm` to norm max_norm: max_norm / norm when
// the norm is larger, else 1 (always 1 when max_norm <= 0). Pass it to AdamW::step.
double clip_scale(double norm, double max_norm);

// Scales grads (CPU) so that their global L2 norm is at most max_norm (no-op when
// max_norm <= 0). Returns the norm before clipping. AdamW::grad_norm + clip_scale do the same
// without the extra pass.
double clip_grad_norm(Tensor grads, double max_norm);

// Linear warm-up over `warmup` steps from lr/warmup to lr, then cosine decay to min_lr at
// `total` steps. step counts from 0.
double lr_at(int64_t step, int64_t total, int64_t warmup, double lr, double min_lr);

}  // namespace fela
