// FNO mixer on the GPU (SPEC §2): bf16 activations, fp32 filter, skip, gradients and math.
//
// Filter: f = irfft(K, n = M) is one batched cuFFT C2R of length M over the d channels, its
// adjoint one R2C; both are exact transforms of the (small) filter, deterministic.
// Convolution, three methods that agree to fp32-level rounding (FirMethod::Auto picks by the
// cost model below):
//   Direct    y[t] = sum_j f[j] u[t-j] as fp32 FMAs. A block owns 32 channels (one per lane)
//             and 128 tokens (16 per warp); taps go through shared memory in chunks of 64 with
//             the matching window of u, and each thread keeps a sliding window of 31 inputs in
//             registers, so one tap costs 2 shared loads for 16 FMAs. du is the same kernel run
//             backwards in time. df[j] = sum_t dy[t] u[t-j]: lanes are channels, each warp owns
//             16 lags and slides over the tokens the same way; each block writes partial sums
//             for its token chunk, which one pass adds in chunk order (no atomics). dskip is the
//             lag-0 column of those sums. Measured at about 22 TFLOP/s, a third of the fp32
//             peak (the cause is not established: neither load latency nor spills).
//   Toeplitz  the same sums as block-Toeplitz (Hankel) matrix products on the tensor cores,
//             bf16 operands and fp32 accumulators; the fp32 taps are split into two bf16 parts.
//             y and du by one kernel (forwards, backwards in time), df by another whose
//             products' antidiagonals are the lags. See the section below.
//   Fft       overlap-save blocks of length L, a power of two (one block of N+M-1 when that is
//             cheapest): the token-major bf16 input is transposed into channel-major fp32 rows,
//             cuFFT does the batched R2C and C2R in place, a pointwise kernel multiplies by the
//             filter spectra, and a transposing epilogue adds the skip term and stores bf16.
//             Backward gets du by correlation with f and df by cross-correlation of the dy
//             windows with the u blocks, summed over batch and blocks in the frequency domain in
//             a fixed order and inverted once per channel; dskip is a fixed-order column sum.
// cuFFT plans are made once per (type, length, batch) and kept; their work areas come from the
// stream-ordered pool at each call. Everything runs on stream(), in issue order, and every
// reduction has a fixed order: results repeat bit for bit.
#include <cufft.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <tuple>

#include "fela/ops/cuda/common.cuh"
#include "fela/ops/fno.h"

namespace fela::ops::cuda {

namespace {

#define CUFFT_CHECK(stmt)                                                                       \
  do {                                                                                          \
    const cufftResult fela_cufft_st_ = (stmt);                                                  \
    if (fela_cufft_st_ != CUFFT_SUCCESS)                                                        \
      fail("[fno] ", #stmt, " failed: cuFFT status ", int(fela_cufft_st_), " (", __FILE__, ":", \
           __LINE__, ")");                                                                      \
  } while (0)

// ---------------------------------------------------------------------------------------------
// cuFFT glue.

struct FftPlan {
  cufftHandle handle = 0;
  size_t work = 0;  // bytes of work area the plan needs
};

// Runs a batched 1-D real transform of length n: R2C reads real rows rdist floats apart and
// writes complex rows n/2+1 apart; C2R the other way round. in == out is an in-place transform
// (then rdist must be 2 (n/2+1)). Plans are kept per shape for the process (like cuBLASLt's
// handle, freeing them at exit is unsafe); the work area is stream-ordered scratch.
void run_fft(cufftType type, int64_t n, int64_t batch, int64_t rdist, void* in, void* out) {
  static std::mutex mu;
  static std::map<std::tuple<int, int64_t, int64_t, int64_t>, FftPlan> plans;
  std::lock_guard<std::mutex> lock(mu);  // a plan's work area and stream are set per call
  const auto key = std::tuple{int(type), n, batch, rdist};
  auto it = plans.find(key);
  if (it == plans.end()) {
    FftPlan p;
    CUFFT_CHECK(cufftCreate(&p.handle));
    CUFFT_CHECK(cufftSetAutoAllocation(p.handle, 0));
    long long len = n, h = n / 2 + 1, r = rdist;
    const bool r2c = type == CUFFT_R2C;
    CUFFT_CHECK(cufftMakePlanMany64(p.handle, 1, &len, r2c ? &r : &h, 1, r2c ? r : h, r2c ? &h : &r,
                                    1, r2c ? h : r, type, batch, &p.work));
    it = plans.emplace(key, p).first;
  }
  const FftPlan& p = it->second;
  Scratch work(std::max<size_t>(p.work, 256));
  CUFFT_CHECK(cufftSetWorkArea(p.handle, work.as<void>()));
  CUFFT_CHECK(cufftSetStream(p.handle, stream()));
  if (type == CUFFT_R2C)
    CUFFT_CHECK(
        cufftExecR2C(p.handle, static_cast<cufftReal*>(in), static_cast<cufftComplex*>(out)));
  else
    CUFFT_CHECK(
        cufftExecC2R(p.handle, static_cast<cufftComplex*>(in), static_cast<cufftReal*>(out)));
}

// ---------------------------------------------------------------------------------------------
// Filter.

// Z[c, k] = K[c, k] / M for k < modes, 0 above (bins up to M/2); Im of DC and, M even, of
// Nyquist zeroed, as irfft ignores them.
__global__ void filter_pack_kernel(float2* Z, const float* k_re, const float* k_im, int64_t d,
                                   int64_t modes, int64_t M) {
  const int64_t H = M / 2 + 1;
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= d * H) return;
  const int64_t c = i / H, k = i % H;
  const float inv_M = 1.f / float(M);
  float re = 0.f, im = 0.f;
  if (k < modes) {
    re = k_re[c * modes + k] * inv_M;
    im = (k == 0 || 2 * k == M) ? 0.f : k_im[c * modes + k] * inv_M;
  }
  Z[i] = make_float2(re, im);
}

// dK[c, k] += w_k / M X[c, k], w_k the irfft bin weight (1 for DC and Nyquist, else 2); the
// imaginary parts of DC and Nyquist get nothing.
__global__ void filter_grad_kernel(float* dk_re, float* dk_im, const float2* X, int64_t d,
                                   int64_t modes, int64_t M) {
  const int64_t H = M / 2 + 1;
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= d * modes) return;
  const int64_t c = i / modes, k = i % modes;
  const bool edge = k == 0 || 2 * k == M;
  const float w = (edge ? 1.f : 2.f) / float(M);
  const float2 x = X[c * H + k];
  dk_re[i] += w * x.x;
  if (!edge) dk_im[i] += w * x.y;
}

// ---------------------------------------------------------------------------------------------
// Direct method.

constexpr int kLanes = 32;          // channels per block, one per lane
constexpr int kWarps = 8;           // warps per block
constexpr int kR = 16;              // tokens (forward) or lags (df) per thread
constexpr int kTile = kWarps * kR;  // tokens (forward) or lags (df) per block
constexpr int kDfTokens = 64;       // tokens per shared tile in df
constexpr int kThreads = kLanes * kWarps;

__device__ __forceinline__ int64_t phys_token(int64_t t, int64_t N, bool reverse) {
  return reverse ? N - 1 - t : t;
}

// out[b, t, c] = sum_{j<M} g[c, j] in[b, t-j, c] with g = f except g[c, 0] = f[c, 0] + skip[c],
// in[t < 0] = 0. Reverse runs it on the time-reversed sequences (the adjoint, for du).
// Grid: (token tiles of kTile, channel groups of 32, B). Shared: the chunk's taps [JC][33]
// (padded: written tap-fastest, read channel-fastest) and the matching input window
// [kTile + JC - 1][32], fp32: 8.4 + 24.4 KiB for JC = 64.
template <int JC, bool Reverse>
__global__ void __launch_bounds__(kThreads, 3)
    fir_direct_kernel(__nv_bfloat16* out, const __nv_bfloat16* in, const float* f,
                      const float* skip, int64_t N, int64_t d, int64_t M) {
  static_assert(JC % kR == 0);
  __shared__ float fs[JC][kLanes + 1];
  __shared__ float us[kTile + JC - 1][kLanes];
  const int lane = threadIdx.x % kLanes, warp = threadIdx.x / kLanes;
  const int64_t t0 = blockIdx.x * int64_t(kTile), c0 = blockIdx.y * int64_t(kLanes);
  const int64_t b = blockIdx.z, c = c0 + lane;
  const __nv_bfloat16* inb = in + b * N * d;
  float acc[kR];
#pragma unroll
  for (int r = 0; r < kR; ++r) acc[r] = 0.f;

  for (int64_t j0 = 0; j0 < M; j0 += JC) {
    // All global loads of the chunk go to registers first, then to shared memory, so a chunk
    // waits out one memory latency rather than one per load.
    constexpr int kFPer = kLanes * JC / kThreads, kRows = kTile + JC - 1;
    constexpr int kUPer = (kRows + kWarps - 1) / kWarps;
    float fv[kFPer], uv[kUPer];
#pragma unroll
    for (int k = 0; k < kFPer; ++k) {
      const int idx = threadIdx.x + k * kThreads, cc = idx / JC, jj = idx % JC;
      const int64_t ch = c0 + cc, j = j0 + jj;
      fv[k] = ch < d && j < M ? f[ch * M + j] : 0.f;
      if (ch < d && j == 0) fv[k] += skip[ch];
    }
    // Row i holds token t0 - j0 - (JC-1) + i.
    const int64_t tbase = t0 - j0 - (JC - 1);
#pragma unroll
    for (int k = 0; k < kUPer; ++k) {
      const int i = warp + k * kWarps;
      const int64_t t = tbase + i;
      uv[k] = i < kRows && t >= 0 && t < N && c < d ? load(inb, phys_token(t, N, Reverse) * d + c)
                                                    : 0.f;
    }
    __syncthreads();  // the previous chunk's reads are done
#pragma unroll
    for (int k = 0; k < kFPer; ++k) {
      const int idx = threadIdx.x + k * kThreads;
      fs[idx % JC][idx / JC] = fv[k];
    }
#pragma unroll
    for (int k = 0; k < kUPer; ++k)
      if (warp + k * kWarps < kRows) us[warp + k * kWarps][lane] = uv[k];
    __syncthreads();
    // Output r of this warp at tap jj = jb kR + q reads row warp kR + r - jj + JC - 1, which is
    // x[kR - 1 + r - q] for the window x[k] = us[base + k], base = warp kR + JC - kR - jb kR.
    const int base0 = warp * kR + JC - kR;
    float x[2 * kR - 1];
#pragma unroll
    for (int k = 0; k < 2 * kR - 1; ++k) x[k] = us[base0 + k][lane];
#pragma unroll
    for (int jb = 0; jb < JC / kR; ++jb) {
      if (jb > 0) {  // slide down by kR taps: the old low half becomes the high half
#pragma unroll
        for (int k = 2 * kR - 2; k >= kR; --k) x[k] = x[k - kR];
#pragma unroll
        for (int k = 0; k < kR; ++k) x[k] = us[base0 - jb * kR + k][lane];
      }
#pragma unroll
      for (int q = 0; q < kR; ++q) {
        const float g = fs[jb * kR + q][lane];
#pragma unroll
        for (int r = 0; r < kR; ++r) acc[r] = fmaf(g, x[kR - 1 + r - q], acc[r]);
      }
    }
  }
  if (c >= d) return;
#pragma unroll
  for (int r = 0; r < kR; ++r) {
    const int64_t t = t0 + warp * kR + r;
    if (t < N) store(out, (b * N + phys_token(t, N, Reverse)) * d + c, acc[r]);
  }
}

