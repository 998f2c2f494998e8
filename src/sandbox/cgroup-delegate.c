/* Running in a group delegated to cloche (systemd's Delegate=yes) on pure cgroup v2.
 *
 * v2 forbids a group to hold processes and hand controllers to its children at
 * once ("no internal processes"). The daemon's own group G is its to manage, so
 * the daemon moves itself into the leaf G/<leaf>, enables memory, cpu and pids in
 * G's cgroup.subtree_control (a group cloche owns, never the root's), and builds
 * its container tree at G/<containers>. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgroup-internal.h"
#include "cloche/cleanup.h"

static int write_file_at(int dirfd, const char *path, const char *text)
{
    _cleanup_close_ int fd = openat(dirfd, path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, text, strlen(text));
    if (n < 0)
        return -errno;
    return (size_t)n == strlen(text) ? 0 : -EIO;
}

/* The daemon's own v2 group ("/a/b"), from a /proc/self/cgroup text. */
int cgroup_own_v2_path(const char *proc_self_cgroup, char *buf, size_t size)
{
    for (const char *line = proc_self_cgroup; line && *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (len > 3 && strncmp(line, "0::", 3) == 0) {
            if (len - 3 >= size)
                return -ENAMETOOLONG;
            memcpy(buf, line + 3, len - 3);
            buf[len - 3] = '\0';
            return 0;
        }
        line = eol ? eol + 1 : NULL;
    }
    return -ENOENT;
}

int cgroup_delegate_self(const CgroupMounts *mounts, const char *leaf, const char *containers,
                         char **ret_parent, const char **ret_missing_controller)
{
    if (mounts->layout != CGROUP_LAYOUT_V2 || !mounts->v2)
        return -EOPNOTSUPP;
    char text[4096], own[PARENT_MAX];
    int r = cgroup_read_at(AT_FDCWD, "/proc/self/cgroup", text, sizeof(text), NULL);
    if (r < 0)
        return r;
    r = cgroup_own_v2_path(text, own, sizeof(own));
    if (r < 0)
        return r;
    if (strcmp(own, "/") == 0)
        return -EINVAL; /* at the root: nothing was delegated */

    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s%s", mounts->v2, own) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    _cleanup_close_ int gfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (gfd < 0)
        return -errno;

    char avail[512];
    r = cgroup_read_at(gfd, "cgroup.controllers", avail, sizeof(avail), NULL);
    if (r < 0)
        return r;
    unsigned have = cgroup_controller_bits(avail);
    static const CgroupController needed[] = {CGROUP_CONTROLLER_MEMORY, CGROUP_CONTROLLER_CPU,
                                              CGROUP_CONTROLLER_PIDS};
    for (size_t i = 0; i < ELEMENTSOF(needed); i++)
        if (!(have & CGROUP_CONTROLLER_BIT(needed[i]))) {
            if (ret_missing_controller)
                *ret_missing_controller = cgroup_controller_names[needed[i]];
            return -ENODEV;
        }

    if (mkdirat(gfd, leaf, 0755) < 0 && errno != EEXIST)
        return -errno;
    char procs[PATH_MAX];
    snprintf(procs, sizeof(procs), "%s/cgroup.procs", leaf);
    r = write_file_at(gfd, procs, "0");
    if (r < 0)
        return r;
    r = write_file_at(gfd, "cgroup.subtree_control", "+cpu +memory +pids");
    if (r < 0)
        return r;

    char *parent = NULL;
    if (asprintf(&parent, "%s/%s", own + 1, containers) < 0)
        return -ENOMEM;
    *ret_parent = parent;
    return 0;
}
