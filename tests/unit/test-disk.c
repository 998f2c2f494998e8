/* Disk limits on real loop-mounted ext4 images: needs root, a mount namespace of
 * its own and /dev/loop-control, else it skips. Everything happens in a private
 * mount namespace, so whatever a failed test leaves mounted goes with the process
 * (and its autoclear loop devices with it). */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>

#include "cloche/cleanup.h"
#include "cloche/disk.h"
#include "cloche/fileio.h"
#include "tap.h"

#define MIB (1ULL << 20)
#define GIB (1ULL << 30)

static char chunk[1 << 20];

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void path_in(char *buf, size_t size, const char *dir, const char *name)
{
    int n = snprintf(buf, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size)
        abort();
}

/* Write files of up to 1 MiB named <prefix>N into root until the disk is full;
 * returns the bytes written, with *ret_err the errno that stopped it. */
static uint64_t fill(const char *root, const char *prefix, int *ret_err)
{
    uint64_t total = 0;
    *ret_err = 0;
    for (int i = 0; i < 100000; i++) {
        char p[512];
        snprintf(p, sizeof(p), "%s/%s%d", root, prefix, i);
        _cleanup_close_ int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
            *ret_err = errno;
            return total;
        }
        size_t left = sizeof(chunk);
        while (left > 0) {
            ssize_t n = write(fd, chunk, left);
            if (n < 0) {
                *ret_err = errno;
                return total;
            }
            total += (uint64_t)n;
            left -= (size_t)n;
        }
    }
    return total;
}

/* Create empty files <root>/iN until n are made or one fails; returns how many. */
static int create_files(const char *root, int n, int *ret_err)
{
    *ret_err = 0;
    for (int i = 0; i < n; i++) {
        char p[512];
        snprintf(p, sizeof(p), "%s/i%d", root, i);
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) {
            *ret_err = errno;
            return i;
        }
        close(fd);
    }
    return n;
}

static bool within(uint64_t got, uint64_t limit, double lo, double hi)
{
    return got >= (uint64_t)(limit * lo) && got <= (uint64_t)(limit * hi);
}

static bool has_cap(int cap)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct data[2] = {{0}};
    if (syscall(SYS_capget, &hdr, data) < 0)
        return false;
    return data[cap / 32].effective & (1U << (cap % 32));
}

static bool have_mkfs(void)
{
    return access("/usr/sbin/mkfs.ext4", X_OK) == 0 || access("/sbin/mkfs.ext4", X_OK) == 0;
}

/* The /sys file naming the backing file of the loop device that holds rootfs. */
static bool backing_file_path(const char *root, char *buf, size_t size)
{
    struct stat st;
    if (stat(root, &st) < 0)
        return false;
    snprintf(buf, size, "/sys/dev/block/%u:%u/loop/backing_file", major(st.st_dev),
             minor(st.st_dev));
    return access(buf, R_OK) == 0;
}

/* The device is released when the loop's backing file is gone (the device may
 * linger unbound, or be taken by someone else, whose backing file is not ours). */
static bool loop_released(const char *sys_path, const char *image)
{
    for (int i = 0; i < 200; i++) {
        _cleanup_free_ char *text = NULL;
        if (read_file_at(AT_FDCWD, sys_path, 4096, &text, NULL) < 0 || !strstr(text, image))
            return true;
        usleep(10000);
    }
    return false;
}

