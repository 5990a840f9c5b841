// RMSNorm on the CPU: rows in parallel; dg reduced per thread then summed, so that the result
// does not depend on scheduling beyond rounding order within a thread's rows.
#include <cmath>
#include <vector>

#include <omp.h>

#include "fela/ops/rmsnorm.h"

namespace fela::ops::cpu {

template <class T>
void rmsnorm_forward(T* y, T* rstd, const T* x, const T* g, int64_t R, int64_t d, double eps) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    const T* xr = x + r * d;
    T* yr = y + r * d;
    double ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += double(xr[i]) * xr[i];
    const T s = T(1.0 / std::sqrt(ss / double(d) + eps));
    rstd[r] = s;
    for (int64_t i = 0; i < d; ++i) yr[i] = xr[i] * s * g[i];
  }
}

template <class T>
void rmsnorm_backward(T* dx, T* dg, const T* dy, const T* x, const T* g, const T* rstd, int64_t R,
                      int64_t d, GradMode dx_mode) {
  const bool add = dx_mode == GradMode::Add;
  const int nt = omp_get_max_threads();
  std::vector<T> dg_part(size_t(nt) * d, T(0));
#pragma omp parallel
  {
    T* dgp = dg_part.data() + size_t(omp_get_thread_num()) * d;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; ++r) {
      const T *xr = x + r * d, *dyr = dy + r * d;
      T* dxr = dx + r * d;
      const T s = rstd[r];
      double dot = 0;
      for (int64_t i = 0; i < d; ++i) dot += double(dyr[i]) * g[i] * xr[i];
      const T c = T(s * s * dot / double(d));
      for (int64_t i = 0; i < d; ++i) {
        dgp[i] += dyr[i] * xr[i] * s;
        const T v = s * (dyr[i] * g[i] - xr[i] * c);  // dx may alias dy: dyr[i] read first
        dxr[i] = add ? dxr[i] + v : v;
      }
    }
  }
  for (int t = 0; t < nt; ++t)
    for (int64_t i = 0; i < d; ++i) dg[i] += dg_part[size_t(t) * d + i];
}

FELA_INSTANTIATE_FLOAT(rmsnorm_forward)
FELA_INSTANTIATE_FLOAT(rmsnorm_backward)

}  // namespace fela::ops::cpu
