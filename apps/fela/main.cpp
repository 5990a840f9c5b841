// fela: one binary, one subcommand per job. Errors are one line on stderr and exit status 1
// (2 for command-line usage errors); nothing is printed as a stack trace.
#include <cstdio>
#include <exception>
#include <new>

#include "commands.h"
#include "fela/core/error.h"
#include "fela/core/threads.h"

int main(int argc, char** argv) {
  fela::select_blas_kernels(argv);
  CLI::App app{"fela: train, evaluate and serve FELA language models"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every subcommand");
  fela::cli::register_info(app);
  fela::cli::register_tokenize(app);
  fela::cli::register_generate(app);
  fela::cli::register_train(app);
  fela::cli::register_eval(app);
  fela::cli::register_prepare(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "fela: error: %s (see 'fela --help')\n", e.what());
    return 2;
  } catch (const fela::Error& e) {
    std::fprintf(stderr, "fela: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "fela: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fela: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
