/* Where an image's manifests and blobs come from: a registry's v2 API over
 * libcurl (anonymous, basic, Bearer token; redirects; bounded sizes and stalls),
 * or a local OCI image layout. Everything is verified against its digest. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cloche/cleanup.h"
#include "cloche/fileio.h"
#include "cloche/json.h"
#include "image-internal.h"

#define TOKEN_MAX (64u << 10)
#define HEADER_MAX 8192
#define DOCKER_HUB "registry-1.docker.io"

static const char *const manifest_accept =
    "Accept: application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json";

struct Source {
    ImageRefKind kind;
    char name[512];
    /* registry */
    CURL *curl;
    char *base; /* "https://host:port" */
    bool insecure;
    bool tried_plain;
    char *repository;
    char *reference; /* tag or digest */
    char *auth;      /* "Authorization: ..." header, or NULL */
    const ImageCredentials *cred;
    const SourceOptions *opt;
    /* layout */
    int layout_fd;
    char *tag;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

void source_free(Source *src)
{
    if (!src)
        return;
    if (src->curl)
        curl_easy_cleanup(src->curl);
    free(src->base);
    free(src->repository);
    free(src->reference);
    free(src->auth);
    free(src->tag);
    if (src->layout_fd >= 0)
        close(src->layout_fd);
    free(src);
}

const char *source_name(const Source *src)
{
    return src->name;
}

static bool host_insecure(const SourceOptions *o, const char *host)
{
    for (size_t i = 0; i < o->n_insecure; i++)
        if (strcasecmp(o->insecure[i], host) == 0)
            return true;
    return false;
}

int source_open(const SourceOptions *o, const ImageReference *ref, const ImageCredentials *cred,
                Source **ret, Failure *reterr)
{
    _cleanup_(source_freep) Source *src = calloc(1, sizeof(*src));
    if (!src)
        return failure_errno(reterr, -ENOMEM, "Failed to open the image source");
    src->layout_fd = -1;
    src->kind = ref->kind;
    src->opt = o;
    src->cred = cred;
    if (ref->kind == IMAGE_REF_OCI) {
        snprintf(src->name, sizeof(src->name), "%s", ref->path);
        src->layout_fd = open(ref->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (src->layout_fd < 0)
            return failure_input(reterr, -EINVAL, "OCI layout '%s' cannot be opened: %s", ref->path,
                                 strerror(errno));
        if (ref->tag && !(src->tag = strdup(ref->tag)))
            return failure_errno(reterr, -ENOMEM, "Failed to open the image source");
        *ret = TAKE_PTR(src);
        return 0;
    }
    pthread_once(&curl_once, curl_init_once);
    const char *host = ref->registry;
    int n;
    if (!host && o->mirror && *o->mirror) {
        n = asprintf(&src->base, "%s", o->mirror);
        if (n > 0 && src->base[n - 1] == '/')
            src->base[n - 1] = '\0';
    } else {
        if (!host)
            host = DOCKER_HUB;
        src->insecure = host_insecure(o, host);
        n = asprintf(&src->base, "https://%s", host);
    }
    if (n < 0)
        return failure_errno(reterr, -ENOMEM, "Failed to open the image source");
    src->repository = strdup(ref->repository);
    src->reference = strdup(ref->digest ? ref->digest : ref->tag ? ref->tag : "latest");
    src->curl = curl_easy_init();
    if (!src->repository || !src->reference || !src->curl)
        return failure_errno(reterr, -ENOMEM, "Failed to open the image source");
    snprintf(src->name, sizeof(src->name), "%s/%s", ref->registry ? ref->registry : "docker.io",
             ref->repository);
    *ret = TAKE_PTR(src);
    return 0;
}

/* ---- one HTTP exchange ---- */

typedef struct Transfer {
    int fd;    /* >= 0: body to this file */
    char *buf; /* else: body in memory */
    size_t len;
    uint64_t max; /* more than this: abort */
    bool too_big;
    int write_errno;
    Sha256 *sha;
    SourceProgressFn progress;
    void *userdata;
    uint64_t reported;
    char *www_authenticate;
    char *content_type;
} Transfer;

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    Transfer *t = userdata;
    size_t n = size * nmemb;
    if (t->len + n > t->max) {
        t->too_big = true;
        return 0;
    }
    if (t->sha)
        sha256_update(t->sha, data, n);
    if (t->fd >= 0) {
        size_t done = 0;
        while (done < n) {
            ssize_t w = write(t->fd, data + done, n - done);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                t->write_errno = errno;
                return 0;
            }
            done += (size_t)w;
        }
    } else {
        char *grown = realloc(t->buf, t->len + n + 1);
        if (!grown) {
            t->write_errno = ENOMEM;
            return 0;
        }
        t->buf = grown;
        memcpy(t->buf + t->len, data, n);
        t->buf[t->len + n] = '\0';
    }
    t->len += n;
    if (t->progress && t->len - t->reported >= (1u << 20)) {
        t->reported = t->len;
        t->progress(t->userdata, t->len);
    }
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata)
{
    Transfer *t = userdata;
    size_t n = size * nmemb;
    if (n > HEADER_MAX)
        return n;
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* A new response (after a redirect): forget the previous one's headers. */
        free(t->www_authenticate);
        free(t->content_type);
        t->www_authenticate = t->content_type = NULL;
        return n;
    }
    char **slot = NULL;
    size_t skip = 0;
    if (n > 17 && strncasecmp(data, "WWW-Authenticate:", 17) == 0)
        slot = &t->www_authenticate, skip = 17;
    else if (n > 13 && strncasecmp(data, "Content-Type:", 13) == 0)
        slot = &t->content_type, skip = 13;
    if (slot) {
        const char *v = data + skip;
        size_t len = n - skip;
        while (len && (*v == ' ' || *v == '\t'))
            v++, len--;
        while (len && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
            len--;
        free(*slot);
        *slot = strndup(v, len);
    }
    return n;
}

