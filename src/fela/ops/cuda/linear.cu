// Linear on the GPU through cuBLASLt: bf16 operands, fp32 accumulation (CUBLAS_COMPUTE_32F), bf16
// or fp32 results. Row-major matrices are read as the column-major transposes cuBLAS expects:
// a row-major [a, b] matrix is a column-major [b, a] one with leading dimension b, so each
// product below is written for the transposed equation (y^T = W^T x^T and so on).
// The handle and a 32 MiB workspace are made on first use and kept for the process (freeing
// them at exit, after the runtime may be gone, is unsafe). Algorithms come from cuBLASLt's
// heuristic, told the real alignment of each pointer, so row slices of tensors work; each
// distinct (shape, layout, alignment) is planned once and the plan kept.
#include <cublasLt.h>

#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <type_traits>

#include "fela/ops/cuda/common.cuh"
#include "fela/ops/linear.h"

namespace fela::ops::cuda {

namespace {
constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // cuBLAS's advice for Hopper

cublasLtHandle_t lt_handle() {
  static const cublasLtHandle_t h = [] {
    cublasLtHandle_t created = nullptr;
    CUBLAS_CHECK(cublasLtCreate(&created));
    return created;
  }();
  return h;
}

void* lt_workspace() {
  static void* const p = fela::cuda::device_alloc(kWorkspaceBytes);
  return p;
}

// Owning wrappers for the descriptors of one call.
struct DescFree {
  void operator()(cublasLtMatmulDescOpaque_t* p) const { cublasLtMatmulDescDestroy(p); }
  void operator()(cublasLtMatrixLayoutOpaque_t* p) const { cublasLtMatrixLayoutDestroy(p); }
  void operator()(cublasLtMatmulPreferenceOpaque_t* p) const { cublasLtMatmulPreferenceDestroy(p); }
};
using MatmulDesc = std::unique_ptr<cublasLtMatmulDescOpaque_t, DescFree>;
using MatrixDesc = std::unique_ptr<cublasLtMatrixLayoutOpaque_t, DescFree>;
using PreferenceDesc = std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, DescFree>;

MatrixDesc matrix(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld) {
  cublasLtMatrixLayout_t l = nullptr;
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, type, uint64_t(rows), uint64_t(cols), ld));
  return MatrixDesc(l);
}

// Largest power of two up to 256 dividing the address.
uint32_t alignment(const void* p) {
  uint32_t a = 256;
  while (a > 1 && reinterpret_cast<uintptr_t>(p) % a) a >>= 1;
  return a;
}

// A prepared product: descriptors and the heuristic's algorithm for one shape, layout and
// alignment. Building them costs tens of microseconds of host time per call, more than many of
// the model's products take on the GPU, so plans are made once per distinct key and kept.
struct Plan {
  MatmulDesc op;
  MatrixDesc a, b, c;
  cublasLtMatmulAlgo_t algo;
};

using PlanKey = std::array<int64_t, 12>;

std::unique_ptr<Plan> make_plan(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                                int64_t lda, int64_t ldb, cudaDataType_t c_type, int64_t ldc,
                                uint32_t align_a, uint32_t align_b, uint32_t align_c) {
  auto plan = std::make_unique<Plan>();
  cublasLtMatmulDesc_t op_raw = nullptr;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&op_raw, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  plan->op = MatmulDesc(op_raw);
  const cublasOperation_t ta = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t tb = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan->op.get(), CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan->op.get(), CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  plan->a = trans_a ? matrix(CUDA_R_16BF, k, m, lda) : matrix(CUDA_R_16BF, m, k, lda);
  plan->b = trans_b ? matrix(CUDA_R_16BF, n, k, ldb) : matrix(CUDA_R_16BF, k, n, ldb);
  plan->c = matrix(c_type, m, n, ldc);

  cublasLtMatmulPreference_t pref_raw = nullptr;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref_raw));
  PreferenceDesc pref(pref_raw);
  const size_t ws = kWorkspaceBytes;
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref.get(), CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a, sizeof(align_a)));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b, sizeof(align_b)));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c, sizeof(align_c)));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_c, sizeof(align_c)));

  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(lt_handle(), plan->op.get(), plan->a.get(),
                                              plan->b.get(), plan->c.get(), plan->c.get(),
                                              pref.get(), 1, &result, &found));
  FELA_CHECK(found > 0, "[linear] cuBLASLt has no algorithm for m ", m, " n ", n, " k ", k);
  plan->algo = result.algo;
  return plan;
}

