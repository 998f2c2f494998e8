/* Image references as Garden writes them in image.uri. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cloche/cleanup.h"
#include "cloche/image.h"
#include "image-internal.h"

#define REF_MAX 4096
#define REPOSITORY_MAX 255
#define TAG_MAX 128

void image_reference_done(ImageReference *ref)
{
    free(ref->path);
    free(ref->registry);
    free(ref->repository);
    free(ref->tag);
    free(ref->digest);
    *ref = (ImageReference){0};
}

bool image_digest_valid(const char *d)
{
    if (strncmp(d, "sha256:", 7) != 0 || strlen(d) != 7 + 64)
        return false;
    for (const char *p = d + 7; *p; p++)
        if (!isdigit((unsigned char)*p) && !(*p >= 'a' && *p <= 'f'))
            return false;
    return true;
}

static bool tag_valid(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > TAG_MAX || !(isalnum((unsigned char)t[0]) || t[0] == '_'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)t[i]) && !strchr("_.-", t[i]))
            return false;
    return true;
}

/* Lowercase alphanumeric components joined by '.', '_', '__' or '-' runs, split by '/'. */
static bool repository_valid(const char *r)
{
    size_t n = strlen(r);
    if (n == 0 || n > REPOSITORY_MAX)
        return false;
    bool need_alnum = true;
    for (size_t i = 0; i < n; i++) {
        char c = r[i];
        if ((c >= 'a' && c <= 'z') || isdigit((unsigned char)c)) {
            need_alnum = false;
            continue;
        }
        if (need_alnum || !strchr("._-/", c))
            return false;
        need_alnum = true;
        if (c == '_' && r[i + 1] == '_')
            i++;
        else if (c == '-')
            while (r[i + 1] == '-')
                i++;
    }
    return !need_alnum;
}

static bool host_valid(const char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > 255)
        return false;
    const char *colon = strrchr(h, ':');
    for (const char *p = h; p < (colon ? colon : h + n); p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-')
            return false;
    if (colon) {
        char *end;
        errno = 0;
        unsigned long port = strtoul(colon + 1, &end, 10);
        if (colon[1] == '\0' || *end || errno || port == 0 || port > 65535)
            return false;
    }
    return true;
}

static bool path_valid(const char *p)
{
    /* The path becomes part of an overlay mount's options. */
    return p[0] == '/' && !strpbrk(p, ",:\\\n");
}

static int parse_docker(const char *rest, ImageReference *ref, Failure *reterr, const char *uri)
{
    /* rest: "/repo...", or "HOST[:PORT]/repo..." */
    _cleanup_free_ char *copy = strdup(rest);
    if (!copy)
        return failure_errno(reterr, -ENOMEM, "Failed to parse the image reference");
    char *fragment = strchr(copy, '#');
    if (fragment)
        *fragment++ = '\0';
    char *repo = copy;
    if (copy[0] != '/') {
        char *slash = strchr(copy, '/');
        if (!slash)
            return failure_input(reterr, -EINVAL, "Image reference '%s' names no repository", uri);
        *slash = '\0';
        if (!host_valid(copy))
            return failure_input(reterr, -EINVAL,
                                 "Image reference '%s' has an invalid registry '%s'", uri, copy);
        ref->registry = strdup(copy);
        if (!ref->registry)
            return -ENOMEM;
        repo = slash + 1;
    } else {
        repo++;
    }
    char *at = strchr(repo, '@');
    if (at) {
        *at++ = '\0';
        if (!image_digest_valid(at))
            return failure_input(reterr, -EINVAL,
                                 "Image reference '%s' has an invalid digest '%s' (expected "
                                 "sha256: and 64 lowercase hex digits)",
                                 uri, at);
        ref->digest = strdup(at);
    }
    char *colon = strrchr(repo, ':');
    if (colon && !strchr(colon, '/')) {
        *colon++ = '\0';
        if (fragment && *fragment)
            return failure_input(reterr, -EINVAL, "Image reference '%s' has two tags", uri);
        fragment = colon;
    }
    if (fragment && *fragment) {
        if (!tag_valid(fragment))
            return failure_input(reterr, -EINVAL, "Image reference '%s' has an invalid tag '%s'",
                                 uri, fragment);
        ref->tag = strdup(fragment);
    }
    if (!ref->registry && !strchr(repo, '/')) {
        ref->repository = malloc(strlen(repo) + 9);
        if (ref->repository)
            strcat(strcpy(ref->repository, "library/"), repo);
    } else {
        ref->repository = strdup(repo);
    }
    if (!ref->repository || (at && !ref->digest) || (fragment && *fragment && !ref->tag))
        return failure_errno(reterr, -ENOMEM, "Failed to parse the image reference");
    if (!repository_valid(ref->repository))
        return failure_input(reterr, -EINVAL,
                             "Image reference '%s' has an invalid repository '%s' (lowercase "
                             "letters, digits and separators)",
                             uri, repo);
    return 0;
}

