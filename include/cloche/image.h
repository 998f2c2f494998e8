/* Images: references (docker://, oci://, raw://, plain paths), a registry client
 * (the v2 API over libcurl, anonymous, basic and Bearer-token auth), and a
 * content-addressed layer store shared by every container.
 *
 * Store layout under the configured directory (the depot's images/):
 *   layers/<hex>/     one extracted layer per blob digest, in overlayfs's form
 *                     (whiteouts are 0:0 character devices, opaque directories
 *                     carry trusted.overlay.opaque and user.overlay.opaque)
 *   meta/<hex>        its size in bytes; the file's mtime is the layer's last use
 *   images/<hex>      a pulled image (by manifest digest): its config and layers
 *   tmp/              work in progress, emptied at start-up; a layer becomes
 *                     visible only by the rename of its finished directory
 *
 * An image is handed to the sandbox as one "rootfs" string: its layer
 * directories joined with ':', top layer first (overlayfs's lowerdir order).
 * Thread-safe: concurrent pulls of one layer download it once.
 *
 * Errors are the neutral Failure (failure.h): the caller's input with an errno
 * that says which kind (-EINVAL, -ENOENT, -EBUSY/-ESTALE), FAILURE_REMOTE for a
 * registry's fault, anything else the system's. garden maps them to HTTP. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cloche/failure.h"

#define IMAGE_MAX_LAYERS 128
#define IMAGE_MANIFEST_MAX (4u << 20) /* manifests and indexes, as Docker's registry */
#define IMAGE_CONFIG_MAX (8u << 20)

typedef enum ImageRefKind {
    IMAGE_REF_RAW,    /* raw:///path or /path: a root file system directory */
    IMAGE_REF_DOCKER, /* docker://[HOST[:PORT]]/repo[:tag|@digest][#tag] */
    IMAGE_REF_OCI,    /* oci:///layout[#tag]: a local OCI image layout */
    IMAGE_REF_CLOCHE, /* cloche:///name[:tag]: imported into the store */
} ImageRefKind;

typedef struct ImageReference {
    ImageRefKind kind;
    char *path;       /* RAW and OCI: absolute path */
    char *registry;   /* DOCKER: "host[:port]"; NULL = Docker Hub */
    char *repository; /* DOCKER: "library/busybox"; CLOCHE: the name */
    char *tag;        /* DOCKER, OCI: tag (NULL: "latest" for DOCKER; the only one for OCI) */
    char *digest;     /* DOCKER: "sha256:<64 hex>" or NULL */
} ImageReference;

/* Parse a reference as Garden writes it in image.uri. A bad one is input
 * (-EINVAL) with the reason. */
int image_ref_parse(const char *uri, ImageReference *ret, Failure *reterr);
void image_reference_done(ImageReference *ref);

/* The image's config, as the container uses it. All owned; arrays NULL-terminated. */
typedef struct ImageConfig {
    char **env; /* "K=V" */
    size_t n_env;
    char *user;
    char *working_dir;
    char **entrypoint;
    size_t n_entrypoint;
    char **cmd;
    size_t n_cmd;
    char **exposed_ports; /* "80/tcp" */
    size_t n_exposed_ports;
} ImageConfig;

void image_config_done(ImageConfig *c);

typedef struct ImageStoreConfig {
    const char *dir;             /* the store's directory (created if missing) */
    uint64_t cache_bytes;        /* evict unused layers past this; 0 = no limit */
    const char *mirror;          /* --registry-mirror: serves Docker Hub references */
    const char *const *insecure; /* --insecure-registry HOST:PORT entries */
    size_t n_insecure;
    const char *ca_file;       /* --registry-ca */
    unsigned stall_timeout_s;  /* a transfer slower than 1 byte/s this long fails; 0 = 30 */
    unsigned eviction_grace_s; /* layers used this recently are never evicted */
} ImageStoreConfig;

typedef struct ImageStore ImageStore;

int image_store_new(const ImageStoreConfig *cfg, ImageStore **ret);
void image_store_free(ImageStore *s);

/* Who uses which rootfs: the store calls it before evicting, and fn calls visit
 * once per container's rootfs string. */
typedef void (*ImageVisitFn)(const char *rootfs, void *ctx);
typedef void (*ImageInUseFn)(void *userdata, ImageVisitFn visit, void *ctx);
void image_store_set_in_use(ImageStore *s, ImageInUseFn fn, void *userdata);

typedef struct ImageCredentials {
    const char *username; /* NULL or "" = anonymous */
    const char *password;
} ImageCredentials;

/* Progress of a pull: one call per layer state change and per ~1 MB received.
 * digest NULL and done == total == 0 announces the image digest in `image`. */
typedef void (*ImageProgressFn)(void *userdata, const char *layer_digest, uint64_t done,
                                uint64_t total);

