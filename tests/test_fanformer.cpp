// FANformer parts as switches of the one block (SPEC §8): gradients of a whole model with every
// switch on, generation with them on, dropout only in training and seeded, the named
// configuration, checkpoints and refusal of bad values.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "fela/model/checkpoint.h"
#include "fela/model/model.h"
#include "fela/model/stats.h"
#include "test_util.h"

using namespace fela;
using namespace fela::test;

namespace {

// tiny-sized, every §8 switch on, all three mixer kinds (attention twice: layer 0 pre-norm,
// layer 3 QKV-norm), GQA.
Config all_switches(const std::string& pattern = "ASLA", double dropout = 0.1) {
  return load_config(
      "tiny", {"d_model=16", "n_heads=4", "n_kv_heads=2", "pattern=\"" + pattern + "\"",
               "n_layers=4", "taps=8", "chunk=4", "mlp_hidden=24", "gate_rank=3", "fan_p=0.15",
               "cola_rank=4", "hybrid_norm=true", "gated_residual=true",
               "dropout=" + std::to_string(dropout), "init_std=0.3"});
}

}  // namespace

TEST(FanformerConfig, NamedConfigAndParameterCount) {
  const Config c = named_config("fanformer-small");
  EXPECT_EQ(c.attn_head_dim(), 64);
  EXPECT_EQ(c.fan_dp(), 76);  // floor(0.15 * 512)
  ParamTable t(c);
  // Derived by hand from SPEC §8: per layer FAN 512*76 + 512*360, attention with CoLA r = 128:
  // q 512*128 + 128*768, k and v 512*128 + 128*384 each, o 768*128 + 128*512, MLP with CoLA
  // 2 * (512*128 + 128*2048) + (2048*128 + 128*512), gates 2*512, norms: layer 0 mix + mlp
  // (2*512), layers 1..11 QKV-norm (768 + 384 + 384) + mlp 512; embedding 50257*512, final 512.
  const int64_t fan = 512 * 76 + 512 * 360;
  const int64_t attn =
      (512 * 128 + 128 * 768) + 2 * (512 * 128 + 128 * 384) + (768 * 128 + 128 * 512);
  const int64_t mlp = 2 * (512 * 128 + 128 * 2048) + (2048 * 128 + 128 * 512);
  const int64_t per_layer = fan + attn + mlp + 2 * 512;
  const int64_t norms = 2 * 512 + 11 * (768 + 384 + 384 + 512) + 512;
  EXPECT_EQ(t.total(), 12 * per_layer + norms + 50257 * 512);
  const auto j = model_info_json(c, 1024);
  EXPECT_GT(j["params_by_part"]["fan"].get<int64_t>(), 0);
  EXPECT_GT(j["params_by_part"]["gates"].get<int64_t>(), 0);
}

TEST(FanformerConfig, RefusesBadSwitchValues) {
  EXPECT_NE(error_of([] { load_config("tiny", {"fan_p=0.5"}); }).find("fan_p"), std::string::npos);
  EXPECT_NE(error_of([] { load_config("tiny", {"fan_p=-0.1"}); }).find("fan_p"), std::string::npos);
  EXPECT_NE(error_of([] { load_config("tiny", {"cola_rank=300"}); }).find("cola_rank"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              load_config("tiny", {"pattern=\"A\"", "n_kv_heads=3"});
            }).find("n_kv_heads"),
            std::string::npos);
  EXPECT_NE(error_of([] { load_config("tiny", {"dropout=1"}); }).find("dropout"),
            std::string::npos);
  EXPECT_NE(error_of([] { load_config("tiny", {"dropout=-0.5"}); }).find("dropout"),
            std::string::npos);
  EXPECT_NO_THROW(load_config("tiny", {"cola_rank=64"}));
}

TEST(FanformerGradients, EverySwitchOnMatchesFiniteDifferences) {
  const Config c = all_switches();
  Model m(c, DType::F64);
  m.init(3);
  m.set_training(true, 12345);  // dropout on, with a fixed mask
  int checked = 0;
  for (const auto& [name, err] : model_gradient_errors(m, 2, 11, 4)) {
    EXPECT_LT(err, 1e-6) << name;
    ++checked;
  }
  for (const char* name : {"layers.0.fan.w_p", "layers.0.attn.w_q.a", "layers.3.attn.q_norm.weight",
                           "layers.1.mix_gate", "layers.2.mlp.w_down.b"})
    EXPECT_NE(m.table().find(name), nullptr) << name;
  EXPECT_EQ(m.table().find("layers.3.mix_norm.weight"), nullptr);  // QKV-norm replaces it
  EXPECT_NE(m.table().find("layers.0.mix_norm.weight"), nullptr);  // block 0 keeps pre-norm
  EXPECT_GT(checked, 40);
}

