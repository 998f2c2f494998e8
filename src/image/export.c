/* Export: an image the store knows, as an OCI archive (a tar of an OCI image
 * layout) written to a callback. The store keeps layers extracted, so each one
 * is written again as an uncompressed layer tar; the config's diff_ids and the
 * manifest are rewritten to match. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cloche/cleanup.h"
#include "cloche/json.h"
#include "image-internal.h"

typedef struct Sink {
    ImageWriteFn fn;
    void *userdata;
    bool failed;
} Sink;

static la_ssize_t sink_write(struct archive *a, void *userdata, const void *buf, size_t len)
{
    Sink *s = userdata;
    if (s->fn(s->userdata, buf, len) < 0) {
        s->failed = true;
        archive_set_error(a, EPIPE, "The client went away");
        return -1;
    }
    return (la_ssize_t)len;
}

static int add_bytes(struct archive *a, const char *path, const void *data, size_t len)
{
    struct archive_entry *e = archive_entry_new();
    if (!e)
        return -ENOMEM;
    archive_entry_set_pathname(e, path);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)len);
    int r = archive_write_header(a, e) < ARCHIVE_WARN ? -EIO : 0;
    archive_entry_free(e);
    if (r >= 0 && len && archive_write_data(a, data, len) != (la_ssize_t)len)
        r = -EIO;
    return r;
}

static int add_dir(struct archive *a, const char *path)
{
    struct archive_entry *e = archive_entry_new();
    if (!e)
        return -ENOMEM;
    archive_entry_set_pathname(e, path);
    archive_entry_set_filetype(e, AE_IFDIR);
    archive_entry_set_perm(e, 0755);
    int r = archive_write_header(a, e) < ARCHIVE_WARN ? -EIO : 0;
    archive_entry_free(e);
    return r;
}

static int add_fd(struct archive *a, const char *path, int fd, uint64_t size)
{
    struct archive_entry *e = archive_entry_new();
    if (!e)
        return -ENOMEM;
    archive_entry_set_pathname(e, path);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)size);
    int r = archive_write_header(a, e) < ARCHIVE_WARN ? -EIO : 0;
    archive_entry_free(e);
    char buf[65536];
    if (r >= 0 && lseek(fd, 0, SEEK_SET) < 0)
        r = -errno;
    while (r >= 0) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            r = -errno;
        if (n <= 0)
            break;
        if (archive_write_data(a, buf, (size_t)n) != n)
            r = -EIO;
    }
    return r;
}

static char *serialize(json_object *o, size_t *len)
{
    char *s = json_serialize(o, len);
    /* json_serialize ends with a newline: part of the blob, hashed with it. */
    return s;
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

