/* Container creation: prepare in the parent, clone the init, finish in the child.
 *
 * The child of clone3() is a copy of one thread of a multi-threaded daemon, so
 * from the clone to the exec it uses only raw system calls and memory prepared
 * beforehand (ChildPlan): no malloc, no stdio, no glibc set*id broadcasting. */
#include <fcntl.h>
#include <limits.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/pidfd.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/close_range.h>
#include <linux/openat2.h>

#include "cloche/cleanup.h"
#include "cloche/fdio.h"
#include "cloche/fileio.h"
#include "cloche/sandbox.h"
#include "cloche/procfs.h"
#include "cloche/vmclone.h"
#include "sandbox-child.h"
#include "sandbox-internal.h"

/* Capabilities and the seccomp filter, last before the exec (which the filter
 * allows). The filter goes in while init still holds CAP_SYS_ADMIN. */
static void confine_init(const ChildPlan *plan)
{
    const ConfinePlan *c = plan->spec->confine;
    if (!c)
        return;
    int r = confine_drop_bounding(c);
    if (r < 0)
        child_fail(plan, -r, "Failed to drop capabilities", NULL);
    r = confine_load_filter(c);
    if (r < 0)
        child_fail(plan, -r, "Failed to install the seccomp filter", NULL);
    r = confine_set_caps(c, true);
    if (r < 0)
        child_fail(plan, -r, "Failed to set capabilities", NULL);
}

