// Token shard encoding, atomic writing and validated memory-mapped reading (format in shard.h).
#include "fela/data/shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>

#include "fela/core/error.h"
#include "fela/io/atomic_file.h"

namespace fela {

// Token ids and header fields are stored by memcpy; the format is little-endian.
static_assert(std::endian::native == std::endian::little, "shards assume a little-endian host");

namespace {

void put_u32(char* p, uint32_t v) { std::memcpy(p, &v, 4); }
void put_u64(char* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint32_t get_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

inline int32_t load_id(const uint8_t* tokens, uint32_t width, int64_t i) {
  if (width == 2) {
    uint16_t v;
    std::memcpy(&v, tokens + i * 2, 2);
    return int32_t(v);
  }
  uint32_t v;
  std::memcpy(&v, tokens + i * 4, 4);
  return int32_t(v);
}

void copy_ids(const uint8_t* tokens, uint32_t width, int64_t begin, int64_t count, int32_t* out) {
  if (width == 2) {
    const uint8_t* p = tokens + begin * 2;
    for (int64_t i = 0; i < count; ++i) {
      uint16_t v;
      std::memcpy(&v, p + i * 2, 2);
      out[i] = int32_t(v);
    }
  } else {
    std::memcpy(out, tokens + begin * 4, size_t(count) * 4);  // ids < V <= INT32_MAX
  }
}

// Scans ids for the first one >= vocab_size and counts eos ids. Returns the position of the
// first bad id or -1.
int64_t scan_ids(const uint8_t* tokens, uint32_t width, int64_t n, uint32_t vocab_size,
                 uint32_t eos_id, uint64_t* eos_count) {
  int64_t first_bad = std::numeric_limits<int64_t>::max();
  uint64_t eos = 0;
#pragma omp parallel for reduction(min : first_bad) reduction(+ : eos) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t id = uint32_t(load_id(tokens, width, i));
    if (id >= vocab_size && i < first_bad) first_bad = i;
    eos += id == eos_id;
  }
  *eos_count = eos;
  return first_bad == std::numeric_limits<int64_t>::max() ? -1 : first_bad;
}

void check_header_fields(const ShardHeader& h, const std::string& where) {
  FELA_CHECK(h.version == kShardVersion, "[data] ", where, ": unsupported format version ",
             h.version, " (this build reads version ", kShardVersion, ")");
  FELA_CHECK(h.vocab_size >= 1 && h.vocab_size <= uint32_t(std::numeric_limits<int32_t>::max()),
             "[data] ", where, ": invalid vocab size ", h.vocab_size);
  FELA_CHECK(h.token_width == shard_token_width(h.vocab_size), "[data] ", where, ": token width ",
             h.token_width, " does not fit vocab size ", h.vocab_size, " (expected ",
             shard_token_width(h.vocab_size), ")");
  FELA_CHECK(h.eos_id < h.vocab_size, "[data] ", where, ": eos id ", h.eos_id,
             " is not below the vocab size ", h.vocab_size);
  FELA_CHECK(!h.vocab_name.empty() && int64_t(h.vocab_name.size()) <= kShardVocabNameBytes,
             "[data] ", where, ": the vocab name must have 1 to ", kShardVocabNameBytes,
             " bytes, got '", h.vocab_name, "'");
  FELA_CHECK(h.doc_count <= h.token_count, "[data] ", where, ": ", h.doc_count, " documents in ",
             h.token_count, " tokens");
}

std::string errno_text() { return std::strerror(errno); }

}  // namespace

uint32_t shard_token_width(int64_t vocab_size) { return vocab_size <= 65536 ? 2 : 4; }

// ---- PackedTokens ----

PackedTokens::PackedTokens(uint32_t width) : width_(width) {
  FELA_CHECK(width == 2 || width == 4, "[data] token width must be 2 or 4, got ", width);
}

void PackedTokens::append(std::span<const int32_t> ids) {
  const size_t old = bytes_.size();
  bytes_.resize(old + ids.size() * width_);
  uint8_t* p = bytes_.data() + old;
  if (width_ == 2) {
    for (size_t i = 0; i < ids.size(); ++i) {
      FELA_CHECK(ids[i] >= 0 && ids[i] <= 65535, "[data] token id ", ids[i],
                 " does not fit 2-byte tokens");
      const uint16_t v = uint16_t(ids[i]);
      std::memcpy(p + i * 2, &v, 2);
    }
  } else {
    for (size_t i = 0; i < ids.size(); ++i) {
      FELA_CHECK(ids[i] >= 0, "[data] negative token id ", ids[i]);
      const uint32_t v = uint32_t(ids[i]);
      std::memcpy(p + i * 4, &v, 4);
    }
  }
}

int32_t PackedTokens::at(int64_t i) const { return load_id(bytes_.data(), width_, i); }

void PackedTokens::copy(int64_t begin, int64_t count, int32_t* out) const {
  copy_ids(bytes_.data(), width_, begin, count, out);
}

void PackedTokens::erase(int64_t begin, int64_t end) {
  bytes_.erase(bytes_.begin() + begin * width_, bytes_.begin() + end * width_);
}

// ---- header ----

std::string encode_shard_header(const ShardHeader& h) {
  check_header_fields(h, "shard header");
  std::string b(size_t(kShardHeaderBytes), '\0');
  std::memcpy(b.data(), kShardMagic, 8);
  put_u32(&b[8], h.version);
  put_u32(&b[12], h.vocab_size);
  put_u32(&b[16], h.token_width);
  put_u32(&b[20], h.eos_id);
  put_u64(&b[24], h.token_count);
  put_u64(&b[32], h.doc_count);
  put_u64(&b[40], h.text_bytes);
  std::memcpy(&b[48], h.vocab_name.data(), h.vocab_name.size());
  return b;
}

ShardHeader decode_shard_header(const void* bytes, int64_t file_size, const std::string& path) {
  FELA_CHECK(file_size >= kShardHeaderBytes, "[data] ", path, ": truncated: ", file_size,
             " bytes, a shard header alone has ", kShardHeaderBytes);
  const auto* p = static_cast<const uint8_t*>(bytes);
  FELA_CHECK(std::memcmp(p, kShardMagic, 8) == 0, "[data] ", path,
             ": not a fela token shard (bad magic; expected FELATOK1)");
  ShardHeader h;
  h.version = get_u32(p + 8);
  h.vocab_size = get_u32(p + 12);
  h.token_width = get_u32(p + 16);
  h.eos_id = get_u32(p + 20);
  h.token_count = get_u64(p + 24);
  h.doc_count = get_u64(p + 32);
  h.text_bytes = get_u64(p + 40);
  const char* name = reinterpret_cast<const char*>(p + 48);
  const size_t len = strnlen(name, size_t(kShardVocabNameBytes));
  h.vocab_name.assign(name, len);
  for (size_t i = len; i < size_t(kShardVocabNameBytes); ++i)
    FELA_CHECK(name[i] == '\0', "[data] ", path, ": the vocab name field is not zero-padded");
  // Version first: a later version may lay out the other fields differently.
  FELA_CHECK(h.version == kShardVersion, "[data] ", path, ": unsupported format version ",
             h.version, " (this build reads version ", kShardVersion, ")");
  check_header_fields(h, path);
  const uint64_t payload = uint64_t(file_size - kShardHeaderBytes);
  const uint64_t max_tokens = std::numeric_limits<uint64_t>::max() / h.token_width;
  FELA_CHECK(h.token_count <= max_tokens && h.token_count * h.token_width <= payload, "[data] ",
             path, ": truncated: the header promises ", h.token_count, " tokens of ", h.token_width,
             " bytes but the file holds only ", payload, " bytes after the header");
  FELA_CHECK(h.token_count * h.token_width == payload, "[data] ", path, ": ",
             payload - h.token_count * h.token_width,
             " unexpected bytes after the last token (header promises ", h.token_count, " tokens)");
  return h;
}

// ---- writing ----

ShardHeader write_shard(const std::string& path, const ShardHeader& h, const PackedTokens& tokens) {
  ShardHeader out = h;
  out.token_width = tokens.width();
  out.token_count = uint64_t(tokens.size());
  FELA_CHECK(out.token_width == shard_token_width(h.vocab_size), "[data] ", path,
             ": tokens packed at width ", out.token_width, " but vocab size ", h.vocab_size,
             " needs width ", shard_token_width(h.vocab_size));
  const int64_t bad = scan_ids(tokens.data(), tokens.width(), tokens.size(), h.vocab_size, h.eos_id,
                               &out.doc_count);
  FELA_CHECK(bad < 0, "[data] ", path, ": token id ", bad < 0 ? 0 : tokens.at(bad), " at position ",
             bad, " is not below the vocab size ", h.vocab_size);
  const std::string header = encode_shard_header(out);
  io::AtomicFileWriter w(path);
  w.write(header);
  w.write(tokens.data(), size_t(tokens.size()) * tokens.width());
  w.commit();
  return out;
}

ShardHeader write_shard(const std::string& path, const ShardHeader& h,
                        std::span<const int32_t> tokens) {
  PackedTokens packed(shard_token_width(h.vocab_size));
  packed.append(tokens);
  return write_shard(path, h, packed);
}

// ---- reading ----

MappedShard::MappedShard(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  FELA_CHECK(fd >= 0, "[data] cannot open ", path, ": ", errno_text());
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    const std::string why = S_ISREG(st.st_mode) ? errno_text() : "not a regular file";
    ::close(fd);
    fail("[data] cannot open ", path, ": ", why);
  }
  const int64_t file_size = int64_t(st.st_size);
  if (file_size > 0) {
    map_ = ::mmap(nullptr, size_t(file_size), PROT_READ, MAP_PRIVATE, fd, 0);
    if (map_ == MAP_FAILED) {
      map_ = nullptr;
      const std::string why = errno_text();
      ::close(fd);
      fail("[data] cannot map ", path, ": ", why);
    }
    map_bytes_ = size_t(file_size);
  }
  ::close(fd);  // the mapping keeps the file open
  try {
    FELA_CHECK(file_size >= kShardHeaderBytes, "[data] ", path, ": truncated: ", file_size,
               " bytes, a shard header alone has ", kShardHeaderBytes);
    header_ = decode_shard_header(map_, file_size, path);
    tokens_ = static_cast<const uint8_t*>(map_) + kShardHeaderBytes;
    uint64_t eos = 0;
    const int64_t bad =
        scan_ids(tokens_, header_.token_width, size(), header_.vocab_size, header_.eos_id, &eos);
    FELA_CHECK(bad < 0, "[data] ", path, ": token id ", bad < 0 ? 0 : at(bad), " at position ", bad,
               " is not below the vocab size ", header_.vocab_size);
    FELA_CHECK(eos == header_.doc_count, "[data] ", path, ": the header counts ", header_.doc_count,
               " documents but the shard holds ", eos, " eos tokens");
  } catch (...) {
    release();
    throw;
  }
}

