// Embedding oracle.
#include "fela/ops/embedding.h"

namespace fela::ops::ref {

template <class T>
void embedding_forward(T* h, const int32_t* tokens, const T* E, int64_t R, int64_t d) {
  for (int64_t r = 0; r < R; ++r)
    for (int64_t i = 0; i < d; ++i) h[r * d + i] = E[int64_t(tokens[r]) * d + i];
}

template <class T>
void embedding_backward(T* dE, const T* dh, const int32_t* tokens, int64_t R, int64_t d) {
  for (int64_t r = 0; r < R; ++r)
    for (int64_t i = 0; i < d; ++i) dE[int64_t(tokens[r]) * d + i] += dh[r * d + i];
}

FELA_INSTANTIATE_FLOAT(embedding_forward)
FELA_INSTANTIATE_FLOAT(embedding_backward)

}  // namespace fela::ops::ref
