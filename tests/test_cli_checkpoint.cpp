// Checkpoints: bit-exact round trip, names of SPEC §9, atomic replacement, and one clear error
// line with a non-zero exit for every kind of damage (through the CLI, as a user meets it).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fela/io/atomic_file.h"
#include "fela/io/safetensors.h"
#include "fela/model/checkpoint.h"
#include "test_util.h"

using namespace fela;
using namespace fela::test;
namespace fs = std::filesystem;

namespace {

std::string saved_tiny(const std::string& tag, uint64_t seed = 1) {
  const std::string dir = temp_dir(tag) + "/ckpt";
  Model m(named_config("tiny"));
  m.init(seed);
  save_checkpoint(dir, m);
  return dir;
}

int line_count(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

// Runs `fela info --checkpoint dir` and expects exactly one error line mentioning `what`.
void expect_cli_error(const std::string& dir, const std::string& what) {
  const RunResult r = run_fela("info --checkpoint " + dir);
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(line_count(r.err), 1) << r.err;
  EXPECT_NE(r.err.find(what), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("terminate"), std::string::npos);
  EXPECT_TRUE(r.out.empty());
}

// Rewrites model.safetensors of dir with one tensor changed by `edit`.
void rewrite_model(
    const std::string& dir,
    const std::function<void(std::vector<io::TensorRef>&, std::vector<Array>&)>& edit) {
  io::SafetensorsReader r(dir + "/model.safetensors");
  std::vector<Array> store;
  std::vector<io::TensorRef> refs;
  for (const auto& name : r.names()) {
    store.push_back(Array::empty(r.dtype(name), r.shape(name)));
    r.read_into(name, store.back());
  }
  for (size_t i = 0; i < store.size(); ++i) refs.push_back({r.names()[i], store[i]});
  edit(refs, store);
  io::safetensors_write(dir + "/model.safetensors", refs);
}

}  // namespace

TEST(Checkpoint, RoundTripIsBitExact) {
  const std::string dir = saved_tiny("rt", 7);
  Model m(named_config("tiny"));
  m.init(7);
  auto loaded = load_checkpoint(dir);
  ASSERT_EQ(loaded->params().numel(), m.params().numel());
  EXPECT_EQ(std::memcmp(loaded->params().raw(), m.params().raw(), m.params().bytes()), 0);
  EXPECT_EQ(loaded->config().to_json(), m.config().to_json());
  // a double model loads the same values
  auto as_double = load_checkpoint(dir, DType::F64);
  EXPECT_EQ(max_abs_diff(as_double->params(), m.params()), 0.0);
}

TEST(Checkpoint, UsesSpecNamesAndConfigFields) {
  const std::string dir = saved_tiny("names");
  io::SafetensorsReader r(dir + "/model.safetensors");
  for (const char* name :
       {"embed.weight", "final_norm.weight", "layers.0.mix_norm.weight", "layers.0.fno.w_u",
        "layers.0.fno.k_re", "layers.0.fno.k_im", "layers.0.fno.skip", "layers.3.gla.w_a1",
        "layers.3.gla.g_o", "layers.3.gla.b_a", "layers.2.mlp.w_down"})
    EXPECT_TRUE(r.contains(name)) << name;
  EXPECT_EQ(r.shape("layers.0.fno.k_re"), (Shape{64, 17}));
  EXPECT_EQ(r.shape("layers.3.gla.w_a2"), (Shape{16, 32}));
  EXPECT_EQ(r.shape("layers.3.gla.g_o"), (Shape{16}));
  EXPECT_EQ(r.dtype("embed.weight"), DType::F32);
  EXPECT_FALSE(r.contains("lm_head.w_out"));
  const auto j = nlohmann::json::parse(io::read_file(dir + "/config.json"));
  for (const char* f :
       {"name",     "vocab",         "d_model",    "n_layers",   "n_heads",   "pattern",
        "taps",     "modes",         "expand_k",   "expand_v",   "gate_rank", "gate_normalizer",
        "chunk",    "n_kv_heads",    "rope_theta", "mlp_hidden", "norm_eps",  "tie_embeddings",
        "init_std", "format_version"})
    EXPECT_TRUE(j.contains(f)) << f;
}

TEST(Checkpoint, SaveReplacesAtomicallyAndLeavesNoDebris) {
  const std::string dir = saved_tiny("replace", 1);
  Model m2(named_config("tiny"));
  m2.init(2);
  save_checkpoint(dir, m2);
  auto loaded = load_checkpoint(dir);
  EXPECT_EQ(max_abs_diff(loaded->params(), m2.params()), 0.0);
  for (const auto& e : fs::directory_iterator(fs::path(dir).parent_path()))
    EXPECT_EQ(e.path().filename(), "ckpt") << e.path();
  // a crash between "move old aside" and "install new" leaves only ckpt.old: loading repairs it
  fs::rename(dir, dir + ".old");
  auto repaired = load_checkpoint(dir);
  EXPECT_EQ(max_abs_diff(repaired->params(), m2.params()), 0.0);
}

TEST(CheckpointCli, InfoOfAGoodCheckpoint) {
  const std::string dir = saved_tiny("cli_ok");
  const RunResult r = run_fela("info --checkpoint " + dir);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["params"].get<int64_t>(), 275440);
}

