// FNO mixer on the CPU (SPEC §2).
//
// Filter: one FFTW inverse real FFT of length M per channel (forward) and one forward real FFT
// per channel (backward, the exact adjoint). Direct sums would cost d * modes * M MACs (100M
// for d = 768, M = 512, modes = 257: ~2.5 ms at this machine's 40 GMAC/s) against 0.54 ms
// (forward) and 0.70 ms (backward) measured on one core for the 768 FFTs, so FFTW it is.
// Convolution: two methods, equal up to rounding; FirMethod::Auto picks by the cost model below.
//   Direct: sums over taps on chunks of W channels (one cache line of a token row) copied to
//           contiguous buffers, with register tiles of 16 tokens x W channels; du is the same
//           kernel run backwards in time; df is a tile of 16 lags x W channels reduced over
//           batch and time.
//   Fft:    per group of W channels, transposed to channel-major, overlap-save blocks of
//           length L (one block of N+M-1 rounded up to a fast FFTW size when that is cheapest),
//           pointwise products with the filter spectra; backward gets du by correlation with f
//           and df by cross-correlation of dy with u, summed in the frequency domain over batch
//           and blocks and inverted once per channel; dskip is a direct reduction.
// FFTW plans are made once per size under a mutex (the planner is not thread-safe) with
// FFTW_ESTIMATE (the plan, hence the rounding, is the same on every run; MEASURE was at most
// 1.5x faster here) and executed from OpenMP threads with the new-array functions on buffers
// from fftw_malloc, sub-buffers at 64-byte offsets. Plans live for the process.
#include "fela/ops/fno.h"

#include <fftw3.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

namespace fela::ops::cpu {
namespace {

// ---------------------------------------------------------------------------------------------
// FFTW glue: one traits struct per precision; complex values as std::complex<T> (same layout as
// fftw_complex, as FFTW documents).

template <class T>
struct Fftw;
template <>
struct Fftw<double> {
  using Plan = fftw_plan;
  static void* alloc(size_t bytes) { return fftw_malloc(bytes); }
  static void release(void* p) { fftw_free(p); }
  static Plan plan_r2c(int n, double* in, std::complex<double>* out) {
    return fftw_plan_dft_r2c_1d(n, in, reinterpret_cast<fftw_complex*>(out), FFTW_ESTIMATE);
  }
  static Plan plan_c2r(int n, std::complex<double>* in, double* out) {
    return fftw_plan_dft_c2r_1d(n, reinterpret_cast<fftw_complex*>(in), out, FFTW_ESTIMATE);
  }
  static void r2c(Plan p, double* in, std::complex<double>* out) {
    fftw_execute_dft_r2c(p, in, reinterpret_cast<fftw_complex*>(out));
  }
  static void c2r(Plan p, std::complex<double>* in, double* out) {
    fftw_execute_dft_c2r(p, reinterpret_cast<fftw_complex*>(in), out);
  }
};
template <>
struct Fftw<float> {
  using Plan = fftwf_plan;
  static void* alloc(size_t bytes) { return fftwf_malloc(bytes); }
  static void release(void* p) { fftwf_free(p); }
  static Plan plan_r2c(int n, float* in, std::complex<float>* out) {
    return fftwf_plan_dft_r2c_1d(n, in, reinterpret_cast<fftwf_complex*>(out), FFTW_ESTIMATE);
  }
  static Plan plan_c2r(int n, std::complex<float>* in, float* out) {
    return fftwf_plan_dft_c2r_1d(n, reinterpret_cast<fftwf_complex*>(in), out, FFTW_ESTIMATE);
  }
  static void r2c(Plan p, float* in, std::complex<float>* out) {
    fftwf_execute_dft_r2c(p, in, reinterpret_cast<fftwf_complex*>(out));
  }
  static void c2r(Plan p, std::complex<float>* in, float* out) {
    fftwf_execute_dft_c2r(p, reinterpret_cast<fftwf_complex*>(in), out);
  }
};

// An FFTW-allocated (SIMD-aligned), uninitialised array of n values of V.
template <class T, class V>
class FftwBuf {
 public:
  explicit FftwBuf(int64_t n)
      : p_(static_cast<V*>(Fftw<T>::alloc(size_t(std::max<int64_t>(n, 1)) * sizeof(V)))) {
    FELA_CHECK(p_ != nullptr, "[fno] out of memory for an FFT buffer of ", n, " values");
  }
  V* get() const { return p_.get(); }

