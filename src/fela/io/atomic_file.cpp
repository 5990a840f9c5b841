// Atomic file writes and checkpoint-directory replacement on POSIX (open/fsync/rename); the
// crash-safety argument is in atomic_file.h.
#include "fela/io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "fela/core/error.h"

namespace fela::io {
namespace {

namespace fs = std::filesystem;

std::string errno_text(int e) { return std::strerror(e); }

// Closes a descriptor on scope exit (error paths included).
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
};

// "ckpt/" and "ckpt" name the same directory; the suffixes below need the bare name.
std::string strip_slashes(const std::string& p) {
  std::string s = p;
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

std::string parent_of(const std::string& p) {
  const fs::path parent = fs::path(p).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

// True when something (file, directory or link) exists under the name.
bool present(const std::string& p) {
  struct stat st;
  if (::lstat(p.c_str(), &st) == 0) return true;
  if (errno == ENOENT || errno == ENOTDIR) return false;
  fail("[io] cannot inspect ", p, ": ", errno_text(errno));
}

void fsync_fd(int fd, const std::string& what) {
  int rc;
  do rc = ::fsync(fd);
  while (rc != 0 && errno == EINTR);
  // Some file systems cannot sync directories (EINVAL); there is nothing more to do there.
  if (rc != 0 && errno != EINVAL && errno != EROFS)
    fail("[io] cannot sync ", what, ": ", errno_text(errno));
}

void fsync_path(const std::string& p, bool directory) {
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
  if (fd < 0) fail("[io] cannot open ", p, " to sync it: ", errno_text(errno));
  FdGuard guard{fd};
  fsync_fd(fd, p);
}

void rename_or_fail(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0)
    fail("[io] cannot rename ", from, " to ", to, ": ", errno_text(errno));
}

void remove_all_or_fail(const std::string& p) {
  std::error_code ec;
  fs::remove_all(p, ec);
  if (ec) fail("[io] cannot remove ", p, ": ", ec.message());
}

// Makes every file and directory under root durable before root is renamed into place.
void sync_tree(const std::string& root) {
  std::error_code ec;
  for (fs::recursive_directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::file_status st = it->symlink_status(ec);
    if (ec) break;
    if (fs::is_regular_file(st)) fsync_path(it->path().string(), false);
    if (fs::is_directory(st)) fsync_path(it->path().string(), true);
  }
  if (ec) fail("[io] cannot list ", root, ": ", ec.message());
  fsync_path(root, true);
}

// pid + counter: unique among live processes and among calls within one process.
std::string unique_suffix() {
  static std::atomic<uint64_t> counter{0};
  return std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

// True when name is prefix followed by "DIGITS-DIGITS", the shape unique_suffix() gives.
bool is_staging_name(const std::string& name, const std::string& prefix) {
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return false;
  const std::string rest = name.substr(prefix.size());
  const size_t dash = rest.find('-');
  if (dash == std::string::npos || dash == 0 || dash + 1 == rest.size()) return false;
  auto digits = [](std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  return digits(std::string_view(rest).substr(0, dash)) &&
         digits(std::string_view(rest).substr(dash + 1));
}

std::string checked_dir_name(const std::string& dir, const char* what) {
  const std::string d = strip_slashes(dir);
  const std::string base = fs::path(d).filename().string();
  FELA_CHECK(!base.empty() && base != "/" && base != "." && base != "..", "[io] ", what, ": ", dir,
             " does not name a directory that can be replaced");
  return d;
}

}  // namespace

AtomicFileWriter::AtomicFileWriter(const std::string& path) : path_(path) {
  const fs::path p(path);
  FELA_CHECK(!p.filename().empty(), "[io] cannot write ", path, ": not a file name");
  for (int attempt = 0;; ++attempt) {
    std::string name = ".";  // hidden, so that listings of the directory stay readable
    name += p.filename().string();
    name += ".tmp-";
    name += unique_suffix();
    tmp_ = (p.parent_path() / name).string();
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ >= 0) break;
    // EEXIST: a stale temp file of a dead process with a recycled pid; pick another name.
    if (errno != EEXIST || attempt >= 100)
      fail("[io] cannot write ", path, ": ", errno_text(errno));
  }
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void AtomicFileWriter::write(const void* data, size_t n) {
  FELA_CHECK(fd_ >= 0, "[io] cannot write ", path_, ": the file was already committed");
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, std::min<size_t>(n, size_t(1) << 30));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail("[io] cannot write ", path_, ": ", w < 0 ? errno_text(errno) : "no progress");
    p += w;
    n -= size_t(w);
  }
}

void AtomicFileWriter::commit() {
  FELA_CHECK(fd_ >= 0, "[io] cannot write ", path_, ": the file was already committed");
  fsync_fd(fd_, tmp_);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("[io] cannot write ", path_, ": ", errno_text(errno));
  rename_or_fail(tmp_, path_);
  committed_ = true;
  fsync_path(parent_of(path_), true);
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  AtomicFileWriter w(path);
  w.write(bytes);
  w.commit();
}

std::string read_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("[io] cannot read ", path, ": ", errno_text(errno));
  FdGuard guard{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) fail("[io] cannot read ", path, ": ", errno_text(errno));
  if (S_ISDIR(st.st_mode)) fail("[io] cannot read ", path, ": ", errno_text(EISDIR));
  std::string out;
  if (S_ISREG(st.st_mode)) out.reserve(size_t(st.st_size));
  char buf[1 << 16];
  for (;;) {
    const ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail("[io] cannot read ", path, ": ", errno_text(errno));
    if (r == 0) break;
    out.append(buf, size_t(r));
  }
  return out;
}

