// The FELA network (SPEC §1-4): forward, fused loss head, backward, and recurrent inference.
// Each line of the forward is one SPEC equation; each backward mirrors its forward in reverse.
// Activations live in a keyed pool (layer, name) sized for the current [B, N], so that the
// backward pass reads exactly the tensors its forward wrote.
#include "fela/model/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <string>

#include "fela/ops/add.h"
#include "fela/ops/attention.h"
#include "fela/ops/cast.h"
#include "fela/ops/channel_scale.h"
#include "fela/ops/cross_entropy.h"
#include "fela/ops/decay_gate.h"
#include "fela/ops/dropout.h"
#include "fela/ops/embedding.h"
#include "fela/ops/fan.h"
#include "fela/ops/fno.h"
#include "fela/ops/gla.h"
#include "fela/ops/linear.h"
#include "fela/ops/rmsnorm.h"
#include "fela/ops/silu.h"
#include "fela/ops/swiglu.h"

namespace fela {

using ops::GradMode;
using ops::Layout;

namespace {

// Buffers keyed by (layer, name) on the model's device, in the activation dtype unless a key
// asks for another; a buffer is reallocated only when it must grow.
class Pool {
 public:
  Pool(DType dt, Device dev) : dt_(dt), dev_(dev) {}
  Tensor get(int layer, const std::string& key, Shape s) { return get(layer, key, s, dt_); }
  Tensor get(int layer, const std::string& key, Shape s, DType dt) {
    if (share_layers && layer >= 0 && key != "h") layer = kShared;
    Array& a = bufs_[{layer, key}];
    if (a.numel() < s.numel() || a.dtype() != dt) a = Array::empty(dt, {s.numel()}, dev_);
    return Tensor(a.view().raw(), dt, s, dev_);
  }
  Device device() const { return dev_; }
  // Recomputation: every layer's buffers except its input h share one set, so memory holds
  // one layer's activations; backward reruns each layer's forward before its own backward.
  bool share_layers = false;