MappedShard::~MappedShard() { release(); }

void MappedShard::release() {
  if (map_) ::munmap(map_, map_bytes_);
  map_ = nullptr;
  map_bytes_ = 0;
  tokens_ = nullptr;
}

MappedShard::MappedShard(MappedShard&& o) noexcept
    : path_(std::move(o.path_)),
      header_(std::move(o.header_)),
      map_(o.map_),
      map_bytes_(o.map_bytes_),
      tokens_(o.tokens_) {
  o.map_ = nullptr;
  o.map_bytes_ = 0;
  o.tokens_ = nullptr;
}

MappedShard& MappedShard::operator=(MappedShard&& o) noexcept {
  if (this != &o) {
    release();
    path_ = std::move(o.path_);
    header_ = std::move(o.header_);
    map_ = o.map_;
    map_bytes_ = o.map_bytes_;
    tokens_ = o.tokens_;
    o.map_ = nullptr;
    o.map_bytes_ = 0;
    o.tokens_ = nullptr;
  }
  return *this;
}

int32_t MappedShard::at(int64_t i) const { return load_id(tokens_, header_.token_width, i); }

void MappedShard::copy(int64_t begin, int64_t count, int32_t* out) const {
  copy_ids(tokens_, header_.token_width, begin, count, out);
}

ShardHeader read_shard_header(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  FELA_CHECK(fd >= 0, "[data] cannot open ", path, ": ", errno_text());
  struct stat st;
  uint8_t buf[kShardHeaderBytes];
  ssize_t got = 0;
  const bool ok = ::fstat(fd, &st) == 0;
  if (ok) {
    while (got < kShardHeaderBytes) {
      const ssize_t r = ::pread(fd, buf + got, size_t(kShardHeaderBytes - got), got);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      got += r;
    }
  }
  const std::string why = ok ? "" : errno_text();
  ::close(fd);
  FELA_CHECK(ok, "[data] cannot read ", path, ": ", why);
  FELA_CHECK(got == kShardHeaderBytes, "[data] ", path, ": truncated: ", int64_t(got),
             " bytes, a shard header alone has ", kShardHeaderBytes);
  return decode_shard_header(buf, int64_t(st.st_size), path);
}

std::vector<int32_t> read_shard(const std::string& path, ShardHeader* header) {
  const MappedShard shard(path);
  std::vector<int32_t> ids(size_t(shard.size()));
  shard.copy(0, shard.size(), ids.data());
  if (header) *header = shard.header();
  return ids;
}

}  // namespace fela