static void transfer_done(Transfer *t)
{
    free(t->buf);
    free(t->www_authenticate);
    free(t->content_type);
    t->buf = t->www_authenticate = t->content_type = NULL;
}

/* GET url into t. Returns the HTTP status, or a negative errno with reterr set. */
static int http_get(Source *src, const char *url, const char *accept, const char *auth_header,
                    const char *userpwd, Transfer *t, Failure *reterr)
{
    CURL *c = src->curl;
    curl_easy_reset(c);
    struct curl_slist *headers = NULL;
    if (accept)
        headers = curl_slist_append(headers, accept);
    if (auth_header)
        headers = curl_slist_append(headers, auth_header);
    unsigned stall = src->opt->stall_timeout_s ? src->opt->stall_timeout_s : 30;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)stall);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)stall);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "cloche/" CLOCHE_VERSION);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, t);
    if (userpwd) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERPWD, userpwd);
    }
    if (src->opt->ca_file && *src->opt->ca_file) {
        /* Added to the system's CAs, which stay in CAPATH. */
        curl_easy_setopt(c, CURLOPT_CAINFO, src->opt->ca_file);
        curl_easy_setopt(c, CURLOPT_CAPATH, "/etc/ssl/certs");
    }
    if (src->insecure) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode cr = curl_easy_perform(c);
    curl_slist_free_all(headers);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (cr == CURLE_OK)
        return (int)status;
    if (t->too_big)
        return failure_set(reterr, -EFBIG, FAILURE_REMOTE,
                           "Registry '%s' sent more than the %llu bytes expected from '%s'",
                           src->name, (unsigned long long)t->max, url);
    if (t->write_errno)
        return failure_errno(reterr, -t->write_errno, "Failed to store '%s'", url);
    if (cr == CURLE_OPERATION_TIMEDOUT)
        return failure_set(reterr, -ETIMEDOUT, FAILURE_REMOTE,
                           "Registry '%s' stalled: %s (no data for %u s)", src->name,
                           *errbuf ? errbuf : curl_easy_strerror(cr), stall);
    return failure_set(reterr, -EIO, FAILURE_REMOTE, "Registry '%s' failed: %s", src->name,
                       *errbuf ? errbuf : curl_easy_strerror(cr));
}

