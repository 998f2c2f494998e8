/* The content-addressed layer store: pulls, once per layer, atomically, with
 * least-recently-used eviction. Layout: include/cloche/image.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cloche/cleanup.h"
#include "cloche/testhook.h"
#include "cloche/fileio.h"
#include "cloche/hashmap.h"
#include "cloche/log.h"
#include "image-internal.h"

void image_pulled_done(ImagePulled *p)
{
    free(p->rootfs);
    free(p->digest);
    image_config_done(&p->config);
    *p = (ImagePulled){0};
}

void image_store_free(ImageStore *s)
{
    if (!s)
        return;
    if (s->tags) {
        size_t st = 0;
        const char *k;
        void *v;
        while (hashmap_iterate(s->tags, &st, &k, &v) == 0)
            free(v);
        hashmap_free(s->tags);
    }
    int fds[] = {s->layers_fd, s->meta_fd, s->images_fd, s->tmp_fd, s->tags_fd};
    for (size_t i = 0; i < ELEMENTSOF(fds); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    resolved_free(s->resolved);
    free(s->inflight);
    free(s->dir);
    free(s->mirror);
    free(s->ca_file);
    strv_free(s->insecure);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->records_lock);
    pthread_cond_destroy(&s->cond);
    free(s);
}

static int open_sub(const char *dir, const char *name, int *ret)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (mkdir(path, 0711) < 0 && errno != EEXIST)
        return -errno;
    *ret = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return *ret < 0 ? -errno : 0;
}

static bool hex_name(const char *n)
{
    if (strlen(n) != 64)
        return false;
    for (; *n; n++)
        if (!((*n >= '0' && *n <= '9') || (*n >= 'a' && *n <= 'f')))
            return false;
    return true;
}

/* Empty tmp/, drop half-committed layers, sum what is there. */
static int store_scan(ImageStore *s)
{
    int dfd = openat(s->tmp_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    _cleanup_closedir_ DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d)
        return -errno;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            (void)rm_rf_at(s->tmp_fd, de->d_name);
    dfd = openat(s->meta_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    _cleanup_closedir_ DIR *m = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!m)
        return -errno;
    while ((de = readdir(m))) {
        if (de->d_name[0] == '.')
            continue;
        struct stat st;
        _cleanup_free_ char *size = NULL;
        size_t len;
        if (!hex_name(de->d_name) ||
            fstatat(s->layers_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            read_file_at(s->meta_fd, de->d_name, 64, &size, &len) < 0) {
            (void)unlinkat(s->meta_fd, de->d_name, 0);
            continue;
        }
        s->bytes += strtoull(size, NULL, 10);
        s->layers++;
    }
    dfd = openat(s->layers_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    _cleanup_closedir_ DIR *l = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!l)
        return -errno;
    while ((de = readdir(l))) {
        if (de->d_name[0] == '.')
            continue;
        if (faccessat(s->meta_fd, de->d_name, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
            (void)rm_rf_at(s->layers_fd, de->d_name);
    }
    return 0;
}

/* tags/<sha256 of the name>: "name\ndigest\n", so names survive a restart. */
static int tags_load(ImageStore *s)
{
    int dfd = openat(s->tags_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    _cleanup_closedir_ DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d)
        return -errno;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!hex_name(de->d_name))
            continue;
        _cleanup_free_ char *data = NULL;
        size_t len;
        if (read_file_at(s->tags_fd, de->d_name, 8192, &data, &len) < 0)
            continue;
        char *nl = strchr(data, '\n');
        char *digest = nl ? nl + 1 : NULL;
        char *end = digest ? strchr(digest, '\n') : NULL;
        if (!end)
            continue;
        *nl = *end = '\0';
        char *copy = image_digest_valid(digest) ? strdup(digest) : NULL;
        if (copy && hashmap_put(s->tags, data, copy) < 0)
            free(copy);
    }
    return 0;
}

static int tag_save(ImageStore *s, const char *name, const char *digest)
{
    char hex[65];
    image_sha256_hex(name, strlen(name), hex);
    _cleanup_free_ char *data = NULL;
    int n = asprintf(&data, "%s\n%s\n", name, digest);
    if (n < 0)
        return -ENOMEM;
    return atomic_write_at(s->tags_fd, hex, data, (size_t)n, 0644);
}

int image_store_new(const ImageStoreConfig *cfg, ImageStore **ret)
{
    ImageStore *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->layers_fd = s->meta_fd = s->images_fd = s->tmp_fd = s->tags_fd = -1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->records_lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    int r = mkdir_p(cfg->dir, 0711);
    if (r >= 0 && !(s->dir = realpath(cfg->dir, NULL)))
        r = -errno;
    if (r >= 0 && strpbrk(s->dir, ",:\\\n"))
        r = -EINVAL; /* the layers' paths go into overlay options */
    if (r >= 0)
        r = open_sub(s->dir, "layers", &s->layers_fd);
    if (r >= 0)
        r = open_sub(s->dir, "meta", &s->meta_fd);
    if (r >= 0)
        r = open_sub(s->dir, "images", &s->images_fd);
    if (r >= 0)
        r = open_sub(s->dir, "tmp", &s->tmp_fd);
    if (r >= 0)
        r = open_sub(s->dir, "tags", &s->tags_fd);
    if (r >= 0)
        r = hashmap_new(&s->tags);
    if (r >= 0)
        r = resolved_new(&s->resolved);
    if (r >= 0)
        r = tags_load(s);
    s->cache_bytes = cfg->cache_bytes;
    s->grace_s = cfg->eviction_grace_s;
    if (r >= 0 && cfg->mirror && !(s->mirror = strdup(cfg->mirror)))
        r = -ENOMEM;
    if (r >= 0 && cfg->ca_file && !(s->ca_file = strdup(cfg->ca_file)))
        r = -ENOMEM;
    if (r >= 0 && !(s->insecure = calloc(cfg->n_insecure + 1, sizeof(char *))))
        r = -ENOMEM;
    for (size_t i = 0; r >= 0 && i < cfg->n_insecure; i++)
        if (!(s->insecure[i] = strdup(cfg->insecure[i])))
            r = -ENOMEM;
    if (r >= 0)
        r = store_scan(s);
    if (r < 0) {
        image_store_free(s);
        return r;
    }
    s->sopt = (SourceOptions){.mirror = s->mirror,
                              .insecure = (const char *const *)s->insecure,
                              .n_insecure = cfg->n_insecure,
                              .ca_file = s->ca_file,
                              .stall_timeout_s = cfg->stall_timeout_s};
    *ret = s;
    return 0;
}

void image_store_set_in_use(ImageStore *s, ImageInUseFn fn, void *userdata)
{
    pthread_mutex_lock(&s->lock);
    s->in_use = fn;
    s->in_use_userdata = userdata;
    pthread_mutex_unlock(&s->lock);
}

void image_store_stats(ImageStore *s, ImageStoreStats *ret)
{
    pthread_mutex_lock(&s->lock);
    *ret = (ImageStoreStats){.bytes = s->bytes, .layers = s->layers, .downloads = s->downloads};
    pthread_mutex_unlock(&s->lock);
}

/* ---- one layer ---- */

typedef struct LayerProgress {
    ImageProgressFn fn;
    void *userdata;
    const char *digest;
    uint64_t total;
} LayerProgress;

static void on_layer_progress(void *userdata, uint64_t done)
{
    LayerProgress *p = userdata;
    if (p->fn)
        p->fn(p->userdata, p->digest, done, p->total);
}

bool store_inflight_has(ImageStore *s, const char *hex)
{
    for (size_t i = 0; i < s->n_inflight; i++)
        if (strcmp(s->inflight[i], hex) == 0)
            return true;
    return false;
}

static void touch_layer(ImageStore *s, const char *hex)
{
    (void)utimensat(s->meta_fd, hex, NULL, AT_SYMLINK_NOFOLLOW);
}

static int fetch_layer(ImageStore *s, Source *src, const Descriptor *d, const int *lower_fds,
                       size_t n_lowers, LayerProgress *prog, Failure *reterr)
{
    if (!src)
        return failure_input(reterr, -ENOENT,
                             "Layer '%s' of an imported image was evicted: import the image again",
                             d->digest);
    LayerCompression comp;
    int r = layer_compression(d->media_type, &comp);
    if (r < 0)
        return failure_input(reterr, -EINVAL, "Layer '%s' has the unsupported type '%s'", d->digest,
                             d->media_type);
    _cleanup_close_ int blob = openat(s->tmp_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (blob < 0)
        return failure_errno(reterr, -errno, "Failed to create a download file");
    r = source_blob(src, d->digest, d->size, blob, NULL, on_layer_progress, prog, reterr);
    if (r < 0)
        return r;
    pthread_mutex_lock(&s->lock);
    s->downloads++;
    pthread_mutex_unlock(&s->lock);
    log_debug("Image layer '%s' from '%s': %" PRIu64 " bytes received", d->digest, source_name(src),
              d->size);
    if (lseek(blob, 0, SEEK_SET) < 0)
        return failure_errno(reterr, -errno, "Failed to rewind a download");
    return store_layer_from_fd(s, blob, comp, d->digest, lower_fds, n_lowers, reterr);
}

int store_layer_from_fd(ImageStore *s, int blob, LayerCompression comp, const char *digest,
                        const int *lower_fds, size_t n_lowers, Failure *reterr)
{
    const char *hex = digest + 7;
    int r;
    char name[96], path[PATH_MAX];
    uint8_t rnd[6];
    if (getentropy(rnd, sizeof(rnd)) < 0)
        return failure_errno(reterr, -errno, "Failed to name a temporary directory");
    snprintf(name, sizeof(name), "%.16s.%02x%02x%02x%02x%02x%02x", hex, rnd[0], rnd[1], rnd[2],
             rnd[3], rnd[4], rnd[5]);
    snprintf(path, sizeof(path), "%s/tmp/%s", s->dir, name);
    if (mkdirat(s->tmp_fd, name, 0755) < 0)
        return failure_errno(reterr, -errno, "Failed to create '%s'", path);
    uint64_t bytes = 0;
    r = layer_extract(blob, comp, path, lower_fds, n_lowers, &bytes, reterr);
    if (r >= 0 && fchmodat(s->tmp_fd, name, 0755, 0) < 0)
        r = failure_errno(reterr, -errno, "Failed to set up '%s'", path);
    if (r >= 0) {
        /* Durable before visible: a crash after the rename finds a whole layer. */
        _cleanup_close_ int dfd = openat(s->tmp_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || syncfs(dfd) < 0)
            r = failure_errno(reterr, -errno, "Failed to sync layer '%s'", digest);
    }
    char size[32];
    int n = snprintf(size, sizeof(size), "%" PRIu64 "\n", bytes);
    if (r >= 0 && (r = atomic_write_at(s->meta_fd, hex, size, (size_t)n, 0644)) < 0)
        failure_errno(reterr, r, "Failed to record layer '%s'", digest);
    if (r >= 0 && renameat(s->tmp_fd, name, s->layers_fd, hex) < 0) {
        r = failure_errno(reterr, -errno, "Failed to commit layer '%s'", digest);
        (void)unlinkat(s->meta_fd, hex, 0);
    }
    if (r < 0) {
        (void)rm_rf_at(s->tmp_fd, name);
        return r;
    }
    pthread_mutex_lock(&s->lock);
    s->bytes += bytes;
    s->layers++;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* Make layer d present: fetched once, whoever else wants it waits. */
static int ensure_layer(ImageStore *s, Source *src, const Descriptor *d, const int *lower_fds,
                        size_t n_lowers, LayerProgress *prog, Failure *reterr)
{
    const char *hex = d->digest + 7;
    pthread_mutex_lock(&s->lock);
    while (store_inflight_has(s, hex))
        pthread_cond_wait(&s->cond, &s->lock);
    if (faccessat(s->layers_fd, hex, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
        pthread_mutex_unlock(&s->lock);
        touch_layer(s, hex);
        if (prog->fn)
            prog->fn(prog->userdata, d->digest, d->size, d->size);
        return 0;
    }
    char **grown = realloc(s->inflight, (s->n_inflight + 1) * sizeof(char *));
    if (!grown) {
        pthread_mutex_unlock(&s->lock);
        return failure_errno(reterr, -ENOMEM, "Failed to pull");
    }
    s->inflight = grown;
    s->inflight[s->n_inflight++] = (char *)hex;
    pthread_mutex_unlock(&s->lock);

    int r = fetch_layer(s, src, d, lower_fds, n_lowers, prog, reterr);

    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n_inflight; i++)
        if (s->inflight[i] == hex) {
            s->inflight[i] = s->inflight[--s->n_inflight];
            break;
        }
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return r;
}

/* ---- eviction ---- */

void store_visit_rootfs(const char *rootfs, void *ctx)
{
    InUse *u = ctx;
    for (const char *p = rootfs; p && *p;) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == u->prefix_len + 64 && strncmp(p, u->layers_prefix, u->prefix_len) == 0) {
            if (u->n == u->cap) {
                size_t cap = u->cap ? u->cap * 2 : 64;
                void *grown = realloc(u->hexes, cap * sizeof(*u->hexes));
                if (!grown)
                    return;
                u->hexes = grown;
                u->cap = cap;
            }
            memcpy(u->hexes[u->n], p + u->prefix_len, 64);
            u->hexes[u->n++][64] = '\0';
        }
        p = end ? end + 1 : NULL;
    }
}

typedef struct Candidate {
    char hex[65];
    int64_t mtime;
} Candidate;

static int by_mtime(const void *a, const void *b)
{
    const Candidate *x = a, *y = b;
    return x->mtime < y->mtime ? -1 : x->mtime > y->mtime;
}

/* Evict unused layers past the limit; the image just pulled (m) counts as used. */
static void store_evict(ImageStore *s, const Manifest *m)
{
    pthread_mutex_lock(&s->lock);
    bool over = s->cache_bytes && s->bytes > s->cache_bytes;
    ImageInUseFn fn = s->in_use;
    void *ud = s->in_use_userdata;
    pthread_mutex_unlock(&s->lock);
    if (!over)
        return;
    char prefix[PATH_MAX];
    snprintf(prefix, sizeof(prefix), "%s/layers/", s->dir);
    InUse used = {.layers_prefix = prefix, .prefix_len = strlen(prefix)};
    if (fn)
        fn(ud, store_visit_rootfs, &used);
    for (size_t i = 0; i < m->n_layers; i++) {
        char one[PATH_MAX + 80];
        snprintf(one, sizeof(one), "%s%s", prefix, m->layers[i].digest + 7);
        store_visit_rootfs(one, &used);
    }
    int dfd = openat(s->meta_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    _cleanup_closedir_ DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    Candidate *c = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    int64_t now = (int64_t)time(NULL);
    while (d && (de = readdir(d))) {
        struct stat st;
        if (!hex_name(de->d_name) || fstatat(s->meta_fd, de->d_name, &st, 0) < 0)
            continue;
        if (now - (int64_t)st.st_mtime < (int64_t)s->grace_s)
            continue;
        bool busy = false;
        for (size_t i = 0; i < used.n && !busy; i++)
            busy = strcmp(used.hexes[i], de->d_name) == 0;
        if (busy)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            Candidate *g = realloc(c, cap * sizeof(*c));
            if (!g)
                break;
            c = g;
        }
        memcpy(c[n].hex, de->d_name, 64); /* hex_name: exactly 64 */
        c[n].hex[64] = '\0';
        c[n++].mtime = (int64_t)st.st_mtime;
    }
    free(used.hexes);
    log_debug("Image store: %" PRIu64 " bytes past the limit of %" PRIu64 ", %zu layers in use, "
              "%zu to consider",
              s->bytes, s->cache_bytes, used.n, n);
    if (n)
        qsort(c, n, sizeof(*c), by_mtime);
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&s->lock);
        if (s->bytes <= s->cache_bytes) {
            pthread_mutex_unlock(&s->lock);
            break;
        }
        if (store_inflight_has(s, c[i].hex)) {
            pthread_mutex_unlock(&s->lock);
            continue;
        }
        _cleanup_free_ char *size = NULL;
        size_t len;
        uint64_t bytes =
            read_file_at(s->meta_fd, c[i].hex, 64, &size, &len) == 0 ? strtoull(size, NULL, 10) : 0;
        char doomed[96];
        snprintf(doomed, sizeof(doomed), "evict.%s", c[i].hex);
        int r = renameat(s->layers_fd, c[i].hex, s->tmp_fd, doomed);
        if (r == 0) {
            (void)unlinkat(s->meta_fd, c[i].hex, 0);
            s->bytes -= bytes < s->bytes ? bytes : s->bytes;
            s->layers--;
        }
        pthread_mutex_unlock(&s->lock);
        if (r == 0) {
            log_info("Image store: evicted layer 'sha256:%s' (%" PRIu64 " bytes)", c[i].hex, bytes);
            (void)rm_rf_at(s->tmp_fd, doomed);
        }
    }
    free(c);
}

