#include "fela/core/threads.h"

#include <omp.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

extern "C" void openblas_set_num_threads(int);
extern "C" char* openblas_get_corename(void);

namespace fela {

void set_num_threads(int n) {
  if (n <= 0) n = omp_get_num_procs();
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

void select_blas_kernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") || std::getenv("FELA_KEEP_BLAS_CORE")) return;
  const char* core = openblas_get_corename();
  if (!core || (std::strcmp(core, "Prescott") != 0 && std::strcmp(core, "Core2") != 0)) return;
  const char* want = nullptr;
  if (__builtin_cpu_supports("avx512bf16"))
    want = "Cooperlake";
  else if (__builtin_cpu_supports("avx512f"))
    want = "SkylakeX";
  else if (__builtin_cpu_supports("avx2"))
    want = "Haswell";
  if (!want) return;
  setenv("OPENBLAS_CORETYPE", want, 1);
  execv("/proc/self/exe", argv);  // returns only on failure: keep going with the slow kernels
}

}  // namespace fela
