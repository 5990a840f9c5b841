// Decay gate on the CPU: rows in parallel; db reduced per thread, then summed.
#include <algorithm>
#include <cmath>
#include <vector>

#include <omp.h>

#include "fela/ops/decay_gate.h"

namespace fela::ops::cpu {

template <class T>
void decay_gate_forward(T* a, const T* x, const T* b, int64_t R, int64_t n, double normalizer) {
  const T inv = T(1.0 / normalizer);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; ++r)
    for (int64_t i = 0; i < n; ++i) {
      const T z = x[r * n + i] + b[i];
      a[r * n + i] = (std::min(z, T(0)) - std::log1p(std::exp(-std::fabs(z)))) * inv;
    }
}

template <class T>
void decay_gate_backward(T* dx, T* db, const T* da, const T* x, const T* b, int64_t R, int64_t n,
                         double normalizer) {
  const T inv = T(1.0 / normalizer);
  const int nt = omp_get_max_threads();
  std::vector<T> part(size_t(nt) * n, T(0));
#pragma omp parallel
  {
    T* p = part.data() + size_t(omp_get_thread_num()) * n;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; ++r)
      for (int64_t i = 0; i < n; ++i) {
        const T z = x[r * n + i] + b[i];
        const T g = da[r * n + i] / (T(1) + std::exp(z)) * inv;
        dx[r * n + i] = g;
        p[i] += g;
      }
  }
  for (int t = 0; t < nt; ++t)
    for (int64_t i = 0; i < n; ++i) db[i] += part[size_t(t) * n + i];
}

FELA_INSTANTIATE_FLOAT(decay_gate_forward)
FELA_INSTANTIATE_FLOAT(decay_gate_backward)

}  // namespace fela::ops::cpu