/* ---- an image ---- */

static int read_record(ImageStore *s, const char *digest, const char *suffix, char **ret,
                       size_t *ret_len)
{
    char name[96];
    snprintf(name, sizeof(name), "%s.%s", digest + 7, suffix);
    return read_file_at(s->images_fd, name, IMAGE_CONFIG_MAX, ret, ret_len);
}

static int write_record(ImageStore *s, const char *digest, const char *suffix, const char *data,
                        size_t len)
{
    char name[96];
    snprintf(name, sizeof(name), "%s.%s", digest + 7, suffix);
    /* Content-addressed: an existing record is this one. One writer at a time,
     * as concurrent pulls of one image share the temporary name. */
    pthread_mutex_lock(&s->records_lock);
    int r = faccessat(s->images_fd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0
                ? 0
                : atomic_write_at(s->images_fd, name, data, len, 0644);
    pthread_mutex_unlock(&s->records_lock);
    return r;
}

static size_t stack_entry_len(const ImageStore *s)
{
    return strlen(s->dir) + sizeof("/layers/") + 65;
}

/* The rootfs string of an image: its layer directories, top first. out holds
 * n_layers * stack_entry_len bytes. */
static void stack_string(const ImageStore *s, const Manifest *m, char *out)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = m->n_layers; i-- > 0;)
        o += (size_t)snprintf(out + o, stack_entry_len(s) + 1, "%s%s/layers/%s", o ? ":" : "",
                              s->dir, m->layers[i].digest + 7);
}

