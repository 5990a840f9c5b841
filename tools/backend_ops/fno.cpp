// backend_ops checks of the FNO mixer core (ops/fno.h): the spectral filter (forward and
// adjoint), the convolution with skip by each FirMethod (forward: y; backward: du, df, dskip),
// the generation step (y and the updated ring) and the ring helpers (load after a prefill,
// unroll before a continued prefill). The oracle is ops::Impl::Ref in double on the same
// bf16-rounded inputs; the step's oracle is the reference convolution over the unrolled history
// followed by the new input, and the ring helpers' the CPU copies of the same function on
// doubles (pure data movement: the GPU must match exactly).
#include "fela/ops/fno.h"

#include <array>
#include <cmath>
#include <string>

#include "check.h"

namespace fela::backend_ops {
namespace {

using ops::FirMethod;
using ops::Impl;

void check_filter(int64_t d, int64_t modes, int64_t M, Rng& rng) {
  const std::string shape = dims({d, M}) + " modes " + std::to_string(modes);
  const Vec kr = rounded(normal(d * modes, rng), DType::F32);
  const Vec ki = rounded(normal(d * modes, rng), DType::F32);
  const Vec df = rounded(normal(d * M, rng), DType::F32);
  const Vec dkr0 = rounded(normal(d * modes, rng, 0.1), DType::F32);
  const Vec dki0 = rounded(normal(d * modes, rng, 0.1), DType::F32);

  Array hkr = host_f64(kr, {d, modes}), hki = host_f64(ki, {d, modes});
  Array hf = Array::empty(DType::F64, {d, M});
  ops::fno_filter_forward(hf, hkr, hki, Impl::Ref);
  Array hdf = host_f64(df, {d, M}), hdkr = host_f64(dkr0, {d, modes}),
        hdki = host_f64(dki0, {d, modes});
  ops::fno_filter_backward(hdkr, hdki, hdf, Impl::Ref);

  DeviceBuf gkr = device_buf(DType::F32, {d, modes}, kr),
            gki = device_buf(DType::F32, {d, modes}, ki);
  DeviceBuf gf = device_buf(DType::F32, {d, M});
  ops::fno_filter_forward(gf.view, gkr.view, gki.view);
  check("fno_filter", shape, "forward", "f", gf, values(hf));
  DeviceBuf gdf = device_buf(DType::F32, {d, M}, df);
  DeviceBuf gdkr = device_buf(DType::F32, {d, modes}, dkr0);
  DeviceBuf gdki = device_buf(DType::F32, {d, modes}, dki0);
  ops::fno_filter_backward(gdkr.view, gdki.view, gdf.view);
  check("fno_filter", shape, "backward", "dk_re +=", gdkr, values(hdkr));
  check("fno_filter", shape, "backward", "dk_im +=", gdki, values(hdki));
}

// Every method on one set of inputs; the oracle is computed once.
void check_conv(int64_t B, int64_t N, int64_t d, int64_t M, Rng& rng) {
  const std::string shape = dims({B, N, d, M});
  const Vec u = rounded(normal(B * N * d, rng), DType::BF16);
  // Taps of a unit-norm filter (as the model initialises them) and a skip near 1.
  const Vec f = rounded(normal(d * M, rng, 1.0 / std::sqrt(double(M))), DType::F32);
  const Vec skip = rounded(normal(d, rng, 0.1, 1.0), DType::F32);
  const Vec dy = rounded(normal(B * N * d, rng), DType::BF16);
  const Vec df0 = rounded(normal(d * M, rng, 0.1), DType::F32);
  const Vec dskip0 = rounded(normal(d, rng, 0.1), DType::F32);

  Array hu = host_f64(u, {B, N, d}), hf = host_f64(f, {d, M}), hskip = host_f64(skip, {d});
  Array hdy = host_f64(dy, {B, N, d});
  Array hy = Array::empty(DType::F64, {B, N, d}), hdu = Array::empty(DType::F64, {B, N, d});
  Array hdf = host_f64(df0, {d, M}), hdskip = host_f64(dskip0, {d});
  ops::fno_conv_forward(hy, hu, hf, hskip, Impl::Ref);
  ops::fno_conv_backward(hdu, hdf, hdskip, hdy, hu, hf, hskip, Impl::Ref);

  DeviceBuf gu = device_buf(DType::BF16, {B, N, d}, u), gf = device_buf(DType::F32, {d, M}, f);
  DeviceBuf gskip = device_buf(DType::F32, {d}, skip), gdy = device_buf(DType::BF16, {B, N, d}, dy);
  for (FirMethod m : {FirMethod::Direct, FirMethod::Fft, FirMethod::Toeplitz, FirMethod::Auto}) {
    std::string name = ops::fir_method_name(m);
    if (m == FirMethod::Auto)
      name += std::string(" = ") +
              ops::fir_method_name(ops::cuda::fno_auto_method(B, N, d, M, false)) + " / " +
              ops::fir_method_name(ops::cuda::fno_auto_method(B, N, d, M, true));
    DeviceBuf y = device_buf(DType::BF16, {B, N, d});
    ops::fno_conv_forward(y.view, gu.view, gf.view, gskip.view, Impl::Fast, m);
    check("fno_conv", shape, "forward, " + name, "y", y, values(hy));
    DeviceBuf du = device_buf(DType::BF16, {B, N, d});
    DeviceBuf df = device_buf(DType::F32, {d, M}, df0), dskip = device_buf(DType::F32, {d}, dskip0);
    ops::fno_conv_backward(du.view, df.view, dskip.view, gdy.view, gu.view, gf.view, gskip.view,
                           Impl::Fast, m);
    check("fno_conv", shape, "backward, " + name, "du", du, values(hdu));
    check("fno_conv", shape, "backward, " + name, "df +=", df, values(hdf));
    check("fno_conv", shape, "backward, " + name, "dskip +=", dskip, values(hdskip));
  }
}

// One step of B sequences that have seen t tokens. Slots of tokens before 0 hold zeros, as the
// ring starts zeroed; the others random values.
void check_step(int64_t B, int64_t d, int64_t M, int64_t t, Rng& rng) {
  const std::string shape = dims({B, d, M}) + " t=" + std::to_string(t);
  const int64_t R = M - 1;
  Vec ring = rounded(normal(B * R * d, rng), DType::BF16);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t tok = t - R; tok < 0; ++tok)
      for (int64_t c = 0; c < d; ++c) ring[size_t((b * R + tok + R) * d + c)] = 0;
  const Vec u = rounded(normal(B * d, rng), DType::BF16);
  const Vec f = rounded(normal(d * M, rng, 1.0 / std::sqrt(double(M))), DType::F32);
  const Vec skip = rounded(normal(d, rng, 0.1, 1.0), DType::F32);

