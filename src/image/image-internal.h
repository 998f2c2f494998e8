/* Private to src/image. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cloche/failure.h"
#include "cloche/hashmap.h"
#include "cloche/image.h"

#define IMAGE_BLOB_MAX (16ull << 30)  /* one compressed layer */
#define IMAGE_LAYER_MAX (64ull << 30) /* one extracted layer */
#define IMAGE_LAYER_ENTRIES 2000000u  /* entries in one layer */

bool image_digest_valid(const char *digest);
int image_ref_name(const ImageReference *ref, char **ret);

/* store.c: a pull recorded under name (an import records a layout's image
 * under cloche/NAME:TAG). */
int image_store_pull_as(ImageStore *s, const ImageReference *ref, const char *name,
                        const ImageCredentials *cred, bool refresh, ImageProgressFn progress,
                        void *userdata, ImagePulled *ret, Failure *reterr);

/* A fresh directory (mode 0700) in the store's tmp/, absolute; NULL on failure. */
char *image_store_tmpdir(ImageStore *s, const char *what);
void image_store_tmpdir_remove(ImageStore *s, const char *path);

/* ---- resolved.c: names resolved before, in memory ---- */
typedef struct ResolvedCache ResolvedCache;
int resolved_new(ResolvedCache **ret);
void resolved_free(ResolvedCache *c);
/* A copy of what name resolved to; -ENOENT if unknown. *ret_touch: time to
 * refresh the layers' last use. */
int resolved_get(ResolvedCache *c, const char *name, ImagePulled *ret, bool *ret_touch);
void resolved_put(ResolvedCache *c, const char *name, const ImagePulled *img);
void resolved_drop(ResolvedCache *c, const char *name);

/* ---- sha256.c ---- */
typedef struct Sha256 Sha256;
int sha256_new(Sha256 **ret);
void sha256_update(Sha256 *h, const void *data, size_t len);
/* "sha256:<hex>" */
void sha256_final(Sha256 *h, char out[72]);
void sha256_free(Sha256 *h);

/* ---- source.c: where manifests and blobs come from (a registry or a layout) ---- */
typedef struct Source Source;

typedef struct SourceOptions {
    const char *mirror;
    const char *const *insecure;
    size_t n_insecure;
    const char *ca_file;
    unsigned stall_timeout_s;
} SourceOptions;

int source_open(const SourceOptions *o, const ImageReference *ref, const ImageCredentials *cred,
                Source **ret, Failure *reterr);
void source_free(Source *src);
static inline void source_freep(Source **src)
{
    source_free(*src);
}
/* The top manifest the reference names (tag or digest), verified when a digest
 * names it. *ret_digest is its digest. */
int source_top_manifest(Source *src, char **ret, size_t *ret_len, char **ret_digest,
                        Failure *reterr);
/* A manifest by digest (from an index), verified. */
int source_manifest(Source *src, const char *digest, char **ret, size_t *ret_len, Failure *reterr);
/* A blob of known digest and size: into fd (fd >= 0) or memory (*ret), verified.
 * progress may be NULL. */
typedef void (*SourceProgressFn)(void *userdata, uint64_t done);
int source_blob(Source *src, const char *digest, uint64_t size, int fd, char **ret,
                SourceProgressFn progress, void *userdata, Failure *reterr);
/* Printable name of what the source reads, for messages. */
const char *source_name(const Source *src);

/* ---- manifest.c: OCI/Docker JSON ---- */
typedef struct Descriptor {
    char *media_type;
    char *digest;
    uint64_t size;
} Descriptor;

typedef struct Manifest {
    bool is_index;
    Descriptor config;
    Descriptor *layers; /* bottom first */
    size_t n_layers;
    /* index: the chosen platform's manifest */
    Descriptor chosen;
} Manifest;

int manifest_parse(const char *data, size_t len, const char *what, Manifest *ret, Failure *reterr);
void manifest_done(Manifest *m);
int image_config_parse(const char *data, size_t len, const char *what, ImageConfig *ret,
                       Failure *reterr);
