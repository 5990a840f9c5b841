#include "test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "fela/model/model.h"

namespace fela::test {

Array random_array(DType dt, Shape s, Rng& rng, double scale) {
  Array a = Array::empty(dt, s);
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double v = rng.normal() * scale;
    if (dt == DType::F32)
      a.data<float>()[i] = float(v);
    else
      a.data<double>()[i] = v;
  }
  return a;
}

Array nan_array(DType dt, Shape s) {
  Array a = Array::empty(dt, s);
  for (int64_t i = 0; i < a.numel(); ++i) {
    if (dt == DType::F32) a.data<float>()[i] = std::numeric_limits<float>::quiet_NaN();
    else a.data<double>()[i] = std::numeric_limits<double>::quiet_NaN();
  }
  return a;
}

Array copy_of(const Tensor& t) {
  Array a = Array::empty(t.dtype(), t.shape());
  std::memcpy(a.view().raw(), t.raw(), t.bytes());
  return a;
}

std::vector<double> to_doubles(const Tensor& t) {
  std::vector<double> v(t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) {
    switch (t.dtype()) {
      case DType::F32:
        v[i] = t.data<float>()[i];
        break;
      case DType::F64:
        v[i] = t.data<double>()[i];
        break;
      case DType::I32:
        v[i] = t.data<int32_t>()[i];
        break;
      default:
        fail("[test] unsupported dtype");
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

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

Array random_tokens(int64_t n, int64_t V, Rng& rng) {
  Array t = Array::empty(DType::I32, {n});
  for (int64_t i = 0; i < n; ++i) t.data<int32_t>()[i] = int32_t(rng.below(V));
  return t;
}

std::vector<std::pair<std::string, double>> model_gradient_errors(Model& m, int64_t B, int64_t N,
                                                                  int64_t per_tensor) {
  Rng rng(5);
  const int64_t V = m.config().vocab_size();
  Array tok = random_tokens(B * N, V, rng), tgt = random_tokens(B * N, V, rng);
  tgt.data<int32_t>()[std::min<int64_t>(1, B * N - 1)] = -1;  // an ignored position
  auto loss = [&] {
    m.forward(tok.data<int32_t>(), B, N);
    return m.loss(tgt.data<int32_t>());
  };
  m.zero_grad();
  m.forward(tok.data<int32_t>(), B, N);
  m.loss(tgt.data<int32_t>(), 1.0);
  m.backward();
  std::vector<std::pair<std::string, double>> out;
  for (const ParamSpec& s : m.table().specs()) {
    Tensor p = m.table().view(m.params(), s), g = m.table().view(m.grads(), s);
    out.push_back({s.name, grad_check(p, g, loss, per_tensor, 1e-5)});
  }
  return out;
}

double generation_gap(Model& m, int64_t B, int64_t N, int64_t P, int64_t prefill_chunk) {
  const int64_t V = m.config().vocab_size();
  Rng rng(6);
  Array tok = random_tokens(B * N, V, rng);
  m.forward(tok.data<int32_t>(), B, N);
  Array full = Array::empty(m.dtype(), {B * N, V});
  m.logits(full, 0, B * N);
  InferenceState s = m.new_state(B);
  Array prompt = Array::empty(DType::I32, {B, P}), step_tok = Array::empty(DType::I32, {B});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < P; ++t)
      prompt.data<int32_t>()[b * P + t] = tok.data<int32_t>()[b * N + t];
  Array lg = Array::empty(m.dtype(), {B, V});
  m.prefill(s, prompt.data<int32_t>(), P, lg, prefill_chunk);
  double worst = 0;
  for (int64_t t = P - 1; t < N; ++t) {
    if (t >= P) {
      for (int64_t b = 0; b < B; ++b) step_tok.data<int32_t>()[b] = tok.data<int32_t>()[b * N + t];
      m.step(s, step_tok.data<int32_t>(), lg);
    }
    for (int64_t b = 0; b < B; ++b)
      worst = std::max(worst, max_abs_diff(Tensor(lg)[b], Tensor(full)[b * N + t]));
  }
  FELA_CHECK(s.t == N, "[test] generation consumed ", s.t, " tokens, expected ", N);
  return worst;
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
  fs::path p = fs::temp_directory_path() / ("fela_test_" + tag + "_" + std::to_string(getpid()) +
                                            "_" + std::to_string(counter++));
  fs::remove_all(p);
  fs::create_directories(p);
  temp_dirs().paths.push_back(p.string());
  return p.string();
}

RunResult run_fela(const std::string& args, const std::string& stdin_text) {
  const std::string dir = temp_dir("run");
  const std::string in = dir + "/stdin", out = dir + "/stdout", err = dir + "/stderr";
  std::ofstream(in, std::ios::binary) << stdin_text;
  const std::string cmd =
      std::string(FELA_BINARY) + " " + args + " <" + in + " >" + out + " 2>" + err;
  const int rc = std::system(cmd.c_str());
  RunResult r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
  r.out = slurp(out);
  r.err = slurp(err);
  std::filesystem::remove_all(dir);
  return r;
}

}  // namespace fela::test