 private:
  static constexpr int kShared = -2;
  DType dt_;
  Device dev_;
  std::map<std::pair<int, std::string>, Array> bufs_;
};

// A host int32 array [n] as a tensor, for copying token ids to the model's device.
Tensor host_ids(const int32_t* p, int64_t n) {
  return Tensor(const_cast<int32_t*>(p), DType::I32, {n});
}

constexpr int kGlobal = -1;

// Grows a KV cache [B, cap, Hkv, Dh] to hold at least n positions (capacity doubles).
void reserve_cache(Array& cache, int64_t n) {
  const Shape s = cache.shape();
  if (s[1] >= n) return;
  const int64_t cap = std::max<int64_t>(n, 2 * s[1]);
  Array bigger = Array::zeros(cache.dtype(), {s[0], cap, s[2], s[3]}, cache.device());
  for (int64_t b = 0; b < s[0]; ++b)
    if (s[1] > 0) tensor_copy(Tensor(bigger)[b].slice(0, s[1]), Tensor(cache)[b]);
  cache = std::move(bigger);
}

// y = x W, or silu(x A) B with CoLA (SPEC §8). A CoLA projection keeps t = x A and
// s = silu(t) under (layer, key) for its backward.
void proj_forward(Pool& pool, int layer, const std::string& key, const Proj& p, Tensor y,
                  const Tensor& x, ops::Impl im) {
  if (!p.cola()) return ops::linear_forward(y, x, p.w, Layout::InOut, im);
  const int64_t R = x.numel() / x.size(-1), r = p.a.size(1);
  Tensor t = pool.get(layer, key + ".t", {R, r}), sv = pool.get(layer, key + ".s", {R, r});
  ops::linear_forward(t, x, p.a, Layout::InOut, im);   // x A
  ops::silu_forward(sv, t, im);                        // silu(x A)
  ops::linear_forward(y, sv, p.b, Layout::InOut, im);  // silu(x A) B
}

// Backward of proj_forward: dx (written or added), parameter gradients into g.
void proj_backward(Pool& pool, int layer, const std::string& key, const Proj& p, const Proj& g,
                   Tensor dx, GradMode mode, const Tensor& dy, const Tensor& x, ops::Impl im) {
  if (!p.cola()) return ops::linear_backward(dx, g.w, dy, x, p.w, Layout::InOut, mode, im);
  const int64_t R = x.numel() / x.size(-1), r = p.a.size(1);
  Tensor t = pool.get(layer, key + ".t", {R, r}), sv = pool.get(layer, key + ".s", {R, r});
  Tensor ds = pool.get(-1, "cola_ds", {R, r});
  ops::linear_backward(ds, g.b, dy, sv, p.b, Layout::InOut, GradMode::Write, im);
  ops::silu_backward(ds, ds, t, im);
  ops::linear_backward(dx, g.a, ds, x, p.a, Layout::InOut, mode, im);
}

// What each mixer saves for its backward, named once for both passes.
struct FnoActs {
  Tensor u, z, f, y, o;  // u, y [B, N, d]; z, o [R, d]; f [d, M]
};
FnoActs fno_acts(Pool& pool, int li, const Config& c, int64_t B, int64_t N, DType acc) {
  const int64_t d = c.d_model, R = B * N;
  return {pool.get(li, "u", {B, N, d}), pool.get(li, "z", {R, d}),
          pool.get(li, "f", {d, c.taps}, acc), pool.get(li, "y", {B, N, d}),
          pool.get(li, "o", {R, d})};
}

struct GlaActs {
  Tensor q, k, v, g;          // [R, d_k], [R, d_k], [R, d_v], [R, d_v]
  Tensor a1, apre, a;         // [R, gate_rank], [R, d_k], [R, d_k]
  Tensor og, rstd_o, on, o2;  // [R, d_v], [R H], [R, d_v], [R, d_v]
};
GlaActs gla_acts(Pool& pool, int li, const Config& c, int64_t R, DType acc) {
  const int64_t dk = c.d_k(), dv = c.d_v();
  return {pool.get(li, "q", {R, dk}),
          pool.get(li, "k", {R, dk}),
          pool.get(li, "v", {R, dv}),
          pool.get(li, "g", {R, dv}),
          pool.get(li, "a1", {R, c.gate_rank}),
          pool.get(li, "apre", {R, dk}),
          pool.get(li, "a", {R, dk}, acc),
          pool.get(li, "og", {R, dv}),
          pool.get(li, "rstd_o", {R * c.n_heads}, acc),
          pool.get(li, "on", {R, dv}),
          pool.get(li, "o2", {R, dv})};
}

struct AttnActs {
  Tensor q, k, v, att, lse;  // [B, N, H, Dh], [B, N, Hkv, Dh] x 2, [B, N, H, Dh], [B, H, N]
};
AttnActs attn_acts(Pool& pool, int li, const Config& c, int64_t B, int64_t N, DType acc) {
  const int64_t H = c.n_heads, Hkv = c.n_kv_heads, Dh = c.attn_head_dim();
  return {pool.get(li, "q", {B, N, H, Dh}), pool.get(li, "k", {B, N, Hkv, Dh}),
          pool.get(li, "v", {B, N, Hkv, Dh}), pool.get(li, "att", {B, N, H, Dh}),
          pool.get(li, "lse", {B, H, N}, acc)};
}

}  // namespace

struct Model::Acts {
  Acts(DType dt, DType acc, Device dev) : pool(dt, dev), acc(acc) {}
  Pool pool;
  DType acc;
  int64_t B = 0, N = 0;
  Tensor tokens;  // [B*N] int32 on the model's device
  bool loss_has_grad = false;
  Tensor get(int layer, const std::string& key, Shape s) { return pool.get(layer, key, s); }
  // A buffer in the statistics dtype (f32 on the GPU): rstd, lse, log decays, FNO filters.
  Tensor get_acc(int layer, const std::string& key, Shape s) {
    return pool.get(layer, key, s, acc);
  }
};

Model::Model(const Config& config, DType dtype, ops::Impl impl, Device device)
    : config_(config), dtype_(dtype), impl_(impl), device_(device), table_(config) {
  if (device == Device::Cpu) {
    FELA_CHECK(dtype == DType::F32 || dtype == DType::F64,
               "[model] CPU model dtype must be f32 or f64");
    act_ = acc_ = dtype;
  } else {
    FELA_CHECK(dtype == DType::BF16, "[model] a CUDA model computes in bf16 (fp32 master weights)");
    FELA_CHECK(impl == ops::Impl::Fast, "[model] the reference ops run on the CPU only");
    act_ = DType::BF16, acc_ = DType::F32;
  }
  params_ = Array::zeros(acc_, {table_.total()}, device);
  grads_ = Array::zeros(acc_, {table_.total()}, device);
  if (device != Device::Cpu) shadow_ = Array::zeros(DType::BF16, {table_.total()}, device);
  w_ = bind_weights(table_, config_, params_, shadow_);
  dw_ = bind_weights(table_, config_, grads_);
  if (device != Device::Cpu && config_.tie_embeddings) {
    const int64_t V = config_.vocab_size(), Vp = (V + 63) / 64 * 64;
    head_pad_ = Array::zeros(DType::BF16, {Vp, config_.d_model}, device);
  }
  acts_ = std::make_unique<Acts>(act_, acc_, device);
}

Model::~Model() = default;

void Model::init(uint64_t seed) {
  if (device_ == Device::Cpu) return init_params(table_, config_, params_, seed);
  Array host = Array::empty(DType::F32, {table_.total()});
  init_params(table_, config_, host, seed);
  params_from_host(host);
}

void Model::params_changed() {
  if (shadow_.numel()) ops::cast(shadow_, params_);
}

void Model::params_to_host(Tensor host_f32) const {
  check_shape(host_f32, {table_.total()}, "model", "host parameters");
  if (params_.dtype() == DType::F32) return tensor_copy(host_f32, params_);
  ops::cast(host_f32, params_);  // a double CPU model, rounded once
}

void Model::params_from_host(const Tensor& host_f32) {
  check_shape(host_f32, {table_.total()}, "model", "host parameters");
  if (params_.dtype() == DType::F32)
    tensor_copy(params_, host_f32);
  else
    ops::cast(params_, host_f32);
  params_changed();
}

void Model::set_training(bool on, uint64_t dropout_seed) {
  training_ = on;
  dropout_seed_ = dropout_seed;
}

// Dropout probability and mask seed of one site (0 mixer branch, 1 MLP branch, 2 attention
// probabilities) of a layer; p = 0 outside training.
std::pair<double, uint64_t> Model::dropout_site(int64_t layer, int site) const {
  const double p = training_ ? config_.dropout : 0.0;
  return {p, ops::dropout_hash(dropout_seed_, uint64_t(layer) * 4 + uint64_t(site))};
}
void Model::zero_grad() { grads_.zero(); }

void Model::head_forward(Tensor logits, const Tensor& x) const {
  if (config_.tie_embeddings)
    ops::linear_forward(logits, x, w_.embed, Layout::OutIn, impl_);  // x E^T
  else
    ops::linear_forward(logits, x, w_.lm_head, Layout::InOut, impl_);  // x W_out
}

// ---------------------------------------------------------------------------------------------
// Forward

void Model::forward(const int32_t* tokens, int64_t B, int64_t N) {
  forward_impl(tokens, B, N, nullptr);
}

// With `fill`, the forward continues the sequences of an inference state from position fill->t
// (chunked prefill) and leaves the state updated for position fill->t + N.
void Model::forward_impl(const int32_t* tokens, int64_t B, int64_t N, InferenceState* fill) {
  FELA_CHECK(B >= 1 && N >= 1, "[model] forward needs B >= 1 and N >= 1, got B=", B, " N=", N);
  const Config& c = config_;
  const int64_t R = B * N, d = c.d_model, L = c.n_layers;
  Acts& A = *acts_;
  A.B = B, A.N = N, A.loss_has_grad = false;
  A.tokens = A.pool.get(kGlobal, "tokens", {R}, DType::I32);  // kept: no allocation per step
  tensor_copy(A.tokens, host_ids(tokens, R));
  const ops::Impl im = impl_;
  // Recomputation applies to training forwards; a prefill keeps nothing for backward anyway.
  A.pool.share_layers = recompute_ && !fill;

  Tensor h0 = A.get(0, "h", {R, d});
  ops::embedding_forward(h0, A.tokens, w_.embed, im);  // h0 = E[tokens]

  for (int64_t i = 0; i < L; ++i) layer_forward(i, fill);

  Tensor xf = A.get(kGlobal, "xf", {R, d}), rstd_f = A.get_acc(kGlobal, "rstd_f", {R});
  ops::rmsnorm_forward(xf, rstd_f, A.get(int(L), "h", {R, d}), w_.final_norm, c.norm_eps, im);
}

// Layer i of the forward: reads h of layer i, writes h of layer i + 1 and what its backward needs.
void Model::layer_forward(int64_t i, InferenceState* fill) {
  const Config& c = config_;
  Acts& A = *acts_;
  const int64_t B = A.B, N = A.N, R = B * N, d = c.d_model, F = c.mlp_hidden, M = c.taps;
  const int64_t H = c.n_heads, Hkv = c.n_kv_heads, Dh = c.attn_head_dim();
  const ops::Impl im = impl_;
  const int64_t t0 = fill ? fill->t : 0;  // position of the first token
  const LayerWeights& lw = w_.layers[i];
  const int li = int(i);
  Tensor h = A.get(li, "h", {R, d});
  Tensor mix = A.get(kGlobal, "mix_out", {R, d});
  // Mixer input: RMSNorm(h; g_mix) (pre-norm), or h itself where HybridNorm normalises q, k, v.
  Tensor xn = h;
  if (lw.mix_norm.raw()) {
    xn = A.get(li, "xn", {R, d});
    ops::rmsnorm_forward(xn, A.get_acc(li, "rstd", {R}), h, lw.mix_norm, c.norm_eps, im);
  }
  Tensor xm = xn;  // what the mixer's projections read: FAN(x) when fan_p > 0 (ATF for A)
  if (lw.fan.w_p.raw()) {
    const int64_t dp = c.fan_dp();
    Tensor fp = A.get(li, "fan_p", {R, dp}), fl = A.get(li, "fan_l", {R, d - 2 * dp});
    xm = A.get(li, "fan_out", {R, d});
    ops::linear_forward(fp, xn, lw.fan.w_p, Layout::InOut, im);  // x W_p
    ops::linear_forward(fl, xn, lw.fan.w_l, Layout::InOut, im);  // x W_l
    ops::fan_forward(xm, fp, fl, im);  // [cos(x W_p) || sin(x W_p) || x W_l]
  }

  if (lw.mixer == 'S') {
    const FnoWeights& p = lw.fno;
    auto [u, z, f, y, o] = fno_acts(A.pool, li, c, B, N, acc_);
    ops::linear_forward(u, xm, p.w_u, Layout::InOut, im);                   // u = x W_u
    ops::linear_forward(z, xm, p.w_z, Layout::InOut, im);                   // z = x W_z
    if (!(fill && N == 1)) ops::fno_filter_forward(f, p.k_re, p.k_im, im);  // f = irfft(K, n = M)
    if (fill && N == 1) {  // generation step: the ring buffer holds the last M-1 inputs
      ops::fno_conv_step(y.reshape({B, d}), fill->ring[i], u.reshape({B, d}), fill->filter[i],
                         p.skip, t0);
    } else if (t0 == 0) {
      ops::fno_conv_forward(y, u, f, p.skip, im);  // y = f * u + D u
    } else {  // continue after t0 tokens: the ring's last M-1 inputs go in front of u
      Tensor u_ext = A.get(kGlobal, "u_ext", {B, M - 1 + N, d});
      Tensor y_ext = A.get(kGlobal, "y_ext", {B, M - 1 + N, d});
      for (int64_t b = 0; b < B; ++b) {
        ops::fno_ring_unroll(u_ext[b].slice(0, M - 1), Tensor(fill->ring[i])[b], t0);
        tensor_copy(u_ext[b].slice(M - 1, M - 1 + N), u[b]);
      }
      ops::fno_conv_forward(y_ext, u_ext, f, p.skip, im);
      for (int64_t b = 0; b < B; ++b) tensor_copy(y[b], y_ext[b].slice(M - 1, M - 1 + N));
    }
    ops::swiglu_forward(o, z, y, im);                       // o = (y + D u) silu(z)
    ops::linear_forward(mix, o, p.w_o, Layout::InOut, im);  // out = o W_o
    if (fill && N > 1) ops::fno_ring_load(fill->ring[i], u, t0);
  } else if (lw.mixer == 'L') {
    const GlaWeights& p = lw.gla;
    const int64_t Dk = c.head_dk(), Dv = c.head_dv();
    auto [q, k, v, g, a1, apre, a, og, rstd_o, on, o2] = gla_acts(A.pool, li, c, R, acc_);
    ops::linear_forward(q, xm, p.w_q, Layout::InOut, im);            // q = x W_q
    ops::linear_forward(k, xm, p.w_k, Layout::InOut, im);            // k = x W_k
    ops::linear_forward(v, xm, p.w_v, Layout::InOut, im);            // v = x W_v
    ops::linear_forward(a1, xm, p.w_a1, Layout::InOut, im);          // x W_a1
    ops::linear_forward(apre, a1, p.w_a2, Layout::InOut, im);        // x W_a1 W_a2
    ops::decay_gate_forward(a, apre, p.b_a, c.gate_normalizer, im);  // a = logsigmoid(. + b_a)/16
    Tensor state = fill ? Tensor(fill->gla[i]) : Tensor();           // in and out: updated in place
    ops::gla_forward(og.reshape({B, N, H, Dv}), state, q.reshape({B, N, H, Dk}),
                     k.reshape({B, N, H, Dk}), v.reshape({B, N, H, Dv}), a.reshape({B, N, H, Dk}),
                     state, 1.0 / std::sqrt(double(Dk)), c.chunk,
                     im);  // o_t = (q_t Dk^-0.5) S_t
    ops::rmsnorm_forward(on.reshape({R * H, Dv}), rstd_o, og.reshape({R * H, Dv}), p.g_o,
                         c.norm_eps, im);                    // RMSNorm_head(o; g_o)
    ops::linear_forward(g, xm, p.w_g, Layout::InOut, im);    // x W_g
    ops::swiglu_forward(o2, g, on, im);                      // * silu(x W_g)
    ops::linear_forward(mix, o2, p.w_o, Layout::InOut, im);  // out = o W_o
  } else {
    const AttnWeights& p = lw.attn;
    auto [q, k, v, att, lse] = attn_acts(A.pool, li, c, B, N, acc_);
    if (!p.q_norm.raw()) {
      proj_forward(A.pool, li, "w_q", p.w_q, q.reshape({R, H * Dh}), xm, im);    // q = x W_q
      proj_forward(A.pool, li, "w_k", p.w_k, k.reshape({R, Hkv * Dh}), xm, im);  // k = x W_k
      proj_forward(A.pool, li, "w_v", p.w_v, v.reshape({R, Hkv * Dh}), xm, im);  // v = x W_v
    } else {  // HybridNorm: q, k, v = RMSNorm(x W_{q,k,v})
      Tensor qr = A.get(li, "q_raw", {R, H * Dh}), kr = A.get(li, "k_raw", {R, Hkv * Dh});
      Tensor vr = A.get(li, "v_raw", {R, Hkv * Dh});
      proj_forward(A.pool, li, "w_q", p.w_q, qr, xm, im);
      proj_forward(A.pool, li, "w_k", p.w_k, kr, xm, im);
      proj_forward(A.pool, li, "w_v", p.w_v, vr, xm, im);
      ops::rmsnorm_forward(q.reshape({R, H * Dh}), A.get_acc(li, "rstd_q", {R}), qr, p.q_norm,
                           c.norm_eps, im);
      ops::rmsnorm_forward(k.reshape({R, Hkv * Dh}), A.get_acc(li, "rstd_k", {R}), kr, p.k_norm,
                           c.norm_eps, im);
      ops::rmsnorm_forward(v.reshape({R, Hkv * Dh}), A.get_acc(li, "rstd_v", {R}), vr, p.v_norm,
                           c.norm_eps, im);
    }
    ops::rope_forward(q, q, t0, c.rope_theta, im);  // RoPE(q)
    ops::rope_forward(k, k, t0, c.rope_theta, im);  // RoPE(k)
    const double scale = 1.0 / std::sqrt(double(Dh));
    if (!fill) {
      const auto [pd, seed] = dropout_site(i, 2);  // softmax(q k^T / sqrt(Dh)) v
      ops::attention_forward(att, lse, q, k, v, scale, im, pd, seed);
    } else {  // against the KV cache of the t0 earlier tokens
      reserve_cache(fill->k_cache[i], t0 + N);
      reserve_cache(fill->v_cache[i], t0 + N);
      for (int64_t b = 0; b < B; ++b) {
        Tensor kc = Tensor(fill->k_cache[i])[b].slice(0, t0 + N);
        Tensor vc = Tensor(fill->v_cache[i])[b].slice(0, t0 + N);
        tensor_copy(kc.slice(t0, t0 + N), k[b]);
        tensor_copy(vc.slice(t0, t0 + N), v[b]);
        ops::attention_forward(att[b].reshape({1, N, H, Dh}), lse[b].reshape({1, H, N}),
                               q[b].reshape({1, N, H, Dh}), kc.reshape({1, t0 + N, Hkv, Dh}),
                               vc.reshape({1, t0 + N, Hkv, Dh}), scale, im);
      }
    }
    proj_forward(A.pool, li, "w_o", p.w_o, mix, att.reshape({R, H * Dh}), im);  // out = att W_o
  }

  Tensor hm = A.get(li, "h_mid", {R, d});
  residual_branch_forward(i, 0, mix, lw.mix_gate);  // g * dropout(Mixer(...))
  const MlpWeights& m = lw.mlp;
  const bool post_norm = c.hybrid_norm;  // HybridNorm: h = RMSNorm(h + MLP(h))
  Tensor x2 = hm;
  if (!post_norm) {  // h = h + Mixer(RMSNorm(h)), then x = RMSNorm(h; g_mlp)
    x2 = A.get(li, "xn2", {R, d});
    ops::add_rmsnorm_forward(hm, x2, A.get_acc(li, "rstd2", {R}), h, mix, lw.mlp_norm, c.norm_eps,
                             im);
  } else {
    ops::add(hm, h, mix, im);  // h = h + Mixer(h)
  }
  Tensor ma = A.get(li, "ma", {R, F}), mb = A.get(li, "mb", {R, F}), mo = A.get(li, "m", {R, F});
  Tensor mlp = A.get(kGlobal, "mlp_out", {R, d});
  proj_forward(A.pool, li, "w_gate", m.w_gate, ma, x2, im);   // x W_gate
  proj_forward(A.pool, li, "w_up", m.w_up, mb, x2, im);       // x W_up
  ops::swiglu_forward(mo, ma, mb, im);                        // silu(x W_gate) * (x W_up)
  proj_forward(A.pool, li, "w_down", m.w_down, mlp, mo, im);  // (...) W_down
  residual_branch_forward(i, 1, mlp, lw.mlp_gate);            // g * dropout(MLP(...))
  Tensor h_next = A.get(li + 1, "h", {R, d});
  if (!post_norm) {
    ops::add(h_next, hm, mlp, im);  // h = h + MLP(RMSNorm(h))
  } else {
    ops::add_rmsnorm_forward(A.get(li, "mlp_sum", {R, d}), h_next, A.get_acc(li, "rstd2", {R}), hm,
                             mlp, lw.mlp_norm, c.norm_eps, im);  // h = RMSNorm(h + MLP(h))
  }
}

// A residual branch f becomes g * dropout(f) in place (each part only when switched on); the
// dropped f is kept for the gate's gradient.
void Model::residual_branch_forward(int64_t layer, int site, Tensor f, const Tensor& gate) {
  const auto [p, seed] = dropout_site(layer, site);
  if (p > 0) ops::dropout_forward(f, f, p, seed, impl_);
  if (gate.raw()) {
    Tensor kept = acts_->get(int(layer), site ? "mlp_dropped" : "mix_dropped", f.shape());
    tensor_copy(kept, f);
    ops::channel_scale_forward(f, kept, gate, impl_);
  }
}

// Gradient of the branch input from the gradient df_out of g * dropout(f): returns df (df_out
// itself when neither part is on, else a scratch buffer); accumulates the gate's gradient.
Tensor Model::residual_branch_backward(int64_t layer, int site, const Tensor& df_out,
                                       const Tensor& gate, Tensor dgate) {
  const auto [p, seed] = dropout_site(layer, site);
  if (p == 0 && !gate.raw()) return df_out;
  Tensor df = acts_->get(kGlobal, "branch_grad", df_out.shape());
  tensor_copy(df, df_out);
  if (gate.raw()) {
    Tensor kept = acts_->get(int(layer), site ? "mlp_dropped" : "mix_dropped", df_out.shape());
    ops::channel_scale_backward(df, dgate, df, kept, gate, impl_);
  }
  if (p > 0) ops::dropout_backward(df, df, p, seed, impl_);
  return df;
}

// ---------------------------------------------------------------------------------------------
// Loss: the head in row chunks, so that [B*N, V] logits are never held at once.

double Model::loss(const int32_t* targets, double grad_scale, double* loss_sum, int64_t* count) {
  Acts& A = *acts_;
  FELA_CHECK(A.B > 0, "[model] loss() before forward()");
  const int64_t R = A.B * A.N, d = config_.d_model, V = config_.vocab_size();
  int64_t n = 0;
  for (int64_t r = 0; r < R; ++r) n += targets[r] >= 0;
  FELA_CHECK(n > 0, "[model] loss() with no targets");
  const Tensor tgt = A.pool.get(kGlobal, "targets", {R}, DType::I32);
  tensor_copy(tgt, host_ids(targets, R));

  // Rows per chunk: 2^23 logits on the CPU (cache-sized), 2^29 bf16 logits (1 GiB) on the GPU,
  // where fewer, larger products and fewer passes over the padded head gradient pay: fela-small
  // at 8x1024 (one chunk) measured 314K tokens/s against 304K with 256 MiB chunks (bench_train).
  const int64_t budget = device_ == Device::Cpu ? (int64_t(1) << 23) : (int64_t(1) << 29);
  const int64_t rows = std::max<int64_t>(1, budget / V);
  Tensor xf = A.get(kGlobal, "xf", {R, d});
  Tensor dxf = A.get(kGlobal, "dxf", {R, d});
  Tensor row_loss = A.get_acc(kGlobal, "row_loss", {R});
  // On the GPU the tied head runs on rows padded to Vp columns (see head_pad_); its gradient
  // gathers in a padded f32 buffer and is added to dE at the end.
  const bool padded = head_pad_.numel() > 0;
  const int64_t Vp = padded ? head_pad_.shape()[0] : V;
  Tensor dhead;
  if (padded) {
    tensor_copy(Tensor(head_pad_).slice(0, V), w_.embed);  // the current bf16 E
    if (grad_scale != 0) {
      dhead = A.get_acc(kGlobal, "dhead_pad", {Vp, d});
      tensor_zero(dhead);
    }
  }
  for (int64_t r0 = 0; r0 < R; r0 += rows) {
    const int64_t r1 = std::min(R, r0 + rows), nr = r1 - r0;
    Tensor lg = A.get(kGlobal, "logits", {nr, Vp}), ls = row_loss.slice(r0, r1);
    Tensor x = xf.slice(r0, r1), t = tgt.slice(r0, r1);
    if (padded)
      ops::linear_forward(lg, x, head_pad_, Layout::OutIn, impl_);  // logits = x E^T
    else
      head_forward(lg, x);                                     // logits = x W_out
    if (grad_scale == 0) {
      ops::cross_entropy_forward(ls, lg, t, impl_, V);  // CE per row
      continue;
    }
    // CE per row and dlogits = (softmax - onehot) * scale / n, in place of the logits
    ops::cross_entropy_forward_backward(ls, lg, lg, t, grad_scale / double(n), impl_, V);
    if (padded)
      ops::linear_backward(dxf.slice(r0, r1), dhead, lg, x, head_pad_, Layout::OutIn,
                           GradMode::Write, impl_);
    else if (config_.tie_embeddings)
      ops::linear_backward(dxf.slice(r0, r1), dw_.embed, lg, x, w_.embed, Layout::OutIn,
                           GradMode::Write, impl_);
    else
      ops::linear_backward(dxf.slice(r0, r1), dw_.lm_head, lg, x, w_.lm_head, Layout::InOut,
                           GradMode::Write, impl_);
  }
  if (padded && grad_scale != 0) ops::add_inplace(dw_.embed, dhead.slice(0, V), impl_);
  // The row losses, summed in row order on the host (one copy from the GPU per call).
  Array host_loss = Array::empty(acc_, {R});
  tensor_copy(host_loss, row_loss);
  double sum = 0;
  for (int64_t r = 0; r < R; ++r)
    sum += acc_ == DType::F64 ? host_loss.data<double>()[r] : double(host_loss.data<float>()[r]);
  A.loss_has_grad = grad_scale != 0;
  if (loss_sum) *loss_sum = sum;
  if (count) *count = n;
  return sum / double(n);
}

void Model::logits(Tensor out, int64_t row0, int64_t n) {
  Acts& A = *acts_;
  FELA_CHECK(A.B > 0 && row0 >= 0 && row0 + n <= A.B * A.N, "[model] logits rows out of range");
  head_forward(out, A.get(kGlobal, "xf", {A.B * A.N, config_.d_model}).slice(row0, row0 + n));
}

// ---------------------------------------------------------------------------------------------
// Backward: the forward in reverse, accumulating into grads_.

void Model::backward() {
  Acts& A = *acts_;
  FELA_CHECK(A.loss_has_grad, "[model] backward() needs loss(targets, scale != 0) first");
  A.loss_has_grad = false;
  const Config& c = config_;
  const int64_t B = A.B, N = A.N, R = B * N, d = c.d_model, F = c.mlp_hidden, M = c.taps;
  const int64_t H = c.n_heads, Hkv = c.n_kv_heads, Dh = c.attn_head_dim(), L = c.n_layers;
  const ops::Impl im = impl_;

  Tensor dh = A.get(kGlobal, "dh", {R, d});
  Tensor dxn = A.get(kGlobal, "dxn", {R, d});
  ops::rmsnorm_backward(dh, dw_.final_norm, A.get(kGlobal, "dxf", {R, d}),
                        A.get(int(L), "h", {R, d}), w_.final_norm,
                        A.get_acc(kGlobal, "rstd_f", {R}), im);

  for (int64_t i = L - 1; i >= 0; --i) {
    if (A.pool.share_layers) layer_forward(i, nullptr);  // the activations layer i's backward reads
    const LayerWeights& lw = w_.layers[i];
    LayerWeights& gw = dw_.layers[i];
    const int li = int(i);

    // MLP: h = h_mid + g * drop(MLP(x)), x = RMSNorm(h_mid; g_mlp); or with HybridNorm
    // h = RMSNorm(h_mid + g * drop(MLP(h_mid)); g_mlp).
    {
      const MlpWeights &m = lw.mlp, &gm = gw.mlp;
      const bool post_norm = c.hybrid_norm;
      if (post_norm) {  // through the post-norm: dh becomes d(h_mid + branch)
        ops::rmsnorm_backward(dh, gw.mlp_norm, dh, A.get(li, "mlp_sum", {R, d}), lw.mlp_norm,
                              A.get_acc(li, "rstd2", {R}), im);  // in place
      }
      Tensor hm = A.get(li, "h_mid", {R, d});
      Tensor x2 = post_norm ? hm : A.get(li, "xn2", {R, d});
      Tensor ma = A.get(li, "ma", {R, F}), mb = A.get(li, "mb", {R, F}),
             mo = A.get(li, "m", {R, F});
      Tensor dma = A.get(kGlobal, "dma", {R, F}), dmb = A.get(kGlobal, "dmb", {R, F});
      const Tensor dmlp = residual_branch_backward(i, 1, dh, lw.mlp_gate, gw.mlp_gate);
      proj_backward(A.pool, li, "w_down", m.w_down, gm.w_down, dma, GradMode::Write, dmlp, mo, im);
      ops::swiglu_backward(dma, dmb, dma, ma, mb, im);
      proj_backward(A.pool, li, "w_gate", m.w_gate, gm.w_gate, dxn, GradMode::Write, dma, x2, im);
      proj_backward(A.pool, li, "w_up", m.w_up, gm.w_up, dxn, GradMode::Add, dmb, x2, im);
      if (post_norm) {
        ops::add_inplace(dh, dxn, im);
      } else {
        ops::rmsnorm_backward(dh, gw.mlp_norm, dxn, hm, lw.mlp_norm, A.get_acc(li, "rstd2", {R}),
                              im, GradMode::Add);
      }
    }

    // Mixer: h_mid = h + g * drop(Mixer(FAN?(RMSNorm?(h))))
    const Tensor dmix = residual_branch_backward(i, 0, dh, lw.mix_gate, gw.mix_gate);
    Tensor xn = lw.mix_norm.raw() ? A.get(li, "xn", {R, d}) : A.get(li, "h", {R, d});
    Tensor xm = lw.fan.w_p.raw() ? A.get(li, "fan_out", {R, d}) : xn;
    Tensor dxm = lw.fan.w_p.raw() ? A.get(kGlobal, "dxm", {R, d}) : dxn;
    if (lw.mixer == 'S') {
      const FnoWeights &p = lw.fno, &gp = gw.fno;
      auto [u, z, f, y, o] = fno_acts(A.pool, li, c, B, N, acc_);
      Tensor d_o = A.get(kGlobal, "fno_do", {R, d}), dz = A.get(kGlobal, "fno_dz", {R, d});
      Tensor dy = A.get(kGlobal, "fno_dy", {B, N, d}), du = A.get(kGlobal, "fno_du", {B, N, d});
      Tensor df = A.get_acc(kGlobal, "fno_df", {d, M});
      ops::linear_backward(d_o, gp.w_o, dmix, o, p.w_o, Layout::InOut, GradMode::Write, im);
      ops::swiglu_backward(dz, dy, d_o, z, y, im);
      tensor_zero(df);
      ops::fno_conv_backward(du, df, gp.skip, dy, u, f, p.skip, im);
      ops::fno_filter_backward(gp.k_re, gp.k_im, df, im);
      ops::linear_backward(dxm, gp.w_u, du, xm, p.w_u, Layout::InOut, GradMode::Write, im);
      ops::linear_backward(dxm, gp.w_z, dz, xm, p.w_z, Layout::InOut, GradMode::Add, im);
    } else if (lw.mixer == 'L') {
      const GlaWeights &p = lw.gla, &gp = gw.gla;
      const int64_t dk = c.d_k(), dv = c.d_v(), Dk = c.head_dk(), Dv = c.head_dv();
      auto [q, k, v, g, a1, apre, a, og, rstd_o, on, o2] = gla_acts(A.pool, li, c, R, acc_);
      Tensor do2 = A.get(kGlobal, "gla_do2", {R, dv}), dg = A.get(kGlobal, "gla_dg", {R, dv});
      Tensor dq = A.get(kGlobal, "gla_dq", {R, dk}), dk_ = A.get(kGlobal, "gla_dk", {R, dk});
      Tensor dv_ = A.get(kGlobal, "gla_dv", {R, dv}), da = A.get_acc(kGlobal, "gla_da", {R, dk});
      Tensor dapre = A.get(kGlobal, "gla_dapre", {R, dk});
      Tensor dog = A.get(kGlobal, "gla_dog", {R, dv}),
             da1 = A.get(kGlobal, "gla_da1", {R, c.gate_rank});
      ops::linear_backward(do2, gp.w_o, dmix, o2, p.w_o, Layout::InOut, GradMode::Write, im);
      ops::swiglu_backward(dg, do2, do2, g, on, im);  // do2 becomes d(on)
      ops::rmsnorm_backward(dog.reshape({R * H, Dv}), gp.g_o, do2.reshape({R * H, Dv}),
                            og.reshape({R * H, Dv}), p.g_o, rstd_o, im);
      ops::gla_backward(dq.reshape({B, N, H, Dk}), dk_.reshape({B, N, H, Dk}),
                        dv_.reshape({B, N, H, Dv}), da.reshape({B, N, H, Dk}),
                        dog.reshape({B, N, H, Dv}), q.reshape({B, N, H, Dk}),
                        k.reshape({B, N, H, Dk}), v.reshape({B, N, H, Dv}),
                        a.reshape({B, N, H, Dk}), 1.0 / std::sqrt(double(Dk)), c.chunk, im);
      ops::decay_gate_backward(dapre, gp.b_a, da, apre, p.b_a, c.gate_normalizer,
                               im);  // d(apre) from da
      ops::linear_backward(da1, gp.w_a2, dapre, a1, p.w_a2, Layout::InOut, GradMode::Write, im);
      ops::linear_backward(dxm, gp.w_q, dq, xm, p.w_q, Layout::InOut, GradMode::Write, im);
      ops::linear_backward(dxm, gp.w_k, dk_, xm, p.w_k, Layout::InOut, GradMode::Add, im);
      ops::linear_backward(dxm, gp.w_v, dv_, xm, p.w_v, Layout::InOut, GradMode::Add, im);
      ops::linear_backward(dxm, gp.w_g, dg, xm, p.w_g, Layout::InOut, GradMode::Add, im);
      ops::linear_backward(dxm, gp.w_a1, da1, xm, p.w_a1, Layout::InOut, GradMode::Add, im);
    } else {
      const AttnWeights &p = lw.attn, &gp = gw.attn;
      auto [q, k, v, att, lse] = attn_acts(A.pool, li, c, B, N, acc_);
      Tensor datt = A.get(kGlobal, "attn_datt", {B, N, H, Dh});
      Tensor dq = A.get(kGlobal, "attn_dq", {B, N, H, Dh});
      Tensor dk = A.get(kGlobal, "attn_dk", {B, N, Hkv, Dh});
      Tensor dv = A.get(kGlobal, "attn_dv", {B, N, Hkv, Dh});
      proj_backward(A.pool, li, "w_o", p.w_o, gp.w_o, datt.reshape({R, H * Dh}), GradMode::Write,
                    dmix, att.reshape({R, H * Dh}), im);
      const auto [pd, seed] = dropout_site(i, 2);
      ops::attention_backward(dq, dk, dv, datt, q, k, v, att, lse, 1.0 / std::sqrt(double(Dh)), im,
                              pd, seed);
      ops::rope_backward(dq, dq, 0, c.rope_theta, im);
      ops::rope_backward(dk, dk, 0, c.rope_theta, im);
      Tensor dq2 = dq.reshape({R, H * Dh}), dk2 = dk.reshape({R, Hkv * Dh});
      Tensor dv2 = dv.reshape({R, Hkv * Dh});
      if (p.q_norm.raw()) {  // back through the QKV-norm (in place: dx may alias dy)
        ops::rmsnorm_backward(dq2, gp.q_norm, dq2, A.get(li, "q_raw", {R, H * Dh}), p.q_norm,
                              A.get_acc(li, "rstd_q", {R}), im);
        ops::rmsnorm_backward(dk2, gp.k_norm, dk2, A.get(li, "k_raw", {R, Hkv * Dh}), p.k_norm,
                              A.get_acc(li, "rstd_k", {R}), im);
        ops::rmsnorm_backward(dv2, gp.v_norm, dv2, A.get(li, "v_raw", {R, Hkv * Dh}), p.v_norm,
                              A.get_acc(li, "rstd_v", {R}), im);
      }
      proj_backward(A.pool, li, "w_q", p.w_q, gp.w_q, dxm, GradMode::Write, dq2, xm, im);
      proj_backward(A.pool, li, "w_k", p.w_k, gp.w_k, dxm, GradMode::Add, dk2, xm, im);
      proj_backward(A.pool, li, "w_v", p.w_v, gp.w_v, dxm, GradMode::Add, dv2, xm, im);
    }
    if (lw.fan.w_p.raw()) {  // back through FAN and its two linears
      const int64_t dp = c.fan_dp();
      Tensor dfp = A.get(kGlobal, "dfan_p", {R, dp}),
             dfl = A.get(kGlobal, "dfan_l", {R, d - 2 * dp});
      ops::fan_backward(dfp, dfl, dxm, A.get(li, "fan_p", {R, dp}), im);
      ops::linear_backward(dxn, gw.fan.w_p, dfp, xn, lw.fan.w_p, Layout::InOut, GradMode::Write,
                           im);
      ops::linear_backward(dxn, gw.fan.w_l, dfl, xn, lw.fan.w_l, Layout::InOut, GradMode::Add, im);
    }
    if (lw.mix_norm.raw()) {
      ops::rmsnorm_backward(dh, gw.mix_norm, dxn, A.get(li, "h", {R, d}), lw.mix_norm,
                            A.get_acc(li, "rstd", {R}), im, GradMode::Add);
    } else {
      ops::add_inplace(dh, dxn, im);
    }
  }
  ops::embedding_backward(dw_.embed, dh, A.tokens, im);  // dE[tokens] += dh
}

// ---------------------------------------------------------------------------------------------
// Inference

int64_t InferenceState::bytes() const {
  int64_t n = 0;
  for (const auto* v : {&ring, &filter, &gla, &k_cache, &v_cache})
    for (const Array& a : *v) n += int64_t(a.view().bytes());
  return n;
}

InferenceState Model::new_state(int64_t B) const {
  const Config& c = config_;
  FELA_CHECK(B >= 1, "[model] batch must be positive");
  InferenceState s;
  s.B = B;
  const int64_t L = c.n_layers, d = c.d_model, M = c.taps;
  s.ring.resize(L), s.filter.resize(L), s.gla.resize(L), s.k_cache.resize(L), s.v_cache.resize(L);
  for (int64_t i = 0; i < L; ++i) {
    switch (c.mixer(i)) {
      case 'S':
        s.ring[i] = Array::zeros(act_, {B, M - 1, d}, device_);
        s.filter[i] = Array::empty(acc_, {d, M}, device_);
        ops::fno_filter_forward(s.filter[i], w_.layers[i].fno.k_re, w_.layers[i].fno.k_im, impl_);
        break;
      case 'L':
        s.gla[i] = Array::zeros(acc_, {B, c.n_heads, c.head_dk(), c.head_dv()}, device_);
        break;
      case 'A':
        s.k_cache[i] = Array::zeros(act_, {B, 0, c.n_kv_heads, c.attn_head_dim()}, device_);
        s.v_cache[i] = Array::zeros(act_, {B, 0, c.n_kv_heads, c.attn_head_dim()}, device_);
        break;
    }
  }
  return s;
}

void Model::prefill(InferenceState& s, const int32_t* tokens, int64_t N, Tensor logits_last,
                    int64_t chunk) {
  const int64_t B = s.B, d = config_.d_model;
  FELA_CHECK(N >= 1 && chunk >= 1, "[model] prefill needs N >= 1 and chunk >= 1");
  check_shape(logits_last, {B, config_.vocab_size()}, "model", "logits");
  std::vector<int32_t> part;
  for (int64_t p0 = 0; p0 < N; p0 += chunk) {  // chunks bound the activation memory
    const int64_t n = std::min(chunk, N - p0);
    part.resize(B * n);
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(&part[b * n], tokens + b * N + p0, n * sizeof(int32_t));
    forward_impl(part.data(), B, n, &s);
    s.t += n;
    if (p0 + n == N) {
      Tensor last = acts_->get(kGlobal, "last", {B, d});
      Tensor xf = acts_->get(kGlobal, "xf", {B * n, d});
      for (int64_t b = 0; b < B; ++b) tensor_copy(last[b], xf[b * n + n - 1]);
      head_forward(logits_last, last);
    }
  }
}

void Model::step(InferenceState& s, const int32_t* tokens, Tensor logits) {
  // One token is the N = 1 case of the continuing forward; the FNO layers take the ring-buffer
  // path there, so a step costs O(M d + H Dk Dv) per layer whatever the context length.
  check_shape(logits, {s.B, config_.vocab_size()}, "model", "logits");
  forward_impl(tokens, s.B, 1, &s);
  s.t += 1;
  head_forward(logits, acts_->get(kGlobal, "xf", {s.B, config_.d_model}));
}

}  // namespace fela