/* ---- layer.c: safe extraction into overlayfs's form ---- */
typedef enum LayerCompression {
    LAYER_PLAIN,
    LAYER_GZIP,
    LAYER_ZSTD,
    LAYER_ANY, /* whichever of the above the data is (imported archives) */
} LayerCompression;

/* media type -> compression; -EPROTONOSUPPORT for what is not a layer. */
int layer_compression(const char *media_type, LayerCompression *ret);
/* Extract the tar in fd into the empty directory dest (an absolute path without
 * symlinks). lower_fds (top first) serve hardlinks to files of earlier layers.
 * ret_bytes: the files' sizes. */
int layer_extract(int fd, LayerCompression comp, const char *dest, const int *lower_fds,
                  size_t n_lowers, uint64_t *ret_bytes, Failure *reterr);

/* Extract the layer tar in fd (digest already verified) into layers/, atomically. */
int store_layer_from_fd(ImageStore *s, int fd, LayerCompression comp, const char *digest,
                        const int *lower_fds, size_t n_lowers, Failure *reterr);

/* store.c, for commit.c */
int store_read_record(ImageStore *s, const char *digest, const char *suffix, char **ret,
                      size_t *ret_len);
int store_write_record(ImageStore *s, const char *digest, const char *suffix, const char *data,
                       size_t len);
int store_set_tag(ImageStore *s, const char *name, const char *digest);
int store_tmp_fd(ImageStore *s);
bool store_has_layer(ImageStore *s, const char *hex);
int store_stack_string(ImageStore *s, const Manifest *m, char **ret);
/* manifest.c: the manifest with one more layer on top. */
int manifest_append_layer(const char *data, size_t len, const Descriptor *d, char **ret,
                          size_t *ret_len);
/* commit.c: a layer directory (overlayfs form, ids from shift) as an image-form
 * layer tar written to out_fd; the SHA-256 and size of a whole file. */
int layer_dir_to_tar(int dirfd, uint32_t shift, int out_fd);
/* manifest.c: the manifest with its config descriptor replaced. */
int manifest_set_config(const char *data, size_t len, const char *digest, uint64_t size, char **ret,
                        size_t *ret_len);
/* config.c: the config JSON with a commit's changes; diff_id (the new layer's,
 * or NULL for none) and parent (or NULL) recorded. */
int image_config_patch(const char *data, size_t len, const ImageConfigPatch *p, const char *diff_id,
                       const char *parent, char **ret, size_t *ret_len);
int sha256_of_fd(int fd, char out[72], uint64_t *ret_size);
int store_layers_fd(ImageStore *s);
int store_tag_digest(ImageStore *s, const char *name, char **ret);

/* ---- the store's state (store.c), shared by the module's files ---- */
struct ImageStore {
    char *dir; /* canonical: extraction refuses symlinks on the way */
    int layers_fd, meta_fd, images_fd, tmp_fd, tags_fd;
    uint64_t cache_bytes;
    unsigned grace_s;
    char *mirror, *ca_file;
    char **insecure;
    SourceOptions sopt;
    pthread_mutex_t records_lock; /* writes of images/ */
    pthread_mutex_t lock;         /* everything below */
    pthread_cond_t cond;
    char **inflight; /* layer hexes being fetched */
    size_t n_inflight;
    HashMap *tags; /* image name -> manifest digest (owned) */
    ResolvedCache *resolved;
    uint64_t bytes, layers, downloads;
    ImageInUseFn in_use;
    void *in_use_userdata;
};

typedef struct InUse {
    const char *layers_prefix;
    size_t prefix_len;
    char (*hexes)[65];
    size_t n, cap;
} InUse;
/* store.c: collect the layer hexes a rootfs string uses (ctx: InUse). */
void store_visit_rootfs(const char *rootfs, void *ctx);
bool store_inflight_has(ImageStore *s, const char *hex); /* under s->lock */
