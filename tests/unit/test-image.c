/* Image references, manifests and safe layer extraction. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "../../src/image/image-internal.h"
#include "cloche/cleanup.h"
#include "cloche/fileio.h"
#include "cloche/image.h"
#include "tap.h"

static void ref_ok(const char *uri, ImageRefKind kind, const char *registry, const char *repo,
                   const char *tag, const char *digest, const char *path)
{
    ImageReference r = {0};
    Failure e = {0};
    int rc = image_ref_parse(uri, &r, &e);
    ok(rc == 0, "'%s' parses (%s)", uri, e.message);
    if (rc < 0)
        return;
    ok(r.kind == kind, "'%s': kind", uri);
    ok((!registry && !r.registry) || (registry && r.registry && !strcmp(registry, r.registry)),
       "'%s': registry '%s'", uri, r.registry ? r.registry : "(null)");
    ok((!repo && !r.repository) || (repo && r.repository && !strcmp(repo, r.repository)),
       "'%s': repository '%s'", uri, r.repository ? r.repository : "(null)");
    ok((!tag && !r.tag) || (tag && r.tag && !strcmp(tag, r.tag)), "'%s': tag '%s'", uri,
       r.tag ? r.tag : "(null)");
    ok((!digest && !r.digest) || (digest && r.digest && !strcmp(digest, r.digest)), "'%s': digest",
       uri);
    ok((!path && !r.path) || (path && r.path && !strcmp(path, r.path)), "'%s': path", uri);
    image_reference_done(&r);
}

static void ref_bad(const char *uri, const char *words)
{
    ImageReference r = {0};
    Failure e = {0};
    int rc = image_ref_parse(uri, &r, &e);
    ok(rc == -EINVAL && e.cause == FAILURE_INPUT && strstr(e.message, words), "'%s' refused: %s",
       uri, e.message);
    image_reference_done(&r);
}

static const char D[] = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static void test_refs(void)
{
    ref_ok("docker:///library/busybox#1.36", IMAGE_REF_DOCKER, NULL, "library/busybox", "1.36",
           NULL, NULL);
    ref_ok("docker:///busybox", IMAGE_REF_DOCKER, NULL, "library/busybox", NULL, NULL, NULL);
    ref_ok("docker:///busybox:1.2", IMAGE_REF_DOCKER, NULL, "library/busybox", "1.2", NULL, NULL);
    ref_ok("docker://reg.example:5000/team/app#v2", IMAGE_REF_DOCKER, "reg.example:5000",
           "team/app", "v2", NULL, NULL);
    ref_ok("docker://localhost/app", IMAGE_REF_DOCKER, "localhost", "app", NULL, NULL, NULL);
    char uri[256];
    snprintf(uri, sizeof(uri), "docker://127.0.0.1:5000/a/b@%s", D);
    ref_ok(uri, IMAGE_REF_DOCKER, "127.0.0.1:5000", "a/b", NULL, D, NULL);
    ref_ok("oci:///var/images/layout#base", IMAGE_REF_OCI, NULL, NULL, "base", NULL,
           "/var/images/layout");
    ref_ok("oci:///var/images/layout", IMAGE_REF_OCI, NULL, NULL, NULL, NULL, "/var/images/layout");
    ref_ok("cloche:///team/app:v1", IMAGE_REF_CLOCHE, NULL, "team/app", "v1", NULL, NULL);
    ref_ok("cloche:///app", IMAGE_REF_CLOCHE, NULL, "app", NULL, NULL, NULL);
    ref_bad("cloche:///App", "invalid name");
    ref_bad("cloche:///app:-v", "invalid tag");
    ref_ok("raw:///srv/rootfs", IMAGE_REF_RAW, NULL, NULL, NULL, NULL, "/srv/rootfs");
    ref_ok("/srv/rootfs", IMAGE_REF_RAW, NULL, NULL, NULL, NULL, "/srv/rootfs");

    ref_bad("docker:///Busybox", "invalid repository");
    ref_bad("docker:///a//b", "invalid repository");
    ref_bad("docker:///a-", "invalid repository");
    ref_bad("docker:///busybox#-x", "invalid tag");
    ref_bad("docker:///busybox:1#2", "two tags");
    ref_bad("docker:///busybox@sha256:abc", "invalid digest");
    ref_bad("docker:///busybox@md5:0123", "invalid digest");
    ref_bad("docker://bad_host/x", "invalid registry");
    ref_bad("docker://h:0/x", "invalid registry");
    ref_bad("docker://h", "names no repository");
    ref_bad("oci://rel/path", "absolute layout path");
    ref_bad("oci:///a:b", "absolute layout path");
    ref_bad("raw:///a,b", "cannot take");
    ref_bad("http://x/y", "Unsupported image");
}

static void test_manifests(void)
{
    Manifest m = {0};
    Failure e = {0};
    char buf[2048];
    snprintf(buf, sizeof(buf),
             "{\"schemaVersion\":2,\"manifests\":["
             "{\"digest\":\"%s\",\"size\":1,\"platform\":{\"os\":\"linux\",\"architecture\":"
             "\"arm64\"}},"
             "{\"digest\":\"sha256:%064d\",\"size\":2,\"platform\":{\"os\":\"linux\","
             "\"architecture\":\"amd64\"}}]}",
             D, 7);
    ok(manifest_parse(buf, strlen(buf), "index", &m, &e) == 0 && m.is_index && m.chosen.size == 2,
       "an index picks linux/amd64 (%s)", e.message);
    manifest_done(&m);
    snprintf(buf, sizeof(buf),
             "{\"schemaVersion\":2,\"config\":{\"digest\":\"%s\",\"size\":3},\"layers\":["
             "{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\","
             "\"digest\":\"%s\",\"size\":4}]}",
             D, D);
    ok(manifest_parse(buf, strlen(buf), "m", &m, &e) == 0 && !m.is_index && m.n_layers == 1 &&
           m.layers[0].size == 4,
       "a schema 2 manifest");
    manifest_done(&m);
    snprintf(buf, sizeof(buf),
             "{\"schemaVersion\":2,\"config\":{\"digest\":\"%s\",\"size\":3},\"layers\":["
             "{\"mediaType\":\"application/x-foreign\",\"digest\":\"%s\",\"size\":4}]}",
             D, D);
    failure_clear(&e);
    ok(manifest_parse(buf, strlen(buf), "m", &m, &e) < 0 && strstr(e.message, "unsupported"),
       "a foreign layer type is refused: %s", e.message);
    const char *v1 = "{\"schemaVersion\":1}";
    ok(manifest_parse(v1, strlen(v1), "m", &m, &e) < 0, "schema 1 is refused");
    const char *cfg = "{\"config\":{\"Env\":[\"A=1\",\"B=2\"],\"User\":\"u\",\"Cmd\":[\"x\"],"
                      "\"ExposedPorts\":{\"80/tcp\":{}}}}";
    ImageConfig c = {0};
    ok(image_config_parse(cfg, strlen(cfg), "c", &c, &e) == 0 && c.n_env == 2 &&
           !strcmp(c.user, "u") && c.n_cmd == 1 && c.n_exposed_ports == 1 &&
           !strcmp(c.exposed_ports[0], "80/tcp"),
       "a config");
    image_config_done(&c);
    const char *badenv = "{\"config\":{\"Env\":[\"NOEQUALS\"]}}";
    ok(image_config_parse(badenv, strlen(badenv), "c", &c, &e) < 0, "Env without '=' refused");
}

/* A tar in a temporary file: entries "name\ttype\tdata" (f file, d dir, l hardlink,
 * s symlink). */
