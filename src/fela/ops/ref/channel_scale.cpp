// Per-channel scaling oracle: plain loops, dg summed over rows in double.
#include "fela/ops/channel_scale.h"

#include <vector>

namespace fela::ops::ref {

template <class T>
void channel_scale_forward(T* y, const T* x, const T* g, int64_t R, int64_t d) {
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < d; ++c) y[r * d + c] = T(double(x[r * d + c]) * g[c]);
}

template <class T>
void channel_scale_backward(T* dx, T* dg, const T* dy, const T* x, const T* g, int64_t R,
                            int64_t d) {
  std::vector<double> acc(size_t(d), 0.0);  // [d] sum_r dy x
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < d; ++c) {
      const double gy = dy[r * d + c];  // read before dx (which may alias dy) is written
      acc[c] += gy * x[r * d + c];
      dx[r * d + c] = T(gy * g[c]);
    }
  for (int64_t c = 0; c < d; ++c) dg[c] = T(dg[c] + acc[c]);
}

FELA_INSTANTIATE_FLOAT(channel_scale_forward)
FELA_INSTANTIATE_FLOAT(channel_scale_backward)

}  // namespace fela::ops::ref