/* The value of one parameter of a WWW-Authenticate challenge. */
static char *challenge_param(const char *ch, const char *key)
{
    size_t klen = strlen(key);
    for (const char *p = ch; (p = strcasestr(p, key)); p += klen) {
        if (p != ch && p[-1] != ' ' && p[-1] != ',')
            continue;
        if (p[klen] != '=')
            continue;
        const char *v = p + klen + 1;
        if (*v == '"') {
            const char *end = strchr(v + 1, '"');
            return end ? strndup(v + 1, (size_t)(end - v - 1)) : NULL;
        }
        return strndup(v, strcspn(v, ", "));
    }
    return NULL;
}

static char *credentials_userpwd(const ImageCredentials *cred)
{
    char *s = NULL;
    if (!cred || !cred->username || !*cred->username)
        return NULL;
    if (asprintf(&s, "%s:%s", cred->username, cred->password ? cred->password : "") < 0)
        return NULL;
    return s;
}

/* Answer a 401's challenge: a Basic header, or a token from the realm. */
static int authenticate(Source *src, const char *challenge, Failure *reterr)
{
    _cleanup_free_ char *userpwd = credentials_userpwd(src->cred);
    free(src->auth);
    src->auth = NULL;
    if (strncasecmp(challenge, "Basic", 5) == 0) {
        if (!userpwd)
            return failure_input(reterr, -EINVAL,
                                 "Registry '%s' requires credentials (image.username)", src->name);
        /* The Basic header is built by curl from userpwd on each request. */
        src->auth = strdup("basic");
        return src->auth ? 0 : -ENOMEM;
    }
    if (strncasecmp(challenge, "Bearer", 6) != 0)
        return failure_set(reterr, -EPROTO, FAILURE_REMOTE,
                           "Registry '%s' asks for an unsupported authentication: '%.64s'",
                           src->name, challenge);
    _cleanup_free_ char *realm = challenge_param(challenge, "realm");
    _cleanup_free_ char *service = challenge_param(challenge, "service");
    _cleanup_free_ char *scope = challenge_param(challenge, "scope");
    if (!realm || (strncmp(realm, "https://", 8) != 0 && strncmp(realm, "http://", 7) != 0))
        return failure_set(reterr, -EPROTO, FAILURE_REMOTE,
                           "Registry '%s' sent a token challenge without an http(s) realm",
                           src->name);
    CURL *c = src->curl;
    _cleanup_free_ char *url = NULL;
    char *esc_service = service ? curl_easy_escape(c, service, 0) : NULL;
    _cleanup_free_ char *default_scope = NULL;
    if (!scope && asprintf(&default_scope, "repository:%s:pull", src->repository) < 0)
        return -ENOMEM;
    char *esc_scope = curl_easy_escape(c, scope ? scope : default_scope, 0);
    int n = asprintf(&url, "%s%sservice=%s&scope=%s", realm, strchr(realm, '?') ? "&" : "?",
                     esc_service ? esc_service : "", esc_scope ? esc_scope : "");
    curl_free(esc_service);
    curl_free(esc_scope);
    if (n < 0)
        return -ENOMEM;
    Transfer t = {.fd = -1, .max = TOKEN_MAX};
    int status = http_get(src, url, NULL, NULL, userpwd, &t, reterr);
    if (status < 0) {
        transfer_done(&t);
        return status;
    }
    if (status == 401 || status == 403) {
        transfer_done(&t);
        return failure_input(reterr, -EINVAL, "The token server of registry '%s' refused %s",
                             src->name, userpwd ? "the credentials" : "anonymous access");
    }
    if (status != 200 || !t.buf) {
        transfer_done(&t);
        return failure_set(reterr, -EPROTO, FAILURE_REMOTE,
                           "The token server of registry '%s' answered %d", src->name, status);
    }
    _cleanup_json_ json_object *o = NULL;
    Failure ignored = {0};
    int r = json_parse_value(t.buf, t.len, &o, &ignored);
    transfer_done(&t);
    json_object *tok = r >= 0 && o ? json_member(o, "token") : NULL;
    if (!tok)
        tok = o ? json_member(o, "access_token") : NULL;
    if (!tok || !json_object_is_type(tok, json_type_string) || json_object_get_string_len(tok) == 0)
        return failure_set(reterr, -EPROTO, FAILURE_REMOTE,
                           "The token server of registry '%s' sent no token", src->name);
    if (asprintf(&src->auth, "Authorization: Bearer %s", json_object_get_string(tok)) < 0)
        return -ENOMEM;
    return 0;
}

