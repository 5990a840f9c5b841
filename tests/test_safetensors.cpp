// Checkpoint file formats: safetensors round trips (bit-exact, every dtype, 0-d and empty
// tensors, metadata), the bytes checked by hand against the format, truncated and corrupted
// files (including random corruption) failing with fela::Error, read_into/read_converted
// checks, a stdlib-only python3 cross-check, and the atomic file / directory replacement with
// every state a crash can leave.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "fela/io/atomic_file.h"
#include "fela/io/safetensors.h"
#include "test_util.h"

using namespace fela;
using namespace fela::io;
using namespace fela::test;
namespace fs = std::filesystem;

namespace {

// The message of the fela::Error that f throws; a test failure when it throws nothing.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a fela::Error";
  return "";
}

bool contains_text(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

void write_raw(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), bytes.size());
}

std::string u64_le(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = char(v >> (8 * i));
  return s;
}

uint64_t read_u64_le(const std::string& s) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t(uint8_t(s[i])) << (8 * i);
  return v;
}

// A safetensors file assembled by hand: length, header (padded to 8), data.
void write_by_hand(const std::string& path, std::string header, const std::string& data) {
  header.append((8 - header.size() % 8) % 8, ' ');
  write_raw(path, u64_le(header.size()) + header + data);
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::string bytes_of(const Tensor& t) {
  return std::string(static_cast<const char*>(t.raw()), t.bytes());
}

// The tensors of the round-trip tests: every dtype, awkward sizes, special values, a 0-d
// tensor and two empty ones, named out of alphabetical order.
struct Sample {
  std::vector<Array> arrays;
  std::vector<TensorRef> refs;
  std::map<std::string, std::string> metadata{
      {"format", "pt"}, {"step", "12"}, {"note", "\xc3\xbcnicode \"quoted\"\n\\"}};

  Sample() {
    Rng rng(11);
    auto add = [&](const std::string& name, Array a) {
      arrays.push_back(std::move(a));
      refs.push_back({name, arrays.back()});
    };
    Array f32 = random_array(DType::F32, {3, 5}, rng);
    float* f = f32.data<float>();
    f[0] = std::numeric_limits<float>::quiet_NaN();
    f[1] = -std::numeric_limits<float>::infinity();
    f[2] = -0.0f;
    f[3] = std::numeric_limits<float>::denorm_min();
    add("layers.0.fno.w_u", std::move(f32));
    add("embed.weight", random_array(DType::F64, {7}, rng));
    Array bf16 = Array::empty(DType::BF16, {2, 3, 4});
    auto* h = static_cast<uint16_t*>(bf16.view().raw());
    for (int i = 0; i < 24; ++i) h[i] = uint16_t((i * 2654435761u) >> 16);
    add("bf16.weight", std::move(bf16));
    Array i32 = Array::empty(DType::I32, {1, 1, 1, 129});
    for (int i = 0; i < 129; ++i) i32.data<int32_t>()[i] = int32_t(uint32_t(i) * 2246822519u);
    i32.data<int32_t>()[128] = std::numeric_limits<int32_t>::min();
    add("a.step", std::move(i32));
    Array scalar = Array::empty(DType::F32, Shape{});
    scalar.data<float>()[0] = 3.5f;
    add("scalar", std::move(scalar));
    add("empty.rows", Array::empty(DType::F32, {0, 4}));
    add("empty", Array::empty(DType::F64, {0}));
    add("odd", random_array(DType::F32, {31, 33}, rng));
  }
};

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = temp_dir("safetensors"); }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& name) const { return dir_ + "/" + name; }
  std::string dir_;
};

}  // namespace

