/* Per-container disk limits: the container's writable layer (its depot directory's
 * `rootfs/`, which holds the overlay's upper and work directories) placed on a
 * loop-mounted ext4 image of its own, made with an inode count from the inode
 * limit, so writes beyond either limit fail with ENOSPC inside the container. The
 * image spans whole 128 MiB block groups (sparse) and the byte limit is exact:
 * every block beyond it is held in ext4's reserved-cluster pool, which ordinary
 * writes (root's included) never take. Growing is live: inside the image it only
 * shrinks the reserve; past it the image file grows, then the loop device's
 * capacity, then the mounted file system (EXT4_IOC_RESIZE_FS, which needs
 * CAP_SYS_RESOURCE). Shrinking is refused. Containers without a disk limit keep a
 * plain directory.
 *
 * The image lives beside it (`<dir>/disk.img`); the loop device is set to
 * autoclear, so unmounting releases it. The mount is made in the daemon's mount
 * namespace before the container is cloned (which copies it); the reserve lives
 * with the mounted file system (it is not on disk: the image is mounted once).
 * Functions return 0 or a negative errno and never log above debug level.
 * mkfs.ext4 (e2fsprogs) is the only process started. */
#pragma once

#include <stdint.h>

typedef struct DiskLimit {
    uint64_t bytes;  /* usable bytes for the container's own writes; 0 = none */
    uint64_t inodes; /* inodes; 0 = one per 4 KiB of bytes below 512 MiB, one per
                      * 16 KiB above (mke2fs's ratios), at least 1024 */
} DiskLimit;

/* Create <dir>/disk.img for limit, mkfs it, attach a loop device and mount it on
 * <dir>/rootfs (created if missing), owned by owner_uid:owner_uid with mode 0755.
 * The container gets `bytes` (rounded up to 4 KiB) and at least `inodes` beside
 * the sandbox's own directories; mkfs rounds inodes up to 16 per group. The sparse
 * image spans at least 64 groups (8 GiB), or one group per 160 inodes when that is
 * fewer, so a limit can be raised up to there without growing it. On failure
 * nothing is left mounted or attached (the image file may remain for the depot's
 * removal). -EINVAL for bytes below 1 MiB (or 0) or absurd limits; -EBUSY when
 * <dir>/rootfs is a disk already. */
int disk_attach(const char *dir, const DiskLimit *limit, uint32_t owner_uid);
/* Mount the image that disk_attach made again (after a reboot unmounted it), its
 * contents as they were; the byte limit is set again from limit. 0 when it is
 * mounted already; -ENOENT when there is no image. */
int disk_reattach(const char *dir, const DiskLimit *limit);
/* Grow the mounted image live to the new limit. -EINVAL to lower the byte limit.
 * ext4 cannot drop inodes: an inode count at or below the file system's is left as
 * it is (0 keeps it too). More inodes come only with new block groups (inode
 * tables are fixed per group), so the image grows by as many groups as they need
 * while the byte limit stays exact; -EINVAL when that would take more than 1024
 * groups beyond the bytes' own. Growing past the image needs CAP_SYS_RESOURCE:
 * -EPERM (before anything changes) without it. -ENOENT when no disk is mounted. */
int disk_resize(const char *dir, const DiskLimit *limit);
/* Lazily unmount <dir>/rootfs if it is a disk mount (the loop device is freed
 * when the last user goes) and delete the image. Missing = 0. */
int disk_detach(const char *dir);
/* Is <dir>/rootfs a disk mount? 1 yes, 0 no. */
int disk_is_attached(const char *dir);

typedef struct DiskUsage {
    /* For a disk: from statfs, less what the file system and the sandbox's
     * directories take (8 blocks, 16 inodes), so the numbers are the container's. */
    uint64_t bytes_used;   /* (blocks - free) * block size */
    uint64_t inodes_used;  /* files - ffree */
    uint64_t bytes_limit;  /* the byte limit as configured, rounded up to 4 KiB */
    uint64_t inodes_limit; /* inodes the container can have */
} DiskUsage;
/* Usage of <dir>/rootfs: the image's statfs, or for a plain directory what
 * disk_tree_usage reports for it (limits 0). */
int disk_usage(const char *dir, DiskUsage *ret);
/* Bytes (allocated blocks) and inodes of the tree at path, walked without
 * crossing mount points (bytes_used and inodes_used are set; the limits are 0).
 * Files with several links count once; levels below 256 are not counted. No
 * processes. */
int disk_tree_usage(const char *path, DiskUsage *ret);
