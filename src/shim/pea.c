/* Peas: a process with a root file system of its own inside a container
 * (doc/peas.md). It shares the container's user, network, pid, IPC, UTS and
 * cgroup namespaces but gets a new mount namespace whose root is an overlay of
 * its image, mounted the way the container's own root is: by the container's
 * root inside its user namespace, over lowers idmapped to the container's ids.
 *
 * Before the clone the shim (host root, in the daemon's mount namespace) makes
 * detached trees of each image layer (idmapped) and of the pea's upper/work
 * directory (pea_root: <depot>/containers/<handle>/peas/<id>). The process,
 * once it has joined the container's namespaces, clones the container's /dev,
 * /proc (with its masks), /sys (with its cgroup view) and /etc/hosts and
 * /etc/resolv.conf, unshares its mount namespace, stages the trees on a private
 * tmpfs, mounts the overlay, attaches those clones in it and pivots into it.
 * From clone to exec: system calls only.
 *
 * When the process has exited, the shim ends what is left of the pea (processes
 * still in its mount namespace, or in its own cgroups) and removes its layer and
 * cgroups before it writes the exit status. */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <linux/openat2.h>

#include "shim.h"

#define STAGE_DIR "/dev"     /* covered by a private tmpfs while the root is built */
#define PEA_REMOVE_DEPTH 256 /* directory levels removed below pea_root */

int shim_pea_spec_apply(ShimSpec *s, const char *key, char *value, ShimError *reterr)
{
    ShimPeaSpec *p = &s->pea;
    if (strcmp(key, "pea_lower") == 0) {
        if (value[0] != '/')
            return shim_error(reterr, EINVAL, "Invalid spec: pea_lower '%s' is not absolute",
                              value);
        if (p->n_lowers >= SHIM_PEA_LOWERS_MAX)
            return shim_error(reterr, E2BIG, "Invalid spec: more than %d pea layers",
                              SHIM_PEA_LOWERS_MAX);
        p->lowers[p->n_lowers++] = value;
        return 0;
    }
    if (strcmp(key, "pea_root") == 0) {
        if (value[0] != '/')
            return shim_error(reterr, EINVAL, "Invalid spec: pea_root '%s' is not absolute", value);
        p->root = value;
        return 0;
    }
    if (strcmp(key, "pea_cgroup") == 0) {
        p->own_cgroups = strcmp(value, "1") == 0;
        return 0;
    }
    return shim_error(reterr, EINVAL, "Invalid spec: unknown key '%s'", key);
}

bool shim_pea_wanted(const ShimSpec *spec)
{
    return spec->pea.n_lowers > 0;
}

void shim_pea_plan_clear(ShimPeaPlan *plan)
{
    for (size_t i = 0; i < plan->n_lowers; i++)
        shim_closep(&plan->lower_fds[i]);
    shim_closep(&plan->upper_fd);
    plan->n_lowers = 0;
}

