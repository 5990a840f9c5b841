// Inverted dropout with a counter-based mask (SPEC §8; training only):
//   y[i] = x[i] * keep(seed, i) / (1 - p),   keep(seed, i) = (hash64(seed, i) >= p * 2^64)
// The mask is a pure function of (seed, element index), never stored: backward recomputes it,
// the same seed gives the same mask on every run, thread count and backend (so a resumed run
// stays exact), and any p in [0, 1) is allowed (p = 0 copies). Backward: dx = dy * keep / (1-p)
// (written). y may alias x and dx may alias dy.
#pragma once
#include <cstdint>

#include "fela/ops/op.h"

namespace fela::ops {

// The hash both the op and attention's probability dropout use (splitmix64 of seed and index).
uint64_t dropout_hash(uint64_t seed, uint64_t index);
inline bool dropout_keep(uint64_t seed, uint64_t index, double p) {
  return double(dropout_hash(seed, index) >> 11) * 0x1.0p-53 >= p;
}

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

}  // namespace fela::ops
