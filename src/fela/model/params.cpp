// Parameter table construction (SPEC §9 names) and initialisation (SPEC §2, §6).
#include "fela/model/params.h"

#include <cmath>
#include <complex>
#include <vector>

#include "fela/core/rng.h"

namespace fela {

std::string part_name(Part p) {
  switch (p) {
    case Part::Embedding:
      return "embedding";
    case Part::LmHead:
      return "lm_head";
    case Part::Norms:
      return "norms";
    case Part::Fno:
      return "fno";
    case Part::Gla:
      return "gla";
    case Part::Attention:
      return "attention";
    case Part::Mlp:
      return "mlp";
    case Part::Fan:
      return "fan";
    case Part::Gates:
      return "gates";
  }
  return "?";
}

void ParamTable::add(std::string name, Shape shape, Init init, Part part, bool decay) {
  index_[name] = specs_.size();
  specs_.push_back({std::move(name), shape, init, part, decay, total_});
  total_ += shape.numel();
}

void ParamTable::add_proj(const std::string& name, int64_t in, int64_t out, Init init, Part part,
                          int64_t cola_rank) {
  if (cola_rank == 0) return add(name, {in, out}, init, part, true);
  add(name + ".a", {in, cola_rank}, Init::Normal, part, true);
  add(name + ".b", {cola_rank, out}, init, part, true);
}

ParamTable::ParamTable(const Config& c) {
  const int64_t V = c.vocab_size(), d = c.d_model, F = c.mlp_hidden;
  add("embed.weight", {V, d}, Init::Normal, Part::Embedding, true);
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    if (!c.qkv_norm(i)) add(p + "mix_norm.weight", {d}, Init::Ones, Part::Norms, false);
    if (c.fan_p > 0) {  // FAN(x) = [cos(x W_p) || sin(x W_p) || x W_l]
      add(p + "fan.w_p", {d, c.fan_dp()}, Init::Normal, Part::Fan, true);
      add(p + "fan.w_l", {d, d - 2 * c.fan_dp()}, Init::Normal, Part::Fan, true);
    }
    switch (c.mixer(i)) {
      case 'S':
        add(p + "fno.w_u", {d, d}, Init::Normal, Part::Fno, true);
        add(p + "fno.w_z", {d, d}, Init::Normal, Part::Fno, true);
        add(p + "fno.w_o", {d, d}, Init::NormalResidual, Part::Fno, true);
        add(p + "fno.k_re", {d, c.modes}, Init::FnoSpectrumRe, Part::Fno, false);
        add(p + "fno.k_im", {d, c.modes}, Init::FnoSpectrumIm, Part::Fno, false);
        add(p + "fno.skip", {d}, Init::Ones, Part::Fno, false);
        break;
      case 'L':
        add(p + "gla.w_q", {d, c.d_k()}, Init::Normal, Part::Gla, true);
        add(p + "gla.w_k", {d, c.d_k()}, Init::Normal, Part::Gla, true);
        add(p + "gla.w_v", {d, c.d_v()}, Init::Normal, Part::Gla, true);
        add(p + "gla.w_g", {d, c.d_v()}, Init::Normal, Part::Gla, true);
        add(p + "gla.w_a1", {d, c.gate_rank}, Init::Normal, Part::Gla, true);
        add(p + "gla.w_a2", {c.gate_rank, c.d_k()}, Init::Normal, Part::Gla, true);
        add(p + "gla.b_a", {c.d_k()}, Init::Zeros, Part::Gla, false);
        add(p + "gla.g_o", {c.head_dv()}, Init::Ones, Part::Gla, false);
        add(p + "gla.w_o", {c.d_v(), d}, Init::NormalResidual, Part::Gla, true);
        break;
      case 'A': {
        const int64_t q = c.n_heads * c.attn_head_dim(), kv = c.n_kv_heads * c.attn_head_dim();
        const int64_t r = c.cola_rank;
        add_proj(p + "attn.w_q", d, q, Init::Normal, Part::Attention, r);
        add_proj(p + "attn.w_k", d, kv, Init::Normal, Part::Attention, r);
        add_proj(p + "attn.w_v", d, kv, Init::Normal, Part::Attention, r);
        add_proj(p + "attn.w_o", q, d, Init::NormalResidual, Part::Attention, r);
        if (c.qkv_norm(i)) {
          add(p + "attn.q_norm.weight", {q}, Init::Ones, Part::Norms, false);
          add(p + "attn.k_norm.weight", {kv}, Init::Ones, Part::Norms, false);
          add(p + "attn.v_norm.weight", {kv}, Init::Ones, Part::Norms, false);
        }
        break;
      }
    }
    if (c.gated_residual) add(p + "mix_gate", {d}, Init::Ones, Part::Gates, false);
    add(p + "mlp_norm.weight", {d}, Init::Ones, Part::Norms, false);
    add_proj(p + "mlp.w_gate", d, F, Init::Normal, Part::Mlp, c.cola_rank);
    add_proj(p + "mlp.w_up", d, F, Init::Normal, Part::Mlp, c.cola_rank);
    add_proj(p + "mlp.w_down", F, d, Init::NormalResidual, Part::Mlp, c.cola_rank);
    if (c.gated_residual) add(p + "mlp_gate", {d}, Init::Ones, Part::Gates, false);
  }
  add("final_norm.weight", {d}, Init::Ones, Part::Norms, false);
  if (!c.tie_embeddings) add("lm_head.w_out", {d, V}, Init::Normal, Part::LmHead, true);
}

