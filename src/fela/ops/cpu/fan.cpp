// FAN projection on the CPU: rows in parallel for large calls, one pass over each row.
#include "fela/ops/fan.h"

#include <algorithm>
#include <cmath>

namespace fela::ops::cpu {

// Below this many output elements a loop runs in the calling thread: waking a team costs more.
constexpr int64_t kParallelWork = int64_t(1) << 15;

// y [R, 2 dp + dl] = [cos(p) || sin(p) || l];  p [R, dp], l [R, dl]
template <class T>
void fan_forward(T* y, const T* p, const T* l, int64_t R, int64_t dp, int64_t dl) {
  const int64_t w = 2 * dp + dl;
#pragma omp parallel for schedule(static) if (R * w >= kParallelWork)
  for (int64_t r = 0; r < R; ++r) {
    const T* pr = p + r * dp;
    T* yr = y + r * w;
#pragma omp simd
    for (int64_t i = 0; i < dp; ++i) {
      yr[i] = std::cos(pr[i]);
      yr[dp + i] = std::sin(pr[i]);
    }
    std::copy(l + r * dl, l + (r + 1) * dl, yr + 2 * dp);
  }
}

// dp [R, dpw] = -sin(p) dy_cos + cos(p) dy_sin,  dl [R, dlw] = dy_l;  dy [R, 2 dpw + dlw]
template <class T>
void fan_backward(T* dp, T* dl, const T* dy, const T* p, int64_t R, int64_t dpw, int64_t dlw) {
  const int64_t w = 2 * dpw + dlw;
#pragma omp parallel for schedule(static) if (R * w >= kParallelWork)
  for (int64_t r = 0; r < R; ++r) {
    const T *pr = p + r * dpw, *dyr = dy + r * w;
    T* dpr = dp + r * dpw;
#pragma omp simd
    for (int64_t i = 0; i < dpw; ++i)
      dpr[i] = std::cos(pr[i]) * dyr[dpw + i] - std::sin(pr[i]) * dyr[i];
    std::copy(dyr + 2 * dpw, dyr + w, dl + r * dlw);
  }
}

FELA_INSTANTIATE_FLOAT(fan_forward)
FELA_INSTANTIATE_FLOAT(fan_backward)

}  // namespace fela::ops::cpu
