// backend_ops checks of the elementwise, normalisation, GEMM, embedding and loss ops.
#include <array>
#include <cmath>
#include <cstdio>

#include "check.h"
#include "fela/core/bf16.h"
#include "fela/ops/add.h"
#include "fela/ops/channel_scale.h"
#include "fela/ops/cross_entropy.h"
#include "fela/ops/decay_gate.h"
#include "fela/ops/dropout.h"
#include "fela/ops/embedding.h"
#include "fela/ops/fan.h"
#include "fela/ops/linear.h"
#include "fela/ops/rmsnorm.h"
#include "fela/ops/silu.h"
#include "fela/ops/swiglu.h"

namespace fela::backend_ops {
namespace {

using ops::GradMode;
using ops::Impl;
using ops::Layout;

void check_linear(int64_t R, int64_t in, int64_t out, Layout lay, GradMode mode, Rng& rng) {
  const Shape ws = lay == Layout::InOut ? Shape{in, out} : Shape{out, in};
  const std::string shape =
      dims({R, in, out}) + (lay == Layout::InOut ? " W[in,out]" : " E[out,in]");
  const Vec x = rounded(normal(R * in, rng), DType::BF16);
  const Vec w = rounded(normal(ws.numel(), rng), DType::BF16);
  const Vec dy = rounded(normal(R * out, rng), DType::BF16);
  const Vec dx0 = rounded(normal(R * in, rng), DType::BF16);
  const Vec dw0 = rounded(normal(ws.numel(), rng, 0.1), DType::F32);

  Array hx = host_f64(x, {R, in}), hw = host_f64(w, ws), hdy = host_f64(dy, {R, out});
  Array hy = Array::empty(DType::F64, {R, out});
  ops::linear_forward(hy, hx, hw, lay, Impl::Ref);
  Array hdx = host_f64(dx0, {R, in}), hdw = host_f64(dw0, ws);
  ops::linear_backward(hdx, hdw, hdy, hx, hw, lay, mode, Impl::Ref);

  DeviceBuf dx_ = device_buf(DType::BF16, {R, in}, x), dw_ = device_buf(DType::BF16, ws, w);
  for (DType yt : {DType::BF16, DType::F32}) {
    DeviceBuf y = device_buf(yt, {R, out});
    ops::linear_forward(y.view, dx_.view, dw_.view, lay);
    check("linear", shape, "forward", "y", y, values(hy));
  }
  DeviceBuf ddy = device_buf(DType::BF16, {R, out}, dy);
  DeviceBuf gx = mode == GradMode::Add ? device_buf(DType::BF16, {R, in}, dx0)
                                       : device_buf(DType::BF16, {R, in});
  DeviceBuf gw = device_buf(DType::F32, ws, dw0);
  ops::linear_backward(gx.view, gw.view, ddy.view, dx_.view, dw_.view, lay, mode);
  const std::string dir = mode == GradMode::Add ? "backward, dx +=" : "backward";
  check("linear", shape, dir, "dx", gx, values(hdx));
  check("linear", shape, dir, "dW +=", gw, values(hdw));
}

void check_rmsnorm(int64_t R, int64_t d, Rng& rng, int64_t shift = 0) {
  const std::string shape = dims({R, d}) + (shift ? " unaligned" : "");
  // With d = 1 the exact dx is s^3 eps dy g, all cancellation when eps is tiny, which no fp32
  // kernel resolves: that width is checked with a large eps, where it is well conditioned.
  const double eps = d == 1 ? 0.5 : 1e-6;
  const Vec x = rounded(normal(R * d, rng), DType::BF16);
  const Vec g = rounded(normal(d, rng, 0.1, 1.0), DType::F32);
  const Vec dy = rounded(normal(R * d, rng), DType::BF16);
  const Vec dx0 = rounded(normal(R * d, rng), DType::BF16);
  const Vec dg0 = rounded(normal(d, rng, 0.1), DType::F32);
  Array hx = host_f64(x, {R, d}), hg = host_f64(g, {d}), hdy = host_f64(dy, {R, d});
  Array hy = Array::empty(DType::F64, {R, d}), hrstd = Array::empty(DType::F64, {R});
  ops::rmsnorm_forward(hy, hrstd, hx, hg, eps, Impl::Ref);
  // Backward reads rstd as the forward stored it: fp32.
  const Vec rstd = rounded(values(hrstd), DType::F32);
  Array hrstd32 = host_f64(rstd, {R});
  Array hdx = Array::empty(DType::F64, {R, d}), hdg = host_f64(dg0, {d});
  ops::rmsnorm_backward(hdx, hdg, hdy, hx, hg, hrstd32, Impl::Ref);
  Array hdx_add = host_f64(dx0, {R, d}), hdg_add = host_f64(dg0, {d});
  ops::rmsnorm_backward(hdx_add, hdg_add, hdy, hx, hg, hrstd32, Impl::Ref, GradMode::Add);
  DeviceBuf gx = device_buf(DType::BF16, {R, d}, x, shift), gg = device_buf(DType::F32, {d}, g);
  DeviceBuf y = device_buf(DType::BF16, {R, d}, {}, shift), s = device_buf(DType::F32, {R});
  ops::rmsnorm_forward(y.view, s.view, gx.view, gg.view, eps);
  check("rmsnorm", shape, "forward", "y", y, values(hy));
  check("rmsnorm", shape, "forward", "rstd", s, values(hrstd));
  DeviceBuf gs = device_buf(DType::F32, {R}, rstd);
  for (const char* mode : {"write", "in place", "add"}) {
    const bool in_place = mode[0] == 'i', add = mode[0] == 'a';
    DeviceBuf gdy = device_buf(DType::BF16, {R, d}, dy, shift);
    DeviceBuf gdg = device_buf(DType::F32, {d}, dg0);
    DeviceBuf sep = device_buf(DType::BF16, {R, d}, add ? dx0 : Vec{}, shift);
    const DeviceBuf& gdx = in_place ? gdy : sep;
    ops::rmsnorm_backward(gdx.view, gdg.view, gdy.view, gx.view, gg.view, gs.view, Impl::Fast,
                          add ? GradMode::Add : GradMode::Write);
    const std::string dir = in_place ? "backward, dx = dy" : add ? "backward, dx +=" : "backward";
    check("rmsnorm", shape, dir, "dx", gdx, values(add ? hdx_add : hdx));
    check("rmsnorm", shape, dir, "dg +=", gdg, values(add ? hdg_add : hdg));
  }
  // The residual form: s = x + b, stored in bf16, normalised as stored.
  const Vec b = rounded(normal(R * d, rng), DType::BF16);
  Vec sum(x.size());
  for (size_t i = 0; i < x.size(); ++i) sum[i] = x[i] + b[i];
  const Vec stored = rounded(sum, DType::BF16);
  Array hs = host_f64(stored, {R, d}), hy2 = Array::empty(DType::F64, {R, d});
  Array hrstd2 = Array::empty(DType::F64, {R});
  ops::rmsnorm_forward(hy2, hrstd2, hs, hg, eps, Impl::Ref);
  DeviceBuf gb = device_buf(DType::BF16, {R, d}, b, shift);
  DeviceBuf gsum = device_buf(DType::BF16, {R, d}, {}, shift);
  ops::add_rmsnorm_forward(gsum.view, y.view, s.view, gx.view, gb.view, gg.view, eps);
  check("rmsnorm", shape, "forward, s = x + b", "s", gsum, sum);
  check("rmsnorm", shape, "forward, s = x + b", "y", y, values(hy2));
  check("rmsnorm", shape, "forward, s = x + b", "rstd", s, values(hrstd2));
}

void check_swiglu(int64_t n, Rng& rng, int64_t shift = 0) {
  const std::string shape = dims({n}) + (shift ? " unaligned" : "");
  const Vec a = rounded(normal(n, rng, 2.0), DType::BF16);
  const Vec b = rounded(normal(n, rng), DType::BF16);
  const Vec dy = rounded(normal(n, rng), DType::BF16);
  Array ha = host_f64(a, {n}), hb = host_f64(b, {n}), hdy = host_f64(dy, {n});
  Array hy = Array::empty(DType::F64, {n}), hda = Array::empty(DType::F64, {n}),
        hdb = Array::empty(DType::F64, {n});
  ops::swiglu_forward(hy, ha, hb, Impl::Ref);
  ops::swiglu_backward(hda, hdb, hdy, ha, hb, Impl::Ref);

  DeviceBuf ga = device_buf(DType::BF16, {n}, a, shift),
            gb = device_buf(DType::BF16, {n}, b, shift);
  DeviceBuf y = device_buf(DType::BF16, {n}, {}, shift);
  ops::swiglu_forward(y.view, ga.view, gb.view);
  check("swiglu", shape, "forward", "y", y, values(hy));
  for (int alias : {0, 1, 2}) {  // dy apart, da = dy (the MLP), db = dy (the GLA output gate)
    DeviceBuf gdy = device_buf(DType::BF16, {n}, dy, shift);
    DeviceBuf sa = device_buf(DType::BF16, {n}, {}, shift),
              sb = device_buf(DType::BF16, {n}, {}, shift);
    const DeviceBuf& gda = alias == 1 ? gdy : sa;
    const DeviceBuf& gdb = alias == 2 ? gdy : sb;
    ops::swiglu_backward(gda.view, gdb.view, gdy.view, ga.view, gb.view);
    const std::string dir = alias == 1   ? "backward, da = dy"
                            : alias == 2 ? "backward, db = dy"
                                         : "backward";
    check("swiglu", shape, dir, "da", gda, values(hda));
    check("swiglu", shape, dir, "db", gdb, values(hdb));
  }
}

void check_embedding(int64_t R, int64_t V, int64_t d, Rng& rng) {
  const std::string shape = dims({R, V, d});
  std::vector<int32_t> tok(static_cast<size_t>(R));
  for (auto& t : tok) t = int32_t(rng.below(uint64_t(V)));
  const Vec E = rounded(normal(V * d, rng), DType::BF16);
  const Vec dh = rounded(normal(R * d, rng), DType::BF16);
  const Vec dE0 = rounded(normal(V * d, rng, 0.1), DType::F32);
  Array ht = host_i32(tok), hE = host_f64(E, {V, d}), hdh = host_f64(dh, {R, d});
  Array hh = Array::empty(DType::F64, {R, d}), hdE = host_f64(dE0, {V, d});
  ops::embedding_forward(hh, ht, hE, Impl::Ref);
  ops::embedding_backward(hdE, hdh, ht, Impl::Ref);

  DeviceBuf gt = device_tokens(tok), gE = device_buf(DType::BF16, {V, d}, E);
  DeviceBuf h = device_buf(DType::BF16, {R, d});
  ops::embedding_forward(h.view, gt.view, gE.view);
  check("embedding", shape, "forward", "h", h, values(hh));
  DeviceBuf gdh = device_buf(DType::BF16, {R, d}, dh), gdE = device_buf(DType::F32, {V, d}, dE0);
  ops::embedding_backward(gdE.view, gdh.view, gt.view);
  check("embedding", shape, "backward", "dE +=", gdE, values(hdE));
}

void check_cross_entropy(int64_t R, int64_t V, Rng& rng, int64_t shift = 0) {
  const std::string shape = dims({R, V}) + (shift ? " unaligned" : "");
  std::vector<int32_t> tgt(static_cast<size_t>(R));
  for (int64_t r = 0; r < R; ++r)  // every fifth row ignored, as padding would be
    tgt[size_t(r)] = r % 5 == 3 ? -1 : int32_t(rng.below(uint64_t(V)));
  const Vec logits = rounded(normal(R * V, rng, 3.0), DType::BF16);
  const double scale = 1.0 / double(R);
  Array ht = host_i32(tgt), hl = host_f64(logits, {R, V});
  Array hloss = Array::empty(DType::F64, {R}), hd = Array::empty(DType::F64, {R, V});
  ops::cross_entropy_forward(hloss, hl, ht, Impl::Ref);
  ops::cross_entropy_backward(hd, hl, ht, scale, Impl::Ref);
  DeviceBuf gt = device_tokens(tgt), gl = device_buf(DType::BF16, {R, V}, logits, shift);
  DeviceBuf loss = device_buf(DType::F32, {R});
  ops::cross_entropy_forward(loss.view, gl.view, gt.view);
  check("cross_entropy", shape, "forward", "loss", loss, values(hloss));
  DeviceBuf gd = device_buf(DType::BF16, {R, V}, {}, shift);
  ops::cross_entropy_backward(gd.view, gl.view, gt.view, scale);
  check("cross_entropy", shape, "backward", "dlogits", gd, values(hd));
  // The model's fused head: loss and dlogits in one call, dlogits in place of the logits.
  DeviceBuf inplace = device_buf(DType::BF16, {R, V}, logits, shift);
  DeviceBuf loss2 = device_buf(DType::F32, {R});
  ops::cross_entropy_forward_backward(loss2.view, inplace.view, inplace.view, gt.view, scale);
  check("cross_entropy", shape, "forward+backward, dlogits = logits", "loss", loss2, values(hloss));
  check("cross_entropy", shape, "forward+backward, dlogits = logits", "dlogits", inplace,
        values(hd));
}

// Padded rows, as the GPU model's head uses them: [R, C] logits of which the first V columns are
// classes; the padding (random values here) must not change the loss, and its dlogits are 0.
void check_cross_entropy_padded(int64_t R, int64_t V, int64_t C, Rng& rng) {
  const std::string shape = dims({R, V}) + " in rows of " + std::to_string(C);
  std::vector<int32_t> tgt(static_cast<size_t>(R));
  for (int64_t r = 0; r < R; ++r)
    tgt[size_t(r)] = r % 5 == 3 ? -1 : int32_t(rng.below(uint64_t(V)));
  const Vec padded = rounded(normal(R * C, rng, 3.0), DType::BF16);
  Vec logits(size_t(R * V));
  for (int64_t r = 0; r < R; ++r)
    for (int64_t v = 0; v < V; ++v) logits[size_t(r * V + v)] = padded[size_t(r * C + v)];
  const double scale = 1.0 / double(R);
  Array ht = host_i32(tgt), hl = host_f64(logits, {R, V});
  Array hloss = Array::empty(DType::F64, {R}), hd = Array::empty(DType::F64, {R, V});
  ops::cross_entropy_forward(hloss, hl, ht, Impl::Ref);
  ops::cross_entropy_backward(hd, hl, ht, scale, Impl::Ref);
  Vec want(size_t(R * C), 0.0);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t v = 0; v < V; ++v) want[size_t(r * C + v)] = hd.data<double>()[r * V + v];

