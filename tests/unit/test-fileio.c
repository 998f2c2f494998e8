/* fileio: atomic writes (including a crash between write and rename), capped
 * reads, rm_rf_at's refusal to follow symlinks or cross mounts, mkdir_p; fdio's
 * high range for long-lived descriptors. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/close_range.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tap.h"

#include "cloche/cleanup.h"
#include "cloche/fdio.h"
#include "cloche/fileio.h"

static char tmpdir[PATH_MAX];

static bool exists_at(int dirfd, const char *name)
{
    struct stat st;
    return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static bool content_is(int dirfd, const char *name, const char *want)
{
    _cleanup_free_ char *buf = NULL;
    size_t len;
    if (read_file_at(dirfd, name, 1 << 20, &buf, &len) < 0)
        return false;
    return len == strlen(want) && strcmp(buf, want) == 0;
}

static int put_file(int dirfd, const char *name, const char *content)
{
    _cleanup_close_ int fd = openat(dirfd, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    size_t len = strlen(content);
    return write(fd, content, len) == (ssize_t)len ? 0 : -EIO;
}

static void test_temp_name(void)
{
    char buf[NAME_MAX + 1];
    is_int(atomic_write_temp_name("state.json", buf, sizeof(buf)), 0, "temp name");
    is_str(buf, ".state.json.tmp", "temp name is .NAME.tmp");
    is_int(atomic_write_temp_name("state.json", buf, 8), -ENOBUFS, "temp name: small buffer");
    is_int(atomic_write_temp_name("a/b", buf, sizeof(buf)), -EINVAL, "temp name: no slashes");
    is_int(atomic_write_temp_name("", buf, sizeof(buf)), -EINVAL, "temp name: not empty");
    char longname[NAME_MAX + 1];
    memset(longname, 'x', NAME_MAX);
    longname[NAME_MAX] = '\0';
    is_int(atomic_write_temp_name(longname, buf, sizeof(buf)), -ENAMETOOLONG,
           "temp name: too long");
}

static void test_atomic_write(int dfd)
{
    struct stat st;

    is_int(atomic_write_at(dfd, "f", "one", 3, 0640), 0, "atomic write creates");
    ok(content_is(dfd, "f", "one"), "created content");
    ok(fstatat(dfd, "f", &st, 0) == 0 && (st.st_mode & 07777) == 0640, "mode set exactly");
    ok(!exists_at(dfd, ".f.tmp"), "no temp file after write");

    is_int(atomic_write_at(dfd, "f", "second", 6, 0600), 0, "atomic write replaces");
    ok(content_is(dfd, "f", "second"), "replaced content");
    ok(fstatat(dfd, "f", &st, 0) == 0 && (st.st_mode & 07777) == 0600, "mode replaced");
    ok(!exists_at(dfd, ".f.tmp"), "no temp file after replace");

    is_int(atomic_write_at(dfd, "empty", "", 0, 0600), 0, "atomic write of nothing");
    ok(content_is(dfd, "empty", ""), "empty content");
    is_int(atomic_write_at(dfd, "x/y", "z", 1, 0600), -EINVAL, "name with '/' refused");

    /* An O_PATH directory fd works too (the directory fsync reopens it). */
    _cleanup_close_ int pfd = openat(dfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    is_int(atomic_write_at(pfd, "p", "path", 4, 0600), 0, "atomic write via O_PATH dirfd");
    ok(content_is(dfd, "p", "path"), "content via O_PATH dirfd");

    /* Crash between write and rename: the new content is staged (fsynced) but
     * never committed. */
    is_int(atomic_write_at(dfd, "state", "old content", 11, 0600), 0, "write old content");
    const char *next = "new content, longer than the old";
    is_int(atomic_write_stage(dfd, "state", next, strlen(next), 0600), 0, "stage new content");
    ok(content_is(dfd, "state", "old content"), "crash before rename: old content intact");
    ok(content_is(dfd, ".state.tmp", next), "crash before rename: temp file is complete");
    const char *later = "later";
    is_int(atomic_write_at(dfd, "state", later, strlen(later), 0600), 0,
           "a later atomic write succeeds over the leftover temp");
    ok(content_is(dfd, "state", later), "later content");
    ok(!exists_at(dfd, ".state.tmp"), "leftover temp consumed");

    /* Stage then commit is the same as atomic_write_at. */
    is_int(atomic_write_stage(dfd, "state", "staged", 6, 0600), 0, "stage");
    is_int(atomic_write_commit(dfd, "state"), 0, "commit");
    ok(content_is(dfd, "state", "staged"), "committed content");
    is_int(atomic_write_commit(dfd, "state"), -ENOENT, "commit without stage");

    /* A symlink planted at the temp name is not followed. */
    ok(put_file(dfd, "victim", "precious") == 0, "make symlink target");
    ok(symlinkat("victim", dfd, ".g.tmp") == 0, "plant symlink at temp name");
    is_int(atomic_write_at(dfd, "g", "evil", 4, 0600), -ELOOP, "temp symlink refused");
    ok(content_is(dfd, "victim", "precious"), "symlink target untouched");
    ok(!exists_at(dfd, "g"), "nothing written under the final name");
}

