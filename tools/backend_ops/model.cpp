// backend_ops check of the whole network: the same parameters on the CPU (double) and on the GPU
// (bf16 compute, fp32 master weights and gradients); loss, every parameter gradient and the
// logits must agree within what bf16 activations allow. A wrong op wiring on the GPU path (a
// dtype, a missed accumulation, a stale bf16 weight copy) shows as an error of order one.
#include "fela/model/model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "check.h"
#include "fela/core/bf16.h"

namespace fela::backend_ops {
namespace {

// Relative error bound for a network of L layers run with bf16 activations: each stored
// activation carries a relative rounding error of 2^-9, and a handful of them compound per layer
// (norm, projections, mixer, MLP), so a few percent is what a correct bf16 model shows on small
// random configs; an actual bug gives errors of order one.
constexpr double kModelTol = 5e-2;
// Per parameter tensor the bound is looser: a small tensor's gradient (a gain, a low-rank gate
// factor, FAN's projections) is a short sum of cancelling terms, and measured errors of correct
// runs reach 9% there. What this row exists to catch, a tensor whose gradient is missing,
// doubled, taken from the wrong dtype or stale weights, gives errors of order one.
constexpr double kTensorTol = 2e-1;

Vec host_values(const Tensor& t) {
  if (t.device() == Device::Cpu && t.dtype() == DType::F64) return values(t);
  Array tmp = Array::empty(t.dtype(), {t.numel()});
  tensor_copy(tmp, t.reshape({t.numel()}));
  Vec v(size_t(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i)
    v[size_t(i)] = t.dtype() == DType::F32 ? double(tmp.data<float>()[i])
                                           : double(float(tmp.data<BFloat16>()[i]));
  return v;
}

void report(const std::string& shape, const std::string& what, double err, double tol) {
  const bool finite = std::isfinite(err);
  Row row{"model", shape, "forward+backward", what, err, 0, tol, finite ? 0 : 1, true};
  std::printf(
      "| model | %s | forward+backward | %s | %.2e | - | %.2e (bf16 network) | %s | ok | %s |\n",
      shape.c_str(), what.c_str(), err, tol, finite ? "ok" : "NaN",
      row.pass() ? "PASS" : "**FAIL**");
  std::fflush(stdout);
  add_row(row);
}

void check_model(const std::string& name, const Config& c, int64_t B, int64_t N, double dropout,
                 Rng& rng) {
  const std::string shape = name + " " + dims({B, N});
  Model cpu(c, DType::F64), gpu(c, DType::BF16, ops::Impl::Fast, Device::Cuda);
  const uint64_t seed = rng.next_u64();
  cpu.init(seed);
  gpu.init(seed);
  const int64_t V = c.vocab_size();
  std::vector<int32_t> tok(size_t(B * N)), tgt(size_t(B * N));
  for (auto& t : tok) t = int32_t(rng.next_u64() % uint64_t(V));
  for (auto& t : tgt) t = int32_t(rng.next_u64() % uint64_t(V));
  tgt[1] = -1;  // an ignored position
  double loss[2];
  Model* ms[2] = {&cpu, &gpu};
  for (int k = 0; k < 2; ++k) {
    ms[k]->set_training(dropout > 0, 1234);
    ms[k]->zero_grad();
    ms[k]->forward(tok.data(), B, N);
    loss[k] = ms[k]->loss(tgt.data(), 1.0);
    ms[k]->backward();
  }
  report(shape, "loss", std::abs(loss[1] - loss[0]) / std::abs(loss[0]), kModelTol);
  report(shape, "all gradients", rel_err(host_values(gpu.grads()), host_values(cpu.grads())),
         kModelTol);
  // Per tensor, so that a wrong small tensor (a gain, a decay bias) is not hidden by the
  // matrices; failures get their own row, the worst tensor is always reported.
  double worst = 0;
  for (const ParamSpec& s : cpu.table().specs()) {
    const Vec g = host_values(cpu.table().view(gpu.grads(), s));
    const Vec r = host_values(cpu.table().view(cpu.grads(), s));
    const double e = rel_err(g, r);
    if (!(e <= kTensorTol)) report(shape, "grad " + s.name, e, kTensorTol);
    worst = std::max(worst, e);
  }
  report(shape, "worst single tensor gradient", worst, kTensorTol);
  cpu.set_training(false), gpu.set_training(false);
  cpu.forward(tok.data(), B, N);
  gpu.forward(tok.data(), B, N);
  Array lc = Array::empty(DType::F64, {B * N, V});
  Array lg = Array::empty(DType::F32, {B * N, V}, Device::Cuda);
  cpu.logits(lc, 0, B * N);
  gpu.logits(lg, 0, B * N);
  report(shape, "logits", rel_err(host_values(lg), values(lc)), kModelTol);
}

// Generation on the GPU: prefill of P tokens (in chunks of `chunk`), then one step per token;
// the logits at each position must match the parallel forward's on the GPU within bf16 noise
// (the recurrent and parallel forms round differently).
void check_generation(const std::string& name, const Config& c, int64_t B, int64_t N, int64_t P,
                      int64_t chunk, Rng& rng) {
  const std::string shape = name + " " + dims({B, N}) + " prefill " + std::to_string(P) +
                            " chunk " + std::to_string(chunk);
  Model m(c, DType::BF16, ops::Impl::Fast, Device::Cuda);
  m.init(rng.next_u64());
  const int64_t V = c.vocab_size();
  std::vector<int32_t> tok(size_t(B * N));
  for (auto& t : tok) t = int32_t(rng.next_u64() % uint64_t(V));
  m.forward(tok.data(), B, N);
  Array full = Array::empty(DType::F32, {B * N, V}, Device::Cuda);
  m.logits(full, 0, B * N);
  const Vec want_all = host_values(full);
  InferenceState st = m.new_state(B);
  Array out = Array::empty(DType::F32, {B, V}, Device::Cuda);
  std::vector<int32_t> part(static_cast<size_t>(B * P)), one(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < P; ++t) part[size_t(b * P + t)] = tok[size_t(b * N + t)];
  m.prefill(st, part.data(), P, out, chunk);
  double worst = 0;
  for (int64_t t = P - 1; t < N; ++t) {
    if (t >= P) {
      for (int64_t b = 0; b < B; ++b) one[size_t(b)] = tok[size_t(b * N + t)];
      m.step(st, one.data(), out);
    }
    const Vec got = host_values(out);
    Vec want(size_t(B * V));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t v = 0; v < V; ++v)
        want[size_t(b * V + v)] = want_all[size_t((b * N + t) * V + v)];
    worst = std::max(worst, rel_err(got, want));
  }
  report(shape, "step logits (worst position)", worst, kModelTol);
}

FELA_BACKEND_CHECKS(200, "model", "model config B x N", [](Context& ctx) {
  check_model("tiny", load_config("tiny", {"init_std=0.1"}), 2, 100, 0.0, ctx.rng);
  check_model("tiny", load_config("tiny", {"init_std=0.1", "chunk=16"}), 3, 77, 0.0, ctx.rng);
  const Config sw = load_config(
      "tiny", {"d_model=32", "n_heads=4", "n_kv_heads=2", "pattern=\"ASLA\"", "n_layers=4",
               "taps=8", "chunk=4", "mlp_hidden=48", "gate_rank=3", "fan_p=0.15", "cola_rank=8",
               "hybrid_norm=true", "gated_residual=true", "init_std=0.1"});
  check_model("all switches", sw, 2, 37, 0.0, ctx.rng);
  Config drop = sw;
  drop.dropout = 0.1;
  check_model("all switches, dropout 0.1", drop, 2, 37, 0.1, ctx.rng);
  const Config gen = load_config("tiny", {"init_std=0.1", "taps=16", "chunk=8"});
  check_generation("tiny", gen, 2, 70, 1, 2048, ctx.rng);
  check_generation("tiny", gen, 2, 70, 23, 5, ctx.rng);
  check_generation("all switches", sw, 2, 40, 9, 4, ctx.rng);
});

}  // namespace
}  // namespace fela::backend_ops
