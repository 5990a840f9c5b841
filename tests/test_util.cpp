#include "test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fela::test {

Array random_array(DType dt, Shape s, Rng& rng, double scale) {
  Array a = Array::empty(dt, s);
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double v = rng.normal() * scale;
    if (dt == DType::F32) a.data<float>()[i] = float(v);
    else a.data<double>()[i] = v;
  }
  return a;
}

std::vector<double> to_doubles(const Tensor& t) {
  std::vector<double> v(t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) {
    switch (t.dtype()) {
      case DType::F32: v[i] = t.data<float>()[i]; break;
      case DType::F64: v[i] = t.data<double>()[i]; break;
      case DType::I32: v[i] = t.data<int32_t>()[i]; break;
      default: fail("[test] unsupported dtype");
    }
  }
  return v;
}

double dot(const Tensor& a, const Tensor& b) {
  auto x = to_doubles(a), y = to_doubles(b);
  double s = 0;
  for (size_t i = 0; i < x.size(); ++i) s += x[i] * y[i];
  return s;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  auto x = to_doubles(a), y = to_doubles(b);
  FELA_CHECK(x.size() == y.size(), "[test] size mismatch");
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = std::fabs(x[i] - y[i]);
    if (!(d <= m)) m = d;  // NaN propagates
  }
  return m;
}

double rel_err(const Tensor& a, const Tensor& b) {
  auto x = to_doubles(a), y = to_doubles(b);
  FELA_CHECK(x.size() == y.size(), "[test] size mismatch");
  double num = 0, na = 0, nb = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (x[i] - y[i]) * (x[i] - y[i]);
    na += x[i] * x[i];
    nb += y[i] * y[i];
  }
  return std::sqrt(num) / std::max({std::sqrt(na), std::sqrt(nb), 1e-30});
}

bool all_finite(const Tensor& t) {
  for (double v : to_doubles(t))
    if (!std::isfinite(v)) return false;
  return true;
}

double grad_check(Tensor x, const Tensor& analytic, const std::function<double()>& loss,
                  int64_t max_checks, double eps, uint64_t seed) {
  FELA_CHECK(x.dtype() == DType::F64, "[test] grad_check needs a double tensor");
  FELA_CHECK(x.numel() == analytic.numel(), "[test] gradient size mismatch");
  double* p = x.data<double>();
  const auto g = to_doubles(analytic);
  std::vector<int64_t> idx(x.numel());
  for (int64_t i = 0; i < x.numel(); ++i) idx[i] = i;
  if (max_checks >= 0 && max_checks < x.numel()) {
    Rng rng(seed);
    for (int64_t i = 0; i < max_checks; ++i) std::swap(idx[i], idx[i + rng.below(idx.size() - i)]);
    idx.resize(max_checks);
  }
  double num = 0, na = 0, nn = 0;
  for (int64_t i : idx) {
    const double keep = p[i];
    const double h = eps * std::max(1.0, std::fabs(keep));
    p[i] = keep + h;
    const double lp = loss();
    p[i] = keep - h;
    const double lm = loss();
    p[i] = keep;
    const double fd = (lp - lm) / (2 * h);
    num += (fd - g[i]) * (fd - g[i]);
    na += g[i] * g[i];
    nn += fd * fd;
  }
  return std::sqrt(num) / std::max({std::sqrt(na), std::sqrt(nn), 1e-30});
}

static std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

namespace {
// Directories made by temp_dir, removed when the test program exits.
struct TempDirs {
  std::vector<std::string> paths;
  ~TempDirs() {
    std::error_code ec;
    for (const auto& p : paths) std::filesystem::remove_all(p, ec);
  }
};
TempDirs& temp_dirs() {
  static TempDirs dirs;
  return dirs;
}
}  // namespace

std::string temp_dir(const std::string& tag) {
  namespace fs = std::filesystem;
  static int counter = 0;
  fs::path p = fs::temp_directory_path() /
               ("fela_test_" + tag + "_" + std::to_string(getpid()) + "_" +
                std::to_string(counter++));
  fs::remove_all(p);
  fs::create_directories(p);
  temp_dirs().paths.push_back(p.string());
  return p.string();
}

RunResult run_fela(const std::string& args, const std::string& stdin_text) {
  const std::string dir = temp_dir("run");
  const std::string in = dir + "/stdin", out = dir + "/stdout", err = dir + "/stderr";
  std::ofstream(in, std::ios::binary) << stdin_text;
  const std::string cmd = std::string(FELA_BINARY) + " " + args + " <" + in + " >" + out +
                          " 2>" + err;
  const int rc = std::system(cmd.c_str());
  RunResult r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
  r.out = slurp(out);
  r.err = slurp(err);
  std::filesystem::remove_all(dir);
  return r;
}

}  // namespace fela::test