// partial[z, j, c] = sum over the tokens t of chunk z (of sequence b) of dy[b, t, c] u[b, t-j, c]
// for the block's kTile lags. Grid: (lag tiles, channel groups, B * chunks). Shared: dy
// [kDfTokens][32] and the u window [kDfTokens + kTile - 1][32], fp32: 32.6 KiB.
__global__ void __launch_bounds__(kThreads, 3)
    fir_df_partial_kernel(float* partial, const __nv_bfloat16* dy, const __nv_bfloat16* u,
                          int64_t N, int64_t d, int64_t M, int64_t chunks, int64_t chunk) {
  __shared__ float dys[kDfTokens][kLanes];
  __shared__ float us[kDfTokens + kTile - 1][kLanes];
  const int lane = threadIdx.x % kLanes, warp = threadIdx.x / kLanes;
  const int64_t J0 = blockIdx.x * int64_t(kTile), c0 = blockIdx.y * int64_t(kLanes);
  const int64_t z = blockIdx.z, b = z / chunks, c = c0 + lane;
  const int64_t ta = (z % chunks) * chunk, tb = min(N, ta + chunk);
  const __nv_bfloat16 *dyb = dy + b * N * d, *ub = u + b * N * d;
  float acc[kR];
#pragma unroll
  for (int r = 0; r < kR; ++r) acc[r] = 0.f;

  for (int64_t t1 = ta; t1 < tb; t1 += kDfTokens) {
    // Loads to registers first, then to shared memory (see fir_direct_kernel).
    constexpr int kDyPer = kDfTokens / kWarps, kRows = kDfTokens + kTile - 1;
    constexpr int kUPer = (kRows + kWarps - 1) / kWarps;
    float dv[kDyPer], uv[kUPer];
#pragma unroll
    for (int k = 0; k < kDyPer; ++k) {
      const int64_t t = t1 + warp + k * kWarps;
      dv[k] = t < tb && c < d ? load(dyb, t * d + c) : 0.f;
    }
    // Row i holds u at token t1 - J0 - (kTile-1) + i.
    const int64_t ubase = t1 - J0 - (kTile - 1);
#pragma unroll
    for (int k = 0; k < kUPer; ++k) {
      const int i = warp + k * kWarps;
      const int64_t t = ubase + i;
      uv[k] = i < kRows && t >= 0 && t < N && c < d ? load(ub, t * d + c) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kDyPer; ++k) dys[warp + k * kWarps][lane] = dv[k];
#pragma unroll
    for (int k = 0; k < kUPer; ++k)
      if (warp + k * kWarps < kRows) us[warp + k * kWarps][lane] = uv[k];
    __syncthreads();
    // Lag r of this warp (J0 + warp kR + r) at token p = pb kR + q reads u row
    // p - warp kR - r + kTile - 1 = x[q - r + kR - 1], x[k] = us[base + k],
    // base = pb kR - warp kR + kTile - kR.
    const int base0 = kTile - kR - warp * kR;
    float x[2 * kR - 1];
#pragma unroll
    for (int k = 0; k < 2 * kR - 1; ++k) x[k] = us[base0 + k][lane];
#pragma unroll
    for (int pb = 0; pb < kDfTokens / kR; ++pb) {
      if (pb > 0) {  // slide up by kR tokens: the old high half becomes the low half
#pragma unroll
        for (int k = 0; k < kR - 1; ++k) x[k] = x[k + kR];
#pragma unroll
        for (int k = kR - 1; k < 2 * kR - 1; ++k) x[k] = us[base0 + pb * kR + k][lane];
      }
#pragma unroll
      for (int q = 0; q < kR; ++q) {
        const float g = dys[pb * kR + q][lane];
#pragma unroll
        for (int r = 0; r < kR; ++r) acc[r] = fmaf(g, x[q - r + kR - 1], acc[r]);
      }
    }
  }
  if (c >= d) return;
#pragma unroll
  for (int r = 0; r < kR; ++r) {
    const int64_t j = J0 + warp * kR + r;
    if (j < M) partial[(z * M + j) * d + c] = acc[r];
  }
}

// df[c, j] += sum_z partial[z, j, c] and dskip[c] += sum_z partial[z, 0, c], z in order.
__global__ void df_reduce_kernel(float* df, float* dskip, const float* partial, int64_t nz,
                                 int64_t d, int64_t M) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;  // i = j d + c
  if (i >= M * d) return;
  float s = 0.f;
  for (int64_t z = 0; z < nz; ++z) s += partial[z * M * d + i];
  const int64_t j = i / d, c = i % d;
  df[c * M + j] += s;
  if (j == 0) dskip[c] += s;
}

unsigned blocks_for(int64_t n, int threads) { return unsigned((n + threads - 1) / threads); }

// Streaming multiprocessors of the current device, for sizing grids.
int sm_count() {
  static const int n = [] {
    int dev = 0, sms = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    return sms;
  }();
  return n;
}

void direct_conv(__nv_bfloat16* out, const __nv_bfloat16* in, const float* f, const float* skip,
                 int64_t B, int64_t N, int64_t d, int64_t M, bool reverse) {
  FELA_CHECK(B < 65536 && (d + kLanes - 1) / kLanes < 65536, "[fno_conv] B = ", B, ", d = ", d,
             " exceed the CUDA grid");
  const dim3 grid(unsigned((N + kTile - 1) / kTile), unsigned((d + kLanes - 1) / kLanes),
                  unsigned(B));
  // Filters of at most 16 taps take 16-tap chunks (less wasted work on zero taps).
  if (M <= 16) {
    if (reverse)
      fir_direct_kernel<16, true><<<grid, kThreads, 0, stream()>>>(out, in, f, skip, N, d, M);
    else
      fir_direct_kernel<16, false><<<grid, kThreads, 0, stream()>>>(out, in, f, skip, N, d, M);
  } else {
    if (reverse)
      fir_direct_kernel<64, true><<<grid, kThreads, 0, stream()>>>(out, in, f, skip, N, d, M);
    else
      fir_direct_kernel<64, false><<<grid, kThreads, 0, stream()>>>(out, in, f, skip, N, d, M);
  }
  CUDA_CHECK_LAUNCH();
}

// df += sum over tokens of dy u at each lag, dskip += the lag-0 sums.
void direct_filter_grad(float* df, float* dskip, const __nv_bfloat16* dy, const __nv_bfloat16* u,
                        int64_t B, int64_t N, int64_t d, int64_t M) {
  // Token chunks per sequence: enough blocks for about two waves of 3 blocks per SM, at
  // least kDfTokens tokens each; the partial sums take chunks * B * M * d floats.
  const int64_t groups = (d + kLanes - 1) / kLanes, lag_tiles = (M + kTile - 1) / kTile;
  const int64_t want = 6 * int64_t(sm_count());
  const int64_t per_seq = (want + B * groups * lag_tiles - 1) / (B * groups * lag_tiles);
  int64_t chunks = std::clamp<int64_t>(per_seq, 1, (N + kDfTokens - 1) / kDfTokens);
  const int64_t chunk = ((N + chunks - 1) / chunks + kDfTokens - 1) / kDfTokens * kDfTokens;
  chunks = (N + chunk - 1) / chunk;
  FELA_CHECK(B * chunks < 65536 && groups < 65536, "[fno_conv] B = ", B, ", d = ", d,
             " exceed the CUDA grid");
  Scratch partial(size_t(B * chunks * M * d) * sizeof(float));  // [B * chunks, M, d]
  const dim3 grid(unsigned(lag_tiles), unsigned(groups), unsigned(B * chunks));
  fir_df_partial_kernel<<<grid, kThreads, 0, stream()>>>(partial.as<float>(), dy, u, N, d, M,
                                                         chunks, chunk);
  CUDA_CHECK_LAUNCH();
  df_reduce_kernel<<<unsigned((M * d + 255) / 256), 256, 0, stream()>>>(
      df, dskip, partial.as<float>(), B * chunks, d, M);
  CUDA_CHECK_LAUNCH();
}

