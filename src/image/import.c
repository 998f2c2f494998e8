/* Import of image archives: an OCI image layout in a tar (`skopeo copy
 * oci-archive:`, `docker save` of Docker 25 and later) or the older `docker save`
 * form (manifest.json, a config and layer tars), possibly compressed. The
 * archive is extracted like a layer (no path leaves it), a docker save is turned
 * into an OCI layout beside it, and the layout is pulled under cloche/NAME:TAG. */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cloche/cleanup.h"
#include "cloche/fileio.h"
#include "cloche/json.h"
#include "image-internal.h"

#define IMPORT_LAYERS_MAX IMAGE_MAX_LAYERS

static int bad_archive(Failure *reterr, const char *why)
{
    return failure_input(reterr, -EINVAL, "The image archive is invalid: %s", why);
}

/* Hash a file of the archive (no symlink on the way) and link it in as a blob.
 * ret_media: the layer media type its first bytes say. */
static int blob_in(int dirfd, const char *path, char ret_digest[72], uint64_t *ret_size,
                   const char **ret_media, Failure *reterr)
{
    struct open_how how = {.flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS};
    _cleanup_close_ int fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
    if (fd < 0)
        return bad_archive(reterr, "manifest.json names a file the archive does not hold");
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return bad_archive(reterr, "manifest.json names something other than a file");
    Sha256 *h = NULL;
    if (sha256_new(&h) < 0)
        return -ENOMEM;
    unsigned char buf[65536];
    unsigned char magic[4] = {0};
    bool first = true;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            sha256_free(h);
            return failure_errno(reterr, -errno, "Failed to read '%s'", path);
        }
        if (n == 0)
            break;
        if (first && n >= 4)
            memcpy(magic, buf, 4);
        first = false;
        sha256_update(h, buf, (size_t)n);
    }
    sha256_final(h, ret_digest);
    sha256_free(h);
    *ret_size = (uint64_t)st.st_size;
    if (ret_media)
        *ret_media = magic[0] == 0x1f && magic[1] == 0x8b
                         ? "application/vnd.oci.image.layer.v1.tar+gzip"
                     : magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd
                         ? "application/vnd.oci.image.layer.v1.tar+zstd"
                         : "application/vnd.oci.image.layer.v1.tar";
    char blob[128];
    snprintf(blob, sizeof(blob), "blobs/sha256/%s", ret_digest + 7);
    if (linkat(fd, "", dirfd, blob, AT_EMPTY_PATH) < 0 && errno != EEXIST) {
        /* AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the daemon has it, but fall back. */
        char proc[64];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        if (linkat(AT_FDCWD, proc, dirfd, blob, AT_SYMLINK_FOLLOW) < 0 && errno != EEXIST)
            return failure_errno(reterr, -errno, "Failed to take in '%s'", path);
    }
    return 0;
}

static json_object *descriptor(const char *media, const char *digest, uint64_t size)
{
    json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    json_object_object_add(o, "mediaType", json_object_new_string(media));
    json_object_object_add(o, "digest", json_object_new_string(digest));
    json_object_object_add(o, "size", json_new_u64(size));
    return o;
}