static uint64_t image_size(const char *dir)
{
    char p[512];
    path_in(p, sizeof(p), dir, "disk.img");
    struct stat st;
    return stat(p, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static void test_limits_refused(const char *dir)
{
    DiskLimit small = {.bytes = MIB - 1};
    is_int(disk_attach(dir, &small, 0), -EINVAL, "a limit below 1 MiB is refused");
    DiskLimit none = {0};
    is_int(disk_attach(dir, &none, 0), -EINVAL, "no byte limit is refused");
    is_int(disk_attach(dir, NULL, 0), -EINVAL, "no limit at all is refused");
    DiskLimit inodes = {.bytes = MIB, .inodes = 100000000};
    is_int(disk_attach(dir, &inodes, 0), -EINVAL, "100M inodes on 1 MiB are refused");
    is_int(disk_is_attached(dir), 0, "nothing is attached after refusals");
}

static void test_bytes(const char *dir)
{
    char root[512], image[512], sys_path[512];
    path_in(root, sizeof(root), dir, "rootfs");
    path_in(image, sizeof(image), dir, "disk.img");

    DiskLimit limit = {.bytes = 16 * MIB};
    double t0 = now_ms();
    int r = disk_attach(dir, &limit, 4242);
    double t1 = now_ms();
    if (!is_int(r, 0, "attach 16 MiB"))
        return;
    printf("# attach 16 MiB: %.1f ms\n", t1 - t0);
    is_int(disk_is_attached(dir), 1, "attached");
    is_int(disk_attach(dir, &limit, 0), -EBUSY, "attaching twice is refused");

    struct stat st;
    ok(stat(root, &st) == 0 && st.st_uid == 4242 && st.st_gid == 4242 &&
           (st.st_mode & 07777) == 0755,
       "rootfs is owned by the owner, mode 0755");
    ok(faccessat(AT_FDCWD, root, F_OK, 0) == 0, "rootfs exists");
    char lpf[600];
    path_in(lpf, sizeof(lpf), root, "lost+found");
    ok(access(lpf, F_OK) < 0, "no lost+found");
    ok(backing_file_path(root, sys_path, sizeof(sys_path)), "a loop device backs rootfs");

    DiskUsage u;
    is_int(disk_usage(dir, &u), 0, "usage of the fresh disk");
    is_u64(u.bytes_limit, 16 * MIB, "bytes limit as configured");
    ok(u.bytes_used < 64 * 1024, "fresh disk uses next to nothing (%llu bytes)",
       (unsigned long long)u.bytes_used);

    int err;
    uint64_t written = fill(root, "a", &err);
    is_int(err, ENOSPC, "writing stops with ENOSPC");
    ok(within(written, limit.bytes, 0.97, 1.05), "wrote %llu bytes of 16 MiB",
       (unsigned long long)written);
    is_int(disk_usage(dir, &u), 0, "usage of the full disk");
    ok(within(u.bytes_used, written, 0.99, 1.02), "usage reports %llu bytes used",
       (unsigned long long)u.bytes_used);

    /* Grow inside the image: the reserve shrinks, no resize2fs needed. */
    DiskLimit bigger = {.bytes = 32 * MIB};
    t0 = now_ms();
    r = disk_resize(dir, &bigger);
    t1 = now_ms();
    is_int(r, 0, "resize to 32 MiB");
    printf("# resize 16 -> 32 MiB: %.2f ms\n", t1 - t0);
    uint64_t more = fill(root, "b", &err);
    is_int(err, ENOSPC, "writing stops with ENOSPC again");
    ok(more > 15 * MIB, "wrote %llu more bytes", (unsigned long long)more);
    ok(within(written + more, bigger.bytes, 0.97, 1.05), "wrote %llu bytes of 32 MiB in all",
       (unsigned long long)(written + more));
    is_int(disk_usage(dir, &u), 0, "usage after the resize");
    is_u64(u.bytes_limit, 32 * MIB, "bytes limit follows the resize");
    is_int(disk_resize(dir, &bigger), 0, "resizing to the same limit is a no-op");

    DiskLimit smaller = {.bytes = 24 * MIB};
    is_int(disk_resize(dir, &smaller), -EINVAL, "shrinking is refused");
    is_int(disk_usage(dir, &u), 0, "usage after the refused shrink");
    is_u64(u.bytes_limit, 32 * MIB, "the limit stays");

    /* Within the image's ceiling: the sparse image was made large enough, so a
     * large raise is still only a reserve change, with or without
     * CAP_SYS_RESOURCE. */
    DiskLimit large = {.bytes = 300 * MIB};
    uint64_t size_before = image_size(dir);
    ok(size_before >= 3 * GIB, "the new image spans %llu MiB (the ceiling)",
       (unsigned long long)(size_before / MIB));
    t0 = now_ms();
    r = disk_resize(dir, &large);
    t1 = now_ms();
    is_int(r, 0, "resize to 300 MiB without growing the image");
    printf("# resize 32 -> 300 MiB (in the image): %.2f ms\n", t1 - t0);
    is_u64(image_size(dir), size_before, "the image is as it was");
    is_int(disk_usage(dir, &u), 0, "usage after the raise");
    is_u64(u.bytes_limit, 300 * MIB, "bytes limit after the raise");
    uint64_t grown = fill(root, "c", &err);
    ok(within(written + more + grown, large.bytes, 0.97, 1.05),
       "wrote %llu bytes of 300 MiB in all", (unsigned long long)(written + more + grown));

    /* Beyond the image: needs EXT4_IOC_RESIZE_FS and so CAP_SYS_RESOURCE. */
    DiskLimit beyond = {.bytes = size_before + 256 * MIB};
    t0 = now_ms();
    r = disk_resize(dir, &beyond);
    t1 = now_ms();
    if (has_cap(CAP_SYS_RESOURCE)) {
        is_int(r, 0, "resize past the image");
        printf("# resize past the image (online grow): %.1f ms\n", t1 - t0);
        ok(image_size(dir) > size_before, "the image grew");
        is_int(disk_usage(dir, &u), 0, "usage after the online grow");
        is_u64(u.bytes_limit, beyond.bytes, "bytes limit after the online grow");
    } else {
        is_int(r, -EPERM, "without CAP_SYS_RESOURCE growing past the image is refused");
        is_u64(image_size(dir), size_before, "and the image is left as it was");
        printf("# no CAP_SYS_RESOURCE here: online grow past the image not tested\n");
    }

    t0 = now_ms();
    r = disk_detach(dir);
    t1 = now_ms();
    is_int(r, 0, "detach");
    printf("# detach (after writing): %.1f ms\n", t1 - t0);
    is_int(disk_is_attached(dir), 0, "no longer attached");
    struct stat dst;
    ok(stat(dir, &dst) == 0 && stat(root, &st) == 0 && st.st_dev == dst.st_dev,
       "rootfs is a plain directory again");
    ok(access(image, F_OK) < 0 && errno == ENOENT, "the image is gone");
    ok(loop_released(sys_path, image), "the loop device is released");
    is_int(disk_detach(dir), 0, "detaching twice is fine");
    is_int(disk_resize(dir, &bigger), -ENOENT, "resizing without a disk: -ENOENT");
}

static void test_inodes(const char *dir)
{
    char root[512];
    path_in(root, sizeof(root), dir, "rootfs");
    DiskLimit limit = {.bytes = 16 * MIB, .inodes = 500};
    if (!is_int(disk_attach(dir, &limit, 0), 0, "attach 16 MiB, 500 inodes"))
        return;
    DiskUsage u;
    is_int(disk_usage(dir, &u), 0, "usage");
    ok(u.inodes_limit >= 500 && u.inodes_limit < 550, "inode limit %llu",
       (unsigned long long)u.inodes_limit);

    int err;
    is_int(create_files(root, 500, &err), 500, "500 files fit");
    int more = create_files(root, 600, &err); /* i0..i499 exist: EEXIST stops at once */
    is_int(more, 0, "names taken");
    char sub[600];
    path_in(sub, sizeof(sub), root, "more");
    int made = mkdir(sub, 0755) == 0 ? create_files(sub, 100, &err) : -1;
    ok(made >= 0 && made < 60, "the inodes run out soon after 500 (%d more)", made);
    is_int(err, ENOSPC, "with ENOSPC");
    is_int(disk_usage(dir, &u), 0, "usage when full");
    ok(u.inodes_used >= 500 && u.inodes_used <= u.inodes_limit, "inodes used %llu of %llu",
       (unsigned long long)u.inodes_used, (unsigned long long)u.inodes_limit);

    /* Inodes only come with new block groups, which needs the online grow. */
    DiskLimit more_inodes = {.bytes = 16 * MIB, .inodes = 5000};
    int r = disk_resize(dir, &more_inodes);
    if (has_cap(CAP_SYS_RESOURCE)) {
        is_int(r, 0, "more inodes by growing the image");
        is_int(disk_usage(dir, &u), 0, "usage after");
        ok(u.inodes_limit >= 5000, "inode limit %llu", (unsigned long long)u.inodes_limit);
        is_u64(u.bytes_limit, 16 * MIB, "bytes limit unchanged");
    } else
        is_int(r, -EPERM, "more inodes need CAP_SYS_RESOURCE");
    DiskLimit fewer = {.bytes = 16 * MIB, .inodes = 400};
    is_int(disk_resize(dir, &fewer), 0, "fewer inodes than the file system has: kept");

    double t0 = now_ms();
    int d = disk_detach(dir);
    double t1 = now_ms();
    is_int(d, 0, "detach");
    printf("# detach (600 files): %.1f ms\n", t1 - t0);
}

/* Attach and detach an empty disk a few times: the latency a container create
 * and destroy pay. */
static void test_timing(const char *dir)
{
    static const uint64_t sizes[] = {16 * MIB, 1024 * MIB, 10240 * MIB};
    for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
        DiskLimit limit = {.bytes = sizes[i]};
        double attach = 0, detach = 0;
        int runs = 5, r = 0;
        for (int k = 0; k < runs && r >= 0; k++) {
            double t0 = now_ms();
            r = disk_attach(dir, &limit, 0);
            double t1 = now_ms();
            if (r >= 0)
                r = disk_detach(dir);
            double t2 = now_ms();
            attach += t1 - t0;
            detach += t2 - t1;
        }
        is_int(r, 0, "attach and detach %llu MiB %d times", (unsigned long long)(sizes[i] / MIB),
               runs);
        printf("# %llu MiB: attach %.1f ms, detach %.1f ms (mean of %d)\n",
               (unsigned long long)(sizes[i] / MIB), attach / runs, detach / runs, runs);
    }
}

static int write_file(const char *path, size_t len)
{
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    if (write(fd, chunk, len) != (ssize_t)len)
        return -EIO;
    return fsync(fd) < 0 ? -errno : 0;
}

static void test_plain_directory(const char *dir)
{
    char root[512], p[600], q[600], sub[600], mnt[600];
    path_in(root, sizeof(root), dir, "rootfs");
    path_in(sub, sizeof(sub), root, "sub");
    path_in(mnt, sizeof(mnt), root, "mnt");
    ok(mkdir(root, 0755) == 0 || errno == EEXIST, "plain rootfs");
    ok(mkdir(sub, 0755) == 0 && mkdir(mnt, 0755) == 0, "subdirectories");
    path_in(p, sizeof(p), sub, "a");
    path_in(q, sizeof(q), root, "b");
    is_int(write_file(p, 256 * 1024), 0, "a 256 KiB file");
    is_int(write_file(q, 64 * 1024), 0, "a 64 KiB file");
    char other[600];
    path_in(other, sizeof(other), root, "a-link");
    ok(link(p, other) == 0, "a hard link");
    path_in(other, sizeof(other), root, "symlink");
    ok(symlink("sub/a", other) == 0, "a symlink");
    /* Another file system inside is not counted. */
    ok(mount("disk-test", mnt, "tmpfs", 0, "size=4m") == 0, "a tmpfs inside");
    path_in(other, sizeof(other), mnt, "big");
    is_int(write_file(other, 1024 * 1024), 0, "a 1 MiB file in the tmpfs");

    is_int(disk_is_attached(dir), 0, "a plain directory is not a disk");
    DiskUsage u;
    is_int(disk_usage(dir, &u), 0, "usage of a plain directory");
    /* rootfs, sub, a, b, symlink: the mount is skipped whole */
    is_u64(u.inodes_used, 5, "inodes: each file once, the mount not crossed");
    ok(u.bytes_used >= 320 * 1024 && u.bytes_used < 320 * 1024 + 64 * 1024,
       "bytes %llu: the two files once, plus directories", (unsigned long long)u.bytes_used);
    is_u64(u.bytes_limit, 0, "no byte limit");
    is_u64(u.inodes_limit, 0, "no inode limit");
    DiskUsage t;
    is_int(disk_tree_usage(root, &t), 0, "tree usage of the same directory");
    ok(t.bytes_used == u.bytes_used && t.inodes_used == u.inodes_used && t.bytes_limit == 0,
       "counts the same");
    is_int(disk_tree_usage(p, &t), -ENOTDIR, "tree usage of a file: -ENOTDIR");
    ok(umount2(mnt, 0) == 0, "tmpfs unmounted");
    is_int(disk_detach(dir), 0, "detach of a plain directory is a no-op");
    ok(access(p, F_OK) == 0, "and leaves it alone");
}

int main(void)
{
    if (geteuid() != 0) {
        printf("1..0 # SKIP needs root\n");
        return 0;
    }
    if (access("/dev/loop-control", F_OK) < 0) {
        printf("1..0 # SKIP no /dev/loop-control\n");
        return 0;
    }
    if (!have_mkfs()) {
        printf("1..0 # SKIP no mkfs.ext4\n");
        return 0;
    }
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        printf("1..0 # SKIP no mount namespace: %s\n", strerror(errno));
        return 0;
    }
    memset(chunk, 'x', sizeof(chunk));

    char base[] = "/var/tmp/cloche-test-disk.XXXXXX";
    if (!mkdtemp(base)) {
        printf("1..0 # SKIP mkdtemp: %s\n", strerror(errno));
        return 0;
    }
    static const char *const names[] = {"bytes", "inodes", "timing", "plain"};
    char dirs[4][128];
    for (size_t i = 0; i < ELEMENTSOF(names); i++) {
        path_in(dirs[i], sizeof(dirs[i]), base, names[i]);
        mkdir(dirs[i], 0755);
    }
    is_int(disk_detach(dirs[0]), 0, "detach with nothing attached");
    char missing[200];
    path_in(missing, sizeof(missing), base, "missing");
    is_int(disk_detach(missing), 0, "detach of a missing directory");
    is_int(disk_is_attached(missing), 0, "a missing directory is not attached");

    test_limits_refused(dirs[0]);
    test_bytes(dirs[0]);
    test_inodes(dirs[1]);
    test_timing(dirs[2]);
    test_plain_directory(dirs[3]);

    for (size_t i = 0; i < ELEMENTSOF(names); i++)
        (void)disk_detach(dirs[i]);
    ok(rm_rf_at(AT_FDCWD, base) == 0, "test directory removed");
    return tap_done();
}