int shim_pea_prepare(const ShimSpec *spec, ShimPeaPlan *plan, ShimError *reterr)
{
    const ShimPeaSpec *p = &spec->pea;
    *plan = (ShimPeaPlan){.upper_fd = -1};
    if (!p->root)
        return shim_error(reterr, EINVAL, "Invalid spec: a pea without pea_root");
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)spec->init_pid);
    struct stat own, theirs;
    if (stat("/proc/self/ns/user", &own) < 0 || stat(path, &theirs) < 0)
        return shim_error(reterr, errno, "Failed to inspect the container's user namespace");
    plan->userns = own.st_ino != theirs.st_ino || own.st_dev != theirs.st_dev;
    _cleanup_close_ int userns = plan->userns ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (plan->userns && userns < 0)
        return shim_error(reterr, errno, "Failed to open the container's user namespace");

    for (size_t i = 0; i < p->n_lowers; i++) {
        int tree =
            open_tree(AT_FDCWD, p->lowers[i], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        if (tree < 0)
            return shim_error(reterr, errno, "Failed to open the pea's image layer '%s'",
                              p->lowers[i]);
        plan->lower_fds[plan->n_lowers++] = tree;
        struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY};
        if (plan->userns) {
            attr.attr_set |= MOUNT_ATTR_IDMAP;
            attr.userns_fd = (uint64_t)userns;
        }
        if (mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0)
            return shim_error(reterr, errno, "Failed to idmap the pea's image layer '%s'",
                              p->lowers[i]);
    }
    plan->upper_fd = open_tree(AT_FDCWD, p->root, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (plan->upper_fd < 0)
        return shim_error(reterr, errno, "Failed to open the pea's layer '%s'", p->root);

    /* lowerdir=/dev/l0:/dev/l1,...: staged under the private tmpfs. volatile:
     * the layer goes with the pea, so its end syncs nothing (as a container's,
     * sandbox.c). */
    size_t n = (size_t)snprintf(plan->overlay_opts, sizeof(plan->overlay_opts), "lowerdir=");
    for (size_t i = 0; i < plan->n_lowers; i++)
        n += (size_t)snprintf(plan->overlay_opts + n, sizeof(plan->overlay_opts) - n,
                              "%s" STAGE_DIR "/l%zu", i ? ":" : "", i);
    snprintf(plan->overlay_opts + n, sizeof(plan->overlay_opts) - n,
             ",upperdir=" STAGE_DIR "/u/upper,workdir=" STAGE_DIR "/u/work,volatile%s",
             plan->userns ? ",userxattr" : "");
    for (size_t i = 0; i < plan->n_lowers; i++)
        snprintf(plan->lower_paths[i], sizeof(plan->lower_paths[i]), STAGE_DIR "/l%zu", i);
    return 0;
}

/* ---- in the process, between clone and exec: system calls only ---- */

/* The fd of path inside the pea's root (no link leads out), made first if it is
 * missing: a directory, or an empty file (mode 0644). Returns an O_PATH fd or
 * -errno. */
static int ensure_in_root(int rootfd, const char *path, bool is_dir)
{
    struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT};
    int fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
    if (fd >= 0 || errno != ENOENT)
        return fd >= 0 ? fd : -errno;
    /* Only one level is made: parents (/etc) are made by their own call first. */
    const char *slash = strrchr(path, '/');
    char parent[64];
    size_t plen = (size_t)(slash - path);
    if (!slash || plen >= sizeof(parent))
        return -EINVAL;
    memcpy(parent, path, plen);
    parent[plen] = '\0';
    how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    int pfd = (int)syscall(SYS_openat2, rootfd, plen ? parent : "/", &how, sizeof(how));
    if (pfd < 0)
        return -errno;
    int r = is_dir ? mkdirat(pfd, slash + 1, 0755)
                   : (int)syscall(SYS_openat, pfd, slash + 1,
                                  O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    int e = errno;
    if (!is_dir && r >= 0)
        close(r);
    if (r < 0 && e != EEXIST) {
        close(pfd);
        return -e;
    }
    how.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH;
    fd = (int)syscall(SYS_openat2, pfd, slash + 1, &how, sizeof(how));
    e = errno;
    close(pfd);
    return fd >= 0 ? fd : -e;
}

static int attach_at(int rootfd, int tree, const char *path, bool is_dir)
{
    int dst = ensure_in_root(rootfd, path, is_dir);
    if (dst < 0)
        return -dst;
    int r = move_mount(tree, "", dst, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
    int e = errno;
    close(dst);
    return r < 0 ? e : 0;
}

static int clone_tree(const char *path, bool recursive)
{
    int fd = open_tree(AT_FDCWD, path,
                       OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0));
    return fd < 0 ? -errno : fd;
}

#define FAIL(step_, err_)                                                                          \
    do {                                                                                           \
        *ret_step = (step_);                                                                       \
        return (err_) ? (err_) : EIO;                                                              \
    } while (0)

