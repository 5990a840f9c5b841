// Cross-entropy oracle, in double.
#include <algorithm>
#include <cmath>

#include "fela/ops/cross_entropy.h"

namespace fela::ops::ref {

namespace {
template <class T>
double logsumexp(const T* x, int64_t V) {
  double m = -INFINITY;
  for (int64_t v = 0; v < V; ++v) m = std::max(m, double(x[v]));
  double s = 0;
  for (int64_t v = 0; v < V; ++v) s += std::exp(double(x[v]) - m);
  return m + std::log(s);
}
}  // namespace

template <class T>
void cross_entropy_forward(T* loss, const T* logits, const int32_t* targets, int64_t R, int64_t V) {
  for (int64_t r = 0; r < R; ++r)
    loss[r] = targets[r] < 0 ? T(0) : T(logsumexp(logits + r * V, V) - logits[r * V + targets[r]]);
}

template <class T>
void cross_entropy_backward(T* dlogits, const T* logits, const int32_t* targets, int64_t R,
                            int64_t V, double scale) {
  for (int64_t r = 0; r < R; ++r) {
    const T* x = logits + r * V;
    T* g = dlogits + r * V;
    if (targets[r] < 0) {
      std::fill(g, g + V, T(0));
      continue;
    }
    const double lse = logsumexp(x, V);
    for (int64_t v = 0; v < V; ++v)
      g[v] = T((std::exp(double(x[v]) - lse) - (v == targets[r] ? 1.0 : 0.0)) * scale);
  }
}

FELA_INSTANTIATE_FLOAT(cross_entropy_forward)
FELA_INSTANTIATE_FLOAT(cross_entropy_backward)

}  // namespace fela::ops::ref
