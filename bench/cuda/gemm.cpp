// cuBLASLt on the model's product shapes: the heuristic's first algorithm (what ops/linear uses)
// against the fastest of its first K candidates, timed here. Says whether choosing algorithms by
// measurement would pay, per product kind (forward y = x W, dx = dy W^T, dW += x^T dy in fp32).
//   bench_gemm [--candidates K] [--rows R]...
// Shapes: fela-small's linears (d 768, MLP 2048, GLA keys 384) at R = 8192 and 32768 rows
// (8 and 32 sequences of 1024). Times: median of 20 calls after 3 warm-up calls.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench_util.h"
#include "fela/core/cuda.h"

using namespace fela;

namespace {

#define LT_CHECK(x)                                                                             \
  do {                                                                                          \
    const cublasStatus_t s_ = (x);                                                              \
    if (s_ != CUBLAS_STATUS_SUCCESS) fail("[bench_gemm] cuBLASLt error ", int(s_), " at ", #x); \
  } while (0)

constexpr size_t kWorkspace = size_t(32) << 20;

struct Product {
  const char* kind;
  bool ta, tb;
  int64_t m, n, k, lda, ldb, ldc;
  cudaDataType_t c_type;
  float beta;
};

// The three products of a linear with W [in, out] on R rows, as ops/cuda/linear.cu writes them.
std::vector<Product> products(int64_t R, int64_t in, int64_t out) {
  return {{"forward", false, false, out, R, in, out, in, out, CUDA_R_16BF, 0.f},
          {"dx", true, false, in, R, out, out, out, in, CUDA_R_16BF, 0.f},
          {"dW +=", false, true, out, in, R, out, in, out, CUDA_R_32F, 1.f}};
}

struct Timing {
  int found = 0;
  double first_ms = 0, best_ms = 0;
  int best = 0;
};

Timing time_product(cublasLtHandle_t h, void* ws, const Product& p, int candidates, Rng& rng) {
  cublasLtMatmulDesc_t op;
  LT_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = p.ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                          tb = p.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  LT_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  LT_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  cublasLtMatrixLayout_t a, b, c;
  LT_CHECK(cublasLtMatrixLayoutCreate(&a, CUDA_R_16BF, p.ta ? p.k : p.m, p.ta ? p.m : p.k, p.lda));
  LT_CHECK(cublasLtMatrixLayoutCreate(&b, CUDA_R_16BF, p.tb ? p.n : p.k, p.tb ? p.k : p.n, p.ldb));
  LT_CHECK(cublasLtMatrixLayoutCreate(&c, p.c_type, p.m, p.n, p.ldc));
  cublasLtMatmulPreference_t pref;
  LT_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                &kWorkspace, sizeof(kWorkspace)));
  std::vector<cublasLtMatmulHeuristicResult_t> res(static_cast<size_t>(candidates));
  Timing t;
  LT_CHECK(
      cublasLtMatmulAlgoGetHeuristic(h, op, a, b, c, c, pref, candidates, res.data(), &t.found));
  Array A = bench::random_device(DType::BF16, {p.m * p.k}, rng);
  Array B = bench::random_device(DType::BF16, {p.k * p.n}, rng);
  Array C = bench::random_device(p.c_type == CUDA_R_32F ? DType::F32 : DType::BF16, {p.m * p.n},
                                 rng, 0.01);
  const float alpha = 1.f;
  for (int i = 0; i < t.found; ++i) {
    const double ms = bench::median_ms(
        [&](int) {
          LT_CHECK(cublasLtMatmul(h, op, &alpha, A.view().raw(), a, B.view().raw(), b, &p.beta,
                                  C.view().raw(), c, C.view().raw(), c, &res[size_t(i)].algo, ws,
                                  kWorkspace, 0));
        },
        3, 20);
    if (i == 0) t.first_ms = t.best_ms = ms;
    if (ms < t.best_ms) t.best_ms = ms, t.best = i;
  }
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(a);
  cublasLtMatrixLayoutDestroy(b);
  cublasLtMatrixLayoutDestroy(c);
  cublasLtMatmulDescDestroy(op);
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    int candidates = 16;
    std::vector<int64_t> rows;
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--candidates" && i + 1 < argc) {
        candidates = std::atoi(argv[++i]);
      } else if (arg == "--rows" && i + 1 < argc) {
        rows.push_back(std::atoll(argv[++i]));
      } else {
        std::printf("usage: bench_gemm [--candidates K] [--rows R]...\n");
        return arg == "--help" || arg == "-h" ? 0 : 2;
      }
    }
    FELA_CHECK(candidates >= 1, "[bench_gemm] --candidates must be >= 1");
    if (rows.empty()) rows = {8192, 32768};
    cublasLtHandle_t h;
    LT_CHECK(cublasLtCreate(&h));
    void* ws = cuda::device_alloc(kWorkspace);
    Rng rng(1);
    std::printf(
        "bench_gemm: cuBLASLt heuristic's first algorithm vs the fastest of its first %d\n\n",
        candidates);
    std::printf(
        "| R | in x out | product | candidates | first ms | first TFLOP/s | best ms | best TFLOP/s "
        "| best is |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|\n");
    const int64_t shapes[][2] = {{768, 2048}, {2048, 768}, {768, 768}, {768, 384}};
    for (int64_t R : rows)
      for (const auto& s : shapes)
        for (const Product& p : products(R, s[0], s[1])) {
          const Timing t = time_product(h, ws, p, candidates, rng);
          const double flop = 2.0 * double(p.m) * double(p.n) * double(p.k);
          std::printf("| %lld | %lldx%lld | %s | %d | %.4f | %.0f | %.4f | %.0f | #%d |\n",
                      (long long)R, (long long)s[0], (long long)s[1], p.kind, t.found, t.first_ms,
                      flop / t.first_ms / 1e9, t.best_ms, flop / t.best_ms / 1e9, t.best);
          std::fflush(stdout);
        }
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
