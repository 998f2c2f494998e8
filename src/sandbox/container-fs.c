/* The container's file system tree, as the init's child builds it below the new
 * root before the pivot: /dev, /proc's and /sys's masks, the cgroup view, bind
 * mounts. Runs between clone and exec (see sandbox-child.h). */
#include <fcntl.h>
#include <stdint.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <linux/openat2.h>

#include "cloche/cleanup.h"
#include "sandbox-child.h"

size_t child_strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

static void safe_append(char *dst, size_t size, const char *src)
{
    size_t n = child_strlen(dst);
    while (*src && n + 1 < size)
        dst[n++] = *src++;
    dst[n] = '\0';
}

_Noreturn void child_fail(const ChildPlan *plan, int err, const char *what, const char *arg)
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

int child_open_in_root(int rootfd, const char *path, int flags)
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
    size_t len = child_strlen(path);
    if (len >= sizeof(prefix))
        return -ENAMETOOLONG;
    int fd = child_open_in_root(rootfd, path, O_PATH | (is_dir ? O_DIRECTORY : 0));
    if (fd >= 0 || fd != -ENOENT)
        return fd;

    /* Walk the components, creating what is missing. */
    int parent = child_open_in_root(rootfd, "/", O_PATH | O_DIRECTORY);
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
        int next = child_open_in_root(rootfd, prefix, O_PATH | (last && !is_dir ? 0 : O_DIRECTORY));
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
void child_mount_fs_in_root(const ChildPlan *plan, int rootfd, const char *path, const char *fstype,
                            unsigned long flags, const char *data)
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
void child_attach_tree_in_root(const ChildPlan *plan, int rootfd, int src_fd, const char *path,
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
int child_mount_scratch(const ChildPlan *plan)
{
    /* Made detached and then attached over the container's directory (the cwd,
     * whose own lookups still see the directory below): its descriptor is the
     * tmpfs's root, with no mountpoint of its own on the depot's disk. */
    int fs = fsopen("tmpfs", FSOPEN_CLOEXEC);
    if (fs < 0 || fsconfig(fs, FSCONFIG_SET_STRING, "source", "tmpfs", 0) < 0 ||
        fsconfig(fs, FSCONFIG_SET_STRING, "mode", "755", 0) < 0 ||
        fsconfig(fs, FSCONFIG_SET_STRING, "size", "65536k", 0) < 0 ||
        fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        child_fail(plan, errno, "Failed to make the container's tmpfs", NULL);
    int scratch = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_STRICTATIME);
    if (scratch < 0)
        child_fail(plan, errno, "Failed to mount the container's tmpfs", NULL);
    close(fs);
    if (move_mount(scratch, "", AT_FDCWD, ".", MOVE_MOUNT_F_EMPTY_PATH) < 0)
        child_fail(plan, errno, "Failed to attach the container's tmpfs", NULL);
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

void child_setup_dev(const ChildPlan *plan, int rootfd, int scratch)
{
    child_attach_tree_in_root(plan, rootfd, scratch_tree(plan, scratch, "dev", 0), "/dev", false);
    int dev = child_open_in_root(rootfd, "/dev", O_PATH | O_DIRECTORY);
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
void child_mask_proc(const ChildPlan *plan, int rootfd, int scratch)
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
        int fd = child_open_in_root(rootfd, masked[i], O_PATH);
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
        int fd = child_open_in_root(rootfd, readonly[i], O_PATH);
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
void child_setup_cgroup_view(const ChildPlan *plan, int rootfd, int scratch)
{
    const SandboxSpec *spec = plan->spec;
    if (spec->n_cgroup_views == 1 && !spec->cgroup_views[0].name[0]) {
        child_attach_tree_in_root(plan, rootfd, plan->view_fds[0], "/sys/fs/cgroup", false);
        return;
    }
    if (!spec->n_cgroup_views)
        return;
    child_attach_tree_in_root(
        plan, rootfd,
        scratch_tree(plan, scratch, "cgroup",
                     MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC),
        "/sys/fs/cgroup", false);
    /* Each group on a new directory of that fresh directory (nothing else has
     * seen it: no name there needs resolving in the root). */
    int dir = child_open_in_root(rootfd, "/sys/fs/cgroup", O_PATH | O_DIRECTORY);
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
