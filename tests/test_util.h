// Shared test helpers: random tensors, error measures, finite-difference gradient checks,
// and running the fela binary.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "fela/core/rng.h"
#include "fela/core/tensor.h"

namespace fela {
class Model;
}

namespace fela::test {

// An array of normal(0, scale) values (float or double).
Array random_array(DType dt, Shape s, Rng& rng, double scale = 1.0);
// An array of t's dtype and shape (f32 or f64) filled with NaN: outputs must overwrite it.
Array nan_array(DType dt, Shape s);
// A copy of t (same dtype, shape and bytes).
Array copy_of(const Tensor& t);
// A copy of t converted to double (CPU).
std::vector<double> to_doubles(const Tensor& t);
// sum_i a_i * b_i in double.
double dot(const Tensor& a, const Tensor& b);
// max_i |a_i - b_i|
double max_abs_diff(const Tensor& a, const Tensor& b);
// ||a - b|| / max(||a||, ||b||, tiny): the norm-wise relative error.
double rel_err(const Tensor& a, const Tensor& b);
// True when every value is finite.
bool all_finite(const Tensor& t);

// Central differences of loss() with respect to every element of x (a double tensor), or to
// max_checks randomly chosen elements; returns the norm-wise relative error against the
// analytic gradient over the checked elements.
double grad_check(Tensor x, const Tensor& analytic, const std::function<double()>& loss,
                  int64_t max_checks = -1, double eps = 1e-6, uint64_t seed = 7);

// The fela::Error message f throws, or "" when it does not throw.
std::string error_of(const std::function<void()>& f);
// n token ids uniform in [0, V), int32.
Array random_tokens(int64_t n, int64_t V, Rng& rng);

// Whole-model finite-difference check of an initialised model on random tokens [B, N] (one
// target ignored): for every parameter tensor, the norm-wise relative error over per_tensor
// sampled entries (double models).
std::vector<std::pair<std::string, double>> model_gradient_errors(Model& m, int64_t B, int64_t N,
                                                                  int64_t per_tensor);
// Max |logits| difference between prefill(P tokens, in chunks of prefill_chunk) + one step per
// remaining token and a parallel forward over all N tokens, over positions P-1 .. N-1.
double generation_gap(Model& m, int64_t B, int64_t N, int64_t P, int64_t prefill_chunk);

struct RunResult {
  int status = -1;
  std::string out, err;
};
// Runs the fela binary with the given argument string (shell-quoted by the caller), with
// optional standard input.
RunResult run_fela(const std::string& args, const std::string& stdin_text = "");
// A fresh empty temporary directory.
std::string temp_dir(const std::string& tag);

}  // namespace fela::test