TEST_F(SafetensorsTest, RoundTripIsBitExact) {
  Sample s;
  const std::string path = file("model.safetensors");
  safetensors_write(path, s.refs, s.metadata);
  EXPECT_EQ(list_dir(dir_), std::vector<std::string>{"model.safetensors"});

  SafetensorsReader r(path);
  std::vector<std::string> order;
  for (const auto& t : s.refs) order.push_back(t.name);
  EXPECT_EQ(r.names(), order);
  EXPECT_EQ(r.metadata(), s.metadata);
  EXPECT_FALSE(r.contains("nope"));
  for (const auto& t : s.refs) {
    ASSERT_TRUE(r.contains(t.name));
    EXPECT_EQ(r.dtype(t.name), t.tensor.dtype()) << t.name;
    EXPECT_TRUE(r.shape(t.name) == t.tensor.shape()) << t.name;
    Array out = Array::empty(t.tensor.dtype(), t.tensor.shape());
    if (out.numel() > 0) std::memset(out.view().raw(), 0xAB, out.view().bytes());
    r.read_into(t.name, out);
    EXPECT_EQ(bytes_of(out), bytes_of(t.tensor)) << t.name;
  }

  // A moved reader keeps working; writing again replaces the file (without metadata now).
  SafetensorsReader moved = std::move(r);
  EXPECT_EQ(moved.names().size(), s.refs.size());
  safetensors_write(path, {s.refs[1]});
  SafetensorsReader r2(path);
  EXPECT_EQ(r2.names(), std::vector<std::string>{s.refs[1].name});
  EXPECT_TRUE(r2.metadata().empty());
  EXPECT_EQ(list_dir(dir_), std::vector<std::string>{"model.safetensors"});
}

TEST_F(SafetensorsTest, BytesFollowTheFormat) {
  Sample s;
  const std::string path = file("model.safetensors");
  safetensors_write(path, s.refs, s.metadata);
  const std::string bytes = read_file(path);
  ASSERT_GE(bytes.size(), 8u);
  const uint64_t n = read_u64_le(bytes);
  EXPECT_EQ(n % 8, 0u);
  ASSERT_LE(8 + n, bytes.size());
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.front(), '{');
  const size_t close = header.rfind('}');
  EXPECT_EQ(header.find_first_not_of(' ', close + 1), std::string::npos) << "padding is spaces";

  const nlohmann::json j = nlohmann::json::parse(header);
  EXPECT_EQ(j.size(), s.refs.size() + 1);
  using StringMap = std::map<std::string, std::string>;
  EXPECT_EQ(j.at("__metadata__").get<StringMap>(), s.metadata);
  const std::map<DType, std::string> names{
      {DType::F32, "F32"}, {DType::F64, "F64"}, {DType::BF16, "BF16"}, {DType::I32, "I32"}};
  uint64_t offset = 0;  // tensors are contiguous in the order written
  for (const auto& t : s.refs) {
    const nlohmann::json& e = j.at(t.name);
    EXPECT_EQ(e.size(), 3u);
    EXPECT_EQ(e.at("dtype").get<std::string>(), names.at(t.tensor.dtype()));
    std::vector<int64_t> shape(t.tensor.shape().dim.begin(),
                               t.tensor.shape().dim.begin() + t.tensor.rank());
    EXPECT_EQ(e.at("shape").get<std::vector<int64_t>>(), shape) << t.name;
    const uint64_t nbytes = t.tensor.bytes();
    EXPECT_EQ(e.at("data_offsets").get<std::vector<uint64_t>>(),
              (std::vector<uint64_t>{offset, offset + nbytes}))
        << t.name;
    EXPECT_EQ(bytes.substr(8 + n + offset, nbytes), bytes_of(t.tensor)) << t.name;
    offset += nbytes;
  }
  EXPECT_EQ(8 + n + offset, bytes.size());
  // Spot-check one value decoded by hand: the scalar is 3.5f = 0x40600000, little-endian.
  const uint64_t at = 8 + n + j.at("scalar").at("data_offsets")[0].get<uint64_t>();
  EXPECT_EQ(bytes.substr(at, 4), std::string("\x00\x00\x60\x40", 4));
}

