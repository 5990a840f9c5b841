#include "fela/model/stats.h"

#include <algorithm>

#include "fela/model/params.h"

namespace fela {

ModelStats model_stats(const Config& c, int64_t seq_len) {
  ParamTable table(c);
  ModelStats s;
  s.params = table.total();
  for (const ParamSpec& p : table.specs())
    if (p.shape.rank == 2 && p.part != Part::Embedding && p.init != Init::FnoSpectrumRe &&
        p.init != Init::FnoSpectrumIm)
      s.matmul_params += p.shape.numel();
  if (c.tie_embeddings) s.matmul_params += c.d_model * c.vocab_size();  // head = E^T

  const double d = double(c.d_model), M = double(c.taps), H = double(c.n_heads);
  const double Dk = double(c.head_dk()), Dv = double(c.head_dv()), Cc = double(c.chunk);
  const double N = double(seq_len);
  double mixer_fwd = 0, mixer_gen = 0;
  for (int64_t i = 0; i < c.n_layers; ++i) {
    switch (c.mixer(i)) {
      case 'S':
        mixer_fwd += 2 * std::min(M, N) * d;
        mixer_gen += 2 * M * d;
        s.state_bytes_fixed += int64_t(c.taps - 1) * c.d_model * 4;
        break;
      case 'L':
        mixer_fwd += H * (4 * Dk * Dv + std::min(Cc, N) * (Dk + Dv));
        mixer_gen += H * 4 * Dk * Dv;
        s.state_bytes_fixed += c.n_heads * c.head_dk() * c.head_dv() * 4;
        break;
      case 'A':
        mixer_fwd += 2 * N * d;
        mixer_gen += 4 * N * d;
        s.state_bytes_per_token += 2 * c.n_kv_heads * c.attn_head_dim() * 4;
        break;
    }
  }
  s.forward_flops = 2.0 * double(s.matmul_params) + mixer_fwd;
  s.train_flops = 3.0 * s.forward_flops;
  s.generate_flops = 2.0 * double(s.matmul_params) + mixer_gen;
  return s;
}

nlohmann::json model_info_json(const Config& c, int64_t seq_len) {
  ParamTable table(c);
  const ModelStats s = model_stats(c, seq_len);
  nlohmann::json parts = nlohmann::json::object();
  for (Part p : kAllParts)
    if (table.count(p)) parts[part_name(p)] = table.count(p);
  return {{"config", c.to_json()},
          {"params", s.params},
          {"params_by_part", parts},
          {"params_non_embedding", s.params - table.count(Part::Embedding)},
          {"flops_per_token",
           {{"seq_len", seq_len},
            {"train", s.train_flops},
            {"forward", s.forward_flops},
            {"generate", s.generate_flops}}},
          {"state_bytes_per_sequence",
           {{"fixed", s.state_bytes_fixed},
            {"per_token", s.state_bytes_per_token},
            {"at_seq_len", s.state_bytes_fixed + s.state_bytes_per_token * seq_len}}}};
}

}  // namespace fela
