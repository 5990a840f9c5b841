// Token embedding (SPEC §1: h0 = E[tokens]).
//   h[R, d] = E[tokens[R], :]          tokens [R] int32 in [0, V);  E [V, d]
// Backward: dE[tokens[r], :] += dh[r, :] (accumulated; repeated tokens add up).
// On Device::Cuda: tokens i32 on the GPU (checked against V through a copy to the host), E and h
// bf16, dh bf16, dE f32.
#pragma once
#include "fela/ops/op.h"

namespace fela::ops {

void embedding_forward(Tensor h, const Tensor& tokens, const Tensor& E, Impl impl = Impl::Fast);
void embedding_backward(Tensor dE, const Tensor& dh, const Tensor& tokens, Impl impl = Impl::Fast);

namespace ref {
template <class T>
void embedding_forward(T* h, const int32_t* tokens, const T* E, int64_t R, int64_t d);
template <class T>
void embedding_backward(T* dE, const T* dh, const int32_t* tokens, int64_t R, int64_t d);
}  // namespace ref
namespace cpu {
template <class T>
void embedding_forward(T* h, const int32_t* tokens, const T* E, int64_t R, int64_t d);
template <class T>
void embedding_backward(T* dE, const T* dh, const int32_t* tokens, int64_t R, int64_t d);
}  // namespace cpu
// CUDA: E and h bf16, dE fp32; backward sums repeated tokens in a fixed order (deterministic).
namespace cuda {
void embedding_forward(BFloat16* h, const int32_t* tokens, const BFloat16* E, int64_t R, int64_t d);
void embedding_backward(float* dE, const BFloat16* dh, const int32_t* tokens, int64_t R, int64_t V,
                        int64_t d);
}  // namespace cuda

}  // namespace fela::ops
