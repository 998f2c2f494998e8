/* Peas: processes with a root file system of their own inside a container
 * (doc/peas.md). The daemon resolves the image to its layer directories, makes
 * the pea's writable layer in its process directory (owned by the container's
 * root, as a container's is), looks the user up in the image, and, with
 * override_container_limits, makes the pea a cgroup of its own below the
 * container's. The shim does the rest (src/shim/pea.c) and removes the layer and
 * the group when the pea ends. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cloche/cleanup.h"
#include "cloche/fileio.h"
#include "cloche/image.h"
#include "cloche/log.h"
#include "garden-internal.h"

#define PEA_CGROUP_PREFIX "pea-"
#define PEA_IMAGE_FILE "image" /* in that layer's directory: the image's layers, ':'-joined */

void garden_pea_done(GardenPea *p)
{
    strv_free(p->lowers);
    free(p->root);
    strv_free(p->image_env);
    cgroup_free(p->cgroup);
    *p = (GardenPea){0};
}

/* raw:///path or /path: a root file system directory, checked as create does. */
static int raw_image(const char *uri, char **ret, ApiError *reterr)
{
    const char *path = strncmp(uri, "raw://", 6) == 0 ? uri + 6 : uri;
    if (path[0] != '/')
        return api_bad_request(reterr,
                               "Unsupported pea image '%s': cloche takes raw:///path, /path, "
                               "docker://, oci:// or cloche:// references",
                               uri);
    if (strpbrk(path, ",:\\\n"))
        return api_bad_request(reterr,
                               "Image path '%s' contains ',', ':' or '\\\\', which an overlay "
                               "mount cannot take",
                               path);
    struct stat st;
    if (stat(path, &st) < 0)
        return api_bad_request(reterr, "Image directory '%s' does not exist", path);
    if (!S_ISDIR(st.st_mode))
        return api_bad_request(reterr, "Image '%s' is not a directory", path);
    *ret = strdup(path);
    return *ret ? 0 : api_internal_error(reterr, -ENOMEM, "Failed to resolve the image");
}

static bool is_registry_uri(const char *uri)
{
    return strncmp(uri, "docker://", 9) == 0 || strncmp(uri, "oci://", 6) == 0 ||
           strncmp(uri, "cloche://", 9) == 0;
}

/* The image's layers (':'-joined, top first) and, for a pulled image, its Env. */
static int resolve_image(Garden *g, const ImageRef *image, char **ret_rootfs, char ***ret_env,
                         ApiError *reterr)
{
    if (!is_registry_uri(image->uri))
        return raw_image(image->uri, ret_rootfs, reterr);
    if (!g->cfg.images)
        return api_errorf(reterr, -EOPNOTSUPP, 500, GARDEN_ERR_GENERIC,
                          "This daemon has no image store");
    Failure failure = {0};
    _cleanup_(image_reference_done) ImageReference ref = {0};
    int r = image_ref_parse(image->uri, &ref, &failure);
    if (r < 0)
        return garden_image_failure(reterr, &failure, r);
    ImageCredentials cred = {.username = image->username, .password = image->password};
    _cleanup_(image_pulled_done) ImagePulled img = {0};
    r = image_store_pull(g->cfg.images, &ref, &cred, false, NULL, NULL, &img, &failure);
    if (r < 0)
        return garden_image_failure(reterr, &failure, r);
    char **env = calloc(img.config.n_env + 1, sizeof(char *));
    if (!env)
        return api_internal_error(reterr, -ENOMEM, "Failed to resolve the image");
    for (size_t i = 0; i < img.config.n_env; i++)
        if (!(env[i] = strdup(img.config.env[i]))) {
            strv_free(env);
            return api_internal_error(reterr, -ENOMEM, "Failed to resolve the image");
        }
    *ret_env = env;
    *ret_rootfs = TAKE_PTR(img.rootfs);
    return 0;
}

