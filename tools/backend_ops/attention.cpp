// backend_ops checks of RoPE and causal GQA attention (attention.h), forward and backward, with
// and without probability dropout, against the oracle in double on the same bf16 inputs.
// Backward gets o and lse as the forward stores them (bf16, fp32), computed by the oracle, so
// that its check does not inherit the forward's error. The dropout mask shows in every output
// (a wrong kept/dropped bit moves a whole probability); backward is also run twice and must
// repeat itself bit for bit (no atomics).
// Tolerances: RoPE and lse by check(). o, dq, dk, dv by FlashAttention's rule: 2 x the error of
// a version at the kernels' precision (P' and dS rounded to bf16 as tensor-core operands,
// everything else exact), which includes the output's rounding; see bf_attention.
#include "fela/ops/attention.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "check.h"
#include "fela/ops/dropout_hash.h"

namespace fela::backend_ops {
namespace {

using ops::Impl;

constexpr double kTheta = 10000.0;  // SPEC §4

void check_rope(int64_t B, int64_t N, int64_t H, int64_t Dh, int64_t pos0, Rng& rng) {
  const std::string shape = dims({B, N, H, Dh}) + " pos0=" + std::to_string(pos0);
  const Shape s{B, N, H, Dh};
  const Vec x = rounded(normal(s.numel(), rng), DType::BF16);
  const Vec dy = rounded(normal(s.numel(), rng), DType::BF16);
  Array hx = host_f64(x, s), hdy = host_f64(dy, s);
  Array hy = Array::empty(DType::F64, s), hdx = Array::empty(DType::F64, s);
  ops::rope_forward(hy, hx, pos0, kTheta, Impl::Ref);
  ops::rope_backward(hdx, hdy, pos0, kTheta, Impl::Ref);
  for (bool in_place : {false, true}) {
    DeviceBuf gx = device_buf(DType::BF16, s, x), sep = device_buf(DType::BF16, s);
    const DeviceBuf& y = in_place ? gx : sep;
    ops::rope_forward(y.view, gx.view, pos0, kTheta);
    check("rope", shape, in_place ? "forward, y = x" : "forward", "y", y, values(hy));
    DeviceBuf gdy = device_buf(DType::BF16, s, dy), sepd = device_buf(DType::BF16, s);
    const DeviceBuf& dx = in_place ? gdy : sepd;
    ops::rope_backward(dx.view, gdy.view, pos0, kTheta);
    check("rope", shape, in_place ? "backward, dx = dy" : "backward", "dx", dx, values(hdx));
  }
}

// A row saying whether two runs wrote the same bits.
void check_repeat(const std::string& shape, const std::string& dir, const std::string& out,
                  const DeviceBuf& a, const DeviceBuf& b) {
  const Readback ra = read_back(a), rb = read_back(b);
  int64_t differ = 0;
  for (size_t i = 0; i < ra.values.size(); ++i)
    differ += std::memcmp(&ra.values[i], &rb.values[i], sizeof(double)) != 0;
  Row row{"attention", shape,           dir,
          out,         double(differ),  0,
          0,           ra.nan + rb.nan, ra.guards_ok && rb.guards_ok};
  std::printf("| attention | %s | %s | %s %s | %lld differ | exact | 0 differ | %s | %s | %s |\n",
              shape.c_str(), dir.c_str(), out.c_str(), std::string(dtype_name(a.dtype)).c_str(),
              (long long)differ, row.nan ? "NaN" : "ok", row.guards_ok ? "ok" : "OVERWRITTEN",
              row.pass() ? "PASS" : "**FAIL**");
  std::fflush(stdout);
  add_row(row);
}

// The sizes and constants of one attention check.
struct AttnShape {
  int64_t B, Nq, Nk, H, Hkv, Dh;
  double p;  // dropout
};

// What a kernel computes that feeds the tensor cores bf16 operands as FlashAttention does: the
// oracle's formulas in double, except that P' (into o = P' v and dv = P'^T do) and dS (into
// dq = scale dS k and dk = scale dS^T q) are rounded to bf16. Its error is the "naive" error of
// this precision (FlashAttention's tests compare with such a same-precision version too).
// tq, tk are dq and dk with every dS = P (dP M - D) replaced by P (|dP M| + |D|): the size of
// the terms that cancel in dS, which an fp32 kernel resolves only to their fp32 rounding. At
// Nk = 1, say, dS is nothing but the bf16 rounding residue of the stored o.
struct BfAttention {
  Vec o, dq, dk, dv, tq, tk;
};

BfAttention bf_attention(const AttnShape& a, double scale, uint64_t seed, const Vec& q,
                         const Vec& k, const Vec& v, const Vec& d_o, const Vec& o_st,
                         const Vec& lse_st) {
  const int64_t group = a.H / a.Hkv, off = a.Nk - a.Nq, Dh = a.Dh;
  BfAttention r{Vec(q.size()), Vec(q.size()), Vec(k.size()),
                Vec(k.size()), Vec(q.size()), Vec(k.size())};
  auto dot = [Dh](const Vec& x, int64_t i, const Vec& y, int64_t j) {
    double s = 0;
    for (int64_t e = 0; e < Dh; ++e) s += x[size_t(i + e)] * y[size_t(j + e)];
    return s;
  };
  auto bf = [](double x) { return stored(x, DType::BF16); };
  Vec sc(size_t(a.Nk));  // scaled scores of one query row
  for (int64_t b = 0; b < a.B; ++b)
    for (int64_t h = 0; h < a.H; ++h)
      for (int64_t n = 0; n < a.Nq; ++n) {
        const int64_t g = h / group, qi = ((b * a.Nq + n) * a.H + h) * Dh, last = off + n;
        const int64_t row = (b * a.H + h) * a.Nq + n;  // of lse; row * Nk is the mask's
        auto kv = [&](int64_t j) { return ((b * a.Nk + j) * a.Hkv + g) * Dh; };
        auto mask = [&](int64_t j) {  // keep / (1 - p), 1 without dropout
          if (a.p == 0) return 1.0;
          return ops::dropout_keep(seed, uint64_t(row * a.Nk + j), a.p) ? 1.0 / (1.0 - a.p) : 0.0;
        };
        double m = -INFINITY, sum = 0;
        for (int64_t j = 0; j <= last; ++j) {
          sc[size_t(j)] = dot(q, qi, k, kv(j)) * scale;
          m = std::max(m, sc[size_t(j)]);
        }
        for (int64_t j = 0; j <= last; ++j) sum += std::exp(sc[size_t(j)] - m);
        const double lse = m + std::log(sum), lse_b = lse_st[size_t(row)];
        const double D = dot(d_o, qi, o_st, qi);
        for (int64_t j = 0; j <= last; ++j) {
          const int64_t ki = kv(j);
          const double mf = mask(j), P = std::exp(sc[size_t(j)] - lse);
          const double Pb = std::exp(sc[size_t(j)] - lse_b), dp = dot(d_o, qi, v, ki) * mf;
          const double po = bf(P) * mf, pb = bf(Pb * mf), ds = bf(Pb * (dp - D));
          const double t = Pb * (std::abs(dp) + std::abs(D));
          for (int64_t e = 0; e < Dh; ++e) {
            const size_t x = size_t(qi + e), y = size_t(ki + e);
            r.o[x] += po * v[y];
            r.dq[x] += scale * ds * k[y];
            r.dk[y] += scale * ds * q[x];
            r.dv[y] += pb * d_o[x];
            r.tq[x] += scale * t * std::abs(k[y]);
            r.tk[y] += scale * t * std::abs(q[x]);
          }
        }
      }
  return r;
}

double norm(const Vec& x) {
  double s = 0;
  for (double e : x) s += e * e;
  return std::sqrt(s);
}

// The tolerance of a bf16 attention output: 2 x the error of the bf16-operand version (its
// output rounded to bf16, so never below check()'s naive) + the floor; for dq and dk the floor
// applies to the cancelling terms when they exceed the result.
double attn_tol(const Vec& bf_version, const Vec& oracle, const Vec* terms = nullptr) {
  const double naive = rel_err(rounded(oracle, DType::BF16), oracle);
  const double bfv = rel_err(rounded(bf_version, DType::BF16), oracle);
  const double no = norm(oracle);
  const double cancel = terms && no > 0 ? std::max(1.0, norm(*terms) / no) : 1.0;
  return 2 * std::max(naive, bfv) + kFloor * cancel;
}

// One attention check's inputs and what the CPU says about them (host only).
struct AttnCase {
  uint64_t seed;
  double scale;
  Vec q, k, v, d_o;
  Vec o, lse;        // the oracle's forward
  Vec o_st, lse_st;  // the same as a forward stores them (bf16, fp32): backward's inputs
  Vec dq, dk, dv;    // the oracle's backward from o_st, lse_st
  double tol_o, tol_dq, tol_dk, tol_dv;
};

AttnCase attention_case(const AttnShape& a, Rng& rng) {
  AttnCase c;
  c.seed = rng.next_u64();
  c.scale = 1.0 / std::sqrt(double(a.Dh));
  const Shape qs{a.B, a.Nq, a.H, a.Dh}, ks{a.B, a.Nk, a.Hkv, a.Dh}, ls{a.B, a.H, a.Nq};
  c.q = rounded(normal(qs.numel(), rng), DType::BF16);
  c.k = rounded(normal(ks.numel(), rng), DType::BF16);
  c.v = rounded(normal(ks.numel(), rng), DType::BF16);
  c.d_o = rounded(normal(qs.numel(), rng), DType::BF16);
  Array hq = host_f64(c.q, qs), hk = host_f64(c.k, ks), hv = host_f64(c.v, ks),
        hdo = host_f64(c.d_o, qs);
  Array ho = Array::empty(DType::F64, qs), hl = Array::empty(DType::F64, ls);
  ops::attention_forward(ho, hl, hq, hk, hv, c.scale, Impl::Ref, a.p, c.seed);
  c.o = values(ho);
  c.lse = values(hl);
  c.o_st = rounded(c.o, DType::BF16);
  c.lse_st = rounded(c.lse, DType::F32);
  Array ho_st = host_f64(c.o_st, qs), hl_st = host_f64(c.lse_st, ls);
  Array hdq = Array::empty(DType::F64, qs), hdk = Array::empty(DType::F64, ks),
        hdv = Array::empty(DType::F64, ks);
  ops::attention_backward(hdq, hdk, hdv, hdo, hq, hk, hv, ho_st, hl_st, c.scale, Impl::Ref, a.p,
                          c.seed);
  c.dq = values(hdq);
  c.dk = values(hdk);
  c.dv = values(hdv);
  const BfAttention bfa = bf_attention(a, c.scale, c.seed, c.q, c.k, c.v, c.d_o, c.o_st, c.lse_st);
  c.tol_o = attn_tol(bfa.o, c.o);
  c.tol_dq = attn_tol(bfa.dq, c.dq, &bfa.tq);
  c.tol_dk = attn_tol(bfa.dk, c.dk, &bfa.tk);
  c.tol_dv = attn_tol(bfa.dv, c.dv);
  return c;
}

void check_attention(const AttnShape& a, Rng& rng) {
  char pd[16];
  std::snprintf(pd, sizeof pd, " p=%.1f", a.p);
  const std::string shape = dims({a.B, a.Nq, a.Nk, a.H, a.Hkv, a.Dh}) + pd;
  const AttnCase c = attention_case(a, rng);
  const Shape qs{a.B, a.Nq, a.H, a.Dh}, ks{a.B, a.Nk, a.Hkv, a.Dh}, ls{a.B, a.H, a.Nq};
  const std::string why = "2 x bf16-operand version", why_ds = why + ", cancelling dS terms";

  DeviceBuf gq = device_buf(DType::BF16, qs, c.q), gk = device_buf(DType::BF16, ks, c.k),
            gv = device_buf(DType::BF16, ks, c.v);
  DeviceBuf o = device_buf(DType::BF16, qs), lse = device_buf(DType::F32, ls);
  ops::attention_forward(o.view, lse.view, gq.view, gk.view, gv.view, c.scale, Impl::Fast, a.p,
                         c.seed);
  check_tol("attention", shape, "forward", "o", o, c.o, c.tol_o, why);
  check("attention", shape, "forward", "lse", lse, c.lse);

  DeviceBuf gdo = device_buf(DType::BF16, qs, c.d_o), go = device_buf(DType::BF16, qs, c.o_st),
            gl = device_buf(DType::F32, ls, c.lse_st);
  std::array<DeviceBuf, 2> dq, dk, dv;
  for (int run = 0; run < 2; ++run) {
    dq[run] = device_buf(DType::BF16, qs);
    dk[run] = device_buf(DType::BF16, ks);
    dv[run] = device_buf(DType::BF16, ks);
    ops::attention_backward(dq[run].view, dk[run].view, dv[run].view, gdo.view, gq.view, gk.view,
                            gv.view, go.view, gl.view, c.scale, Impl::Fast, a.p, c.seed);
  }
  check_tol("attention", shape, "backward", "dq", dq[0], c.dq, c.tol_dq, why_ds);
  check_tol("attention", shape, "backward", "dk", dk[0], c.dk, c.tol_dk, why_ds);
  check_tol("attention", shape, "backward", "dv", dv[0], c.dv, c.tol_dv, why);
  check_repeat(shape, "backward, rerun", "dq", dq[0], dq[1]);
  check_repeat(shape, "backward, rerun", "dk", dk[0], dk[1]);
  check_repeat(shape, "backward, rerun", "dv", dv[0], dv[1]);
}

FELA_BACKEND_CHECKS(140, "attention", "rope B x N x H x Dh, attention B x Nq x Nk x H x Hkv x Dh",
                    [](Context& c) {
                      for (auto [B, N, H, Dh] : {std::array<int64_t, 4>{1, 1, 1, 2},
                                                 {2, 37, 4, 16},
                                                 {3, 5, 2, 6},
                                                 {1, 333, 4, 128},
                                                 {2, 1024, 12, 64}})
                        for (int64_t pos0 : {int64_t(0), int64_t(100000)})
                          if (c.run(B * N * H * Dh)) check_rope(B, N, H, Dh, pos0, c.rng);
                      // Last: a decode step (Nq = 1) against a long cache, Dh 80 (padded to
                      // 128 in the kernels) and an odd Dh that takes the unvectorised loads.
                      for (auto [B, Nq, Nk, H, Hkv, Dh] : {std::array<int64_t, 6>{1, 1, 1, 1, 1, 2},
                                                           {2, 37, 37, 4, 2, 16},
                                                           {1, 1, 300, 8, 8, 64},
                                                           {2, 129, 129, 6, 3, 64},
                                                           {1, 1024, 1024, 12, 12, 64},
                                                           {1, 333, 500, 4, 1, 128},
                                                           {3, 50, 77, 2, 1, 6},
                                                           {1, 65, 65, 2, 2, 80},
                                                           {2, 1, 4099, 4, 2, 128},
                                                           {1, 40, 41, 3, 3, 33}})
                        for (double p : {0.0, 0.2})
                          if (c.run(B * H * Nq * Nk))
                            check_attention({B, Nq, Nk, H, Hkv, Dh, p}, c.rng);
                    });

}  // namespace
}  // namespace fela::backend_ops