// ---------------------------------------------------------------------------------------------
// Toeplitz method: the direct sums as bf16 matrix products on the tensor cores.
//
// Per channel, cut the outputs into columns of 64 tokens: y[64n + p] (p < 64) is
//   sum_{k < K} A[p][k] B[k][n],   A[p][k] = g[p + k],   B[k][n] = u[64n + 63 - k],
// with g[x] = f[x - 63] (zero outside the taps; the skip folded into tap 0) and K = M + 63
// rounded up to 64: a [64 x K] Hankel matrix of taps times a [K x columns] Hankel matrix of
// inputs, one mma.m16n8k16 per 16 x 8 x 16 piece with fp32 accumulation. The inputs are bf16
// already; the fp32 taps are split g = hi + lo into two bf16 parts, both multiplied, so the
// taps keep 16 significant bits (relative error <= 2^-17) instead of bf16's 8.
// A block works through items of 8 channels (one per warp) and one 1024-token pass (16 columns)
// of one sequence. Shared memory, per channel: the taps as bf16 pairs P(x) = (g[x], g[x+1]) for
// hi and lo, which are exactly the A fragments' registers (an A fragment of k-step s and row
// tile m is {P(x), P(x+8), P(x+8), P(x+16)} at x = 16(s+m) + row + 2 col, so each k-step needs 2
// new pairs per part and reuses the rest), and the input window reversed in time, whose
// 8-element rows are B's 8 x 8 ldmatrix tiles. Per k-step and warp: 16 mma, 4 shared loads of
// pairs and one ldmatrix.x4. The pairs are made once per call by a small kernel (the same for
// every block of a channel group) and copied in by cp.async. A block takes a run of passes of
// one channel group; while one pass's products run, the next one's window arrives by cp.async.

constexpr int kTcWarps = 8;            // channels per block, one per warp
constexpr int kTcCols = 16;            // columns of 64 tokens per pass
constexpr int kTcPass = 64 * kTcCols;  // tokens per pass
constexpr int kTcThreads = 32 * kTcWarps;
constexpr int kTcBlocksPerSm = 2;      // resident conv blocks per SM (registers, shared memory)

// K: the padded depth of the products for M taps.
__host__ __device__ inline int64_t tc_depth(int64_t M) { return (M + 63 + 63) / 64 * 64; }
// Shared bytes of a conv block, W = kTcPass + K - 64 window positions: the pairs [2][8][K + 64]
// uint32; the window the products read [8][W] bf16 (channel-major); the next window as it
// arrives [W][8] bf16 (token-major, as in memory); the output stage [kTcPass][8] bf16.
size_t tc_smem(int64_t M) {
  const int64_t K = tc_depth(M), W = kTcPass + K - 64;
  return size_t(2 * kTcWarps * (K + 64)) * 4 + size_t(2 * kTcWarps * W) * 2 +
         size_t(kTcPass * kTcWarps) * 2;
}
constexpr size_t kTcMaxSmem = 200 << 10;  // the Toeplitz method runs while its window fits

__device__ __forceinline__ uint32_t pack_bf16(__nv_bfloat16 lo, __nv_bfloat16 hi) {
  return uint32_t(__bfloat16_as_ushort(lo)) | (uint32_t(__bfloat16_as_ushort(hi)) << 16);
}

// d += a b for one 16 x 8 x 16 piece: bf16 operands, fp32 accumulators.
__device__ __forceinline__ void mma_bf16(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                         uint32_t a3, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Four 8 x 8 bf16 tiles; lane l gives the address of row l % 8 of tile l / 8.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const __nv_bfloat16* row) {
  const uint32_t a = uint32_t(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const uint32_t a = uint32_t(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(a), "l"(gmem));
}
// Copies 16 bytes when full, else writes 16 zero bytes (gmem must still be a valid address).
__device__ __forceinline__ void cp_async16_zfill(void* smem, const void* gmem, bool full) {
  const uint32_t a = uint32_t(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(a), "l"(gmem),
               "r"(full ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Shared-memory position of element e of a bf16 array read by ldmatrix in rows of 64 elements:
// the 16-byte chunks of row r are permuted by XOR with r mod 8, so that the 8 rows of a tile,
// 64 elements apart, fall in 8 different bank groups instead of one (an 8-way conflict).
__device__ __forceinline__ int swz64(int e) { return e ^ (((e >> 6) & 7) << 3); }

// Tap x of the Hankel rows for channel c: f[c, x - 63] (+ skip at x = 63), zero elsewhere.
__device__ __forceinline__ float tc_tap(const float* f, const float* skip, int64_t c, int64_t d,
                                        int64_t M, int x) {
  const int j = x - 63;
  if (c >= d || j < 0 || j >= M) return 0.f;
  return f[c * M + j] + (j == 0 ? skip[c] : 0.f);
}

// pairs[grp][part][ch][x] for x < G = K + 64, channel c = 8 grp + ch: P(x) = (g[x], g[x+1])
// rounded to bf16 (part 0, hi) and the rest g - hi rounded to bf16 (part 1, lo); zero for
// channels past d. The conv blocks copy a group's 2 x 8 x G words as they are.
// A thread makes 4 consecutive pairs of both parts (16-byte stores). Grid: (ceil(G / 512),
// channels) of 128 threads.
__global__ void __launch_bounds__(128)
    tc_pairs_kernel(uint32_t* pairs, const float* f, const float* skip, int64_t d, int64_t M,
                    int G) {
  const int x0 = 4 * int(blockIdx.x * blockDim.x + threadIdx.x);
  const int64_t c = blockIdx.y;
  if (x0 >= G) return;
  float v[5];
#pragma unroll
  for (int k = 0; k < 5; ++k) v[k] = tc_tap(f, skip, c, d, M, x0 + k);
  uint32_t hi[4], lo[4];
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const __nv_bfloat16 h0 = __float2bfloat16_rn(v[k]), h1 = __float2bfloat16_rn(v[k + 1]);
    hi[k] = pack_bf16(h0, h1);
    lo[k] = pack_bf16(__float2bfloat16_rn(v[k] - __bfloat162float(h0)),
                      __float2bfloat16_rn(v[k + 1] - __bfloat162float(h1)));
  }
  uint32_t* p = pairs + ((2 * (c / kTcWarps)) * kTcWarps + c % kTcWarps) * G + x0;
  *reinterpret_cast<uint4*>(p) = make_uint4(hi[0], hi[1], hi[2], hi[3]);
  *reinterpret_cast<uint4*>(p + kTcWarps * G) = make_uint4(lo[0], lo[1], lo[2], lo[3]);
}

// out[b, t, c] = sum_j g[c, j] in[b, t-j, c] (g = f with skip added to tap 0), in[t < 0] = 0;
// Reverse runs it on time-reversed sequences (for du). Items q = b P + pass, q < Q = B P, P =
// passes per sequence. Block k takes channel group k % groups (neighbouring groups, which share
// 32-byte sectors of memory, run side by side) and items [span (k / groups), + span). rows16:
// d % 8 == 0 and 16-byte aligned arrays, so a token's 8 channels are one 16-byte copy. Dynamic
// shared memory: tc_smem(M).
template <bool Reverse>
__global__ void __launch_bounds__(kTcThreads, kTcBlocksPerSm)
    fir_toeplitz_kernel(__nv_bfloat16* out, const __nv_bfloat16* in, const uint32_t* gpairs,
                        int64_t N, int64_t d, int64_t M, int64_t Q, int64_t groups, int64_t span,
                        bool rows16) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int K = int(tc_depth(M)), G = K + 64, W = kTcPass + K - 64;
  uint32_t* pairs = reinterpret_cast<uint32_t*>(smem);                           // [2][8][G]
  __nv_bfloat16* win = reinterpret_cast<__nv_bfloat16*>(pairs + 2 * kTcWarps * G);  // [8][W]
  __nv_bfloat16* raw = win + kTcWarps * W;                                       // [W][8]
  __nv_bfloat16* stage = raw + kTcWarps * W;                                     // [kTcPass][8]
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t P = (N + kTcPass - 1) / kTcPass;
  const int64_t grp = blockIdx.x % groups, c0 = grp * kTcWarps;
  const int64_t i0 = blockIdx.x / groups * span, i1 = min(Q, i0 + span);

  // Window of item it, reversed: position m holds in(token E - m), E = last token of the pass,
  // zero outside [0, N). fetch copies it token-major into raw (rows16 only); fill moves it into
  // win[ch][swz64(m)], from raw two positions at a time (one 32-bit store per channel), or
  // element by element from memory when not rows16.
  auto item_b = [&](int64_t it) { return it / P; };
  auto item_tp = [&](int64_t it) { return it % P * kTcPass; };
  auto fetch = [&](int64_t it) {
    const int64_t b = item_b(it), E = item_tp(it) + kTcPass - 1;
    for (int m = threadIdx.x; m < W; m += kTcThreads) {
      const int64_t tok = E - m;
      const bool ok = tok >= 0 && tok < N;
      cp_async16_zfill(raw + m * kTcWarps,
                       ok ? in + (b * N + phys_token(tok, N, Reverse)) * d + c0 : in, ok);
    }
  };
  auto fill = [&](int64_t it) {
    if (rows16) {
      uint32_t* w32 = reinterpret_cast<uint32_t*>(win);
      for (int m = 2 * threadIdx.x; m < W; m += 2 * kTcThreads) {
        const uint4 a = *reinterpret_cast<const uint4*>(raw + m * kTcWarps);
        const uint4 c = *reinterpret_cast<const uint4*>(raw + (m + 1) * kTcWarps);
        const uint32_t aw[4] = {a.x, a.y, a.z, a.w}, cw[4] = {c.x, c.y, c.z, c.w};
        const int o = swz64(m) / 2;  // swz64 keeps m and m + 1 (m even) adjacent
#pragma unroll
        for (int k = 0; k < 4; ++k) {  // word k of a row: channels 2k (low half) and 2k + 1
          w32[(2 * k) * (W / 2) + o] = __byte_perm(aw[k], cw[k], 0x5410);
          w32[(2 * k + 1) * (W / 2) + o] = __byte_perm(aw[k], cw[k], 0x7632);
        }
      }
    } else {
      const int64_t b = item_b(it), E = item_tp(it) + kTcPass - 1;
      for (int i = threadIdx.x; i < kTcWarps * W; i += kTcThreads) {
        const int ch = i / W, m = i % W;
        const int64_t tok = E - m, c = c0 + ch;
        win[ch * W + swz64(m)] = tok >= 0 && tok < N && c < d
                                     ? in[(b * N + phys_token(tok, N, Reverse)) * d + c]
                                     : __float2bfloat16_rn(0.f);
      }
    }
  };

  const int grow = lane / 4, gcol = lane % 4;  // the mma fragments' row and column groups
  // This lane's ldmatrix row: tile mi = lane / 8 covers column 8 (mi / 2) + lane % 8 and
  // depth half mi % 2; at k-step s it starts at window element W - K - 64 n + 16 s + 8 half.
  const int mi = lane / 8, col = 8 * (mi / 2) + lane % 8;
  // Window elements are stored at swz64 positions within the warp's channel row.
  const __nv_bfloat16* wrow = win + warp * W;
  const int brow = (kTcPass - 64) - 64 * col + 8 * (mi % 2);
  const uint32_t* ph = pairs + warp * G + grow + 2 * gcol;  // P(x) = ph[x - grow - 2 gcol]
  const uint32_t* pl = ph + kTcWarps * G;

  {
    const uint32_t* src = gpairs + grp * 2 * kTcWarps * G;
    for (int q = threadIdx.x; q < kTcWarps * G / 2; q += kTcThreads)
      cp_async16(pairs + 4 * q, src + 4 * q);
  }
  if (rows16) fetch(i0);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();
  fill(i0);
  __syncthreads();
  for (int64_t it = i0; it < i1; ++it) {
    // raw was moved into win before the last barrier: the next window may come in.
    if (rows16 && it + 1 < i1) fetch(it + 1);
    cp_async_commit();

    float acc[4][2][4];
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
      for (int nt = 0; nt < 2; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0.f;
    // Pairs P_k = P(grow + 2 gcol + 8 k), k counted from the current group of 4 k-steps: the
    // fragment of k-step s0 + ss and row tile mt is {P_2q, P_2q+1, P_2q+1, P_2q+2}, q = ss + mt.
    uint32_t hi[15], lo[15];
#pragma unroll
    for (int k = 0; k < 7; ++k) hi[k] = ph[8 * k], lo[k] = pl[8 * k];
    for (int s0 = 0; s0 < K / 16; s0 += 4) {
#pragma unroll
      for (int ss = 0; ss < 4; ++ss) {
        const int s = s0 + ss;
        hi[2 * ss + 7] = ph[8 * (2 * s + 7)], lo[2 * ss + 7] = pl[8 * (2 * s + 7)];
        hi[2 * ss + 8] = ph[8 * (2 * s + 8)], lo[2 * ss + 8] = pl[8 * (2 * s + 8)];
        uint32_t bf[4];
        ldmatrix_x4(bf, wrow + swz64(brow + 16 * s));
#pragma unroll
        for (int mt = 0; mt < 4; ++mt) {
          const int q = 2 * (ss + mt);
#pragma unroll
          for (int nt = 0; nt < 2; ++nt) {
            mma_bf16(acc[mt][nt], hi[q], hi[q + 1], hi[q + 1], hi[q + 2], bf[2 * nt],
                     bf[2 * nt + 1]);
            mma_bf16(acc[mt][nt], lo[q], lo[q + 1], lo[q + 1], lo[q + 2], bf[2 * nt],
                     bf[2 * nt + 1]);
          }
        }
      }
#pragma unroll
      for (int k = 0; k < 7; ++k) hi[k] = hi[k + 8], lo[k] = lo[k + 8];
    }
    __syncthreads();  // window reads done; the previous item's stage is stored
    // stage[i][ch ^ 2 r(i)], r(i) = (i >> 7) & 3: output token Tp + i of channel c0 + ch.
    // Accumulator e of (mt, nt) is row p = 16 mt + grow + 8 (e / 2), column n = 8 nt + 2 gcol
    // + e % 2, token i = 64 n + p; the lanes of one gcol share i mod 8 (the 16-byte slot in
    // 128 bytes), and the XOR by r(i) = gcol (+ constants) puts the 4 gcol in 4 different banks.
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
      for (int nt = 0; nt < 2; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int p = 16 * mt + grow + 8 * (e / 2), n = 8 * nt + 2 * gcol + e % 2;
          const int i = 64 * n + p;
          stage[i * kTcWarps + (warp ^ (2 * ((i >> 7) & 3)))] = __float2bfloat16_rn(acc[mt][nt][e]);
        }
    if (it + 1 < i1) {
      cp_async_wait<0>();
      __syncthreads();  // the next window landed for every thread
      fill(it + 1);
    }
    __syncthreads();
    const int64_t b = item_b(it), Tp = item_tp(it);
    for (int i = threadIdx.x; i < kTcPass; i += kTcThreads) {
      const int64_t tok = Tp + i;
      if (tok >= N) break;
      __nv_bfloat16* o = out + (b * N + phys_token(tok, N, Reverse)) * d + c0;
      const int r = (i >> 7) & 3;  // channel word k of the row sits in word k ^ r
      if (rows16) {
        uint4 v = *reinterpret_cast<const uint4*>(stage + i * kTcWarps);
        if (r & 1) v = make_uint4(v.y, v.x, v.w, v.z);
        if (r & 2) v = make_uint4(v.z, v.w, v.x, v.y);
        *reinterpret_cast<uint4*>(o) = v;
      } else {
        for (int ch = 0; ch < kTcWarps && c0 + ch < d; ++ch)
          o[ch] = stage[i * kTcWarps + (ch ^ (2 * r))];
      }
    }
  }
}

bool toeplitz_fits(int64_t M) { return tc_smem(M) <= kTcMaxSmem; }

// Lets a kernel take up to kTcMaxSmem bytes of dynamic shared memory (48 KiB without this).
template <class Kernel>
bool raise_smem_limit(Kernel kernel) {
  CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kTcMaxSmem)));
  return true;
}

