// FAN projection oracle: plain loops, cos and sin in double.
#include "fela/ops/fan.h"

#include <cmath>

namespace fela::ops::ref {

// y [R, 2 dp + dl] = [cos(p) || sin(p) || l];  p [R, dp], l [R, dl]
template <class T>
void fan_forward(T* y, const T* p, const T* l, int64_t R, int64_t dp, int64_t dl) {
  const int64_t dy = 2 * dp + dl;
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t i = 0; i < dp; ++i) {
      const double v = p[r * dp + i];
      y[r * dy + i] = T(std::cos(v));
      y[r * dy + dp + i] = T(std::sin(v));
    }
    for (int64_t i = 0; i < dl; ++i) y[r * dy + 2 * dp + i] = l[r * dl + i];
  }
}

// dp [R, dpw] = -sin(p) dy_cos + cos(p) dy_sin,  dl [R, dlw] = dy_l;  dy [R, 2 dpw + dlw]
template <class T>
void fan_backward(T* dp, T* dl, const T* dy, const T* p, int64_t R, int64_t dpw, int64_t dlw) {
  const int64_t w = 2 * dpw + dlw;
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t i = 0; i < dpw; ++i) {
      const double v = p[r * dpw + i];
      dp[r * dpw + i] =
          T(-std::sin(v) * double(dy[r * w + i]) + std::cos(v) * double(dy[r * w + dpw + i]));
    }
    for (int64_t i = 0; i < dlw; ++i) dl[r * dlw + i] = dy[r * w + 2 * dpw + i];
  }
}

FELA_INSTANTIATE_FLOAT(fan_forward)
FELA_INSTANTIATE_FLOAT(fan_backward)

}  // namespace fela::ops::ref