// A file assembled by a Python program that uses only json and struct (an implementation
// independent of ours): it re-reads our file, then writes its own, which we read back.
TEST_F(SafetensorsTest, CrossCheckWithPython) {
  if (std::system("python3 -c 'import json, struct' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "python3 is not available";
  const char* script = R"PY(
import json, struct, sys
src, dst = sys.argv[1], sys.argv[2]
data = open(src, 'rb').read()
n = struct.unpack('<Q', data[:8])[0]
assert n % 8 == 0 and 8 + n <= len(data)
header = json.loads(data[8:8 + n].decode('utf-8'))
meta = header.pop('__metadata__', {})
sizes = {'F32': 4, 'F64': 8, 'BF16': 2, 'I32': 4}
blobs, end = {}, 0
for name, e in sorted(header.items(), key=lambda kv: kv[1]['data_offsets']):
    b, f = e['data_offsets']
    assert b == end, name
    numel = 1
    for d in e['shape']:
        numel *= d
    assert f - b == numel * sizes[e['dtype']], name
    blobs[name] = (e['dtype'], e['shape'], data[8 + n + b:8 + n + f])
    end = f
assert 8 + n + end == len(data)
blobs['py.f64'] = ('F64', [3], struct.pack('<3d', 1.5, -2.25, 1e300))
blobs['py.i32'] = ('I32', [2], struct.pack('<2i', -7, 2147483647))
blobs['py.bf16'] = ('BF16', [2, 1], struct.pack('<2H', 0x3F80, 0xC000))
meta['writer'] = 'python'
out = {'__metadata__': meta}
body = b''
for name in reversed(list(blobs)):
    dt, shape, raw = blobs[name]
    out[name] = {'shape': shape, 'dtype': dt, 'data_offsets': [len(body), len(body) + len(raw)]}
    body += raw
h = json.dumps(out, indent=1).encode('utf-8')
h += b' ' * (-len(h) % 8)
open(dst, 'wb').write(struct.pack('<Q', len(h)) + h + body)
print(repr(struct.unpack('<f', blobs['scalar'][2])[0]))
)PY";
  write_raw(file("check.py"), script);
  Sample s;
  safetensors_write(file("ours.safetensors"), s.refs, s.metadata);
  const std::string cmd = "python3 " + file("check.py") + " " + file("ours.safetensors") + " " +
                          file("theirs.safetensors") + " >" + file("out.txt") + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << read_file(file("out.txt"));
  EXPECT_EQ(read_file(file("out.txt")), "3.5\n");

  SafetensorsReader r(file("theirs.safetensors"));
  auto meta = s.metadata;
  meta["writer"] = "python";
  EXPECT_EQ(r.metadata(), meta);
  EXPECT_EQ(r.names().size(), s.refs.size() + 3);
  EXPECT_EQ(r.names().front(), "py.bf16");  // python wrote them in reverse
  for (const auto& t : s.refs) {
    Array out = Array::empty(t.tensor.dtype(), t.tensor.shape());
    r.read_into(t.name, out);
    EXPECT_EQ(bytes_of(out), bytes_of(t.tensor)) << t.name;
  }
  Array f64 = Array::empty(DType::F64, {3});
  r.read_into("py.f64", f64);
  EXPECT_EQ(f64.data<double>()[0], 1.5);
  EXPECT_EQ(f64.data<double>()[1], -2.25);
  EXPECT_EQ(f64.data<double>()[2], 1e300);
  Array i32 = Array::empty(DType::I32, {2});
  r.read_into("py.i32", i32);
  EXPECT_EQ(i32.data<int32_t>()[0], -7);
  EXPECT_EQ(i32.data<int32_t>()[1], 2147483647);
  Array bf = Array::empty(DType::F32, {2, 1});
  r.read_converted("py.bf16", bf);
  EXPECT_EQ(bf.data<float>()[0], 1.0f);
  EXPECT_EQ(bf.data<float>()[1], -2.0f);
}

TEST_F(SafetensorsTest, TruncatedFilesSayTruncated) {
  Rng rng(3);
  Array a = random_array(DType::F32, {3, 5}, rng), b = random_array(DType::F64, {7}, rng);
  const std::string path = file("model.safetensors");
  safetensors_write(path, {{"a", a}, {"b", b}}, {{"step", "1"}});
  const std::string bytes = read_file(path);
  const uint64_t n = read_u64_le(bytes);
  const size_t size = bytes.size();
  for (size_t cut :
       {size_t(0), size_t(3), size_t(7), size_t(8), size_t(8 + n / 2), size_t(8 + n - 1),
        size_t(8 + n), size_t(8 + n + 1), size_t(8 + n + 60), size - 1}) {
    write_raw(file("cut"), bytes.substr(0, cut));
    const std::string msg = error_of([&] { SafetensorsReader r(file("cut")); });
    EXPECT_TRUE(contains_text(msg, "truncated")) << "cut at " << cut << ": " << msg;
    EXPECT_TRUE(contains_text(msg, "[safetensors] " + file("cut") + ": ")) << msg;
  }

  // A file that shrinks after it was opened: reads fail cleanly instead of reading garbage.
  SafetensorsReader r(path);
  fs::resize_file(path, 8 + n + 10);
  Array out = Array::empty(DType::F32, {3, 5});
  const std::string msg = error_of([&] { r.read_into("a", out); });
  EXPECT_TRUE(contains_text(msg, "truncated")) << msg;
  EXPECT_TRUE(contains_text(msg, "tensor a")) << msg;
}

TEST_F(SafetensorsTest, CorruptHeadersAreRejected) {
  const std::string p = file("bad.safetensors");
  const std::string f32x2 = R"("dtype": "F32", "shape": [2])";
  struct Case {
    std::string header, data, expect;
  };
  const std::vector<Case> cases = {
      {"", "", "not valid JSON"},
      {"{not json", "", "not valid JSON"},
      {"{\"a\": \"\xff\xfe\"}", "", "not valid JSON"},
      {"[1, 2]", "", "not an object"},
      {R"({"a": 3})", "", "not an object"},
      {R"({"a": {"dtype": "F16", "shape": [1], "data_offsets": [0, 2]}})", "xx",
       "unsupported dtype \"F16\""},
      {R"({"a": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}})", "xxxx", "no dtype"},
      {R"({"a": {"shape": [1], "data_offsets": [0, 4]}})", "xxxx", "no dtype"},
      {R"({"a": {"dtype": "F32", "data_offsets": [0, 4]}})", "xxxx", "no shape"},
      {R"({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", "xxxx",
       "non-negative integer"},
      {R"({"a": {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}})", "xxxx",
       "non-negative integer"},
      {R"({"a": {"dtype": "F32", "shape": [1, 1, 1, 1, 1], "data_offsets": [0, 4]}})", "xxxx",
       "rank 5"},
      {R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296, 4294967296],
                 "data_offsets": [0, 4]}})",
       "xxxx", "too large"},
      {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", "xxxx", "data_offsets"},
      {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, -4]}})", "xxxx", "data_offsets"},
      {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}})", "xxxx",
       "begin after end"},
      {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 8]}})", "xxxxxxxx",
       "holding 8 bytes"},
      {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}})", "xxxx",
       "unknown field"},
      // offsets out of bounds: past the end of the data, or far beyond the file
      {"{\"a\": {" + f32x2 + R"(, "data_offsets": [0, 8]}})", "xxxx", "truncated"},
      {"{\"a\": {" + f32x2 + R"(, "data_offsets": [1000, 1008]}})", "xxxxxxxx", "gap"},
      {"{\"a\": {" + f32x2 + R"(, "data_offsets": [18446744073709551608, 0]}})", "xxxxxxxx",
       "begin after end"},
      {"{\"a\": {" + f32x2 + R"(, "data_offsets": [0, 8]}, "b": {)" + f32x2 +
           R"(, "data_offsets": [4, 12]}})",
       "xxxxxxxxxxxx", "overlap"},
      {"{\"a\": {" + f32x2 + R"(, "data_offsets": [0, 8]}, "b": {)" + f32x2 +
           R"(, "data_offsets": [12, 20]}})",
       "xxxxxxxxxxxxxxxxxxxx", "gap of 4 bytes before tensor b"},
      {"{\"a\": {" + f32x2 + R"(, "data_offsets": [0, 8]}})", "xxxxxxxxxxxx", "4 unexpected bytes"},
      {R"({"__metadata__": {"k": 1}})", "", "not a string"},
      {R"({"__metadata__": ["k"]})", "", "not an object"},
  };
  for (const Case& c : cases) {
    write_by_hand(p, c.header, c.data);
    const std::string msg = error_of([&] { SafetensorsReader r(p); });
    EXPECT_TRUE(contains_text(msg, c.expect)) << c.header << "\n  gave: " << msg;
    EXPECT_TRUE(contains_text(msg, "[safetensors] " + p + ": ")) << msg;
  }

  // A valid hand-made file with metadata only, and one with two empty tensors at one offset.
  write_by_hand(p, R"({"__metadata__": {"k": "v"}})", "");
  EXPECT_EQ(SafetensorsReader(p).metadata().at("k"), "v");
  write_by_hand(p, R"({"e": {"dtype": "I32", "shape": [0, 3], "data_offsets": [0, 0]},
                       "z": {"dtype": "BF16", "shape": [0], "data_offsets": [0, 0]}})",
                "");
  EXPECT_EQ(SafetensorsReader(p).names().size(), 2u);

  // A header length far beyond the file, a directory, a missing file.
  write_raw(p, std::string(8, '\xff') + "{}      ");
  EXPECT_TRUE(contains_text(error_of([&] { SafetensorsReader r(p); }), "truncated"));
  EXPECT_TRUE(contains_text(error_of([&] { SafetensorsReader r(dir_); }), "not a regular file"));
  EXPECT_TRUE(
      contains_text(error_of([&] { SafetensorsReader r(file("missing")); }), "cannot open"));
}

