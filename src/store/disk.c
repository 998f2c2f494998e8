/* Per-container disk limits on a loop-mounted ext4 image (see include/cloche/disk.h).
 *
 * Sizing. The image always spans whole block groups (128 MiB each with 4 KiB
 * blocks), at least enough for the limit plus ext4's metadata, and the limit itself
 * is enforced with ext4's reserved-cluster pool (/sys/fs/ext4/loopN/
 * reserved_clusters): every block beyond the limit is reserved, and ordinary
 * writes never take reserved blocks, whoever makes them. This makes the limit exact
 * instead of an estimate of mkfs's overhead, keeps the kernel's own reserve for
 * metadata intact, and lets a resize inside the image be a single write. The rest
 * of the last group costs nothing: the file is sparse and ext4 never writes there.
 * So a new image spans 8 GiB at least (fewer groups for small inode counts, see
 * disk_ceiling_groups): any limit up to that ceiling is one reserve change away.
 *
 * Growing past the image needs EXT4_IOC_RESIZE_FS, which the kernel allows only
 * with CAP_SYS_RESOURCE; it is called on the mount directly, the same ioctl that
 * resize2fs would make, so no process is started for it. New inodes only come
 * with new block groups, so a larger inode count grows the image by enough
 * groups; the byte limit stays exact through the reserve. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/loop.h>
#include <linux/magic.h>
#include <linux/major.h>

#include "cloche/spawn.h"
#include "cloche/cleanup.h"
#include "cloche/disk.h"
#include "cloche/fileio.h"
#include "cloche/hashmap.h"
#include "cloche/log.h"

#define DISK_IMAGE "disk.img"
#define DISK_ROOTFS "rootfs"

#define DISK_BLOCK_SIZE 4096ULL
#define DISK_INODE_SIZE 256ULL
#define DISK_GROUP_BLOCKS 32768ULL /* blocks per group: one bitmap block of bits */
#define DISK_GROUP_BYTES (DISK_GROUP_BLOCKS * DISK_BLOCK_SIZE)
#define INODES_PER_GROUP_MAX DISK_GROUP_BLOCKS
#define DESC_PER_BLOCK (DISK_BLOCK_SIZE / 64) /* 64-byte descriptors (the 64bit feature) */

/* Blocks and inodes of the file system that are not the container's: the root
 * directory and the resize inode's block, inodes 1-10 (reserved by ext4), and the
 * sandbox's upper, work, work/work, merged and lower directories, plus a spare.
 * Added to the limits, and taken off what disk_usage reports. */
#define BASE_BLOCKS 8ULL
#define BASE_INODES 16ULL
/* What usage does not count: inodes 1-10 and the root directory. The sandbox's own
 * directories count as the container's (a handful). */
#define FS_OWN_INODES 11ULL

#define DISK_BYTES_MIN (1ULL << 20)
#define DISK_BYTES_MAX (1ULL << 50)
#define DISK_INODES_MAX (UINT32_MAX - BASE_INODES)
#define DISK_INODES_DEFAULT_MIN 1024ULL
/* Inodes alone may call for at most this many groups beyond the bytes' own
 * (sparse, but each adds bitmaps and descriptors, and mkfs time). */
#define DISK_INODE_GROUPS_MAX 1024ULL

/* A new image spans at least this many groups (see disk_ceiling_groups). */
#define DISK_CEILING_GROUPS 64ULL
#define DISK_CEILING_INODES_PER_GROUP 160ULL

/* mke2fs's choice by size, applied to the limit: one inode per 4 KiB below
 * 512 MiB, one per 16 KiB above. */
#define DISK_SMALL_BYTES (512ULL << 20)
#define DISK_SMALL_RATIO 4096ULL
#define DISK_LARGE_RATIO 16384ULL

#define LOOP_ATTEMPTS 64
#define USAGE_MAX_DEPTH 256

/* From the kernel's fs/ext4/ext4.h (not in the uapi headers). */
#ifndef EXT4_IOC_RESIZE_FS
#define EXT4_IOC_RESIZE_FS _IOW('f', 16, uint64_t)
#endif

