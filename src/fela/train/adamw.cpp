#include "fela/train/adamw.h"

#include <algorithm>
#include <cmath>

namespace fela {

AdamW::AdamW(const ParamTable& table, DType dtype, AdamWOptions opt)
    : table_(table),
      opt_(opt),
      m_(Array::zeros(dtype, {table.total()})),
      v_(Array::zeros(dtype, {table.total()})) {}

namespace {
template <class T>
void adamw_update(T* p, const T* g, T* m, T* v, int64_t n, double lr, double wd, double b1,
                  double b2, double eps, double bc1, double bc2) {
  const T tb1 = T(b1), tb2 = T(b2), step = T(lr / bc1), inv_bc2 = T(1.0 / bc2), teps = T(eps);
  const T decay = T(1.0 - lr * wd);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    m[i] = tb1 * m[i] + (T(1) - tb1) * g[i];
    v[i] = tb2 * v[i] + (T(1) - tb2) * g[i] * g[i];
    p[i] = p[i] * decay - step * m[i] / (std::sqrt(v[i] * inv_bc2) + teps);
  }
}
}  // namespace

void AdamW::step(Tensor params, const Tensor& grads, double lr) {
  ++t_;
  const double bc1 = 1.0 - std::pow(opt_.beta1, double(t_));
  const double bc2 = 1.0 - std::pow(opt_.beta2, double(t_));
  for (const ParamSpec& s : table_.specs()) {
    const int64_t n = s.shape.numel();
    const double wd = s.decay ? opt_.weight_decay : 0.0;
    if (params.dtype() == DType::F64)
      adamw_update(params.data<double>() + s.offset, grads.data<double>() + s.offset,
                   m_.data<double>() + s.offset, v_.data<double>() + s.offset, n, lr, wd,
                   opt_.beta1, opt_.beta2, opt_.eps, bc1, bc2);
    else
      adamw_update(params.data<float>() + s.offset, grads.data<float>() + s.offset,
                   m_.data<float>() + s.offset, v_.data<float>() + s.offset, n, lr, wd, opt_.beta1,
                   opt_.beta2, opt_.eps, bc1, bc2);
  }
}

std::vector<io::TensorRef> AdamW::state_tensors() const {
  std::vector<io::TensorRef> out;
  for (const ParamSpec& s : table_.specs()) out.push_back({"adam.m." + s.name, table_.view(m_, s)});
  for (const ParamSpec& s : table_.specs()) out.push_back({"adam.v." + s.name, table_.view(v_, s)});
  return out;
}

void AdamW::load_state(const io::SafetensorsReader& r) {
  for (const ParamSpec& s : table_.specs()) {
    for (auto [prefix, arr] : {std::pair{"adam.m.", &m_}, std::pair{"adam.v.", &v_}}) {
      const std::string name = prefix + s.name;
      FELA_CHECK(r.contains(name), "[checkpoint] optimizer.safetensors: tensor ", name,
                 " is missing");
      r.read_converted(name, table_.view(*arr, s));
    }
  }
}

double clip_grad_norm(Tensor grads, double max_norm) {
  double ss = 0;
  const int64_t n = grads.numel();
  if (grads.dtype() == DType::F64) {
    const double* g = grads.data<double>();
#pragma omp parallel for reduction(+ : ss) schedule(static)
    for (int64_t i = 0; i < n; ++i) ss += g[i] * g[i];
  } else {
    const float* g = grads.data<float>();
#pragma omp parallel for reduction(+ : ss) schedule(static)
    for (int64_t i = 0; i < n; ++i) ss += double(g[i]) * g[i];
  }
  const double norm = std::sqrt(ss);
  if (max_norm > 0 && norm > max_norm) {
    const double s = max_norm / (norm + 1e-12);
    if (grads.dtype() == DType::F64) {
      double* g = grads.data<double>();
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i) g[i] *= s;
    } else {
      float* g = grads.data<float>();
      const float fs = float(s);
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i) g[i] *= fs;
    }
  }
  return norm;
}

double lr_at(int64_t step, int64_t total, int64_t warmup, double lr, double min_lr) {
  if (warmup > 0 && step < warmup) return lr * double(step + 1) / double(warmup);
  if (total <= warmup) return lr;
  const double progress =
      std::min(1.0, double(step - warmup) / double(std::max<int64_t>(1, total - warmup)));
  return min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

}  // namespace fela
