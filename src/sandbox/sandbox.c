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
#include "sandbox-internal.h"

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
#define PLAN_MERGED "rootfs/merged"
/* Where the child mounts its scratch tmpfs before the pivot (see mount_scratch). */
#define PLAN_SCRATCH "rootfs/scratch"

/* ---- async-signal-safe helpers for the child ---- */

static size_t safe_strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

static void safe_append(char *dst, size_t size, const char *src)
{
    size_t n = safe_strlen(dst);
    while (*src && n + 1 < size)
        dst[n++] = *src++;
    dst[n] = '\0';
}

static _Noreturn void child_fail(const ChildPlan *plan, int err, const char *what, const char *arg)
{
    ChildReport rep = {.err = err};
    safe_append(rep.what, sizeof(rep.what), what);
    if (arg) {
        safe_append(rep.what, sizeof(rep.what), " '");
        safe_append(rep.what, sizeof(rep.what), arg);
        safe_append(rep.what, sizeof(rep.what), "'");
    }
    ssize_t w = write(plan->sock, &rep, sizeof(rep));
    (void)w;
    _exit(1);
}

static int open_in_root(int rootfd, const char *path, int flags)
{
    struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC),
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    int fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
    return fd < 0 ? -errno : fd;
}

/* Open path inside the root as O_PATH, creating it (and missing parents) as a
 * directory, or as an empty file when !is_dir. Symlinks resolve inside the root. */
