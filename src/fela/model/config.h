// Model configuration (SPEC §6, §9): the fields of config.json, the named configurations,
// JSON reading with overrides, and validation that names the offending field.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace fela {

struct Config {
  std::string name = "custom";
  std::string vocab = "bytes";  // "bytes" (V = 261) or "gpt2" (V = 50257)
  int64_t d_model = 64;
  int64_t n_layers = 4;
  int64_t n_heads = 4;
  std::string pattern = "SSSL";  // over {S: FNO, L: GLA, A: attention}, repeated over layers
  int64_t taps = 512;            // M
  int64_t modes = 0;             // 0: M/2 + 1
  double expand_k = 0.5;
  double expand_v = 1.0;
  int64_t gate_rank = 16;
  double gate_normalizer = 16;
  int64_t chunk = 64;
  int64_t n_kv_heads = 0;  // 0: n_heads
  double rope_theta = 10000;
  int64_t mlp_hidden = 0;  // 0: 256 * ceil(8/3 d / 256)
  double norm_eps = 1e-6;
  bool tie_embeddings = true;
  double init_std = 0.02;
  int64_t format_version = 1;
  int64_t head_dim = 0;  // attention head width Dh; 0: d_model / n_heads

  // FANformer parts (SPEC §8), all off by default; each is one switch of the same block.
  double fan_p = 0;             // FAN(x) in front of every mixer (ATF for attention), d_p = p d
  int64_t cola_rank = 0;        // attention and MLP linears x W -> silu(x A) B with rank r
  bool hybrid_norm = false;     // QKV-norm instead of pre-norm (layers > 0), post-norm MLP
  bool gated_residual = false;  // h + g * f(h), g [d] learnable
  double dropout = 0;           // attention probabilities, mixer and MLP branches; training only

  // Derived sizes (valid after resolve()).
  int64_t vocab_size() const;
  char mixer(int64_t layer) const { return pattern[layer % pattern.size()]; }
  bool has_mixer(char kind) const;
  int64_t d_k() const { return int64_t(d_model * expand_k); }
  int64_t d_v() const { return int64_t(d_model * expand_v); }
  int64_t head_dk() const { return d_k() / n_heads; }
  int64_t head_dv() const { return d_v() / n_heads; }
  int64_t attn_head_dim() const { return head_dim ? head_dim : d_model / n_heads; }
  int64_t fan_dp() const { return int64_t(fan_p * double(d_model)); }  // floor(p d)
  // HybridNorm: attention layers after the first normalise q, k, v instead of their input.
  bool qkv_norm(int64_t layer) const { return hybrid_norm && layer > 0 && mixer(layer) == 'A'; }

  // Fills the fields whose default depends on others (modes, n_kv_heads, mlp_hidden), then
  // validates. Throws fela::Error "[config] <field> ...".
  void resolve();

  nlohmann::json to_json() const;
  // Fields present in j override this config's; unknown fields are refused.
  void apply_json(const nlohmann::json& j);
};

// Names of the built-in configurations, in the order of SPEC §6.
std::vector<std::string> named_config_names();
// A built-in configuration, resolved. Unknown names throw with the list of known ones.
Config named_config(const std::string& name);
// A built-in name, or a JSON file (whose optional "base" names the built-in it starts from),
// then "field=value" overrides; resolved and validated.
Config load_config(const std::string& name_or_file, const std::vector<std::string>& overrides = {});
// Parses a config.json text (as written in checkpoints); resolved and validated.
Config config_from_json_text(const std::string& text, const std::string& origin);

}  // namespace fela
