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

/* The image's layers as tars in unnamed files, hashed. */
typedef struct ExportLayers {
    int fds[IMAGE_MAX_LAYERS];
    char digests[IMAGE_MAX_LAYERS][72];
    uint64_t sizes[IMAGE_MAX_LAYERS];
    size_t n; /* fds[0..n) are open (or -1) */
} ExportLayers;

static void export_layers_done(ExportLayers *l)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->fds[i] >= 0)
            close(l->fds[i]);
    l->n = 0;
}

/* Every layer as a tar, hashed, before anything is sent: errors are still
 * ordinary replies until the archive starts. */
static int export_layers(ImageStore *s, const Manifest *m, const char *name, ExportLayers *l,
                         Failure *reterr)
{
    int r = 0;
    for (l->n = 0; r >= 0 && l->n < m->n_layers; l->n++) {
        size_t n = l->n;
        l->fds[n] = openat(store_tmp_fd(s), ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        _cleanup_close_ int dir = openat(store_layers_fd(s), m->layers[n].digest + 7,
                                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (l->fds[n] < 0 || dir < 0) {
            l->n++;
            return failure_input(reterr, -ENOENT,
                                 "Layer '%s' of '%s' is not in the store (evicted)",
                                 m->layers[n].digest, name);
        }
        r = layer_dir_to_tar(dir, 0, l->fds[n]);
        if (r >= 0)
            r = sha256_of_fd(l->fds[n], l->digests[n], &l->sizes[n]);
        if (r < 0)
            failure_errno(reterr, r, "Failed to write layer '%s'", m->layers[n].digest);
    }
    return r;
}

/* The archive's JSON documents and the digests that name them. */
typedef struct ExportDocuments {
    char *config, *manifest, *index;
    size_t config_len, manifest_len, index_len;
    char config_digest[72], manifest_digest[72];
} ExportDocuments;

static void export_documents_done(ExportDocuments *d)
{
    free(d->config);
    free(d->manifest);
    free(d->index);
}

static void digest_of(const char *text, size_t len, char out[72])
{
    char hex[65];
    image_sha256_hex(text ? text : "", len, hex);
    snprintf(out, 72, "sha256:%s", hex);
}

/* cfg (its rootfs replaced by the exported layers), the manifest and the index,
 * serialised. */
static int export_documents(json_object *cfg, const ImageReference *ref, const ExportLayers *l,
                            ExportDocuments *d, Failure *reterr)
{
    json_object *diff_ids = json_object_new_array();
    json_object *rootfs = json_object_new_object();
    _cleanup_json_ json_object *man = json_object_new_object();
    _cleanup_json_ json_object *index = json_object_new_object();
    json_object *layers = json_object_new_array();
    if (!diff_ids || !rootfs || !man || !index || !layers) {
        json_object_put(diff_ids);
        json_object_put(rootfs);
        json_object_put(layers);
        return failure_errno(reterr, -ENOMEM, "Failed to export");
    }
    for (size_t i = 0; i < l->n; i++) {
        json_object_array_add(diff_ids, json_object_new_string(l->digests[i]));
        json_object_array_add(layers, descriptor("application/vnd.oci.image.layer.v1.tar",
                                                 l->digests[i], l->sizes[i]));
    }
    json_object_object_add(rootfs, "type", json_object_new_string("layers"));
    json_object_object_add(rootfs, "diff_ids", diff_ids);
    json_object_object_add(cfg, "rootfs", rootfs);
    d->config = serialize(cfg, &d->config_len);
    digest_of(d->config, d->config_len, d->config_digest);
    json_object_object_add(man, "schemaVersion", json_object_new_int(2));
    json_object_object_add(man, "mediaType",
                           json_object_new_string("application/vnd.oci.image.manifest.v1+json"));
    json_object_object_add(
        man, "config",
        descriptor("application/vnd.oci.image.config.v1+json", d->config_digest, d->config_len));
    json_object_object_add(man, "layers", layers);
    d->manifest = serialize(man, &d->manifest_len);
    digest_of(d->manifest, d->manifest_len, d->manifest_digest);
    json_object *entry = descriptor("application/vnd.oci.image.manifest.v1+json",
                                    d->manifest_digest, d->manifest_len);
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
    d->index = serialize(index, &d->index_len);
    if (!d->config || !d->manifest || !d->index)
        return failure_errno(reterr, -ENOMEM, "Failed to export");
    return 0;
}

/* The OCI layout as a tar through fn. */
static int write_archive(const ExportDocuments *d, const ExportLayers *l, ImageWriteFn fn,
                         void *userdata)
{
    Sink sink = {.fn = fn, .userdata = userdata};
    struct archive *a = archive_write_new();
    if (!a)
        return -ENOMEM;
    archive_write_set_format_pax_restricted(a);
    archive_write_set_bytes_in_last_block(a, 1);
    int r = archive_write_open(a, &sink, NULL, sink_write, NULL) == ARCHIVE_OK ? 0 : -EIO;
    static const char layout[] = "{\"imageLayoutVersion\":\"1.0.0\"}\n";
    if (r >= 0)
        r = add_bytes(a, "oci-layout", layout, sizeof(layout) - 1);
    if (r >= 0)
        r = add_bytes(a, "index.json", d->index, d->index_len);
    if (r >= 0)
        r = add_dir(a, "blobs");
    if (r >= 0)
        r = add_dir(a, "blobs/sha256");
    char path[96];
    snprintf(path, sizeof(path), "blobs/sha256/%s", d->config_digest + 7);
    if (r >= 0)
        r = add_bytes(a, path, d->config, d->config_len);
    snprintf(path, sizeof(path), "blobs/sha256/%s", d->manifest_digest + 7);
    if (r >= 0)
        r = add_bytes(a, path, d->manifest, d->manifest_len);
    for (size_t i = 0; r >= 0 && i < l->n; i++) {
        snprintf(path, sizeof(path), "blobs/sha256/%s", l->digests[i] + 7);
        r = add_fd(a, path, l->fds[i], l->sizes[i]);
    }
    if (archive_write_close(a) != ARCHIVE_OK && r >= 0)
        r = -EIO;
    archive_write_free(a);
    return r;
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
    ExportLayers layers = {.n = 0};
    ExportDocuments docs = {0};
    r = export_layers(s, &m, name, &layers, reterr);
    if (r >= 0)
        r = export_documents(cfg, ref, &layers, &docs, reterr);
    if (r >= 0 && write_archive(&docs, &layers, fn, userdata) < 0)
        r = -EPIPE; /* the archive had begun: the caller can only cut it short */
    export_documents_done(&docs);
    export_layers_done(&layers);
    manifest_done(&m);
    return r;
}
