// The "bytes" vocabulary (SPEC.md §5): ids 0..255 are raw bytes, 256..260 are the specials
// <bos> <eos> <pad> <unk> <sep>. Bits per byte is then the loss in bits.
#include <array>

#include "fela/core/error.h"
#include "fela/tokenizer/tokenizer.h"

namespace fela {

namespace {

constexpr int32_t kBos = 256, kEos = 257, kVocab = 261;
// Text of ids 256..260; decode() writes nothing for <bos> and <pad>.
constexpr std::array<std::string_view, 5> kSpecialText = {"<bos>", "<eos>", "<pad>", "<unk>",
                                                          "<sep>"};
constexpr std::array<bool, 5> kSpecialPrinted = {false, true, false, true, true};

class BytesTokenizer final : public Tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids(text.size());
    for (size_t i = 0; i < text.size(); ++i) ids[i] = int32_t(static_cast<unsigned char>(text[i]));
    return ids;
  }

  std::vector<int32_t> encode_with_special(std::string_view text) const override {
    std::vector<int32_t> ids;
    ids.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
      int32_t special = -1;
      if (text[i] == '<') {
        for (size_t k = 0; k < kSpecialText.size(); ++k)
          if (text.substr(i).starts_with(kSpecialText[k])) special = int32_t(k);
      }
      if (special >= 0) {
        ids.push_back(kBos + special);
        i += kSpecialText[special].size();
      } else {
        ids.push_back(int32_t(static_cast<unsigned char>(text[i++])));
      }
    }
    return ids;
  }

  std::string decode(std::span<const int32_t> ids) const override {
    std::string out;
    out.reserve(ids.size());
    for (int32_t id : ids) {
      FELA_CHECK(id >= 0 && id < kVocab, "[tokenizer] id ", id,
                 " out of range for bytes (vocab_size ", kVocab, ")");
      if (id < 256) {
        out.push_back(char(id));
      } else if (kSpecialPrinted[id - kBos]) {
        out += kSpecialText[id - kBos];
      }
    }
    return out;
  }

  int32_t vocab_size() const override { return kVocab; }
  int32_t eos_id() const override { return kEos; }
  int32_t bos_id() const override { return kBos; }
  std::string name() const override { return "bytes"; }
};

}  // namespace

std::unique_ptr<Tokenizer> make_bytes_tokenizer() { return std::make_unique<BytesTokenizer>(); }

}  // namespace fela
