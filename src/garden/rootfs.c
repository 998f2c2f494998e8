/* Which directory an unprivileged container's idmapped image lower is made from:
 * the image itself, or, when its file system cannot be idmapped on this kernel,
 * a copy imported into the depot (sandbox_rootfs_import). Start-up says which
 * applies to the default rootfs; a create that can do neither says why. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "cloche/log.h"
#include "cloche/clock.h"
#include "garden-internal.h"

#define IMPORT_DIR "rootfs-imports"

static const char *kernel_release(struct utsname *u)
{
    return uname(u) == 0 ? u->release : "?";
}

static char *import_dir(Garden *g)
{
    char *dir = NULL;
    if (asprintf(&dir, "%s/" IMPORT_DIR, g->depot_path) < 0)
        return NULL;
    return dir;
}

/* Container root's host id for the probes: the first of the pool. */
static uint32_t probe_id(Garden *g)
{
    return g->cfg.uid_map_shared ? SANDBOX_SHARED_ROOT
                                 : (g->cfg.uid_pool_base ? g->cfg.uid_pool_base : 0x10000000u);
}

void garden_rootfs_check_default(Garden *g)
{
    const char *rootfs = g->default_rootfs;
    if (!rootfs || rootfs[0] != '/' || sandbox_idmap_probe(rootfs, probe_id(g)) != -EINVAL)
        return; /* fine, or missing (each create says so) */
    struct utsname u;
    _cleanup_free_ char *dir = import_dir(g);
    bool depot_ok = g->depot_path && sandbox_idmap_probe(g->depot_path, probe_id(g)) == 0;
    if (depot_ok)
        log_warn("The default rootfs '%s' is on %s, which this kernel (%s) cannot idmap: "
                 "unprivileged containers use a copy imported into %s (made at the first "
                 "create, again when the rootfs changes); on ext4, xfs or btrfs (or tmpfs from "
                 "Linux 6.3) it would be used as it is",
                 rootfs, sandbox_fs_name(rootfs), kernel_release(&u), dir ? dir : IMPORT_DIR);
    else
        log_warn("The default rootfs '%s' is on %s and the depot '%s' on %s, neither of which "
                 "this kernel (%s) can idmap: unprivileged containers cannot be created until "
                 "one of them is on ext4, xfs or btrfs (or tmpfs from Linux 6.3)",
                 rootfs, sandbox_fs_name(rootfs), g->depot_path ? g->depot_path : "",
                 g->depot_path ? sandbox_fs_name(g->depot_path) : "?", kernel_release(&u));
}

int garden_rootfs_lower(Garden *g, const char *rootfs, bool privileged, char **ret,
                        ApiError *reterr)
{
    int r = privileged ? 0 : sandbox_idmap_probe(rootfs, probe_id(g));
    if (r != -EINVAL) {
        /* Usable as it is (another error shows where the mount is made). */
        *ret = strdup(rootfs);
        return *ret ? 0 : api_internal_error(reterr, -ENOMEM, "Failed to resolve the image");
    }
    struct utsname u;
    if (!g->depot_path || sandbox_idmap_probe(g->depot_path, probe_id(g)) != 0)
        return api_errorf(reterr, -EINVAL, 500, GARDEN_ERR_GENERIC,
                          "The image '%s' is on %s and the depot '%s' on %s, neither of which "
                          "this kernel (%s) can idmap for an unprivileged container: put one "
                          "of them on ext4, xfs or btrfs (or tmpfs from Linux 6.3), or create "
                          "the container privileged",
                          rootfs, sandbox_fs_name(rootfs), g->depot_path ? g->depot_path : "",
                          g->depot_path ? sandbox_fs_name(g->depot_path) : "?", kernel_release(&u));
    _cleanup_free_ char *dir = import_dir(g);
    if (!dir)
        return api_internal_error(reterr, -ENOMEM, "Failed to resolve the image");
    bool copied = false;
    int64_t t0 = clock_monotonic_ns();
    r = sandbox_rootfs_import(rootfs, dir, ret, &copied);
    if (r < 0)
        return api_internal_error(reterr, r,
                                  "Failed to import the image '%s' (on %s, which this kernel "
                                  "cannot idmap) into the depot",
                                  rootfs, sandbox_fs_name(rootfs));
    if (copied)
        log_info("Imported the image '%s' (on %s, which this kernel (%s) cannot idmap) into "
                 "'%s' in %.1f ms",
                 rootfs, sandbox_fs_name(rootfs), kernel_release(&u), *ret,
                 (double)(clock_monotonic_ns() - t0) / 1e6);
    return 0;
}
