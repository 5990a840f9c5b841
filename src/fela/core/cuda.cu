// Definitions of the host-side CUDA services declared in cuda.h (device memory, copies, device
// facts, error reporting). Host code only; compiled by nvcc into fela_cuda.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include "fela/core/cuda.h"

namespace fela::cuda {

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
  return p;
}

void device_free(void* p) noexcept {
  // At process exit the runtime may already be unloaded (cudaErrorCudartUnloading): the memory
  // goes with the context, so the status is dropped.
  if (p) (void)cudaFree(p);
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