int64_t ParamTable::count(Part p) const {
  int64_t n = 0;
  for (const auto& s : specs_)
    if (s.part == p) n += s.shape.numel();
  return n;
}

const ParamSpec* ParamTable::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &specs_[it->second];
}

Tensor ParamTable::view(const Tensor& flat, const ParamSpec& s) const {
  FELA_CHECK(flat.numel() == total_, "[params] flat buffer has ", flat.numel(), " values, table ",
             total_);
  return flat.slice(s.offset, s.offset + s.shape.numel()).reshape(s.shape);
}

namespace {

// SPEC §2: per channel c, taps f[j] ~ N(0,1) exp(-j / tau_c), tau_c log-spaced in [1, M]
// over channels, unit L2 norm; K_c = rfft(f_c), first `modes` bins.
void init_fno_spectrum(double* re, double* im, int64_t d, int64_t modes, int64_t M, Rng& rng) {
  std::vector<double> f(M), cos_tab(M), sin_tab(M);  // twiddles e^{2 pi i w / M}
  for (int64_t w = 0; w < M; ++w) {
    cos_tab[w] = std::cos(2.0 * M_PI * double(w) / double(M));
    sin_tab[w] = std::sin(2.0 * M_PI * double(w) / double(M));
  }
  for (int64_t c = 0; c < d; ++c) {
    const double frac = d > 1 ? double(c) / double(d - 1) : 0.0;
    const double tau = std::exp(frac * std::log(double(M)));  // 1 .. M
    double norm2 = 0;
    for (int64_t j = 0; j < M; ++j) {
      f[j] = rng.normal() * std::exp(-double(j) / tau);
      norm2 += f[j] * f[j];
    }
    const double inv = 1.0 / std::sqrt(norm2);
    for (int64_t k = 0; k < modes; ++k) {  // rfft bin k = sum_j f_j e^{-2 pi i k j / M}
      double sr = 0, si = 0;
      for (int64_t j = 0; j < M; ++j) {
        const int64_t w = (k * j) % M;
        sr += f[j] * cos_tab[w];
        si -= f[j] * sin_tab[w];
      }
      re[c * modes + k] = sr * inv;
      im[c * modes + k] = si * inv;
    }
  }
}

template <class T>
void init_flat(const ParamTable& table, const Config& c, T* flat, uint64_t seed) {
  const double std_resid = c.init_std / std::sqrt(2.0 * double(c.n_layers));
  const auto& specs = table.specs();
  for (size_t i = 0; i < specs.size(); ++i) {
    const ParamSpec& s = specs[i];
    T* p = flat + s.offset;
    const int64_t n = s.shape.numel();
    Rng rng(seed * 0x9e3779b97f4a7c15ull + i);
    switch (s.init) {
      case Init::Normal:
      case Init::NormalResidual: {
        const double sd = s.init == Init::Normal ? c.init_std : std_resid;
        for (int64_t k = 0; k < n; ++k) p[k] = T(rng.normal() * sd);
        break;
      }
      case Init::Ones:
        std::fill(p, p + n, T(1));
        break;
      case Init::Zeros:
        std::fill(p, p + n, T(0));
        break;
      case Init::FnoSpectrumRe: {  // the next tensor is the matching k_im
        const ParamSpec& im = specs.at(i + 1);
        FELA_CHECK(im.init == Init::FnoSpectrumIm, "[params] ", s.name, " without its k_im");
        std::vector<double> re_d(n), im_d(n);
        init_fno_spectrum(re_d.data(), im_d.data(), s.shape[0], s.shape[1], c.taps, rng);
        for (int64_t k = 0; k < n; ++k) p[k] = T(re_d[k]), flat[im.offset + k] = T(im_d[k]);
        break;
      }
      case Init::FnoSpectrumIm:
        break;  // written with its k_re
    }
  }
}

}  // namespace

void init_params(const ParamTable& table, const Config& c, Tensor flat, uint64_t seed) {
  FELA_CHECK(flat.numel() == table.total(), "[params] buffer of ", flat.numel(), " for ",
             table.total(), " parameters");
  if (flat.dtype() == DType::F64)
    init_flat(table, c, flat.data<double>(), seed);
  else
    init_flat(table, c, flat.data<float>(), seed);
}

}  // namespace fela