TEST(FanformerDropout, OffOutsideTrainingAndSeededInside) {
  const Config with = all_switches("ASLA", 0.5), without = all_switches("ASLA", 0.0);
  Model a(with, DType::F64), b(without, DType::F64);
  a.init(1);
  b.init(1);
  Rng rng(2);
  Array tok = random_tokens(20, 261, rng), tgt = random_tokens(20, 261, rng);
  auto loss_of = [&](Model& m) {
    m.forward(tok.data<int32_t>(), 2, 10);
    return m.loss(tgt.data<int32_t>());
  };
  EXPECT_EQ(loss_of(a), loss_of(b));  // evaluation: dropout is off
  a.set_training(true, 7);
  const double l7 = loss_of(a);
  EXPECT_NE(l7, loss_of(b));
  EXPECT_EQ(l7, loss_of(a));  // same seed, same masks
  a.set_training(true, 8);
  EXPECT_NE(l7, loss_of(a));
  a.set_training(false);
  EXPECT_EQ(loss_of(a), loss_of(b));
}

TEST(FanformerGeneration, PrefillThenStepsMatchesParallelForward) {
  const Config c = load_config("tiny", {"pattern=\"ASLA\"", "n_kv_heads=2", "taps=16", "chunk=8",
                                        "fan_p=0.15", "cola_rank=16", "hybrid_norm=true",
                                        "gated_residual=true", "dropout=0.1", "init_std=0.1"});
  Model m(c, DType::F32);
  m.init(4);
  EXPECT_LT(generation_gap(m, 2, 50, 19, /*prefill_chunk=*/7), 1e-4);  // several prefill chunks
}

TEST(FanformerCheckpoint, RoundTripsWithSwitches) {
  const Config c = all_switches();
  Model m(c);
  m.init(9);
  const std::string dir = temp_dir("fan_ckpt") + "/ckpt";
  save_checkpoint(dir, m);
  auto loaded = load_checkpoint(dir);
  EXPECT_EQ(loaded->config().to_json(), c.to_json());
  EXPECT_EQ(std::memcmp(loaded->params().raw(), m.params().raw(), m.params().bytes()), 0);
  // FELA configurations keep SPEC §9's field list: no §8 switch is written when off
  const auto j = named_config("fela-small").to_json();
  for (const char* f :
       {"fan_p", "cola_rank", "hybrid_norm", "gated_residual", "dropout", "head_dim"})
    EXPECT_FALSE(j.contains(f)) << f;
}

// Recomputation reruns each layer's forward inside backward: the same ops on the same inputs
// (dropout masks are a function of the seed), so loss and gradients must agree bit for bit.
TEST(Recompute, SameLossAndGradientsBitForBit) {
  for (const std::string pattern : {"ASLA", "SSSL"}) {
    const Config c = pattern == "SSSL" ? load_config("tiny", {"taps=8", "chunk=4"})
                                       : all_switches(pattern, 0.1);
    Rng rng(3);
    const int64_t B = 2, N = 11;
    Array tok = random_tokens(B * N, c.vocab_size(), rng),
          tgt = random_tokens(B * N, c.vocab_size(), rng);
    std::vector<double> losses;
    std::vector<Array> grads;
    for (bool recompute : {false, true}) {
      Model m(c, DType::F32);
      m.init(7);
      m.set_recompute(recompute);
      m.set_training(true, 99);
      m.zero_grad();
      m.forward(tok.data<int32_t>(), B, N);
      losses.push_back(m.loss(tgt.data<int32_t>(), 1.0));
      m.backward();
      grads.push_back(copy_of(m.grads()));
    }
    EXPECT_EQ(losses[0], losses[1]) << pattern;
    ASSERT_EQ(grads[0].numel(), grads[1].numel());
    EXPECT_EQ(std::memcmp(grads[0].view().raw(), grads[1].view().raw(), grads[0].view().bytes()),
              0)
        << pattern;
  }
}
