// RMSNorm oracle: plain loops, double accumulation.
#include <cmath>

#include "fela/ops/rmsnorm.h"

namespace fela::ops::ref {

template <class T>
void rmsnorm_forward(T* y, T* rstd, const T* x, const T* g, int64_t R, int64_t d, double eps) {
  for (int64_t r = 0; r < R; ++r) {
    const T* xr = x + r * d;
    double ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += double(xr[i]) * xr[i];
    const double s = 1.0 / std::sqrt(ss / double(d) + eps);
    rstd[r] = T(s);
    for (int64_t i = 0; i < d; ++i) y[r * d + i] = T(xr[i] * s * g[i]);
  }
}

template <class T>
void rmsnorm_backward(T* dx, T* dg, const T* dy, const T* x, const T* g, const T* rstd, int64_t R,
                      int64_t d, GradMode dx_mode) {
  const bool add = dx_mode == GradMode::Add;
  for (int64_t r = 0; r < R; ++r) {
    const T *xr = x + r * d, *dyr = dy + r * d;
    const double s = rstd[r];
    double dot = 0;  // sum_i dy_i g_i x_i
    for (int64_t i = 0; i < d; ++i) dot += double(dyr[i]) * g[i] * xr[i];
    for (int64_t i = 0; i < d; ++i) dg[i] += T(double(dyr[i]) * xr[i] * s);
    for (int64_t i = 0; i < d; ++i) {
      const double v = s * (double(dyr[i]) * g[i] - xr[i] * s * s * dot / double(d));
      dx[r * d + i] = T(add ? dx[r * d + i] + v : v);
    }
  }
}

FELA_INSTANTIATE_FLOAT(rmsnorm_forward)
FELA_INSTANTIATE_FLOAT(rmsnorm_backward)

}  // namespace fela::ops::ref
