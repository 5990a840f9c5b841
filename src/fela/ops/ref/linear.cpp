// Linear oracle: triple loops with double accumulation.
#include "fela/ops/linear.h"

namespace fela::ops::ref {

namespace {
// W[i, o] for either storage layout.
template <class T>
T weight_at(const T* w, int64_t i, int64_t o, int64_t in, int64_t out, Layout lay) {
  return lay == Layout::InOut ? w[i * out + o] : w[o * in + i];
}
}  // namespace

template <class T>
void linear_forward(T* y, const T* x, const T* w, int64_t R, int64_t in, int64_t out, Layout lay) {
  for (int64_t r = 0; r < R; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double s = 0;
      for (int64_t i = 0; i < in; ++i) s += double(x[r * in + i]) * weight_at(w, i, o, in, out, lay);
      y[r * out + o] = T(s);
    }
}

template <class T>
void linear_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, int64_t R, int64_t in,
                     int64_t out, Layout lay, GradMode dx_mode) {
  if (dx)
    for (int64_t r = 0; r < R; ++r)
      for (int64_t i = 0; i < in; ++i) {
        double s = dx_mode == GradMode::Add ? double(dx[r * in + i]) : 0.0;
        for (int64_t o = 0; o < out; ++o)
          s += double(dy[r * out + o]) * weight_at(w, i, o, in, out, lay);
        dx[r * in + i] = T(s);
      }
  if (dw)
    for (int64_t i = 0; i < in; ++i)
      for (int64_t o = 0; o < out; ++o) {
        double s = 0;
        for (int64_t r = 0; r < R; ++r) s += double(x[r * in + i]) * dy[r * out + o];
        T& g = lay == Layout::InOut ? dw[i * out + o] : dw[o * in + i];
        g = T(g + s);
      }
}

FELA_INSTANTIATE_FLOAT(linear_forward)
FELA_INSTANTIATE_FLOAT(linear_backward)

}  // namespace fela::ops::ref
