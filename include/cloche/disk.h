/* Per-container disk limits: the container's writable layer (its depot directory's
 * `rootfs/`, which holds the overlay's upper and work directories) placed on a
 * loop-mounted ext4 image of its own, sized to the byte limit and made with an
 * inode count from the inode limit, so writes beyond either fail with ENOSPC inside
 * the container. Growing is live (the image file grows, then the loop device's
 * capacity, then resize2fs on the mounted file system); shrinking is refused.
 * Containers without a disk limit keep a plain directory.
 *
 * The image lives beside it (`<dir>/disk.img`); the loop device is set to
 * autoclear, so unmounting releases it. The mount is made in the daemon's mount
 * namespace before the container is cloned (which copies it). Functions return 0
 * or a negative errno and never log above debug level. mkfs.ext4 and resize2fs
 * (e2fsprogs) are the only processes started. */
#pragma once

#include <stdint.h>

typedef struct DiskLimit {
    uint64_t bytes;  /* usable bytes for the container's own writes; 0 = none */
    uint64_t inodes; /* inodes; 0 = the file system's default for that size */
} DiskLimit;

/* Create <dir>/disk.img for limit, mkfs it, attach a loop device and mount it on
 * <dir>/rootfs (created if missing), owned by owner_uid:owner_uid with mode 0755.
 * On failure nothing is left mounted or attached (the image file may remain for
 * the depot's removal). -EINVAL for limits below the smallest image. */
int disk_attach(const char *dir, const DiskLimit *limit, uint32_t owner_uid);
/* Grow the mounted image live to the new limit. -EINVAL to shrink (either
 * number lower than now); inodes can only grow with the size (ext4 inode tables
 * are fixed per block group), so -EINVAL when the inode count cannot be reached. */
int disk_resize(const char *dir, const DiskLimit *limit);
/* Lazily unmount <dir>/rootfs if it is a disk mount (the loop device is freed
 * when the last user goes) and delete the image. Missing = 0. */
int disk_detach(const char *dir);
/* Is <dir>/rootfs a disk mount? 1 yes, 0 no. */
int disk_is_attached(const char *dir);

typedef struct DiskUsage {
    uint64_t bytes_used;   /* statfs of the mount: (blocks - free) * block size */
    uint64_t inodes_used;  /* files - ffree */
    uint64_t bytes_limit;  /* usable bytes as configured */
    uint64_t inodes_limit; /* inodes of the file system */
} DiskUsage;
/* Usage of <dir>/rootfs: the image's statfs, or for a plain directory the
 * bytes and inodes of its tree (walked; no processes). */
int disk_usage(const char *dir, DiskUsage *ret);
