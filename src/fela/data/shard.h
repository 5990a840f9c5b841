// Token shards: the files `fela prepare` writes and training reads (docs/data-format.md).
//
// A shard is a 64-byte little-endian header followed by the tokens:
//   offset  size  field
//        0     8  magic "FELATOK1"
//        8     4  format version, u32 = 1
//       12     4  vocab size V, u32
//       16     4  token width in bytes, u32: 2 when V <= 65536, else 4
//       20     4  eos id, u32 (< V)
//       24     8  token count T, u64
//       32     8  document count, u64: the eos tokens in the shard (each document is preceded
//                 by one eos, so this counts the documents that start in this shard)
//       40     8  text bytes, u64: bytes of text the tokens decode to (eos counts 0)
//       48    16  vocab name ("bytes", "gpt2"), zero-padded
//       64  T*w   token ids, unsigned little-endian of the width above
// The file size is exactly 64 + T * width. Readers check the magic, the version, the width
// against V, eos < V, the size (a short file is "truncated"), every id < V and the document
// count, so that a damaged shard fails when it is opened, never later in training.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace fela {

inline constexpr char kShardMagic[8] = {'F', 'E', 'L', 'A', 'T', 'O', 'K', '1'};
inline constexpr uint32_t kShardVersion = 1;
inline constexpr int64_t kShardHeaderBytes = 64;
inline constexpr int64_t kShardVocabNameBytes = 16;

struct ShardHeader {
  uint32_t version = kShardVersion;
  uint32_t vocab_size = 0;
  uint32_t token_width = 0;
  uint32_t eos_id = 0;
  uint64_t token_count = 0;
  uint64_t doc_count = 0;
  uint64_t text_bytes = 0;
  std::string vocab_name;  // at most 16 bytes
};

// Bytes per token id for a vocabulary of vocab_size ids: 2 when it fits in u16, else 4.
uint32_t shard_token_width(int64_t vocab_size);

// Token ids packed at a shard's width, collected in memory until written.
class PackedTokens {
 public:
  explicit PackedTokens(uint32_t width);
  void append(std::span<const int32_t> ids);  // ids must be >= 0 and fit the width
  int64_t size() const { return int64_t(bytes_.size() / width_); }
  uint32_t width() const { return width_; }
  int32_t at(int64_t i) const;
  // Copies ids [begin, begin + count) to out.
  void copy(int64_t begin, int64_t count, int32_t* out) const;
  // Removes ids [begin, end).
  void erase(int64_t begin, int64_t end);
  void clear() { bytes_.clear(); }
  const uint8_t* data() const { return bytes_.data(); }

 private:
  uint32_t width_;
  std::vector<uint8_t> bytes_;
};

// Writes a shard atomically (temporary file, fsync, rename). From h, version, vocab_size,
// eos_id, text_bytes and vocab_name are used; token_count, token_width and doc_count are set
// from the tokens (doc_count = number of eos ids). Every id must be < vocab_size. Returns the
// header written.
ShardHeader write_shard(const std::string& path, const ShardHeader& h, const PackedTokens& tokens);
ShardHeader write_shard(const std::string& path, const ShardHeader& h,
                        std::span<const int32_t> tokens);

// The 64 header bytes of h (checks the fields that can be checked without the tokens).
std::string encode_shard_header(const ShardHeader& h);
// Parses and checks a header; file_size is the size of the whole file (checked against the
// token count). Errors: "[data] PATH: what is wrong".
ShardHeader decode_shard_header(const void* bytes, int64_t file_size, const std::string& path);

// A shard file mapped read-only and fully validated when opened (header, size, every id < V,
// the document count). Replacing the file by rename while it is mapped is safe; truncating it
// in place is not (the mapping would fault).
class MappedShard {
 public:
  explicit MappedShard(const std::string& path);
  ~MappedShard();
  MappedShard(MappedShard&& o) noexcept;
  MappedShard& operator=(MappedShard&& o) noexcept;
  MappedShard(const MappedShard&) = delete;
  MappedShard& operator=(const MappedShard&) = delete;

  const ShardHeader& header() const { return header_; }
  const std::string& path() const { return path_; }
  int64_t size() const { return int64_t(header_.token_count); }
  int32_t at(int64_t i) const;
  // Copies ids [begin, begin + count) to out (the caller keeps the range inside the shard).
  void copy(int64_t begin, int64_t count, int32_t* out) const;

 private:
  void release();
  std::string path_;
  ShardHeader header_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  const uint8_t* tokens_ = nullptr;
};

// The header of a shard, checked against the file size (tokens are not read).
ShardHeader read_shard_header(const std::string& path);
// All ids of a shard, fully validated; the header goes to *header when given.
std::vector<int32_t> read_shard(const std::string& path, ShardHeader* header = nullptr);

}  // namespace fela
