// Config fields, named configurations and validation.
#include "fela/model/config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "fela/core/error.h"

namespace fela {

using nlohmann::json;

int64_t Config::vocab_size() const { return vocab == "gpt2" ? 50257 : 261; }

bool Config::has_mixer(char kind) const {
  for (int64_t i = 0; i < n_layers; ++i)
    if (mixer(i) == kind) return true;
  return false;
}

void Config::resolve() {
  auto need = [](bool ok, const auto&... msg) { FELA_CHECK(ok, "[config] ", msg...); };
  need(vocab == "bytes" || vocab == "gpt2", "vocab '", vocab,
       "' is unknown (expected bytes or gpt2)");
  need(d_model >= 1, "d_model must be positive, got ", d_model);
  need(n_layers >= 1, "n_layers must be positive, got ", n_layers);
  need(n_heads >= 1, "n_heads must be positive, got ", n_heads);
  need(head_dim >= 0, "head_dim must be >= 0 (0: d_model / n_heads), got ", head_dim);
  need(head_dim > 0 || d_model % n_heads == 0, "d_model (", d_model,
       ") must be divisible by n_heads (", n_heads, ")");
  need(!pattern.empty(), "pattern must not be empty");
  for (char c : pattern)
    need(c == 'S' || c == 'L' || c == 'A', "pattern '", pattern, "' has letter '", c,
         "' (allowed: S, L, A)");
  need(taps >= 1, "taps must be at least 1, got ", taps);
  if (modes == 0) modes = taps / 2 + 1;
  need(modes >= 1 && modes <= taps / 2 + 1, "modes must be in [1, taps/2 + 1 = ", taps / 2 + 1,
       "], got ", modes);
  need(expand_k > 0 && expand_v > 0, "expand_k and expand_v must be positive");
  const bool gla = has_mixer('L');
  need(!gla || (std::fabs(d_model * expand_k - double(d_k())) < 1e-9 && d_k() % n_heads == 0 &&
                d_k() > 0),
       "expand_k (", expand_k, ") must give a key width divisible by n_heads");
  need(!gla || (std::fabs(d_model * expand_v - double(d_v())) < 1e-9 && d_v() % n_heads == 0 &&
                d_v() > 0),
       "expand_v (", expand_v, ") must give a value width divisible by n_heads");
  need(gate_rank >= 1, "gate_rank must be positive, got ", gate_rank);
  need(gate_normalizer > 0, "gate_normalizer must be positive, got ", gate_normalizer);
  need(chunk >= 1, "chunk must be positive, got ", chunk);
  if (n_kv_heads == 0) n_kv_heads = n_heads;
  need(n_kv_heads >= 1 && n_heads % n_kv_heads == 0, "n_kv_heads (", n_kv_heads,
       ") must divide n_heads (", n_heads, ")");
  need(rope_theta > 0, "rope_theta must be positive, got ", rope_theta);
  need(!has_mixer('A') || attn_head_dim() % 2 == 0, "d_model / n_heads (", attn_head_dim(),
       ") must be even for rotary embeddings");
  if (mlp_hidden == 0) mlp_hidden = 256 * int64_t(std::ceil(8.0 / 3.0 * d_model / 256.0));
  need(mlp_hidden >= 1, "mlp_hidden must be positive, got ", mlp_hidden);
  need(fan_p >= 0 && fan_p < 0.5, "fan_p must be in [0, 0.5), got ", fan_p);
  need(dropout >= 0 && dropout < 1, "dropout must be in [0, 1), got ", dropout);
  need(cola_rank >= 0, "cola_rank must be >= 0 (0 = off), got ", cola_rank);
  if (cola_rank > 0) {  // the rank may not exceed the narrowest layer it replaces
    int64_t narrowest = std::min(d_model, mlp_hidden);
    if (has_mixer('A'))
      narrowest = std::min({narrowest, n_kv_heads * attn_head_dim(), n_heads * attn_head_dim()});
    need(cola_rank <= narrowest, "cola_rank (", cola_rank,
         ") is larger than the width of a layer it applies to (", narrowest, ")");
  }
  need(norm_eps > 0, "norm_eps must be positive, got ", norm_eps);
  need(init_std > 0, "init_std must be positive, got ", init_std);
  need(format_version == 1, "format_version ", format_version,
       " is not supported (this build reads version 1)");
}

json Config::to_json() const {
  json j{{"name", name},
         {"vocab", vocab},
         {"d_model", d_model},
         {"n_layers", n_layers},
         {"n_heads", n_heads},
         {"pattern", pattern},
         {"taps", taps},
         {"modes", modes},
         {"expand_k", expand_k},
         {"expand_v", expand_v},
         {"gate_rank", gate_rank},
         {"gate_normalizer", gate_normalizer},
         {"chunk", chunk},
         {"n_kv_heads", n_kv_heads},
         {"rope_theta", rope_theta},
         {"mlp_hidden", mlp_hidden},
         {"norm_eps", norm_eps},
         {"tie_embeddings", tie_embeddings},
         {"init_std", init_std},
         {"format_version", format_version}};
  // Fields beyond SPEC §9's list are written only when used, so FELA checkpoints keep §9's set.
  if (head_dim) j["head_dim"] = head_dim;
  if (fan_p) j["fan_p"] = fan_p;
  if (cola_rank) j["cola_rank"] = cola_rank;
  if (hybrid_norm) j["hybrid_norm"] = hybrid_norm;
  if (gated_residual) j["gated_residual"] = gated_residual;
  if (dropout) j["dropout"] = dropout;
  return j;
}

namespace {

// Reads j[key] into field with a type check that names the field.
template <class T>
void read_field(const json& j, const char* key, T& field) {
  const json& v = j.at(key);
  if constexpr (std::is_same_v<T, std::string>) {
    FELA_CHECK(v.is_string(), "[config] ", key, " must be a string, got ", v.dump());
    field = v.get<std::string>();
  } else if constexpr (std::is_same_v<T, bool>) {
    FELA_CHECK(v.is_boolean(), "[config] ", key, " must be true or false, got ", v.dump());
    field = v.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    FELA_CHECK(v.is_number_integer() ||
                   (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()),
               "[config] ", key, " must be an integer, got ", v.dump());
    field = v.is_number_integer() ? v.get<T>() : T(v.get<double>());
  } else {
    FELA_CHECK(v.is_number(), "[config] ", key, " must be a number, got ", v.dump());
    field = v.get<T>();
  }
}

}  // namespace

void Config::apply_json(const json& j) {
  FELA_CHECK(j.is_object(), "[config] expected a JSON object, got ", j.type_name());
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    // clang-format off
    if (k == "base") continue;
    else if (k == "name") read_field(j, "name", name);
    else if (k == "vocab") read_field(j, "vocab", vocab);
    else if (k == "d_model") read_field(j, "d_model", d_model);
    else if (k == "n_layers") read_field(j, "n_layers", n_layers);
    else if (k == "n_heads") read_field(j, "n_heads", n_heads);
    else if (k == "pattern") read_field(j, "pattern", pattern);
    else if (k == "taps") read_field(j, "taps", taps);
    else if (k == "modes") read_field(j, "modes", modes);
    else if (k == "expand_k") read_field(j, "expand_k", expand_k);
    else if (k == "expand_v") read_field(j, "expand_v", expand_v);
    else if (k == "gate_rank") read_field(j, "gate_rank", gate_rank);
    else if (k == "gate_normalizer") read_field(j, "gate_normalizer", gate_normalizer);
    else if (k == "chunk") read_field(j, "chunk", chunk);
    else if (k == "n_kv_heads") read_field(j, "n_kv_heads", n_kv_heads);
    else if (k == "rope_theta") read_field(j, "rope_theta", rope_theta);
    else if (k == "mlp_hidden") read_field(j, "mlp_hidden", mlp_hidden);
    else if (k == "norm_eps") read_field(j, "norm_eps", norm_eps);
    else if (k == "tie_embeddings") read_field(j, "tie_embeddings", tie_embeddings);
    else if (k == "init_std") read_field(j, "init_std", init_std);
    else if (k == "format_version") read_field(j, "format_version", format_version);
    else if (k == "head_dim") read_field(j, "head_dim", head_dim);
    else if (k == "fan_p") read_field(j, "fan_p", fan_p);
    else if (k == "cola_rank") read_field(j, "cola_rank", cola_rank);
    else if (k == "hybrid_norm") read_field(j, "hybrid_norm", hybrid_norm);
    else if (k == "gated_residual") read_field(j, "gated_residual", gated_residual);
    else if (k == "dropout") read_field(j, "dropout", dropout);
    else fail("[config] unknown field '", k, "'");
    // clang-format on
  }
}

