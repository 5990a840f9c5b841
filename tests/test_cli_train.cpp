// The training pipeline through the fela binary, as a user runs it: prepare -> train ->
// resume -> eval -> generate, Ctrl-C, and the bad inputs of each command.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fela/io/atomic_file.h"
#include "fela/model/checkpoint.h"
#include "test_util.h"

using namespace fela;
using namespace fela::test;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::string kTrainFlags =
    " --config tiny --set taps=8 --batch 2 --seq 24 --lr 3e-3 --warmup 2 --eval-every 3"
    " --eval-batches 2 --no-progress --threads 1";

int line_count(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

// A small corpus prepared once for the whole file.
class Pipeline : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new std::string(temp_dir("pipeline"));
    std::string text;
    for (int i = 0; i < 60; ++i)
      text += "To be, or not to be, that is the question " + std::to_string(i) + ".\n";
    std::ofstream(*root_ + "/corpus.txt") << text;
    const RunResult r = run_fela("prepare --vocab bytes --val-fraction 0.2 --out " + data() + " " +
                                 *root_ + "/corpus.txt");
    ASSERT_EQ(r.status, 0) << r.err;
  }
  static std::string data() { return *root_ + "/data"; }
  static std::string run_dir(const std::string& name) { return *root_ + "/" + name; }
  static std::vector<json> metrics(const std::string& run) {
    std::istringstream in(io::read_file(run + "/metrics.jsonl"));
    std::vector<json> rows;
    for (std::string line; std::getline(in, line);) rows.push_back(json::parse(line));
    return rows;
  }
  static std::string* root_;
};
std::string* Pipeline::root_ = nullptr;

}  // namespace

TEST_F(Pipeline, TrainWritesMetricsAndCheckpoint) {
  const std::string out = run_dir("basic");
  const RunResult r =
      run_fela("train --data " + data() + " --out " + out + " --steps 6" + kTrainFlags);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("val bpb"), std::string::npos);
  const auto rows = metrics(out);
  int train_rows = 0, val_rows = 0;
  for (const auto& j : rows) {
    if (j.contains("loss")) {
      ++train_rows;
      for (const char* k : {"step", "loss", "lr", "tokens_per_s"}) EXPECT_TRUE(j.contains(k)) << k;
    }
    if (j.contains("val_loss")) {
      ++val_rows;
      EXPECT_TRUE(j.contains("val_bpb"));
      EXPECT_NEAR(j["val_bpb"].get<double>(), j["val_loss"].get<double>() / std::log(2.0), 0.3)
          << "bytes vocabulary: bpb is about the loss in bits (eos targets carry no bytes)";
    }
  }
  EXPECT_EQ(train_rows, 6);
  EXPECT_EQ(val_rows, 2);  // steps 3 and 6
  EXPECT_TRUE(checkpoint_has_training_state(out + "/checkpoint"));
  // a second run into the same directory without --resume is refused, nothing overwritten
  const auto before = io::read_file(out + "/metrics.jsonl");
  const RunResult again =
      run_fela("train --data " + data() + " --out " + out + " --steps 6" + kTrainFlags);
  EXPECT_NE(again.status, 0);
  EXPECT_NE(again.err.find("--resume"), std::string::npos);
  EXPECT_EQ(io::read_file(out + "/metrics.jsonl"), before);
}

// Training k steps, then resuming for k more, equals 2k uninterrupted steps exactly: for FELA,
// and for a FANformer-style model with dropout (masks are seeded by step).
void expect_resume_exact(const std::string& data, const std::string& full, const std::string& split,
                         const std::string& flags) {
  ASSERT_EQ(run_fela("train --data " + data + " --out " + full + " --steps 8" + flags).status, 0);
  RunResult r =
      run_fela("train --data " + data + " --out " + split + " --steps 8 --stop-at 4" + flags);
  ASSERT_EQ(r.status, 0) << r.err;
  r = run_fela("train --data " + data + " --out " + split + " --steps 8 --resume" + flags);
  ASSERT_EQ(r.status, 0) << r.err;
  auto losses = [](const std::string& run) {
    std::istringstream in(io::read_file(run + "/metrics.jsonl"));
    std::vector<double> v;
    for (std::string line; std::getline(in, line);) {
      const json j = json::parse(line);
      if (j.contains("loss")) v.push_back(j["loss"].get<double>());
    }
    return v;
  };
  const std::vector<double> a = losses(full), b = losses(split);
  ASSERT_EQ(a.size(), 8u);
  ASSERT_EQ(b.size(), 8u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], b[i]) << "step " << i + 1;
  auto ma = load_checkpoint(full), mb = load_checkpoint(split);
  EXPECT_EQ(std::memcmp(ma->params().raw(), mb->params().raw(), ma->params().bytes()), 0);
}

