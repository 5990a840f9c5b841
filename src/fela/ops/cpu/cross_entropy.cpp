// Cross-entropy on the CPU: rows in parallel, max-subtracted exponentials, sums in double.
#include <algorithm>
#include <cmath>

#include "fela/ops/cross_entropy.h"

namespace fela::ops::cpu {

namespace {
template <class T>
double row_logsumexp(const T* x, int64_t V) {
  T m = x[0];
  for (int64_t v = 1; v < V; ++v) m = std::max(m, x[v]);
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t v = 0; v < V; ++v) s += std::exp(x[v] - m);
  return double(m) + std::log(s);
}
}  // namespace

template <class T>
void cross_entropy_forward(T* loss, const T* logits, const int32_t* targets, int64_t R, int64_t V) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; ++r)
    loss[r] =
        targets[r] < 0 ? T(0) : T(row_logsumexp(logits + r * V, V) - logits[r * V + targets[r]]);
}

template <class T>
void cross_entropy_backward(T* dlogits, const T* logits, const int32_t* targets, int64_t R,
                            int64_t V, double scale) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    const T* x = logits + r * V;
    T* g = dlogits + r * V;
    if (targets[r] < 0) {
      std::fill(g, g + V, T(0));
      continue;
    }
    const T lse = T(row_logsumexp(x, V)), sc = T(scale);
#pragma omp simd
    for (int64_t v = 0; v < V; ++v) g[v] = std::exp(x[v] - lse) * sc;
    g[targets[r]] -= sc;
  }
}

FELA_INSTANTIATE_FLOAT(cross_entropy_forward)
FELA_INSTANTIATE_FLOAT(cross_entropy_backward)

}  // namespace fela::ops::cpu
