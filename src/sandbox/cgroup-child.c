/* Child groups of a container's group: a pea's own cgroup (doc/peas.md).
 *
 * On v1 and hybrid hosts a child is one more directory in each hierarchy. On
 * pure v2 the no-internal-process rule applies: a group whose children carry
 * controllers holds no process itself. So the first child moves the container's
 * processes into a leaf, <group>/leaf, before enabling the controllers in the
 * group's cgroup.subtree_control; from then on the container's processes (a
 * restarted init, every new process) are placed in the leaf. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cloche/cgroup.h"
#include "cloche/cleanup.h"
#include "cgroup-internal.h"

#define LEAF_MOVE_ROUNDS 50
#define V2_CHILD_CONTROLLERS "+cpu +memory +pids"

static bool valid_child_name(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > GROUP_NAME_MAX || name[0] == '.' || strchr(name, '/') ||
        strcmp(name, CGROUP_LEAF_NAME) == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return false;
    return true;
}

static Cgroup *child_new(const Cgroup *parent, const char *name)
{
    size_t plen = strlen(parent->name), len = strlen(name);
    Cgroup *cg = malloc(sizeof(Cgroup) + plen + 1 + len + 1);
    if (!cg)
        return NULL;
    cg->system = parent->system;
    memcpy(cg->name, parent->name, plen);
    cg->name[plen] = '/';
    memcpy(cg->name + plen + 1, name, len + 1);
    return cg;
}

/* Pure v2 with controllers: the layout where the leaf is needed. */
static bool needs_leaf(const CgroupSystem *s)
{
    return s->layout == CGROUP_LAYOUT_V2 && s->v2_index >= 0;
}

bool cgroup_has_leaf(const Cgroup *cg)
{
    const CgroupSystem *s = cg->system;
    if (!needs_leaf(s))
        return false;
    char path[REL_PATH_MAX];
    snprintf(path, sizeof(path), "%s/" CGROUP_LEAF_NAME, cg->name);
    struct stat st;
    return fstatat(s->hierarchies[s->v2_index].parent_fd, path, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Move every process of the group into its leaf and enable the controllers for
 * children. Processes that fork meanwhile are caught by the next round. */
static int make_leaf(const Cgroup *cg)
{
    const CgroupSystem *s = cg->system;
    int idx = s->v2_index;
    _cleanup_(cgroup_freep) Cgroup *leaf = child_new(cg, CGROUP_LEAF_NAME);
    if (!leaf)
        return -ENOMEM;
    if (mkdirat(s->hierarchies[idx].parent_fd, leaf->name, 0755) < 0 && errno != EEXIST)
        return -errno;
    for (int round = 0; round < LEAF_MOVE_ROUNDS; round++) {
        int r = cgroup_group_write(cg, idx, "cgroup.subtree_control", V2_CHILD_CONTROLLERS);
        if (r != -EBUSY)
            return r;
        pid_t *pids = NULL;
        size_t n = 0;
        r = cgroup_list_own_pids(cg, &pids, &n);
        if (r < 0)
            return r;
        for (size_t i = 0; i < n; i++) {
            char value[24];
            snprintf(value, sizeof(value), "%d", (int)pids[i]);
            r = cgroup_group_write(leaf, idx, "cgroup.procs", value);
            if (r < 0 && r != -ESRCH) {
                free(pids);
                return r;
            }
        }
        free(pids);
    }
    return -EBUSY;
}

int cgroup_create_child(const Cgroup *parent, const char *name, Cgroup **ret)
{
    if (!parent || !ret || !valid_child_name(name))
        return -EINVAL;
    const CgroupSystem *s = parent->system;
    if (strlen(parent->name) + 1 + strlen(name) > GROUP_NAME_MAX * 2)
        return -ENAMETOOLONG;
    _cleanup_(cgroup_freep) Cgroup *cg = child_new(parent, name);
    if (!cg)
        return -ENOMEM;
    if (needs_leaf(s)) {
        int r = make_leaf(parent);
        if (r < 0)
            return r;
    }
    for (size_t i = 0; i < s->n_hierarchies; i++) {
        if (mkdirat(s->hierarchies[i].parent_fd, cg->name, 0755) == 0)
            continue;
        int r = -errno;
        while (i-- > 0)
            (void)unlinkat(s->hierarchies[i].parent_fd, cg->name, AT_REMOVEDIR);
        return r;
    }
    *ret = TAKE_PTR(cg);
    return 0;
}

int cgroup_open_child(const Cgroup *parent, const char *name, Cgroup **ret)
{
    if (!parent || !ret || !name || !*name || strchr(name, '/') || name[0] == '.')
        return -EINVAL;
    Cgroup *cg = child_new(parent, name);
    if (!cg)
        return -ENOMEM;
    *ret = cg;
    return 0;
}

int cgroup_for_each_child(const Cgroup *cg, int (*fn)(const Cgroup *child, void *userdata),
                          void *userdata)
{
    const CgroupSystem *s = cg->system;
    int idx = cgroup_hierarchy_for(s, CGROUP_CORE);
    if (idx < 0)
        return idx;
    /* Names from the core hierarchy; a child made in every hierarchy is there. */
    _cleanup_close_ int fd = openat(s->hierarchies[idx].parent_fd, cg->name,
                                    O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    DIR *d = fdopendir(TAKE_FD(fd));
    if (!d)
        return -errno;
    int ret = 0;
    for (struct dirent *de; (de = readdir(d));) {
        if (de->d_name[0] == '.' || de->d_type != DT_DIR)
            continue;
        _cleanup_(cgroup_freep) Cgroup *child = child_new(cg, de->d_name);
        if (!child) {
            ret = -ENOMEM;
            break;
        }
        int r = fn(child, userdata);
        if (r < 0 && ret == 0)
            ret = r;
    }
    closedir(d);
    return ret;
}