/* GET a registry path, authenticating on a 401, falling back to plain HTTP for
 * an insecure registry that does not speak TLS. */
static int registry_get(Source *src, const char *path, const char *accept, Transfer *t,
                        const char *what, Failure *reterr)
{
    bool authenticated = false;
    for (int attempt = 0; attempt < 3; attempt++) {
        _cleanup_free_ char *url = NULL;
        if (asprintf(&url, "%s/v2/%s", src->base, path) < 0)
            return -ENOMEM;
        _cleanup_free_ char *userpwd = NULL;
        bool basic = src->auth && strcmp(src->auth, "basic") == 0;
        if (basic)
            userpwd = credentials_userpwd(src->cred);
        if (t->fd >= 0 && (ftruncate(t->fd, 0) < 0 || lseek(t->fd, 0, SEEK_SET) < 0))
            return failure_errno(reterr, -errno, "Failed to reset a download");
        t->len = 0;
        t->reported = 0;
        t->too_big = false;
        if (t->fd < 0) {
            free(t->buf);
            t->buf = NULL;
        }
        if (t->sha) {
            sha256_free(t->sha);
            t->sha = NULL;
            if (sha256_new(&t->sha) < 0)
                return -ENOMEM;
        }
        Failure err = {0};
        int status = http_get(src, url, accept, basic ? NULL : src->auth, userpwd, t, &err);
        if (status < 0 && src->insecure && !src->tried_plain &&
            strncmp(src->base, "https", 5) == 0) {
            /* An insecure registry may speak plain HTTP only. */
            src->tried_plain = true;
            char *plain = NULL;
            if (asprintf(&plain, "http://%s", src->base + 8) < 0)
                return -ENOMEM;
            free(src->base);
            src->base = plain;
            continue;
        }
        if (status < 0) {
            if (reterr)
                *reterr = err;
            return status;
        }
        if (status == 401 && !authenticated && t->www_authenticate) {
            authenticated = true;
            _cleanup_free_ char *ch = strdup(t->www_authenticate);
            if (!ch)
                return -ENOMEM;
            int r = authenticate(src, ch, reterr);
            if (r < 0)
                return r;
            continue;
        }
        if (status == 200)
            return 0;
        if (status == 401 || status == 403)
            return failure_input(reterr, -EINVAL, "Registry '%s' refused %s to '%s'", src->name,
                                 src->cred && src->cred->username && *src->cred->username
                                     ? "the credentials' access"
                                     : "anonymous access",
                                 what);
        if (status == 404)
            return failure_input(reterr, -ENOENT, "Registry '%s' has no %s", src->name, what);
        return failure_set(reterr, -EPROTO, FAILURE_REMOTE, "Registry '%s' answered %d for %s",
                           src->name, status, what);
    }
    return failure_set(reterr, -EPROTO, FAILURE_REMOTE,
                       "Registry '%s' kept refusing the authentication for %s", src->name, what);
}