typedef struct ImagePulled {
    char *rootfs; /* layer directories, top first, ':'-joined */
    char *digest; /* the manifest's digest */
    ImageConfig config;
    uint64_t bytes; /* the layers' extracted size */
} ImagePulled;

void image_pulled_done(ImagePulled *p);

/* Make the image ref names available in the store and describe it. A tag
 * resolved once is served from the store afterwards unless refresh is set
 * (the pull route refreshes). Failures: input -EINVAL for a bad reference or
 * refused credentials, input -ENOENT for an unknown image, FAILURE_REMOTE for a
 * registry that failed or lied. */
int image_store_pull(ImageStore *s, const ImageReference *ref, const ImageCredentials *cred,
                     bool refresh, ImageProgressFn progress, void *userdata, ImagePulled *ret,
                     Failure *reterr);

/* One image name the store knows (a pulled reference). */
typedef struct ImageInfo {
    char *name;     /* "host/repository:tag", "docker.io/library/x:tag" or "oci:/path:tag" */
    char *digest;   /* the manifest's */
    uint64_t bytes; /* its layers' extracted size (layers may be shared) */
    size_t n_layers;
    size_t containers; /* containers created from it that exist now */
} ImageInfo;

int image_store_list(ImageStore *s, ImageInfo **ret, size_t *ret_n);
void image_info_free(ImageInfo *v, size_t n);

/* Forget the name ref pulled; the image's records and layers no other image
 * and no container uses are removed. Input -ENOENT unknown, -EBUSY while a container
 * created from it exists. */
int image_store_remove(ImageStore *s, const ImageReference *ref, Failure *reterr);

/* Import: a file in the store's tmp/ for the archive (unnamed: it vanishes when
 * closed), then the archive (an OCI layout or a docker save, as a tar, possibly
 * compressed) taken in as cloche/NAME[:TAG], usable as cloche:///NAME[:TAG].
 * Input -EINVAL for an archive that is not one. */
int image_store_import_file(ImageStore *s, int *ret_fd);
int image_store_import(ImageStore *s, const char *name_tag, int fd, char **ret_digest,
                       Failure *reterr);

/* What a commit changes in the image's config (a Dockerfile's ENV, LABEL, ...).
 * NULL / unset keeps the base image's value. Borrowed strings. */
typedef struct ImageConfigPatch {
    char **env; /* "K=V": K set (replaced where the base has it), in this order */
    size_t n_env;
    char **labels; /* "K=V" into Labels */
    size_t n_labels;
    char **exposed_ports; /* "80/tcp": added to ExposedPorts */
    size_t n_exposed_ports;
    char *user;        /* NULL: kept */
    char *working_dir; /* NULL: kept */
    bool set_cmd, set_entrypoint;
    char **cmd; /* with set_cmd: replaces Cmd (n_cmd 0: none) */
    size_t n_cmd;
    char **entrypoint; /* with set_entrypoint: replaces Entrypoint */
    size_t n_entrypoint;
    char *created_by; /* NULL, or a history entry's created_by (the instruction) */
} ImageConfigPatch;

typedef struct ImageCommitOptions {
    const ImageConfigPatch *config; /* NULL: the base image's config as it is */
    const char
        *parent;   /* NULL, or the digest the container's image must have (else input -ESTALE) */
    bool no_layer; /* record the config only: the base image's layers */
} ImageCommitOptions;

/* Commit: the writable layer upper (owned by ids from uid_shift) of a container
 * whose rootfs is the image base_digest, as a new layer on top of it, recorded
 * as cloche/NAME[:TAG]. Input -EINVAL if the container's root is not a stored image.
 * opts may be NULL (a layer, the base's config). */
int image_store_commit(ImageStore *s, const char *base_digest, const char *rootfs,
                       const char *upper, uint32_t uid_shift, const char *name_tag,
                       const ImageCommitOptions *opts, char **ret_digest, Failure *reterr);

/* Export an image the store knows (by name) as an OCI archive, written through
 * fn (which returns < 0 to stop). Errors before the first write fill reterr;
 * -EPIPE means the archive had begun and was cut short. */
typedef int (*ImageWriteFn)(void *userdata, const void *data, size_t len);
int image_store_export(ImageStore *s, const ImageReference *ref, ImageWriteFn fn, void *userdata,
                       Failure *reterr);

/* What the store holds. */
typedef struct ImageStoreStats {
    uint64_t bytes;
    uint64_t layers;
    uint64_t downloads; /* blobs fetched since start-up */
} ImageStoreStats;
void image_store_stats(ImageStore *s, ImageStoreStats *ret);

/* Hex SHA-256 of a buffer (65 bytes with the NUL). */
void image_sha256_hex(const void *data, size_t len, char out[65]);