TEST_F(Pipeline, ResumeIsExact) {
  expect_resume_exact(data(), run_dir("full"), run_dir("split"), kTrainFlags);
}

TEST_F(Pipeline, ResumeIsExactWithDropoutAndEverySwitch) {
  expect_resume_exact(data(), run_dir("full_fan"), run_dir("split_fan"),
                      kTrainFlags +
                          " --set pattern=\\\"ASLA\\\" --set n_kv_heads=2 --set fan_p=0.15"
                          " --set cola_rank=16 --set hybrid_norm=true --set gated_residual=true"
                          " --set dropout=0.2");
}

TEST_F(Pipeline, InterruptSavesAndResumes) {
  const std::string out = run_dir("sigint");
  // start a long run, interrupt it once it has logged a step, expect a clean stop and a checkpoint
  const std::string script = std::string(FELA_BINARY) + " train --data " + data() + " --out " +
                             out + " --steps 100000 --save-every 0" + kTrainFlags +
                             " >/dev/null 2>" + out +
                             ".err & pid=$!; "
                             "for i in $(seq 1 600); do [ -s " +
                             out +
                             "/metrics.jsonl ] && break; sleep 0.05; done; "
                             "kill -INT $pid; wait $pid; echo $? > " +
                             out + ".rc";
  ASSERT_EQ(std::system(("bash -c '" + script + "'").c_str()), 0);
  EXPECT_EQ(io::read_file(out + ".rc"), "130\n") << io::read_file(out + ".err");
  EXPECT_NE(io::read_file(out + ".err").find("--resume"), std::string::npos);
  EXPECT_TRUE(checkpoint_has_training_state(out + "/checkpoint"));
  const RunResult r =
      run_fela("train --data " + data() + " --out " + out + " --steps 3 --resume" + kTrainFlags);
  EXPECT_EQ(r.status, 0) << r.err;
}

TEST_F(Pipeline, EvalOfShortTextIsThePlainMeanLoss) {
  const std::string out = run_dir("eval");
  ASSERT_EQ(
      run_fela("train --data " + data() + " --out " + out + " --steps 2" + kTrainFlags).status, 0);
  const std::string text = "To be, or not";
  std::ofstream(*root_ + "/short.txt") << text;
  const RunResult r =
      run_fela("eval --checkpoint " + out + " --text " + *root_ + "/short.txt --context 64");
  ASSERT_EQ(r.status, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["tokens"].get<int64_t>(), int64_t(text.size()));
  EXPECT_EQ(j["bytes"].get<int64_t>(), int64_t(text.size()));
  // the same number from the library: <eos> + text, predicting every text byte
  auto m = load_checkpoint(out);
  std::vector<int32_t> in = {257}, tgt;
  for (unsigned char ch : text) in.push_back(ch), tgt.push_back(ch);
  in.pop_back();
  m->forward(in.data(), 1, int64_t(in.size()));
  const double loss = m->loss(tgt.data());
  EXPECT_NEAR(j["loss"].get<double>(), loss, 1e-6);
  EXPECT_NEAR(j["bpb"].get<double>(), loss / std::log(2.0), 1e-6);
  EXPECT_NEAR(j["perplexity"].get<double>(), std::exp(loss), 1e-4);
  // windows shorter than the text give the same token count
  const RunResult w =
      run_fela("eval --checkpoint " + out + " --text " + *root_ + "/short.txt --context 4");
  ASSERT_EQ(w.status, 0) << w.err;
  EXPECT_EQ(json::parse(w.out)["windows"].get<int64_t>(), 4);
  EXPECT_EQ(json::parse(w.out)["tokens"].get<int64_t>(), int64_t(text.size()));
  const RunResult d = run_fela("eval --checkpoint " + out + " --data " + data() + " --context 16");
  ASSERT_EQ(d.status, 0) << d.err;
  EXPECT_GT(json::parse(d.out)["tokens"].get<int64_t>(), 100);
}

TEST_F(Pipeline, GenerateStreamsAndReportsSpeed) {
  const std::string out = run_dir("gen");
  ASSERT_EQ(
      run_fela("train --data " + data() + " --out " + out + " --steps 2" + kTrainFlags).status, 0);
  RunResult r = run_fela("generate --checkpoint " + out +
                         " --prompt 'To be' --max-tokens 20 --min-length 20 --seed 3");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("To be", 0), 0u);
  EXPECT_GE(r.out.size(), 5u + 20u);
  EXPECT_NE(r.err.find("tok/s"), std::string::npos);
  // same seed, same text
  EXPECT_EQ(run_fela("generate --checkpoint " + out +
                     " --prompt 'To be' --max-tokens 20 --min-length 20 --seed 3")
                .out,
            r.out);
  // invalid UTF-8 in the prompt is fine for a byte-level model
  r = run_fela("generate --checkpoint " + out +
               " --prompt \"$(printf '\\377\\376')\" --max-tokens 3");
  EXPECT_EQ(r.status, 0) << r.err;
  // a prompt of 100,000 tokens: FELA has no context limit
  std::ofstream(*root_ + "/long.txt") << std::string(100000, 'a');
  r = run_fela("generate --checkpoint " + out + " --prompt-file " + *root_ +
               "/long.txt --max-tokens 5");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("prompt: 100001 tokens"), std::string::npos) << r.err;
}