// The conv kernel's split: groups of 8 channels, each cut into blocks of span passes (of the
// Q = B P), span chosen for the fewest passes on the busiest block slot (kTcBlocksPerSm per SM),
// ties to the longer span (more passes that overlap their loads with the products).
struct TcSplit {
  int64_t groups, Q, span, blocks, busiest;  // busiest: passes per slot, over all waves
};
TcSplit tc_split(int64_t B, int64_t N, int64_t d) {
  TcSplit s{(d + kTcWarps - 1) / kTcWarps, B * ((N + kTcPass - 1) / kTcPass), 0, 0, 0};
  const int64_t slots = kTcBlocksPerSm * int64_t(sm_count());
  for (int64_t span = 1; span <= std::min<int64_t>(s.Q, 64); ++span) {
    const int64_t blocks = s.groups * ((s.Q + span - 1) / span);
    const int64_t busiest = (blocks + slots - 1) / slots * span;
    if (s.span == 0 || busiest <= s.busiest) s.span = span, s.blocks = blocks, s.busiest = busiest;
  }
  return s;
}

void toeplitz_conv(__nv_bfloat16* out, const __nv_bfloat16* in, const float* f, const float* skip,
                   int64_t B, int64_t N, int64_t d, int64_t M, bool reverse) {
  FELA_CHECK(toeplitz_fits(M), "[fno_conv] M = ", M, " taps need ", tc_smem(M),
             " bytes of shared memory in the Toeplitz method, more than its ", kTcMaxSmem);
  const TcSplit sp = tc_split(B, N, d);
  const int64_t G = tc_depth(M) + 64;
  FELA_CHECK(sp.blocks < (int64_t(1) << 31) && sp.groups * kTcWarps < 65536, "[fno_conv] B = ", B,
             ", N = ", N, ", d = ", d, " exceed the CUDA grid");
  Scratch pairs(size_t(sp.groups * 2 * kTcWarps * G) * sizeof(uint32_t));
  tc_pairs_kernel<<<dim3(blocks_for(G / 4, 128), unsigned(sp.groups * kTcWarps)), 128, 0,
                    stream()>>>(pairs.as<uint32_t>(), f, skip, d, M, int(G));
  CUDA_CHECK_LAUNCH();
  const size_t smem = tc_smem(M);
  auto kernel = reverse ? fir_toeplitz_kernel<true> : fir_toeplitz_kernel<false>;
  // Raise each instantiation's dynamic shared-memory limit once (thread-safe statics).
  static const bool raised_forward = raise_smem_limit(fir_toeplitz_kernel<false>);
  static const bool raised_reverse = raise_smem_limit(fir_toeplitz_kernel<true>);
  (void)raised_forward, (void)raised_reverse;
  const bool rows16 = d % 8 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0 &&
                      reinterpret_cast<uintptr_t>(in) % 16 == 0;
  kernel<<<unsigned(sp.blocks), kTcThreads, smem, stream()>>>(
      out, in, pairs.as<uint32_t>(), N, d, M, sp.Q, sp.groups, sp.span, rows16);
  CUDA_CHECK_LAUNCH();
}

// Filter gradient on the tensor cores. With t = 64n + p (p < 64) and the same B as above,
//   C[p][k] = sum over columns n of dy[64n + p] B[k][n],      df[j] = sum_p C[p][j + 63 - p],
// a [64 x columns] x [columns x K] product of bf16 data (exact products, fp32 sums) whose
// antidiagonals are the lags. A block owns one channel and a run of (sequence, 1024-token
// pass) pairs; its 8 warps split the K = 72 column tiles of 8 (9 each) and keep C in registers
// over all passes, so the antidiagonal sums happen once per block. The inputs come channel-major
// (dy in time order, u reversed, both zero-padded), written by one transposing pass, so that a
// pass's windows are contiguous: cp.async copies them through a ring of kDfStages stages.

constexpr int kDfStages = 6;                   // passes in flight
constexpr int kDfTiles = 9;                    // column tiles of 8 per warp and round
constexpr int kDfRound = kTcWarps * kDfTiles;  // column tiles per round of the block

// The padded length of a channel's dy row (whole passes) and of its reversed u row.
int64_t df_row(int64_t N) { return (N + kTcPass - 1) / kTcPass * kTcPass; }

