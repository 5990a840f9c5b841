// GPU speed of the FNO mixer core (ops/fno.h) at FELA's sizes, printed as markdown tables.
//   bench_fno [--quick]
// Convolution rows: M = 512 taps, d = 768 and 2048, B x N from 8 x 1024 to 1 x 65536 tokens,
// each FirMethod (auto says what it picked, forward / backward). Times are the median of
// per-call CUDA event pairs after warm-up calls; inputs rotate among enough copies to exceed
// twice the L2 cache, so the numbers are not cache-resident. "fwd" is y = f * u + skip u;
// "bwd" is du, df and dskip together. TFLOP/s counts the direct sums' arithmetic (2 B N d M per
// direction and output, i.e. forward 2 B N d M, backward 4 B N d M) whatever the method did, so
// the rows compare on one scale; GB/s counts the least traffic (forward: u in, y out; backward:
// dy and u in, du out; 2 bytes each). Filter rows: f = irfft(K) and its adjoint for d channels,
// M = 512, modes 257. cuFFT rows: the library's batched in-place R2C and C2R (fp32) per point
// at each length the Fft method may pick, about 16M points per call, to see what the Fft
// method's transforms cost against its own kernels. --quick runs the two smallest shapes only.
#include "fela/ops/fno.h"

#include <cuda_runtime.h>
#include <cufft.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include "bench_util.h"
#include "fela/core/bf16.h"
#include "fela/core/cuda.h"
#include "fela/core/rng.h"
#include "fela/core/tensor.h"

using namespace fela;
using ops::FirMethod;