TEST(CheckpointCli, TruncatedFile) {
  const std::string dir = saved_tiny("trunc");
  const auto size = fs::file_size(dir + "/model.safetensors");
  fs::resize_file(dir + "/model.safetensors", size / 2);
  expect_cli_error(dir, "truncated");
}

TEST(CheckpointCli, WrongShape) {
  const std::string dir = saved_tiny("shape");
  rewrite_model(dir, [](std::vector<io::TensorRef>& refs, std::vector<Array>& store) {
    for (size_t i = 0; i < refs.size(); ++i)
      if (refs[i].name == "layers.0.fno.w_u") {
        store[i] = Array::zeros(DType::F32, {64, 32});
        refs[i].tensor = store[i];
      }
  });
  expect_cli_error(dir, "layers.0.fno.w_u");
}

TEST(CheckpointCli, MissingTensor) {
  const std::string dir = saved_tiny("missing");
  rewrite_model(dir, [](std::vector<io::TensorRef>& refs, std::vector<Array>&) {
    std::erase_if(refs, [](const io::TensorRef& r) { return r.name == "layers.3.gla.b_a"; });
  });
  expect_cli_error(dir, "layers.3.gla.b_a is missing");
}

TEST(CheckpointCli, UnknownFormatVersion) {
  const std::string dir = saved_tiny("version");
  auto j = nlohmann::json::parse(io::read_file(dir + "/config.json"));
  j["format_version"] = 7;
  io::write_file_atomic(dir + "/config.json", j.dump());
  expect_cli_error(dir, "format_version");
}

TEST(CheckpointCli, MalformedConfigAndMissingDirectory) {
  const std::string dir = saved_tiny("badjson");
  io::write_file_atomic(dir + "/config.json", "{\"d_model\": ");
  expect_cli_error(dir, "not valid JSON");
  expect_cli_error(dir + "-nope", "not a checkpoint directory");
}

TEST(Cli, HelpAndBadConfig) {
  RunResult r = run_fela("--help");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("info"), std::string::npos);
  r = run_fela("info --help");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("--config"), std::string::npos);
  r = run_fela("info --config nonesuch");
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(line_count(r.err), 1);
  EXPECT_NE(r.err.find("unknown configuration 'nonesuch'"), std::string::npos);
  r = run_fela("info --config tiny --set d_model=65");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("d_model"), std::string::npos);
  r = run_fela("frobnicate");
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(line_count(r.err), 1);
  r = run_fela("info --config tiny");
  ASSERT_EQ(r.status, 0);
  EXPECT_EQ(nlohmann::json::parse(r.out)["params"].get<int64_t>(), 275440);
}