static _Noreturn void child_main(const ChildPlan *plan)
{
    const SandboxSpec *spec = plan->spec;

    /* Its own descriptor table, without the daemon's long-lived descriptors: no
     * copy of each now and no close of each at exec. Then the parent may close
     * its end of the socket. */
    if (plan->unshare_from > 0) {
        if (syscall(SYS_close_range, (unsigned)plan->unshare_from, ~0U, CLOSE_RANGE_UNSHARE) < 0)
            child_fail(plan, errno, "Failed to take a descriptor table of its own", NULL);
        if (write(plan->sock, "u", 1) != 1)
            _exit(1);
    }

    /* Into the container's v1 groups, by the child itself: no grace period (see
     * cgroup_open_v1_tasks), and before it allocates what should be charged there. */
    for (size_t i = 0; i < spec->n_self_attach_fds; i++)
        if (write(spec->self_attach_fds[i], "0", 1) != 1)
            child_fail(plan, errno, "Failed to join the container's cgroups", NULL);

    /* Wait for the parent: id maps written, cgroups attached, idmapped lower sent. */
    char byte;
    char cbuf[CMSG_SPACE(sizeof(int) * SANDBOX_MAX_LOWERS)];
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
    if (recvmsg(plan->sock, &msg, MSG_CMSG_CLOEXEC) != 1)
        _exit(1); /* the parent gave up */
    int lower_fds[SANDBOX_MAX_LOWERS];
    size_t n_lower_fds = 0;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
        n_lower_fds = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        memcpy(lower_fds, CMSG_DATA(cm), n_lower_fds * sizeof(int));
    }
    if (n_lower_fds != plan->n_lowers)
        child_fail(plan, EPROTO, "Received the wrong number of image layers", NULL);

    if (!spec->privileged) {
        if (syscall(SYS_setresgid, 0, 0, 0) < 0 || syscall(SYS_setresuid, 0, 0, 0) < 0 ||
            syscall(SYS_setgroups, 0, NULL) < 0)
            child_fail(plan, errno, "Failed to become root in the user namespace", NULL);
    }
    /* After the parent attached us, so the namespace is rooted at our group. */
    if (unshare(CLONE_NEWCGROUP) < 0)
        child_fail(plan, errno, "Failed to create the cgroup namespace", NULL);
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        child_fail(plan, errno, "Failed to make mounts private", NULL);
    /* Handles may be longer than the kernel's 64-byte hostname: the first 64 bytes. */
    if (sethostname(spec->handle, child_strlen(spec->handle) < HOST_NAME_MAX
                                      ? child_strlen(spec->handle)
                                      : HOST_NAME_MAX) < 0)
        child_fail(plan, errno, "Failed to set the hostname", NULL);

    /* The cwd is the container's directory, in this namespace's copy of it (see
     * sandbox_create); relative paths need no search permission above it. */
    for (size_t i = 0; i < n_lower_fds; i++) {
        if (move_mount(lower_fds[i], "", AT_FDCWD, plan->lower_paths[i], MOVE_MOUNT_F_EMPTY_PATH) <
            0)
            child_fail(plan, errno, "Failed to attach the idmapped image", NULL);
        close(lower_fds[i]);
    }
    if (mount("overlay", PLAN_ROOT, "overlay", 0, plan->overlay_opts) < 0)
        child_fail(plan, errno, "Failed to mount the overlay root file system", NULL);
    int rootfd = open(PLAN_ROOT, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        child_fail(plan, errno, "Failed to open the root file system", NULL);

    for (size_t i = 0; i < spec->n_binds; i++) {
        const SandboxBind *b = &spec->binds[i];
        if (b->from_container) {
            int src = child_open_in_root(rootfd, b->src, O_PATH);
            if (src < 0)
                child_fail(plan, -src,
                           "Bind mount source does not exist in the container:", b->src);
            int t = open_tree(src, "",
                              OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);
            if (t < 0)
                child_fail(plan, errno, "Failed to open the bind mount source", b->src);
            close(src);
            child_attach_tree_in_root(plan, rootfd, t, b->dst, !b->rw);
        } else {
            child_attach_tree_in_root(plan, rootfd, plan->bind_fds[i], b->dst, false);
        }
    }

    child_mount_fs_in_root(plan, rootfd, "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    int scratch = child_mount_scratch(plan);
    child_setup_dev(plan, rootfd, scratch);
    child_mount_fs_in_root(plan, rootfd, "/sys", "sysfs",
                           MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    child_setup_cgroup_view(plan, rootfd, scratch);
    child_attach_tree_in_root(plan, rootfd, plan->hosts_fd, "/etc/hosts", false);
    child_attach_tree_in_root(plan, rootfd, plan->resolv_fd, "/etc/resolv.conf", false);
    child_mask_proc(plan, rootfd, scratch);
    close(scratch);

    if (fchdir(rootfd) < 0)
        child_fail(plan, errno, "Failed to enter the root file system", NULL);
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        child_fail(plan, errno, "Failed to pivot into the root file system", NULL);
    if (umount2(".", MNT_DETACH) < 0)
        child_fail(plan, errno, "Failed to detach the host's root", NULL);
    if (chdir("/") < 0)
        child_fail(plan, errno, "Failed to chdir to /", NULL);

    if (dup2(plan->devnull, 0) < 0 || dup2(plan->devnull, 1) < 0 || dup2(plan->devnull, 2) < 0)
        child_fail(plan, errno, "Failed to set up init's stdio", NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    syscall(SYS_close_range, 3, ~0u, CLOSE_RANGE_CLOEXEC);

    char *const argv[] = {(char *)"garden-init", NULL}; /* guardian's name: clients look for it */
    char *const envp[] = {NULL};
    fd_limit_restore(0);
    confine_init(plan);
    syscall(SYS_execveat, spec->init_fd, "", argv, envp, AT_EMPTY_PATH);
    child_fail(plan, errno, "Failed to execute cloche-init", NULL);
}

/* ---- parent side ---- */

/* Container root to base and 0..count-1 to base..; or guardian's shared map:
 * root to SANDBOX_SHARED_ROOT, every other id to itself. */
static int write_id_map(pid_t pid, const char *file, uint32_t base, uint32_t count)
{
    char path[64], map[96];
    snprintf(path, sizeof(path), "/proc/%d/%s", pid, file);
    int n = base == SANDBOX_SHARED_ROOT
                ? snprintf(map, sizeof(map), "0 %u 1\n1 1 %u\n", base, SANDBOX_SHARED_ROOT - 1)
                : snprintf(map, sizeof(map), "0 %u %u\n", base, count ? count : SANDBOX_ID_COUNT);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (write(fd, map, (size_t)n) != n)
        return -errno;
    return 0;
}

/* A detached, read-only clone of an image directory: idmapped for pid's user
 * namespace (userns >= 0), or plain (a privileged container's layer stack). */
static int lower_tree(int userns, const char *dir, int *ret)
{
    _cleanup_close_ int tree =
        open_tree(AT_FDCWD, dir, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (tree < 0)
        return -errno;
    struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY};
    if (userns >= 0) {
        attr.attr_set |= MOUNT_ATTR_IDMAP;
        attr.userns_fd = (uint64_t)userns;
    }
    if (mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0)
        return -errno;
    *ret = TAKE_FD(tree);
    return 0;
}

/* The trees the child attaches as its lowers (plan->n_lowers of them): the
 * rootfs idmapped, or each layer of a ':'-joined stack. */
static int lower_trees(const ChildPlan *plan, pid_t pid, int *fds)
{
    const SandboxSpec *spec = plan->spec;
    _cleanup_close_ int userns = -1;
    if (!spec->privileged) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/ns/user", pid);
        userns = open(path, O_RDONLY | O_CLOEXEC);
        if (userns < 0)
            return -errno;
    }
    _cleanup_free_ char *copy = strdup(spec->rootfs);
    if (!copy)
        return -ENOMEM;
    char *save = NULL;
    size_t i = 0;
    for (char *dir = strtok_r(copy, ":", &save); dir && i < plan->n_lowers;
         dir = strtok_r(NULL, ":", &save)) {
        int r = lower_tree(userns, dir, &fds[i]);
        if (r < 0)
            return r;
        i++;
    }
    return i == plan->n_lowers ? 0 : -EINVAL;
}

static int send_go(int sock, const int *fds, size_t n)
{
    char byte = 'g';
    char cbuf[CMSG_SPACE(sizeof(int) * SANDBOX_MAX_LOWERS)] = {0};
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (n) {
        msg.msg_control = cbuf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * n);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        if (!cm)
            return -EINVAL;
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * n);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * n);
    }
    return sendmsg(sock, &msg, MSG_NOSIGNAL) == 1 ? 0 : -errno;
}