static int ensure_in_root(int rootfd, const char *path, bool is_dir)
{
    char prefix[PATH_MAX];
    size_t len = safe_strlen(path);
    if (len >= sizeof(prefix))
        return -ENAMETOOLONG;
    int fd = open_in_root(rootfd, path, O_PATH | (is_dir ? O_DIRECTORY : 0));
    if (fd >= 0 || fd != -ENOENT)
        return fd;

    /* Walk the components, creating what is missing. */
    int parent = open_in_root(rootfd, "/", O_PATH | O_DIRECTORY);
    if (parent < 0)
        return parent;
    size_t i = 0;
    while (i < len) {
        while (i < len && path[i] == '/')
            i++;
        size_t start = i;
        while (i < len && path[i] != '/')
            i++;
        if (i == start)
            break;
        size_t k;
        for (k = 0; k < i; k++)
            prefix[k] = path[k];
        prefix[k] = '\0';
        char name[256];
        if (i - start >= sizeof(name)) {
            close(parent);
            return -ENAMETOOLONG;
        }
        for (k = 0; k < i - start; k++)
            name[k] = path[start + k];
        name[k] = '\0';
        bool last = true;
        for (size_t j = i; j < len; j++)
            if (path[j] != '/')
                last = false;
        if (last && !is_dir) {
            int f = openat(parent, name, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
            if (f >= 0)
                close(f);
            /* EEXIST-like failures (a symlink to a file) resolve below. */
        } else if (mkdirat(parent, name, 0755) < 0 && errno != EEXIST) {
            int r = -errno;
            close(parent);
            return r;
        }
        int next = open_in_root(rootfd, prefix, O_PATH | (last && !is_dir ? 0 : O_DIRECTORY));
        close(parent);
        if (next < 0)
            return next;
        parent = next;
    }
    return parent;
}

static void fd_path(char buf[32], int fd)
{
    char digits[16];
    int n = 0;
    unsigned v = (unsigned)fd;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    char *p = buf;
    const char *prefix = "/proc/self/fd/";
    while (*prefix)
        *p++ = *prefix++;
    while (n)
        *p++ = digits[--n];
    *p = '\0';
}

/* Mount a fresh file system at path inside the root. */
static void mount_fs_in_root(const ChildPlan *plan, int rootfd, const char *path,
                             const char *fstype, unsigned long flags, const char *data)
{
    int fd = ensure_in_root(rootfd, path, true);
    if (fd < 0)
        child_fail(plan, -fd, "Failed to create the mount point", path);
    char target[32];
    fd_path(target, fd);
    if (mount(fstype, target, fstype, flags, data) < 0)
        child_fail(plan, errno, "Failed to mount", path);
    close(fd);
}

/* Bind src_fd (an open_tree clone) onto path inside the root. */
static void attach_tree_in_root(const ChildPlan *plan, int rootfd, int src_fd, const char *path,
                                bool make_ro)
{
    struct stat st;
    if (fstat(src_fd, &st) < 0)
        child_fail(plan, errno, "Failed to inspect the bind mount source for", path);
    if (make_ro) {
        struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY};
        if (mount_setattr(src_fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) < 0)
            child_fail(plan, errno, "Failed to make the bind mount read-only:", path);
    }
    int dst = ensure_in_root(rootfd, path, S_ISDIR(st.st_mode));
    if (dst < 0)
        child_fail(plan, -dst, "Failed to create the bind mount point", path);
    if (move_mount(src_fd, "", dst, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        child_fail(plan, errno, "Failed to bind mount onto", path);
    close(dst);
    close(src_fd);
}

/* A fresh file system on a new directory below dir, in the child's own fresh
 * /dev (a tmpfs nothing else has seen: no name there needs resolving in the
 * root, and nothing can be there already). */
static void mount_fs_below(const ChildPlan *plan, int dir, const char *name, const char *fstype,
                           unsigned long flags, const char *data)
{
    if (mkdirat(dir, name, 0755) < 0)
        child_fail(plan, errno, "Failed to create the mount point /dev/", name);
    int fd = openat(dir, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        child_fail(plan, errno, "Failed to open /dev/", name);
    char target[32];
    fd_path(target, fd);
    if (mount(fstype, target, fstype, flags, data) < 0)
        child_fail(plan, errno, "Failed to mount /dev/", name);
    close(fd);
}

/* Bind src (a detached tree of a device node; taken) onto a new file below dir,
 * in the child's own fresh /dev. */
static void bind_node_below(const ChildPlan *plan, int dir, int src, const char *name)
{
    if (mknodat(dir, name, S_IFREG | 0644, 0) < 0)
        child_fail(plan, errno, "Failed to create /dev/", name);
    if (move_mount(src, "", dir, name, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        child_fail(plan, errno, "Failed to bind mount onto /dev/", name);
    close(src);
}

/* The container's one tmpfs, holding /dev, /dev/shm, the cgroup view's
 * directories and the empty directory that masks paths, each a directory of it
 * bound where it belongs. One superblock instead of four: every superblock
 * costs the kernel work at each memory cgroup's removal on the host (its two
 * lists are walked, under the cgroup mutex) and at each later mount, so with
 * thousands of containers alive the count per container is what create and
 * destroy pay for. The tmpfs itself stays mounted only below the old root,
 * which the pivot detaches; a bind's ".." stops at its own root, and renames
 * between the binds fail (EXDEV), so no bind reaches another's directory. */
static int mount_scratch(const ChildPlan *plan)
{
    if (mount("tmpfs", PLAN_SCRATCH, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k") <
        0)
        child_fail(plan, errno, "Failed to mount the container's tmpfs", NULL);
    int scratch = open(PLAN_SCRATCH, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (scratch < 0)
        child_fail(plan, errno, "Failed to open the container's tmpfs", NULL);
    static const struct {
        const char *name;
        mode_t mode;
    } dirs[] = {{"dev", 0755}, {"shm", 01777}, {"cgroup", 0755}, {"empty", 0555}};
    for (size_t i = 0; i < ELEMENTSOF(dirs); i++)
        if (mkdirat(scratch, dirs[i].name, dirs[i].mode) < 0 ||
            fchmodat(scratch, dirs[i].name, dirs[i].mode, 0) < 0)
            child_fail(plan, errno, "Failed to create the tmpfs directory", dirs[i].name);
    return scratch;
}

/* A detached bind of one directory of the scratch tmpfs, with attrs set on it. */
static int scratch_tree(const ChildPlan *plan, int scratch, const char *name, uint64_t attrs)
{
    int t = open_tree(scratch, name, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (t < 0)
        child_fail(plan, errno, "Failed to open the tmpfs directory", name);
    struct mount_attr attr = {.attr_set = attrs};
    if (attrs && mount_setattr(t, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0)
        child_fail(plan, errno, "Failed to set the mount options of the tmpfs directory", name);
    return t;
}

static void setup_dev(const ChildPlan *plan, int rootfd, int scratch)
{
    attach_tree_in_root(plan, rootfd, scratch_tree(plan, scratch, "dev", 0), "/dev", false);
    int dev = open_in_root(rootfd, "/dev", O_PATH | O_DIRECTORY);
    if (dev < 0)
        child_fail(plan, -dev, "Failed to open", "/dev");
    static const char *const nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
    for (size_t i = 0; i < ELEMENTSOF(nodes); i++) {
        char host[24] = "/dev/";
        safe_append(host, sizeof(host), nodes[i]);
        int src = open_tree(AT_FDCWD, host, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        if (src < 0)
            child_fail(plan, errno, "Failed to open the bind mount source", host);
        bind_node_below(plan, dev, src, nodes[i]);
    }
    /* On the device allow-list; opening it needs no capability, using it does. */
    if (plan->tun_fd >= 0) {
        if (mkdirat(dev, "net", 0755) < 0)
            child_fail(plan, errno, "Failed to create /dev/", "net");
        int net = openat(dev, "net", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (net < 0)
            child_fail(plan, errno, "Failed to open /dev/", "net");
        bind_node_below(plan, net, plan->tun_fd, "tun");
        close(net);
    }
    mount_fs_below(plan, dev, "pts", "devpts", MS_NOSUID | MS_NOEXEC,
                   "newinstance,ptmxmode=0666,mode=0620,gid=5");
    if (mkdirat(dev, "shm", 0755) < 0)
        child_fail(plan, errno, "Failed to create the mount point /dev/", "shm");
    int shm = scratch_tree(plan, scratch, "shm",
                           MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
    if (move_mount(shm, "", dev, "shm", MOVE_MOUNT_F_EMPTY_PATH) < 0)
        child_fail(plan, errno, "Failed to bind mount onto /dev/", "shm");
    close(shm);
    mount_fs_below(plan, dev, "mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    static const char *const links[][2] = {{"pts/ptmx", "ptmx"},
                                           {"/proc/self/fd", "fd"},
                                           {"/proc/self/fd/0", "stdin"},
                                           {"/proc/self/fd/1", "stdout"},
                                           {"/proc/self/fd/2", "stderr"}};
    for (size_t i = 0; i < ELEMENTSOF(links); i++)
        if (symlinkat(links[i][0], dev, links[i][1]) < 0)
            child_fail(plan, errno, "Failed to create /dev/", links[i][1]);
    /* Privileged containers get FUSE, as in guardian (10:229, mode 0666). */
    if (plan->spec->privileged && (mknodat(dev, "fuse", S_IFCHR | 0666, makedev(10, 229)) < 0 ||
                                   fchmodat(dev, "fuse", 0666, 0) < 0))
        child_fail(plan, errno, "Failed to create /dev/", "fuse");
    close(dev);
}

/* Every container: hide what runc hides (a user namespace does not make
 * /proc/timer_list or /sys/firmware any less revealing). */
static void mask_proc(const ChildPlan *plan, int rootfd, int scratch)
{
    static const char *const masked[] = {"/proc/kcore",         "/proc/keys",
                                         "/proc/latency_stats", "/proc/timer_list",
                                         "/proc/timer_stats",   "/proc/sched_debug",
                                         "/proc/acpi",          "/proc/scsi",
                                         "/sys/firmware",       "/sys/devices/virtual/powercap",
                                         "/proc/asound"};
    /* Directories are masked by the scratch tmpfs's empty directory, read-only
     * (see mount_scratch). */
    for (size_t i = 0; i < ELEMENTSOF(masked); i++) {
        int fd = open_in_root(rootfd, masked[i], O_PATH);
        if (fd < 0)
            continue;
        struct stat st;
        fstat(fd, &st);
        char target[32];
        fd_path(target, fd);
        int r;
        if (!S_ISDIR(st.st_mode)) {
            r = mount("/dev/null", target, NULL, MS_BIND, NULL);
        } else {
            int t = scratch_tree(plan, scratch, "empty",
                                 MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
                                     MOUNT_ATTR_NOEXEC);
            r = move_mount(t, "", fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
            close(t);
        }
        if (r < 0)
            child_fail(plan, errno, "Failed to mask", masked[i]);
        close(fd);
    }
    static const char *const readonly[] = {"/proc/sys", "/proc/sysrq-trigger", "/proc/irq",
                                           "/proc/bus", "/proc/fs"};
    for (size_t i = 0; i < ELEMENTSOF(readonly); i++) {
        int fd = open_in_root(rootfd, readonly[i], O_PATH);
        if (fd < 0)
            continue;
        int t =
            open_tree(fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);
        if (t < 0)
            child_fail(plan, errno, "Failed to open", readonly[i]);
        struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY};
        if (mount_setattr(t, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) < 0 ||
            move_mount(t, "", fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
            child_fail(plan, errno, "Failed to make read-only:", readonly[i]);
        close(t);
        close(fd);
    }
}

/* The container's own groups, read-only at /sys/fs/cgroup: on pure v2 the group
 * is the view's root; otherwise a read-only directory of the scratch tmpfs holds
 * one directory per hierarchy, as on the host. Nothing above the container's
 * groups shows. */
static void setup_cgroup_view(const ChildPlan *plan, int rootfd, int scratch)
{
    const SandboxSpec *spec = plan->spec;
    if (spec->n_cgroup_views == 1 && !spec->cgroup_views[0].name[0]) {
        attach_tree_in_root(plan, rootfd, plan->view_fds[0], "/sys/fs/cgroup", false);
        return;
    }
    if (!spec->n_cgroup_views)
        return;
    attach_tree_in_root(plan, rootfd,
                        scratch_tree(plan, scratch, "cgroup",
                                     MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC),
                        "/sys/fs/cgroup", false);
    /* Each group on a new directory of that fresh directory (nothing else has
     * seen it: no name there needs resolving in the root). */
    int dir = open_in_root(rootfd, "/sys/fs/cgroup", O_PATH | O_DIRECTORY);
    if (dir < 0)
        child_fail(plan, -dir, "Failed to open", "/sys/fs/cgroup");
    for (size_t i = 0; i < spec->n_cgroup_views; i++) {
        const char *name = spec->cgroup_views[i].name;
        bool plain = name[0] && !(name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2])));
        for (const char *c = name; plain && *c; c++)
            plain = *c != '/';
        if (!plain)
            child_fail(plan, EINVAL, "Bad cgroup hierarchy name", name);
        if (mkdirat(dir, name, 0755) < 0 ||
            move_mount(plan->view_fds[i], "", dir, name, MOVE_MOUNT_F_EMPTY_PATH) < 0)
            child_fail(plan, errno, "Failed to mount the cgroup view of", name);
        close(plan->view_fds[i]);
    }
    struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY};
    if (mount_setattr(dir, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0)
        child_fail(plan, errno, "Failed to make read-only:", "/sys/fs/cgroup");
    close(dir);
}

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
    if (sethostname(spec->handle, safe_strlen(spec->handle) < HOST_NAME_MAX
                                      ? safe_strlen(spec->handle)
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
    if (mount("overlay", PLAN_MERGED, "overlay", 0, plan->overlay_opts) < 0)
        child_fail(plan, errno, "Failed to mount the overlay root file system", NULL);
    int rootfd = open(PLAN_MERGED, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        child_fail(plan, errno, "Failed to open the root file system", NULL);

    for (size_t i = 0; i < spec->n_binds; i++) {
        const SandboxBind *b = &spec->binds[i];
        if (b->from_container) {
            int src = open_in_root(rootfd, b->src, O_PATH);
            if (src < 0)
                child_fail(plan, -src,
                           "Bind mount source does not exist in the container:", b->src);
            int t = open_tree(src, "",
                              OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);
            if (t < 0)
                child_fail(plan, errno, "Failed to open the bind mount source", b->src);
            close(src);
            attach_tree_in_root(plan, rootfd, t, b->dst, !b->rw);
        } else {
            attach_tree_in_root(plan, rootfd, plan->bind_fds[i], b->dst, false);
        }
    }

    mount_fs_in_root(plan, rootfd, "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    int scratch = mount_scratch(plan);
    setup_dev(plan, rootfd, scratch);
    mount_fs_in_root(plan, rootfd, "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                     NULL);
    setup_cgroup_view(plan, rootfd, scratch);
    attach_tree_in_root(plan, rootfd, plan->hosts_fd, "/etc/hosts", false);
    attach_tree_in_root(plan, rootfd, plan->resolv_fd, "/etc/resolv.conf", false);
    mask_proc(plan, rootfd, scratch);
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
    static const char *const dirs[] = {"rootfs",    "rootfs/upper", "rootfs/work",
                                       PLAN_MERGED, PLAN_LOWER,     PLAN_SCRATCH};
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
                     "lowerdir=%s,upperdir=rootfs/upper,workdir=rootfs/work%s", lowerdir,
                     spec->privileged ? "" : ",userxattr");
    } else {
        plan->n_lowers = spec->privileged ? 0 : 1;
        snprintf(plan->lower_paths[0], sizeof(plan->lower_paths[0]), PLAN_LOWER);
        n = snprintf(plan->overlay_opts, sizeof(plan->overlay_opts),
                     "lowerdir=%s,upperdir=rootfs/upper,workdir=rootfs/work%s",
                     spec->privileged ? spec->rootfs : PLAN_LOWER,
                     spec->privileged ? "" : ",userxattr");
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
    /* A node of the container's own for /dev/net/tun, usable by its root
     * whatever mode the host's has (an unprivileged container cannot mknod).
     * Best effort: without it the container has no tun device. */
    if ((mknodat(d, "tun", S_IFCHR | 0666, makedev(10, 200)) == 0 || errno == EEXIST) &&
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