static void test_read_file(int dfd)
{
    char data[100];
    memset(data, 'a', sizeof(data));
    is_int(atomic_write_at(dfd, "hundred", data, sizeof(data), 0600), 0, "write 100 bytes");

    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    is_int(read_file_at(dfd, "hundred", 100, &buf, &len), 0, "read at cap");
    is_int(len, 100, "length at cap");
    ok(buf && buf[100] == '\0' && memcmp(buf, data, 100) == 0, "content, NUL-terminated");
    free(TAKE_PTR(buf));

    is_int(read_file_at(dfd, "hundred", 99, &buf, &len), -EFBIG, "over cap: -EFBIG");
    ok(buf == NULL, "over cap: output untouched");
    is_int(read_file_at(dfd, "hundred", 0, &buf, &len), -EFBIG, "cap 0: -EFBIG");
    is_int(read_file_at(dfd, "missing", 100, &buf, &len), -ENOENT, "missing: -ENOENT");
    is_int(read_file_at(dfd, "empty", 0, &buf, NULL), 0, "empty file within cap 0");
    is_str(buf, "", "empty content");
    free(TAKE_PTR(buf));

    ok(symlinkat("hundred", dfd, "link") == 0, "symlink");
    is_int(read_file_at(dfd, "link", 1000, &buf, &len), -ELOOP, "symlink not followed");
    ok(mkdirat(dfd, "adir", 0700) == 0, "directory");
    is_int(read_file_at(dfd, "adir", 1000, &buf, &len), -EISDIR, "directory refused");
    ok(mkfifoat(dfd, "fifo", 0600) == 0, "fifo");
    is_int(read_file_at(dfd, "fifo", 1000, &buf, &len), -EINVAL, "fifo refused, no hang");

    /* A larger file read through the growth path (st_size-based first guess). */
    size_t big = 300000;
    _cleanup_free_ char *bigdata = malloc(big);
    for (size_t i = 0; i < big; i++)
        bigdata[i] = (char)('a' + i % 26);
    is_int(atomic_write_at(dfd, "big", bigdata, big, 0600), 0, "write large file");
    is_int(read_file_at(dfd, "big", big, &buf, &len), 0, "read large file");
    ok(len == big && memcmp(buf, bigdata, big) == 0, "large content");
}

