// Per-channel scaling y[r, c] = x[r, c] g[c] (the gated residual h + g * f(h) of SPEC §8).
// x, y [R, d]; g [d]. Backward: dx = dy g (written; may alias dy), dg += sum_r dy x.
// On Device::Cuda x, y, dy, dx are bf16 and g, dg fp32 (math and the dg sums in fp32).
#pragma once
#include "fela/ops/op.h"

namespace fela::ops {

void channel_scale_forward(Tensor y, const Tensor& x, const Tensor& g, Impl impl = Impl::Fast);
void channel_scale_backward(Tensor dx, Tensor dg, const Tensor& dy, const Tensor& x,
                            const Tensor& g, Impl impl = Impl::Fast);

namespace ref {
template <class T>
void channel_scale_forward(T* y, const T* x, const T* g, int64_t R, int64_t d);
template <class T>
void channel_scale_backward(T* dx, T* dg, const T* dy, const T* x, const T* g, int64_t R,
                            int64_t d);
}  // namespace ref
namespace cpu {
template <class T>
void channel_scale_forward(T* y, const T* x, const T* g, int64_t R, int64_t d);
template <class T>
void channel_scale_backward(T* dx, T* dg, const T* dy, const T* x, const T* g, int64_t R,
                            int64_t d);
}  // namespace cpu
// CUDA: activations bf16, g and dg fp32; dg summed in a fixed order (deterministic).
namespace cuda {
void channel_scale_forward(BFloat16* y, const BFloat16* x, const float* g, int64_t R, int64_t d);
void channel_scale_backward(BFloat16* dx, float* dg, const BFloat16* dy, const BFloat16* x,
                            const float* g, int64_t R, int64_t d);
}  // namespace cuda

}  // namespace fela::ops
