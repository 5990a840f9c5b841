// The shared scaffolding of backend_ops (see check.h).
#include "check.h"

#include <cmath>
#include <cstdio>
#include <cstring>

#include "fela/core/bf16.h"
#include "fela/core/cuda.h"

namespace fela::backend_ops {

// ---- host values ----------------------------------------------------------------------------

Vec normal(int64_t n, Rng& rng, double scale, double mean) {
  Vec v(static_cast<size_t>(n));
  for (double& x : v) x = mean + scale * rng.normal();
  return v;
}

// The value a tensor of dtype dt stores for x.
double stored(double x, DType dt) {
  if (dt == DType::BF16) return float(BFloat16(float(x)));
  if (dt == DType::F32) return float(x);
  return x;
}

Vec rounded(Vec v, DType dt) {
  for (double& x : v) x = stored(x, dt);
  return v;
}

// ||a - b|| / max(||a||, ||b||): NaN anywhere gives NaN.
double rel_err(const Vec& a, const Vec& b) {
  double d = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d += (a[i] - b[i]) * (a[i] - b[i]);
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  const double n = std::sqrt(std::max(na, nb));
  return n > 0 ? std::sqrt(d) / n : std::sqrt(d);
}

// A double CPU array holding v, for the oracle.
Array host_f64(const Vec& v, Shape s) {
  Array a = Array::empty(DType::F64, s);
  std::copy(v.begin(), v.end(), a.data<double>());
  return a;
}

Vec values(const Tensor& t) {
  const double* p = t.data<double>();
  return Vec(p, p + t.numel());
}

Array host_i32(const std::vector<int32_t>& v) {
  Array a = Array::empty(DType::I32, {int64_t(v.size())});
  std::copy(v.begin(), v.end(), a.data<int32_t>());
  return a;
}

// ---- guarded device buffers -------------------------------------------------------------------

// NaN bit patterns that no kernel writes, so a changed guard or an unwritten output shows.
void poison(void* p, DType dt, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (dt == DType::BF16) {
      static_cast<uint16_t*>(p)[i] = 0x7fa5;
    } else {
      const uint32_t bits = 0x7fa5a5a5;
      std::memcpy(static_cast<char*>(p) + 4 * i, &bits, 4);
    }
  }
}

// A device buffer of shape s and dtype dt whose middle holds v (stored as dt), or poison when v
// is empty.
DeviceBuf device_buf(DType dt, Shape s, const Vec& v, int64_t shift) {
  const int64_t n = s.numel(), lead = kGuard + shift, total = lead + n + kGuard;
  Array host = Array::empty(dt, {total});
  poison(host.view().raw(), dt, total);
  char* mid = static_cast<char*>(host.view().raw()) + lead * dtype_size(dt);
  for (int64_t i = 0; i < int64_t(v.size()); ++i) {
    if (dt == DType::BF16)
      reinterpret_cast<BFloat16*>(mid)[i] = BFloat16(float(v[i]));
    else if (dt == DType::F32)
      reinterpret_cast<float*>(mid)[i] = float(v[i]);
    else
      reinterpret_cast<int32_t*>(mid)[i] = int32_t(v[i]);
  }
  DeviceBuf b{Array::empty(dt, {total}, Device::Cuda), Tensor(), dt, n, lead};
  tensor_copy(b.mem, host);
  b.view =
      Tensor(static_cast<char*>(b.mem.view().raw()) + lead * dtype_size(dt), dt, s, Device::Cuda);
  return b;
}

DeviceBuf device_tokens(const std::vector<int32_t>& t) {
  return device_buf(DType::I32, {int64_t(t.size())}, Vec(t.begin(), t.end()));
}

Readback read_back(const DeviceBuf& b) {
  cuda::synchronize();  // a kernel fault surfaces here, not in a later op
  Array host = Array::empty(b.dtype, {b.lead + b.n + kGuard});
  tensor_copy(host, b.mem);
  Array fresh = Array::empty(b.dtype, {b.lead});
  poison(fresh.view().raw(), b.dtype, b.lead);
  const size_t es = dtype_size(b.dtype), lb = size_t(b.lead) * es, gb = size_t(kGuard) * es;
  const char* p = static_cast<const char*>(host.view().raw());
  Readback r;
  r.guards_ok = std::memcmp(p, fresh.view().raw(), lb) == 0 &&
                std::memcmp(p + lb + size_t(b.n) * es, fresh.view().raw(), gb) == 0;
  r.values.resize(size_t(b.n));
  for (int64_t i = 0; i < b.n; ++i) {
    const char* e = p + lb + size_t(i) * es;
    double x = 0;
    if (b.dtype == DType::BF16)
      x = float(*reinterpret_cast<const BFloat16*>(e));
    else
      x = *reinterpret_cast<const float*>(e);
    r.values[size_t(i)] = x;
    if (!std::isfinite(x)) ++r.nan;
  }
  return r;
}

// ---- the table ---------------------------------------------------------------------------------

void check(const std::string& op, const std::string& shape, const std::string& dir,
           const std::string& out, const DeviceBuf& got, const Vec& oracle) {
  const Readback r = read_back(got);
  const double naive = rel_err(rounded(oracle, got.dtype), oracle);
  Row row{op,    shape,      dir, out, rel_err(r.values, oracle), naive, 2 * naive + kFloor,
          r.nan, r.guards_ok};
  std::printf("| %s | %s | %s | %s %s | %.2e | %.2e | %.2e | %s | %s | %s |\n", op.c_str(),
              shape.c_str(), dir.c_str(), out.c_str(), std::string(dtype_name(got.dtype)).c_str(),
              row.err, row.naive, row.tol, row.nan ? "NaN" : "ok",
              row.guards_ok ? "ok" : "OVERWRITTEN", row.pass() ? "PASS" : "**FAIL**");
  std::fflush(stdout);
  rows().push_back(row);
}

std::string dims(std::initializer_list<int64_t> d) {
  std::string s;
  for (int64_t x : d) {
    if (!s.empty()) s += 'x';
    s += std::to_string(x);
  }
  return s;
}
std::vector<Row>& rows() {
  static std::vector<Row> r;
  return r;
}

void add_row(const Row& row) { rows().push_back(row); }

void check_tol(const std::string& op, const std::string& shape, const std::string& dir,
               const std::string& out, const DeviceBuf& got, const Vec& oracle, double tol,
               const std::string& why) {
  const Readback r = read_back(got);
  const double naive = rel_err(rounded(oracle, got.dtype), oracle);
  Row row{op, shape, dir, out, rel_err(r.values, oracle), naive, tol, r.nan, r.guards_ok};
  std::printf("| %s | %s | %s | %s %s | %.2e | %.2e | %.2e (%s) | %s | %s | %s |\n", op.c_str(),
              shape.c_str(), dir.c_str(), out.c_str(), std::string(dtype_name(got.dtype)).c_str(),
              row.err, row.naive, row.tol, why.c_str(), row.nan ? "NaN" : "ok",
              row.guards_ok ? "ok" : "OVERWRITTEN", row.pass() ? "PASS" : "**FAIL**");
  std::fflush(stdout);
  rows().push_back(row);
}

std::vector<Group>& groups() {
  static std::vector<Group> g;
  return g;
}

bool register_group(Group g) {
  groups().push_back(std::move(g));
  return true;
}

}  // namespace fela::backend_ops
