// backend_ops checks of gated linear attention (ops/gla.h): forward (o, state_out; without a
// state, and with one updated in place as generation does), backward (dq, dk, dv, da), and
// generation's N = 1 steps chained after a chunked prefill, each against the oracle
// (Impl::Ref in double) on the same bf16 / f32 inputs.
//
// Decay: "ordinary" a = logsigmoid(x) / 16 (the model's gate, x ~ N(0, 1)); "strong" a down to
// -20 per token, where exp of a chunk's cumulative decay underflows fp32 and a ratio of
// exponentials would overflow (and the kernels' 16-token diagonal blocks take their
// channel-by-channel path); "mixed" a = logsigmoid(3 x), whose 16-token spans reach e^40 (the
// factored diagonal at its limit).
//
// da's tolerance: the kernels form da_r = sum_{t >= r} (q_t dq_t - k_t dk_t) from fp32 dq and
// dk computed on tensor cores with operands split into two bf16 terms (16 significant bits), one
// chunk of 64 tokens at a time plus the exact later part (which equals da at the next chunk's
// start). fp32 storage's 2 x naive is out of reach for such sums; the bound used is their
// first-order error bound: 2^-16 x || sum within the chunk of |q_t dq_t| + |k_t dk_t|, plus
// |da at the next chunk's start| || / ||da||, + 1e-5.
#include "fela/ops/gla.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "check.h"