static void free_lowers(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* A name resolved before whose layers are all still there. */
static bool resolved_fast(ImageStore *s, const char *name, ImagePulled *ret)
{
    ImagePulled img = {0};
    bool touch = false;
    if (resolved_get(s->resolved, name, &img, &touch) < 0)
        return false;
    size_t prefix = strlen(s->dir) + strlen("/layers/");
    for (const char *p = img.rootfs; p && *p;) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char hex[65];
        if (len != prefix + 64) {
            image_pulled_done(&img);
            return false;
        }
        memcpy(hex, p + prefix, 64);
        hex[64] = '\0';
        if (faccessat(s->layers_fd, hex, F_OK, AT_SYMLINK_NOFOLLOW) < 0) {
            image_pulled_done(&img); /* evicted: the slow path fetches it again */
            return false;
        }
        if (touch)
            touch_layer(s, hex);
        p = end ? end + 1 : NULL;
    }
    *ret = img;
    return true;
}

int image_store_pull(ImageStore *s, const ImageReference *ref, const ImageCredentials *cred,
                     bool refresh, ImageProgressFn progress, void *userdata, ImagePulled *ret,
                     Failure *reterr)
{
    if (ref->kind == IMAGE_REF_RAW)
        return failure_input(reterr, -EINVAL, "A raw root file system is not pulled");
    _cleanup_free_ char *name = NULL;
    if (image_ref_name(ref, &name) < 0)
        return failure_errno(reterr, -ENOMEM, "Failed to pull");
    if (ref->kind == IMAGE_REF_CLOCHE)
        refresh = false; /* the store is where it comes from */
    return image_store_pull_as(s, ref, name, cred, refresh, progress, userdata, ret, reterr);
}

