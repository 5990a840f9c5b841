// Thread count for OpenMP and BLAS, set once from the CLI (--threads) or the environment.
#pragma once

namespace fela {

// Sets OpenMP's and OpenBLAS's thread counts; n <= 0 means all cores.
void set_num_threads(int n);
int num_threads();

}  // namespace fela