 private:
  struct Free {
    void operator()(V* p) const { Fftw<T>::release(p); }
  };
  std::unique_ptr<V, Free> p_;
};

// Sub-buffers inside one FftwBuf start at multiples of 64 bytes, so every array handed to a
// new-array execute has the alignment of the arrays the plan was made with.
inline int64_t pad64(int64_t n, size_t elem) {
  const int64_t per = int64_t(64 / elem);
  return (n + per - 1) / per * per;
}

// Whether a call with about `work` inner-loop operations should fork threads: below ~64K the
// fork/join costs more than it saves (and with more threads than free cores, far more).
inline bool parallel_worth(double work) { return work >= 65536.0; }

std::mutex planner_mutex;  // guards FFTW's planner, for both precisions

template <class T>
struct RealPlans {
  typename Fftw<T>::Plan r2c, c2r;
};

// The r2c and c2r plans of length n, made on first use (out of place, ESTIMATE).
template <class T>
const RealPlans<T>& real_plans(int64_t n) {
  static std::map<int64_t, RealPlans<T>> cache;  // nodes never move or die
  std::lock_guard<std::mutex> lock(planner_mutex);
  auto it = cache.find(n);
  if (it != cache.end()) return it->second;
  FftwBuf<T, T> x(n);
  FftwBuf<T, std::complex<T>> X(n / 2 + 1);
  RealPlans<T> p{Fftw<T>::plan_r2c(int(n), x.get(), X.get()),
                 Fftw<T>::plan_c2r(int(n), X.get(), x.get())};
  FELA_CHECK(p.r2c && p.c2r, "[fno] FFTW could not plan a real transform of length ", n);
  return cache.emplace(n, p).first->second;
}

// ---------------------------------------------------------------------------------------------
// FFT geometry for the convolution.

// Smallest FFT length >= n that FFTW (with FFTW_ESTIMATE plans) does fast: a power of two, or
// 2^a 3^b 5^c with 32 | L. Measured here for real float pairs r2c + c2r, such sizes cost
// 0.27-0.40 ns per L log2 L point, while factors of 7 or a small power of two often cost 0.5-0.8.
int64_t fft_good_size(int64_t n) {
  for (int64_t m = std::max<int64_t>(n, 2);; ++m) {
    int64_t x = m;
    for (int64_t p : {2, 3, 5})
      while (x % p == 0) x /= p;
    if (x == 1 && (m % 32 == 0 || (m & (m - 1)) == 0)) return m;
  }
}

// Overlap-save: blocks of L samples of which the last P = L - (M-1) are valid outputs.
struct FftGeom {
  int64_t L, P, nblk;
};

// The block length with the least FFT work nblk * L log2 L, among one block of N+M-1 and
// blocks from max(2M, 64) up (shorter transforms are dominated by per-call overhead): long
// sequences get blocks, short ones one transform.
FftGeom fft_geom(int64_t N, int64_t M) {
  auto cost = [](const FftGeom& g) { return double(g.nblk) * g.L * std::log2(double(g.L)); };
  const int64_t Lfull = fft_good_size(N + M - 1);
  FftGeom best{Lfull, Lfull - (M - 1), 1};
  for (int64_t L = fft_good_size(std::max<int64_t>(2 * M, 64)); L < Lfull;
       L = fft_good_size(L + L / 8 + 2)) {
    const int64_t P = L - (M - 1);
    const FftGeom g{L, P, (N + P - 1) / P};
    if (cost(g) < cost(best)) best = g;
  }
  return best;
}

// a[k] *= b[k] for n complex values, in plain real arithmetic (std::complex's operator*
// checks for NaN/Inf and does not vectorise).
template <class T>
inline void cmul(std::complex<T>* a, const std::complex<T>* b, int64_t n) {
  T* x = reinterpret_cast<T*>(a);
  const T* y = reinterpret_cast<const T*>(b);
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) {
    const T re = x[2 * k] * y[2 * k] - x[2 * k + 1] * y[2 * k + 1];
    const T im = x[2 * k] * y[2 * k + 1] + x[2 * k + 1] * y[2 * k];
    x[2 * k] = re, x[2 * k + 1] = im;
  }
}

// s[k] += a[k] * conj(b[k]) for n complex values.
template <class T>
inline void cmul_conj_acc(std::complex<T>* s, const std::complex<T>* a, const std::complex<T>* b,
                          int64_t n) {
  T* z = reinterpret_cast<T*>(s);
  const T *x = reinterpret_cast<const T*>(a), *y = reinterpret_cast<const T*>(b);
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) {
    z[2 * k] += x[2 * k] * y[2 * k] + x[2 * k + 1] * y[2 * k + 1];
    z[2 * k + 1] += x[2 * k + 1] * y[2 * k] - x[2 * k] * y[2 * k + 1];
  }
}

// Spectra of the zero-padded taps, scaled by 1/L (the inverse FFT's normalisation), conjugated
// for correlation: F [d, Hs] complex, Hs >= L/2+1 padded for alignment.
template <class T>
void filter_spectra(std::complex<T>* F, int64_t Hs, const T* f, int64_t d, int64_t M, int64_t L,
                    bool conjugate) {
  const auto& pl = real_plans<T>(L);
  const int64_t H = L / 2 + 1;
  const T scale = T(1.0 / double(L));
#pragma omp parallel if (parallel_worth(double(d) * double(L)))
  {
    FftwBuf<T, T> x(L);
    std::fill(x.get() + M, x.get() + L, T(0));
#pragma omp for schedule(static)
    for (int64_t c = 0; c < d; ++c) {
      std::copy(f + c * M, f + c * M + M, x.get());  // x[M..L) stays zero
      std::complex<T>* Fc = F + c * Hs;
      Fftw<T>::r2c(pl.r2c, x.get(), Fc);
      T* v = reinterpret_cast<T*>(Fc);  // (re, im) pairs
      const T im_scale = conjugate ? -scale : scale;
      for (int64_t k = 0; k < H; ++k) v[2 * k] *= scale, v[2 * k + 1] *= im_scale;
    }
  }
}

