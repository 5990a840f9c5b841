// GLA's log-decay gate (SPEC §3):  a[R, n] = logsigmoid(x[R, n] + b[n]) / normalizer
// where x = (input W_a1) W_a2 comes from the caller's two linears. a <= 0.
// Backward: dx = da * sigmoid(-(x + b)) / normalizer (written), db += sum_r dx (accumulated).
// On Device::Cuda: x, dx bf16; b, db fp32; a and da bf16 or fp32 (math in fp32; db summed from
// the fp32 values of dx, in a fixed order).
#pragma once
#include "fela/ops/op.h"

namespace fela::ops {

void decay_gate_forward(Tensor a, const Tensor& x, const Tensor& b, double normalizer,
                        Impl impl = Impl::Fast);
// dx may alias da.
void decay_gate_backward(Tensor dx, Tensor db, const Tensor& da, const Tensor& x, const Tensor& b,
                         double normalizer, Impl impl = Impl::Fast);

namespace ref {
template <class T>
void decay_gate_forward(T* a, const T* x, const T* b, int64_t R, int64_t n, double normalizer);
template <class T>
void decay_gate_backward(T* dx, T* db, const T* da, const T* x, const T* b, int64_t R, int64_t n,
                         double normalizer);
}  // namespace ref
namespace cpu {
template <class T>
void decay_gate_forward(T* a, const T* x, const T* b, int64_t R, int64_t n, double normalizer);
template <class T>
void decay_gate_backward(T* dx, T* db, const T* da, const T* x, const T* b, int64_t R, int64_t n,
                         double normalizer);
}  // namespace cpu
// CUDA: x, dx bf16, b, db fp32, a / da bf16 or fp32; math and the db sums in fp32.
namespace cuda {
void decay_gate_forward(BFloat16* a, const BFloat16* x, const float* b, int64_t R, int64_t n,
                        double normalizer);
void decay_gate_forward(float* a, const BFloat16* x, const float* b, int64_t R, int64_t n,
                        double normalizer);
void decay_gate_backward(BFloat16* dx, float* db, const BFloat16* da, const BFloat16* x,
                         const float* b, int64_t R, int64_t n, double normalizer);
void decay_gate_backward(BFloat16* dx, float* db, const float* da, const BFloat16* x,
                         const float* b, int64_t R, int64_t n, double normalizer);
}  // namespace cuda

}  // namespace fela::ops