static int split_layers(const char *rootfs, char ***ret)
{
    size_t n = 1;
    for (const char *p = rootfs; (p = strchr(p, ':')); p++)
        n++;
    if (n > SANDBOX_MAX_LOWERS)
        return -E2BIG;
    char **v = calloc(n + 1, sizeof(char *));
    if (!v)
        return -ENOMEM;
    size_t i = 0;
    for (const char *p = rootfs; i < n; i++) {
        size_t len = strcspn(p, ":");
        if (!(v[i] = strndup(p, len))) {
            strv_free(v);
            return -ENOMEM;
        }
        p += len + (p[len] == ':');
    }
    *ret = v;
    return 0;
}

/* The pea's own group, with the limits the spec gives (even none). */
static int make_cgroup(Garden *g, Container *c, const ProcessSpec *spec, const char *id,
                       Cgroup **ret, ApiError *reterr)
{
    char name[sizeof(PEA_CGROUP_PREFIX) + SPEC_HANDLE_MAX + 1];
    snprintf(name, sizeof(name), PEA_CGROUP_PREFIX "%s", id);
    _cleanup_cgroup_ Cgroup *cg = NULL;
    int r = cgroup_create_child(c->cgroup, name, &cg);
    if (r == -EEXIST) {
        /* Left by a pea whose shim was killed: nothing of it may still run. */
        _cleanup_cgroup_ Cgroup *old = NULL;
        if (cgroup_open_child(c->cgroup, name, &old) >= 0)
            (void)cgroup_destroy(old, 2000);
        r = cgroup_create_child(c->cgroup, name, &cg);
    }
    if (r < 0)
        return api_internal_error(reterr, r, "Failed to create the cgroup of process '%s'", id);
    uint64_t shares = spec->cpu_limits.limit_in_shares ? spec->cpu_limits.limit_in_shares
                                                       : spec->cpu_limits.weight;
    if ((r = cgroup_set_memory_limit(cg, spec->memory_limits.limit_in_bytes)) >= 0 &&
        (r = cgroup_set_pids_max(cg, spec->pid_limits.max)) >= 0)
        r = cgroup_set_cpu(cg, shares, 0, 0);
    if (r < 0) {
        (void)cgroup_destroy(cg, 2000);
        return api_errorf(reterr, r, r == -EINVAL ? 400 : 500, GARDEN_ERR_GENERIC,
                          "Failed to set the limits of process '%s': %s", id, strerror(-r));
    }
    log_debug("Container '%s': process '%s' has its own cgroup '%s'", c->rec.handle, id,
              cgroup_name(cg));
    *ret = TAKE_PTR(cg);
    return 0;
}

