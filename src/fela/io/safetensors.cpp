// safetensors writer (streamed through AtomicFileWriter) and validating reader (pread).
// The format and the validation rules are described in safetensors.h.
#include "fela/io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "fela/io/atomic_file.h"

namespace fela::io {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host would need byte swaps");

// The reference implementation's limit; a larger header is taken for corruption.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

const char* format_name(DType t) {
  switch (t) {
    case DType::F32:
      return "F32";
    case DType::F64:
      return "F64";
    case DType::BF16:
      return "BF16";
    case DType::I32:
      return "I32";
  }
  return "?";
}

bool parse_dtype(const std::string& s, DType& out) {
  for (DType t : {DType::F32, DType::F64, DType::BF16, DType::I32}) {
    if (s == format_name(t)) {
      out = t;
      return true;
    }
  }
  return false;
}

// Strings from a corrupted header are shown cut short, so a message stays one line.
std::string clip(const std::string& s) {
  std::string out = s.size() > 64 ? s.substr(0, 64) + "..." : s;
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20) c = '?';
  return out;
}

void encode_u64(uint64_t v, unsigned char out[8]) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<unsigned char>(v >> (8 * i));
}

uint64_t decode_u64(const unsigned char in[8]) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t(in[i]) << (8 * i);
  return v;
}

float bf16_to_float(uint16_t b) { return std::bit_cast<float>(uint32_t(b) << 16); }

}  // namespace

