#include "fela/model/weights.h"

namespace fela {

Weights bind_weights(const ParamTable& table, const Config& c, const Tensor& flat) {
  auto get = [&](const std::string& name) {
    const ParamSpec* s = table.find(name);
    FELA_CHECK(s, "[model] no parameter ", name);
    return table.view(flat, *s);
  };
  Weights w;
  w.embed = get("embed.weight");
  w.final_norm = get("final_norm.weight");
  if (!c.tie_embeddings) w.lm_head = get("lm_head.w_out");
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    LayerWeights l;
    l.mixer = c.mixer(i);
    l.mix_norm = get(p + "mix_norm.weight");
    l.mlp_norm = get(p + "mlp_norm.weight");
    if (l.mixer == 'S')
      l.fno = {get(p + "fno.w_u"),  get(p + "fno.w_z"),  get(p + "fno.w_o"),
               get(p + "fno.k_re"), get(p + "fno.k_im"), get(p + "fno.skip")};
    if (l.mixer == 'L')
      l.gla = {get(p + "gla.w_q"),  get(p + "gla.w_k"), get(p + "gla.w_v"),
               get(p + "gla.w_g"),  get(p + "gla.w_a1"), get(p + "gla.w_a2"),
               get(p + "gla.b_a"),  get(p + "gla.g_o"), get(p + "gla.w_o")};
    if (l.mixer == 'A')
      l.attn = {get(p + "attn.w_q"), get(p + "attn.w_k"), get(p + "attn.w_v"),
                get(p + "attn.w_o")};
    l.mlp = {get(p + "mlp.w_gate"), get(p + "mlp.w_up"), get(p + "mlp.w_down")};
    w.layers.push_back(l);
  }
  return w;
}

}  // namespace fela
