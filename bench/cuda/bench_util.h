// What the GPU benchmarks share: random device arrays and a median CUDA-event timer.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "fela/core/bf16.h"
#include "fela/core/cuda.h"
#include "fela/core/rng.h"
#include "fela/core/tensor.h"

namespace fela::bench {

// A device array (bf16 or f32) of shape s holding value(x) for x ~ N(0, 1), one draw per element.
inline Array random_device(DType dt, Shape s, Rng& rng,
                           const std::function<double(double)>& value) {
  Array host = Array::empty(dt, s);
  const int64_t n = s.numel();
  for (int64_t i = 0; i < n; ++i) {
    const float v = float(value(rng.normal()));
    if (dt == DType::BF16)
      host.data<BFloat16>()[i] = BFloat16(v);
    else
      host.data<float>()[i] = v;
  }
  Array dev = Array::empty(dt, s, Device::Cuda);
  tensor_copy(dev, host);
  return dev;
}

// N(mean, scale^2) values.
inline Array random_device(DType dt, Shape s, Rng& rng, double scale = 1.0, double mean = 0.0) {
  return random_device(dt, s, rng, [&](double x) { return mean + scale * x; });
}

// Median milliseconds of fn(i) over reps calls after `warm` calls, each call between its own
// pair of events (no host synchronisation between calls).
inline double median_ms(const std::function<void(int)>& fn, int warm, int reps) {
  for (int i = 0; i < warm; ++i) fn(i);
  std::vector<cudaEvent_t> ev(size_t(2 * reps));
  for (auto& e : ev) CUDA_CHECK(cudaEventCreate(&e));
  for (int i = 0; i < reps; ++i) {
    CUDA_CHECK(cudaEventRecord(ev[size_t(2 * i)], 0));
    fn(i);
    CUDA_CHECK(cudaEventRecord(ev[size_t(2 * i + 1)], 0));
  }
  CUDA_CHECK(cudaEventSynchronize(ev.back()));
  std::vector<double> t(static_cast<size_t>(reps));
  for (int i = 0; i < reps; ++i) {
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, ev[size_t(2 * i)], ev[size_t(2 * i + 1)]));
    t[size_t(i)] = ms;
  }
  for (auto& e : ev) CUDA_CHECK(cudaEventDestroy(e));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace fela::bench