/* A detached clone of a host path, read-only (recursively) unless rw. */
static int clone_host_tree(int dirfd, const char *path, bool rw, int *ret)
{
    _cleanup_close_ int fd =
        open_tree(dirfd, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (fd < 0)
        return -errno;
    if (!rw) {
        struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY};
        if (mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) < 0)
            return -errno;
    }
    *ret = TAKE_FD(fd);
    return 0;
}

static void plan_close(ChildPlan *plan)
{
    if (plan->bind_fds)
        for (size_t i = 0; i < plan->spec->n_binds; i++)
            if (plan->bind_fds[i] >= 0)
                close(plan->bind_fds[i]);
    free(plan->bind_fds);
    plan->bind_fds = NULL;
    if (plan->view_fds)
        for (size_t i = 0; i < plan->spec->n_cgroup_views; i++)
            if (plan->view_fds[i] >= 0)
                close(plan->view_fds[i]);
    free(plan->view_fds);
    plan->view_fds = NULL;
    if (plan->dir_fd >= 0)
        close(plan->dir_fd);
    if (plan->hosts_fd >= 0)
        close(plan->hosts_fd);
    if (plan->resolv_fd >= 0)
        close(plan->resolv_fd);
    if (plan->tun_fd >= 0)
        close(plan->tun_fd);
    plan->dir_fd = plan->hosts_fd = plan->resolv_fd = plan->tun_fd = -1;
}

static void plan_freep(ChildPlan **plan)
{
    if (*plan) {
        plan_close(*plan);
        free(*plan);
    }
}