TEST_F(Pipeline, BadInputsGiveOneLineAndNonZeroExit) {
  const std::string out = run_dir("bad");
  const std::pair<std::string, std::string> cases[] = {
      {"train --data " + data() + " --out " + out + " --seq 0", "--seq"},
      {"train --data " + data() + " --out " + out + " --lr -1", "--lr"},
      {"train --data " + *root_ + "/nowhere --out " + out, "nowhere"},
      {"train --data " + data() + " --out " + out + " --config tiny --set vocab=\\\"gpt2\\\"",
       "vocabulary"},
      {"generate --checkpoint " + out + "-none --prompt x", "checkpoint"},
  };
  for (const auto& [args, needle] : cases) {
    const RunResult r = run_fela(args);
    EXPECT_NE(r.status, 0) << args;
    EXPECT_EQ(line_count(r.err), 1) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << args << "\n" << r.err;
  }
  EXPECT_FALSE(fs::exists(out + "/checkpoint"));
  const std::string good = run_dir("bad_ok");
  ASSERT_EQ(
      run_fela("train --data " + data() + " --out " + good + " --steps 1" + kTrainFlags).status, 0);
  RunResult r = run_fela("generate --checkpoint " + good + " --prompt x --top-p 1.5");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("top-p"), std::string::npos);
  EXPECT_EQ(line_count(r.err), 1);
}

TEST_F(Pipeline, DamagedShardsAreRefused) {
  for (const std::string damage : {"magic", "truncated"}) {
    const std::string copy = *root_ + "/damaged_" + damage;
    fs::copy(data(), copy, fs::copy_options::recursive);
    const std::string shard = copy + "/train_000.bin";
    if (damage == "magic") {
      std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
      f.write("NOTFELA!", 8);
    } else {
      fs::resize_file(shard, fs::file_size(shard) - 3);
    }
    const std::string out = run_dir("damaged_run_" + damage);
    const RunResult r =
        run_fela("train --data " + copy + " --out " + out + " --steps 1" + kTrainFlags);
    EXPECT_NE(r.status, 0) << damage;
    EXPECT_EQ(line_count(r.err), 1) << r.err;
    EXPECT_NE(r.err.find("train_000.bin"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(out + "/checkpoint"));
  }
}

TEST(CliTokenize, MatchesGoldenAndRoundTrips) {
  RunResult r = run_fela("tokenize --vocab gpt2", "Hello world");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(json::parse(r.out), json::parse("[15496, 995]"));  // tiktoken's ids (golden.jsonl)
  r = run_fela("tokenize --vocab gpt2", "Hello world, it's 2026!");
  ASSERT_EQ(r.status, 0) << r.err;
  r = run_fela("tokenize --vocab gpt2 --decode", r.out);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "Hello world, it's 2026!");
  r = run_fela("tokenize --vocab bytes", "ab");
  EXPECT_EQ(json::parse(r.out), json::parse("[97, 98]"));
  r = run_fela("tokenize --vocab gpt2 --decode", "[1, 99999]");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("99999"), std::string::npos);
  EXPECT_EQ(line_count(r.err), 1);
}

// --device: an unknown name is refused by the parser; cuda either trains (a CUDA build on a
// machine with a GPU) or says in one line why it cannot (no CUDA backend, no GPU).
TEST_F(Pipeline, DeviceChoice) {
  const std::string out = run_dir("device");
  RunResult r = run_fela("train --data " + data() + " --out " + out + " --device tpu" + kTrainFlags);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("--device"), std::string::npos) << r.err;
  r = run_fela("train --data " + data() + " --out " + out + " --device cuda --steps 2" +
               kTrainFlags);
  if (r.status == 0) {
    EXPECT_TRUE(fs::exists(out + "/checkpoint/model.safetensors"));
    EXPECT_EQ(metrics(out).size(), 3u);  // 2 steps and the final validation
  } else {
    EXPECT_EQ(line_count(r.err), 1) << r.err;
    EXPECT_NE(r.err.find("[device] cuda"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(out + "/checkpoint"));
  }
  r = run_fela("eval --checkpoint " + out + "-none --data " + data() + " --device gpu");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("--device"), std::string::npos) << r.err;
}
