// Linear on the CPU: every product is one BLAS GEMM (OpenBLAS threads internally).
#include <cblas.h>

#include "fela/ops/linear.h"

namespace fela::ops::cpu {

namespace {
void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
          int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k, double alpha,
          const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
          int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
}  // namespace

template <class T>
void linear_forward(T* y, const T* x, const T* w, int64_t R, int64_t in, int64_t out, Layout lay) {
  if (R == 0 || out == 0) return;
  if (in == 0) {
    for (int64_t i = 0; i < R * out; ++i) y[i] = T(0);
    return;
  }
  if (lay == Layout::InOut)  // y[R,out] = x[R,in] W[in,out]
    gemm(CblasNoTrans, CblasNoTrans, R, out, in, T(1), x, in, w, out, T(0), y, out);
  else  // y[R,out] = x[R,in] E[out,in]^T
    gemm(CblasNoTrans, CblasTrans, R, out, in, T(1), x, in, w, in, T(0), y, out);
}

template <class T>
void linear_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, int64_t R, int64_t in,
                     int64_t out, Layout lay, GradMode dx_mode) {
  if (R == 0 || in == 0) return;
  const T beta = dx_mode == GradMode::Add ? T(1) : T(0);
  if (dx) {
    if (out == 0) {
      if (dx_mode == GradMode::Write)
        for (int64_t i = 0; i < R * in; ++i) dx[i] = T(0);
    } else if (lay == Layout::InOut) {  // dx[R,in] = dy[R,out] W[in,out]^T
      gemm(CblasNoTrans, CblasTrans, R, in, out, T(1), dy, out, w, out, beta, dx, in);
    } else {  // dx[R,in] = dy[R,out] E[out,in]
      gemm(CblasNoTrans, CblasNoTrans, R, in, out, T(1), dy, out, w, in, beta, dx, in);
    }
  }
  if (dw && out > 0) {
    if (lay == Layout::InOut)  // dW[in,out] += x^T dy
      gemm(CblasTrans, CblasNoTrans, in, out, R, T(1), x, in, dy, out, T(1), dw, out);
    else  // dE[out,in] += dy^T x
      gemm(CblasTrans, CblasNoTrans, out, in, R, T(1), dy, out, x, in, T(1), dw, in);
  }
}

FELA_INSTANTIATE_FLOAT(linear_forward)
FELA_INSTANTIATE_FLOAT(linear_backward)

}  // namespace fela::ops::cpu