int image_ref_parse(const char *uri, ImageReference *ret, Failure *reterr)
{
    ImageReference ref = {0};
    int r = 0;
    if (strlen(uri) > REF_MAX)
        return failure_input(reterr, -EINVAL, "Image reference is longer than %d bytes", REF_MAX);
    if (strncmp(uri, "docker://", 9) == 0) {
        ref.kind = IMAGE_REF_DOCKER;
        r = parse_docker(uri + 9, &ref, reterr, uri);
    } else if (strncmp(uri, "oci://", 6) == 0) {
        ref.kind = IMAGE_REF_OCI;
        _cleanup_free_ char *copy = strdup(uri + 6);
        if (!copy)
            return failure_errno(reterr, -ENOMEM, "Failed to parse the image reference");
        char *fragment = strchr(copy, '#');
        if (fragment)
            *fragment++ = '\0';
        if (!path_valid(copy))
            r = failure_input(reterr, -EINVAL,
                              "Image reference '%s' needs an absolute layout path without "
                              "',', ':' or '\\\\' (oci:///path#tag)",
                              uri);
        else if (fragment && *fragment && !tag_valid(fragment))
            r = failure_input(reterr, -EINVAL, "Image reference '%s' has an invalid tag '%s'", uri,
                              fragment);
        else {
            ref.path = strdup(copy);
            ref.tag = fragment && *fragment ? strdup(fragment) : NULL;
            if (!ref.path || (fragment && *fragment && !ref.tag))
                r = failure_errno(reterr, -ENOMEM, "Failed to parse the image reference");
        }
    } else if (strncmp(uri, "cloche:///", 10) == 0) {
        ref.kind = IMAGE_REF_CLOCHE;
        _cleanup_free_ char *copy = strdup(uri + 10);
        if (!copy)
            return failure_errno(reterr, -ENOMEM, "Failed to parse the image reference");
        char *colon = strrchr(copy, ':');
        if (colon)
            *colon++ = '\0';
        if (!repository_valid(copy))
            r = failure_input(reterr, -EINVAL,
                              "Image reference '%s' has an invalid name (lowercase letters, "
                              "digits and separators: cloche:///NAME[:TAG])",
                              uri);
        else if (colon && !tag_valid(colon))
            r = failure_input(reterr, -EINVAL, "Image reference '%s' has an invalid tag '%s'", uri,
                              colon);
        else {
            ref.repository = strdup(copy);
            ref.tag = colon ? strdup(colon) : NULL;
            if (!ref.repository || (colon && !ref.tag))
                r = failure_errno(reterr, -ENOMEM, "Failed to parse the image reference");
        }
    } else if (strncmp(uri, "raw://", 6) == 0 || uri[0] == '/') {
        ref.kind = IMAGE_REF_RAW;
        const char *p = uri[0] == '/' ? uri : uri + 6;
        if (!path_valid(p))
            r = failure_input(reterr, -EINVAL,
                              "Image path '%s' must be absolute and contain no ',', ':' or "
                              "'\\\\', which an overlay mount cannot take",
                              p);
        else if (!(ref.path = strdup(p)))
            r = failure_errno(reterr, -ENOMEM, "Failed to parse the image reference");
    } else {
        r = failure_input(reterr, -EINVAL,
                          "Unsupported image '%s': cloche takes docker://[HOST[:PORT]]/REPO[#TAG], "
                          "oci:///LAYOUT[#TAG], cloche:///NAME[:TAG], raw:///PATH or /PATH",
                          uri);
    }
    if (r < 0) {
        if (r == -ENOMEM && !failure_is_set(reterr))
            failure_errno(reterr, r, "Failed to parse the image reference");
        image_reference_done(&ref);
        return r;
    }
    *ret = ref;
    return 0;
}

/* The name an image is known by in the store: "host/repository:tag",
 * "docker.io/library/x:tag", "cloche/name:tag" or "oci:/path:tag". */
int image_ref_name(const ImageReference *ref, char **ret)
{
    const char *host = ref->kind == IMAGE_REF_CLOCHE ? "cloche"
                       : ref->registry               ? ref->registry
                                                     : "docker.io";
    const char *tag = ref->digest ? ref->digest : ref->tag ? ref->tag : "latest";
    const char *sep = ref->digest ? "@" : ":";
    int n = ref->kind == IMAGE_REF_OCI
                ? asprintf(ret, "oci:%s%s%s", ref->path, sep, tag)
                : asprintf(ret, "%s/%s%s%s", host, ref->repository, sep, tag);
    return n < 0 ? -ENOMEM : 0;
}