int image_store_export(ImageStore *s, const ImageReference *ref, ImageWriteFn fn, void *userdata,
                       Failure *reterr)
{
    _cleanup_free_ char *name = NULL;
    if (image_ref_name(ref, &name) < 0)
        return -ENOMEM;
    _cleanup_free_ char *digest = NULL;
    int r = store_tag_digest(s, name, &digest);
    if (r < 0)
        return failure_input(reterr, -ENOENT, "Unknown image '%s' (pull or import it first)", name);
    _cleanup_free_ char *manifest = NULL, *config = NULL;
    size_t manifest_len, config_len;
    if (store_read_record(s, digest, "manifest", &manifest, &manifest_len) < 0 ||
        store_read_record(s, digest, "config", &config, &config_len) < 0)
        return failure_input(reterr, -ENOENT, "Image '%s' has no records in the store", name);
    Manifest m = {0};
    r = manifest_parse(manifest, manifest_len, "A stored manifest", &m, reterr);
    if (r < 0)
        return r;
    _cleanup_json_ json_object *cfg = NULL;
    Failure ignored = {0};
    if (json_parse_value(config, config_len, &cfg, &ignored) < 0 || !cfg ||
        !json_object_is_type(cfg, json_type_object)) {
        manifest_done(&m);
        return failure_errno(reterr, -EBADMSG, "Image '%s' has an unreadable config", name);
    }

    /* Every layer as a tar, hashed, before anything is sent: errors are still
     * ordinary replies until the archive starts. */
    int fds[IMAGE_MAX_LAYERS];
    char digests[IMAGE_MAX_LAYERS][72];
    uint64_t sizes[IMAGE_MAX_LAYERS];
    size_t n = 0;
    for (; r >= 0 && n < m.n_layers; n++) {
        fds[n] = openat(store_tmp_fd(s), ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        _cleanup_close_ int dir = openat(store_layers_fd(s), m.layers[n].digest + 7,
                                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fds[n] < 0 || dir < 0) {
            r = failure_input(reterr, -ENOENT, "Layer '%s' of '%s' is not in the store (evicted)",
                              m.layers[n].digest, name);
            n++;
            break;
        }
        r = layer_dir_to_tar(dir, 0, fds[n]);
        if (r >= 0)
            r = sha256_of_fd(fds[n], digests[n], &sizes[n]);
        if (r < 0)
            failure_errno(reterr, r, "Failed to write layer '%s'", m.layers[n].digest);
    }
    json_object *diff_ids = json_object_new_array();
    json_object *rootfs = json_object_new_object();
    _cleanup_json_ json_object *man = json_object_new_object();
    _cleanup_json_ json_object *index = json_object_new_object();
    json_object *layers = json_object_new_array();
    if (r >= 0 && (!diff_ids || !rootfs || !man || !index || !layers))
        r = failure_errno(reterr, -ENOMEM, "Failed to export");
    _cleanup_free_ char *cfg_text = NULL, *man_text = NULL, *index_text = NULL;
    size_t cfg_len = 0, man_len = 0, index_len = 0;
    char cfg_digest[72], man_digest[72], hex[65];
    if (r >= 0) {
        for (size_t i = 0; i < n; i++) {
            json_object_array_add(diff_ids, json_object_new_string(digests[i]));
            json_object_array_add(
                layers, descriptor("application/vnd.oci.image.layer.v1.tar", digests[i], sizes[i]));
        }
        json_object_object_add(rootfs, "type", json_object_new_string("layers"));
        json_object_object_add(rootfs, "diff_ids", diff_ids);
        json_object_object_add(cfg, "rootfs", rootfs);
        diff_ids = rootfs = NULL;
        cfg_text = serialize(cfg, &cfg_len);
        image_sha256_hex(cfg_text ? cfg_text : "", cfg_len, hex);
        snprintf(cfg_digest, sizeof(cfg_digest), "sha256:%s", hex);
        json_object_object_add(man, "schemaVersion", json_object_new_int(2));
        json_object_object_add(
            man, "mediaType", json_object_new_string("application/vnd.oci.image.manifest.v1+json"));
        json_object_object_add(
            man, "config",
            descriptor("application/vnd.oci.image.config.v1+json", cfg_digest, cfg_len));
        json_object_object_add(man, "layers", layers);
        layers = NULL;
        man_text = serialize(man, &man_len);
        image_sha256_hex(man_text ? man_text : "", man_len, hex);
        snprintf(man_digest, sizeof(man_digest), "sha256:%s", hex);
        json_object *entry =
            descriptor("application/vnd.oci.image.manifest.v1+json", man_digest, man_len);
        json_object *ann = json_object_new_object();
        json_object_object_add(ann, "org.opencontainers.image.ref.name",
                               json_object_new_string(ref->digest ? "latest"
                                                      : ref->tag  ? ref->tag
                                                                  : "latest"));
        json_object_object_add(entry, "annotations", ann);
        json_object *list = json_object_new_array();
        json_object_array_add(list, entry);
        json_object_object_add(index, "schemaVersion", json_object_new_int(2));
        json_object_object_add(index, "manifests", list);
        index_text = serialize(index, &index_len);
        if (!cfg_text || !man_text || !index_text)
            r = failure_errno(reterr, -ENOMEM, "Failed to export");
    }
    json_object_put(diff_ids);
    json_object_put(rootfs);
    json_object_put(layers);

    if (r >= 0) {
        Sink sink = {.fn = fn, .userdata = userdata};
        struct archive *a = archive_write_new();
        if (!a)
            r = -ENOMEM;
        else {
            archive_write_set_format_pax_restricted(a);
            archive_write_set_bytes_in_last_block(a, 1);
            r = archive_write_open(a, &sink, NULL, sink_write, NULL) == ARCHIVE_OK ? 0 : -EIO;
            static const char layout[] = "{\"imageLayoutVersion\":\"1.0.0\"}\n";
            if (r >= 0)
                r = add_bytes(a, "oci-layout", layout, sizeof(layout) - 1);
            if (r >= 0)
                r = add_bytes(a, "index.json", index_text, index_len);
            if (r >= 0)
                r = add_dir(a, "blobs");
            if (r >= 0)
                r = add_dir(a, "blobs/sha256");
            char path[96];
            snprintf(path, sizeof(path), "blobs/sha256/%s", cfg_digest + 7);
            if (r >= 0)
                r = add_bytes(a, path, cfg_text, cfg_len);
            snprintf(path, sizeof(path), "blobs/sha256/%s", man_digest + 7);
            if (r >= 0)
                r = add_bytes(a, path, man_text, man_len);
            for (size_t i = 0; r >= 0 && i < n; i++) {
                snprintf(path, sizeof(path), "blobs/sha256/%s", digests[i] + 7);
                r = add_fd(a, path, fds[i], sizes[i]);
            }
            if (archive_write_close(a) != ARCHIVE_OK && r >= 0)
                r = -EIO;
            archive_write_free(a);
        }
        if (r < 0)
            r = -EPIPE; /* the archive had begun: the caller can only cut it short */
    }
    for (size_t i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    manifest_done(&m);
    return r;
}
