// AdamW and the squared gradient norm, the oracle: plain loops in double.
#include "fela/ops/adamw.h"

#include <cmath>

namespace fela::ops::ref {

template <class T>
void adamw_update(T* p, const T* g, T* m, T* v, int64_t n, const DecayRange* decay, int64_t ndecay,
                  const AdamWHyper& h) {
  const double bc1 = 1.0 - std::pow(h.beta1, double(h.t));
  const double bc2 = 1.0 - std::pow(h.beta2, double(h.t));
  int64_t k = 0;  // the first decay range that ends after i
  for (int64_t i = 0; i < n; ++i) {
    while (k < ndecay && decay[k].end <= i) ++k;
    const double wd = k < ndecay && decay[k].begin <= i ? h.weight_decay : 0.0;
    const double gi = h.grad_scale * double(g[i]);
    const double mi = h.beta1 * double(m[i]) + (1.0 - h.beta1) * gi;
    const double vi = h.beta2 * double(v[i]) + (1.0 - h.beta2) * gi * gi;
    const double m_hat = mi / bc1, v_hat = vi / bc2;
    p[i] = T(double(p[i]) * (1.0 - h.lr * wd) - h.lr * m_hat / (std::sqrt(v_hat) + h.eps));
    m[i] = T(mi);
    v[i] = T(vi);
  }
}

template <class T>
double grad_norm_sq(const T* g, int64_t n) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += double(g[i]) * double(g[i]);
  return ss;
}

FELA_INSTANTIATE_FLOAT(adamw_update)
FELA_INSTANTIATE_FLOAT(grad_norm_sq)

}  // namespace fela::ops::ref