// Channel-major copies of G channels [c0, c0+gc) for rows [r0, r0+len) of a token-major
// [N, d] sequence: x[g, i] = src[r0 + i, c0 + g] for 0 <= r0+i < min(N, rend), zero elsewhere.
template <class T>
void gather(T* x, int64_t Ls, int64_t len, const T* src, int64_t N, int64_t d, int64_t c0,
            int64_t gc, int64_t r0, int64_t rend) {
  const int64_t lo = std::clamp<int64_t>(r0, 0, r0 + len);
  const int64_t hi = std::max(lo, std::min({N, rend, r0 + len}));
  for (int64_t g = 0; g < gc; ++g) {
    std::fill(x + g * Ls, x + g * Ls + (lo - r0), T(0));
    std::fill(x + g * Ls + (hi - r0), x + g * Ls + len, T(0));
  }
  for (int64_t r = lo; r < hi; ++r) {
    const T* row = src + r * d + c0;
    for (int64_t g = 0; g < gc; ++g) x[g * Ls + (r - r0)] = row[g];
  }
}

// ---------------------------------------------------------------------------------------------
// Fft method.

template <class T>
void fir_fft_forward(T* y, const T* u, const T* f, const T* skip, int64_t B, int64_t N, int64_t d,
                     int64_t M) {
  using C = std::complex<T>;
  const FftGeom geo = fft_geom(N, M);
  const int64_t L = geo.L, P = geo.P, H = L / 2 + 1;
  const int64_t Ls = pad64(L, sizeof(T)), Hs = pad64(H, sizeof(C));
  const auto& pl = real_plans<T>(L);
  FftwBuf<T, C> F(d * Hs);  // [d, Hs]
  filter_spectra(F.get(), Hs, f, d, M, L, false);
  constexpr int64_t G = 64 / sizeof(T);
  const int64_t ngroups = (d + G - 1) / G;
#pragma omp parallel if (parallel_worth(double(B) * double(d) * double(L)))
  {
    FftwBuf<T, T> x(G * Ls);  // [G, Ls] channel-major block
    FftwBuf<T, C> X(G * Hs);  // [G, Hs]
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t grp = 0; grp < ngroups; ++grp) {
        const int64_t c0 = grp * G, gc = std::min(G, d - c0);
        const T* ub = u + b * N * d;
        T* yb = y + b * N * d;
        for (int64_t blk = 0; blk < geo.nblk; ++blk) {
          // Block inputs are rows [t0-(M-1), t0+P); its outputs t in [t0, t0+P) sit at t-s.
          const int64_t t0 = blk * P, s = t0 - (M - 1);
          gather(x.get(), Ls, L, ub, N, d, c0, gc, s, N);
          for (int64_t g = 0; g < gc; ++g) {
            C* Xg = X.get() + g * Hs;
            const C* Fc = F.get() + (c0 + g) * Hs;
            Fftw<T>::r2c(pl.r2c, x.get() + g * Ls, Xg);
            cmul(Xg, Fc, H);
            Fftw<T>::c2r(pl.c2r, Xg, x.get() + g * Ls);
          }
          for (int64_t t = t0; t < std::min(N, t0 + P); ++t)
            for (int64_t g = 0; g < gc; ++g)
              yb[t * d + c0 + g] = x.get()[g * Ls + (t - s)] + skip[c0 + g] * ub[t * d + c0 + g];
        }
      }
  }
}

