// CUDA runtime services for host code: device memory, copies, device facts, and the checks that
// turn CUDA and cuBLAS status codes into fela::Error. This header compiles without nvcc; the
// definitions live in cuda.cu, which is built (into fela_cuda) only when nvcc is found, and then
// FELA_HAVE_CUDA is defined. Nothing here is called unless a tensor is on Device::Cuda, so a
// CUDA build runs its CPU paths on machines without a GPU.
//
// Streams: every kernel, copy and cuBLASLt call of the backend runs on the legacy default
// stream, in issue order; copies to the host wait for the work before them.
#pragma once
#include <cstddef>
#include <string>

#include "fela/core/error.h"

namespace fela::cuda {

// Number of CUDA devices (0 when there is no driver or no GPU; never throws).
int device_count();
// "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 81079 MiB" for the current device.
std::string device_description();

void* device_alloc(size_t bytes);         // cudaMalloc; throws (saying how much) on failure
void device_free(void* p) noexcept;       // cudaFree; errors at process exit are ignored
void device_zero(void* p, size_t bytes);  // cudaMemset on the default stream
// Copies bytes between any two of host and device memory (unified addressing), in stream order;
// returns when the data has left src, and a copy to the host has landed.
void copy_bytes(void* dst, const void* src, size_t bytes);
void synchronize();  // waits for all device work, reports kernel faults

// Device memory: what fela's own allocations hold now and at most since the last reset, and
// what the driver reports free / total (which also counts the context and libraries' buffers).
struct MemoryStats {
  size_t current, peak;
  size_t device_free, device_total;
};
MemoryStats memory_stats();
void reset_peak_memory();

// Throw fela::Error "[cuda] <stmt> failed: <reason> (file:line)"; the codes are cudaError_t and
// cublasStatus_t values, passed as int so that this header needs no CUDA headers.
[[noreturn]] void throw_cuda_error(int code, const char* stmt, const char* file, int line);
[[noreturn]] void throw_cublas_error(int status, const char* stmt, const char* file, int line);

}  // namespace fela::cuda

// CUDA_CHECK(cudaMalloc(&p, n)): throws fela::Error naming the statement and file:line unless it
// returned cudaSuccess (0). CUBLAS_CHECK does the same for cuBLAS / cuBLASLt statuses.
#define CUDA_CHECK(stmt)                                                         \
  do {                                                                           \
    const int fela_cuda_err_ = static_cast<int>(stmt);                           \
    if (fela_cuda_err_ != 0)                                                     \
      ::fela::cuda::throw_cuda_error(fela_cuda_err_, #stmt, __FILE__, __LINE__); \
  } while (0)
#define CUBLAS_CHECK(stmt)                                                          \
  do {                                                                              \
    const int fela_cublas_st_ = static_cast<int>(stmt);                             \
    if (fela_cublas_st_ != 0)                                                       \
      ::fela::cuda::throw_cublas_error(fela_cublas_st_, #stmt, __FILE__, __LINE__); \
  } while (0)
// After a kernel launch: reports a bad launch configuration at once (faults inside the kernel
// surface at the next synchronizing call).
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
