// Configuration: named configs, JSON files with a base, overrides, and refusal of bad values
// with a message naming the field.
#include <gtest/gtest.h>

#include <fstream>

#include "fela/core/error.h"
#include "fela/model/config.h"
#include "test_util.h"

using namespace fela;
using fela::test::error_of;

namespace {
std::string write_temp(const std::string& text) {
  const std::string p = test::temp_dir("cfg") + "/c.json";
  std::ofstream(p) << text;
  return p;
}
}  // namespace

TEST(Config, NamedConfigsResolveDerivedFields) {
  const Config c = named_config("fela-small");
  EXPECT_EQ(c.modes, 257);
  EXPECT_EQ(c.mlp_hidden, 2048);
  EXPECT_EQ(c.n_kv_heads, 12);
  EXPECT_EQ(c.d_k(), 384);
  EXPECT_EQ(c.mixer(3), 'L');
  EXPECT_EQ(c.mixer(4), 'S');
  EXPECT_EQ(named_config("fela-1b").mlp_hidden, 5632);
}

TEST(Config, OverridesRecomputeDerivedFields) {
  const Config c = load_config("tiny", {"d_model=128", "taps=64"});
  EXPECT_EQ(c.d_model, 128);
  EXPECT_EQ(c.modes, 33);
  EXPECT_EQ(c.mlp_hidden, 512);
  EXPECT_EQ(c.vocab, "bytes");
}

TEST(Config, JsonRoundTripAndFileWithBase) {
  const Config a = named_config("fela-byte");
  const Config b = config_from_json_text(a.to_json().dump(), "mem");
  EXPECT_EQ(a.to_json(), b.to_json());
  const Config f = load_config(write_temp(R"({"base": "tiny", "n_layers": 8, "name": "mine"})"));
  EXPECT_EQ(f.n_layers, 8);
  EXPECT_EQ(f.d_model, 64);
  EXPECT_EQ(f.name, "mine");
}

TEST(Config, RefusesBadInputNamingTheField) {
  EXPECT_NE(error_of([] { named_config("huge"); }).find("unknown configuration 'huge'"),
            std::string::npos);
  EXPECT_NE(error_of([] { load_config(write_temp("{\"d_model\": 64,")); }).find("not valid JSON"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              load_config("tiny", {"d_model=100", "n_heads=3"});
            }).find("d_model"),
            std::string::npos);
  EXPECT_NE(error_of([] { load_config("tiny", {"taps=0"}); }).find("taps"), std::string::npos);
  EXPECT_NE(error_of([] { load_config("tiny", {"pattern=\"SXL\""}); }).find("pattern"),
            std::string::npos);
  EXPECT_NE(error_of([] { load_config("tiny", {"pattern=\"\""}); }).find("pattern"),
            std::string::npos);
  EXPECT_NE(error_of([] { load_config("tiny", {"vocab=\"latin1\""}); }).find("vocab"),
            std::string::npos);
  EXPECT_NE(error_of([] { load_config("tiny", {"n_kv_heads=3"}); }).find("n_kv_heads"),
            std::string::npos);
  EXPECT_NE(error_of([] { load_config("tiny", {"modes=40"}); }).find("modes"), std::string::npos);
  EXPECT_NE(error_of([] { load_config("tiny", {"d_model=\"wide\""}); }).find("d_model"),
            std::string::npos);
  EXPECT_NE(error_of([] { load_config("tiny", {"colour=3"}); }).find("unknown field 'colour'"),
            std::string::npos);
  EXPECT_NE(error_of([] { load_config("tiny", {"format_version=2"}); }).find("format_version"),
            std::string::npos);
  EXPECT_NE(error_of([] { load_config("/nonexistent/x.json"); }).find("cannot open"),
            std::string::npos);
}
