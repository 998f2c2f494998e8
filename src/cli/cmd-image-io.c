/* images import, export and commit: image archives in and out of the daemon's
 * store (PUT /cloche/images/NAME, GET /cloche/images/NAME/archive) and a
 * container's writable layer as a new image (POST .../cloche/commit), with
 * Dockerfile instructions changing its config (-c, as docker commit). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build.h"
#include "cli.h"
#include "cloche/json.h"

#define IO_BLOCK (1u << 20)
#define IMAGE_CHANGES_MAX 64

char *image_uri_local(const char *ref)
{
    if (strstr(ref, "://"))
        return strdup(ref);
    _cleanup_json_ json_object *o = NULL;
    _cleanup_free_ char *want = NULL;
    bool tagged = strchr(ref + (strrchr(ref, '/') ? strrchr(ref, '/') - ref : 0), ':') != NULL;
    if (asprintf(&want, "cloche/%s%s", ref, tagged ? "" : ":latest") < 0)
        return NULL;
    /* Asking costs one request; a daemon that cannot answer leaves the name to
     * the registry, whose error the create or pull will report. */
    if (api_call("GET", "/cloche/images", NULL, &o) >= 0) {
        json_object *list = json_member(o, "images");
        size_t n =
            list && json_object_is_type(list, json_type_array) ? json_object_array_length(list) : 0;
        for (size_t i = 0; i < n; i++)
            if (strcmp(jget_str(json_object_array_get_idx(list, i), "name"), want) == 0) {
                char *uri = NULL;
                return asprintf(&uri, "cloche:///%s", want + 7) < 0 ? NULL : uri;
            }
    }
    return image_uri(ref);
}

/* NAME[:TAG] as the path segment of /cloche/images/..., a URI escaped whole. */
static char *image_segment(const char *name)
{
    return url_escape(name);
}

static int read_some(int fd, char *buf, size_t size, ssize_t *ret)
{
    for (;;) {
        ssize_t n = read(fd, buf, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        *ret = n;
        return 0;
    }
}

static int images_import(int argc, char **argv)
{
    if (argc - optind != 2)
        return cli_usage("images", "Expected: images import FILE|- NAME[:TAG]");
    const char *file = argv[optind], *name = argv[optind + 1];
    _cleanup_close_ int fd =
        strcmp(file, "-") == 0 ? dup(STDIN_FILENO) : open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cli_error(-errno, "Cannot open '%s': %m", file);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return cli_error(-errno, "Cannot read '%s': %m", file);
    bool sized = S_ISREG(st.st_mode);
    _cleanup_free_ char *seg = image_segment(name), *target = NULL;
    char headers[128];
    if (!seg || asprintf(&target, "/cloche/images/%s", seg) < 0)
        return cli_error(-ENOMEM, "Out of memory");
    snprintf(headers, sizeof(headers), "Content-Type: application/x-tar\r\n");
    if (sized)
        snprintf(headers, sizeof(headers),
                 "Content-Type: application/x-tar\r\nContent-Length: %lld\r\n",
                 (long long)st.st_size);
    _cleanup_http_conn_ HttpConn c = {.fd = -EBADF};
    int r;
    if ((r = http_connect(&c.fd)) < 0 ||
        (r = http_send_head(c.fd, "PUT", target, headers, NULL, 0, !sized)) < 0)
        return r;
    _cleanup_progress_ Progress *p = progress_new();
    _cleanup_free_ char *buf = malloc(IO_BLOCK);
    if (!buf || !p)
        return cli_error(-ENOMEM, "Out of memory");
    uint64_t sent = 0, total = sized ? (uint64_t)st.st_size : 0;
    int send_r = 0;
    for (;;) {
        ssize_t n = 0;
        if ((r = read_some(fd, buf, IO_BLOCK, &n)) < 0) {
            errno = -r;
            return cli_error(r, "Cannot read '%s': %m", file);
        }
        if (n == 0)
            break;
        char head[32];
        int hl = snprintf(head, sizeof(head), "%zx\r\n", (size_t)n);
        if ((!sized && (send_r = http_write_all(c.fd, head, (size_t)hl)) < 0) ||
            (send_r = http_write_all(c.fd, buf, (size_t)n)) < 0 ||
            (!sized && (send_r = http_write_all(c.fd, "\r\n", 2)) < 0))
            break; /* the daemon refused early: its reply says why */
        sent += (uint64_t)n;
        progress_update(p, name, sent, total ? total : sent + 1);
    }
    if (send_r >= 0 && !sized)
        send_r = http_write_all(c.fd, "0\r\n\r\n", 5);
    progress_update(p, name, sent, sent);
    if ((r = http_read_head(&c)) < 0)
        return r;
    if (c.status < 200 || c.status > 299)
        return http_report_error(&c);
    if (send_r < 0) {
        errno = -send_r;
        return cli_error(send_r, "Cannot send the archive to the daemon: %m");
    }
    _cleanup_free_ char *text = NULL;
    _cleanup_json_ json_object *o = NULL;
    ApiError e = {0};
    size_t len = 0;
    if ((r = http_read_all_body(&c, CLI_REPLY_MAX, &text, &len)) < 0)
        return r;
    if (json_parse_strict(text, len, &o, &e) < 0)
        return cli_error(-EBADMSG, "The daemon's reply is not JSON: %s", e.message);
    if (cli_json)
        print_reply(text);
    else
        printf("%s: %s\n", jget_str(o, "name"), jget_str(o, "digest"));
    return 0;
}

static int images_export(int argc, char **argv, const char *output)
{
    if (argc - optind != 1)
        return cli_usage("images", "Expected: images export [-o FILE] NAME[:TAG]|REF");
    const char *name = argv[optind];
    if (!output && isatty(STDOUT_FILENO))
        return cli_usage("images", "Refusing to write an archive to a terminal: use -o FILE");
    _cleanup_free_ char *seg = image_segment(name), *target = NULL;
    if (!seg || asprintf(&target, "/cloche/images/%s/archive", seg) < 0)
        return cli_error(-ENOMEM, "Out of memory");
    _cleanup_http_conn_ HttpConn c = {.fd = -EBADF};
    int r;
    if ((r = http_connect(&c.fd)) < 0 ||
        (r = http_send_head(c.fd, "GET", target, NULL, NULL, 0, false)) < 0 ||
        (r = http_read_head(&c)) < 0)
        return r;
    if (c.status < 200 || c.status > 299)
        return http_report_error(&c);
    /* Into a temporary file beside the output, renamed once whole. */
    _cleanup_free_ char *tmp = NULL;
    if (output && asprintf(&tmp, "%s.part", output) < 0)
        return cli_error(-ENOMEM, "Out of memory");
    _cleanup_close_ int out =
        output ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : dup(STDOUT_FILENO);
    if (out < 0)
        return cli_error(-errno, "Cannot write '%s': %m", output ? tmp : "stdout");
    _cleanup_free_ char *buf = malloc(IO_BLOCK);
    if (!buf)
        return cli_error(-ENOMEM, "Out of memory");
    for (;;) {
        ssize_t n = http_read_body(&c, buf, IO_BLOCK);
        if (n < 0) {
            if (tmp)
                unlink(tmp);
            return cli_error((int)n, "The archive from the daemon was cut short");
        }
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                r = cli_error(-errno, "Cannot write '%s': %m", output ? tmp : "stdout");
                if (tmp)
                    unlink(tmp);
                return r;
            }
            off += w;
        }
    }
    if (output && (fsync(out) < 0 || rename(tmp, output) < 0)) {
        r = cli_error(-errno, "Cannot write '%s': %m", output);
        unlink(tmp);
        return r;
    }
    return 0;
}