namespace {

struct Inputs {
  std::vector<Array> u, dy, y, du;  // rotating copies [B, N, d] bf16
  Array f, skip, df, dskip;
};

Inputs make_inputs(int64_t B, int64_t N, int64_t d, int64_t M, int64_t l2_bytes, Rng& rng) {
  Inputs in;
  const int64_t set_bytes = 4 * B * N * d * int64_t(sizeof(BFloat16));
  const int64_t sets = std::clamp<int64_t>((2 * l2_bytes + set_bytes - 1) / set_bytes, 1, 8);
  for (int64_t s = 0; s < sets; ++s) {
    in.u.push_back(bench::random_device(DType::BF16, {B, N, d}, rng));
    in.dy.push_back(bench::random_device(DType::BF16, {B, N, d}, rng));
    in.y.push_back(Array::empty(DType::BF16, {B, N, d}, Device::Cuda));
    in.du.push_back(Array::empty(DType::BF16, {B, N, d}, Device::Cuda));
  }
  in.f = bench::random_device(DType::F32, {d, M}, rng, 0.05);
  in.skip = bench::random_device(DType::F32, {d}, rng, 0.1, 1.0);
  in.df = Array::zeros(DType::F32, {d, M}, Device::Cuda);
  in.dskip = Array::zeros(DType::F32, {d}, Device::Cuda);
  return in;
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  try {
    if (cuda::device_count() == 0) {
      std::fprintf(stderr, "bench_fno: no CUDA device\n");
      return 1;
    }
    int dev = 0, l2 = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
    char date[32];
    const std::time_t now = std::time(nullptr);
    std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
    std::printf("bench_fno: FNO mixer core on %s; %s\n\n", cuda::device_description().c_str(),
                date);
    Rng rng(1);

    std::printf("| cuFFT length | rows | R2C ps/point | C2R ps/point |\n|---|---|---|---|\n");
    for (int L : {1024, 1536, 2048, 3072, 4096, 6144, 8192}) {
      const int H = L / 2 + 1;
      const long long rows = (16ll << 20) / L;
      Array buf = bench::random_device(DType::F32, {rows, 2 * H}, rng);
      cufftHandle plan;
      int n = L, rembed = 2 * H, cembed = H;
      if (cufftPlanMany(&plan, 1, &n, &rembed, 1, 2 * H, &cembed, 1, H, CUFFT_R2C, int(rows)) !=
          CUFFT_SUCCESS)
        fail("cufftPlanMany R2C failed");
      cufftHandle iplan;
      if (cufftPlanMany(&iplan, 1, &n, &cembed, 1, H, &rembed, 1, 2 * H, CUFFT_C2R, int(rows)) !=
          CUFFT_SUCCESS)
        fail("cufftPlanMany C2R failed");
      auto* x = buf.data<float>();
      const double r2c = bench::median_ms(
          [&](int) { cufftExecR2C(plan, x, reinterpret_cast<cufftComplex*>(x)); }, 3, 20);
      const double c2r = bench::median_ms(
          [&](int) { cufftExecC2R(iplan, reinterpret_cast<cufftComplex*>(x), x); }, 3, 20);
      std::printf("| %d | %lld | %.1f | %.1f |\n", L, rows, r2c * 1e9 / double(rows * L),
                  c2r * 1e9 / double(rows * L));
      cufftDestroy(plan);
      cufftDestroy(iplan);
    }
    std::printf("\n");

    const int64_t M = 512, modes = M / 2 + 1;
    std::printf("| op | d | M | modes | forward ms | backward ms |\n|---|---|---|---|---|---|\n");
    for (int64_t d : {768, 2048}) {
      Array kr = bench::random_device(DType::F32, {d, modes}, rng),
            ki = bench::random_device(DType::F32, {d, modes}, rng);
      Array f = Array::empty(DType::F32, {d, M}, Device::Cuda);
      Array dkr = Array::zeros(DType::F32, {d, modes}, Device::Cuda);
      Array dki = Array::zeros(DType::F32, {d, modes}, Device::Cuda);
      const double fwd = bench::median_ms([&](int) { ops::fno_filter_forward(f, kr, ki); }, 3, 20);
      const double bwd =
          bench::median_ms([&](int) { ops::fno_filter_backward(dkr, dki, f); }, 3, 20);
      std::printf("| fno_filter | %lld | %lld | %lld | %.4f | %.4f |\n", (long long)d, (long long)M,
                  (long long)modes, fwd, bwd);
    }

    std::printf(
        "\n| method | B | N | d | M | fwd ms | bwd ms | fwd TFLOP/s | bwd TFLOP/s | fwd GB/s | "
        "bwd GB/s |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    std::vector<std::pair<int64_t, int64_t>> shapes = {
        {8, 1024}, {2, 4096}, {4, 4096}, {1, 16384}, {1, 65536}};
    if (quick) shapes.resize(2);
    for (int64_t d : {768, 2048})
      for (auto [B, N] : shapes) {
        Inputs in = make_inputs(B, N, d, M, l2, rng);
        const size_t sets = in.u.size();
        const double tok = double(B) * double(N) * double(d);
        for (FirMethod m :
             {FirMethod::Direct, FirMethod::Fft, FirMethod::Toeplitz, FirMethod::Auto}) {
          auto fwd = [&](int i) {
            const size_t s = size_t(i) % sets;
            ops::fno_conv_forward(in.y[s], in.u[s], in.f, in.skip, ops::Impl::Fast, m);
          };
          auto bwd = [&](int i) {
            const size_t s = size_t(i) % sets;
            ops::fno_conv_backward(in.du[s], in.df, in.dskip, in.dy[s], in.u[s], in.f, in.skip,
                                   ops::Impl::Fast, m);
          };
          // About 0.3 s of calls per measurement, at least 5 and at most 50.
          const double first = bench::median_ms(bwd, 1, 1);
          const int reps = int(std::clamp(0.3e3 / std::max(first, 1e-3), 5.0, 50.0));
          const double tf = bench::median_ms(fwd, 2, reps), tb = bench::median_ms(bwd, 2, reps);
          std::string name = ops::fir_method_name(m);
          if (m == FirMethod::Auto)
            name += std::string(" (") +
                    ops::fir_method_name(ops::cuda::fno_auto_method(B, N, d, M, false)) + " / " +
                    ops::fir_method_name(ops::cuda::fno_auto_method(B, N, d, M, true)) + ")";
          const double flop = 2.0 * tok * double(M);
          std::printf(
              "| %s | %lld | %lld | %lld | %lld | %.3f | %.3f | %.1f | %.1f | %.0f | %.0f |\n",
              name.c_str(), (long long)B, (long long)N, (long long)d, (long long)M, tf, tb,
              flop / tf * 1e-9, 2 * flop / tb * 1e-9, 4 * tok / tf * 1e-6, 6 * tok / tb * 1e-6);
          std::fflush(stdout);
        }
      }
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_fno: %s\n", e.what());
    return 1;
  }
  return 0;
}
