// AdamW (Loshchilov & Hutter) as one fused pass over the flat parameter buffer, and the squared
// global gradient norm that clipping needs. Per element i, with t the step taken (from 1):
//   g    = grad_scale * grads[i]                    grad_scale: the clipping factor, so clipping
//                                                   needs no pass of its own over the gradients
//   m    = beta1 * m + (1 - beta1) * g
//   v    = beta2 * v + (1 - beta2) * g^2
//   p    = p * (1 - lr * wd_i) - lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps)
//   shadow[i] = bf16(p)                             (Device::Cuda, when a shadow is given)
// wd_i = weight_decay inside the decay ranges (the ParamTable's `decay` tensors), else 0.
//   grad_norm_sq = sum_i grads[i]^2, accumulated in double, returned to the host.
// Shapes: params, grads, m, v, shadow: P elements each (any shape; flat in memory). No two of
// them may overlap.
// CPU: all f32 or all f64, no shadow; the fast kernel is the trainer's original AdamW arithmetic
// in T, operation for operation, so CPU runs keep their numbers. Device::Cuda: params, grads,
// m, v f32 and shadow bf16 (optional, the compute copy of the weights); math in fp32.
// grad_norm_sq is deterministic on both devices: fixed chunks (a function of P alone) added in a
// fixed order, whatever the thread count, timing or GPU.
#pragma once
#include <vector>

#include "fela/ops/op.h"

namespace fela::ops {

struct AdamWHyper {
  double lr = 0, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0;
  int64_t t = 1;            // the step being taken, from 1: bias corrections 1 - beta^t
  double grad_scale = 1.0;  // multiplies every gradient before use
};

// Elements [begin, end) of the flat buffer that get weight decay.
struct DecayRange {
  int64_t begin, end;
};

// The weight-decay segmentation, for one device: sorted, disjoint ranges (adjacent ones merged)
// on the host, and for Device::Cuda a copy in device memory, made once here so that an update
// copies nothing and searches the ranges in a single launch over the whole buffer.
class DecayRanges {
 public:
  DecayRanges() = default;
  DecayRanges(std::vector<DecayRange> ranges, Device device = Device::Cpu);
  Device device() const { return device_; }
  const std::vector<DecayRange>& ranges() const { return ranges_; }
  int64_t size() const { return int64_t(ranges_.size()); }
  // The ranges in device memory on Device::Cuda (nullptr when there are none); on the CPU, the
  // host list.
  const DecayRange* data() const;

 private:
  std::vector<DecayRange> ranges_;
  Device device_ = Device::Cpu;
  Array device_copy_;  // i32 words, 4 per range: Tensor has no 64-bit integer dtype
};

void adamw_update(Tensor params, const Tensor& grads, Tensor m, Tensor v, Tensor shadow,
                  const DecayRanges& decay, const AdamWHyper& h, Impl impl = Impl::Fast);
double grad_norm_sq(const Tensor& grads, Impl impl = Impl::Fast);

// decay: ndecay sorted, disjoint ranges inside [0, n), in host memory for ref / cpu.
namespace ref {
template <class T>
void adamw_update(T* p, const T* g, T* m, T* v, int64_t n, const DecayRange* decay, int64_t ndecay,
                  const AdamWHyper& h);
template <class T>
double grad_norm_sq(const T* g, int64_t n);
}  // namespace ref
namespace cpu {
template <class T>
void adamw_update(T* p, const T* g, T* m, T* v, int64_t n, const DecayRange* decay, int64_t ndecay,
                  const AdamWHyper& h);
template <class T>
double grad_norm_sq(const T* g, int64_t n);
}  // namespace cpu
// CUDA: f32 master weights and moments, optional bf16 shadow (nullptr: none); decay in device
// memory. grad_norm_sq waits for the GPU (its result is copied to the host).
namespace cuda {
void adamw_update(float* p, const float* g, float* m, float* v, BFloat16* shadow, int64_t n,
                  const DecayRange* decay, int64_t ndecay, const AdamWHyper& h);
double grad_norm_sq(const float* g, int64_t n);
}  // namespace cuda

}  // namespace fela::ops