std::vector<std::string> named_config_names() {
  return {"tiny",           "fela-small",     "fela-byte", "fela-1b", "transformer-small",
          "transformer-1b", "fanformer-small"};
}

Config named_config(const std::string& name) {
  Config c;
  c.name = name;
  auto set = [&](const char* vocab, int64_t d, int64_t L, int64_t H, const char* pattern,
                 int64_t taps) {
    c.vocab = vocab, c.d_model = d, c.n_layers = L, c.n_heads = H, c.pattern = pattern,
    c.taps = taps;
  };
  if (name == "tiny")
    set("bytes", 64, 4, 4, "SSSL", 32);
  else if (name == "fela-small")
    set("gpt2", 768, 12, 12, "SSSL", 512);
  else if (name == "fela-byte")
    set("bytes", 768, 18, 12, "SSSL", 512);
  else if (name == "fela-1b")
    set("gpt2", 2048, 24, 16, "SSSL", 512);
  else if (name == "transformer-small")
    set("gpt2", 768, 12, 12, "AAAA", 512);
  else if (name == "transformer-1b")
    set("gpt2", 2048, 24, 16, "AAAA", 512);
  else if (name == "fanformer-small") {  // SPEC §8
    set("gpt2", 512, 12, 12, "A", 512);
    c.head_dim = 64, c.n_kv_heads = 6, c.mlp_hidden = 2048;
    c.fan_p = 0.15, c.cola_rank = 512 / 4, c.hybrid_norm = true, c.gated_residual = true;
    c.dropout = 0.1;
  } else {
    std::string known;
    for (const auto& n : named_config_names()) known += (known.empty() ? "" : ", ") + n;
    fail("[config] unknown configuration '", name, "' (known: ", known,
         "; or give a path to a JSON file)");
  }
  c.resolve();
  return c;
}

