// What every backend_ops check shares: random host values, guarded device buffers, the oracle
// arrays, the read-back and the table of results. Each group of checks lives in its own file
// and registers itself with FELA_BACKEND_CHECKS; main.cpp runs the groups in their order.
//
// Error: norm-wise relative error ||gpu - oracle|| / ||oracle||.
// Tolerance (STYLE.md's rule): 2 x the error of a same-precision naive version + 1e-5, where the
// naive version is the exact result rounded once to the output's storage type (bf16 or fp32):
// the best any kernel storing that type can do. The floor covers fp32 summation order.
// Guards: every device buffer has 64 poisoned elements (NaN bit patterns) on each side; outputs
// start poisoned too unless the op accumulates into them, so unwritten elements show as NaN.
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "fela/core/rng.h"
#include "fela/core/tensor.h"

namespace fela::backend_ops {

using Vec = std::vector<double>;

constexpr double kFloor = 1e-5;
constexpr int64_t kGuard = 64;  // poisoned elements before and after every device buffer

// ---- host values ----
Vec normal(int64_t n, Rng& rng, double scale = 1.0, double mean = 0.0);
double stored(double x, DType dt);  // the value a tensor of dtype dt stores for x
Vec rounded(Vec v, DType dt);
double rel_err(const Vec& a, const Vec& b);  // ||a - b|| / max(||a||, ||b||); NaN gives NaN
Array host_f64(const Vec& v, Shape s);       // a double CPU array holding v, for the oracle
Vec values(const Tensor& t);                 // the elements of a double CPU tensor
Array host_i32(const std::vector<int32_t>& v);

// ---- guarded device buffers ----
void poison(void* p, DType dt, int64_t n);
struct DeviceBuf {
  Array mem;    // [lead + n + kGuard] on the GPU
  Tensor view;  // the n elements in the middle
  DType dtype;
  int64_t n;
  int64_t lead = kGuard;  // guard elements before the view
};
// A device buffer of shape s and dtype dt (bf16, f32 or i32) whose middle holds v (stored as
// dt), or poison when v is empty. shift > 0 moves the view that many elements further, off the
// 16-byte alignment that the vectorized kernels take when they can.
DeviceBuf device_buf(DType dt, Shape s, const Vec& v = {}, int64_t shift = 0);
DeviceBuf device_tokens(const std::vector<int32_t>& t);

struct Readback {
  Vec values;
  int64_t nan = 0;
  bool guards_ok = true;
};
Readback read_back(const DeviceBuf& b);  // synchronizes first: a kernel fault surfaces here

// ---- the table ----
struct Row {
  std::string op, shape, dir, out;
  double err, naive, tol;
  int64_t nan;
  bool guards_ok;
  bool pass() const { return err <= tol && nan == 0 && guards_ok; }
};
std::vector<Row>& rows();
// Reads `got` back, compares it with the oracle and prints one table row.
void check(const std::string& op, const std::string& shape, const std::string& dir,
           const std::string& out, const DeviceBuf& got, const Vec& oracle);
// As check, with a tolerance stated by the caller (for outputs whose naive error understates
// what any kernel must incur, e.g. sums over long sequences); the reason is printed.
void check_tol(const std::string& op, const std::string& shape, const std::string& dir,
               const std::string& out, const DeviceBuf& got, const Vec& oracle, double tol,
               const std::string& why);
void add_row(const Row& row);                        // a row computed by the caller (printed by it)
std::string dims(std::initializer_list<int64_t> d);  // "2x3x4"

// ---- groups ----
struct Context {
  Rng& rng;
  bool quick;  // only shapes of at most 2^20 elements (for compute-sanitizer)
  bool run(int64_t elements) const { return !quick || elements <= (int64_t(1) << 20); }
};
struct Group {
  int order;           // groups run in increasing order
  const char* name;    // also what --only selects
  const char* shapes;  // a line for the table's legend
  std::function<void(Context&)> run;
};
std::vector<Group>& groups();
bool register_group(Group g);

}  // namespace fela::backend_ops

// Registers a group of checks from its own file: FELA_BACKEND_CHECKS(10, "fno", "B x N x d x M",
// [](Context& ctx) { ... });
#define FELA_BACKEND_CHECKS_CAT2(a, b) a##b
#define FELA_BACKEND_CHECKS_CAT(a, b) FELA_BACKEND_CHECKS_CAT2(a, b)
#define FELA_BACKEND_CHECKS(order, name, shapes, fn)                                \
  static const bool FELA_BACKEND_CHECKS_CAT(backend_checks_registered_, __LINE__) = \
      ::fela::backend_ops::register_group({order, name, shapes, fn})
