#include "fela/model/weights.h"

namespace fela {

Weights bind_weights(const ParamTable& table, const Config& c, const Tensor& flat,
                     const Tensor& matrices) {
  auto view = [&](const ParamSpec& s) {
    return table.view(s.decay && matrices.raw() ? matrices : flat, s);
  };
  auto get = [&](const std::string& name) {
    const ParamSpec* s = table.find(name);
    FELA_CHECK(s, "[model] no parameter ", name);
    return view(*s);
  };
  auto opt = [&](const std::string& name) {  // a tensor that a switch may leave out
    const ParamSpec* s = table.find(name);
    return s ? view(*s) : Tensor();
  };
  auto proj = [&](const std::string& name) {
    return table.find(name) ? Proj{get(name), {}, {}}
                            : Proj{{}, get(name + ".a"), get(name + ".b")};
  };
  Weights w;
  w.embed = get("embed.weight");
  w.final_norm = get("final_norm.weight");
  if (!c.tie_embeddings) w.lm_head = get("lm_head.w_out");
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    LayerWeights l;
    l.mixer = c.mixer(i);
    l.mix_norm = opt(p + "mix_norm.weight");
    l.mlp_norm = get(p + "mlp_norm.weight");
    l.mix_gate = opt(p + "mix_gate");
    l.mlp_gate = opt(p + "mlp_gate");
    l.fan = {opt(p + "fan.w_p"), opt(p + "fan.w_l")};
    if (l.mixer == 'S')
      l.fno = {get(p + "fno.w_u"),  get(p + "fno.w_z"),  get(p + "fno.w_o"),
               get(p + "fno.k_re"), get(p + "fno.k_im"), get(p + "fno.skip")};
    if (l.mixer == 'L')
      l.gla = {get(p + "gla.w_q"), get(p + "gla.w_k"),  get(p + "gla.w_v"),
               get(p + "gla.w_g"), get(p + "gla.w_a1"), get(p + "gla.w_a2"),
               get(p + "gla.b_a"), get(p + "gla.g_o"),  get(p + "gla.w_o")};
    if (l.mixer == 'A')
      l.attn = {proj(p + "attn.w_q"),          proj(p + "attn.w_k"),
                proj(p + "attn.w_v"),          proj(p + "attn.w_o"),
                opt(p + "attn.q_norm.weight"), opt(p + "attn.k_norm.weight"),
                opt(p + "attn.v_norm.weight")};
    l.mlp = {proj(p + "mlp.w_gate"), proj(p + "mlp.w_up"), proj(p + "mlp.w_down")};
    w.layers.push_back(l);
  }
  return w;
}

}  // namespace fela