namespace {
json parse_json(const std::string& text, const std::string& origin) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    fail("[config] ", origin, " is not valid JSON: ", e.what());
  }
}

// "d_model=128" -> {"d_model": 128}; the value is read as JSON when it parses, else a string.
json override_to_json(const std::string& kv) {
  const auto eq = kv.find('=');
  FELA_CHECK(eq != std::string::npos && eq > 0, "[config] override '", kv,
             "' must look like field=value");
  const std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
  json v = json::parse(value, nullptr, /*allow_exceptions=*/false);
  if (v.is_discarded()) v = value;
  return json{{key, v}};
}

// Unresolved copy of a named config: derived fields back to "auto" so overrides of d_model or
// taps recompute them.
Config base_config(const std::string& name) {
  Config c = named_config(name);
  if (name != "fanformer-small")
    c.modes = 0, c.n_kv_heads = 0, c.mlp_hidden = 0;
  else
    c.modes = 0;
  return c;
}
}  // namespace

Config load_config(const std::string& name_or_file, const std::vector<std::string>& overrides) {
  Config c;
  const bool is_file = name_or_file.find(".json") != std::string::npos ||
                       name_or_file.find('/') != std::string::npos;
  if (!is_file) {
    c = base_config(name_or_file);
  } else {
    std::ifstream f(name_or_file);
    FELA_CHECK(f.good(), "[config] cannot open '", name_or_file, "'");
    std::stringstream ss;
    ss << f.rdbuf();
    const json j = parse_json(ss.str(), name_or_file);
    FELA_CHECK(j.is_object(), "[config] ", name_or_file, " must hold a JSON object");
    if (j.contains("base")) {
      FELA_CHECK(j["base"].is_string(), "[config] base must be a configuration name");
      c = base_config(j["base"].get<std::string>());
    }
    c.apply_json(j);
  }
  for (const auto& kv : overrides) c.apply_json(override_to_json(kv));
  c.resolve();
  return c;
}

Config config_from_json_text(const std::string& text, const std::string& origin) {
  const json j = parse_json(text, origin);
  Config c;
  c.apply_json(j);
  c.resolve();
  return c;
}

}  // namespace fela