  DeviceBuf gt = device_tokens(tgt), gl = device_buf(DType::BF16, {R, C}, padded);
  DeviceBuf loss = device_buf(DType::F32, {R});
  ops::cross_entropy_forward(loss.view, gl.view, gt.view, Impl::Fast, V);
  check("cross_entropy", shape, "forward", "loss", loss, values(hloss));
  DeviceBuf loss2 = device_buf(DType::F32, {R});
  ops::cross_entropy_forward_backward(loss2.view, gl.view, gl.view, gt.view, scale, Impl::Fast, V);
  check("cross_entropy", shape, "forward+backward, dlogits = logits", "loss", loss2, values(hloss));
  check("cross_entropy", shape, "forward+backward, dlogits = logits", "dlogits", gl, want);
}

void check_add(int64_t n, Rng& rng, int64_t shift = 0) {
  const std::string shape = dims({n}) + (shift ? " unaligned" : "");
  const Vec y0 = rounded(normal(n, rng), DType::BF16), x = rounded(normal(n, rng), DType::BF16);
  Array hy = host_f64(y0, {n}), hx = host_f64(x, {n});
  ops::add_inplace(hy, hx, Impl::Ref);
  DeviceBuf gy = device_buf(DType::BF16, {n}, y0, shift),
            gx = device_buf(DType::BF16, {n}, x, shift);
  DeviceBuf out = device_buf(DType::BF16, {n}, {}, shift);
  ops::add(out.view, gy.view, gx.view);
  check("add", shape, "y = a + b", "y", out, values(hy));
  ops::add_inplace(gy.view, gx.view);
  check("add", shape, "y += x", "y", gy, values(hy));
}

void check_silu(int64_t n, Rng& rng) {
  const std::string shape = dims({n});
  const Vec x = rounded(normal(n, rng, 3.0), DType::BF16),
            dy = rounded(normal(n, rng), DType::BF16);
  Array hx = host_f64(x, {n}), hdy = host_f64(dy, {n});
  Array hy = Array::empty(DType::F64, {n}), hdx = Array::empty(DType::F64, {n});
  ops::silu_forward(hy, hx, Impl::Ref);
  ops::silu_backward(hdx, hdy, hx, Impl::Ref);
  DeviceBuf gx = device_buf(DType::BF16, {n}, x), y = device_buf(DType::BF16, {n});
  ops::silu_forward(y.view, gx.view);
  check("silu", shape, "forward", "y", y, values(hy));
  for (bool in_place : {false, true}) {
    DeviceBuf gdy = device_buf(DType::BF16, {n}, dy), sep = device_buf(DType::BF16, {n});
    const DeviceBuf& gdx = in_place ? gdy : sep;
    ops::silu_backward(gdx.view, gdy.view, gx.view);
    check("silu", shape, in_place ? "backward, dx = dy" : "backward", "dx", gdx, values(hdx));
  }
}

void check_decay_gate(int64_t R, int64_t n, Rng& rng) {
  const std::string shape = dims({R, n});
  const double normalizer = 16.0;  // GLA's
  const Vec x = rounded(normal(R * n, rng, 2.0), DType::BF16);
  const Vec b = rounded(normal(n, rng, 1.0, 2.0), DType::F32);
  const Vec db0 = rounded(normal(n, rng, 0.1), DType::F32);
  Array hx = host_f64(x, {R, n}), hb = host_f64(b, {n});
  Array ha = Array::empty(DType::F64, {R, n});
  ops::decay_gate_forward(ha, hx, hb, normalizer, Impl::Ref);
  DeviceBuf gx = device_buf(DType::BF16, {R, n}, x), gb = device_buf(DType::F32, {n}, b);
  for (DType at : {DType::BF16, DType::F32}) {
    DeviceBuf a = device_buf(at, {R, n});
    ops::decay_gate_forward(a.view, gx.view, gb.view, normalizer);
    check("decay_gate", shape, "forward", "a", a, values(ha));
  }
  for (DType dt : {DType::BF16, DType::F32}) {
    const Vec da = rounded(normal(R * n, rng), dt);
    Array hda = host_f64(da, {R, n}), hdx = Array::empty(DType::F64, {R, n}),
          hdb = host_f64(db0, {n});
    ops::decay_gate_backward(hdx, hdb, hda, hx, hb, normalizer, Impl::Ref);
    for (bool in_place : dt == DType::BF16 ? std::vector{false, true} : std::vector{false}) {
      DeviceBuf gda = device_buf(dt, {R, n}, da), sep = device_buf(DType::BF16, {R, n});
      DeviceBuf gdb = device_buf(DType::F32, {n}, db0);
      const DeviceBuf& gdx = in_place ? gda : sep;
      ops::decay_gate_backward(gdx.view, gdb.view, gda.view, gx.view, gb.view, normalizer);
      const std::string dir = std::string("backward, da ") + std::string(dtype_name(dt)) +
                              (in_place ? ", dx = da" : "");
      check("decay_gate", shape, dir, "dx", gdx, values(hdx));
      check("decay_gate", shape, dir, "db +=", gdb, values(hdb));
    }
  }
}

void check_channel_scale(int64_t R, int64_t d, Rng& rng) {
  const std::string shape = dims({R, d});
  const Vec x = rounded(normal(R * d, rng), DType::BF16);
  const Vec g = rounded(normal(d, rng, 0.5), DType::F32);
  const Vec dy = rounded(normal(R * d, rng), DType::BF16);
  const Vec dg0 = rounded(normal(d, rng, 0.1), DType::F32);
  Array hx = host_f64(x, {R, d}), hg = host_f64(g, {d}), hdy = host_f64(dy, {R, d});
  Array hy = Array::empty(DType::F64, {R, d}), hdx = Array::empty(DType::F64, {R, d}),
        hdg = host_f64(dg0, {d});
  ops::channel_scale_forward(hy, hx, hg, Impl::Ref);
  ops::channel_scale_backward(hdx, hdg, hdy, hx, hg, Impl::Ref);
  DeviceBuf gx = device_buf(DType::BF16, {R, d}, x), gg = device_buf(DType::F32, {d}, g);
  DeviceBuf y = device_buf(DType::BF16, {R, d});
  ops::channel_scale_forward(y.view, gx.view, gg.view);
  check("channel_scale", shape, "forward", "y", y, values(hy));
  for (bool in_place : {false, true}) {
    DeviceBuf gdy = device_buf(DType::BF16, {R, d}, dy), sep = device_buf(DType::BF16, {R, d});
    DeviceBuf gdg = device_buf(DType::F32, {d}, dg0);
    const DeviceBuf& gdx = in_place ? gdy : sep;
    ops::channel_scale_backward(gdx.view, gdg.view, gdy.view, gx.view, gg.view);
    const std::string dir = in_place ? "backward, dx = dy" : "backward";
    check("channel_scale", shape, dir, "dx", gdx, values(hdx));
    check("channel_scale", shape, dir, "dg +=", gdg, values(hdg));
  }
}

void check_fan(int64_t R, int64_t dp, int64_t dl, Rng& rng) {
  const std::string shape = dims({R, dp, dl});
  const int64_t w = 2 * dp + dl;
  const Vec p = rounded(normal(R * dp, rng, 3.0), DType::BF16);
  const Vec l = rounded(normal(R * dl, rng), DType::BF16);
  const Vec dy = rounded(normal(R * w, rng), DType::BF16);
  Array hp = host_f64(p, {R, dp}), hl = host_f64(l, {R, dl}), hdy = host_f64(dy, {R, w});
  Array hy = Array::empty(DType::F64, {R, w}), hdp = Array::empty(DType::F64, {R, dp}),
        hdl = Array::empty(DType::F64, {R, dl});
  ops::fan_forward(hy, hp, hl, Impl::Ref);
  ops::fan_backward(hdp, hdl, hdy, hp, Impl::Ref);
  DeviceBuf gp = device_buf(DType::BF16, {R, dp}, p), gl = device_buf(DType::BF16, {R, dl}, l);
  DeviceBuf y = device_buf(DType::BF16, {R, w});
  ops::fan_forward(y.view, gp.view, gl.view);
  check("fan", shape, "forward", "y", y, values(hy));
  DeviceBuf gdy = device_buf(DType::BF16, {R, w}, dy);
  DeviceBuf gdp = device_buf(DType::BF16, {R, dp}), gdl = device_buf(DType::BF16, {R, dl});
  ops::fan_backward(gdp.view, gdl.view, gdy.view, gp.view);
  check("fan", shape, "backward", "dp", gdp, values(hdp));
  check("fan", shape, "backward", "dl", gdl, values(hdl));
}

// The dropout mask must be the CPU's bit for bit: beyond the norm-wise check (where one wrong
// element in a million would hide), every zero of the output must be exactly a dropped element.
void check_dropout_mask(const std::string& shape, const std::string& dir, const DeviceBuf& got,
                        double p, uint64_t seed) {
  const Readback r = read_back(got);
  int64_t wrong = 0;
  for (int64_t i = 0; i < got.n; ++i)
    wrong += (r.values[size_t(i)] != 0) != ops::dropout_keep(seed, uint64_t(i), p);
  Row row{"dropout", shape, dir, "mask", double(wrong), 0, 0, r.nan, r.guards_ok};
  std::printf("| dropout | %s | %s | mask %s | %lld wrong | exact | 0 wrong | %s | %s | %s |\n",
              shape.c_str(), dir.c_str(), std::string(dtype_name(got.dtype)).c_str(),
              (long long)wrong, row.nan ? "NaN" : "ok", row.guards_ok ? "ok" : "OVERWRITTEN",
              row.pass() ? "PASS" : "**FAIL**");
  std::fflush(stdout);
  add_row(row);
}

void check_dropout(int64_t n, double p, DType dt, Rng& rng) {
  const std::string shape = dims({n}) + " p=" + std::to_string(p).substr(0, 4);
  const uint64_t seed = rng.next_u64();
  Vec x = rounded(normal(n, rng), dt);
  for (double& v : x) v = v == 0 ? 1.0 : v;  // a zero output then always means a dropped element
  Array hx = host_f64(x, {n}), hy = Array::empty(DType::F64, {n});
  ops::dropout_forward(hy, hx, p, seed, Impl::Ref);
  DeviceBuf gx = device_buf(dt, {n}, x), y = device_buf(dt, {n});
  ops::dropout_forward(y.view, gx.view, p, seed);
  check("dropout", shape, "forward", "y", y, values(hy));
  check_dropout_mask(shape, "forward", y, p, seed);
  // Backward applies the same mask; dx = dy as the model uses it.
  DeviceBuf gdy = device_buf(dt, {n}, x);
  ops::dropout_backward(gdy.view, gdy.view, p, seed);
  check("dropout", shape, "backward, dx = dy", "dx", gdy, values(hy));
  check_dropout_mask(shape, "backward, dx = dy", gdy, p, seed);
}

FELA_BACKEND_CHECKS(10, "linear", "linear R x in x out", [](Context& c) {
  for (auto [R, in, out] :
       {std::array<int64_t, 3>{1, 1, 1}, {31, 33, 129}, {129, 31, 33}, {256, 768, 2304}})
    for (Layout lay : {Layout::InOut, Layout::OutIn})
      if (c.run(in * out))
        check_linear(R, in, out, lay, lay == Layout::OutIn ? GradMode::Add : GradMode::Write,
                     c.rng);
  if (c.run(64 * 50257)) check_linear(33, 64, 50257, Layout::OutIn, GradMode::Write, c.rng);
});

FELA_BACKEND_CHECKS(20, "rmsnorm", "rmsnorm R x d", [](Context& c) {
  // Widths pick the kernels' row groups of 8, 16 or 32 lanes, vectorized (d % 8 == 0) or not.
  for (auto [R, d] : {std::array<int64_t, 2>{1, 1},
                      {31, 1},
                      {33, 12},
                      {1000, 128},
                      {31, 33},
                      {129, 129},
                      {33, 4097},
                      {2048, 768},
                      {70001, 64}})
    if (c.run(R * d)) check_rmsnorm(R, d, c.rng);
  check_rmsnorm(33, 768, c.rng, 1);  // the scalar path of a width the vectorized path takes
});

FELA_BACKEND_CHECKS(30, "swiglu", "swiglu n", [](Context& c) {
  for (int64_t n : {1, 31, 33, 129, 1000003})
    if (c.run(n)) check_swiglu(n, c.rng);
  check_swiglu(1029, c.rng, 1);
});

FELA_BACKEND_CHECKS(40, "embedding", "embedding R x V x d", [](Context& c) {
  for (auto [R, V, d] :
       {std::array<int64_t, 3>{1, 1, 1}, {31, 33, 129}, {129, 7, 31}, {1024, 50257, 768}})
    if (c.run(V * d)) check_embedding(R, V, d, c.rng);
});

FELA_BACKEND_CHECKS(50, "cross_entropy", "cross_entropy R x V", [](Context& c) {
  for (auto [R, V] : {std::array<int64_t, 2>{1, 1}, {31, 33}, {33, 129}, {129, 31}, {64, 50257}})
    if (c.run(R * V)) check_cross_entropy(R, V, c.rng);
  check_cross_entropy(33, 136, c.rng);     // 16-byte rows
  check_cross_entropy(33, 136, c.rng, 1);  // the same, unaligned
  if (c.run(3 * 131072)) check_cross_entropy(3, 131072, c.rng);  // a vocabulary of 2^17
  check_cross_entropy_padded(31, 33, 64, c.rng);
  if (c.run(64 * 50304)) check_cross_entropy_padded(64, 50257, 50304, c.rng);
});

FELA_BACKEND_CHECKS(60, "add", "add n", [](Context& c) {
  for (int64_t n : {1, 31, 33, 129, 1000003})
    if (c.run(n)) check_add(n, c.rng);
  check_add(1029, c.rng, 1);
});

FELA_BACKEND_CHECKS(70, "silu", "silu n", [](Context& c) {
  for (int64_t n : {1, 31, 33, 129, 1000003})
    if (c.run(n)) check_silu(n, c.rng);
});

FELA_BACKEND_CHECKS(80, "decay_gate", "decay_gate R x n", [](Context& c) {
  for (auto [R, n] :
       {std::array<int64_t, 2>{1, 1}, {31, 1}, {31, 33}, {129, 129}, {33, 4097}, {70001, 64}})
    if (c.run(R * n)) check_decay_gate(R, n, c.rng);
});

FELA_BACKEND_CHECKS(90, "channel_scale", "channel_scale R x d", [](Context& c) {
  for (auto [R, d] : {std::array<int64_t, 2>{1, 1},
                      {31, 1},
                      {31, 33},
                      {129, 129},
                      {33, 4097},
                      {2048, 768},
                      {70001, 64}})
    if (c.run(R * d)) check_channel_scale(R, d, c.rng);
});

FELA_BACKEND_CHECKS(100, "fan", "fan R x dp x dl", [](Context& c) {
  for (auto [R, dp, dl] : {std::array<int64_t, 3>{1, 1, 1},
                           {31, 33, 129},
                           {129, 31, 33},
                           {33, 129, 1},
                           {2048, 192, 384}})
    if (c.run(R * (2 * dp + dl))) check_fan(R, dp, dl, c.rng);
});

FELA_BACKEND_CHECKS(110, "dropout", "dropout n", [](Context& c) {
  for (int64_t n : {1, 31, 33, 129, 1000003}) {
    if (!c.run(n)) continue;
    check_dropout(n, 0.35, DType::BF16, c.rng);
    if (n == 129) check_dropout(n, 0.0, DType::BF16, c.rng);
    if (n == 1000003) check_dropout(n, 0.1, DType::F32, c.rng);
  }
});

}  // namespace
}  // namespace fela::backend_ops