static int images_commit(int argc, char **argv, char **changes, size_t n_changes, bool no_layer)
{
    if (argc - optind != 2)
        return cli_usage("images", "Expected: images commit [-c INSTRUCTION]... HANDLE NAME[:TAG]");
    const char *handle = argv[optind], *name = argv[optind + 1];
    int r;
    if ((r = check_name("handle", handle)) < 0)
        return r;
    _cleanup_json_ json_object *body = json_object_new_object(), *config = json_object_new_object();
    _cleanup_(build_vars_done) BuildVars vars = {0};
    _cleanup_free_ char *workdir = NULL, *text = NULL;
    if (!body || !config)
        return cli_error(-ENOMEM, "Out of memory");
    for (size_t i = 0; i < n_changes; i++) {
        BuildStep *steps = NULL;
        size_t n = 0;
        _cleanup_free_ char *line = NULL;
        /* Each change is a Dockerfile line after a FROM the parser needs. */
        if (asprintf(&line, "FROM x\n%s\n", changes[i]) < 0)
            return cli_error(-ENOMEM, "Out of memory");
        if ((r = build_parse(line, strlen(line), "-c", &steps, &n)) < 0)
            return r;
        r = n == 2 ? build_step_config(&steps[1], &vars, &workdir, config, "-c")
                   : cli_error(-EINVAL, "-c '%s': one instruction", changes[i]);
        build_steps_free(steps, n);
        if (r < 0)
            return r;
    }
    if (n_changes)
        json_object_object_add(body, "config", json_object_get(config));
    if (no_layer)
        json_object_object_add(body, "layer", json_object_new_boolean(0));
    _cleanup_free_ char *ename = url_escape(name), *target = NULL;
    if (!ename || asprintf(&target, "/containers/%s/cloche/commit?name=%s", handle, ename) < 0)
        return cli_error(-ENOMEM, "Out of memory");
    _cleanup_json_ json_object *reply = NULL;
    if ((r = api_call_raw("POST", target, n_changes || no_layer ? body : NULL, &text, &reply)) < 0)
        return r;
    if (cli_json)
        print_reply(text);
    else
        printf("%s: %s\n", jget_str(reply, "name"), jget_str(reply, "digest"));
    return 0;
}

int images_io_command(const char *sub, int argc, char **argv)
{
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'},
        {"change", required_argument, NULL, 'c'},
        {"no-layer", no_argument, NULL, 'N'},
        CLI_COMMON_OPTS,
        {},
    };
    const char *output = NULL;
    char *changes[IMAGE_CHANGES_MAX];
    size_t n_changes = 0;
    bool no_layer = false;
    bool is_export = strcmp(sub, "export") == 0, is_commit = strcmp(sub, "commit") == 0;
    int opt, r;
    while ((opt = getopt_long(argc, argv, "o:c:JhN", opts, NULL)) != -1) {
        if ((r = cli_common_opt(opt, "images")) != 0) {
            if (r < 0)
                return r;
            continue;
        }
        if (opt == 'o' && is_export)
            output = optarg;
        else if (opt == 'c' && is_commit && n_changes < IMAGE_CHANGES_MAX)
            changes[n_changes++] = optarg;
        else if (opt == 'N' && is_commit)
            no_layer = true;
        else
            return cli_usage("images", "Option -%c does not go with 'images %s'", opt, sub);
    }
    if (is_export)
        return images_export(argc, argv, output);
    if (is_commit)
        return images_commit(argc, argv, changes, n_changes, no_layer);
    return images_import(argc, argv);
}
