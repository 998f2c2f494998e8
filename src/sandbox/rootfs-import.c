/* Images on file systems that cannot be idmapped (see include/cloche/sandbox.h).
 *
 * An unprivileged container sees its image through an idmapped mount. Which file
 * systems allow one depends on the kernel: ext4, xfs and btrfs since 5.12, tmpfs
 * only since 6.3 (Debian 12's 6.1 refuses it with EINVAL), NFS and virtiofs not
 * at all there. Whether a tree can be idmapped is not guessed from its type: it
 * is probed, once per file system, with a throw-away user namespace.
 *
 * When the image cannot be idmapped but the depot can, the image is copied into
 * the depot once (cp -a, which keeps owners, modes, xattrs, links and devices)
 * and that copy is used. The copy's name is a fingerprint of the source's tree
 * (every entry's name, inode, type, mode, owner, size and times), so a changed
 * source makes a new copy while containers made from the old one keep theirs. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/magic.h>

#include "cloche/cleanup.h"
#include "cloche/fileio.h"
#include "cloche/sandbox.h"
#include "cloche/spawn.h"
#include "sandbox-internal.h"

#define PROBES_MAX 64         /* file systems whose answer is remembered */
#define WALK_DEPTH_MAX 256    /* directories deep, for the fingerprint */
#define IMPORT_PREFIX ".tmp-" /* a copy in progress */

typedef struct Probe {
    dev_t dev;
    int result;
} Probe;

static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;
static Probe probes[PROBES_MAX];
static size_t n_probes;
static pthread_mutex_t import_lock = PTHREAD_MUTEX_INITIALIZER;

const char *sandbox_fs_name(const char *path)
{
    static const struct {
        long magic;
        const char *name;
    } names[] = {
        {TMPFS_MAGIC, "tmpfs"},
        {RAMFS_MAGIC, "ramfs"},
        {EXT4_SUPER_MAGIC, "ext4"},
        {XFS_SUPER_MAGIC, "xfs"},
        {BTRFS_SUPER_MAGIC, "btrfs"},
        {NFS_SUPER_MAGIC, "nfs"},
        {0x65735546, "fuse (virtiofs)"},
        {OVERLAYFS_SUPER_MAGIC, "overlayfs"},
        {SQUASHFS_MAGIC, "squashfs"},
        {0xf2f52010, "f2fs"},
        {MSDOS_SUPER_MAGIC, "vfat"},
        {0xff534d42, "cifs"},
        {0x2fc12fc1, "zfs"},
    };
    struct statfs sf;
    if (statfs(path, &sf) < 0)
        return "an unreadable file system";
    for (size_t i = 0; i < ELEMENTSOF(names); i++)
        if (names[i].magic == (long)sf.f_type)
            return names[i].name;
    return "an unknown file system";
}

/* A user namespace of a child that waits on a pipe, with container root mapped
 * to host_id: enough for mount_setattr(MOUNT_ATTR_IDMAP). */
static int probe_userns(uint32_t host_id, int *ret)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    /* fork-like (no new stack): the child only reads and exits, both raw calls. */
    pid_t pid = (pid_t)syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid == 0) {
        char c;
        syscall(SYS_close, p[1]);
        (void)!syscall(SYS_read, p[0], &c, 1);
        syscall(SYS_exit_group, 0);
    }
    int r = pid < 0 ? -errno : 0;
    close(p[0]);
    char path[64], map[48];
    int n = snprintf(map, sizeof(map), "0 %u 1\n", host_id);
    for (int i = 0; r >= 0 && i < 2; i++) {
        snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, i ? "gid_map" : "uid_map");
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, map, (size_t)n) != n)
            r = -errno;
    }
    if (r >= 0) {
        snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
        *ret = open(path, O_RDONLY | O_CLOEXEC);
        if (*ret < 0)
            r = -errno;
    }
    close(p[1]); /* the child ends */
    if (pid > 0)
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    return r;
}

int sandbox_idmap_probe(const char *path, uint32_t host_id)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    pthread_mutex_lock(&probe_lock);
    for (size_t i = 0; i < n_probes; i++)
        if (probes[i].dev == st.st_dev) {
            int result = probes[i].result;
            pthread_mutex_unlock(&probe_lock);
            return result;
        }
    pthread_mutex_unlock(&probe_lock);

    _cleanup_close_ int userns = -EBADF;
    int r = probe_userns(host_id, &userns);
    if (r < 0)
        return r; /* not an answer about the file system: not remembered */
    _cleanup_close_ int tree = open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (tree < 0)
        return -errno;
    struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t)userns};
    int result = mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0 ? -errno : 0;

    pthread_mutex_lock(&probe_lock);
    if (n_probes < PROBES_MAX)
        probes[n_probes++] = (Probe){.dev = st.st_dev, .result = result};
    pthread_mutex_unlock(&probe_lock);
    return result;
}