void safetensors_write(const std::string& path, const std::vector<TensorRef>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string where = "[safetensors] " + path + ": ";
  // ordered_json keeps the header entries in the order of the data.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const TensorRef& t : tensors) {
    FELA_CHECK(!t.name.empty(), where, "a tensor has an empty name");
    FELA_CHECK(t.name != "__metadata__", where, "\"__metadata__\" cannot name a tensor");
    FELA_CHECK(seen.insert(t.name).second, where, "tensor ", t.name, " is given twice");
    FELA_CHECK(t.tensor.device() == Device::Cpu, where, "tensor ", t.name, " is not in CPU memory");
    FELA_CHECK(t.tensor.raw() != nullptr || t.tensor.numel() == 0, where, "tensor ", t.name,
               " has no data");
    nlohmann::ordered_json shape = nlohmann::ordered_json::array();
    for (int i = 0; i < t.tensor.rank(); ++i) shape.push_back(t.tensor.size(i));
    const uint64_t n = t.tensor.bytes();
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    entry["dtype"] = format_name(t.tensor.dtype());
    entry["shape"] = std::move(shape);
    entry["data_offsets"] = nlohmann::ordered_json::array({offset, offset + n});
    header[t.name] = std::move(entry);
    offset += n;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {  // names or metadata that are not UTF-8
    fail(where, "cannot encode the header: ", e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  unsigned char len[8];
  encode_u64(text.size(), len);

  AtomicFileWriter out(path);
  out.write(len, 8);
  out.write(text);
  for (const TensorRef& t : tensors)
    if (t.tensor.numel() > 0) out.write(t.tensor.raw(), t.tensor.bytes());
  out.commit();
}

SafetensorsReader::SafetensorsReader(const std::string& path, const std::string& label)
    : path_(path), where_((label.empty() ? "[safetensors] " + path : label) + ": ") {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) fail(where_, "cannot open: ", std::strerror(errno));
  try {
    struct stat st;
    if (::fstat(fd_, &st) != 0) fail(where_, "cannot stat: ", std::strerror(errno));
    FELA_CHECK(S_ISREG(st.st_mode), where_, "not a regular file");
    const uint64_t file_size = uint64_t(st.st_size);

    FELA_CHECK(file_size >= 8, where_, "truncated: ", file_size,
               " bytes, shorter than the 8-byte header length");
    unsigned char len[8];
    read_bytes("(header length)", 0, len, 8);
    const uint64_t n = decode_u64(len);
    FELA_CHECK(n <= file_size - 8, where_, "truncated: the header length says ", n,
               " bytes but only ", file_size - 8, " follow it");
    FELA_CHECK(n <= kMaxHeaderBytes, where_, "header of ", n, " bytes is over the limit of ",
               kMaxHeaderBytes);
    std::string text(n, '\0');
    read_bytes("(header)", 8, text.data(), n);
    data_start_ = 8 + n;
    const uint64_t data_size = file_size - data_start_;

    // ordered_json keeps the entries in header order, which breaks ties between empty
    // tensors at one offset so that names() gives back the order they were written in.
    const nlohmann::ordered_json header =
        nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
    FELA_CHECK(!header.is_discarded(), where_, "the header is not valid JSON");
    FELA_CHECK(header.is_object(), where_, "the header is a JSON ", header.type_name(),
               ", not an object");

    struct Span {
      uint64_t begin, end;
      const std::string* name;
    };
    std::vector<Span> spans;
    for (const auto& [key, val] : header.items()) {
      const std::string tensor = "tensor " + clip(key);
      if (key == "__metadata__") {
        FELA_CHECK(val.is_object(), where_, "__metadata__ is a JSON ", val.type_name(),
                   ", not an object");
        for (const auto& [k, v] : val.items()) {
          FELA_CHECK(v.is_string(), where_, "metadata entry ", clip(k), " is a JSON ",
                     v.type_name(), ", not a string");
          metadata_[k] = v.get<std::string>();
        }
        continue;
      }
      FELA_CHECK(val.is_object(), where_, tensor, " is described by a JSON ", val.type_name(),
                 ", not an object");
      for (const auto& [k, v] : val.items())
        FELA_CHECK(k == "dtype" || k == "shape" || k == "data_offsets", where_, tensor,
                   " has an unknown field \"", clip(k), "\"");

      Entry e;
      const auto dt = val.find("dtype");
      FELA_CHECK(dt != val.end() && dt->is_string(), where_, tensor, " has no dtype string");
      FELA_CHECK(parse_dtype(dt->get<std::string>(), e.dtype), where_, tensor,
                 " has unsupported dtype \"", clip(dt->get<std::string>()),
                 "\" (fela reads F32, F64, BF16, I32)");

      const auto sh = val.find("shape");
      FELA_CHECK(sh != val.end() && sh->is_array(), where_, tensor, " has no shape array");
      FELA_CHECK(sh->size() <= 4, where_, tensor, " has rank ", sh->size(),
                 "; fela tensors have rank at most 4");
      uint64_t bytes = dtype_size(e.dtype);
      for (const auto& d : *sh) {
        FELA_CHECK(d.is_number_unsigned(), where_, tensor,
                   " has a shape entry that is not a non-negative integer");
        const uint64_t v = d.get<uint64_t>();
        FELA_CHECK(v <= uint64_t(std::numeric_limits<int64_t>::max()) &&
                       !__builtin_mul_overflow(bytes, v, &bytes),
                   where_, tensor, " has a shape too large to address");
        e.shape.dim[e.shape.rank++] = int64_t(v);
      }

      const auto off = val.find("data_offsets");
      FELA_CHECK(off != val.end() && off->is_array() && off->size() == 2 &&
                     (*off)[0].is_number_unsigned() && (*off)[1].is_number_unsigned(),
                 where_, tensor, " has no data_offsets [begin, end] of non-negative integers");
      e.begin = (*off)[0].get<uint64_t>();
      e.end = (*off)[1].get<uint64_t>();
      FELA_CHECK(e.begin <= e.end, where_, tensor, " has data_offsets [", e.begin, ", ", e.end,
                 "] with begin after end");
      FELA_CHECK(e.end - e.begin == bytes, where_, tensor, " has data_offsets [", e.begin, ", ",
                 e.end, "] holding ", e.end - e.begin, " bytes, but ", format_name(e.dtype), " ",
                 e.shape.str(), " needs ", bytes);
      auto [it, fresh] = entries_.emplace(key, e);
      spans.push_back({e.begin, e.end, &it->first});
    }

    // The tensors must tile [0, total) exactly; total must be what the file holds.
    std::stable_sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    uint64_t total = 0;
    const std::string* prev = nullptr;
    for (const Span& s : spans) {
      FELA_CHECK(s.begin >= total, where_, "tensors ", clip(*prev), " and ", clip(*s.name),
                 " overlap");
      FELA_CHECK(s.begin == total, where_, "gap of ", s.begin - total, " bytes before tensor ",
                 clip(*s.name));
      total = s.end;
      prev = s.name;
      names_.push_back(*s.name);
    }
    FELA_CHECK(total <= data_size, where_, "truncated: the header describes ", total,
               " bytes of tensor data but the file holds ", data_size);
    FELA_CHECK(total == data_size, where_, data_size - total,
               " unexpected bytes after the last tensor");
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

SafetensorsReader::~SafetensorsReader() {
  if (fd_ >= 0) ::close(fd_);
}

SafetensorsReader::SafetensorsReader(SafetensorsReader&& o) noexcept
    : path_(std::move(o.path_)),
      where_(std::move(o.where_)),
      fd_(std::exchange(o.fd_, -1)),
      data_start_(o.data_start_),
      metadata_(std::move(o.metadata_)),
      names_(std::move(o.names_)),
      entries_(std::move(o.entries_)) {}

SafetensorsReader& SafetensorsReader::operator=(SafetensorsReader&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(o.path_);
    where_ = std::move(o.where_);
    fd_ = std::exchange(o.fd_, -1);
    data_start_ = o.data_start_;
    metadata_ = std::move(o.metadata_);
    names_ = std::move(o.names_);
    entries_ = std::move(o.entries_);
  }
  return *this;
}

const SafetensorsReader::Entry& SafetensorsReader::find(const std::string& name) const {
  const auto it = entries_.find(name);
  FELA_CHECK(it != entries_.end(), where_, "no tensor named ", name);
  return it->second;
}

// offset is absolute in the file. A short read means the file shrank after validation.
void SafetensorsReader::read_bytes(const std::string& name, uint64_t offset, void* dst,
                                   uint64_t n) const {
  FELA_CHECK(fd_ >= 0, where_, "reading ", name, " from a moved-from reader");
  char* p = static_cast<char*>(dst);
  while (n > 0) {
    const ssize_t r = ::pread(fd_, p, std::min<uint64_t>(n, uint64_t(1) << 30), off_t(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail(where_, "cannot read ", name, ": ", std::strerror(errno));
    FELA_CHECK(r > 0, where_, "truncated: the file ends inside ", name,
               " (did it change after it was opened?)");
    p += r;
    n -= uint64_t(r);
    offset += uint64_t(r);
  }
}

void SafetensorsReader::check_destination(const std::string& name, const Entry& e,
                                          const Tensor& dst) const {
  FELA_CHECK(dst.shape() == e.shape, where_, "tensor ", name, " has shape ", e.shape.str(),
             ", expected ", dst.shape().str());
  FELA_CHECK(dst.device() == Device::Cpu, where_, "tensor ", name,
             ": the destination is not in CPU memory");
  FELA_CHECK(dst.raw() != nullptr || dst.numel() == 0, where_, "tensor ", name,
             ": the destination has no memory");
}

void SafetensorsReader::read_into(const std::string& name, Tensor dst) const {
  const Entry& e = find(name);
  check_destination(name, e, dst);
  FELA_CHECK(dst.dtype() == e.dtype, where_, "tensor ", name, " has dtype ", format_name(e.dtype),
             ", expected ", format_name(dst.dtype()));
  read_bytes("tensor " + name, data_start_ + e.begin, dst.raw(), e.end - e.begin);
}

namespace {

// Reads numel Src values in bounded chunks and stores convert(src) into out.
template <class Src, class Dst, class Read, class Convert>
void read_chunked(int64_t numel, Dst* out, Read read, Convert convert) {
  constexpr int64_t kChunk = 1 << 16;
  std::vector<Src> buf(size_t(std::min(numel, kChunk)));
  for (int64_t i0 = 0; i0 < numel; i0 += kChunk) {
    const int64_t m = std::min(kChunk, numel - i0);
    read(uint64_t(i0) * sizeof(Src), buf.data(), uint64_t(m) * sizeof(Src));
    for (int64_t k = 0; k < m; ++k) out[i0 + k] = convert(buf[size_t(k)]);
  }
}

}  // namespace

void SafetensorsReader::read_converted(const std::string& name, Tensor dst) const {
  const Entry& e = find(name);
  if (e.dtype == dst.dtype()) return read_into(name, dst);
  check_destination(name, e, dst);
  auto read = [&](uint64_t rel, void* p, uint64_t n) {
    read_bytes("tensor " + name, data_start_ + e.begin + rel, p, n);
  };
  const int64_t n = dst.numel();
  const DType from = e.dtype, to = dst.dtype();
  if (from == DType::F32 && to == DType::F64) {
    read_chunked<float>(n, dst.data<double>(), read, [](float x) { return double(x); });
  } else if (from == DType::F64 && to == DType::F32) {
    read_chunked<double>(n, dst.data<float>(), read, [](double x) { return float(x); });
  } else if (from == DType::BF16 && to == DType::F32) {
    read_chunked<uint16_t>(n, dst.data<float>(), read, bf16_to_float);
  } else if (from == DType::BF16 && to == DType::F64) {
    read_chunked<uint16_t>(n, dst.data<double>(), read,
                           [](uint16_t b) { return double(bf16_to_float(b)); });
  } else {
    fail(where_, "tensor ", name, " is ", format_name(from), " and cannot be converted to ",
         format_name(to));
  }
}

}  // namespace fela::io