/* A directory owned by the container's root (host root for a privileged one). */
static int make_owned_dir(int dirfd, const char *name, uid_t uid, mode_t mode)
{
    if (mkdirat(dirfd, name, mode) < 0 && errno != EEXIST)
        return -errno;
    if (uid && fchownat(dirfd, name, uid, uid, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    return 0;
}

int garden_pea_prepare(Garden *g, Container *c, const ProcessSpec *spec, const char *id,
                       GardenPea *ret, ApiError *reterr)
{
    _cleanup_(garden_pea_done) GardenPea p = {0};
    pthread_mutex_lock(&c->lock);
    bool privileged = c->rec.spec.privileged;
    uid_t uid = privileged ? 0 : c->rec.uid_base;
    pthread_mutex_unlock(&c->lock);
    int r;
    if (spec->image.uri && *spec->image.uri) {
        _cleanup_free_ char *rootfs = NULL, *lower = NULL;
        if ((r = resolve_image(g, &spec->image, &rootfs, &p.image_env, reterr)) < 0)
            return r;
        /* An image idmapping cannot reach is copied into the depot, as for create. */
        if ((r = garden_rootfs_lower(g, rootfs, privileged, &lower, reterr)) < 0)
            return r;
        r = split_layers(lower, &p.lowers);
        if (r == -E2BIG)
            return api_bad_request(reterr, "An image of more than %d layers", SANDBOX_MAX_LOWERS);
        if (r < 0)
            return api_internal_error(reterr, r, "Failed to resolve the image");
        /* Its writable layer is on the depot's disk, not in the process table
         * (the run directory, a tmpfs): <container>/peas/<id>. */
        _cleanup_free_ char *container = NULL;
        _cleanup_close_ int peas = -EBADF, layer = -EBADF;
        if ((r = depot_container_path(g->depot, c->rec.handle, &container)) < 0 ||
            asprintf(&p.root, "%s/" GARDEN_PEAS_DIR "/%s", container, id) < 0)
            return api_internal_error(reterr, r < 0 ? r : -ENOMEM, "Failed to prepare the process");
        _cleanup_close_ int cdir = open(container, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (cdir < 0 || (r = make_owned_dir(cdir, GARDEN_PEAS_DIR, 0, 0711)) < 0 ||
            (peas = openat(cdir, GARDEN_PEAS_DIR, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) <
                0)
            return api_internal_error(reterr, cdir < 0 || r >= 0 ? -errno : r,
                                      "Failed to make the writable layer of '%s'", id);
        /* A directory left by a pea of the same id that a crash interrupted. */
        (void)rm_rf_at(peas, id);
        if ((r = make_owned_dir(peas, id, 0, 0755)) < 0 ||
            (layer = openat(peas, id, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
            (r = make_owned_dir(layer, "upper", uid, 0755)) < 0 ||
            (r = make_owned_dir(layer, "work", uid, 0755)) < 0) {
            r = r < 0 ? r : -errno;
            (void)rm_rf_at(peas, id);
            return api_internal_error(reterr, r, "Failed to make the writable layer of '%s'", id);
        }
        /* For the image store: these layers are in use while the layer exists. */
        if ((r = atomic_write_volatile_at(layer, PEA_IMAGE_FILE, lower, strlen(lower), 0600)) < 0) {
            (void)rm_rf_at(peas, id);
            return api_internal_error(reterr, r, "Failed to prepare the process");
        }
    }
    if (spec->override_limits && (r = make_cgroup(g, c, spec, id, &p.cgroup, reterr)) < 0) {
        if (p.root) /* the layer made above: nothing else would remove it */
            (void)rm_rf_at(AT_FDCWD, p.root);
        return r;
    }
    *ret = p;
    p = (GardenPea){0};
    return 0;
}

void garden_pea_abort(GardenPea *p)
{
    if (p->cgroup)
        (void)cgroup_destroy(p->cgroup, 2000);
    if (p->root)
        (void)rm_rf_at(AT_FDCWD, p->root);
    garden_pea_done(p);
}

int garden_pea_resolve_user(const GardenPea *p, const char *user, ProcUser *ret, ApiError *reterr)
{
    /* The topmost layer that has an /etc/passwd holds the one the pea sees. */
    const char *layer = p->lowers[0];
    for (char **l = p->lowers; *l; l++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/etc/passwd", *l);
        if (access(path, F_OK) == 0) {
            layer = *l;
            break;
        }
    }
    _cleanup_close_ int rootfd = open(layer, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return api_internal_error(reterr, -errno, "Failed to open the image '%s'", layer);
    Failure failure = {0};
    int r = proc_resolve_user_at(rootfd, user, ret, &failure);
    return r < 0 ? garden_failure(reterr, &failure, r) : 0;
}

void garden_pea_visit_images(Garden *g, const char *handle, void (*visit)(const char *, void *),
                             void *ctx)
{
    _cleanup_free_ char *container = NULL, *dir = NULL;
    if (depot_container_path(g->depot, handle, &container) < 0 ||
        asprintf(&dir, "%s/" GARDEN_PEAS_DIR, container) < 0)
        return;
    _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(TAKE_FD(fd)) : NULL;
    for (struct dirent *de; d && (de = readdir(d));) {
        if (de->d_name[0] == '.')
            continue;
        _cleanup_close_ int pfd =
            openat(dirfd(d), de->d_name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        _cleanup_free_ char *layers = NULL;
        /* A pea's layer exists from before its start to after its end. */
        if (pfd >= 0 && read_file_at(pfd, PEA_IMAGE_FILE, 1 << 20, &layers, NULL) >= 0)
            visit(layers, ctx);
    }
    if (d)
        closedir(d);
}