// DT[b, c, t] = dy[b, t, c] for t < Np (zero from N on); UR[b, c, m] = u[b, Np - 1 - m, c] for
// m < Np + K (zero outside [0, N)); both lengths are multiples of 8. A thread moves an 8 x 8
// tile (8 positions of 8 channels) with 16-byte loads and stores, transposed in registers; the
// 4 lanes of a position group take 4 channel groups, so a warp reads 8 rows of 64 contiguous
// bytes and writes 4 rows of 128. Channel groups cut by d or unaligned arrays load per element.
// Grid: (ceil((Np + K) / 512), ceil(d / 32), 2 B) of 256 threads (blockIdx.z < B: DT, else UR).
__global__ void __launch_bounds__(256)
    df_transpose_kernel(__nv_bfloat16* DT, __nv_bfloat16* UR, const __nv_bfloat16* dy,
                        const __nv_bfloat16* u, int64_t B, int64_t N, int64_t d, int64_t Np,
                        int64_t K, bool aligned16) {
  const bool rev = blockIdx.z >= B;
  const int64_t b = rev ? blockIdx.z - B : blockIdx.z, len = rev ? Np + K : Np;
  const int64_t m0 = (blockIdx.x * int64_t(64) + threadIdx.x / 4) * 8;
  const int64_t c0 = (blockIdx.y * int64_t(4) + threadIdx.x % 4) * 8;
  if (m0 >= len || c0 >= d) return;
  const __nv_bfloat16* src = (rev ? u : dy) + b * N * d;
  const bool vec = aligned16 && d % 8 == 0;  // then c0 + 8 <= d too
  uint32_t w[8][4];                          // w[r]: position m0 + r, channels c0 .. c0 + 7
#pragma unroll
  for (int r = 0; r < 8; ++r) {
    const int64_t t = rev ? Np - 1 - (m0 + r) : m0 + r;
    const bool in = t >= 0 && t < N;
    if (vec) {
      const uint4 v =
          in ? *reinterpret_cast<const uint4*>(src + t * d + c0) : make_uint4(0, 0, 0, 0);
      w[r][0] = v.x, w[r][1] = v.y, w[r][2] = v.z, w[r][3] = v.w;
    } else {
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const __nv_bfloat16 z = __float2bfloat16_rn(0.f);
        const int64_t c = c0 + 2 * k;
        w[r][k] =
            pack_bf16(in && c < d ? src[t * d + c] : z, in && c + 1 < d ? src[t * d + c + 1] : z);
      }
    }
  }
  // Channel c0 + c, positions 2k and 2k + 1: the low (c even) or high halves of w[2k][c / 2]
  // and w[2k + 1][c / 2].
  __nv_bfloat16* dst = (rev ? UR : DT) + (b * d + c0) * len + m0;
#pragma unroll
  for (int c = 0; c < 8; ++c) {
    if (c0 + c >= d) break;
    const uint32_t sel = c % 2 ? 0x7632 : 0x5410;
    uint4 v;
    v.x = __byte_perm(w[0][c / 2], w[1][c / 2], sel);
    v.y = __byte_perm(w[2][c / 2], w[3][c / 2], sel);
    v.z = __byte_perm(w[4][c / 2], w[5][c / 2], sel);
    v.w = __byte_perm(w[6][c / 2], w[7][c / 2], sel);
    *reinterpret_cast<uint4*>(dst + c * len) = v;
  }
}

// Transposed 8 x 8 tiles (ldmatrix .trans): lane l gives the address of row l % 8 of tile l / 8.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const __nv_bfloat16* row) {
  const uint32_t a = uint32_t(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t (&r)[2], const __nv_bfloat16* row) {
  const uint32_t a = uint32_t(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(a));
}

// Row stride of the antidiagonal scratch: 128 sums per row, padded against bank conflicts.
constexpr int kDfScStride = 132;

// Shared bytes of the df kernel: the stage ring, each stage dy [kTcPass] then u [kTcPass + K
// - 64] bf16; the antidiagonal scratch [8 warps][8][kDfScStride] fp32; the block's df [M] fp32.
size_t df_smem(int64_t M) {
  const int64_t K = tc_depth(M);
  return size_t(kDfStages * (2 * kTcPass + K - 64)) * 2 + size_t(kTcWarps * 8 * kDfScStride) * 4 +
         size_t(M) * 4;
}

// The block's sum over its passes [z span, (z+1) span) of the B * Np / 1024 (sequence, pass)
// pairs of channel c: added to df[c, :] and dskip[c] when it is the channel's only block
// (direct), else stored in partial[z, c, :]. Grid: (Z, d). Dynamic shared memory: df_smem(M).
__global__ void __launch_bounds__(kTcThreads, 1)
    fir_toeplitz_df_kernel(float* df, float* dskip, float* partial, bool direct,
                           const __nv_bfloat16* DT, const __nv_bfloat16* UR, int64_t d, int64_t M,
                           int64_t Np, int64_t npass, int64_t span) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int K = int(tc_depth(M)), W = kTcPass + K - 64, SS = kTcPass + W;  // stage elements
  __nv_bfloat16* ring = reinterpret_cast<__nv_bfloat16*>(smem);
  float* scratch = reinterpret_cast<float*>(smem + size_t(kDfStages * SS) * 2);  // [8][8][132]
  float* dfs = scratch + kTcWarps * 8 * kDfScStride;                             // [M]
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t c = blockIdx.y, z = blockIdx.x;
  const int64_t p0 = z * span, p1 = min(npass, p0 + span), passes_per_seq = Np / kTcPass;
  for (int j = threadIdx.x; j < M; j += kTcThreads) dfs[j] = 0.f;

  // Copies pass p (sequence p / passes_per_seq) into a stage: dy[Tp, Tp + 1024) of the dy row,
  // then the reversed u row from Np - 1024 - Tp (window m <-> u at token Tp + 1023 - m).
  auto issue = [&](int64_t p, int slot) {
    const int64_t b = p / passes_per_seq, Tp = (p % passes_per_seq) * kTcPass;
    const __nv_bfloat16* gd = DT + (b * d + c) * Np + Tp;
    const __nv_bfloat16* gu = UR + (b * d + c) * (Np + K) + (Np - kTcPass - Tp);
    __nv_bfloat16* st = ring + slot * SS;
    for (int q = threadIdx.x; q < SS / 8; q += kTcThreads)
      cp_async16(st + swz64(8 * q), q < kTcPass / 8 ? gd + 8 * q : gu + 8 * (q - kTcPass / 8));
  };

  const int ntiles = K / 8;
  for (int round = 0; round * kDfRound < ntiles; ++round) {
    const int t0 = round * kDfRound + warp * kDfTiles;  // this warp's first column tile
    float acc[4][kDfTiles][4];
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
      for (int nt = 0; nt < kDfTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0.f;
    __syncthreads();  // the ring is free (previous round done)
#pragma unroll
    for (int s = 0; s < kDfStages - 1; ++s) {
      if (p0 + s < p1) issue(p0 + s, s);
      cp_async_commit();
    }
    for (int64_t p = p0; p < p1; ++p) {
      cp_async_wait<kDfStages - 2>();
      __syncthreads();  // pass p landed for every thread; the stage of pass p - 1 is free
      const int64_t next = p + kDfStages - 1;
      if (next < p1) issue(next, int((next - p0) % kDfStages));
      cp_async_commit();
      // Stage elements (swizzled by swz64): dy from 0, the u window from kTcPass.
      const __nv_bfloat16* st = ring + int((p - p0) % kDfStages) * SS;
      // A (rows p, depth = columns n): dy[64n + p], 4 row tiles; lane's row of tile l / 8.
      const int tl = lane / 8, rl = lane % 8;
      uint32_t a[4][4];
#pragma unroll
      for (int mt = 0; mt < 4; ++mt)
        ldmatrix_x4_trans(a[mt], st + swz64(64 * (rl + 8 * (tl / 2)) + 16 * mt + 8 * (tl % 2)));
      // B (depth = columns n, cols k): u[64n + 63 - k] = window element 960 - 64n + k.
      const int brow = 2 * kTcPass - 64 - 64 * (rl + 8 * (tl % 2)) + 8 * (tl / 2);
      // Column tiles in pairs (ldmatrix.x4), a single one by ldmatrix.x2 at the end or where
      // the round runs out of tiles (those conditions are the same for the whole warp).
#pragma unroll
      for (int nt = 0; nt + 1 < kDfTiles; nt += 2) {
        if (t0 + nt >= ntiles) break;
        if (t0 + nt + 1 < ntiles) {
          uint32_t b[4];
          ldmatrix_x4_trans(b, st + swz64(brow + 8 * (t0 + nt)));
#pragma unroll
          for (int mt = 0; mt < 4; ++mt) {
            mma_bf16(acc[mt][nt], a[mt][0], a[mt][1], a[mt][2], a[mt][3], b[0], b[1]);
            mma_bf16(acc[mt][nt + 1], a[mt][0], a[mt][1], a[mt][2], a[mt][3], b[2], b[3]);
          }
        } else {
          uint32_t b[2];
          ldmatrix_x2_trans(b, st + swz64(brow + 8 * (t0 + nt)));
#pragma unroll
          for (int mt = 0; mt < 4; ++mt)
            mma_bf16(acc[mt][nt], a[mt][0], a[mt][1], a[mt][2], a[mt][3], b[0], b[1]);
        }
      }
      if (t0 + kDfTiles - 1 < ntiles) {
        uint32_t b[2];
        ldmatrix_x2_trans(b, st + swz64(brow + 8 * (t0 + kDfTiles - 1)));
#pragma unroll
        for (int mt = 0; mt < 4; ++mt)
          mma_bf16(acc[mt][kDfTiles - 1], a[mt][0], a[mt][1], a[mt][2], a[mt][3], b[0], b[1]);
      }
    }
    cp_async_wait<0>();
    // Antidiagonals. Accumulator e of (mt, nt) is C[p][k] with p = 16 mt + grow + 8 (e / 2),
    // k = 8 (t0 + nt) + 2 gcol + e % 2, so j = 8 t0 - 63 + s, s = w + grow, with
    // w = 8 q + o + 2 gcol, q = 2 mt + nt + e / 2, o = e % 2. Sum over (mt, nt, e / 2) per (q, o)
    // in registers; the 4 lanes of a row group then hold each w < 128 once, so through shared
    // memory s sums the 8 rows' w = s - grow: fixed order, no search over the lanes.
    const int grow = lane / 4, gcol = lane % 4;
    float* sc = scratch + warp * 8 * kDfScStride;  // [grow][w]
#pragma unroll
    for (int q = 0; q < 16; ++q)
#pragma unroll
      for (int o = 0; o < 2; ++o) {
        float sum = 0.f;
#pragma unroll
        for (int mt = 0; mt < 4; ++mt)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int nt = q - 2 * mt - h;
            if (nt >= 0 && nt < kDfTiles) sum += acc[mt][nt][2 * h + o];
          }
        sc[grow * kDfScStride + 8 * q + o + 2 * gcol] = sum;
      }
    __syncwarp();
    float out[5];
#pragma unroll
    for (int i = 0; i < 5; ++i) {
      const int s = lane + 32 * i;
      float sum = 0.f;
#pragma unroll
      for (int g = 0; g < 8; ++g)
        if (s - g >= 0 && s - g < 128) sum += sc[g * kDfScStride + s - g];
      out[i] = sum;
    }
    // Warps add their lags into the block's df in warp order (their ranges overlap).
    for (int w = 0; w < kTcWarps; ++w) {
      if (warp == w && t0 < ntiles)
#pragma unroll
        for (int i = 0; i < 5; ++i) {
          const int j = 8 * t0 - 63 + lane + 32 * i;
          if (j >= 0 && j < M && lane + 32 * i < 135) dfs[j] += out[i];
        }
      __syncthreads();
    }
  }
  if (direct) {  // the only block of its channel
    for (int j = threadIdx.x; j < M; j += kTcThreads) df[c * M + j] += dfs[j];
    if (threadIdx.x == 0) dskip[c] += dfs[0];
  } else {
    for (int j = threadIdx.x; j < M; j += kTcThreads) partial[(z * d + c) * M + j] = dfs[j];
  }
}

