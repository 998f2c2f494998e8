/* The kernel side of one container: its init cloned into new namespaces, with an
 * overlay root (image lower, per-container upper/work), /proc (with the masked
 * and read-only paths of doc/security.md), /dev, /sys, a read-only view of its
 * own cgroups at /sys/fs/cgroup, bind mounts, /etc/hosts and /etc/resolv.conf,
 * pivoted into. Unprivileged containers
 * get a user namespace mapping container ids 0..count-1 to host ids
 * uid_base..uid_base+count-1, and see the shared image lower through an idmapped
 * mount. The daemon is multi-threaded, so everything the child does between
 * clone and exec is prepared here beforehand and uses only raw syscalls. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cloche/cgroup.h"
#include "cloche/confine.h"
#include "cloche/failure.h"

#define SANDBOX_ID_COUNT 65536u /* ids per container by default */
#define SANDBOX_MAX_LOWERS 128  /* directories in one rootfs stack */
/* --uid-map-mode shared (guardian's map): container root is this host id, and
 * container ids 1..SANDBOX_SHARED_ROOT-1 are the same host ids. */
#define SANDBOX_SHARED_ROOT 4294967294u

typedef struct SandboxBind {
    const char *src; /* host path, or a path inside the container (from_container) */
    const char *dst; /* path inside the container */
    bool rw;
    bool from_container;
} SandboxBind;

/* Called in the parent after clone and before the child runs: attach pid to the
 * container's cgroups (those CLONE_INTO_CGROUP did not cover). */
typedef int (*SandboxAttachFn)(pid_t pid, void *userdata);

typedef struct SandboxSpec {
    const char *handle; /* hostname */
    /* Image directory on the host: the overlay lower. Several ':'-joined
     * directories (an image's layers, top first) are each attached below the
     * container's rootfs/lower, idmapped like a single one. */
    const char *rootfs;
    const char *dir;    /* the container's depot directory (absolute) */
    bool privileged;    /* no user namespace */
    uint32_t uid_base;  /* host id of container root (unprivileged) */
    uint32_t uid_count; /* ids mapped from uid_base: container 0..count-1 (0 = the
                           default SANDBOX_ID_COUNT); with uid_base SANDBOX_SHARED_ROOT
                           the shared map instead */
    const SandboxBind *binds;
    size_t n_binds;
    int cgroup_fd; /* v2/unified group for CLONE_INTO_CGROUP, or -1 */
    /* Optional: fds the child writes "0" to first, before anything else (its v1
     * groups' "tasks" files, cgroup_open_v1_tasks); borrowed. */
    const int *self_attach_fds;
    size_t n_self_attach_fds;
    SandboxAttachFn attach;
    void *attach_userdata;
    /* Optional: called once the child has been let go, while it mounts its root
     * file system and execs init in parallel (the container's network is set up
     * here). A failure kills the child; the callback reports its own error. */
    SandboxAttachFn prepare;
    void *prepare_userdata;
    int init_fd; /* executable fd of cloche-init (a sealed memfd) */
    /* A char node 10:200 (mode 0666) that every container's /dev/net/tun binds,
     * read-only so that no container changes its mode; NULL: a node of the
     * container's own in spec->dir. */
    const char *tun_node;
    /* The writable layer's overlay is mounted volatile: nothing synced for it,
     * neither a process's fsync nor the unmount's sync of the file system
     * below. For a layer that never outlives the host's uptime. */
    bool volatile_layer;
    /* Capabilities, no_new_privs and seccomp filter of the init, applied last
     * before its exec (borrowed; NULL: none). */
    const ConfinePlan *confine;
    /* The container's own groups, mounted read-only at /sys/fs/cgroup. */
    const CgroupViewDir *cgroup_views;
    size_t n_cgroup_views;
} SandboxSpec;

typedef struct SandboxInit {
    pid_t pid;
    int pidfd;
    uint64_t start_time; /* /proc/PID/stat field 22, to recognise the process later */
} SandboxInit;

/* Create the container's directories under spec->dir (rootfs/upper, work, lower;
 * hosts; resolv.conf must already be written there by the caller), clone
 * its init and wait until it has exec'd cloche-init. On failure nothing of it is
 * left running; the directories are left for the caller's depot cleanup. A
 * missing bind-mount source or too many image layers is FAILURE_INPUT. When the
 * `prepare` callback fails, its result is returned and reterr left untouched. */
int sandbox_create(const SandboxSpec *spec, SandboxInit *ret, Failure *reterr);

/* Wait for an init this process created (reaps it). */
int sandbox_reap(SandboxInit *init);

/* Is pid still the process started at start_time, and not a zombie? */
bool sandbox_process_alive(pid_t pid, uint64_t start_time);

/* A sealed memfd holding a copy of the executable at path, for exec'ing into
 * containers without exposing the host file (a privileged container could
 * otherwise write through /proc/1/exe). */
int sandbox_load_executable(const char *path, int *ret_fd);

/* The char node 10:200 (mode 0666) at dir/tun, made if missing: the one every
 * container's /dev/net/tun binds (SandboxSpec.tun_node), so a create makes no
 * node of its own. dir's file system must not be mounted nodev. Its path in
 * *ret_path (malloc'd), or a negative errno (-EEXIST: something else by that
 * name, left alone). */
int sandbox_tun_node(const char *dir, char **ret_path);

/* Images that cannot be idmapped (rootfs-import.c). An unprivileged container
 * sees its image through an idmapped mount, which not every file system allows
 * on every kernel (tmpfs only since 6.3; NFS, virtiofs not on 6.1). */
/* 0 if a tree at path can be idmapped here (probed once per file system with a
 * throw-away user namespace mapping container root to host_id), else -EINVAL or
 * the error the kernel gave. */
int sandbox_idmap_probe(const char *path, uint32_t host_id);
/* The name of the file system holding path ("tmpfs", "ext4", ...; static). */
const char *sandbox_fs_name(const char *path);
/* A fingerprint of the tree at path: every entry's name, inode, type, mode,
 * owners, size and times (no file is read). */
int sandbox_tree_fingerprint(const char *path, uint64_t *ret);
/* The copy of rootfs in import_dir for its current fingerprint, made now (cp -a)
 * if there is none yet (*ret_copied = true). *ret: malloc'd path. */
int sandbox_rootfs_import(const char *rootfs, const char *import_dir, char **ret, bool *ret_copied);

/* Pool of per-container id ranges: count ranges of range_size ids from base. */
typedef struct IdPool IdPool;
int idpool_new(uint32_t base, uint32_t count, uint32_t range_size, IdPool **ret);
void idpool_free(IdPool *p);
/* Lowest free range; -ENOSPC when exhausted. */
int idpool_acquire(IdPool *p, uint32_t *ret_base);
/* Mark a range used (restoring from the depot); -EEXIST if taken, -EINVAL if not a
 * range of this pool. */
int idpool_reserve(IdPool *p, uint32_t range_base);
void idpool_release(IdPool *p, uint32_t range_base);