int shim_pea_enter(const ShimPeaPlan *plan, int *ret_step)
{
    /* The container's root, as the init is when it builds the container's root. */
    if (plan->userns &&
        (syscall(SYS_setresgid, 0, 0, 0) < 0 || syscall(SYS_setresuid, 0, 0, 0) < 0))
        FAIL(SHIM_PEA_STEP_ROOT, errno);
    /* What the container has, cloned from its mount namespace. */
    static const char *const trees[] = {"/dev", "/proc", "/sys", "/etc/hosts", "/etc/resolv.conf"};
    int fds[ELEMENTSOF(trees)];
    for (size_t i = 0; i < ELEMENTSOF(trees); i++) {
        fds[i] = clone_tree(trees[i], i < 3);
        if (fds[i] < 0)
            FAIL(SHIM_PEA_STEP_CLONE + (int)i, -fds[i]);
    }
    if (unshare(CLONE_NEWNS) < 0)
        FAIL(SHIM_PEA_STEP_UNSHARE, errno);
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        FAIL(SHIM_PEA_STEP_UNSHARE, errno);
    /* Staging: a tmpfs of our own over the container's /dev (in this namespace
     * only), holding the mount points of the layers. */
    if (mount("tmpfs", STAGE_DIR, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700") < 0)
        FAIL(SHIM_PEA_STEP_STAGE, errno);
    for (size_t i = 0; i < plan->n_lowers; i++) {
        if (mkdir(plan->lower_paths[i], 0700) < 0)
            FAIL(SHIM_PEA_STEP_STAGE, errno);
        if (move_mount(plan->lower_fds[i], "", AT_FDCWD, plan->lower_paths[i],
                       MOVE_MOUNT_F_EMPTY_PATH) < 0)
            FAIL(SHIM_PEA_STEP_LOWER, errno);
    }
    if (mkdir(STAGE_DIR "/u", 0700) < 0 || mkdir(STAGE_DIR "/r", 0755) < 0)
        FAIL(SHIM_PEA_STEP_STAGE, errno);
    if (move_mount(plan->upper_fd, "", AT_FDCWD, STAGE_DIR "/u", MOVE_MOUNT_F_EMPTY_PATH) < 0)
        FAIL(SHIM_PEA_STEP_UPPER, errno);
    if (mount("overlay", STAGE_DIR "/r", "overlay", 0, plan->overlay_opts) < 0)
        FAIL(SHIM_PEA_STEP_OVERLAY, errno);
    int rootfd = open(STAGE_DIR "/r", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        FAIL(SHIM_PEA_STEP_OVERLAY, errno);
    static const char *const points[] = {"/dev", "/proc", "/sys", "/etc/hosts", "/etc/resolv.conf"};
    int etc = ensure_in_root(rootfd, "/etc", true);
    if (etc < 0)
        FAIL(SHIM_PEA_STEP_ATTACH + 3, -etc);
    close(etc);
    for (size_t i = 0; i < ELEMENTSOF(points); i++) {
        int e = attach_at(rootfd, fds[i], points[i], i < 3);
        if (e)
            FAIL(SHIM_PEA_STEP_ATTACH + (int)i, e);
        close(fds[i]);
    }
    if (fchdir(rootfd) < 0)
        FAIL(SHIM_PEA_STEP_PIVOT, errno);
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        FAIL(SHIM_PEA_STEP_PIVOT, errno);
    /* The container's tree (and the staging) leave this namespace. */
    if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
        FAIL(SHIM_PEA_STEP_PIVOT, errno);
    close(rootfd);
    return 0;
}

int shim_pea_error(int step, int err, ShimError *reterr)
{
    static const char *const what[] = {"/dev", "/proc", "/sys", "/etc/hosts", "/etc/resolv.conf"};
    if (step >= SHIM_PEA_STEP_CLONE && step < SHIM_PEA_STEP_CLONE + 5)
        return shim_error(reterr, err, "Failed to clone the container's %s for the pea",
                          what[step - SHIM_PEA_STEP_CLONE]);
    if (step >= SHIM_PEA_STEP_ATTACH && step < SHIM_PEA_STEP_ATTACH + 5)
        return shim_error(reterr, err, "Failed to mount %s in the pea's root file system",
                          what[step - SHIM_PEA_STEP_ATTACH]);
    switch (step) {
    case SHIM_PEA_STEP_ROOT:
        return shim_error(reterr, err, "Failed to become root in the container's user namespace");
    case SHIM_PEA_STEP_UNSHARE:
        return shim_error(reterr, err, "Failed to create the pea's mount namespace");
    case SHIM_PEA_STEP_STAGE:
        return shim_error(reterr, err, "Failed to stage the pea's layers");
    case SHIM_PEA_STEP_LOWER:
        return shim_error(reterr, err, "Failed to attach the pea's image layers");
    case SHIM_PEA_STEP_UPPER:
        return shim_error(reterr, err, "Failed to attach the pea's writable layer");
    case SHIM_PEA_STEP_OVERLAY:
        return shim_error(reterr, err, "Failed to mount the pea's root file system");
    case SHIM_PEA_STEP_PIVOT:
        return shim_error(reterr, err, "Failed to pivot into the pea's root file system");
    }
    return shim_error(reterr, err, "Failed to set up the pea");
}

/* ---- after the exit ---- */

static uint64_t mount_namespace(pid_t pid)
{
    char path[64];
    struct stat st;
    snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)pid);
    return stat(path, &st) == 0 ? (uint64_t)st.st_ino : 0;
}

int shim_pea_noted(pid_t pid, uint64_t *ret_mnt_ns)
{
    int status;
    pid_t r;
    while ((r = waitpid(pid, &status, WUNTRACED)) < 0 && errno == EINTR)
        ;
    if (r < 0)
        return -errno;
    if (!WIFSTOPPED(status))
        return -ECHILD; /* it died: nothing to continue */
    *ret_mnt_ns = mount_namespace(pid);
    if (kill(pid, SIGCONT) < 0)
        return -errno;
    return *ret_mnt_ns ? 0 : -ESRCH;
}

/* SIGKILL every process listed in dir/cgroup.procs that is in the pea's mount
 * namespace (any of them, when mnt_ns is 0). Returns how many were signalled. */
static int kill_listed(const char *dir, uint64_t mnt_ns)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/cgroup.procs", dir) >= (int)sizeof(path))
        return 0;
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    int n = 0;
    int pid;
    while (fscanf(f, "%d", &pid) == 1) {
        if (mnt_ns && mount_namespace(pid) != mnt_ns)
            continue;
        if (kill(pid, SIGKILL) == 0)
            n++;
    }
    fclose(f);
    return n;
}