static int make_tar(const char *const *entries, size_t n)
{
    char path[] = "/tmp/cloche-test-tar-XXXXXX";
    int fd = mkstemp(path);
    unlink(path);
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_open_fd(a, fd);
    for (size_t i = 0; i < n; i++) {
        char name[256], type, data[256] = "";
        sscanf(entries[i], "%255[^\t]\t%c\t%255[^\n]", name, &type, data);
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, name);
        archive_entry_set_perm(e, 0644);
        if (type == 'f') {
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_size(e, (la_int64_t)strlen(data));
        } else if (type == 'd') {
            archive_entry_set_filetype(e, AE_IFDIR);
            archive_entry_set_perm(e, 0755);
        } else if (type == 'l') {
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_hardlink(e, data);
        } else {
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_symlink(e, data);
        }
        archive_write_header(a, e);
        if (type == 'f')
            archive_write_data(a, data, strlen(data));
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
    lseek(fd, 0, SEEK_SET);
    return fd;
}

static int extract(const char *dir, const char *const *entries, size_t n, Failure *e)
{
    int fd = make_tar(entries, n);
    uint64_t bytes;
    int r = layer_extract(fd, LAYER_PLAIN, dir, NULL, 0, &bytes, e);
    close(fd);
    return r;
}

static void test_layers(void)
{
    if (geteuid() != 0) {
        printf("ok %d # SKIP layer extraction needs root (whiteouts are device nodes)\n",
               ++tap_count);
        return;
    }
    char base[] = "/tmp/cloche-test-layer-XXXXXX";
    if (!mkdtemp(base))
        return;
    char dir[512], path[800];
    snprintf(dir, sizeof(dir), "%s/l", base);
    mkdir(dir, 0755);
    Failure e = {0};
    static const char *const good[] = {
        "a\td\t",         "a/f\tf\thello", "a/.wh.gone\tf\t", "o\td\t", "o/.wh..wh..opq\tf\t",
        "a/link\tl\ta/f", "s\ts\t/etc",
    };
    ok(extract(dir, good, ELEMENTSOF(good), &e) == 0, "a layer extracts (%s)", e.message);
    struct stat st;
    snprintf(path, sizeof(path), "%s/a/gone", dir);
    ok(lstat(path, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == 0,
       "a whiteout becomes a 0:0 device");
    snprintf(path, sizeof(path), "%s/o", dir);
    char v[4] = "";
    ok(getxattr(path, "trusted.overlay.opaque", v, sizeof(v)) == 1 && v[0] == 'y',
       "an opaque directory is marked");
    snprintf(path, sizeof(path), "%s/a/link", dir);
    ok(lstat(path, &st) == 0 && st.st_nlink == 2, "a hard link within the layer");

    char outside[600], link[700], abs_entry[700];
    snprintf(outside, sizeof(outside), "%s/outside", base);
    mkdir(outside, 0755);
    snprintf(path, sizeof(path), "%s/x", outside);
    FILE *f = fopen(path, "w"); /* the target a hard link trick aims at */
    if (f)
        fclose(f);
    snprintf(link, sizeof(link), "s\ts\t%s", outside);
    snprintf(abs_entry, sizeof(abs_entry), "%s/abs\tf\tx", outside);
    const char *const tricks[][2] = {
        {"../x\tf\tx", NULL}, {abs_entry, NULL},         {link, "s/y\tf\tx"},
        {link, "h\tl\ts/x"},  {"a/../../x\tf\tx", NULL},
    };
    for (size_t i = 0; i < ELEMENTSOF(tricks); i++) {
        char sub[600];
        snprintf(sub, sizeof(sub), "%s/t%zu", base, i);
        mkdir(sub, 0755);
        failure_clear(&e);
        ok(extract(sub, tricks[i], tricks[i][1] ? 2 : 1, &e) < 0 && e.cause == FAILURE_REMOTE,
           "trick %zu refused: %s", i, e.message);
    }
    snprintf(path, sizeof(path), "%s/y", outside);
    ok(access(path, F_OK) < 0, "nothing written through the symlink");
    snprintf(path, sizeof(path), "%s/abs", outside);
    ok(access(path, F_OK) < 0, "nothing written at the absolute path");
    snprintf(path, sizeof(path), "%s/t3/h", base);
    ok(access(path, F_OK) < 0, "no hard link made to a file outside");
    rm_rf_at(AT_FDCWD, base);
}

int main(void)
{
    test_refs();
    test_manifests();
    test_layers();
    return tap_done();
}
