// Embedding on the CPU. The backward scatter is parallel over feature columns, so two rows
// with the same token never race and the summation order is fixed (deterministic).
#include <algorithm>
#include <cstring>

#include "fela/ops/embedding.h"

namespace fela::ops::cpu {

template <class T>
void embedding_forward(T* h, const int32_t* tokens, const T* E, int64_t R, int64_t d) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; ++r) std::memcpy(h + r * d, E + int64_t(tokens[r]) * d, d * sizeof(T));
}

template <class T>
void embedding_backward(T* dE, const T* dh, const int32_t* tokens, int64_t R, int64_t d) {
  constexpr int64_t kCols = 16;
#pragma omp parallel for schedule(static)
  for (int64_t c0 = 0; c0 < d; c0 += kCols) {
    const int64_t c1 = std::min(d, c0 + kCols);
    for (int64_t r = 0; r < R; ++r) {
      T* dst = dE + int64_t(tokens[r]) * d;
      const T* src = dh + r * d;
      for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
    }
  }
}

FELA_INSTANTIATE_FLOAT(embedding_forward)
FELA_INSTANTIATE_FLOAT(embedding_backward)

}  // namespace fela::ops::cpu