static void test_rm_rf(int dfd)
{
    /* outside/ must survive; tree/ links into it in every way. */
    ok(mkdirat(dfd, "outside", 0700) == 0, "outside dir");
    ok(put_file(dfd, "outside/keep", "keep") == 0, "outside file");
    ok(mkdirat(dfd, "tree", 0700) == 0 && mkdirat(dfd, "tree/a", 0700) == 0 &&
           mkdirat(dfd, "tree/a/b", 0700) == 0 && mkdirat(dfd, "tree/a/b/c", 0700) == 0 &&
           mkdirat(dfd, "tree/empty", 0700) == 0,
       "nested dirs");
    ok(put_file(dfd, "tree/a/b/c/file", "x") == 0 && put_file(dfd, "tree/.hidden", "h") == 0 &&
           put_file(dfd, "tree/a/f", "f") == 0,
       "files");
    char outside[PATH_MAX + 16];
    snprintf(outside, sizeof(outside), "%s/outside", tmpdir);
    ok(symlinkat(outside, dfd, "tree/a/abs_dir_link") == 0 &&
           symlinkat("../../outside/keep", dfd, "tree/a/rel_file_link") == 0 &&
           symlinkat("../../../outside", dfd, "tree/a/b/rel_dir_link") == 0 &&
           symlinkat("/nonexistent/dangling", dfd, "tree/dangling") == 0,
       "symlinks pointing outside");
    ok(mkfifoat(dfd, "tree/a/fifo", 0600) == 0, "fifo in tree");
    /* A directory without permissions is still emptied (we own it). */
    ok(mkdirat(dfd, "tree/a/locked", 0700) == 0 && put_file(dfd, "tree/a/locked/x", "x") == 0 &&
           fchmodat(dfd, "tree/a/locked", 0500, 0) == 0,
       "read-only directory");

    int r = rm_rf_at(dfd, "tree");
    if (geteuid() != 0 && r == -EACCES)
        ok(1, "# SKIP read-only directory is not removable without root");
    else
        is_int(r, 0, "rm_rf_at nested tree");
    if (exists_at(dfd, "tree")) {
        (void)fchmodat(dfd, "tree/a/locked", 0700, 0);
        is_int(rm_rf_at(dfd, "tree"), 0, "rm_rf_at nested tree, unlocked");
    }
    ok(!exists_at(dfd, "tree"), "tree gone");
    ok(content_is(dfd, "outside/keep", "keep"), "symlink targets outside survive");

    is_int(rm_rf_at(dfd, "tree"), 0, "missing tree is success");
    is_int(rm_rf_at(dfd, "no/such/parent"), 0, "missing parent is success");

    ok(symlinkat("outside", dfd, "toplink") == 0, "top-level symlink to a directory");
    is_int(rm_rf_at(dfd, "toplink"), 0, "rm_rf_at on a symlink");
    ok(!exists_at(dfd, "toplink") && content_is(dfd, "outside/keep", "keep"),
       "symlink removed, target kept");

    ok(put_file(dfd, "plain", "p") == 0, "plain file");
    is_int(rm_rf_at(dfd, "plain"), 0, "rm_rf_at on a file");
    ok(!exists_at(dfd, "plain"), "file gone");

    ok(mkdirat(dfd, "outside/sub", 0700) == 0 && put_file(dfd, "outside/sub/f", "f") == 0,
       "subdir with a file");
    is_int(rm_rf_at(dfd, "outside/sub/"), 0, "rm_rf_at with a path and trailing slash");
    ok(!exists_at(dfd, "outside/sub") && exists_at(dfd, "outside/keep"), "only sub removed");

    is_int(rm_rf_at(dfd, ""), -EINVAL, "empty name refused");
    is_int(rm_rf_at(dfd, "."), -EINVAL, "'.' refused");
    is_int(rm_rf_at(dfd, "outside/.."), -EINVAL, "'..' refused");
    is_int(rm_rf_at(AT_FDCWD, "/"), -EINVAL, "'/' refused");

    /* Too deep a tree is refused, not a stack or fd exhaustion. */
    ok(mkdirat(dfd, "deep", 0700) == 0, "deep root");
    char path[8192] = "deep";
    bool made = true;
    for (int i = 0; i < 300 && made; i++) {
        strcat(path, "/d");
        made = mkdirat(dfd, path, 0700) == 0;
    }
    ok(made, "300 levels");
    is_int(rm_rf_at(dfd, "deep"), -ELOOP, "over-deep tree: -ELOOP");
    /* deep/ + 60 levels, leaving 240 below: within the limit. */
    path[strlen("deep") + 2 * 60] = '\0';
    is_int(rm_rf_at(dfd, path), 0, "its lower part removes");
    is_int(rm_rf_at(dfd, "deep"), 0, "then the rest");
}