/* Everything the child needs, made while allocation and logging are still fine. */
static int plan_prepare(ChildPlan *plan, const SandboxSpec *spec, Failure *reterr)
{
    plan->dir_fd = plan->hosts_fd = plan->resolv_fd = plan->tun_fd = -1;
    plan->dir_fd = open(spec->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (plan->dir_fd < 0)
        return failure_errno(reterr, -errno, "Failed to open the container's directory");
    int d = plan->dir_fd;

    bool own = !spec->privileged;
    uid_t uid = spec->uid_base;
    static const char *const dirs[] = {PLAN_ROOT, "rootfs/upper", "rootfs/work", PLAN_LOWER};
    for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
        if (mkdirat(d, dirs[i], 0755) < 0 && errno != EEXIST)
            return failure_errno(reterr, -errno, "Failed to create '%s'", dirs[i]);
        /* upper and work belong to container root, so its writes can land there. */
        if (own && (i == 1 || i == 2) && fchownat(d, dirs[i], uid, uid, 0) < 0)
            return failure_errno(reterr, -errno, "Failed to hand over '%s'", dirs[i]);
    }
    if (own &&
        (fchownat(d, "hosts", uid, uid, 0) < 0 || fchownat(d, "resolv.conf", uid, uid, 0) < 0))
        return failure_errno(reterr, -errno, "Failed to hand over the /etc files");

    /* A volatile overlay marks its work directory (work/incompat/volatile), and
     * the kernel refuses to mount it again while the mark is there, against a
     * layer a crash left unsynced. A start of a stopped container mounts the
     * layer again in the same boot (its pages are all in memory), and a layer
     * that outlives a reboot is not volatile (spec->volatile_layer), except
     * one whose start a crash cut short: the mark goes. */
    static const char *const marks[] = {"rootfs/work/work/incompat/volatile/dirty",
                                        "rootfs/work/work/incompat/volatile",
                                        "rootfs/work/work/incompat"};
    for (size_t i = 0; i < ELEMENTSOF(marks); i++)
        if (unlinkat(d, marks[i], i ? AT_REMOVEDIR : 0) < 0 && errno != ENOENT)
            return failure_errno(reterr, -errno, "Failed to remove the overlay's mark '%s'",
                                 marks[i]);
    int n;
    size_t layers = 1;
    for (const char *p = spec->rootfs; (p = strchr(p, ':')); p++)
        layers++;
    if (layers > SANDBOX_MAX_LOWERS)
        return failure_input(reterr, -EINVAL, "An image of %zu layers has more than %d", layers,
                             SANDBOX_MAX_LOWERS);
    if (layers > 1) {
        /* An image's layer stack: each layer attached below rootfs/lower. */
        char lowerdir[SANDBOX_MAX_LOWERS * 24] = "";
        plan->n_lowers = layers;
        for (size_t i = 0; i < layers; i++) {
            snprintf(plan->lower_paths[i], sizeof(plan->lower_paths[i]), PLAN_LOWER "/%zu", i);
            if (mkdirat(d, plan->lower_paths[i], 0755) < 0 && errno != EEXIST)
                return failure_errno(reterr, -errno, "Failed to create '%s'", plan->lower_paths[i]);
            if (i)
                strcat(lowerdir, ":");
            strcat(lowerdir, plan->lower_paths[i]);
        }
        n = snprintf(plan->overlay_opts, sizeof(plan->overlay_opts),
                     "lowerdir=%s,upperdir=rootfs/upper,workdir=rootfs/work%s%s", lowerdir,
                     spec->volatile_layer ? ",volatile" : "", spec->privileged ? "" : ",userxattr");
    } else {
        plan->n_lowers = spec->privileged ? 0 : 1;
        snprintf(plan->lower_paths[0], sizeof(plan->lower_paths[0]), PLAN_LOWER);
        n = snprintf(plan->overlay_opts, sizeof(plan->overlay_opts),
                     "lowerdir=%s,upperdir=rootfs/upper,workdir=rootfs/work%s%s",
                     spec->privileged ? spec->rootfs : PLAN_LOWER,
                     spec->volatile_layer ? ",volatile" : "", spec->privileged ? "" : ",userxattr");
    }
    if (n < 0 || (size_t)n >= sizeof(plan->overlay_opts))
        return failure_errno(reterr, -ENAMETOOLONG, "Image path too long");

    int r = clone_host_tree(d, "hosts", true, &plan->hosts_fd);
    if (r >= 0)
        r = clone_host_tree(d, "resolv.conf", true, &plan->resolv_fd);
    if (r < 0)
        return failure_errno(reterr, r, "Failed to prepare the /etc files");

    plan->bind_fds = malloc((spec->n_binds + 1) * sizeof(int));
    if (!plan->bind_fds)
        return failure_errno(reterr, -ENOMEM, "Failed to prepare bind mounts");
    for (size_t i = 0; i < spec->n_binds; i++)
        plan->bind_fds[i] = -1;
    /* A node for /dev/net/tun, usable by the container's root whatever mode the
     * host's has (an unprivileged container cannot mknod): the daemon's shared
     * one, bound read-only (a device opens for writing on a read-only mount,
     * and nobody can chmod it there), else one of the container's own. Best
     * effort: without it the container has no tun device. */
    if (spec->tun_node)
        (void)clone_host_tree(AT_FDCWD, spec->tun_node, false, &plan->tun_fd);
    else if ((mknodat(d, "tun", S_IFCHR | 0666, makedev(10, 200)) == 0 || errno == EEXIST) &&
             fchmodat(d, "tun", 0666, 0) == 0)
        (void)clone_host_tree(d, "tun", true, &plan->tun_fd);
    plan->view_fds = malloc((spec->n_cgroup_views + 1) * sizeof(int));
    if (!plan->view_fds)
        return failure_errno(reterr, -ENOMEM, "Failed to prepare the cgroup view");
    for (size_t i = 0; i < spec->n_cgroup_views; i++)
        plan->view_fds[i] = -1;
    for (size_t i = 0; i < spec->n_cgroup_views; i++) {
        r = clone_host_tree(AT_FDCWD, spec->cgroup_views[i].path, false, &plan->view_fds[i]);
        if (r < 0)
            return failure_errno(reterr, r, "Failed to open the cgroup '%s'",
                                 spec->cgroup_views[i].path);
    }
    for (size_t i = 0; i < spec->n_binds; i++) {
        if (spec->binds[i].from_container)
            continue;
        r = clone_host_tree(AT_FDCWD, spec->binds[i].src, spec->binds[i].rw, &plan->bind_fds[i]);
        if (r < 0)
            return failure_set(reterr, r, r == -ENOENT ? FAILURE_INPUT : FAILURE_SYSTEM,
                               "Failed to open the bind mount source '%s': %s", spec->binds[i].src,
                               strerror(-r));
    }
    return 0;
}