/* docker save's manifest.json -> an OCI layout (blobs/, index.json) in dirfd. */
static int docker_save_to_layout(int dirfd, Failure *reterr)
{
    _cleanup_free_ char *data = NULL;
    size_t len;
    if (read_file_at(dirfd, "manifest.json", IMAGE_MANIFEST_MAX, &data, &len) < 0)
        return bad_archive(reterr, "manifest.json is unreadable or larger than 4 MiB");
    _cleanup_json_ json_object *o = NULL;
    Failure perr = {0};
    if (json_parse_value(data, len, &o, &perr) < 0 || !o ||
        !json_object_is_type(o, json_type_array))
        return bad_archive(reterr, "manifest.json is not a JSON array");
    if (json_object_array_length(o) != 1)
        return bad_archive(reterr, "manifest.json must describe exactly one image");
    json_object *img = json_object_array_get_idx(o, 0);
    json_object *cfg = img ? json_member(img, "Config") : NULL;
    json_object *layers = img ? json_member(img, "Layers") : NULL;
    if (!cfg || !json_object_is_type(cfg, json_type_string) || !layers ||
        !json_object_is_type(layers, json_type_array))
        return bad_archive(reterr, "manifest.json has no Config and Layers");
    size_t n = json_object_array_length(layers);
    if (n == 0 || n > IMPORT_LAYERS_MAX)
        return bad_archive(reterr, "the image has no layers, or more than 128");
    if ((mkdirat(dirfd, "blobs", 0755) < 0 && errno != EEXIST) ||
        (mkdirat(dirfd, "blobs/sha256", 0755) < 0 && errno != EEXIST))
        return failure_errno(reterr, -errno, "Failed to lay out the import");

    char digest[72];
    uint64_t size;
    int r = blob_in(dirfd, json_object_get_string(cfg), digest, &size, NULL, reterr);
    if (r < 0)
        return r;
    _cleanup_json_ json_object *m = json_object_new_object();
    json_object *ls = json_object_new_array();
    if (!m || !ls) {
        json_object_put(ls);
        return -ENOMEM;
    }
    json_object_object_add(m, "schemaVersion", json_object_new_int(2));
    json_object_object_add(m, "mediaType",
                           json_object_new_string("application/vnd.oci.image.manifest.v1+json"));
    json_object_object_add(m, "config",
                           descriptor("application/vnd.oci.image.config.v1+json", digest, size));
    json_object_object_add(m, "layers", ls);
    for (size_t i = 0; i < n; i++) {
        json_object *p = json_object_array_get_idx(layers, i);
        if (!p || !json_object_is_type(p, json_type_string))
            return bad_archive(reterr, "a layer in manifest.json is not a path");
        const char *media;
        r = blob_in(dirfd, json_object_get_string(p), digest, &size, &media, reterr);
        if (r < 0)
            return r;
        json_object_array_add(ls, descriptor(media, digest, size));
    }
    size_t mlen;
    _cleanup_free_ char *mtext = json_serialize(m, &mlen);
    if (!mtext)
        return -ENOMEM;
    char hex[65];
    image_sha256_hex(mtext, mlen, hex);
    _cleanup_close_ int blobs = openat(dirfd, "blobs/sha256", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    r = blobs < 0 ? -errno : atomic_write_at(blobs, hex, mtext, mlen, 0644);
    if (r < 0)
        return failure_errno(reterr, r, "Failed to lay out the import");
    _cleanup_json_ json_object *index = json_object_new_object();
    json_object *ms = json_object_new_array();
    char mdigest[72];
    snprintf(mdigest, sizeof(mdigest), "sha256:%s", hex);
    if (!index || !ms) {
        json_object_put(ms);
        return -ENOMEM;
    }
    json_object_object_add(index, "schemaVersion", json_object_new_int(2));
    json_object_array_add(
        ms, descriptor("application/vnd.oci.image.manifest.v1+json", mdigest, (uint64_t)mlen));
    json_object_object_add(index, "manifests", ms);
    _cleanup_free_ char *itext = json_serialize(index, &mlen);
    if (!itext)
        return -ENOMEM;
    r = atomic_write_at(dirfd, "index.json", itext, mlen, 0644);
    return r < 0 ? failure_errno(reterr, r, "Failed to lay out the import") : 0;
}

int image_store_import(ImageStore *s, const char *name_tag, int fd, char **ret_digest,
                       Failure *reterr)
{
    _cleanup_free_ char *uri = NULL;
    if (asprintf(&uri, "cloche:///%s", name_tag ? name_tag : "") < 0)
        return -ENOMEM;
    _cleanup_(image_reference_done) ImageReference ref = {0};
    int r = image_ref_parse(uri, &ref, reterr);
    if (r < 0)
        return r;
    _cleanup_free_ char *name = NULL;
    if (image_ref_name(&ref, &name) < 0)
        return -ENOMEM;
    _cleanup_free_ char *dir = image_store_tmpdir(s, "import");
    if (!dir)
        return failure_errno(reterr, -errno, "Failed to make room for the import");
    uint64_t bytes;
    Failure xerr = {0};
    if (lseek(fd, 0, SEEK_SET) < 0)
        r = failure_errno(reterr, -errno, "Failed to read the archive");
    else if ((r = layer_extract(fd, LAYER_ANY, dir, NULL, 0, &bytes, &xerr)) < 0) {
        if (xerr.cause == FAILURE_SYSTEM && reterr)
            *reterr = xerr;
        else if (xerr.cause != FAILURE_SYSTEM)
            r = failure_input(reterr, -EINVAL, "The image archive is invalid: %s", xerr.message);
    }
    _cleanup_close_ int dfd = r >= 0 ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (r >= 0 && dfd < 0)
        r = failure_errno(reterr, -errno, "Failed to open the import");
    if (r >= 0 && faccessat(dfd, "index.json", F_OK, AT_SYMLINK_NOFOLLOW) < 0) {
        if (faccessat(dfd, "manifest.json", F_OK, AT_SYMLINK_NOFOLLOW) == 0)
            r = docker_save_to_layout(dfd, reterr);
        else
            r = bad_archive(reterr, "neither an OCI layout (index.json) nor a docker save "
                                    "(manifest.json)");
    }
    if (r >= 0) {
        ImageReference layout = {.kind = IMAGE_REF_OCI, .path = dir};
        ImagePulled img = {0};
        failure_clear(&xerr);
        r = image_store_pull_as(s, &layout, name, NULL, true, NULL, NULL, &img, &xerr);
        if (r < 0 && xerr.cause != FAILURE_SYSTEM) /* what the archive holds is the client's */
            failure_input(reterr, -EINVAL, "The image archive is invalid: %s", xerr.message);
        else if (r < 0 && reterr)
            *reterr = xerr;
        if (r >= 0)
            *ret_digest = TAKE_PTR(img.digest);
        image_pulled_done(&img);
    }
    image_store_tmpdir_remove(s, dir);
    return r;
}