/* What a pull works from: the manifest's digest, the manifest and the config. */
typedef struct PullRecords {
    char *digest, *manifest, *config;
    size_t manifest_len, config_len;
} PullRecords;

static void pull_records_done(PullRecords *p)
{
    free(p->digest);
    free(p->manifest);
    free(p->config);
    *p = (PullRecords){0};
}

/* The records of name (or of the reference's digest) the store already has;
 * none, rather than half of them. */
static void known_records(ImageStore *s, const ImageReference *ref, const char *name,
                          PullRecords *p)
{
    pthread_mutex_lock(&s->lock);
    const char *known = hashmap_get(s->tags, name);
    p->digest = known ? strdup(known) : ref->digest ? strdup(ref->digest) : NULL;
    pthread_mutex_unlock(&s->lock);
    if (p->digest && (read_record(s, p->digest, "manifest", &p->manifest, &p->manifest_len) < 0 ||
                      read_record(s, p->digest, "config", &p->config, &p->config_len) < 0))
        pull_records_done(p);
}

/* The manifest from the source (through an index to this platform's) and its
 * config blob, parsed into *m. */
static int fetch_records(Source *src, const char *what, PullRecords *p, Manifest *m,
                         Failure *reterr)
{
    free(p->digest);
    p->digest = NULL;
    int r = source_top_manifest(src, &p->manifest, &p->manifest_len, &p->digest, reterr);
    if (r < 0)
        return r;
    r = manifest_parse(p->manifest, p->manifest_len, what, m, reterr);
    if (r >= 0 && m->is_index) {
        _cleanup_free_ char *chosen = strdup(m->chosen.digest);
        manifest_done(m);
        free(p->manifest);
        p->manifest = NULL;
        r = chosen ? source_manifest(src, chosen, &p->manifest, &p->manifest_len, reterr) : -ENOMEM;
        if (r >= 0)
            r = manifest_parse(p->manifest, p->manifest_len, what, m, reterr);
        if (r >= 0 && m->is_index)
            r = failure_set(reterr, -EBADMSG, FAILURE_REMOTE, "%s: an index names another index",
                            what);
    }
    if (r >= 0)
        r = source_blob(src, m->config.digest, m->config.size, -1, &p->config, NULL, NULL, reterr);
    p->config_len = (size_t)m->config.size;
    return r;
}