// df[c, j] += sum_z partial[z, c, j] and dskip[c] += sum_z partial[z, c, 0], z in order.
__global__ void df_reduce_rows_kernel(float* df, float* dskip, const float* partial, int64_t nz,
                                      int64_t d, int64_t M) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;  // i = c M + j
  if (i >= M * d) return;
  float s = 0.f;
  for (int64_t z = 0; z < nz; ++z) s += partial[z * M * d + i];
  df[i] += s;
  if (i % M == 0) dskip[i / M] += s;
}

// The df kernel's split of a channel's npass passes: nz blocks of span passes. One block per
// channel when there are channels enough for two waves of the GPU, more otherwise.
struct DfSplit {
  int64_t nz, span;
};
DfSplit df_split(int64_t npass, int64_t d) {
  const int64_t Z = std::clamp<int64_t>((2 * int64_t(sm_count()) + d - 1) / d, 1, npass);
  const int64_t span = (npass + Z - 1) / Z;
  return {(npass + span - 1) / span, span};
}

// df += sum over tokens of dy u at each lag, dskip += the lag-0 sums, on the tensor cores.
void toeplitz_filter_grad(float* df, float* dskip, const __nv_bfloat16* dy, const __nv_bfloat16* u,
                          int64_t B, int64_t N, int64_t d, int64_t M) {
  const int64_t K = tc_depth(M), Np = df_row(N), npass = B * (Np / kTcPass);
  FELA_CHECK(d < 65536 && 2 * B < 65536, "[fno_conv] B = ", B, ", d = ", d,
             " exceed the CUDA grid");
  Scratch DT(size_t(B * d * Np) * 2), UR(size_t(B * d * (Np + K)) * 2);
  const dim3 tgrid(blocks_for(Np + K, 512), blocks_for(d, 32), unsigned(2 * B));
  const bool aligned16 =
      reinterpret_cast<uintptr_t>(dy) % 16 == 0 && reinterpret_cast<uintptr_t>(u) % 16 == 0;
  df_transpose_kernel<<<tgrid, 256, 0, stream()>>>(DT.as<__nv_bfloat16>(), UR.as<__nv_bfloat16>(),
                                                   dy, u, B, N, d, Np, K, aligned16);
  CUDA_CHECK_LAUNCH();
  const auto [nz, span] = df_split(npass, d);
  const bool direct = nz == 1;
  Scratch partial(direct ? 256 : size_t(nz * M * d) * sizeof(float));  // [nz, d, M]
  const size_t smem = df_smem(M);
  static const bool raised = raise_smem_limit(fir_toeplitz_df_kernel);
  (void)raised;
  fir_toeplitz_df_kernel<<<dim3(unsigned(nz), unsigned(d)), kTcThreads, smem, stream()>>>(
      df, dskip, partial.as<float>(), direct, DT.as<__nv_bfloat16>(), UR.as<__nv_bfloat16>(), d, M,
      Np, npass, span);
  CUDA_CHECK_LAUNCH();
  if (!direct) {
    df_reduce_rows_kernel<<<blocks_for(M * d, 256), 256, 0, stream()>>>(
        df, dskip, partial.as<float>(), nz, d, M);
    CUDA_CHECK_LAUNCH();
  }
}

// ---------------------------------------------------------------------------------------------
// Fft method.

// Overlap-save: blocks of L samples of which the last P = L - (M-1) are new outputs.
struct FftGeom {
  int64_t L, P, nblk;
};

// The geometry with the fewest points nblk * L among one block of N+M-1 and blocks of 2M ..
// max(8192, 2M) points, lengths powers of two: bench_fno measured cuFFT's batched R2C and C2R
// at about 3 ps per point for 2^a up to 8192 and 8-9 ps for 3 * 2^a (H100). Ties go to the
// shorter transform.
FftGeom fft_geom(int64_t N, int64_t M) {
  auto pow2 = [](int64_t n) {  // smallest power of two >= n
    int64_t p = 1;
    while (p < n) p *= 2;
    return p;
  };
  const int64_t lo = pow2(std::max<int64_t>(2 * M, 32));
  const int64_t hi = std::max<int64_t>(8192, lo);
  FftGeom best{0, 0, 0};
  auto consider = [&](int64_t L) {
    const int64_t P = L - (M - 1), nblk = (N + P - 1) / P;
    if (best.L == 0 || nblk * L < best.nblk * best.L ||
        (nblk * L == best.nblk * best.L && L < best.L))
      best = {L, P, nblk};
  };
  const int64_t one = pow2(std::max<int64_t>(N + M - 1, lo));
  if (one <= hi) consider(one);
  for (int64_t L = lo; L <= hi; L *= 2) consider(L);
  return best;
}

// X[row, i] = scale * in[b, blk P + i - shift, c] with row = (b nblk + blk) d + c, for i < L;
// zero where that token is outside [0, N) or i >= ilim. Rows are ld floats apart. A 32 x 32
// tile goes through shared memory so that both the token-major reads and the channel-major
// writes are coalesced. Grid: (ceil(L/32), ceil(d/32), B nblk), block (32, 8).
__global__ void fft_gather_kernel(float* X, int64_t ld, const __nv_bfloat16* in, int64_t N,
                                  int64_t d, int64_t L, int64_t P, int64_t nblk, int64_t shift,
                                  int64_t ilim) {
  __shared__ float tile[32][33];
  const int64_t i0 = blockIdx.x * int64_t(32), c0 = blockIdx.y * int64_t(32);
  const int64_t z = blockIdx.z, b = z / nblk, blk = z % nblk;
  for (int k = threadIdx.y; k < 32; k += 8) {  // k: position, threadIdx.x: channel
    const int64_t i = i0 + k, t = blk * P + i - shift, c = c0 + threadIdx.x;
    const bool ok = i < ilim && t >= 0 && t < N && c < d;
    tile[k][threadIdx.x] = ok ? load(in, (b * N + t) * d + c) : 0.f;
  }
  __syncthreads();
  for (int k = threadIdx.y; k < 32; k += 8) {  // k: channel, threadIdx.x: position
    const int64_t c = c0 + k, i = i0 + threadIdx.x;
    if (c < d && i < L) X[(z * d + c) * ld + i] = tile[threadIdx.x][k];
  }
}

// out[b, t, c] = X[row, t - blk P + shift] + skip[c] res[b, t, c] for the block's new outputs
// t in [blk P, min(N, blk P + P)). Grid: (ceil(P/32), ceil(d/32), B nblk), block (32, 8).
__global__ void fft_scatter_kernel(__nv_bfloat16* out, const float* X, int64_t ld,
                                   const __nv_bfloat16* res, const float* skip, int64_t N,
                                   int64_t d, int64_t P, int64_t nblk, int64_t shift) {
  __shared__ float tile[32][33];
  const int64_t p0 = blockIdx.x * int64_t(32), c0 = blockIdx.y * int64_t(32);
  const int64_t z = blockIdx.z, b = z / nblk, blk = z % nblk;
  for (int k = threadIdx.y; k < 32; k += 8) {  // k: channel, threadIdx.x: position
    const int64_t c = c0 + k, p = p0 + threadIdx.x;
    tile[k][threadIdx.x] = (c < d && p < P) ? X[(z * d + c) * ld + p + shift] : 0.f;
  }
  __syncthreads();
  for (int k = threadIdx.y; k < 32; k += 8) {  // k: position, threadIdx.x: channel
    const int64_t p = p0 + k, t = blk * P + p, c = c0 + threadIdx.x;
    if (p < P && t < N && c < d) {
      const int64_t o = (b * N + t) * d + c;
      store(out, o, tile[threadIdx.x][k] + skip[c] * load(res, o));
    }
  }
}

// Zero-padded filter rows for the spectra: X[c, i] = f[c, i] / L for i < M, 0 up to L.
__global__ void filter_rows_kernel(float* X, int64_t ld, const float* f, int64_t d, int64_t M,
                                   int64_t L) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= d * L) return;
  const int64_t c = i / L, k = i % L;
  X[c * ld + k] = k < M ? f[c * M + k] / float(L) : 0.f;
}

// X[z, c, k] *= F[c, k] for the H bins of every row (rows ld2 complex values apart).
// Grid: (ceil(H / 256), d, B nblk).
__global__ void spectra_mul_kernel(float2* X, const float2* F, int64_t d, int64_t H, int64_t ld2) {
  const int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (k >= H) return;
  const int64_t c = blockIdx.y, o = (blockIdx.z * d + c) * ld2 + k;
  const float2 x = X[o], g = F[c * ld2 + k];
  X[o] = make_float2(x.x * g.x - x.y * g.y, x.x * g.y + x.y * g.x);
}

