// backend_ops checks of the fused AdamW update and the squared gradient norm.
// Update: params, m, v (f32) and the bf16 shadow against Impl::Ref in double on the same f32
// inputs, with lr * weight_decay = 0.1 so that a decay applied to the wrong element shows: beyond
// the norm-wise rows, one row counts the elements whose decay is wrong (a difference from the
// oracle of half the decay term or more). Decay ranges with odd boundaries that split the
// kernel's 4-element groups, a one-element range, touching ranges, and a run of 200 small ones.
// "unaligned" runs on views one element into their buffers (the scalar path); the element before
// must stay as it was. Norm: against the oracle's double sum, and twice, for the same bits.
#include "fela/ops/adamw.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "check.h"

namespace fela::backend_ops {
namespace {

using ops::DecayRange;
using ops::Impl;
using Ranges = std::vector<DecayRange>;

constexpr double kLead = 1.5;  // the value before an unaligned view, which must not change

// lead copies of x0, then x: the contents of a buffer whose view starts `lead` elements in.
Vec with_lead(const Vec& x, int64_t lead, double x0) {
  Vec out(static_cast<size_t>(lead), x0);
  out.insert(out.end(), x.begin(), x.end());
  return out;
}

Tensor view_at(const DeviceBuf& b, int64_t lead, int64_t n) {
  return Tensor(static_cast<char*>(b.view.raw()) + lead * int64_t(dtype_size(b.dtype)), b.dtype,
                {n}, Device::Cuda);
}

void print_row(const Row& row, const std::string& out, const std::string& err,
               const std::string& naive, const std::string& tol) {
  std::printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", row.op.c_str(),
              row.shape.c_str(), row.dir.c_str(), out.c_str(), err.c_str(), naive.c_str(),
              tol.c_str(), row.nan ? "NaN" : "ok", row.guards_ok ? "ok" : "OVERWRITTEN",
              row.pass() ? "PASS" : "**FAIL**");
  std::fflush(stdout);
  add_row(row);
}

Ranges odd_ranges(int64_t P) {
  if (P == 1) return {{0, 1}};
  if (P < 100) return {{0, 3}, {5, 6}, {6, 7}, {13, 22}, {P - 2, P}};
  Ranges r = {{1, 4097}, {5001, 5002}, {70001, 500001}, {500001, 500003}};
  for (int64_t k = 0; k < 200; ++k) r.push_back({600000 + 7 * k, 600003 + 7 * k});
  r.push_back({P - 1003, P});
  return r;
}

void check_update(int64_t P, bool shadow, int64_t lead, Rng& rng) {
  const Ranges ranges = odd_ranges(P);
  const ops::DecayRanges host_ranges(ranges), dev_ranges(ranges, Device::Cuda);
  const std::string shape =
      dims({P}) + " K=" + std::to_string(host_ranges.size()) + (lead ? " unaligned" : "");
  ops::AdamWHyper h;
  h.lr = 0.01;
  h.weight_decay = 10.0;  // p shrinks by 10% where decayed
  h.t = 3;
  h.grad_scale = 0.8;
  const Vec p = rounded(normal(P, rng), DType::F32), g = rounded(normal(P, rng), DType::F32);
  const Vec m = rounded(normal(P, rng, 0.1), DType::F32);
  Vec v = normal(P, rng, 0.1);
  for (double& x : v) x = x * x + 1e-4;  // a second moment: positive
  v = rounded(v, DType::F32);

  Array hp = host_f64(p, {P}), hg = host_f64(g, {P}), hm = host_f64(m, {P}), hv = host_f64(v, {P});
  ops::adamw_update(hp, hg, hm, hv, Tensor(), host_ranges, h, Impl::Ref);

  const int64_t n = lead + P;
  DeviceBuf dp = device_buf(DType::F32, {n}, with_lead(p, lead, kLead));
  DeviceBuf dg = device_buf(DType::F32, {n}, with_lead(g, lead, kLead));
  DeviceBuf dm = device_buf(DType::F32, {n}, with_lead(m, lead, kLead));
  DeviceBuf dv = device_buf(DType::F32, {n}, with_lead(v, lead, kLead));
  // the shadow starts as NaN (poison when aligned): an element not written shows
  DeviceBuf ds =
      lead ? device_buf(
                 DType::BF16, {n},
                 with_lead(Vec(size_t(P), std::numeric_limits<double>::quiet_NaN()), lead, kLead))
           : device_buf(DType::BF16, {n});
  ops::adamw_update(view_at(dp, lead, P), view_at(dg, lead, P), view_at(dm, lead, P),
                    view_at(dv, lead, P), shadow ? view_at(ds, lead, P) : Tensor(), dev_ranges, h);
  const std::string dir = shadow ? "update, shadow" : "update";
  check("adamw", shape, dir, "p", dp, with_lead(values(hp), lead, kLead));
  check("adamw", shape, dir, "m", dm, with_lead(values(hm), lead, kLead));
  check("adamw", shape, dir, "v", dv, with_lead(values(hv), lead, kLead));
  check("adamw", shape, dir, "grads (read only)", dg, with_lead(g, lead, kLead));
  if (shadow) check("adamw", shape, dir, "shadow", ds, with_lead(values(hp), lead, kLead));

  const Readback r = read_back(dp);
  const Vec oracle = values(hp);
  const double lr_wd = h.lr * h.weight_decay;
  int64_t wrong = 0;
  for (int64_t i = 0; i < P; ++i)
    wrong += std::abs(p[size_t(i)]) >= 1e-2 &&
             std::abs(r.values[size_t(lead + i)] - oracle[size_t(i)]) >=
                 0.5 * lr_wd * std::abs(p[size_t(i)]);
  Row row{"adamw", shape, dir, "decay", double(wrong), 0, 0, r.nan, r.guards_ok};
  print_row(row, "decay of p", std::to_string(wrong) + " wrong", "exact", "0 wrong");
}

// The oracle adds 1e6 squares one after another in double: its own error reaches n * 1.1e-16
// at worst (about 1e-13 typically), while the GPU's tree of short sums is near 1e-15.
constexpr double kNormTol = 1e-11;

void check_norm(int64_t n, int64_t lead, Rng& rng) {
  const std::string shape = dims({n}) + (lead ? " unaligned" : "");
  const Vec g = rounded(normal(n, rng, 3.0), DType::F32);
  const double want = ops::grad_norm_sq(host_f64(g, {n}), Impl::Ref);
  DeviceBuf dg = device_buf(DType::F32, {lead + n}, with_lead(g, lead, kLead));
  const Tensor view = view_at(dg, lead, n);
  const double first = ops::grad_norm_sq(view), second = ops::grad_norm_sq(view);
  const Readback r = read_back(dg);
  bool untouched = r.guards_ok;
  for (int64_t i = 0; i < n; ++i)
    untouched = untouched && r.values[size_t(lead + i)] == g[size_t(i)];
  const double err = std::abs(first - want) / want;
  Row row{"adamw", shape, "grad_norm_sq", "sum", err, 0, kNormTol, r.nan, untouched};
  char e[32], t[96];
  std::snprintf(e, sizeof e, "%.2e", err);
  std::snprintf(t, sizeof t, "%.0e (the oracle's own sequential double sum)", kNormTol);
  print_row(row, "sum f64", e, "-", t);
  const bool same = std::memcmp(&first, &second, sizeof first) == 0;
  Row again{"adamw", shape, "grad_norm_sq, twice", "same bits", same ? 0.0 : 1.0, 0, 0, 0, true};
  print_row(again, "bits", same ? "identical" : "DIFFER", "exact", "identical");
}

FELA_BACKEND_CHECKS(150, "adamw", "adamw P (K decay ranges)", [](Context& c) {
  for (int64_t P : {1, 33, 1000003}) {
    if (!c.run(P)) continue;
    check_update(P, true, 0, c.rng);
    check_update(P, false, 0, c.rng);
    check_update(P, true, 1, c.rng);
  }
  for (int64_t n : {int64_t(1), int64_t(33), int64_t(1000003), (int64_t(1) << 24) + 3}) {
    if (!c.run(n)) continue;
    check_norm(n, 0, c.rng);
    if (n == 33 || n == 1000003) check_norm(n, 1, c.rng);
  }
});

}  // namespace
}  // namespace fela::backend_ops