// Column-major C[m, n] = op(A)[m, k] op(B)[k, n] + beta * C, A and B bf16, C of c_type.
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const BFloat16* A,
          int64_t lda, const BFloat16* B, int64_t ldb, void* C, cudaDataType_t c_type, int64_t ldc,
          float beta) {
  const uint32_t align_a = alignment(A), align_b = alignment(B), align_c = alignment(C);
  const PlanKey key{trans_a, trans_b, m, n, k, lda, ldb, int64_t(c_type), ldc, align_a, align_b,
                    align_c};
  static std::mutex mu;
  // Never destroyed, like the handle: destroying descriptors after cuBLASLt unloads is unsafe.
  static auto* const plans = new std::map<PlanKey, std::unique_ptr<Plan>>;
  const Plan* plan = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu);
    std::unique_ptr<Plan>& slot = (*plans)[key];
    if (!slot)
      slot = make_plan(trans_a, trans_b, m, n, k, lda, ldb, c_type, ldc, align_a, align_b,
                       align_c);
    plan = slot.get();
  }
  const float alpha = 1.f;
  CUBLAS_CHECK(cublasLtMatmul(lt_handle(), plan->op.get(), &alpha, A, plan->a.get(), B,
                              plan->b.get(), &beta, C, plan->c.get(), C, plan->c.get(),
                              &plan->algo, lt_workspace(), kWorkspaceBytes, stream()));
}

template <class TOut>
constexpr cudaDataType_t data_type() {
  return std::is_same_v<TOut, float> ? CUDA_R_32F : CUDA_R_16BF;
}

template <class TOut>
void forward(TOut* y, const BFloat16* x, const BFloat16* w, int64_t R, int64_t in, int64_t out,
             Layout lay) {
  if (R == 0 || out == 0) return;
  if (in == 0) {
    fela::cuda::device_zero(y, size_t(R * out) * sizeof(TOut));
    return;
  }
  if (lay == Layout::InOut)  // y^T[out, R] = W^T[out, in] x^T[in, R]
    gemm(false, false, out, R, in, w, out, x, in, y, data_type<TOut>(), out, 0.f);
  else  // y^T[out, R] = E[out, in] x^T[in, R], E stored as E^T[in, out]
    gemm(true, false, out, R, in, w, in, x, in, y, data_type<TOut>(), out, 0.f);
}
}  // namespace

void linear_forward(BFloat16* y, const BFloat16* x, const BFloat16* w, int64_t R, int64_t in,
                    int64_t out, Layout lay) {
  forward(y, x, w, R, in, out, lay);
}

void linear_forward(float* y, const BFloat16* x, const BFloat16* w, int64_t R, int64_t in,
                    int64_t out, Layout lay) {
  forward(y, x, w, R, in, out, lay);
}

void linear_backward(BFloat16* dx, float* dw, const BFloat16* dy, const BFloat16* x,
                     const BFloat16* w, int64_t R, int64_t in, int64_t out, Layout lay,
                     GradMode dx_mode) {
  if (R == 0 || in == 0) return;
  if (dx) {
    if (out == 0) {
      if (dx_mode == GradMode::Write) fela::cuda::device_zero(dx, size_t(R * in) * sizeof(*dx));
    } else {
      const float beta = dx_mode == GradMode::Add ? 1.f : 0.f;
      if (lay == Layout::InOut)  // dx^T[in, R] = W[in, out] dy^T[out, R], W stored as W^T
        gemm(true, false, in, R, out, w, out, dy, out, dx, CUDA_R_16BF, in, beta);
      else  // dx^T[in, R] = E^T[in, out] dy^T[out, R]
        gemm(false, false, in, R, out, w, in, dy, out, dx, CUDA_R_16BF, in, beta);
    }
  }
  if (dw && out > 0) {
    if (lay == Layout::InOut)  // dW^T[out, in] += dy^T[out, R] x[R, in], x stored as x^T
      gemm(false, true, out, in, R, dy, out, x, in, dw, CUDA_R_32F, out, 1.f);
    else  // dE^T[in, out] += x^T[in, R] dy[R, out], dy stored as dy^T
      gemm(false, true, in, out, R, x, in, dy, out, dw, CUDA_R_32F, in, 1.f);
  }
}

}  // namespace fela::ops::cuda