static int write_proc_file(const char *path, const char *content)
{
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = strlen(content);
    return write(fd, content, len) == (ssize_t)len ? 0 : -errno;
}

/* In a child with its own mount namespace: a tmpfs and a bind mount inside the tree
 * must stop rm_rf_at with -EBUSY and keep their contents. Exit status 0 = pass,
 * 77 = cannot test here, else the number of the failed check. */
static int mount_child(void)
{
    uid_t uid = geteuid();
    gid_t gid = getegid();
    if (unshare(CLONE_NEWNS) < 0) {
        /* Unprivileged: a user namespace mapping ourselves to its root. */
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
            return 77;
        char map[64];
        snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)uid);
        if (write_proc_file("/proc/self/setgroups", "deny") < 0 ||
            write_proc_file("/proc/self/uid_map", map) < 0)
            return 77;
        snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)gid);
        if (write_proc_file("/proc/self/gid_map", map) < 0)
            return 77;
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return 77;

    char tree[PATH_MAX + 16], mnt[PATH_MAX + 32], bind[PATH_MAX + 32], src[PATH_MAX + 16];
    snprintf(tree, sizeof(tree), "%s/mtree", tmpdir);
    snprintf(mnt, sizeof(mnt), "%s/mtree/tmpfs", tmpdir);
    snprintf(bind, sizeof(bind), "%s/mtree/bind", tmpdir);
    snprintf(src, sizeof(src), "%s/bindsrc", tmpdir);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=1m") < 0)
        return 77;
    if (mount(src, bind, NULL, MS_BIND, NULL) < 0)
        return 77;

    _cleanup_close_ int fd = open(mnt, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || put_file(fd, "inside", "i") < 0)
        return 1;
    if (rm_rf_at(AT_FDCWD, tree) != -EBUSY)
        return 2;
    if (!exists_at(fd, "inside"))
        return 3;
    _cleanup_close_ int sfd = open(src, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (sfd < 0 || !exists_at(sfd, "keep"))
        return 4; /* descended into the bind mount (same device) */
    if (rm_rf_at(AT_FDCWD, mnt) != -EBUSY)
        return 5; /* the mount point itself as the target */
    if (umount2(mnt, MNT_DETACH) < 0 || umount2(bind, MNT_DETACH) < 0)
        return 6;
    if (rm_rf_at(AT_FDCWD, tree) != 0)
        return 7;
    return 0;
}

static void test_rm_rf_mounts(int dfd)
{
    ok(mkdirat(dfd, "mtree", 0700) == 0 && mkdirat(dfd, "mtree/tmpfs", 0700) == 0 &&
           mkdirat(dfd, "mtree/bind", 0700) == 0 && put_file(dfd, "mtree/file", "f") == 0,
       "tree with mount points");
    ok(mkdirat(dfd, "bindsrc", 0700) == 0 && put_file(dfd, "bindsrc/keep", "k") == 0,
       "bind source");

    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        _exit(mount_child());
    int status = 0;
    ok(pid > 0 && waitpid(pid, &status, 0) == pid, "mount test child ran");
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
        ok(1, "# SKIP cannot create a mount namespace here");
    else
        is_int(WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status), 0,
               "mount points inside the tree: -EBUSY, contents kept");
    ok(content_is(dfd, "bindsrc/keep", "k"), "bind source intact");
    is_int(rm_rf_at(dfd, "mtree"), 0, "tree removable once unmounted");
}