  // Oracle: the reference convolution over [history (R tokens, oldest first); u], last row.
  Vec seq(size_t(B * M * d));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < M; ++j)
      for (int64_t c = 0; c < d; ++c) {
        const int64_t tok = t - R + j;  // j = R is the new token t
        double v = 0;
        if (j == R)
          v = u[size_t(b * d + c)];
        else if (tok >= 0)
          v = ring[size_t((b * R + tok % R) * d + c)];
        seq[size_t((b * M + j) * d + c)] = v;
      }
  Array hseq = host_f64(seq, {B, M, d}), hf = host_f64(f, {d, M}), hskip = host_f64(skip, {d});
  Array hout = Array::empty(DType::F64, {B, M, d});
  ops::fno_conv_forward(hout, hseq, hf, hskip, Impl::Ref);
  const Vec out = values(hout);
  Vec y(size_t(B * d));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < d; ++c) y[size_t(b * d + c)] = out[size_t((b * M + R) * d + c)];
  Vec ring_after = ring;
  if (R > 0)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < d; ++c)
        ring_after[size_t((b * R + t % R) * d + c)] = u[size_t(b * d + c)];

  DeviceBuf gring = device_buf(DType::BF16, {B, R, d}, ring),
            gu = device_buf(DType::BF16, {B, d}, u);
  DeviceBuf gf = device_buf(DType::F32, {d, M}, f), gskip = device_buf(DType::F32, {d}, skip);
  DeviceBuf gy = device_buf(DType::BF16, {B, d});
  ops::fno_conv_step(gy.view, gring.view, gu.view, gf.view, gskip.view, t);
  check("fno_conv_step", shape, "step", "y", gy, y);
  if (R > 0) check("fno_conv_step", shape, "step", "ring", gring, ring_after);
}

