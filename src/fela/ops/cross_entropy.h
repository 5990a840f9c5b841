// Cross-entropy over the vocabulary (SPEC §7), per row:
//   loss[r] = logsumexp(logits[r, :]) - logits[r, target[r]]      (0 where target[r] < 0)
// logits [R, V]; targets [R] int32 in [0, V) or negative for "ignore"; loss [R].
// Backward (the only gradient is dlogits, written):
//   dlogits[r, :] = (softmax(logits[r, :]) - onehot(target[r])) * scale    (0 rows when ignored)
// dlogits may alias logits, so the fused classifier never holds a second [R, V] buffer.
// On Device::Cuda: logits and dlogits bf16, loss f32, targets i32 on the GPU.
#pragma once
#include "fela/ops/op.h"

namespace fela::ops {

void cross_entropy_forward(Tensor loss, const Tensor& logits, const Tensor& targets,
                           Impl impl = Impl::Fast);
void cross_entropy_backward(Tensor dlogits, const Tensor& logits, const Tensor& targets,
                            double scale, Impl impl = Impl::Fast);

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
// CUDA: one block per row, fp32 math on bf16 logits; no [R, V] fp32 buffer is ever made.
namespace cuda {
void cross_entropy_forward(float* loss, const BFloat16* logits, const int32_t* targets, int64_t R,
                           int64_t V);
void cross_entropy_backward(BFloat16* dlogits, const BFloat16* logits, const int32_t* targets,
                            int64_t R, int64_t V, double scale);
}  // namespace cuda

}  // namespace fela::ops