// For each channel c and bin k: S[c, k] = sum over the n = B nblk blocks, in order, of
// A[z, c, k] conj(V[z, c, k]) (df's cross-correlation), then A[z, c, k] *= conj(F[c, k]) (du's
// correlation with f). Rows ld2 complex values apart.
__global__ void spectra_backward_kernel(float2* A, const float2* V, float2* S, const float2* F,
                                        int64_t n, int64_t d, int64_t H, int64_t ld2) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= d * H) return;
  const int64_t c = i / H, k = i % H;
  const float2 g = F[c * ld2 + k];
  float sr = 0.f, si = 0.f;
  for (int64_t z = 0; z < n; ++z) {
    const int64_t o = (z * d + c) * ld2 + k;
    const float2 a = A[o], v = V[o];
    sr += a.x * v.x + a.y * v.y;
    si += a.y * v.x - a.x * v.y;
    A[o] = make_float2(a.x * g.x + a.y * g.y, a.y * g.x - a.x * g.y);
  }
  S[c * ld2 + k] = make_float2(sr, si);
}

// df[c, j] += Sr[c, j] / L for j < M (Sr: the inverse transform of S, rows ld floats apart).
__global__ void df_from_spectrum_kernel(float* df, const float* Sr, int64_t ld, int64_t d,
                                        int64_t M, int64_t L) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= d * M) return;
  const int64_t c = i / M, j = i % M;
  df[i] += Sr[c * ld + j] / float(L);
}

// partial[z, c] = sum over the rows r of chunk z of a[r, c] b[r, c] (column_chunk_sum).
__global__ void column_dot_partial_kernel(float* partial, const __nv_bfloat16* a,
                                          const __nv_bfloat16* b, int64_t R, int64_t d,
                                          int64_t rows) {
  column_chunk_sum(partial, R, d, rows,
                   [&](int64_t k, int64_t) { return load(a, k) * load(b, k); });
}

// dskip[c] += sum_r dy[r, c] u[r, c] over the R = B N rows, in a fixed order.
void skip_grad(float* dskip, const __nv_bfloat16* dy, const __nv_bfloat16* u, int64_t R,
               int64_t d) {
  const ColumnChunks ch = column_chunks(R);
  Scratch partial(size_t(ch.count * d) * sizeof(float));  // [chunks, d]
  column_dot_partial_kernel<<<column_tiles(d, ch), dim3(32, kSumRows), 0, stream()>>>(
      partial.as<float>(), dy, u, R, d, ch.rows);
  CUDA_CHECK_LAUNCH();
  add_chunk_sums(dskip, partial.as<float>(), ch.count, d);
}

// Spectra of the zero-padded taps scaled by 1/L: F [d, H] complex in rows of ld = 2H floats.
void filter_spectra(float* F, const float* f, int64_t d, int64_t M, int64_t L) {
  const int64_t ld = 2 * (L / 2 + 1);
  filter_rows_kernel<<<blocks_for(d * L, 256), 256, 0, stream()>>>(F, ld, f, d, M, L);
  CUDA_CHECK_LAUNCH();
  run_fft(CUFFT_R2C, L, d, ld, F, F);
}

void fft_forward(__nv_bfloat16* y, const __nv_bfloat16* u, const float* f, const float* skip,
                 int64_t B, int64_t N, int64_t d, int64_t M) {
  const FftGeom g = fft_geom(N, M);
  const int64_t H = g.L / 2 + 1, ld = 2 * H, rows = B * g.nblk * d;
  FELA_CHECK(B * g.nblk < 65536 && d < 65536, "[fno_conv] B = ", B, ", d = ", d,
             " exceed the CUDA grid");
  Scratch F(size_t(d * ld) * sizeof(float)), X(size_t(rows * ld) * sizeof(float));
  filter_spectra(F.as<float>(), f, d, M, g.L);
  const dim3 gather_grid(blocks_for(g.L, 32), blocks_for(d, 32), unsigned(B * g.nblk));
  fft_gather_kernel<<<gather_grid, dim3(32, 8), 0, stream()>>>(X.as<float>(), ld, u, N, d, g.L, g.P,
                                                               g.nblk, M - 1, g.L);
  CUDA_CHECK_LAUNCH();
  run_fft(CUFFT_R2C, g.L, rows, ld, X.as<void>(), X.as<void>());
  const dim3 mul_grid(blocks_for(H, 256), unsigned(d), unsigned(B * g.nblk));
  spectra_mul_kernel<<<mul_grid, 256, 0, stream()>>>(X.as<float2>(), F.as<float2>(), d, H, H);
  CUDA_CHECK_LAUNCH();
  run_fft(CUFFT_C2R, g.L, rows, ld, X.as<void>(), X.as<void>());
  const dim3 scatter_grid(blocks_for(g.P, 32), blocks_for(d, 32), unsigned(B * g.nblk));
  fft_scatter_kernel<<<scatter_grid, dim3(32, 8), 0, stream()>>>(y, X.as<float>(), ld, u, skip, N,
                                                                 d, g.P, g.nblk, M - 1);
  CUDA_CHECK_LAUNCH();
}

// Blocks split the u positions s: block [t0, t0+P) needs dy rows [t0, t0+L), since
//   du[s] = sum_j f[j] dy[s+j]      and      df[j] = sum_s u[s] dy[s+j]   with j < M,
// both circular correlations of the dy window that cannot wrap (s - t0 + j <= L - 1).
void fft_backward(__nv_bfloat16* du, float* df, float* dskip, const __nv_bfloat16* dy,
                  const __nv_bfloat16* u, const float* f, const float* skip, int64_t B, int64_t N,
                  int64_t d, int64_t M) {
  const FftGeom g = fft_geom(N, M);
  const int64_t H = g.L / 2 + 1, ld = 2 * H, rows = B * g.nblk * d;
  FELA_CHECK(B * g.nblk < 65536 && (d + 31) / 32 < 65536, "[fno_conv] B = ", B, ", d = ", d,
             " exceed the CUDA grid");
  Scratch F(size_t(d * ld) * sizeof(float)), S(size_t(d * ld) * sizeof(float));
  Scratch AV(size_t(2 * rows * ld) * sizeof(float));  // [2, rows, ld]: dy windows, u blocks
  float* A = AV.as<float>();
  float* V = A + rows * ld;
  filter_spectra(F.as<float>(), f, d, M, g.L);
  const dim3 grid(blocks_for(g.L, 32), blocks_for(d, 32), unsigned(B * g.nblk));
  fft_gather_kernel<<<grid, dim3(32, 8), 0, stream()>>>(A, ld, dy, N, d, g.L, g.P, g.nblk, 0, g.L);
  CUDA_CHECK_LAUNCH();
  fft_gather_kernel<<<grid, dim3(32, 8), 0, stream()>>>(V, ld, u, N, d, g.L, g.P, g.nblk, 0, g.P);
  CUDA_CHECK_LAUNCH();
  run_fft(CUFFT_R2C, g.L, 2 * rows, ld, A, A);
  spectra_backward_kernel<<<blocks_for(d * H, 256), 256, 0, stream()>>>(
      reinterpret_cast<float2*>(A), reinterpret_cast<const float2*>(V), S.as<float2>(),
      F.as<float2>(), B * g.nblk, d, H, H);
  CUDA_CHECK_LAUNCH();
  run_fft(CUFFT_C2R, g.L, rows, ld, A, A);
  run_fft(CUFFT_C2R, g.L, d, ld, S.as<void>(), S.as<void>());
  const dim3 scatter_grid(blocks_for(g.P, 32), blocks_for(d, 32), unsigned(B * g.nblk));
  fft_scatter_kernel<<<scatter_grid, dim3(32, 8), 0, stream()>>>(du, A, ld, dy, skip, N, d, g.P,
                                                                 g.nblk, 0);
  CUDA_CHECK_LAUNCH();
  df_from_spectrum_kernel<<<blocks_for(d * M, 256), 256, 0, stream()>>>(df, S.as<float>(), ld, d, M,
                                                                        g.L);
  CUDA_CHECK_LAUNCH();
  skip_grad(dskip, dy, u, B * N, d);
}

// ---------------------------------------------------------------------------------------------
// Method choice.

// Auto's cost model: seconds on an H100, fitted to bench_fno's measurements of 2026-11-23
// (bench/README.md; M = 512, d = 768 and 2048, 8 x 1024 to 1 x 65536 tokens; Toeplitz refitted
// on 2026-11-24 after its conv kernel overlapped its loads):
//   Direct    fp32 FLOP/s on the taps its tiles compute (whole 128-token tiles and 16- or 64-tap
//             chunks): 22 T forward; df (64-token tiles and 128-lag tiles) 18 T.
//   Toeplitz  bf16 tensor FLOP/s on its products plus fixed times: y and du 4 K per token and
//             channel (hi and lo taps; whole 1024-token passes and 8-channel groups), counted
//             as if every block slot had as many passes as the busiest (tc_split), at 328 T
//             plus 14.5 us (the pairs kernel, the first loads); df 2 K per token and channel at
//             99 T (its transposing pass included) plus 3.5 us per wave of 1 block per SM
//             (bwd - fwd of the 2026-11-24 run: the df part of the backward).
//   Fft       seconds per point of its transform rows (power-of-two lengths): 17 ps forward,
//             27 ps backward (24-28 measured).
// Those predict the measured times within 7% (Toeplitz) and 9% (Direct) and pick the measured
// fastest method, Toeplitz, in all 20 rows (10 shapes, forward and backward).
constexpr double kDirectFlops = 22e12, kDirectGradFlops = 18e12;
constexpr double kTcFlops = 328e12, kTcStartSeconds = 14.5e-6;
constexpr double kTcGradFlops = 99e12, kTcGradWaveSeconds = 3.5e-6;
constexpr double kFftForwardSecondsPerPoint = 17e-12, kFftBackwardSecondsPerPoint = 27e-12;