static int verify(Source *src, Transfer *t, const char *expect, const char *what, Failure *reterr)
{
    char got[72];
    sha256_final(t->sha, got);
    if (expect && strcmp(got, expect) != 0)
        return failure_set(reterr, -EBADMSG, FAILURE_REMOTE,
                           "%s from '%s' does not match its digest: expected %s, got %s", what,
                           src->name, expect, got);
    return 0;
}

/* ---- the local layout ---- */

static int blob_path(const char *digest, char *buf, size_t size)
{
    if (!image_digest_valid(digest))
        return -EINVAL;
    snprintf(buf, size, "blobs/sha256/%s", digest + 7);
    return 0;
}

/* Read a layout file into t (hashing it), at most t->max bytes. */
static int layout_read(Source *src, const char *name, Transfer *t, Failure *reterr)
{
    _cleanup_close_ int fd = openat(src->layout_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return failure_input(reterr, -EINVAL, "OCI layout '%s' has no readable '%s'", src->name,
                             name);
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return failure_errno(reterr, -errno, "Failed to read '%s'", name);
        if (n == 0)
            return 0;
        if (on_body(buf, 1, (size_t)n, t) != (size_t)n)
            return t->too_big ? failure_input(reterr, -EINVAL,
                                              "'%s' in OCI layout '%s' is larger than %llu bytes",
                                              name, src->name, (unsigned long long)t->max)
                              : failure_errno(reterr, -t->write_errno, "Failed to copy '%s'", name);
    }
}

static int layout_top(Source *src, char **ret_digest, Failure *reterr)
{
    Transfer t = {.fd = -1, .max = IMAGE_MANIFEST_MAX};
    int r = sha256_new(&t.sha);
    if (r >= 0)
        r = layout_read(src, "index.json", &t, reterr);
    sha256_free(t.sha);
    if (r < 0) {
        transfer_done(&t);
        return r;
    }
    _cleanup_json_ json_object *o = NULL;
    r = json_parse_value(t.buf ? t.buf : "", t.len, &o, reterr);
    transfer_done(&t);
    if (r < 0)
        return r;
    json_object *ms = o ? json_member(o, "manifests") : NULL;
    if (!ms || !json_object_is_type(ms, json_type_array))
        return failure_input(reterr, -EINVAL, "OCI layout '%s' has no manifests in index.json",
                             src->name);
    size_t n = json_object_array_length(ms);
    json_object *pick = NULL;
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(ms, i);
        json_object *ann = json_member(m, "annotations");
        json_object *name =
            ann ? json_object_object_get(ann, "org.opencontainers.image.ref.name") : NULL;
        if (src->tag ? name && strcmp(json_object_get_string(name), src->tag) == 0 : n == 1) {
            pick = m;
            break;
        }
    }
    if (!pick)
        return src->tag ? failure_input(reterr, -ENOENT, "OCI layout '%s' has no tag '%s'",
                                        src->name, src->tag)
                        : failure_input(reterr, -EINVAL,
                                        "OCI layout '%s' holds %zu images: name one with #TAG",
                                        src->name, n);
    json_object *d = json_member(pick, "digest");
    if (!d || !json_object_is_type(d, json_type_string) ||
        !image_digest_valid(json_object_get_string(d)))
        return failure_input(reterr, -EINVAL, "OCI layout '%s' has an invalid digest in index.json",
                             src->name);
    *ret_digest = strdup(json_object_get_string(d));
    return *ret_digest ? 0 : -ENOMEM;
}

/* ---- the interface ---- */