void check_ring_load(int64_t B, int64_t N, int64_t d, int64_t M, int64_t t0, Rng& rng) {
  const std::string shape = dims({B, N, d, M}) + " t0=" + std::to_string(t0);
  const int64_t R = M - 1;
  const Vec ring = rounded(normal(B * R * d, rng), DType::BF16);
  const Vec u = rounded(normal(B * N * d, rng), DType::BF16);
  Array hring = host_f64(ring, {B, R, d}), hu = host_f64(u, {B, N, d});
  ops::fno_ring_load(hring, hu, t0);
  DeviceBuf gring = device_buf(DType::BF16, {B, R, d}, ring),
            gu = device_buf(DType::BF16, {B, N, d}, u);
  ops::fno_ring_load(gring.view, gu.view, t0);
  check("fno_ring_load", shape, "copy", "ring", gring, values(hring));
}

void check_ring_unroll(int64_t d, int64_t M, int64_t t, Rng& rng) {
  const std::string shape = dims({d, M}) + " t=" + std::to_string(t);
  const int64_t R = M - 1;
  const Vec ring = rounded(normal(R * d, rng), DType::BF16);
  Array hring = host_f64(ring, {R, d}), hhist = Array::empty(DType::F64, {R, d});
  ops::fno_ring_unroll(hhist, hring, t);
  DeviceBuf gring = device_buf(DType::BF16, {R, d}, ring), ghist = device_buf(DType::BF16, {R, d});
  ops::fno_ring_unroll(ghist.view, gring.view, t);
  check("fno_ring_unroll", shape, "copy", "hist", ghist, values(hhist));
}

FELA_BACKEND_CHECKS(120, "fno",
                    "fno_filter d x M, fno_conv B x N x d x M, fno_conv_step B x d x M at t, "
                    "fno_ring_load B x N x d x M from t0, fno_ring_unroll d x M at t",
                    [](Context& ctx) {
                      Rng& rng = ctx.rng;
                      check_filter(1, 1, 1, rng);
                      check_filter(5, 5, 8, rng);
                      check_filter(33, 9, 17, rng);
                      check_filter(96, 257, 512, rng);
                      check_filter(768, 257, 512, rng);
                      check_filter(64, 100, 512, rng);
                      for (auto [B, N, d, M] : {std::array<int64_t, 4>{1, 1, 1, 1},
                                                {2, 37, 5, 8},
                                                {3, 129, 33, 32},
                                                {2, 1000, 64, 512},
                                                {1, 4096, 96, 512},
                                                {1, 20000, 32, 512},
                                                {8, 1024, 768, 512},
                                                {4, 16384, 512, 8},
                                                {1, 1500, 16, 700}})
                        if (ctx.run(B * N * d)) check_conv(B, N, d, M, rng);
                      for (auto [B, d, M, t] : {std::array<int64_t, 4>{1, 3, 1, 0},
                                                {2, 5, 8, 3},
                                                {2, 5, 8, 20},
                                                {3, 33, 32, 100},
                                                {4, 96, 512, 200},
                                                {2, 768, 512, 1000}})
                        check_step(B, d, M, t, rng);
                      for (auto [B, N, d, M, t0] : {std::array<int64_t, 5>{2, 37, 5, 8, 0},
                                                    {2, 3, 5, 8, 5},
                                                    {3, 129, 33, 32, 7},
                                                    {2, 1000, 64, 512, 0},
                                                    {1, 100, 96, 512, 450}})
                        check_ring_load(B, N, d, M, t0, rng);
                      for (auto [d, M, t] : {std::array<int64_t, 3>{5, 8, 3},
                                             {5, 8, 7},
                                             {5, 8, 12},
                                             {96, 512, 200},
                                             {96, 512, 5000}})
                        check_ring_unroll(d, M, t, rng);
                    });

}  // namespace
}  // namespace fela::backend_ops