template <class T>
void fir_fft_backward(T* du, T* df, T* dskip, const T* dy, const T* u, const T* f, const T* skip,
                      int64_t B, int64_t N, int64_t d, int64_t M) {
  using C = std::complex<T>;
  const FftGeom geo = fft_geom(N, M);
  const int64_t L = geo.L, P = geo.P, H = L / 2 + 1;
  const int64_t Ls = pad64(L, sizeof(T)), Hs = pad64(H, sizeof(C));
  const auto& pl = real_plans<T>(L);
  FftwBuf<T, C> Fc(d * Hs);  // [d, Hs] conj(rfft(f)) / L
  filter_spectra(Fc.get(), Hs, f, d, M, L, true);
  constexpr int64_t G = 64 / sizeof(T);
  const int64_t ngroups = (d + G - 1) / G;
  const T inv_L = T(1.0 / double(L));
  // Blocks split the u positions s: block [t0, t0+P) needs dy rows [t0, t0+L), since
  //   du[s] = sum_j f[j] dy[s+j]      and      df[j] = sum_s u[s] dy[s+j]   with j < M.
  // Both are circular correlations of the dy window that cannot wrap (s - t0 + j <= L - 1).
#pragma omp parallel if (parallel_worth(double(B) * double(d) * double(L)))
  {
    FftwBuf<T, T> a(G * Ls), v(G * Ls);             // [G, Ls]: dy window, u block
    FftwBuf<T, C> A(G * Hs), V(G * Hs), S(G * Hs);  // [G, Hs]: their spectra, df's sum
#pragma omp for schedule(dynamic)
    for (int64_t grp = 0; grp < ngroups; ++grp) {
      const int64_t c0 = grp * G, gc = std::min(G, d - c0);
      std::fill(S.get(), S.get() + G * Hs, C(0));
      double ds[G] = {};
      for (int64_t b = 0; b < B; ++b) {
        const T *dyb = dy + b * N * d, *ub = u + b * N * d;
        T* dub = du + b * N * d;
        for (int64_t blk = 0; blk < geo.nblk; ++blk) {
          const int64_t t0 = blk * P;
          gather(a.get(), Ls, L, dyb, N, d, c0, gc, t0, N);
          gather(v.get(), Ls, L, ub, N, d, c0, gc, t0, t0 + P);
          for (int64_t g = 0; g < gc; ++g) {
            C *Ag = A.get() + g * Hs, *Vg = V.get() + g * Hs, *Sg = S.get() + g * Hs;
            const C* Fg = Fc.get() + (c0 + g) * Hs;
            Fftw<T>::r2c(pl.r2c, a.get() + g * Ls, Ag);
            Fftw<T>::r2c(pl.r2c, v.get() + g * Ls, Vg);
            cmul_conj_acc(Sg, Ag, Vg, H);
            cmul(Ag, Fg, H);
            Fftw<T>::c2r(pl.c2r, Ag, a.get() + g * Ls);
          }
          for (int64_t t = t0; t < std::min(N, t0 + P); ++t)
            for (int64_t g = 0; g < gc; ++g)
              dub[t * d + c0 + g] = a.get()[g * Ls + (t - t0)] + skip[c0 + g] * dyb[t * d + c0 + g];
        }
        for (int64_t t = 0; t < N; ++t)
          for (int64_t g = 0; g < gc; ++g)
            ds[g] += double(dyb[t * d + c0 + g]) * ub[t * d + c0 + g];
      }
      for (int64_t g = 0; g < gc; ++g) {
        Fftw<T>::c2r(pl.c2r, S.get() + g * Hs, a.get() + g * Ls);
        for (int64_t j = 0; j < M; ++j) df[(c0 + g) * M + j] += a.get()[g * Ls + j] * inv_L;
        dskip[c0 + g] += T(ds[g]);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Direct method. Each task copies the column chunk it works on (W channels: one cache line of a
// token row) into contiguous buffers first: token rows are d values apart, and for d = 768 a
// column of 512 rows maps onto only 4 sets of the L1 cache, which made the unpacked loops
// 5x slower for M = 512.

// Lanes per chunk and tokens (or lags) per register tile.
template <class T>
inline constexpr int64_t kLanes = 64 / sizeof(T);
inline constexpr int kTile = 16;

// Taps packed per chunk: fP [nchunk, M, W], lanes past d zero.
template <class T>
std::vector<T> pack_taps(const T* f, int64_t d, int64_t M) {
  constexpr int64_t W = kLanes<T>;
  const int64_t nchunk = (d + W - 1) / W;
  std::vector<T> fP(size_t(nchunk * M * W), T(0));
  for (int64_t c = 0; c < d; ++c)
    for (int64_t j = 0; j < M; ++j) fP[((c / W) * M + j) * W + c % W] = f[c * M + j];
  return fP;
}

// dst[r, w] = src[(r0 + r) * is + c0 + w] for r < rows, w < wc; lanes past wc zero.
template <class T>
void pack_rows(T* dst, const T* src, int64_t r0, int64_t rows, int64_t is, int64_t c0, int64_t wc) {
  constexpr int64_t W = kLanes<T>;
  for (int64_t r = 0; r < rows; ++r) {
    const T* s = src + (r0 + r) * is + c0;
    T* o = dst + r * W;
    if (wc == W) {
      for (int64_t w = 0; w < W; ++w) o[w] = s[w];
    } else {
      for (int64_t w = 0; w < W; ++w) o[w] = w < wc ? s[w] : T(0);
    }
  }
}

// y[i, :] += sum_{j in [ja, jb), j <= t} fp[j] * x[t - j] for tokens t = t0 + i < t0 + TB on one
// packed chunk: xp row r holds token r, fp is [M, W], y is [TB, W]. The accumulators live in
// registers; taps go TB at a time, so the 2TB-1 input rows they meet are each loaded once
// (3x the speed of one tap at a time, measured).
template <class T, int TB>
inline void fir_tile(T* __restrict y, const T* __restrict xp, const T* __restrict fp, int64_t ja,
                     int64_t jb, int64_t t0) {
  constexpr int64_t W = kLanes<T>;
  T acc[TB][W];
  for (int i = 0; i < TB; ++i)
    for (int64_t w = 0; w < W; ++w) acc[i][w] = y[i * W + w];
  const int64_t jfull = std::min(jb - 1, t0);  // taps valid for every token of the tile
  int64_t j = ja;
  for (; j + TB - 1 <= jfull; j += TB) {
    const T* fr = fp + j * W;
    const T* xr = xp + (t0 - j - (TB - 1)) * W;  // token t0+i, tap j+jj: row i - jj + TB-1
#pragma GCC unroll 16
    for (int jj = 0; jj < TB; ++jj)
#pragma GCC unroll 16
      for (int i = 0; i < TB; ++i)
#pragma omp simd
        for (int64_t w = 0; w < W; ++w) acc[i][w] += fr[jj * W + w] * xr[(i - jj + TB - 1) * W + w];
  }
  for (; j <= jfull; ++j) {
    const T* fr = fp + j * W;
    const T* xr = xp + (t0 - j) * W;
#pragma GCC unroll 16
    for (int i = 0; i < TB; ++i)
#pragma omp simd
      for (int64_t w = 0; w < W; ++w) acc[i][w] += fr[w] * xr[i * W + w];
  }
  const int64_t jend = std::min(jb - 1, t0 + TB - 1);
  for (j = std::max(ja, jfull + 1); j <= jend; ++j) {  // x[t-j] = 0 for t < j
    const T* fr = fp + j * W;
    for (int64_t i = j - t0; i < TB; ++i) {
      const T* xr = xp + (t0 + i - j) * W;
      for (int64_t w = 0; w < W; ++w) acc[i][w] += fr[w] * xr[w];
    }
  }
  for (int i = 0; i < TB; ++i)
    for (int64_t w = 0; w < W; ++w) y[i * W + w] = acc[i][w];
}

// out = skip * x + FIR(x) for B sequences, causal, or anti-causal when reversed (for du):
// a reversed view starts at the last row and steps back, turning sum_j f[j] x[s+j] causal.
// A task is one sequence x W channels, packed once (strided rows are slow to gather, so each is
// read once); tokens go in blocks of TBLK and taps in blocks of JBLK so that the rows a block
// reads (JBLK taps, TBLK + JBLK inputs, 64 bytes each) stay in L1.
template <class T>
void fir_direct(T* out, const T* in, const T* f, const T* skip, int64_t B, int64_t N, int64_t d,
                int64_t M, bool reversed) {
  constexpr int64_t W = kLanes<T>, TBLK = 64, JBLK = 128;
  const std::vector<T> fP = pack_taps(f, d, M);
  const int64_t nchunk = (d + W - 1) / W;
  const int64_t is = reversed ? -d : d;
  const double work = double(B) * double(N) * double(d) * double(std::min(N, M));
#pragma omp parallel if (parallel_worth(work))
  {
    std::vector<T> xp(size_t(N * W));     // [N, W] inputs
    std::vector<T> yp(size_t(TBLK * W));  // [TBLK, W] outputs
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t ch = 0; ch < nchunk; ++ch) {
        const T* ib = in + b * N * d + (reversed ? (N - 1) * d : 0);
        T* ob = out + b * N * d + (reversed ? (N - 1) * d : 0);
        const int64_t c0 = ch * W, wc = std::min(W, d - c0);
        pack_rows(xp.data(), ib, 0, N, is, c0, wc);
        const T* fp = fP.data() + ch * M * W;
        for (int64_t ta = 0; ta < N; ta += TBLK) {
          const int64_t te = std::min(N, ta + TBLK);
          for (int64_t t = ta; t < te; ++t)
            for (int64_t w = 0; w < W; ++w)
              yp[(t - ta) * W + w] = (w < wc ? skip[c0 + w] : T(0)) * xp[t * W + w];
          // Taps j > te - 1 meet only inputs before token 0.
          for (int64_t ja = 0; ja < std::min(M, te); ja += JBLK) {
            const int64_t jb = std::min(M, ja + JBLK);
            int64_t t = ta;
            for (; t + kTile <= te; t += kTile)
              fir_tile<T, kTile>(yp.data() + (t - ta) * W, xp.data(), fp, ja, jb, t);
            for (; t < te; ++t) fir_tile<T, 1>(yp.data() + (t - ta) * W, xp.data(), fp, ja, jb, t);
          }
          for (int64_t t = ta; t < te; ++t)
            for (int64_t w = 0; w < wc; ++w) ob[t * is + c0 + w] = yp[(t - ta) * W + w];
        }
      }
  }
}

// g[jj, :] += sum_{t in [ta, te)} dy[t] * u[t - j0 - jj] (terms with t - j0 - jj < 0 are zero)
// for lags j0 + jj, jj < JB, on one packed chunk of one sequence: dyp and up are [N, W], g is
// [JB, W]. Tokens go JB at a time so that the 2JB-1 rows of u they meet are loaded once.
template <class T, int JB>
inline void corr_tile(T* __restrict g, const T* __restrict dyp, const T* __restrict up, int64_t ta,
                      int64_t te, int64_t j0) {
  constexpr int64_t W = kLanes<T>;
  T acc[JB][W];
  for (int jj = 0; jj < JB; ++jj)
    for (int64_t w = 0; w < W; ++w) acc[jj][w] = g[jj * W + w];
  const int64_t tfull = std::clamp<int64_t>(j0 + JB - 1, ta, te);  // from here all lags valid
  for (int64_t t = std::max(ta, j0); t < tfull; ++t)
    for (int64_t jj = 0; jj <= t - j0; ++jj)
      for (int64_t w = 0; w < W; ++w) acc[jj][w] += dyp[t * W + w] * up[(t - j0 - jj) * W + w];
  int64_t t = tfull;
  for (; t + JB <= te; t += JB) {
    const T* dr = dyp + t * W;
    const T* ur = up + (t - j0 - (JB - 1)) * W;  // token t+tt, lag j0+jj: row tt - jj + JB-1
#pragma GCC unroll 16
    for (int tt = 0; tt < JB; ++tt)
#pragma GCC unroll 16
      for (int jj = 0; jj < JB; ++jj)
#pragma omp simd
        for (int64_t w = 0; w < W; ++w)
          acc[jj][w] += dr[tt * W + w] * ur[(tt - jj + JB - 1) * W + w];
  }
  for (; t < te; ++t) {
    const T* dr = dyp + t * W;
    const T* ur = up + (t - j0) * W;
#pragma GCC unroll 16
    for (int jj = 0; jj < JB; ++jj)
#pragma omp simd
      for (int64_t w = 0; w < W; ++w) acc[jj][w] += dr[w] * ur[w - jj * W];
  }
  for (int jj = 0; jj < JB; ++jj)
    for (int64_t w = 0; w < W; ++w) g[jj * W + w] = acc[jj][w];
}

template <class T>
void fir_direct_backward(T* du, T* df, T* dskip, const T* dy, const T* u, const T* f, const T* skip,
                         int64_t B, int64_t N, int64_t d, int64_t M) {
  // du[s] = skip dy[s] + sum_j f[j] dy[s+j]: the forward kernel on time-reversed views.
  fir_direct(du, dy, f, skip, B, N, d, M, true);
  // df[c, j] += sum_{b,t} dy[b,t,c] u[b,t-j,c] and dskip[c] += sum_{b,t} dy u, per chunk of
  // channels (disjoint outputs, so no reduction across threads).
  constexpr int64_t W = kLanes<T>, JB = kTile, TBLK = 128;
  const int64_t nchunk = (d + W - 1) / W, njb = (M + JB - 1) / JB;
  const double work = double(B) * double(N) * double(d) * double(std::min(N, M));
#pragma omp parallel if (parallel_worth(work))
  {
    std::vector<T> dyp(size_t(N * W)), up(size_t(N * W));  // [N, W]
    std::vector<T> dfp(size_t(njb * JB * W));              // [njb * JB, W]
#pragma omp for schedule(dynamic)
    for (int64_t ch = 0; ch < nchunk; ++ch) {
      const int64_t c0 = ch * W, wc = std::min(W, d - c0);
      std::fill(dfp.begin(), dfp.end(), T(0));
      double ds[W] = {};
      for (int64_t b = 0; b < B; ++b) {
        pack_rows(dyp.data(), dy + b * N * d, 0, N, d, c0, wc);
        pack_rows(up.data(), u + b * N * d, 0, N, d, c0, wc);
        // Token blocks of TBLK keep the dy rows and the sliding window of u rows in L1.
        for (int64_t ta = 0; ta < N; ta += TBLK) {
          const int64_t te = std::min(N, ta + TBLK);
          for (int64_t jb = 0; jb < njb && jb * JB < te; ++jb)
            corr_tile<T, JB>(dfp.data() + jb * JB * W, dyp.data(), up.data(), ta, te, jb * JB);
        }
        for (int64_t t = 0; t < N; ++t)
          for (int64_t w = 0; w < W; ++w) ds[w] += double(dyp[t * W + w]) * up[t * W + w];
      }
      for (int64_t w = 0; w < wc; ++w) {
        for (int64_t j = 0; j < M; ++j) df[(c0 + w) * M + j] += dfp[j * W + w];
        dskip[c0 + w] += T(ds[w]);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Method choice.

// Auto's cost model, in units of one direct-method MAC (a channel x tap x token):
//   direct: forward B d sum_t min(t+1, M) MACs; backward twice that (du and df);
//   fft:    kFftPointCost per point of a length-L transform, L log2 L points each: forward
//           2 per sequence block plus d filter spectra, backward 3 per block plus 2 per channel.
// Measured on the 2-core dev machine (Xeon model 207, AVX-512), float, one thread, CPU time in
// ms, best of >= 5 runs; c = (fft ms / fft points) / (direct ms / direct MACs):
//   B  N      d    M     L x blocks  fwd direct  fwd fft  bwd direct  bwd fft  c fwd  c bwd
//   1  256    64   32    160 x 2       0.020     0.069     0.029     0.128     4.5    7.3
//   4  1024   64   32    160 x 8       0.335     1.065     0.667     1.683     5.4    5.7
//   1  256    384  128   384 x 1       0.209     0.798     0.435     1.368     9.5    9.4
//   1  1024   384  128   1152 x 1      1.157     2.345     2.067     4.223     7.1    8.6
//   1  512    768  64    576 x 1       0.833     2.360     1.523     4.103     5.5    6.3
//   1  256    768  512   768 x 1       0.844     2.854     1.600     5.123     5.0    5.7
//   1  1024   768  512   1536 x 1      6.136     8.242    12.728    15.068    10.8   11.5
//   4  1024   768  512   1536 x 1     30.684    29.411    53.617    58.701    10.3   15.1
//   1  2048   768  512   2560 x 1     12.709    14.847    27.001    26.062    12.3   12.2
//   1  4096   768  512   4608 x 1     32.436    40.224    57.079    59.172    14.5   14.5
//   1  1024   768  1024  2048 x 1      9.688    12.866    17.202    23.917    10.3   13.0
//   1  8192   256  1024  9216 x 1     31.191    28.767    66.566    51.433    19.9   20.0
//   1  8192   768  2048  10240 x 1   163.753    96.706   341.540   171.439    21.2   21.6
//   1  16384  64   4096  20480 x 1    49.423    16.427   107.568    30.829    22.2   23.0
// The direct kernel runs at 40-60 GMAC/s on one core and FFTW at ~0.3 ns per point, so Direct
// wins or ties at FELA's default sizes (M = 512, N <= 4096) and Fft wins for long filters and
// sequences. c grows with L (cache misses); 16 is set where the choice is close, and picks the
// faster method in every row above but two within 5% of a tie.
constexpr double kFftPointCost = 16.0;

bool prefer_fft(int64_t B, int64_t N, int64_t d, int64_t M, bool backward) {
  const double taps = N <= M ? 0.5 * double(N) * double(N + 1)
                             : 0.5 * double(M) * double(M + 1) + double(N - M) * double(M);
  const double direct = double(B) * double(d) * taps * (backward ? 2.0 : 1.0);
  const FftGeom g = fft_geom(N, M);
  const double transforms =
      backward ? 3.0 * double(B * g.nblk) + 2.0 : 2.0 * double(B * g.nblk) + 1.0;
  const double fft = kFftPointCost * double(d) * transforms * double(g.L) * std::log2(double(g.L));
  return fft < direct;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Entry points.

template <class T>
void fno_filter_forward(T* f, const T* k_re, const T* k_im, int64_t d, int64_t modes, int64_t M) {
  using C = std::complex<T>;
  const auto& pl = real_plans<T>(M);
  const int64_t H = M / 2 + 1;
  const T inv_M = T(1.0 / double(M));
#pragma omp parallel if (parallel_worth(double(d) * double(M)))
  {
    FftwBuf<T, T> x(M);
    FftwBuf<T, C> X(H);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < d; ++c) {
      C* Xc = X.get();
      for (int64_t k = 0; k < H; ++k)
        Xc[k] = k < modes ? C(k_re[c * modes + k], k_im[c * modes + k]) : C(0);
      Xc[0].imag(0);  // irfft ignores Im of DC and, for even M, of Nyquist
      if (M % 2 == 0) Xc[M / 2].imag(0);
      Fftw<T>::c2r(pl.c2r, Xc, x.get());
      for (int64_t j = 0; j < M; ++j) f[c * M + j] = x.get()[j] * inv_M;
    }
  }
}

template <class T>
void fno_filter_backward(T* dk_re, T* dk_im, const T* df, int64_t d, int64_t modes, int64_t M) {
  using C = std::complex<T>;
  const auto& pl = real_plans<T>(M);
  // dK_k = w_k / M * rfft(df)_k with w_k the irfft bin weight (1 for DC/Nyquist, else 2).
#pragma omp parallel if (parallel_worth(double(d) * double(M)))
  {
    FftwBuf<T, T> x(M);
    FftwBuf<T, C> X(M / 2 + 1);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < d; ++c) {
      std::copy(df + c * M, df + c * M + M, x.get());
      Fftw<T>::r2c(pl.r2c, x.get(), X.get());
      for (int64_t k = 0; k < modes; ++k) {
        const bool edge = k == 0 || 2 * k == M;
        const T w = T((edge ? 1.0 : 2.0) / double(M));
        dk_re[c * modes + k] += w * X.get()[k].real();
        if (!edge) dk_im[c * modes + k] += w * X.get()[k].imag();
      }
    }
  }
}

template <class T>
void fno_conv_forward(T* y, const T* u, const T* f, const T* skip, int64_t B, int64_t N, int64_t d,
                      int64_t M, FirMethod method) {
  if (B * N * d == 0) return;
  if (method == FirMethod::Auto)
    method = prefer_fft(B, N, d, M, false) ? FirMethod::Fft : FirMethod::Direct;
  if (method == FirMethod::Fft)
    fir_fft_forward(y, u, f, skip, B, N, d, M);
  else
    fir_direct(y, u, f, skip, B, N, d, M, false);
}

template <class T>
void fno_conv_backward(T* du, T* df, T* dskip, const T* dy, const T* u, const T* f, const T* skip,
                       int64_t B, int64_t N, int64_t d, int64_t M, FirMethod method) {
  if (B * N * d == 0) return;
  if (method == FirMethod::Auto)
    method = prefer_fft(B, N, d, M, true) ? FirMethod::Fft : FirMethod::Direct;
  if (method == FirMethod::Fft)
    fir_fft_backward(du, df, dskip, dy, u, f, skip, B, N, d, M);
  else
    fir_direct_backward(du, df, dskip, dy, u, f, skip, B, N, d, M);
}

// Generation step. Memory-bound (the ring, B x (M-1) x d, and f are each read once per step),
// so the loops follow memory: a task owns a range of channels; lags go in blocks of 16, for
// which each channel's taps are one cache line of f, turned lag-major in L1, and each lag's
// ring row is read contiguously over the task's channels.
// A 64-byte SIMD vector of T (GCC/Clang vector extension).
template <class T>
struct Vec64;
template <>
struct Vec64<float> {
  typedef float type __attribute__((vector_size(64)));
};
template <>
struct Vec64<double> {
  typedef double type __attribute__((vector_size(64)));
};

// y[w] += sum_{jj < nj} fT[jj][w] * ring[slots[jj], w] for w < wc lanes.
template <class T>
inline void step_lags(T* __restrict y, const T* __restrict ring, const T (*fT)[kLanes<T>],
                      const int64_t* slots, int64_t nj, int64_t d, int64_t wc) {
  constexpr int64_t W = kLanes<T>;
  if (wc == W) {  // one 64-byte vector; a plain T[W] accumulator was kept on the stack
    using V = typename Vec64<T>::type;
    V acc = {}, r, fv;
    for (int64_t jj = 0; jj < nj; ++jj) {
      std::memcpy(&r, ring + slots[jj] * d, sizeof(V));
      std::memcpy(&fv, fT[jj], sizeof(V));
      acc += fv * r;
    }
    for (int64_t w = 0; w < W; ++w) y[w] += acc[w];
    return;
  }
  for (int64_t w = 0; w < wc; ++w) {
    T acc = 0;
    for (int64_t jj = 0; jj < nj; ++jj) acc += fT[jj][w] * ring[slots[jj] * d + w];
    y[w] += acc;
  }
}

template <class T>
void fno_conv_step(T* y, T* ring, const T* u, const T* f, const T* skip, int64_t B, int64_t d,
                   int64_t M, int64_t t) {
  constexpr int64_t W = kLanes<T>, JB = 16, CR = 8 * W;  // lanes, lags per block, task width
  const int64_t R = M - 1, s0 = R > 0 ? t % R : 0;       // slot of token t (and of t - R)
  const int64_t ntask = (d + CR - 1) / CR;
  const double work = double(B) * double(d) * double(M);
#pragma omp parallel for schedule(static) if (parallel_worth(work))
  for (int64_t task = 0; task < ntask; ++task) {
    const int64_t ca = task * CR, ce = std::min(d, ca + CR);
    for (int64_t b = 0; b < B; ++b)  // lag 0 and skip: y = (f[c, 0] + skip[c]) u
      for (int64_t c = ca; c < ce; ++c) y[b * d + c] = (f[c * M] + skip[c]) * u[b * d + c];
    T fT[JB][W];  // taps of one block of lags for one chunk, lag-major
    for (int64_t j0 = 1; j0 <= R; j0 += JB) {
      const int64_t nj = std::min(JB, R + 1 - j0);
      int64_t slots[JB];  // lag j reads slot (t - j) mod R; j = R reads slot s0
      for (int64_t jj = 0; jj < nj; ++jj) slots[jj] = ((s0 - j0 - jj) % R + R) % R;
      for (int64_t c0 = ca; c0 < ce; c0 += W) {
        const int64_t wc = std::min(W, ce - c0);
        for (int64_t w = 0; w < wc; ++w)
          for (int64_t jj = 0; jj < nj; ++jj) fT[jj][w] = f[(c0 + w) * M + j0 + jj];
        for (int64_t b = 0; b < B; ++b) {
          const T* rb = ring + b * R * d + c0;
          step_lags(y + b * d + c0, rb, fT, slots, nj, d, wc);
        }
      }
    }
    if (R > 0)  // after every read of slot s0 (lag R) in this task's channels
      for (int64_t b = 0; b < B; ++b)
        std::copy(u + b * d + ca, u + b * d + ce, ring + (b * R + s0) * d + ca);
  }
}

FELA_INSTANTIATE_FLOAT(fno_filter_forward)
FELA_INSTANTIATE_FLOAT(fno_filter_backward)
FELA_INSTANTIATE_FLOAT(fno_conv_forward)
FELA_INSTANTIATE_FLOAT(fno_conv_backward)
FELA_INSTANTIATE_FLOAT(fno_conv_step)

}  // namespace fela::ops::cpu