/* Whether every descriptor the child uses is below base (see unshare_from). */
static bool plan_fds_below(const ChildPlan *plan, const SandboxSpec *spec, int base)
{
    int fds[] = {plan->sock,      plan->devnull, plan->dir_fd, plan->hosts_fd,
                 plan->resolv_fd, plan->tun_fd,  spec->init_fd};
    for (size_t i = 0; i < ELEMENTSOF(fds); i++)
        if (fds[i] >= base)
            return false;
    for (size_t i = 0; i < spec->n_binds; i++)
        if (plan->bind_fds[i] >= base)
            return false;
    for (size_t i = 0; i < spec->n_cgroup_views; i++)
        if (plan->view_fds[i] >= base)
            return false;
    for (size_t i = 0; i < spec->n_self_attach_fds; i++)
        if (spec->self_attach_fds[i] >= base)
            return false;
    return true;
}

/* A child cloned with CLONE_FILES shares our table until it says it has its own
 * (or fails, or dies): only then may our end of its socket be closed. */
static void await_unshared(int parent_sock, int pidfd)
{
    struct pollfd pfd[2] = {{.fd = parent_sock, .events = POLLIN}, {.fd = pidfd, .events = POLLIN}};
    if (poll(pfd, 2, 30000) < 1 || !(pfd[0].revents & POLLIN))
        return;
    char buf[sizeof(ChildReport)];
    if (recv(parent_sock, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT) == 1)
        (void)!recv(parent_sock, buf, 1, MSG_DONTWAIT); /* a report stays for await_init */
}