/* Every layer of m in the store, bottom up: a hardlink may name a file of an
 * earlier layer. */
static int ensure_layers(ImageStore *s, Source *src, const Manifest *m, ImageProgressFn progress,
                         void *userdata, Failure *reterr)
{
    int lower_fds[IMAGE_MAX_LAYERS];
    size_t n_lowers = 0;
    int r = 0;
    for (size_t i = 0; r >= 0 && i < m->n_layers; i++) {
        LayerProgress prog = {.fn = progress,
                              .userdata = userdata,
                              .digest = m->layers[i].digest,
                              .total = m->layers[i].size};
        /* lowers for the hardlink fallback: top first */
        int tops[IMAGE_MAX_LAYERS];
        for (size_t k = 0; k < n_lowers; k++)
            tops[k] = lower_fds[n_lowers - 1 - k];
        r = ensure_layer(s, src, &m->layers[i], tops, n_lowers, &prog, reterr);
        if (r < 0)
            break;
        lower_fds[n_lowers] =
            openat(s->layers_fd, m->layers[i].digest + 7, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (lower_fds[n_lowers] < 0) {
            r = failure_errno(reterr, -errno, "Failed to open layer '%s'", m->layers[i].digest);
            break;
        }
        n_lowers++;
    }
    free_lowers(lower_fds, n_lowers);
    return r;
}

/* name now stands for digest (kept across restarts). */
static void remember_tag(ImageStore *s, const char *name, const char *digest)
{
    pthread_mutex_lock(&s->lock);
    char *copy = strdup(digest);
    const char *known = hashmap_get(s->tags, name);
    if (copy && (!known || strcmp(known, digest) != 0)) {
        free(hashmap_remove(s->tags, name));
        if (hashmap_put(s->tags, name, copy) < 0)
            free(copy);
        else if (tag_save(s, name, digest) < 0) /* a pulled name can be pulled again */
            log_warn("Image store: failed to record the name '%s'", name);
    } else {
        free(copy);
    }
    pthread_mutex_unlock(&s->lock);
}

int image_store_pull_as(ImageStore *s, const ImageReference *ref, const char *name,
                        const ImageCredentials *cred, bool refresh, ImageProgressFn progress,
                        void *userdata, ImagePulled *ret, Failure *reterr)
{
    if (!refresh && resolved_fast(s, name, ret))
        return 0;
    _cleanup_(pull_records_done) PullRecords p = {0};
    if (!refresh)
        known_records(s, ref, name, &p);
    _cleanup_(source_freep) Source *src = NULL;
    if (ref->kind == IMAGE_REF_CLOCHE && !p.manifest)
        return failure_input(reterr, -ENOENT, "Unknown image '%s'", name);
    int r = ref->kind == IMAGE_REF_CLOCHE ? 0 : source_open(&s->sopt, ref, cred, &src, reterr);
    if (r < 0)
        return r;
    Manifest m = {0};
    char what[600];
    snprintf(what, sizeof(what), "The manifest of '%s'", name);
    if (!p.manifest)
        r = fetch_records(src, what, &p, &m, reterr);
    else
        r = manifest_parse(p.manifest, p.manifest_len, what, &m, reterr);
    ImagePulled out = {0};
    if (r >= 0) {
        snprintf(what, sizeof(what), "The config of '%s'", name);
        r = image_config_parse(p.config, p.config_len, what, &out.config, reterr);
    }
    _cleanup_free_ char *rootfs = NULL;
    if (r >= 0 && !(rootfs = calloc(m.n_layers ? m.n_layers : 1, stack_entry_len(s))))
        r = failure_errno(reterr, -ENOMEM, "Failed to pull");
    if (r >= 0)
        r = ensure_layers(s, src, &m, progress, userdata, reterr);
    if (r >= 0 && m.n_layers == 0)
        r = failure_input(reterr, -EINVAL, "Image '%s' has no layers", name);
    if (r >= 0) {
        stack_string(s, &m, rootfs);
        r = write_record(s, p.digest, "manifest", p.manifest, p.manifest_len);
        if (r >= 0)
            r = write_record(s, p.digest, "config", p.config, p.config_len);
        if (r < 0)
            failure_errno(reterr, r, "Failed to record image '%s'", name);
    }
    if (r >= 0) {
        store_evict(s, &m);
        ImagePulled done = {.rootfs = rootfs, .digest = p.digest, .config = out.config};
        resolved_put(s->resolved, name, &done);
    }
    manifest_done(&m);
    if (r < 0) {
        image_pulled_done(&out);
        return r;
    }
    remember_tag(s, name, p.digest);
    out.rootfs = TAKE_PTR(rootfs);
    out.digest = TAKE_PTR(p.digest);
    *ret = out;
    return 0;
}

/* ---- temporary room ---- */

char *image_store_tmpdir(ImageStore *s, const char *what)
{
    char *path = NULL;
    if (asprintf(&path, "%s/tmp/%s.XXXXXX", s->dir, what) < 0)
        return NULL;
    if (!mkdtemp(path)) {
        free(path);
        return NULL;
    }
    return path;
}

void image_store_tmpdir_remove(ImageStore *s, const char *path)
{
    const char *base = strrchr(path, '/');
    if (base)
        (void)rm_rf_at(s->tmp_fd, base + 1);
}

int image_store_import_file(ImageStore *s, int *ret_fd)
{
    int fd = openat(s->tmp_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    *ret_fd = fd;
    return 0;
}

/* ---- for commit.c ---- */

int store_read_record(ImageStore *s, const char *digest, const char *suffix, char **ret,
                      size_t *ret_len)
{
    return read_record(s, digest, suffix, ret, ret_len);
}

int store_write_record(ImageStore *s, const char *digest, const char *suffix, const char *data,
                       size_t len)
{
    return write_record(s, digest, suffix, data, len);
}

int store_set_tag(ImageStore *s, const char *name, const char *digest)
{
    pthread_mutex_lock(&s->lock);
    char *copy = strdup(digest);
    /* On disk first: a name that only the memory holds would be gone after a
     * restart, and with it the only way to an image made here. */
    int r = !copy ? -ENOMEM : testhook_fault("image.tag") ? -ENOSPC : tag_save(s, name, digest);
    if (r >= 0) {
        free(hashmap_remove(s->tags, name));
        if (hashmap_put(s->tags, name, copy) < 0) {
            free(copy);
            r = -ENOMEM;
        }
    } else {
        free(copy);
    }
    pthread_mutex_unlock(&s->lock);
    resolved_drop(s->resolved, name);
    return r;
}

int store_tmp_fd(ImageStore *s)
{
    return s->tmp_fd;
}

bool store_has_layer(ImageStore *s, const char *hex)
{
    return faccessat(s->layers_fd, hex, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

int store_stack_string(ImageStore *s, const Manifest *m, char **ret)
{
    char *rootfs = calloc(m->n_layers ? m->n_layers : 1, stack_entry_len(s));
    if (!rootfs)
        return -ENOMEM;
    stack_string(s, m, rootfs);
    *ret = rootfs;
    return 0;
}

int store_layers_fd(ImageStore *s)
{
    return s->layers_fd;
}

int store_tag_digest(ImageStore *s, const char *name, char **ret)
{
    pthread_mutex_lock(&s->lock);
    const char *d = hashmap_get(s->tags, name);
    *ret = d ? strdup(d) : NULL;
    pthread_mutex_unlock(&s->lock);
    return *ret ? 0 : d ? -ENOMEM : -ENOENT;
}