namespace fela::backend_ops {
namespace {

using ops::Impl;

enum class Decay { Ordinary, Strong, Mixed };
constexpr int64_t kChunk = 64;  // the model's chunk, and the CUDA kernels' own

const char* decay_name(Decay d) {
  return d == Decay::Ordinary ? "ordinary" : d == Decay::Strong ? "strong" : "mixed";
}

double logsigmoid(double x) {
  return x < 0 ? x - std::log1p(std::exp(x)) : -std::log1p(std::exp(-x));
}

Vec decay(int64_t n, Decay kind, Rng& rng) {
  Vec a(static_cast<size_t>(n));
  for (double& x : a) {
    if (kind == Decay::Strong)
      x = -20.0 * rng.uniform();
    else
      x = kind == Decay::Ordinary ? logsigmoid(rng.normal()) / 16 : logsigmoid(3 * rng.normal());
  }
  return rounded(a, DType::F32);
}

// The first-order bound on da's relative error described at the top of the file.
double da_bound(const Vec& q, const Vec& k, const Vec& dq, const Vec& dk, const Vec& da, int64_t B,
                int64_t N, int64_t H, int64_t Dk) {
  double nm = 0, nd = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Dk; ++i) {
        double m = 0;
        for (int64_t t = N - 1; t >= 0; --t) {
          const size_t x = size_t(((b * N + t) * H + h) * Dk + i);
          if ((t + 1) % kChunk == 0 && t + 1 < N) m = std::fabs(da[x + size_t(H * Dk)]);
          m += std::fabs(q[x] * dq[x]) + std::fabs(k[x] * dk[x]);
          nm += m * m;
          nd += da[x] * da[x];
        }
      }
  return (nd > 0 ? std::ldexp(std::sqrt(nm / nd), -16) : 0.0) + kFloor;
}

void check_gla(int64_t B, int64_t N, int64_t H, int64_t Dk, int64_t Dv, Decay kind, Rng& rng) {
  const std::string shape = dims({B, N, H, Dk, Dv}) + " " + decay_name(kind);
  const Shape sk{B, N, H, Dk}, sv{B, N, H, Dv}, ss{B, H, Dk, Dv};
  const Vec q = rounded(normal(sk.numel(), rng), DType::BF16);
  const Vec k = rounded(normal(sk.numel(), rng), DType::BF16);
  const Vec v = rounded(normal(sv.numel(), rng), DType::BF16);
  const Vec a = decay(sk.numel(), kind, rng);
  const Vec s0 = rounded(normal(ss.numel(), rng), DType::F32);
  const Vec d_o = rounded(normal(sv.numel(), rng), DType::BF16);
  const double scale = 1.0 / std::sqrt(double(Dk));

  Array hq = host_f64(q, sk), hk = host_f64(k, sk), hv = host_f64(v, sv), ha = host_f64(a, sk);
  Array hs0 = host_f64(s0, ss), hdo = host_f64(d_o, sv);
  Array ho = Array::empty(DType::F64, sv), hs = Array::empty(DType::F64, ss);
  Array ho1 = Array::empty(DType::F64, sv), hs1 = Array::empty(DType::F64, ss);
  ops::gla_forward(ho, hs, hq, hk, hv, ha, Tensor(), scale, kChunk, Impl::Ref);
  ops::gla_forward(ho1, hs1, hq, hk, hv, ha, hs0, scale, kChunk, Impl::Ref);

  DeviceBuf gq = device_buf(DType::BF16, sk, q), gk = device_buf(DType::BF16, sk, k);
  DeviceBuf gv = device_buf(DType::BF16, sv, v), ga = device_buf(DType::F32, sk, a);
  {
    DeviceBuf o = device_buf(DType::BF16, sv), st = device_buf(DType::F32, ss);
    ops::gla_forward(o.view, st.view, gq.view, gk.view, gv.view, ga.view, Tensor(), scale, kChunk);
    check("gla", shape, "forward", "o", o, values(ho));
    check("gla", shape, "forward", "state_out", st, values(hs));
  }
  {  // generation's use: one state buffer, read as state_in and overwritten as state_out
    DeviceBuf o = device_buf(DType::BF16, sv), st = device_buf(DType::F32, ss, s0);
    ops::gla_forward(o.view, st.view, gq.view, gk.view, gv.view, ga.view, st.view, scale, kChunk);
    check("gla", shape, "forward, state in = out", "o", o, values(ho1));
    check("gla", shape, "forward, state in = out", "state", st, values(hs1));
  }

  Array hdq = Array::empty(DType::F64, sk), hdk = Array::empty(DType::F64, sk);
  Array hdv = Array::empty(DType::F64, sv), hda = Array::empty(DType::F64, sk);
  ops::gla_backward(hdq, hdk, hdv, hda, hdo, hq, hk, hv, ha, scale, kChunk, Impl::Ref);
  DeviceBuf gdo = device_buf(DType::BF16, sv, d_o);
  DeviceBuf dq = device_buf(DType::BF16, sk), dk = device_buf(DType::BF16, sk);
  DeviceBuf dv = device_buf(DType::BF16, sv), da = device_buf(DType::F32, sk);
  ops::gla_backward(dq.view, dk.view, dv.view, da.view, gdo.view, gq.view, gk.view, gv.view,
                    ga.view, scale, kChunk);
  check("gla", shape, "backward", "dq", dq, values(hdq));
  check("gla", shape, "backward", "dk", dk, values(hdk));
  check("gla", shape, "backward", "dv", dv, values(hdv));
  const Vec rda = values(hda);
  check_tol("gla", shape, "backward", "da", da, rda,
            da_bound(q, k, values(hdq), values(hdk), rda, B, N, H, Dk),
            "2^-16 first-order bound of da's sums");
}

// Generation: a chunked prefill of N0 tokens, then `steps` single-token calls, all updating one
// state in place, against the oracle over all N0 + steps tokens (B = 1, so that each step's
// tokens are a contiguous slice of the inputs).
void check_gla_steps(int64_t N0, int64_t steps, int64_t H, int64_t Dk, int64_t Dv, Rng& rng) {
  const int64_t N = N0 + steps;
  const std::string shape = dims({1, N0, H, Dk, Dv}) + " + " + std::to_string(steps) + " steps";
  const Shape sk{1, N, H, Dk}, sv{1, N, H, Dv}, ss{1, H, Dk, Dv};
  const Vec q = rounded(normal(sk.numel(), rng), DType::BF16);
  const Vec k = rounded(normal(sk.numel(), rng), DType::BF16);
  const Vec v = rounded(normal(sv.numel(), rng), DType::BF16);
  const Vec a = decay(sk.numel(), Decay::Ordinary, rng);
  const Vec s0 = rounded(normal(ss.numel(), rng), DType::F32);
  const double scale = 1.0 / std::sqrt(double(Dk));
  Array ho = Array::empty(DType::F64, sv), hs = Array::empty(DType::F64, ss);
  ops::gla_forward(ho, hs, host_f64(q, sk), host_f64(k, sk), host_f64(v, sv), host_f64(a, sk),
                   host_f64(s0, ss), scale, kChunk, Impl::Ref);

  DeviceBuf gq = device_buf(DType::BF16, sk, q), gk = device_buf(DType::BF16, sk, k);
  DeviceBuf gv = device_buf(DType::BF16, sv, v), ga = device_buf(DType::F32, sk, a);
  DeviceBuf o = device_buf(DType::BF16, sv), st = device_buf(DType::F32, ss, s0);
  auto tokens = [&](const DeviceBuf& buf, int64_t t0, int64_t n) {  // tokens [t0, t0 + n)
    const int64_t w = buf.view.size(3) * H;
    return Tensor(static_cast<char*>(buf.view.raw()) + t0 * w * int64_t(dtype_size(buf.dtype)),
                  buf.dtype, {1, n, H, buf.view.size(3)}, Device::Cuda);
  };
  auto run = [&](int64_t t0, int64_t n) {
    ops::gla_forward(tokens(o, t0, n), st.view, tokens(gq, t0, n), tokens(gk, t0, n),
                     tokens(gv, t0, n), tokens(ga, t0, n), st.view, scale, kChunk);
  };
  run(0, N0);
  for (int64_t t = N0; t < N; ++t) run(t, 1);
  check("gla", shape, "prefill + steps, state in = out", "o", o, values(ho));
  check("gla", shape, "prefill + steps, state in = out", "state", st, values(hs));
}

struct Case {
  int64_t B, N, H, Dk, Dv;
  Decay decay;
};

FELA_BACKEND_CHECKS(130, "gla", "gla B x N x H x Dk x Dv decay", [](Context& c) {
  for (const Case& s :
       {Case{1, 1, 1, 1, 1, Decay::Ordinary}, Case{2, 37, 3, 5, 7, Decay::Ordinary},
        Case{2, 37, 3, 5, 7, Decay::Strong}, Case{1, 129, 2, 32, 64, Decay::Ordinary},
        Case{1, 129, 2, 32, 64, Decay::Strong}, Case{1, 129, 2, 32, 64, Decay::Mixed},
        Case{3, 200, 2, 17, 33, Decay::Mixed}, Case{2, 16, 3, 13, 5, Decay::Mixed},
        Case{2, 1000, 12, 32, 64, Decay::Ordinary}, Case{2, 1000, 12, 32, 64, Decay::Strong},
        Case{1, 4096, 16, 64, 128, Decay::Ordinary}, Case{1, 4096, 16, 64, 128, Decay::Mixed}})
    if (c.run(s.B * s.N * s.H * std::max(s.Dk, s.Dv)))
      check_gla(s.B, s.N, s.H, s.Dk, s.Dv, s.decay, c.rng);
  check_gla_steps(1, 5, 1, 1, 1, c.rng);
  check_gla_steps(100, 20, 12, 32, 64, c.rng);
  check_gla_steps(300, 8, 16, 64, 128, c.rng);
});

}  // namespace
}  // namespace fela::backend_ops