static void child_entry(void *plan)
{
    child_main(plan);
}

/* Clone the init into its new namespaces (and, on cgroup v2, its cgroup) from
 * inside the container's directory: sharing our memory until its exec where the
 * architecture allows (vmclone.h; *ret_vm, for sandbox_create to finish), else as
 * a copy of it. */
static int clone_init(const ChildPlan *plan, const SandboxSpec *spec, SandboxInit *ret,
                      VmClone **ret_vm, Failure *reterr)
{
    uint64_t flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET |
                     CLONE_PIDFD | (spec->privileged ? 0 : CLONE_NEWUSER) |
                     (plan->unshare_from > 0 ? CLONE_FILES : 0);
    int pidfd = -1;
    struct clone_args args = {
        .flags = flags,
        .pidfd = (uint64_t)(uintptr_t)&pidfd,
        .exit_signal = SIGCHLD,
    };
    if (spec->cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)spec->cgroup_fd;
    }
    pid_t pid;
    if (vmclone_supported() && !getenv("CLOCHE_CLONE_COPY")) {
        int r = vmclone_start(&args, plan->dir_fd, child_entry, (void *)plan, ret_vm, &pid);
        if (r < 0)
            return failure_errno(reterr, r, "Failed to create the container's namespaces");
        *ret = (SandboxInit){.pid = pid, .pidfd = pidfd};
        return 0;
    }
    /* The child must work in its own mount namespace's copy of the container's
     * directory, and as an unprivileged id it may not be able to walk there by
     * path. A cwd is carried into the new namespace's copy by clone, so clone
     * from inside the directory, on a cwd private to this thread. */
    if (unshare(CLONE_FS) < 0)
        return failure_errno(reterr, -errno, "Failed to give the thread its own cwd");
    _cleanup_close_ int oldcwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (oldcwd < 0 || fchdir(plan->dir_fd) < 0)
        return failure_errno(reterr, -errno, "Failed to enter the container's directory");
    pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
    if (pid == 0)
        child_main(plan);
    int clone_errno = errno;
    if (fchdir(oldcwd) < 0)
        (void)chdir("/");
    if (pid < 0)
        return failure_errno(reterr, -clone_errno, "Failed to create the container's namespaces");
    *ret = (SandboxInit){.pid = pid, .pidfd = pidfd};
    return 0;
}

/* Wait for the child: EOF = it exec'd init (its end is close-on-exec); a report
 * = it failed (recorded in reterr). *ret_step names a failure of our own. */
static int await_init(int parent_sock, const char **ret_step, Failure *reterr)
{
    struct pollfd pfd = {.fd = parent_sock, .events = POLLIN};
    ChildReport rep;
    if (poll(&pfd, 1, 30000) != 1) {
        *ret_step = "Timed out setting up the container";
        return -ETIMEDOUT;
    }
    ssize_t n = read(parent_sock, &rep, sizeof(rep));
    /* A child that failed before it took the go left it unread: the kernel then
     * reports the reset first, once, ahead of the child's report still queued. */
    if (n < 0 && errno == ECONNRESET)
        n = read(parent_sock, &rep, sizeof(rep));
    if (n == (ssize_t)sizeof(rep)) {
        rep.what[sizeof(rep.what) - 1] = '\0';
        failure_set(reterr, -rep.err, FAILURE_SYSTEM, "%s: %s", rep.what, strerror(rep.err));
        return -rep.err ? -rep.err : -EIO;
    }
    if (n != 0) {
        *ret_step = "Lost contact with the container while setting it up";
        return -EIO;
    }
    return 0;
}

/* The parent's part once the child is cloned: id maps, cgroups, the idmapped
 * image, the go, the caller's preparation, then the child's word. */
