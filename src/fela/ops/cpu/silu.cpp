// SiLU on the CPU: one vectorisable pass, OpenMP over elements for large tensors.
#include "fela/ops/silu.h"

#include <cmath>

namespace fela::ops::cpu {

// Below this many elements the loop runs in the calling thread: waking a team costs more.
constexpr int64_t kParallelWork = int64_t(1) << 15;

template <class T>
void silu_forward(T* y, const T* x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelWork)
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i];
    y[i] = v / (T(1) + std::exp(-v));
  }
}

// dx may alias dy: each element reads dy[i] before writing dx[i].
template <class T>
void silu_backward(T* dx, const T* dy, const T* x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelWork)
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i], s = T(1) / (T(1) + std::exp(-v));
    dx[i] = dy[i] * s * (T(1) + v * (T(1) - s));
  }
}

FELA_INSTANTIATE_FLOAT(silu_forward)
FELA_INSTANTIATE_FLOAT(silu_backward)

}  // namespace fela::ops::cpu
