// Crash-safe file and directory replacement, used for checkpoints (SPEC.md §9) and any other
// file whose loss or half-written state would cost a run: a reader sees either the old
// complete content or the new complete content, never a mixture, even after a power cut.
//
// Files: the bytes go to a hidden temporary file in the same directory, which is fsync'ed,
// renamed over the target (rename(2) is atomic within a file system) and followed by an fsync
// of the directory so that the rename itself is durable.
//
// Checkpoint directories are replaced with three renames and two names besides final_dir:
//   staged  = staging_dir_for(final_dir)  (final_dir + ".staging-PID-N"), written by the caller
//   old     = final_dir + ".old"
//   1. sync every file in staged and staged itself;
//   2. if final_dir exists: remove any stale old, rename final_dir -> old, fsync the parent;
//   3. rename staged -> final_dir, fsync the parent;
//   4. remove old, fsync the parent.
// Crash-safety argument: final_dir only ever comes into being by an atomic rename of a
// complete directory (step 3, or recovery renaming old back), and old only by an atomic rename
// of a complete final_dir (step 2); old is only deleted (steps 2 and 4, or recovery) while
// final_dir exists. Hence at every instant either final_dir holds a complete checkpoint, or
// final_dir is absent and old holds the previous complete one (the instant between steps 2
// and 3). recover_directory() turns every such state back into "final_dir is complete" and
// deletes leftovers (old beside a complete final_dir, partly written staging directories).
// One writer per checkpoint directory is assumed: recovery deletes every staging directory
// of final_dir, including one that another live process might be filling.
#pragma once
#include <string>
#include <string_view>

namespace fela::io {

// Replaces path with bytes atomically (temp file in the same directory, fsync, rename,
// fsync of the directory). Throws "[io] cannot write PATH: reason"; no temp file is left.
void write_file_atomic(const std::string& path, std::string_view bytes);

// The whole content of a file. Throws "[io] cannot read PATH: reason".
std::string read_file(const std::string& path);

// Streams a large file to a temporary sibling of path and installs it on commit(), so that
// multi-GB tensors need not be assembled in memory. Without commit() (an exception on the
// way), the destructor removes the temporary file and path keeps its old content.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(const std::string& path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  // fsync, close, rename over path, fsync the directory.
  void commit();

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

// A fresh sibling name for staging a new version of final_dir: final_dir + ".staging-PID-N".
// The caller creates it, fills it and hands it to replace_directory_atomic.
std::string staging_dir_for(const std::string& final_dir);

// Installs staged_dir as final_dir (see the top of this file); final_dir may hold an older
// checkpoint, which is removed once the new one is in place. Both must be on one file system
// (siblings are). On an error before the new directory is in place, the old one is restored.
void replace_directory_atomic(const std::string& staged_dir, const std::string& final_dir);

// Repairs what a crash inside replace_directory_atomic can leave: restores final_dir from
// final_dir.old when final_dir is missing, removes final_dir.old when final_dir exists, and
// removes staging directories of final_dir. Does nothing when there is nothing to repair.
void recover_directory(const std::string& final_dir);

}  // namespace fela::io
