// The parts of the tokenizer interface shared by every vocabulary: the factory, parallel
// batch encoding and the search for the vocabulary directory.
#include "fela/tokenizer/tokenizer.h"

#include <unistd.h>

#include <cstdlib>
#include <exception>
#include <filesystem>

#include "fela/core/error.h"

namespace fela {

namespace fs = std::filesystem;

std::vector<std::vector<int32_t>> Tokenizer::encode_batch(std::span<const std::string_view> texts,
                                                          bool with_special) const {
  std::vector<std::vector<int32_t>> out(texts.size());
  std::exception_ptr error;  // exceptions must not cross the OpenMP region
  const int64_t n = int64_t(texts.size());
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < n; ++i) {
    try {
      out[i] = with_special ? encode_with_special(texts[i]) : encode(texts[i]);
    } catch (...) {
#pragma omp critical(fela_tokenizer_batch_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  return out;
}

std::unique_ptr<Tokenizer> make_tokenizer(const std::string& name, const std::string& data_dir) {
  if (name == "bytes") return make_bytes_tokenizer();
  if (name == "gpt2") return make_gpt2_tokenizer(data_dir);
  fail("[tokenizer] unknown vocabulary '", name, "' (expected bytes or gpt2)");
}

namespace {

bool has_vocab(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / "encoder.json", ec);
}

}  // namespace

std::string default_vocab_dir() {
  if (const char* env = std::getenv("FELA_DATA_DIR"); env && *env) {
    const fs::path dir(env);
    if (has_vocab(dir)) return dir.string();
    if (has_vocab(dir / "bpe")) return (dir / "bpe").string();
    fail("[tokenizer] FELA_DATA_DIR=", env, " holds neither encoder.json nor bpe/encoder.json");
  }
  std::vector<fs::path> candidates;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path bin = exe.parent_path();
    candidates = {bin / "../../data/bpe", bin / "../data/bpe", bin / "data/bpe"};
  }
  candidates.push_back(fs::current_path(ec) / "data/bpe");
  std::string looked;
  for (const auto& c : candidates) {
    if (has_vocab(c)) {
      const fs::path canon = fs::weakly_canonical(c, ec);
      return ec ? c.string() : canon.string();
    }
    looked += (looked.empty() ? "" : ", ") + c.lexically_normal().string();
  }
  fail("[tokenizer] cannot find the GPT-2 vocabulary (encoder.json) in ", looked,
       "; set FELA_DATA_DIR to the directory that holds it");
}

}  // namespace fela