static void remove_tree_at(int parent, const char *name, unsigned depth)
{
    if (unlinkat(parent, name, 0) == 0 || errno == ENOENT)
        return;
    if (depth < PEA_REMOVE_DEPTH) {
        int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        if (!d && fd >= 0)
            close(fd);
        for (struct dirent *de; d && (de = readdir(d));)
            if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                remove_tree_at(dirfd(d), de->d_name, depth + 1);
        if (d)
            closedir(d);
    }
    (void)unlinkat(parent, name, AT_REMOVEDIR);
}

void shim_pea_finish(const ShimSpec *spec, uint64_t mnt_ns)
{
    if (!shim_pea_wanted(spec))
        return;
    /* What the pea left running: everything in its own groups, or what shares its
     * mount namespace in the container's. Bounded: a fork storm gets 100 rounds. */
    for (int round = 0; round < 100 && (mnt_ns || spec->pea.own_cgroups); round++) {
        /* Every hierarchy lists the same processes: the first is enough. */
        if (spec->n_cgroups == 0 ||
            kill_listed(spec->cgroups[0], spec->pea.own_cgroups ? 0 : mnt_ns) == 0)
            break;
        struct timespec ts = {.tv_nsec = 2000000};
        nanosleep(&ts, NULL);
    }
    if (spec->pea.own_cgroups)
        for (size_t i = 0; i < spec->n_cgroups; i++)
            for (int attempt = 0; attempt < 200; attempt++) {
                if (rmdir(spec->cgroups[i]) == 0 || errno != EBUSY)
                    break;
                struct timespec ts = {.tv_nsec = 5000000}; /* killed tasks still exiting */
                nanosleep(&ts, NULL);
            }
    /* Its layer, pea_root: made by the daemon for this process alone. */
    remove_tree_at(AT_FDCWD, spec->pea.root, 0);
}