static int setup_init(const ChildPlan *plan, const SandboxSpec *spec, pid_t pid, int parent_sock,
                      Failure *reterr)
{
    const char *step = NULL;
    int r = 0;
    int lowers[SANDBOX_MAX_LOWERS];
    for (size_t i = 0; i < plan->n_lowers; i++)
        lowers[i] = -1;
    if (!spec->privileged) {
        if ((r = write_id_map(pid, "uid_map", spec->uid_base, spec->uid_count)) < 0 ||
            (r = write_id_map(pid, "gid_map", spec->uid_base, spec->uid_count)) < 0)
            step = "Failed to write the container's id map";
    }
    if (!step && spec->attach && (r = spec->attach(pid, spec->attach_userdata)) < 0)
        step = "Failed to place the container in its cgroups";
    if (!step && plan->n_lowers && (r = lower_trees(plan, pid, lowers)) < 0)
        step = "Failed to create the idmapped image mount";
    if (!step && (r = send_go(parent_sock, lowers, plan->n_lowers)) < 0)
        step = "Failed to start the container";
    for (size_t i = 0; i < plan->n_lowers; i++)
        if (lowers[i] >= 0)
            close(lowers[i]);
    int prepared = 0;
    if (!step && spec->prepare)
        prepared = spec->prepare(pid, spec->prepare_userdata);
    if (!step)
        r = await_init(parent_sock, &step, reterr);
    if (!step && r >= 0 && prepared < 0)
        r = prepared; /* the callback filled in its own error */
    if (step)
        failure_errno(reterr, r, "%s", step);
    return step || r < 0 ? (r < 0 ? r : -EIO) : 0;
}

int sandbox_create(const SandboxSpec *spec, SandboxInit *ret, Failure *reterr)
{
    _cleanup_(plan_freep) ChildPlan *plan = calloc(1, sizeof(ChildPlan));
    if (!plan)
        return failure_errno(reterr, -ENOMEM, "Failed to prepare the container");
    plan->spec = spec;
    int r = plan_prepare(plan, spec, reterr);
    if (r < 0)
        return r;

    _cleanup_close_ int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    int sv[2];
    if (devnull < 0 || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return failure_errno(reterr, -errno, "Failed to prepare the container");
    _cleanup_close_ int parent_sock = sv[0];
    _cleanup_close_ int child_sock = sv[1];
    plan->sock = child_sock;
    plan->devnull = devnull;

    int base = fd_high_base();
    if (base > 0 && plan_fds_below(plan, spec, base))
        plan->unshare_from = base;

    SandboxInit init;
    VmClone *vm = NULL;
    r = clone_init(plan, spec, &init, &vm, reterr);
    if (r < 0) {
        vmclone_finish(vm);
        return r;
    }
    if (plan->unshare_from > 0)
        await_unshared(parent_sock, init.pidfd);
    close(TAKE_FD(child_sock));
    r = setup_init(plan, spec, init.pid, parent_sock, reterr);
    if (r >= 0) {
        r = procfs_start_time(init.pid, &init.start_time);
        if (r < 0)
            failure_errno(reterr, r, "The container's init vanished");
    }
    if (r < 0) {
        pidfd_send_signal(init.pidfd, SIGKILL, NULL, 0);
        vmclone_finish(vm); /* the child has exited: no more use of plan */
        sandbox_reap(&init);
        return r;
    }
    vmclone_finish(vm); /* it has exec'd (its socket closed at the exec) */
    *ret = init;
    return 0;
}

int sandbox_tun_node(const char *dir, char **ret_path)
{
    _cleanup_free_ char *path = NULL;
    if (asprintf(&path, "%s/tun", dir) < 0)
        return -ENOMEM;
    struct stat st;
    if (mknod(path, S_IFCHR | 0666, makedev(10, 200)) < 0 && errno != EEXIST)
        return -errno;
    if (lstat(path, &st) < 0)
        return -errno;
    if (!S_ISCHR(st.st_mode) || st.st_rdev != makedev(10, 200))
        return -EEXIST;
    if ((st.st_mode & 07777) != 0666 && chmod(path, 0666) < 0)
        return -errno;
    *ret_path = TAKE_PTR(path);
    return 0;
}