// Random corruption of a valid file: opening and reading must either work or throw
// fela::Error; nothing else (a crash, another exception, an out-of-bounds read under ASan).
TEST_F(SafetensorsTest, RandomCorruptionNeverCrashes) {
  Rng rng(5);
  Array a = random_array(DType::F32, {3, 5}, rng), b = random_array(DType::F64, {2, 2}, rng);
  Array c = Array::zeros(DType::BF16, {3});
  const std::string path = file("model.safetensors"), bad = file("bad.safetensors");
  safetensors_write(path, {{"a", a}, {"b", b}, {"c", c}}, {{"k", "v"}});
  const std::string good = read_file(path);
  const size_t n = read_u64_le(good);
  std::mt19937_64 gen(42);
  int opened = 0, rejected = 0;
  for (int it = 0; it < 3000; ++it) {
    std::string bytes = good;
    switch (it % 4) {
      case 0:  // a few random bytes anywhere in the length or header
      case 1:
        for (int k = 0, m = 1 + int(gen() % 4); k < m; ++k) bytes[gen() % (8 + n)] = char(gen());
        break;
      case 2:  // a printable character in the header (digits, quotes and brackets matter)
        bytes[8 + gen() % n] = "0123456789[]{}\",:-. e"[gen() % 21];
        break;
      case 3:  // truncation or extension
        bytes.resize(gen() % (good.size() + 16), 'x');
        break;
    }
    fs::remove(bad);  // a fresh file: rewriting one in place can force a flush (ext4)
    write_raw(bad, bytes);
    try {
      SafetensorsReader r(bad);
      ++opened;
      for (const std::string& name : r.names()) {
        Array out = Array::empty(r.dtype(name), r.shape(name));
        r.read_into(name, out);
      }
    } catch (const Error&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 1000);
  EXPECT_GT(opened, 10);  // e.g. flips inside tensor names or the metadata value
}

TEST_F(SafetensorsTest, ReadIntoChecksNameDtypeAndShape) {
  Array w = Array::zeros(DType::F32, {64, 32});
  const std::string path = file("model.safetensors");
  safetensors_write(path, {{"layers.0.fno.w_u", w}});
  SafetensorsReader r(path, "[checkpoint] model.safetensors");
  Array wrong_shape = Array::empty(DType::F32, {64, 64});
  EXPECT_EQ(error_of([&] { r.read_into("layers.0.fno.w_u", wrong_shape); }),
            "[checkpoint] model.safetensors: tensor layers.0.fno.w_u has shape [64, 32], "
            "expected [64, 64]");
  Array wrong_dtype = Array::empty(DType::F64, {64, 32});
  EXPECT_EQ(error_of([&] { r.read_into("layers.0.fno.w_u", wrong_dtype); }),
            "[checkpoint] model.safetensors: tensor layers.0.fno.w_u has dtype F32, expected F64");
  Array wrong_rank = Array::empty(DType::F32, {2048});
  EXPECT_TRUE(contains_text(error_of([&] { r.read_into("layers.0.fno.w_u", wrong_rank); }),
                            "has shape [64, 32], expected [2048]"));
  Array any = Array::empty(DType::F32, {64, 32});
  const std::string missing = "[checkpoint] model.safetensors: no tensor named layers.1.gla.w_q";
  EXPECT_EQ(error_of([&] { r.read_into("layers.1.gla.w_q", any); }), missing);
  EXPECT_EQ(error_of([&] { r.read_converted("layers.1.gla.w_q", any); }), missing);
  EXPECT_EQ(error_of([&] { r.dtype("layers.1.gla.w_q"); }), missing);
  EXPECT_EQ(error_of([&] { r.shape("layers.1.gla.w_q"); }), missing);
  const Tensor no_memory(nullptr, DType::F32, {64, 32});
  EXPECT_TRUE(
      contains_text(error_of([&] { r.read_into("layers.0.fno.w_u", no_memory); }), "no memory"));
  // The default label names the file.
  SafetensorsReader plain(path);
  EXPECT_TRUE(contains_text(error_of([&] { plain.read_into("layers.0.fno.w_u", wrong_shape); }),
                            "[safetensors] " + path + ": tensor layers.0.fno.w_u has shape"));
}

TEST_F(SafetensorsTest, ReadConvertedConvertsFloats) {
  Rng rng(9);
  Array f32 = random_array(DType::F32, {33}, rng);
  Array f64 = random_array(DType::F64, {200003}, rng);  // several conversion chunks
  f64.data<double>()[0] = 1e300;                        // overflows to inf in F32
  f64.data<double>()[1] = 1.0 + 1e-12;                  // rounds to 1.0f
  Array bf16 = Array::empty(DType::BF16, {129});
  auto* h = static_cast<uint16_t*>(bf16.view().raw());
  for (int i = 0; i < 129; ++i) h[i] = uint16_t(0x3F80 + 37 * i);
  Array i32 = Array::zeros(DType::I32, {3});
  const std::string path = file("m.safetensors");
  safetensors_write(path, {{"f32", f32}, {"f64", f64}, {"bf16", bf16}, {"i32", i32}});
  SafetensorsReader r(path);

  Array up = Array::empty(DType::F64, {33});
  r.read_converted("f32", up);
  for (int i = 0; i < 33; ++i) EXPECT_EQ(up.data<double>()[i], double(f32.data<float>()[i]));
  Array down = Array::empty(DType::F32, {200003});
  r.read_converted("f64", down);
  int mismatches = 0;
  for (int i = 0; i < 200003; ++i)
    mismatches += std::bit_cast<uint32_t>(down.data<float>()[i]) !=
                  std::bit_cast<uint32_t>(float(f64.data<double>()[i]));
  EXPECT_EQ(mismatches, 0);
  EXPECT_TRUE(std::isinf(down.data<float>()[0]));
  EXPECT_EQ(down.data<float>()[1], 1.0f);
  Array b32 = Array::empty(DType::F32, {129}), b64 = Array::empty(DType::F64, {129});
  r.read_converted("bf16", b32);
  r.read_converted("bf16", b64);
  for (int i = 0; i < 129; ++i) {
    const float expect = std::bit_cast<float>(uint32_t(h[i]) << 16);
    EXPECT_EQ(std::bit_cast<uint32_t>(b32.data<float>()[i]), std::bit_cast<uint32_t>(expect));
    EXPECT_EQ(b64.data<double>()[i], double(expect));
  }
  Array same = Array::empty(DType::F32, {33});  // same dtype: a plain copy
  r.read_converted("f32", same);
  EXPECT_EQ(bytes_of(same), bytes_of(f32));

  Array f32x3 = Array::empty(DType::F32, {3}), bf3 = Array::empty(DType::BF16, {33});
  EXPECT_TRUE(contains_text(error_of([&] { r.read_converted("i32", f32x3); }),
                            "tensor i32 is I32 and cannot be converted to F32"));
  EXPECT_TRUE(contains_text(error_of([&] { r.read_converted("f32", bf3); }),
                            "tensor f32 is F32 and cannot be converted to BF16"));
  Array wrong = Array::empty(DType::F64, {32});
  EXPECT_TRUE(contains_text(error_of([&] { r.read_converted("f32", wrong); }),
                            "tensor f32 has shape [33], expected [32]"));
}

TEST_F(SafetensorsTest, WriterRejectsBadInput) {
  Array a = Array::zeros(DType::F32, {2});
  const std::string path = file("m.safetensors");
  const std::vector<std::pair<std::vector<TensorRef>, std::string>> cases = {
      {{{"", a}}, "empty name"},
      {{{"__metadata__", a}}, "__metadata__"},
      {{{"x", a}, {"x", a}}, "tensor x is given twice"},
      {{{"x", Tensor(nullptr, DType::F32, {2})}}, "tensor x has no data"},
      {{{"bad\xff", a}}, "cannot encode the header"},
  };
  for (const auto& [tensors, expect] : cases) {
    const std::string msg = error_of([&] { safetensors_write(path, tensors); });
    EXPECT_TRUE(contains_text(msg, expect)) << msg;
  }
  EXPECT_TRUE(contains_text(error_of([&] {
                              safetensors_write(path, {}, {{"k", "\xc3"}});
                            }),
                            "cannot encode the header"));
  EXPECT_TRUE(list_dir(dir_).empty()) << "no file or temp file may be left";
  const std::string missing = file("no/such/dir/m.safetensors");
  EXPECT_TRUE(contains_text(error_of([&] {
                              safetensors_write(missing, {{"x", a}});
                            }),
                            "[io] cannot write " + missing + ": No such file"));
  // No tensors at all is a valid file.
  safetensors_write(path, {});
  EXPECT_TRUE(SafetensorsReader(path).names().empty());
}

TEST_F(SafetensorsTest, WriteFileAtomicReplacesContent) {
  const std::string p = file("trainer.json");
  write_file_atomic(p, "first");
  EXPECT_EQ(read_file(p), "first");
  const std::string binary("second\0with\xff bytes, and longer", 30);
  write_file_atomic(p, binary);
  EXPECT_EQ(read_file(p), binary);
  write_file_atomic(p, "");
  EXPECT_EQ(read_file(p), "");
  EXPECT_EQ(list_dir(dir_), std::vector<std::string>{"trainer.json"});

  // Streamed in pieces (a 3 MB file); an abandoned writer leaves the old content alone.
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = char(i * 7 + (i >> 13));
  {
    AtomicFileWriter w(p);
    for (size_t i = 0; i < big.size(); i += 100000)
      w.write(big.data() + i, std::min<size_t>(100000, big.size() - i));
    w.commit();
  }
  EXPECT_EQ(read_file(p), big);
  {
    AtomicFileWriter w(p);
    w.write("half written");
    EXPECT_EQ(list_dir(dir_).size(), 2u);  // the temp file is a sibling while writing
  }
  EXPECT_EQ(read_file(p), big);
  EXPECT_EQ(list_dir(dir_), std::vector<std::string>{"trainer.json"});

  const std::string missing = file("nope/x.json");
  EXPECT_EQ(error_of([&] { write_file_atomic(missing, "x"); }),
            "[io] cannot write " + missing + ": No such file or directory");
  EXPECT_EQ(error_of([&] { read_file(file("absent.json")); }),
            "[io] cannot read " + file("absent.json") + ": No such file or directory");
  EXPECT_TRUE(contains_text(error_of([&] { read_file(dir_); }), "[io] cannot read " + dir_));
}

namespace {

// A checkpoint-like directory holding two files whose content identifies the version.
void make_checkpoint(const std::string& dir, const std::string& version) {
  fs::create_directories(dir);
  write_file_atomic(dir + "/config.json", "{\"version\": \"" + version + "\"}");
  write_file_atomic(dir + "/model.safetensors", version + " weights");
}

std::string version_of(const std::string& dir) {
  const std::string cfg = read_file(dir + "/config.json");
  EXPECT_EQ(read_file(dir + "/model.safetensors"), cfg.substr(13, cfg.size() - 15) + " weights");
  return cfg.substr(13, cfg.size() - 15);
}

}  // namespace

TEST_F(SafetensorsTest, ReplaceDirectoryAtomic) {
  const std::string fin = file("ckpt");
  const std::string s1 = staging_dir_for(fin), s2 = staging_dir_for(fin + "/");
  EXPECT_NE(s1, s2);
  EXPECT_EQ(fs::path(s1).parent_path(), fs::path(fin).parent_path());
  EXPECT_EQ(fs::path(s2).parent_path(), fs::path(fin).parent_path());
  EXPECT_EQ(s1.rfind(fin + ".staging-", 0), 0u) << s1;

  // No final directory yet.
  make_checkpoint(s1, "v1");
  replace_directory_atomic(s1, fin);
  EXPECT_EQ(version_of(fin), "v1");
  EXPECT_EQ(list_dir(dir_), std::vector<std::string>{"ckpt"});

  // Over an existing one (named with a trailing slash), with a stale .old lying around.
  make_checkpoint(fin + ".old", "stale");
  make_checkpoint(s2, "v2");
  replace_directory_atomic(s2 + "/", fin + "/");
  EXPECT_EQ(version_of(fin), "v2");
  EXPECT_EQ(list_dir(dir_), std::vector<std::string>{"ckpt"});

  // The crash state "old moved aside, new not yet in place": the new one still installs.
  fs::rename(fin, fin + ".old");
  const std::string s3 = staging_dir_for(fin);
  make_checkpoint(s3, "v3");
  replace_directory_atomic(s3, fin);
  EXPECT_EQ(version_of(fin), "v3");
  EXPECT_EQ(list_dir(dir_), std::vector<std::string>{"ckpt"});

  // A missing staged directory is an error and leaves the checkpoint alone.
  EXPECT_TRUE(contains_text(error_of([&] { replace_directory_atomic(file("absent"), fin); }),
                            "is not a directory"));
  EXPECT_EQ(version_of(fin), "v3");
  EXPECT_TRUE(contains_text(error_of([&] { staging_dir_for("/"); }), "[io] staging_dir_for"));
}

TEST_F(SafetensorsTest, RecoverDirectoryRepairsEveryCrashState) {
  const std::string fin = file("ckpt"), old = fin + ".old";
  recover_directory(fin);  // nothing there: nothing to do
  recover_directory(file("no/such/parent/ckpt"));
  EXPECT_TRUE(list_dir(dir_).empty());

  // Crash between moving the old one aside and installing the new one.
  make_checkpoint(old, "v1");
  make_checkpoint(staging_dir_for(fin), "v2-partial");
  recover_directory(fin);
  EXPECT_EQ(version_of(fin), "v1");
  EXPECT_EQ(list_dir(dir_), std::vector<std::string>{"ckpt"});

  // Crash while removing the old one: the new one stays, the rest of the old goes.
  make_checkpoint(old, "v0");
  fs::remove(old + "/config.json");
  recover_directory(fin + "/");
  EXPECT_EQ(version_of(fin), "v1");
  EXPECT_EQ(list_dir(dir_), std::vector<std::string>{"ckpt"});

  // Crash while staging: staging directories go, lookalikes and other names stay.
  make_checkpoint(staging_dir_for(fin), "v2-partial");
  fs::create_directories(fin + ".staging-123-4/sub");
  fs::create_directories(fin + ".staging-notes");
  fs::create_directories(file("other.staging-1-2"));
  recover_directory(fin);
  EXPECT_EQ(version_of(fin), "v1");
  EXPECT_EQ(list_dir(dir_),
            (std::vector<std::string>{"ckpt", "ckpt.staging-notes", "other.staging-1-2"}));

  // A healthy checkpoint is left as it is.
  recover_directory(fin);
  EXPECT_EQ(version_of(fin), "v1");
}