std::string staging_dir_for(const std::string& final_dir) {
  return checked_dir_name(final_dir, "staging_dir_for") + ".staging-" + unique_suffix();
}

void replace_directory_atomic(const std::string& staged_dir, const std::string& final_dir) {
  const std::string fin = checked_dir_name(final_dir, "replace_directory_atomic");
  const std::string staged = strip_slashes(staged_dir), old = fin + ".old";
  std::error_code ec;
  FELA_CHECK(fs::is_directory(staged, ec), "[io] cannot install ", staged_dir, " as ", final_dir,
             ": ", staged_dir, " is not a directory");
  const std::string parent = parent_of(fin), staged_parent = parent_of(staged);

  sync_tree(staged);
  if (staged_parent != parent) fsync_path(staged_parent, true);

  if (present(fin)) {
    // fin is complete, so an old beside it is a leftover and may go.
    if (present(old)) remove_all_or_fail(old);
    rename_or_fail(fin, old);
    fsync_path(parent, true);
  }
  // Otherwise old, if present, is the last complete checkpoint (a crash between steps 2 and
  // 3): it stays until the new one is in place.
  try {
    rename_or_fail(staged, fin);
  } catch (const Error&) {
    if (present(old) && !present(fin)) ::rename(old.c_str(), fin.c_str());
    throw;
  }
  fsync_path(parent, true);
  if (staged_parent != parent) fsync_path(staged_parent, true);

  if (present(old)) {
    remove_all_or_fail(old);
    fsync_path(parent, true);
  }
}

void recover_directory(const std::string& final_dir) {
  const std::string fin = checked_dir_name(final_dir, "recover_directory");
  const std::string old = fin + ".old", parent = parent_of(fin);
  if (!present(parent)) return;
  bool changed = false;
  if (present(fin)) {
    if (present(old)) {
      remove_all_or_fail(old);
      changed = true;
    }
  } else if (present(old)) {
    rename_or_fail(old, fin);
    changed = true;
  }
  // Staging directories are never complete as far as anyone can tell: remove them.
  const std::string prefix = fs::path(fin).filename().string() + ".staging-";
  std::vector<std::string> stale;  // collected first: no removal while the listing runs
  std::error_code ec;
  for (fs::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec))
    if (is_staging_name(it->path().filename().string(), prefix)) stale.push_back(it->path());
  if (ec) fail("[io] cannot list ", parent, ": ", ec.message());
  for (const std::string& s : stale) remove_all_or_fail(s);
  changed = changed || !stale.empty();
  if (changed) fsync_path(parent, true);
}

}  // namespace fela::io
