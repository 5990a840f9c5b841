// Thread count for OpenMP and BLAS, set once from the CLI (--threads) or the environment.
#pragma once

namespace fela {

// Sets OpenMP's and OpenBLAS's thread counts; n <= 0 means all cores.
void set_num_threads(int n);
int num_threads();

}  // namespace fela

namespace fela {

// OpenBLAS 0.3.21 (Debian 12) does not recognise some newer Xeons: it falls back to its SSE3
// "Prescott" kernels, 3-4x slower than its AVX-512 ones on the same core. When that happens on
// a CPU with AVX-512 (or AVX2), this restarts the program once with OPENBLAS_CORETYPE naming
// the right kernels (the variable is read when the library loads, so a restart is the only
// way). Call it first thing in main(). Set FELA_KEEP_BLAS_CORE=1 to opt out.
void select_blas_kernels(char** argv);

}  // namespace fela
