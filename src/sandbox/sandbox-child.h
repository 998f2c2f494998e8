/* Private to src/sandbox: the init's child side of sandbox_create, from the clone
 * to the exec. It shares the daemon's memory until its exec (vmclone), so it uses
 * only raw system calls and memory prepared beforehand (ChildPlan): no malloc, no
 * stdio, no logging. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "cloche/sandbox.h"

/* What the child reports when a step fails (the parent reads EOF on success,
 * because the socket is close-on-exec). */
typedef struct ChildReport {
    int err;
    char what[240];
} ChildReport;

/* The child reads its plan and never writes it (nor anything else but its own
 * stack): it shares the daemon's memory until its exec (clone_init), and the
 * daemon closes the plan's descriptors in its own table afterwards. */
typedef struct ChildPlan {
    const SandboxSpec *spec;
    int sock;
    int devnull;
    /* The child works relative to the container's directory (it may not be able to
     * traverse the depot's parents as an unprivileged id), and attaches trees the
     * parent cloned from host paths before the clone. */
    int dir_fd;
    int *bind_fds; /* per spec->binds[i]: a detached tree for host paths, else -1 */
    int hosts_fd;
    int resolv_fd;
    int *view_fds; /* per spec->cgroup_views[i]: a detached read-only tree */
    int tun_fd;    /* the container's /dev/net/tun node (its own, mode 0666), or -1 */
    /* > 0: cloned with CLONE_FILES; the child first takes a table of its own with
     * every descriptor below this one (fd_high_base) and none of the rest. */
    int unshare_from;
    char overlay_opts[PATH_MAX + 128];
    /* Where the child attaches the lower trees the parent sends (a rootfs of
     * several ':'-joined directories is an image's layer stack, top first). */
    size_t n_lowers;
    char lower_paths[SANDBOX_MAX_LOWERS][24];
} ChildPlan;

#define PLAN_LOWER "rootfs/lower"
/* The overlay root file system is mounted on the rootfs directory itself (its
 * layers are resolved by then), and the scratch tmpfs on the container's
 * directory: both in the child's own mount namespace, where nothing needs those
 * paths afterwards, so neither takes a directory of its own on the depot's disk. */
#define PLAN_ROOT "rootfs"

/* Async-signal-safe helpers (container-fs.c). */
size_t child_strlen(const char *s);
/* Report the failed step (what, and arg in quotes) to the parent and exit. */
_Noreturn void child_fail(const ChildPlan *plan, int err, const char *what, const char *arg);
/* openat2 below rootfd, symlinks resolved inside it; a negative errno on failure. */
int child_open_in_root(int rootfd, const char *path, int flags);

/* The container's tree, built below its root before the pivot (container-fs.c). */
void child_mount_fs_in_root(const ChildPlan *plan, int rootfd, const char *path, const char *fstype,
                            unsigned long flags, const char *data);
void child_attach_tree_in_root(const ChildPlan *plan, int rootfd, int src_fd, const char *path,
                               bool make_ro);
int child_mount_scratch(const ChildPlan *plan);
void child_setup_dev(const ChildPlan *plan, int rootfd, int scratch);
void child_mask_proc(const ChildPlan *plan, int rootfd, int scratch);
void child_setup_cgroup_view(const ChildPlan *plan, int rootfd, int scratch);
