// Definitions of the host-side CUDA services declared in cuda.h (device memory, copies, device
// facts, error reporting). Host code only; compiled by nvcc into fela_cuda.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <mutex>
#include <unordered_map>

#include "fela/core/cuda.h"

namespace fela::cuda {

namespace {
// Bytes held per allocation, for memory_stats (cudaFree does not say how much it released).
struct Ledger {
  std::mutex mu;
  std::unordered_map<void*, size_t> sizes;
  size_t current = 0, peak = 0;
};
Ledger& ledger() {
  static Ledger* l = new Ledger;  // never destroyed: frees may run during static destruction
  return *l;
}
}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" status so later checks start clean
    return 0;
  }
  return n;
}

std::string device_description() {
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp p{};
  CUDA_CHECK(cudaGetDeviceProperties(&p, dev));
  return detail::concat(p.name, ", sm_", p.major, p.minor, ", ", p.multiProcessorCount, " SMs, ",
                        p.totalGlobalMem >> 20, " MiB");
}

void* device_alloc(size_t bytes) {
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // not sticky: the context stays usable
    size_t free = 0, total = 0;
    (void)cudaMemGetInfo(&free, &total);
    fail("[cuda] out of device memory allocating ", bytes, " bytes (", free >> 20, " of ",
         total >> 20, " MiB free)");
  }
  CUDA_CHECK(err);
  Ledger& l = ledger();
  std::lock_guard<std::mutex> lock(l.mu);
  l.sizes[p] = bytes;
  l.current += bytes;
  l.peak = std::max(l.peak, l.current);
  return p;
}

MemoryStats memory_stats() {
  Ledger& l = ledger();
  std::lock_guard<std::mutex> lock(l.mu);
  MemoryStats m{l.current, l.peak, 0, 0};
  if (cudaMemGetInfo(&m.device_free, &m.device_total) != cudaSuccess) (void)cudaGetLastError();
  return m;
}

void reset_peak_memory() {
  Ledger& l = ledger();
  std::lock_guard<std::mutex> lock(l.mu);
  l.peak = l.current;
}

void device_free(void* p) noexcept {
  // At process exit the runtime may already be unloaded (cudaErrorCudartUnloading): the memory
  // goes with the context, so the status is dropped.
  if (!p) return;
  {
    Ledger& l = ledger();
    std::lock_guard<std::mutex> lock(l.mu);
    auto it = l.sizes.find(p);
    if (it != l.sizes.end()) {
      l.current -= it->second;
      l.sizes.erase(it);
    }
  }
  (void)cudaFree(p);
}

void device_zero(void* p, size_t bytes) {
  if (bytes) CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, 0));
}

void copy_bytes(void* dst, const void* src, size_t bytes) {
  if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
}

void synchronize() { CUDA_CHECK(cudaDeviceSynchronize()); }

void throw_cuda_error(int code, const char* stmt, const char* file, int line) {
  const auto err = static_cast<cudaError_t>(code);
  fail("[cuda] ", stmt, " failed: ", cudaGetErrorName(err), ": ", cudaGetErrorString(err), " (",
       file, ":", line, ")");
}

void throw_cublas_error(int status, const char* stmt, const char* file, int line) {
  fail("[cublas] ", stmt, " failed: ", cublasLtGetStatusName(static_cast<cublasStatus_t>(status)),
       ": ", cublasLtGetStatusString(static_cast<cublasStatus_t>(status)), " (", file, ":", line,
       ")");
}

}  // namespace fela::cuda
