// Cross-entropy over the vocabulary (SPEC §7), per row:
//   loss[r] = logsumexp(logits[r, :]) - logits[r, target[r]]      (0 where target[r] < 0)
// logits [R, V]; targets [R] int32 in [0, V) or negative for "ignore"; loss [R].
// Backward (the only gradient is dlogits, written):
//   dlogits[r, :] = (softmax(logits[r, :]) - onehot(target[r])) * scale    (0 rows when ignored)
// dlogits may alias logits, so the fused classifier never holds a second [R, V] buffer.
// On Device::Cuda: logits and dlogits bf16, loss f32, targets i32 on the GPU.
// Padded rows (Device::Cuda only): with classes > 0, only the first `classes` columns of the
// [R, C] logits are classes; the rest are padding that the loss ignores and whose dlogits are
// written as 0. The GPU model pads V = 50257 to a multiple of 64 so that every logits row starts
// 128-byte aligned, which cuBLASLt's tensor-core kernels need.
#pragma once
#include "fela/ops/op.h"

namespace fela::ops {

void cross_entropy_forward(Tensor loss, const Tensor& logits, const Tensor& targets,
                           Impl impl = Impl::Fast, int64_t classes = 0);
void cross_entropy_backward(Tensor dlogits, const Tensor& logits, const Tensor& targets,
                            double scale, Impl impl = Impl::Fast, int64_t classes = 0);
// Both at once, as the training head needs them: the loss, then dlogits (which may alias
// logits). On the GPU one sweep over the logits instead of three.
void cross_entropy_forward_backward(Tensor loss, Tensor dlogits, const Tensor& logits,
                                    const Tensor& targets, double scale, Impl impl = Impl::Fast,
                                    int64_t classes = 0);

namespace ref {
template <class T>
void cross_entropy_forward(T* loss, const T* logits, const int32_t* targets, int64_t R, int64_t V);
template <class T>
void cross_entropy_backward(T* dlogits, const T* logits, const int32_t* targets, int64_t R,
                            int64_t V, double scale);
}  // namespace ref
namespace cpu {
template <class T>
void cross_entropy_forward(T* loss, const T* logits, const int32_t* targets, int64_t R, int64_t V);
template <class T>
void cross_entropy_backward(T* dlogits, const T* logits, const int32_t* targets, int64_t R,
                            int64_t V, double scale);
}  // namespace cpu
// CUDA: one block per row, fp32 math on bf16 logits; no [R, V] fp32 buffer is ever made. The
// backward alone is the fused kernel with its loss written to scratch.
namespace cuda {
// V classes in rows of ld >= V elements.
void cross_entropy_forward(float* loss, const BFloat16* logits, const int32_t* targets, int64_t R,
                           int64_t V, int64_t ld);
void cross_entropy_forward_backward(float* loss, BFloat16* dlogits, const BFloat16* logits,
                                    const int32_t* targets, int64_t R, int64_t V, int64_t ld,
                                    double scale);
}  // namespace cuda

}  // namespace fela::ops