static void test_mkdir_p(int dfd)
{
    char path[PATH_MAX + 64];
    struct stat st;

    snprintf(path, sizeof(path), "%s/m/a//b/c/", tmpdir);
    is_int(mkdir_p(path, 0700), 0, "mkdir_p nested");
    ok(fstatat(dfd, "m/a/b/c", &st, 0) == 0 && S_ISDIR(st.st_mode), "deepest exists");
    ok(fstatat(dfd, "m/a", &st, 0) == 0 && (st.st_mode & 07777) == 0700, "mode of created");
    is_int(mkdir_p(path, 0700), 0, "mkdir_p again is success");

    ok(put_file(dfd, "m/file", "f") == 0, "file in the way");
    snprintf(path, sizeof(path), "%s/m/file", tmpdir);
    is_int(mkdir_p(path, 0700), -ENOTDIR, "final component is a file");
    snprintf(path, sizeof(path), "%s/m/file/sub", tmpdir);
    is_int(mkdir_p(path, 0700), -ENOTDIR, "intermediate component is a file");
    is_int(mkdir_p("", 0700), -EINVAL, "empty path");
    is_int(mkdir_p("/", 0700), 0, "root exists");
}

/* In a child that shares our table: take its own, then whether it kept low and
 * dropped high (exit 0). */
static _Noreturn void child_sees(int low, int high)
{
    if (syscall(SYS_close_range, (unsigned)fd_high_base(), ~0U, CLOSE_RANGE_UNSHARE) < 0)
        _exit(3);
    _exit(fcntl(low, F_GETFD) >= 0 && fcntl(high, F_GETFD) < 0 && errno == EBADF ? 0 : 4);
}

/* Long-lived descriptors go high; a child cloned with CLONE_FILES drops them all
 * with one close_range(CLOSE_RANGE_UNSHARE), and the parent keeps them. */
static void test_fd_high(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 8192 && rl.rlim_max >= 8192) {
        rl.rlim_cur = rl.rlim_max > 65536 ? 65536 : rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    int base = fd_high_base();
    int low = eventfd(0, EFD_CLOEXEC);
    ok(low >= 0, "eventfd");
    if (base == 0) {
        is_int(fd_move_high(low), low, "without a high range nothing moves");
        close(low);
        ok(1, "# SKIP RLIMIT_NOFILE below 8192: no high range");
        return;
    }
    ok(getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
           base == (rl.rlim_cur / 2 > FD_HIGH_BASE_MAX ? FD_HIGH_BASE_MAX : (int)(rl.rlim_cur / 2)),
       "the high range starts at half the soft limit, at most %d (%d)", FD_HIGH_BASE_MAX, base);
    int moved = eventfd(0, EFD_CLOEXEC);
    int was = moved;
    moved = fd_move_high(moved);
    ok(moved >= base && (fcntl(moved, F_GETFD) & FD_CLOEXEC), "moved to %d, close-on-exec", moved);
    ok(fcntl(was, F_GETFD) < 0 && errno == EBADF, "the original is closed");
    /* clone3 without a stack: the child runs on a copy of ours, as after fork. */
    struct clone_args args = {.flags = CLONE_FILES, .exit_signal = SIGCHLD};
    pid_t pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
    if (pid == 0)
        child_sees(low, moved);
    int status = -1;
    bool reaped = pid > 0 && waitpid(pid, &status, 0) == pid;
    ok(reaped && WIFEXITED(status) && WEXITSTATUS(status) == 0 && fcntl(moved, F_GETFD) >= 0,
       "a CLONE_FILES child drops the high range (status %d), the parent keeps it", status);
    close(moved);
    close(low);
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/test-fileio.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        ok(0, "mkdtemp: %s", strerror(errno));
        return tap_done();
    }
    int dfd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ok(dfd >= 0, "open temp dir");

    test_temp_name();
    test_atomic_write(dfd);
    test_read_file(dfd);
    test_rm_rf(dfd);
    test_rm_rf_mounts(dfd);
    test_mkdir_p(dfd);
    test_fd_high();

    close(dfd);
    is_int(rm_rf_at(AT_FDCWD, tmpdir), 0, "remove temp dir");
    return tap_done();
}
