// `fela prepare` as a user meets it: a small corpus gives a summary table and a directory that
// Dataset opens; each bad input gives exactly one error line, a non-zero exit and no output
// directory or staging leftovers; a foreign directory is refused; --help works.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "fela/data/dataset.h"
#include "fela/io/atomic_file.h"
#include "test_util.h"

using namespace fela;
using namespace fela::test;
namespace fs = std::filesystem;

namespace {

void write_bytes(const std::string& path, const std::string& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

int line_count(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

int staging_entries(const std::string& dir) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir))
    n += e.path().filename().string().find(".staging-") != std::string::npos;
  return n;
}

// Runs prepare with args into dir/out and expects one error line containing `what`, a
// non-zero exit, and nothing written.
void expect_prepare_error(const std::string& dir, const std::string& args,
                          const std::string& what) {
  const RunResult r = run_fela("prepare --out " + dir + "/out " + args);
  EXPECT_NE(r.status, 0) << args;
  EXPECT_EQ(line_count(r.err), 1) << args << ": " << r.err;
  EXPECT_NE(r.err.find("fela: error: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(what), std::string::npos) << args << ": " << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_FALSE(fs::exists(dir + "/out")) << args;
  EXPECT_EQ(staging_entries(dir), 0) << args;
}

}  // namespace

TEST(CliPrepare, SmallCorpusSucceedsWithSummary) {
  const std::string dir = temp_dir("cliprep");
  write_bytes(dir + "/corpus/a.txt", "The first document.\n");
  write_bytes(dir + "/corpus/b.txt", "The second one, a little longer.\n");
  write_bytes(dir + "/corpus/c.jsonl",
              "{\"text\": \"json doc one\"}\n{\"text\": \"json doc two\"}\n");
  const int64_t bytes = 20 + 33 + 12 + 12, docs = 4;
  const RunResult r = run_fela("prepare --vocab bytes --out " + dir +
                               "/out --val-fraction 0.25 "
                               "--seed 3 --threads 1 " +
                               dir + "/corpus");
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* word : {"train", "val", "documents", "text bytes", "tokens", "bytes/token"})
    EXPECT_NE(r.out.find(word), std::string::npos) << word << " missing in:\n" << r.out;
  EXPECT_NE(r.out.find(dir + "/out"), std::string::npos) << r.out;
  EXPECT_EQ(r.err.find("error"), std::string::npos) << r.err;

  const Dataset train(dir + "/out", "train"), val(dir + "/out", "val");
  EXPECT_EQ(train.num_documents() + val.num_documents(), docs);
  EXPECT_EQ(train.num_tokens() + val.num_tokens(), bytes + docs);
  EXPECT_EQ(train.text_bytes() + val.text_bytes(), bytes);
  EXPECT_GE(val.num_documents(), 1);

  // Preparing again into the previous output replaces it.
  const RunResult again = run_fela("prepare --vocab bytes --out " + dir + "/out --val-fraction 0 " +
                                   dir + "/corpus/a.txt");
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_EQ(Dataset(dir + "/out", "train").num_tokens(), 21);
  EXPECT_EQ(Dataset(dir + "/out", "val").num_tokens(), 0);
  EXPECT_EQ(staging_entries(dir), 0);
  EXPECT_FALSE(fs::exists(dir + "/out.old"));
}

TEST(CliPrepare, BadInputsGiveOneLineAndWriteNothing) {
  const std::string dir = temp_dir("clibad");
  write_bytes(dir + "/good.txt", "some text\n");
  write_bytes(dir + "/empty.txt", "");
  write_bytes(dir + "/notext.jsonl", "{\"text\": \"ok\"}\n{\"body\": \"no text here\"}\n");
  expect_prepare_error(dir, "--vocab bytes " + dir + "/missing.txt",
                       "missing.txt: no such file or directory");
  expect_prepare_error(dir, "--vocab bytes " + dir + "/empty.txt", "corpus is empty");
  expect_prepare_error(dir, "--vocab bytes " + dir + "/notext.jsonl",
                       "notext.jsonl:2: no \"text\" field");
  expect_prepare_error(dir, "--vocab klingon " + dir + "/good.txt", "unknown vocabulary 'klingon'");
  expect_prepare_error(dir, "--vocab bytes --val-fraction 2 " + dir + "/good.txt",
                       "--val-fraction");
  expect_prepare_error(dir, "--vocab bytes", "inputs");  // no INPUT (a usage error)
}

TEST(CliPrepare, RefusesAForeignDirectory) {
  const std::string dir = temp_dir("cliforeign");
  write_bytes(dir + "/good.txt", "some text\n");
  write_bytes(dir + "/mine/notes.txt", "keep me");
  const RunResult r = run_fela("prepare --vocab bytes --out " + dir + "/mine " + dir + "/good.txt");
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(line_count(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("not a previous prepare output"), std::string::npos) << r.err;
  EXPECT_EQ(io::read_file(dir + "/mine/notes.txt"), "keep me");
  EXPECT_EQ(staging_entries(dir), 0);
}

TEST(CliPrepare, Help) {
  const RunResult r = run_fela("prepare --help");
  EXPECT_EQ(r.status, 0) << r.err;
  for (const char* opt : {"--vocab", "--out", "--val-fraction", "--seed", "--threads", ".zst"})
    EXPECT_NE(r.out.find(opt), std::string::npos) << opt << " missing in:\n" << r.out;
}
