// Tokenizers (SPEC.md §5): the interface every vocabulary implements, the factory that picks
// one by name, and the search for the GPT-2 vocabulary files.
//
// Vocabularies:
//   "bytes": V = 261. Ids 0..255 are the raw bytes; 256 <bos>, 257 <eos>, 258 <pad>, 259 <unk>,
//            260 <sep>. encode() returns the bytes unchanged (any byte string, invalid UTF-8
//            included). decode() of a special id: <bos> and <pad> produce nothing (framing,
//            not content); <eos>, <unk> and <sep> produce their text "<eos>", "<unk>", "<sep>"
//            (no "\n" is substituted). encode_with_special() maps those five literal texts to
//            their ids.
//   "gpt2":  V = 50257, GPT-2's byte-level BPE exactly as OpenAI's tiktoken r50k_base / "gpt2"
//            encoding. encode() is tiktoken's encode_ordinary: "<|endoftext|>" in the text is
//            ordinary text. encode_with_special() maps the literal "<|endoftext|>" to 50256
//            (tiktoken's encode(text, allowed_special="all")). decode(50256) = "<|endoftext|>".
//            Input that is not valid UTF-8 is accepted: each invalid byte becomes its own
//            pre-token, so decode(encode(x)) == x for every byte string x.
//
// All methods are const and thread-safe: several threads may encode with one tokenizer. gpt2
// keeps about 1 MiB of cache (and PCRE2's match stack) per encoding thread, for the thread's life.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fela {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Token ids of text; special-token texts are ordinary text.
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // As encode(), but the literal texts of the special tokens become their ids.
  virtual std::vector<int32_t> encode_with_special(std::string_view text) const = 0;
  // The bytes that ids stand for (may be invalid UTF-8 when a multi-byte character is split).
  // Throws fela::Error "[tokenizer] id N out of range ..." for an id outside [0, vocab_size()).
  virtual std::string decode(std::span<const int32_t> ids) const = 0;

  virtual int32_t vocab_size() const = 0;
  virtual int32_t eos_id() const = 0;    // document separator / end of sequence
  virtual int32_t bos_id() const = 0;    // start of sequence (gpt2: the same id as eos)
  virtual std::string name() const = 0;  // "bytes" or "gpt2"

  // encode() (or encode_with_special()) of each text, in parallel over the texts with OpenMP
  // (thread count from fela::set_num_threads / OMP_NUM_THREADS). out[i] belongs to texts[i].
  std::vector<std::vector<int32_t>> encode_batch(std::span<const std::string_view> texts,
                                                 bool with_special = false) const;
};

// The tokenizer called name ("bytes" or "gpt2"). data_dir holds encoder.json and vocab.bpe
// (only read for "gpt2"). Throws "[tokenizer] unknown vocabulary 'x' (expected bytes or gpt2)".
std::unique_ptr<Tokenizer> make_tokenizer(const std::string& name, const std::string& data_dir);

// The two vocabularies directly (make_tokenizer calls these).
std::unique_ptr<Tokenizer> make_bytes_tokenizer();
std::unique_ptr<Tokenizer> make_gpt2_tokenizer(const std::string& data_dir);

// The directory that holds encoder.json and vocab.bpe: $FELA_DATA_DIR (that directory, or its
// bpe/ subdirectory) when set; otherwise the first of <exe dir>/../../data/bpe,
// <exe dir>/../data/bpe, <exe dir>/data/bpe and ./data/bpe that has encoder.json.
// Throws fela::Error when none does.
std::string default_vocab_dir();

}  // namespace fela
