// Inverted dropout with a counter-based mask (SPEC §8; training only):
//   y[i] = x[i] * keep(seed, i) / (1 - p),   keep(seed, i) = (hash64(seed, i) >= p * 2^64)
// The mask is a pure function of (seed, element index), never stored: backward recomputes it,
// the same seed gives the same mask on every run, thread count and backend (so a resumed run
// stays exact), and any p in [0, 1) is allowed (p = 0 copies). Backward: dx = dy * keep / (1-p)
// (written). y may alias x and dx may alias dy. On Device::Cuda x and y are bf16 (or both f32);
// the mask is the same bits as on the CPU (dropout_hash.h).
#pragma once
#include <cstdint>

#include "fela/ops/dropout_hash.h"  // dropout_hash, dropout_keep (host and device)
#include "fela/ops/op.h"

namespace fela::ops {

void dropout_forward(Tensor y, const Tensor& x, double p, uint64_t seed, Impl impl = Impl::Fast);
void dropout_backward(Tensor dx, const Tensor& dy, double p, uint64_t seed, Impl impl = Impl::Fast);

namespace ref {
template <class T>
void dropout_apply(T* y, const T* x, int64_t n, double p, uint64_t seed);
}  // namespace ref
namespace cpu {
template <class T>
void dropout_apply(T* y, const T* x, int64_t n, double p, uint64_t seed);
}  // namespace cpu
// CUDA: y = x * keep / (1 - p) in fp32, stored as T (bf16 or fp32); y may alias x.
namespace cuda {
void dropout_apply(BFloat16* y, const BFloat16* x, int64_t n, double p, uint64_t seed);
void dropout_apply(float* y, const float* x, int64_t n, double p, uint64_t seed);
}  // namespace cuda

}  // namespace fela::ops