static uint64_t div_ceil(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

static uint64_t sat_sub(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

/* ---- the layout model ------------------------------------------------------ */

/* Inodes per group as mke2fs rounds them: whole inode-table blocks. */
static uint64_t round_inodes_per_group(uint64_t ipg)
{
    uint64_t per_block = DISK_BLOCK_SIZE / DISK_INODE_SIZE;
    return div_ceil(ipg ? ipg : 1, per_block) * per_block;
}

/* Groups that carry a superblock and descriptor backup (sparse_super): 0, 1 and
 * the powers of 3, 5 and 7. */
static uint64_t backup_groups(uint64_t groups)
{
    uint64_t n = groups > 1 ? 2 : 1;
    for (uint64_t base = 3; base <= 7; base += 2)
        for (uint64_t g = base; g < groups; g *= base)
            n++;
    return n;
}

/* mke2fs's reserved descriptor blocks: room to grow to 1024 times the size, or to
 * 2^32 blocks, at most one block of block numbers. */
static uint64_t reserved_gdt_blocks(uint64_t blocks, uint64_t desc_blocks)
{
    uint64_t max_blocks = blocks < UINT32_MAX / 1024 ? blocks * 1024 : UINT32_MAX;
    uint64_t rsv = div_ceil(div_ceil(max_blocks, DISK_GROUP_BLOCKS), DESC_PER_BLOCK);
    rsv = sat_sub(rsv, desc_blocks);
    return rsv > DISK_BLOCK_SIZE / 4 ? DISK_BLOCK_SIZE / 4 : rsv;
}

/* ext4's own reserve (ext4_calculate_resv_clusters): 2% or 4096 clusters. */
static uint64_t kernel_reserve(uint64_t blocks)
{
    uint64_t r = blocks / 50;
    return r < 4096 ? r : 4096;
}

/* Blocks of a fresh file system of `groups` full groups that hold no data:
 * superblocks and descriptors with their backups, bitmaps, inode tables, plus a
 * margin for what this does not model. */
static uint64_t metadata_blocks(uint64_t groups, uint64_t ipg)
{
    uint64_t desc = div_ceil(groups, DESC_PER_BLOCK);
    uint64_t rsv = reserved_gdt_blocks(groups * DISK_GROUP_BLOCKS, desc);
    uint64_t per_group = 2 + ipg * DISK_INODE_SIZE / DISK_BLOCK_SIZE;
    return groups * per_group + backup_groups(groups) * (1 + desc + rsv) + 64;
}

/* The smallest number of groups, at least min_groups, whose file system leaves
 * `total` blocks for files beside the kernel's reserve and has `inodes` inodes.
 * ipg: inodes per group when the file system has them fixed already, else 0; the
 * number used goes to *ret_ipg. A file system grown online has no more metadata
 * than a fresh one of its size (its descriptor reserve was sized for the smaller
 * one), so the model serves for both. */
static int plan_groups(uint64_t total, uint64_t inodes, uint64_t ipg, uint64_t min_groups,
                       uint64_t *ret_groups, uint64_t *ret_ipg)
{
    uint64_t groups = div_ceil(total, DISK_GROUP_BLOCKS);
    uint64_t by_inodes = div_ceil(inodes, ipg ? ipg : INODES_PER_GROUP_MAX);
    if (by_inodes > groups)
        groups = by_inodes;
    if (groups < min_groups)
        groups = min_groups;
    if (groups == 0)
        groups = 1;
    for (unsigned tries = 0; tries < 64; tries++, groups++) {
        uint64_t g_ipg = ipg ? ipg : round_inodes_per_group(div_ceil(inodes, groups));
        if (g_ipg > INODES_PER_GROUP_MAX)
            continue;
        uint64_t blocks = groups * DISK_GROUP_BLOCKS;
        uint64_t meta = metadata_blocks(groups, g_ipg);
        if (blocks > meta && blocks - meta - kernel_reserve(blocks) >= total) {
            *ret_groups = groups;
            *ret_ipg = g_ipg;
            return 0;
        }
    }
    return -EINVAL;
}

/* The groups a new image spans at least: room to raise the byte limit up to
 * DISK_CEILING_GROUPS groups (8 GiB) by the reserve alone, with no resize and so
 * no CAP_SYS_RESOURCE. The file is sparse: what it costs is the groups' metadata
 * (about 70 KiB a group), not their size. Fewer groups for a small inode count,
 * since mkfs gives every group at least 16 inodes: at most 1 in 10 more than
 * asked for. */
static uint64_t disk_ceiling_groups(uint64_t inodes)
{
    uint64_t by_inodes = inodes / DISK_CEILING_INODES_PER_GROUP;
    uint64_t g = by_inodes < DISK_CEILING_GROUPS ? by_inodes : DISK_CEILING_GROUPS;
    return g ? g : 1;
}

static uint64_t default_inodes(uint64_t bytes)
{
    uint64_t n = bytes / (bytes < DISK_SMALL_BYTES ? DISK_SMALL_RATIO : DISK_LARGE_RATIO);
    return n < DISK_INODES_DEFAULT_MIN ? DISK_INODES_DEFAULT_MIN : n;
}

static int check_limit(const DiskLimit *limit)
{
    if (!limit || limit->bytes < DISK_BYTES_MIN || limit->bytes > DISK_BYTES_MAX ||
        limit->inodes > DISK_INODES_MAX)
        return -EINVAL;
    return 0;
}

/* ---- tools ----------------------------------------------------------------- */

static int find_tool(const char *name, char *buf, size_t size)
{
    static const char *const dirs[] = {"/usr/sbin", "/sbin", "/usr/bin", "/bin"};
    for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
        int n = snprintf(buf, size, "%s/%s", dirs[i], name);
        if (n < 0 || (size_t)n >= size)
            return -ENAMETOOLONG;
        if (access(buf, X_OK) == 0)
            return 0;
    }
    return -ENOENT;
}

/* Run argv with a clean environment, output kept for a debug line only. */
static int run_tool(char *const argv[])
{
    char path[64];
    int r = find_tool(argv[0], path, sizeof(path));
    if (r < 0)
        return r;

    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    _cleanup_close_ int rd = p[0];
    _cleanup_close_ int wr = p[1];

    static char *const env[] = {(char *)"PATH=/usr/sbin:/usr/bin:/sbin:/bin", (char *)"LC_ALL=C",
                                NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, wr, 1);
    posix_spawn_file_actions_adddup2(&fa, wr, 2);
    pid_t pid;
    r = spawn_clean(&pid, path, &fa, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    if (r < 0)
        return r;
    closep(&wr);

    /* Drain to EOF before waiting, so a chatty tool cannot block on a full pipe. */
    char out[512];
    size_t have = 0;
    for (;;) {
        char chunk[512];
        ssize_t n = read(rd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        size_t take = (size_t)n < sizeof(out) - 1 - have ? (size_t)n : sizeof(out) - 1 - have;
        memcpy(out + have, chunk, take);
        have += take;
    }
    out[have] = '\0';

    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -errno;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    log_debug("%s failed (status %d): %s", argv[0], status, out);
    return -EIO;
}

static int make_filesystem(const char *image, uint64_t inodes, uint32_t owner)
{
    char n[32], ext[128];
    snprintf(n, sizeof(n), "%" PRIu64, inodes);
    snprintf(ext, sizeof(ext),
             "lazy_itable_init=1,lazy_journal_init=1,nodiscard,root_owner=%" PRIu32 ":%" PRIu32,
             owner, owner);
    /* The features the layout model assumes are asked for explicitly, whatever
     * mke2fs.conf says; quota would not even mount without CONFIG_QUOTA. */
    char *const argv[] = {
        (char *)"mkfs.ext4",
        (char *)"-q",
        (char *)"-F",
        (char *)"-t",
        (char *)"ext4",
        (char *)"-O",
        (char *)"^has_journal,^quota,^project,extent,64bit,flex_bg,sparse_super,resize_inode",
        (char *)"-m",
        (char *)"0",
        (char *)"-b",
        (char *)"4096",
        (char *)"-I",
        (char *)"256",
        (char *)"-N",
        n,
        (char *)"-E",
        ext,
        (char *)image,
        NULL,
    };
    return run_tool(argv);
}

/* ---- loop devices ---------------------------------------------------------- */

/* Attach a free loop device to image_fd: autoclear, so it goes with the last
 * user, and direct I/O where the backing file system allows it, so pages are not
 * cached twice. Another attacher can take the device that GET_FREE named before
 * we configure it: then ask again. */
static int loop_attach(int image_fd, int *ret_fd, int *ret_index)
{
    _cleanup_close_ int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0)
        return -errno;

    bool dio = true;
    int last = -EBUSY;
    for (unsigned attempt = 0; attempt < LOOP_ATTEMPTS; attempt++) {
        int index = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (index < 0)
            return -errno;
        char dev[32];
        snprintf(dev, sizeof(dev), "/dev/loop%d", index);
        _cleanup_close_ int fd = open(dev, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            /* devtmpfs may not have the node yet, or it was just removed. */
            if (errno == ENOENT || errno == ENXIO) {
                last = -errno;
                continue;
            }
            return -errno;
        }
        struct loop_config cfg = {
            .fd = (uint32_t)image_fd,
            .block_size = (uint32_t)DISK_BLOCK_SIZE,
            .info.lo_flags = LO_FLAGS_AUTOCLEAR | (dio ? LO_FLAGS_DIRECT_IO : 0),
        };
        if (ioctl(fd, LOOP_CONFIGURE, &cfg) < 0) {
            if (errno == EBUSY)
                continue;
            if (errno == EINVAL && dio) {
                dio = false;
                continue;
            }
            return -errno;
        }
        *ret_fd = TAKE_FD(fd);
        *ret_index = index;
        return 0;
    }
    return last;
}

/* ---- the mount ------------------------------------------------------------- */

/* Is fd (on <dir>/rootfs) the root of a disk mount, given <dir>'s device? */
static bool is_disk_root(int fd, dev_t dir_dev, dev_t *ret_dev)
{
    struct stat st;
    struct statfs sf;
    if (fstat(fd, &st) < 0 || fstatfs(fd, &sf) < 0)
        return false;
    if (st.st_dev == dir_dev || major(st.st_dev) != LOOP_MAJOR || sf.f_type != EXT4_SUPER_MAGIC)
        return false;
    if (ret_dev)
        *ret_dev = st.st_dev;
    return true;
}

/* Open <dir>/rootfs of a disk mount; -ENOENT when it is not one. */
static int open_disk_root(int dir_fd, dev_t *ret_dev)
{
    struct stat dst;
    if (fstat(dir_fd, &dst) < 0)
        return -errno;
    _cleanup_close_ int fd =
        openat(dir_fd, DISK_ROOTFS, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT || errno == ENOTDIR ? -ENOENT : -errno;
    if (!is_disk_root(fd, dst.st_dev, ret_dev))
        return -ENOENT;
    return TAKE_FD(fd);
}

static int loop_sysfs_path(dev_t dev, const char *file, char *buf, size_t size)
{
    int n = snprintf(buf, size, "/sys/dev/block/%u:%u/%s", major(dev), minor(dev), file);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* The kernel's name of the block device (loopN), which also names its
 * /sys/fs/ext4 directory. */
static int block_name(dev_t dev, char *buf, size_t size)
{
    char path[96], link[PATH_MAX];
    int r = loop_sysfs_path(dev, "", path, sizeof(path));
    if (r < 0)
        return r;
    path[strlen(path) - 1] = '\0';
    ssize_t n = readlink(path, link, sizeof(link) - 1);
    if (n < 0)
        return -errno;
    link[n] = '\0';
    const char *base = strrchr(link, '/');
    base = base ? base + 1 : link;
    if (strlen(base) >= size)
        return -ENAMETOOLONG;
    strcpy(buf, base);
    return 0;
}

/* Does loop device dev read from the file image_fd is open on? */
static int loop_backs(dev_t dev, int image_fd)
{
    char path[96];
    int r = loop_sysfs_path(dev, "loop/backing_file", path, sizeof(path));
    if (r < 0)
        return r;
    _cleanup_free_ char *text = NULL;
    r = read_file_at(AT_FDCWD, path, PATH_MAX, &text, NULL);
    if (r < 0)
        return r == -ENOENT ? -ENXIO : r;
    text[strcspn(text, "\n")] = '\0';
    struct stat a, b;
    if (stat(text, &a) < 0)
        return -errno;
    if (fstat(image_fd, &b) < 0)
        return -errno;
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino ? 0 : -ENXIO;
}

static int ext4_sysfs_write(const char *name, const char *file, uint64_t value)
{
    char path[128], text[32];
    snprintf(path, sizeof(path), "/sys/fs/ext4/%s/%s", name, file);
    int len = snprintf(text, sizeof(text), "%" PRIu64 "\n", value);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, text, (size_t)len);
    if (n < 0)
        return -errno;
    return n == len ? 0 : -EIO;
}

/* Reserve every block of the mounted file system beyond total blocks for files
 * (which includes BASE_BLOCKS). Not kept on disk: only this mount has it, and the
 * image is mounted once, by disk_attach. */
static int set_capacity(int root_fd, const char *name, uint64_t total)
{
    struct statfs sf;
    if (fstatfs(root_fd, &sf) < 0)
        return -errno;
    uint64_t blocks = sf.f_blocks;
    if (blocks < total + kernel_reserve(blocks))
        return -ENOSPC; /* the layout model was wrong */
    return ext4_sysfs_write(name, "reserved_clusters", blocks - total);
}

static int mount_image(int loop_index, int dir_fd, const char *target)
{
    char dev[32];
    snprintf(dev, sizeof(dev), "/dev/loop%d", loop_index);
    if (mkdirat(dir_fd, DISK_ROOTFS, 0755) < 0 && errno != EEXIST)
        return -errno;
    /* noinit_itable: the image is a fresh sparse file, its inode tables already
     * read as zeros, so the kernel's lazy-init thread has nothing to do but write
     * (and allocate) them. */
    if (mount(dev, target, "ext4", MS_NODEV | MS_NOSUID, "noinit_itable") < 0)
        return -errno;
    return 0;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Block count and inodes per group from the superblock, read through the block
 * device: the mounted file system updates it in the device's page cache, so this
 * sees a resize at once. */
static int read_superblock(int dev_fd, uint64_t *ret_blocks, uint64_t *ret_ipg)
{
    unsigned char sb[1024];
    ssize_t n = pread(dev_fd, sb, sizeof(sb), 1024);
    if (n < 0)
        return -errno;
    if (n != (ssize_t)sizeof(sb))
        return -EIO;
    /* s_magic, s_log_block_size (4 KiB = 2) */
    if ((sb[56] | sb[57] << 8) != 0xEF53 || le32(sb + 24) != 2)
        return -EMEDIUMTYPE;
    uint64_t blocks = le32(sb + 4) | (uint64_t)le32(sb + 0x150) << 32;
    uint64_t ipg = le32(sb + 40);
    if (blocks == 0 || ipg == 0)
        return -EIO;
    *ret_blocks = blocks;
    *ret_ipg = ipg;
    return 0;
}

static bool has_cap_sys_resource(void)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct data[2] = {{0}};
    if (syscall(SYS_capget, &hdr, data) < 0)
        return false;
    return data[CAP_SYS_RESOURCE / 32].effective & (1U << (CAP_SYS_RESOURCE % 32));
}

/* Attach the image to a free loop device, mount it on <dir>/rootfs and reserve
 * everything beyond total_blocks. On success *ret_root_fd is the mount's root;
 * on failure nothing stays mounted or attached. */
static int mount_new_loop(int image_fd, int dir_fd, const char *target, uint64_t total_blocks,
                          int *ret_root_fd)
{
    _cleanup_close_ int loop_fd = -EBADF;
    int index = -1;
    int r = loop_attach(image_fd, &loop_fd, &index);
    if (r < 0)
        return r;
    r = mount_image(index, dir_fd, target);
    if (r < 0) {
        (void)ioctl(loop_fd, LOOP_CLR_FD);
        return r;
    }
    closep(&loop_fd); /* the mount holds the device; autoclear frees it with the mount */

    _cleanup_close_ int root_fd = open_disk_root(dir_fd, NULL);
    if (root_fd < 0)
        r = root_fd == -ENOENT ? -EIO : root_fd;
    if (r >= 0) {
        char name[32];
        snprintf(name, sizeof(name), "loop%d", index);
        r = set_capacity(root_fd, name, total_blocks);
    }
    if (r < 0) {
        closep(&root_fd);
        (void)umount2(target, MNT_DETACH | UMOUNT_NOFOLLOW);
        return r;
    }
    *ret_root_fd = TAKE_FD(root_fd);
    return 0;
}

/* ---- the API --------------------------------------------------------------- */

int disk_attach(const char *dir, const DiskLimit *limit, uint32_t owner_uid)
{
    int r = check_limit(limit);
    if (r < 0 || !dir)
        return -EINVAL;

    uint64_t total = div_ceil(limit->bytes, DISK_BLOCK_SIZE) + BASE_BLOCKS;
    uint64_t inodes = (limit->inodes ? limit->inodes : default_inodes(limit->bytes)) + BASE_INODES;
    uint64_t groups, ipg;
    r = plan_groups(total, inodes, 0, disk_ceiling_groups(inodes), &groups, &ipg);
    if (r < 0)
        return r;
    if (groups > div_ceil(total, DISK_GROUP_BLOCKS) + DISK_INODE_GROUPS_MAX)
        return -EINVAL;

    _cleanup_close_ int dir_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0)
        return -errno;
    /* Never truncate the image of a live mount. */
    _cleanup_close_ int old = open_disk_root(dir_fd, NULL);
    if (old >= 0)
        return -EBUSY;

    _cleanup_free_ char *image = NULL, *target = NULL;
    if (asprintf(&image, "%s/" DISK_IMAGE, dir) < 0 ||
        asprintf(&target, "%s/" DISK_ROOTFS, dir) < 0)
        return -ENOMEM;
    /* A new file, never a truncated old one: a loop device elsewhere (a lazily
     * unmounted disk still held by a container) may be reading the old one. */
    if (unlinkat(dir_fd, DISK_IMAGE, 0) < 0 && errno != ENOENT)
        return -errno;
    _cleanup_close_ int image_fd =
        openat(dir_fd, DISK_IMAGE, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (image_fd < 0)
        return -errno;
    if (ftruncate(image_fd, (off_t)(groups * DISK_GROUP_BYTES)) < 0)
        return -errno;
    r = make_filesystem(image, inodes, owner_uid);
    if (r < 0)
        return r;

    _cleanup_close_ int root_fd = -EBADF;
    r = mount_new_loop(image_fd, dir_fd, target, total, &root_fd);
    if (r < 0)
        return r;
    /* Nobody needs lost+found on a scratch layer; its blocks and inode are the
     * container's instead. */
    if (unlinkat(root_fd, "lost+found", AT_REMOVEDIR) < 0 && errno != ENOENT)
        r = -errno;
    if (r >= 0 && fchmod(root_fd, 0755) < 0)
        r = -errno;
    if (r < 0) {
        closep(&root_fd);
        (void)umount2(target, MNT_DETACH | UMOUNT_NOFOLLOW);
        return r;
    }
    return 0;
}

int disk_reattach(const char *dir, const DiskLimit *limit)
{
    int r = check_limit(limit);
    if (r < 0 || !dir)
        return -EINVAL;
    _cleanup_close_ int dir_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0)
        return -errno;
    _cleanup_close_ int old = open_disk_root(dir_fd, NULL);
    if (old >= 0)
        return 0;
    _cleanup_free_ char *target = NULL;
    if (asprintf(&target, "%s/" DISK_ROOTFS, dir) < 0)
        return -ENOMEM;
    _cleanup_close_ int image_fd = openat(dir_fd, DISK_IMAGE, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (image_fd < 0)
        return -errno;
    _cleanup_close_ int root_fd = -EBADF;
    return mount_new_loop(image_fd, dir_fd, target,
                          div_ceil(limit->bytes, DISK_BLOCK_SIZE) + BASE_BLOCKS, &root_fd);
}

int disk_resize(const char *dir, const DiskLimit *limit)
{
    int r = check_limit(limit);
    if (r < 0 || !dir)
        return -EINVAL;

    _cleanup_close_ int dir_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0)
        return -errno;
    dev_t dev;
    _cleanup_close_ int root_fd = open_disk_root(dir_fd, &dev);
    if (root_fd < 0)
        return root_fd;
    char name[32];
    r = block_name(dev, name, sizeof(name));
    if (r < 0)
        return r;

    struct statfs sf;
    if (fstatfs(root_fd, &sf) < 0)
        return -errno;
    uint64_t now = sf.f_blocks - sf.f_bfree + sf.f_bavail; /* blocks minus the reserve */
    uint64_t total = div_ceil(limit->bytes, DISK_BLOCK_SIZE) + BASE_BLOCKS;
    if (total < now)
        return -EINVAL;
    uint64_t inodes = limit->inodes ? limit->inodes + BASE_INODES : 0;

    /* Room in the image as it is? */
    if (total + kernel_reserve(sf.f_blocks) <= sf.f_blocks && inodes <= sf.f_files)
        return total == now ? 0 : set_capacity(root_fd, name, total);

    _cleanup_close_ int image_fd = openat(dir_fd, DISK_IMAGE, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (image_fd < 0)
        return -errno;
    r = loop_backs(dev, image_fd);
    if (r < 0)
        return r;
    char devpath[64];
    snprintf(devpath, sizeof(devpath), "/dev/%s", name);
    _cleanup_close_ int loop_fd = open(devpath, O_RDONLY | O_CLOEXEC);
    if (loop_fd < 0)
        return -errno;
    struct stat lst;
    if (fstat(loop_fd, &lst) < 0)
        return -errno;
    if (!S_ISBLK(lst.st_mode) || lst.st_rdev != dev)
        return -ENXIO;
    uint64_t old_blocks = 0, ipg = 0;
    r = read_superblock(loop_fd, &old_blocks, &ipg);
    if (r < 0)
        return r;
    uint64_t old_groups = div_ceil(old_blocks, DISK_GROUP_BLOCKS);

    uint64_t groups;
    r = plan_groups(total, inodes, ipg, old_groups, &groups, &ipg);
    if (r < 0)
        return r;
    if (groups - old_groups > DISK_INODE_GROUPS_MAX + div_ceil(total, DISK_GROUP_BLOCKS))
        return -EINVAL;
    /* Fail before touching anything when the kernel will refuse the resize. */
    if (!has_cap_sys_resource())
        return -EPERM;

    /* A resize that failed half-way may have left the file longer already. */
    struct stat ist;
    if (fstat(image_fd, &ist) < 0)
        return -errno;
    uint64_t size = groups * DISK_GROUP_BYTES;
    if (size > (uint64_t)ist.st_size && ftruncate(image_fd, (off_t)size) < 0)
        return -errno;
    if (ioctl(loop_fd, LOOP_SET_CAPACITY, 0) < 0)
        return -errno;
    uint64_t new_blocks = groups * DISK_GROUP_BLOCKS;
    if (ioctl(root_fd, EXT4_IOC_RESIZE_FS, &new_blocks) < 0)
        return -errno;
    r = set_capacity(root_fd, name, total);
    if (r < 0)
        return r;
    if (fstatfs(root_fd, &sf) < 0)
        return -errno;
    return inodes <= sf.f_files ? 0 : -ENOSPC;
}

int disk_is_attached(const char *dir)
{
    if (!dir)
        return 0;
    _cleanup_close_ int dir_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0)
        return 0;
    _cleanup_close_ int fd = open_disk_root(dir_fd, NULL);
    return fd >= 0;
}

int disk_detach(const char *dir)
{
    if (!dir)
        return -EINVAL;
    _cleanup_close_ int dir_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0)
        return errno == ENOENT ? 0 : -errno;

    _cleanup_close_ int root_fd = open_disk_root(dir_fd, NULL);
    if (root_fd >= 0) {
        closep(&root_fd);
        _cleanup_free_ char *target = NULL;
        if (asprintf(&target, "%s/" DISK_ROOTFS, dir) < 0)
            return -ENOMEM;
        if (umount2(target, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL)
            return -errno;
    } else if (root_fd != -ENOENT)
        return root_fd;

    if (unlinkat(dir_fd, DISK_IMAGE, 0) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

/* ---- usage ----------------------------------------------------------------- */

typedef struct UsageWalk {
    dev_t dev;
    uint64_t bytes;
    uint64_t inodes;
    HashMap *seen; /* "dev:ino" of files with more than one link */
} UsageWalk;

static void hashmap_freep(HashMap **m)
{
    hashmap_free(*m);
    *m = NULL;
}

/* Count a file once, however many links to it the tree has. */
static int usage_count(UsageWalk *w, const struct statx *stx)
{
    if (!S_ISDIR(stx->stx_mode) && stx->stx_nlink > 1) {
        if (!w->seen && hashmap_new(&w->seen) < 0)
            return -ENOMEM;
        char key[64];
        snprintf(key, sizeof(key), "%u:%u:%" PRIu64, stx->stx_dev_major, stx->stx_dev_minor,
                 (uint64_t)stx->stx_ino);
        int r = hashmap_put(w->seen, key, NULL);
        if (r == -EEXIST)
            return 0;
        if (r < 0)
            return r;
    }
    w->bytes += stx->stx_blocks * 512;
    w->inodes++;
    return 0;
}

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* Walk the directory fd (borrowed), counting its entries; stays on w->dev. */
static int usage_walk_dir(UsageWalk *w, int fd, unsigned depth)
{
    /* A tree deeper than this is counted down to here only: a container must not
     * be able to make its own metrics fail, nor use up the daemon's fds. */
    if (depth >= USAGE_MAX_DEPTH)
        return 0;
    _cleanup_free_ char *buf = malloc(8192);
    if (!buf)
        return -ENOMEM;
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, 8192);
        if (n < 0)
            return -errno;
        if (n == 0)
            return 0;
        for (long off = 0; off < n;) {
            struct linux_dirent64 *de = (struct linux_dirent64 *)(buf + off);
            off += de->d_reclen;
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            struct statx stx;
            if (statx(fd, de->d_name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT,
                      STATX_TYPE | STATX_NLINK | STATX_INO | STATX_BLOCKS, &stx) < 0) {
                if (errno == ENOENT)
                    continue; /* gone meanwhile */
                return -errno;
            }
            if (S_ISDIR(stx.stx_mode) && is_foreign_mount(&stx, w->dev))
                continue;
            int r = usage_count(w, &stx);
            if (r < 0)
                return r;
            if (!S_ISDIR(stx.stx_mode))
                continue;
            _cleanup_close_ int sub = openat(
                fd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
            if (sub < 0) {
                if (errno == ENOENT || errno == ENOTDIR)
                    continue;
                return -errno;
            }
            /* What was opened may have been swapped for a mount point since statx. */
            struct statx opened;
            if (statx(sub, "", AT_EMPTY_PATH, STATX_TYPE, &opened) < 0)
                return -errno;
            if (is_foreign_mount(&opened, w->dev))
                continue;
            r = usage_walk_dir(w, sub, depth + 1);
            if (r < 0)
                return r;
        }
    }
}

static int usage_of_tree(int root_fd, DiskUsage *ret)
{
    struct statx stx;
    if (statx(root_fd, "", AT_EMPTY_PATH, STATX_TYPE | STATX_NLINK | STATX_INO | STATX_BLOCKS,
              &stx) < 0)
        return -errno;
    _cleanup_(hashmap_freep) HashMap *seen = NULL;
    UsageWalk w = {.dev = makedev(stx.stx_dev_major, stx.stx_dev_minor)};
    int r = usage_count(&w, &stx);
    if (r >= 0)
        r = usage_walk_dir(&w, root_fd, 0);
    seen = w.seen;
    if (r < 0)
        return r;
    *ret = (DiskUsage){.bytes_used = w.bytes, .inodes_used = w.inodes};
    return 0;
}

int disk_usage(const char *dir, DiskUsage *ret)
{
    if (!dir || !ret)
        return -EINVAL;
    _cleanup_close_ int dir_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0)
        return -errno;

    _cleanup_close_ int root_fd = open_disk_root(dir_fd, NULL);
    if (root_fd == -ENOENT) {
        _cleanup_close_ int fd =
            openat(dir_fd, DISK_ROOTFS, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        return usage_of_tree(fd, ret);
    }
    if (root_fd < 0)
        return root_fd;

    struct statfs sf;
    if (fstatfs(root_fd, &sf) < 0)
        return -errno;
    uint64_t used = sf.f_blocks - sf.f_bfree;
    uint64_t total = used + sf.f_bavail;
    uint64_t files_used = sf.f_files - sf.f_ffree;
    *ret = (DiskUsage){
        .bytes_used = sat_sub(used, BASE_BLOCKS) * sf.f_bsize,
        .inodes_used = sat_sub(files_used, FS_OWN_INODES),
        .bytes_limit = sat_sub(total, BASE_BLOCKS) * sf.f_bsize,
        .inodes_limit = sat_sub(sf.f_files, FS_OWN_INODES),
    };
    return 0;
}

int disk_tree_usage(const char *path, DiskUsage *ret)
{
    if (!path || !ret)
        return -EINVAL;
    _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    return usage_of_tree(fd, ret);
}