int source_manifest(Source *src, const char *digest, char **ret, size_t *ret_len, Failure *reterr)
{
    Transfer t = {.fd = -1, .max = IMAGE_MANIFEST_MAX};
    int r = sha256_new(&t.sha);
    if (r < 0)
        return failure_errno(reterr, r, "Failed to hash");
    char what[160];
    snprintf(what, sizeof(what), "manifest '%s'", digest);
    if (src->kind == IMAGE_REF_OCI) {
        char path[128];
        r = blob_path(digest, path, sizeof(path));
        if (r < 0)
            r = failure_input(reterr, -EINVAL, "Invalid digest '%s'", digest);
        else
            r = layout_read(src, path, &t, reterr);
    } else {
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/manifests/%s", src->repository, digest) < 0)
            r = -ENOMEM;
        else
            r = registry_get(src, path, manifest_accept, &t, what, reterr);
    }
    if (r >= 0 && digest)
        r = verify(src, &t, digest, "The manifest", reterr);
    sha256_free(t.sha);
    t.sha = NULL;
    if (r < 0) {
        transfer_done(&t);
        return r;
    }
    *ret = t.buf ? TAKE_PTR(t.buf) : strdup("");
    *ret_len = t.len;
    transfer_done(&t);
    return *ret ? 0 : -ENOMEM;
}

int source_top_manifest(Source *src, char **ret, size_t *ret_len, char **ret_digest,
                        Failure *reterr)
{
    _cleanup_free_ char *digest = NULL;
    if (src->kind == IMAGE_REF_OCI) {
        int r = layout_top(src, &digest, reterr);
        if (r < 0)
            return r;
    } else if (image_digest_valid(src->reference)) {
        digest = strdup(src->reference);
        if (!digest)
            return -ENOMEM;
    }
    if (digest) {
        int r = source_manifest(src, digest, ret, ret_len, reterr);
        if (r >= 0)
            *ret_digest = TAKE_PTR(digest);
        return r;
    }
    /* By tag: its digest is the hash of the bytes received. */
    Transfer t = {.fd = -1, .max = IMAGE_MANIFEST_MAX};
    int r = sha256_new(&t.sha);
    if (r < 0)
        return r;
    _cleanup_free_ char *path = NULL;
    char what[300];
    snprintf(what, sizeof(what), "tag '%s'", src->reference);
    if (asprintf(&path, "%s/manifests/%s", src->repository, src->reference) < 0)
        r = -ENOMEM;
    else
        r = registry_get(src, path, manifest_accept, &t, what, reterr);
    char got[72];
    if (r >= 0)
        sha256_final(t.sha, got);
    sha256_free(t.sha);
    t.sha = NULL;
    if (r < 0) {
        transfer_done(&t);
        return r;
    }
    *ret_digest = strdup(got);
    *ret = t.buf ? TAKE_PTR(t.buf) : strdup("");
    *ret_len = t.len;
    transfer_done(&t);
    return *ret && *ret_digest ? 0 : -ENOMEM;
}

int source_blob(Source *src, const char *digest, uint64_t size, int fd, char **ret,
                SourceProgressFn progress, void *userdata, Failure *reterr)
{
    Transfer t = {.fd = fd, .max = size, .progress = progress, .userdata = userdata};
    int r = sha256_new(&t.sha);
    if (r < 0)
        return r;
    char what[160];
    snprintf(what, sizeof(what), "blob '%s'", digest);
    if (src->kind == IMAGE_REF_OCI) {
        char path[128];
        r = blob_path(digest, path, sizeof(path));
        r = r < 0 ? failure_input(reterr, -EINVAL, "Invalid digest '%s'", digest)
                  : layout_read(src, path, &t, reterr);
    } else {
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/blobs/%s", src->repository, digest) < 0)
            r = -ENOMEM;
        else
            r = registry_get(src, path, NULL, &t, what, reterr);
    }
    if (r >= 0 && t.len != size)
        r = failure_set(reterr, -EBADMSG, FAILURE_REMOTE,
                        "Blob '%s' from '%s' has %llu bytes, its manifest says %llu", digest,
                        src->name, (unsigned long long)t.len, (unsigned long long)size);
    if (r >= 0)
        r = verify(src, &t, digest, "A blob", reterr);
    if (r >= 0 && progress)
        progress(userdata, t.len);
    sha256_free(t.sha);
    t.sha = NULL;
    if (r >= 0 && ret) {
        *ret = t.buf ? TAKE_PTR(t.buf) : strdup("");
        if (!*ret)
            r = -ENOMEM;
    }
    transfer_done(&t);
    return r;
}