double direct_seconds(int64_t B, int64_t N, int64_t d, int64_t M) {
  const double tokens = double(B) * double((N + kTile - 1) / kTile * kTile);
  const int64_t chunk = M <= 16 ? 16 : 64;
  return 2.0 * tokens * double(d) * double((M + chunk - 1) / chunk * chunk) / kDirectFlops;
}
double direct_grad_seconds(int64_t B, int64_t N, int64_t d, int64_t M) {
  const double tokens = double(B) * double((N + kDfTokens - 1) / kDfTokens * kDfTokens);
  return 2.0 * tokens * double(d) * double((M + kTile - 1) / kTile * kTile) / kDirectGradFlops;
}
double toeplitz_seconds(int64_t B, int64_t N, int64_t d, int64_t M, bool grad) {
  const int64_t passes = B * ((N + kTcPass - 1) / kTcPass), sms = sm_count();
  const double tokens = double(passes) * kTcPass;
  if (!grad) {  // the busiest block slot's passes, as if every slot had as many
    const double busiest = double(tc_split(B, N, d).busiest * kTcBlocksPerSm * sms);
    return 4.0 * busiest * kTcPass * kTcWarps * double(tc_depth(M)) / kTcFlops + kTcStartSeconds;
  }
  const int64_t blocks = df_split(passes, d).nz * d;
  return 2.0 * tokens * double(d) * double(tc_depth(M)) / kTcGradFlops +
         double((blocks + sms - 1) / sms) * kTcGradWaveSeconds;
}
double fft_seconds(int64_t B, int64_t N, int64_t d, int64_t M, bool backward) {
  const FftGeom g = fft_geom(N, M);
  const double points = double(B * g.nblk * d + d) * double(g.L);
  return points * (backward ? kFftBackwardSecondsPerPoint : kFftForwardSecondsPerPoint);
}

FirMethod choose_method(int64_t B, int64_t N, int64_t d, int64_t M, bool backward) {
  FirMethod best = FirMethod::Direct;
  double t = direct_seconds(B, N, d, M) + (backward ? direct_grad_seconds(B, N, d, M) : 0.0);
  if (toeplitz_fits(M)) {
    const double tc =
        toeplitz_seconds(B, N, d, M, false) + (backward ? toeplitz_seconds(B, N, d, M, true) : 0.0);
    if (tc < t) best = FirMethod::Toeplitz, t = tc;
  }
  if (fft_seconds(B, N, d, M, backward) < t) best = FirMethod::Fft;
  return best;
}

// ---------------------------------------------------------------------------------------------
// Generation.

// y[b, c] = (f[c, 0] + skip[c]) u[b, c] + sum_{j=1}^{R} f[c, j] ring[b, (t-j) mod R, c], then
// ring[b, t mod R, c] = u[b, c]. Lanes are channels, the 8 warps split the lags and their sums
// are added in warp order. The block reads every slot of its channels before writing slot
// t mod R, and no other block touches them. Grid: (channel groups, B).
__global__ void __launch_bounds__(kThreads)
    fno_step_kernel(__nv_bfloat16* y, __nv_bfloat16* ring, const __nv_bfloat16* u, const float* f,
                    const float* skip, int64_t d, int64_t M, int64_t t) {
  __shared__ float part[kWarps][kLanes];
  const int lane = threadIdx.x % kLanes, warp = threadIdx.x / kLanes;
  const int64_t b = blockIdx.y, c = blockIdx.x * int64_t(kLanes) + lane;
  const int64_t R = M - 1, s0 = R > 0 ? t % R : 0;
  float acc = 0.f;
  if (c < d)
    for (int64_t j = 1 + warp; j <= R; j += kWarps) {
      const int64_t slot = ((s0 - j) % R + R) % R;
      acc += f[c * M + j] * load(ring, (b * R + slot) * d + c);
    }
  part[warp][lane] = acc;
  __syncthreads();
  if (warp == 0 && c < d) {
    const float x = load(u, b * d + c);
    float s = (f[c * M] + skip[c]) * x;
    for (int w = 0; w < kWarps; ++w) s += part[w][lane];
    store(y, b * d + c, s);
    if (R > 0) ring[(b * R + s0) * d + c] = u[b * d + c];
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Entry points.

void fno_filter_forward(float* f, const float* k_re, const float* k_im, int64_t d, int64_t modes,
                        int64_t M) {
  if (d == 0) return;
  const int64_t H = M / 2 + 1;
  Scratch Z(size_t(d * H) * sizeof(float2));  // [d, H] complex; C2R overwrites it
  filter_pack_kernel<<<blocks_for(d * H, 256), 256, 0, stream()>>>(Z.as<float2>(), k_re, k_im, d,
                                                                   modes, M);
  CUDA_CHECK_LAUNCH();
  if (M == 1) {  // one tap: f = Re K[0] (the packed bin), no transform needed
    CUDA_CHECK(cudaMemcpy2DAsync(f, sizeof(float), Z.as<float2>(), sizeof(float2), sizeof(float),
                                 size_t(d), cudaMemcpyDeviceToDevice, stream()));
    return;
  }
  run_fft(CUFFT_C2R, M, d, M, Z.as<void>(), f);
}

void fno_filter_backward(float* dk_re, float* dk_im, const float* df, int64_t d, int64_t modes,
                         int64_t M) {
  if (d == 0) return;
  const int64_t H = M / 2 + 1;
  Scratch X(size_t(d * H) * sizeof(float2));  // [d, H] complex
  if (M == 1) {                               // one tap: the transform of length 1 is the identity
    CUDA_CHECK(cudaMemsetAsync(X.as<float2>(), 0, size_t(d) * sizeof(float2), stream()));
    CUDA_CHECK(cudaMemcpy2DAsync(X.as<float2>(), sizeof(float2), df, sizeof(float), sizeof(float),
                                 size_t(d), cudaMemcpyDeviceToDevice, stream()));
  } else {
    // cuFFT may use its input as work space; df stays untouched on a copy.
    Scratch in(size_t(d * M) * sizeof(float));
    CUDA_CHECK(cudaMemcpyAsync(in.as<float>(), df, size_t(d * M) * sizeof(float),
                               cudaMemcpyDeviceToDevice, stream()));
    run_fft(CUFFT_R2C, M, d, M, in.as<void>(), X.as<void>());
  }
  filter_grad_kernel<<<blocks_for(d * modes, 256), 256, 0, stream()>>>(dk_re, dk_im, X.as<float2>(),
                                                                       d, modes, M);
  CUDA_CHECK_LAUNCH();
}

FirMethod fno_auto_method(int64_t B, int64_t N, int64_t d, int64_t M, bool backward) {
  return choose_method(B, N, d, M, backward);
}

void fno_conv_forward(BFloat16* y, const BFloat16* u, const float* f, const float* skip, int64_t B,
                      int64_t N, int64_t d, int64_t M, FirMethod method) {
  if (B * N * d == 0) return;
  if (method == FirMethod::Auto) method = fno_auto_method(B, N, d, M, false);
  if (method == FirMethod::Fft)
    fft_forward(dev(y), dev(u), f, skip, B, N, d, M);
  else if (method == FirMethod::Toeplitz)
    toeplitz_conv(dev(y), dev(u), f, skip, B, N, d, M, false);
  else
    direct_conv(dev(y), dev(u), f, skip, B, N, d, M, false);
}

void fno_conv_backward(BFloat16* du, float* df, float* dskip, const BFloat16* dy, const BFloat16* u,
                       const float* f, const float* skip, int64_t B, int64_t N, int64_t d,
                       int64_t M, FirMethod method) {
  if (B * N * d == 0) return;
  if (method == FirMethod::Auto) method = fno_auto_method(B, N, d, M, true);
  if (method == FirMethod::Fft) {
    fft_backward(dev(du), df, dskip, dev(dy), dev(u), f, skip, B, N, d, M);
    return;
  }
  if (method == FirMethod::Toeplitz) {
    toeplitz_filter_grad(df, dskip, dev(dy), dev(u), B, N, d, M);
    toeplitz_conv(dev(du), dev(dy), f, skip, B, N, d, M, true);
  } else {
    direct_filter_grad(df, dskip, dev(dy), dev(u), B, N, d, M);
    direct_conv(dev(du), dev(dy), f, skip, B, N, d, M, true);
  }
}

void fno_conv_step(BFloat16* y, BFloat16* ring, const BFloat16* u, const float* f,
                   const float* skip, int64_t B, int64_t d, int64_t M, int64_t t) {
  if (B * d == 0) return;
  FELA_CHECK(B < 65536, "[fno_conv_step] batch ", B, " exceeds the CUDA grid");
  const dim3 grid(blocks_for(d, kLanes), unsigned(B));
  fno_step_kernel<<<grid, kThreads, 0, stream()>>>(dev(y), dev(ring), dev(u), f, skip, d, M, t);
  CUDA_CHECK_LAUNCH();
}

// Token t0 + n goes to slot (t0 + n) mod R; only the last min(N, R) tokens survive. Those form
// at most two runs of consecutive slots, each one 2-D copy over the batch.
void fno_ring_load(BFloat16* ring, const BFloat16* u, int64_t B, int64_t N, int64_t d, int64_t R,
                   int64_t t0) {
  if (B * N * d == 0) return;
  const size_t row = size_t(d) * sizeof(BFloat16);
  int64_t n = std::max<int64_t>(0, N - R);
  while (n < N) {
    const int64_t slot = (t0 + n) % R, len = std::min(N - n, R - slot);
    CUDA_CHECK(cudaMemcpy2DAsync(ring + slot * d, size_t(R) * row, u + n * d, size_t(N) * row,
                                 size_t(len) * row, size_t(B), cudaMemcpyDeviceToDevice, stream()));
    n += len;
  }
}

// hist[j] = the input of token t - R + j, in slot (t + j) mod R; zero for negative tokens.
void fno_ring_unroll(BFloat16* hist, const BFloat16* ring, int64_t R, int64_t d, int64_t t) {
  if (R * d == 0) return;
  const size_t row = size_t(d) * sizeof(BFloat16);
  int64_t j = std::max<int64_t>(0, R - t);  // rows before j are negative tokens
  if (j > 0) CUDA_CHECK(cudaMemsetAsync(hist, 0, size_t(j) * row, stream()));
  while (j < R) {
    const int64_t slot = (t + j) % R, len = std::min(R - j, R - slot);
    CUDA_CHECK(cudaMemcpyAsync(hist + j * d, ring + slot * d, size_t(len) * row,
                               cudaMemcpyDeviceToDevice, stream()));
    j += len;
  }
}

}  // namespace fela::ops::cuda
