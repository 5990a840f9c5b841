// AdamW: the optimizer state (moments on the parameters' device, decay ranges from the table)
// around the fused update op, gradient clipping, and the learning-rate schedule.
#include "fela/train/adamw.h"

#include <algorithm>
#include <cmath>

namespace fela {

namespace {
// The decay tensors of the table as element ranges of the flat buffer (in table order, which is
// offset order; the op merges neighbours).
std::vector<ops::DecayRange> decay_ranges(const ParamTable& table) {
  std::vector<ops::DecayRange> r;
  for (const ParamSpec& s : table.specs())
    if (s.decay) r.push_back({s.offset, s.offset + s.shape.numel()});
  return r;
}
}  // namespace

AdamW::AdamW(const ParamTable& table, DType dtype, AdamWOptions opt, Device device)
    : table_(table),
      opt_(opt),
      decay_(decay_ranges(table), device),
      m_(Array::zeros(dtype, {table.total()}, device)),
      v_(Array::zeros(dtype, {table.total()}, device)) {
  FELA_CHECK(device == Device::Cpu || dtype == DType::F32,
             "[adamw] moments on cuda are f32 (as the master weights), not ", dtype_name(dtype));
}

void AdamW::step(Tensor params, const Tensor& grads, double lr, double grad_scale, Tensor shadow) {
  ops::AdamWHyper h;
  h.lr = lr;
  h.beta1 = opt_.beta1;
  h.beta2 = opt_.beta2;
  h.eps = opt_.eps;
  h.weight_decay = opt_.weight_decay;
  h.t = t_ + 1;
  h.grad_scale = grad_scale;
  ops::adamw_update(params, grads, m_, v_, shadow, decay_, h);
  t_ = h.t;
}

double AdamW::grad_norm(const Tensor& grads) const { return std::sqrt(ops::grad_norm_sq(grads)); }

std::vector<io::TensorRef> AdamW::state_tensors() const {
  std::vector<io::TensorRef> out;
  for (const ParamSpec& s : table_.specs()) out.push_back({"adam.m." + s.name, table_.view(m_, s)});
  for (const ParamSpec& s : table_.specs()) out.push_back({"adam.v." + s.name, table_.view(v_, s)});
  return out;
}

void AdamW::load_state(const io::SafetensorsReader& r) {
  for (Array* arr : {&m_, &v_}) {
    const char* prefix = arr == &m_ ? "adam.m." : "adam.v.";
    // the file is read on the host; GPU moments get one copy of the whole buffer
    Array staging;
    if (arr->device() != Device::Cpu) staging = Array::empty(arr->dtype(), {table_.total()});
    const Tensor host = arr->device() == Device::Cpu ? arr->view() : staging.view();
    for (const ParamSpec& s : table_.specs()) {
      const std::string name = prefix + s.name;
      FELA_CHECK(r.contains(name), "[checkpoint] optimizer.safetensors: tensor ", name,
                 " is missing");
      r.read_converted(name, table_.view(host, s));
    }
    if (arr->device() != Device::Cpu) tensor_copy(*arr, staging);
  }
}

double clip_scale(double norm, double max_norm) {
  return max_norm > 0 && norm > max_norm ? max_norm / (norm + 1e-12) : 1.0;
}

double clip_grad_norm(Tensor grads, double max_norm) {
  FELA_CHECK(grads.device() == Device::Cpu,
             "[train] clip_grad_norm scales CPU gradients; on the GPU pass clip_scale(norm, "
             "max_norm) to AdamW::step");
  const double norm = std::sqrt(ops::grad_norm_sq(grads));
  const double s = clip_scale(norm, max_norm);
  if (s == 1.0) return norm;
  const int64_t n = grads.numel();
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
