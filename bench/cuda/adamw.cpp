// GPU benchmark of the fused AdamW update and the gradient norm over a whole model's flat
// buffers: fp32 params, grads, m, v and the bf16 shadow, weight decay on the parameter table's
// matrices (one launch, the table's decay ranges searched per thread). Prints a markdown table:
// median of timed runs after warm-up (CUDA events), bytes moved as counted below, and the
// fraction of the device-to-device copy bandwidth measured here first.
//
// Usage: bench_adamw [--config NAME] [--runs N]     (default fela-small, 50 runs)
#include "fela/train/adamw.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include "fela/core/cuda.h"
#include "fela/core/tensor.h"
#include "fela/model/config.h"
#include "fela/model/params.h"

using namespace fela;

namespace {

// Median milliseconds of f over `runs` timed calls after 5 untimed ones.
double median_ms(int runs, const std::function<void()>& f) {
  for (int i = 0; i < 5; ++i) f();
  cudaEvent_t a, b;
  CUDA_CHECK(cudaEventCreate(&a));
  CUDA_CHECK(cudaEventCreate(&b));
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    CUDA_CHECK(cudaEventRecord(a, 0));
    f();
    CUDA_CHECK(cudaEventRecord(b, 0));
    CUDA_CHECK(cudaEventSynchronize(b));
    float t = 0;
    CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  CUDA_CHECK(cudaEventDestroy(a));
  CUDA_CHECK(cudaEventDestroy(b));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// A host array of n values spread like small weights or gradients (cheap to make).
Array pattern(int64_t n, float scale) {
  Array a = Array::empty(DType::F32, {n});
  float* p = a.data<float>();
  uint32_t x = 12345;
  for (int64_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    p[i] = scale * (float(x >> 8) / float(1 << 24) - 0.5f);
  }
  return a;
}

Array on_gpu(const Array& host) {
  Array d = Array::empty(host.dtype(), host.shape(), Device::Cuda);
  tensor_copy(d, host);
  return d;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config = "fela-small";
  int runs = 50;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--config") == 0 && i + 1 < argc)
      config = argv[++i];
    else if (std::strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
      runs = std::max(1, std::atoi(argv[++i]));
    else {
      std::fprintf(stderr, "usage: bench_adamw [--config NAME] [--runs N]\n");
      return 2;
    }
  }
  try {
    if (cuda::device_count() == 0) {
      std::fprintf(stderr, "bench_adamw: no CUDA device\n");
      return 1;
    }
    const ParamTable table(load_config(config));
    const int64_t P = table.total();
    int64_t decay_tensors = 0;
    for (const ParamSpec& s : table.specs()) decay_tensors += s.decay;

    // moments start at zero and become realistic during the warm-up steps
    Array p = on_gpu(pattern(P, 0.04f)), g = on_gpu(pattern(P, 2e-3f));
    Array shadow = Array::empty(DType::BF16, {P}, Device::Cuda);
    AdamW adam(table, DType::F32, {}, Device::Cuda);

    // the ceiling: a device-to-device copy of 1 GiB, bytes read + written
    const int64_t copy_n = int64_t(1) << 28;
    Array src = Array::zeros(DType::F32, {copy_n}, Device::Cuda);
    Array dst = Array::empty(DType::F32, {copy_n}, Device::Cuda);
    const double copy_ms = median_ms(runs, [&] { tensor_copy(dst, src); });
    const double copy_gbs = 2.0 * 4.0 * double(copy_n) / (copy_ms * 1e6);

    const double upd_shadow_ms = median_ms(runs, [&] { adam.step(p, g, 1e-4, 0.7, shadow); });
    const double upd_ms = median_ms(runs, [&] { adam.step(p, g, 1e-4, 0.7); });
    double norm = 0;
    const double norm_ms = median_ms(runs, [&] { norm = adam.grad_norm(g); });
    cuda::synchronize();

    char date[32];
    const std::time_t now = std::time(nullptr);
    std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
    std::printf("bench_adamw: %s, P = %lld parameters (%lld tensors, %lld with weight decay)\n",
                config.c_str(), (long long)P, (long long)table.specs().size(),
                (long long)decay_tensors);
    std::printf("device: %s; date: %s; median of %d runs after 5 warm-up\n",
                cuda::device_description().c_str(), date, runs);
    std::printf("device-to-device copy (1 GiB, read + write): %.3f ms, %.0f GB/s\n\n", copy_ms,
                copy_gbs);
    std::printf("| what | bytes / parameter | ms | GB/s | of copy |\n|---|---|---|---|---|\n");
    auto row = [&](const char* what, double bytes_per, double ms) {
      const double gbs = bytes_per * double(P) / (ms * 1e6);
      std::printf("| %s | %.0f | %.3f | %.0f | %.0f%% |\n", what, bytes_per, ms, gbs,
                  100.0 * gbs / copy_gbs);
    };
    // update: reads p, g, m, v (16 bytes), writes p, m, v (12) and the bf16 shadow (2)
    row("adamw_update + bf16 shadow", 30, upd_shadow_ms);
    row("adamw_update, no shadow", 28, upd_ms);
    row("grad_norm_sq (incl. copy to host)", 4, norm_ms);
    std::printf("\n(norm of the pattern gradients: %.6e)\n", norm);
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_adamw: %s\n", e.what());
    return 1;
  }
  return 0;
}