/* ---- the fingerprint of a tree ---- */

static void fnv(uint64_t *h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        *h ^= p[i];
        *h *= 0x100000001b3ULL;
    }
}

static void fnv_stat(uint64_t *h, const char *name, const struct stat *st)
{
    fnv(h, name, strlen(name) + 1);
    uint64_t fields[] = {st->st_ino,
                         st->st_mode,
                         st->st_uid,
                         st->st_gid,
                         (uint64_t)st->st_size,
                         st->st_rdev,
                         (uint64_t)st->st_mtim.tv_sec,
                         (uint64_t)st->st_mtim.tv_nsec,
                         (uint64_t)st->st_ctim.tv_sec,
                         (uint64_t)st->st_ctim.tv_nsec};
    fnv(h, fields, sizeof(fields));
}

static int walk(int dirfd, unsigned depth, uint64_t *h)
{
    if (depth > WALK_DEPTH_MAX)
        return -ELOOP;
    DIR *d = fdopendir(dirfd);
    if (!d) {
        close(dirfd);
        return -errno;
    }
    int r = 0;
    struct dirent *de;
    /* readdir's order is stable for an unchanged directory: fine for a hash. */
    while (r >= 0 && (errno = 0, de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            r = -errno;
            break;
        }
        fnv_stat(h, de->d_name, &st);
        if (S_ISDIR(st.st_mode)) {
            int fd = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            r = fd < 0 ? -errno : walk(fd, depth + 1, h);
        }
    }
    if (r >= 0 && errno)
        r = -errno;
    closedir(d);
    return r;
}

int sandbox_tree_fingerprint(const char *path, uint64_t *ret)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    fnv(&h, path, strlen(path) + 1);
    fnv_stat(&h, ".", &st);
    int r = walk(fd, 0, &h);
    if (r < 0)
        return r;
    *ret = h;
    return 0;
}

/* ---- the import ---- */

/* syncfs() of the file system path is on (the depot's). */
static int sync_tree_fs(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = syncfs(fd) < 0 ? -errno : 0;
    close(fd);
    return r;
}

static int run_cp(const char *src, const char *dst)
{
    _cleanup_free_ char *from = NULL;
    if (asprintf(&from, "%s/.", src) < 0)
        return -ENOMEM;
    char *const argv[] = {(char *)"cp", (char *)"-a", (char *)"--", from, (char *)dst, NULL};
    static char *const env[] = {(char *)"PATH=/usr/bin:/bin", (char *)"LC_ALL=C", NULL};
    const char *cp = access("/usr/bin/cp", X_OK) == 0 ? "/usr/bin/cp" : "/bin/cp";
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int r = spawn_clean(&pid, cp, &fa, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    if (r < 0)
        return r;
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -errno;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

int sandbox_rootfs_import(const char *rootfs, const char *import_dir, char **ret, bool *ret_copied)
{
    uint64_t fp;
    int r = sandbox_tree_fingerprint(rootfs, &fp);
    if (r < 0)
        return r;
    _cleanup_free_ char *dest = NULL, *tmp = NULL;
    if (asprintf(&dest, "%s/%016" PRIx64, import_dir, fp) < 0)
        return -ENOMEM;
    if (ret_copied)
        *ret_copied = false;

    pthread_mutex_lock(&import_lock);
    struct stat st;
    if (stat(dest, &st) == 0 && S_ISDIR(st.st_mode)) {
        pthread_mutex_unlock(&import_lock);
        *ret = TAKE_PTR(dest);
        return 0;
    }
    if (mkdir(import_dir, 0700) < 0 && errno != EEXIST) {
        r = -errno;
        goto out;
    }
    if (asprintf(&tmp, "%s/" IMPORT_PREFIX "%016" PRIx64, import_dir, fp) < 0) {
        r = -ENOMEM;
        goto out;
    }
    (void)rm_rf_at(AT_FDCWD, tmp); /* a copy a crash interrupted */
    if (mkdir(tmp, 0755) < 0) {
        r = -errno;
        goto out;
    }
    r = run_cp(rootfs, tmp);
    /* Durable before visible: a copy found by its name is used as it is, so a
     * crash must not leave the name over files whose data never reached the
     * disk. */
    if (r >= 0)
        r = sync_tree_fs(tmp);
    if (r >= 0 && rename(tmp, dest) < 0)
        r = -errno;
    if (r < 0)
        (void)rm_rf_at(AT_FDCWD, tmp);
    else if (ret_copied)
        *ret_copied = true;
out:
    pthread_mutex_unlock(&import_lock);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(dest);
    return 0;
}
