/* cloche build: a Dockerfile built by the client over the API, no builder
 * daemon. Each step runs in a container of its own made from the previous
 * step's image (RUN as a process whose output is shown as it comes, COPY and
 * ADD as a StreamIn of a tar made here, WORKDIR as a StreamIn that makes the
 * directory), and is committed with its config change as the image
 * cloche/build-cache:KEY, where KEY hashes the parent image's digest, the
 * instruction after substitution, the build arguments a RUN sees and the
 * content of the files a COPY sends. A later build finds an unchanged step by
 * that name and uses it without running it. The last image gets the -t name. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "build-context.h"
#include "build.h"
#include "cli.h"
#include "cloche/fileio.h"
#include "cloche/json.h"

#define BUILD_ARGS_MAX 64
#define CACHE_REPO "build-cache"
#define RUN_LINE_MAX (8u << 20)
#define BUILD_GRACE_NS (600ll * 1000000000) /* 10 minutes */

typedef struct Build {
    const char *context;
    const char *tag;
    bool no_cache, quiet;
    size_t n_steps;
    char *uri;    /* the current image */
    char *digest; /* its digest */
    char *workdir;
    BuildVars vars;     /* ARG and ENV values, for substitution */
    BuildVars args;     /* ARG values in scope: a RUN's environment */
    BuildVars given;    /* --build-arg */
    json_object *cache; /* store names -> digests */
    FILE *log;          /* step lines: stdout, or stderr with --json */
} Build;

static void build_done(Build *b)
{
    free(b->uri);
    free(b->digest);
    free(b->workdir);
    build_vars_done(&b->vars);
    build_vars_done(&b->args);
    build_vars_done(&b->given);
    json_object_put(b->cache);
}

static int load_cache(Build *b)
{
    _cleanup_json_ json_object *o = NULL;
    int r = api_call("GET", "/cloche/images", NULL, &o);
    if (r < 0)
        return r;
    b->cache = json_object_new_object();
    json_object *list = json_member(o, "images");
    size_t n =
        list && json_object_is_type(list, json_type_array) ? json_object_array_length(list) : 0;
    for (size_t i = 0; b->cache && i < n; i++) {
        json_object *img = json_object_array_get_idx(list, i);
        json_object_object_add(b->cache, jget_str(img, "name"),
                               json_object_new_string(jget_str(img, "digest")));
    }
    return b->cache ? 0 : cli_error(-ENOMEM, "Out of memory");
}

static int set_image(Build *b, const char *uri, const char *digest)
{
    free(b->uri);
    free(b->digest);
    b->uri = strdup(uri);
    b->digest = strdup(digest);
    return b->uri && b->digest ? 0 : cli_error(-ENOMEM, "Out of memory");
}

/* ---- containers */

static int container_new(Build *b, char **ret_handle)
{
    _cleanup_json_ json_object *body = json_object_new_object(), *reply = NULL;
    json_object *image = json_object_new_object(), *props = json_object_new_object();
    json_object_object_add(image, "uri", json_object_new_string(b->uri));
    json_object_object_add(body, "image", image);
    json_object_object_add(props, "cloche.build", json_object_new_string(b->tag));
    json_object_object_add(body, "properties", props);
    /* If this client dies mid-step, the daemon destroys the container once it
     * has been unused this long (a running RUN keeps it in use). */
    json_object_object_add(body, "grace_time", json_object_new_int64(BUILD_GRACE_NS));
    int r = api_call("POST", "/containers", body, &reply);
    if (r < 0)
        return r;
    *ret_handle = strdup(jget_str(reply, "handle"));
    return *ret_handle ? 0 : cli_error(-ENOMEM, "Out of memory");
}

static void container_destroy(char **handle)
{
    if (!*handle)
        return;
    _cleanup_free_ char *target = NULL;
    if (asprintf(&target, "/containers/%s", *handle) >= 0)
        (void)api_call("DELETE", target, NULL, NULL);
    free(*handle);
    *handle = NULL;
}

/* PUT a tar (fd, size bytes) into the container at dir, with a progress bar. */
static int stream_in(const char *handle, const char *dir, int fd, uint64_t size, const char *label)
{
    _cleanup_free_ char *edir = url_escape(dir), *target = NULL;
    char headers[128];
    if (!edir || asprintf(&target, "/containers/%s/files?destination=%s", handle, edir) < 0)
        return cli_error(-ENOMEM, "Out of memory");
    snprintf(headers, sizeof(headers),
             "Content-Type: application/x-tar\r\nContent-Length: %llu\r\n",
             (unsigned long long)size);
    _cleanup_http_conn_ HttpConn c = {.fd = -EBADF};
    int r, send_r = 0;
    if ((r = http_connect(&c.fd)) < 0 ||
        (r = http_send_head(c.fd, "PUT", target, headers, NULL, 0, false)) < 0)
        return r;
    _cleanup_progress_ Progress *p = label ? progress_new() : NULL;
    char buf[65536];
    uint64_t sent = 0;
    while (sent < size && send_r >= 0) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return cli_error(n < 0 ? -errno : -ENODATA, "Cannot read the archive: %m");
        if ((send_r = http_write_all(c.fd, buf, (size_t)n)) >= 0)
            sent += (uint64_t)n;
        if (p && progress_is_tty(p))
            progress_update(p, label, sent, size);
    }
    shutdown(c.fd, SHUT_WR);
    if ((r = http_read_head(&c)) < 0)
        return r;
    if (c.status < 200 || c.status > 299)
        return http_report_error(&c);
    if (send_r < 0) {
        errno = -send_r;
        return cli_error(send_r, "Cannot send the files to the daemon: %m");
    }
    return 0;
}

/* RUN: the process through Run's one-request form (ndjson lines: output as it
 * comes, the exit status last). */
static int run_process(Build *b, const char *handle, const BuildStep *s, const char *where)
{
    _cleanup_json_ json_object *props = NULL, *spec = json_object_new_object();
    _cleanup_free_ char *target = NULL;
    if (asprintf(&target, "/containers/%s/properties", handle) < 0)
        return cli_error(-ENOMEM, "Out of memory");
    int r = api_call("GET", target, NULL, &props);
    if (r < 0)
        return r;
    json_object *args = json_object_new_array(), *env = json_object_new_array();
    if (s->exec_form) {
        json_object_object_add(spec, "path", json_object_new_string(s->argv[0]));
        for (size_t i = 1; i < s->argc; i++)
            json_object_array_add(args, json_object_new_string(s->argv[i]));
    } else {
        json_object_object_add(spec, "path", json_object_new_string("/bin/sh"));
        json_object_array_add(args, json_object_new_string("-c"));
        json_object_array_add(args, json_object_new_string(s->args));
    }
    json_object_object_add(spec, "args", args);
    for (size_t i = 0; i < b->args.n; i++)
        json_object_array_add(env, json_object_new_string(b->args.v[i]));
    json_object_object_add(spec, "env", env);
    const char *user = jget_str(props, "cloche.image.user"),
               *dir = jget_str(props, "cloche.image.working-dir");
    if (*user)
        json_object_object_add(spec, "user", json_object_new_string(user));
    if (*dir)
        json_object_object_add(spec, "dir", json_object_new_string(dir));

    _cleanup_free_ char *payload = NULL;
    size_t len = 0;
    free(target);
    target = NULL;
    if (!(payload = json_serialize(spec, &len)) ||
        asprintf(&target, "/containers/%s/processes", handle) < 0)
        return cli_error(-ENOMEM, "Out of memory");
    _cleanup_http_conn_ HttpConn c = {.fd = -EBADF};
    if ((r = http_connect(&c.fd)) < 0 ||
        (r = http_send_head(c.fd, "POST", target,
                            "Content-Type: application/json\r\nAccept: application/x-ndjson\r\n",
                            payload, len, false)) < 0 ||
        (r = http_read_head(&c)) < 0)
        return r;
    if (c.status < 200 || c.status > 299)
        return http_report_error(&c);
    _cleanup_free_ char *line = malloc(RUN_LINE_MAX + 1);
    size_t n = 0;
    if (!line)
        return cli_error(-ENOMEM, "Out of memory");
    /* With --json stdout carries JSON only: the output goes to stderr. */
    FILE *out = cli_json ? stderr : stdout;
    for (;;) {
        char buf[65536];
        ssize_t got = http_read_body(&c, buf, sizeof(buf));
        if (got < 0) {
            errno = (int)-got;
            return cli_error((int)got, "%s: the process's output ended early: %m", where);
        }
        if (got == 0)
            return cli_error(-EPIPE,
                             "%s: the daemon ended the process's output without its "
                             "exit status",
                             where);
        for (ssize_t k = 0; k < got; k++) {
            if (buf[k] != '\n') {
                if (n >= RUN_LINE_MAX)
                    return cli_error(-EBADMSG, "%s: an output line from the daemon is too long",
                                     where);
                line[n++] = buf[k];
                continue;
            }
            line[n] = '\0';
            /* Not the strict parser: the output need not be UTF-8. */
            _cleanup_json_ json_object *m = json_tokener_parse(line);
            n = 0;
            json_object *v;
            if (!m)
                return cli_error(-EBADMSG, "%s: a line from the daemon is not JSON", where);
            if ((v = json_member(m, "data"))) {
                FILE *f = jget_u64(m, "source") == 2 ? stderr : out;
                fwrite(json_object_get_string(v), 1, (size_t)json_object_get_string_len(v), f);
                fflush(f);
            } else if ((v = json_member(m, "exit_status"))) {
                int status = json_object_get_int(v);
                if (status != 0)
                    return cli_error(-ECHILD, "%s: '%s' exited with status %d", where, s->args,
                                     status);
                return 0;
            } else if ((v = json_member(m, "error"))) {
                return cli_error(-EIO, "%s: %s", where, json_object_get_string(v));
            }
        }
    }
}

static int commit(Build *b, const char *handle, const char *name, json_object *config,
                  const char *created_by, bool layer, char **ret_digest)
{
    _cleanup_json_ json_object *body = json_object_new_object(), *reply = NULL;
    if (config)
        json_object_object_add(body, "config", json_object_get(config));
    if (created_by)
        json_object_object_add(body, "created_by", json_object_new_string(created_by));
    json_object_object_add(body, "parent", json_object_new_string(b->digest));
    if (!layer)
        json_object_object_add(body, "layer", json_object_new_boolean(0));
    _cleanup_free_ char *ename = url_escape(name), *target = NULL;
    if (!ename || asprintf(&target, "/containers/%s/cloche/commit?name=%s", handle, ename) < 0)
        return cli_error(-ENOMEM, "Out of memory");
    int r = api_call("POST", target, body, &reply);
    if (r < 0)
        return r;
    *ret_digest = strdup(jget_str(reply, "digest"));
    return *ret_digest ? 0 : cli_error(-ENOMEM, "Out of memory");
}

/* ---- steps */

static void hex_sha256(const char *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned n = 0;
    EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
    for (size_t i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int step_from(Build *b, const BuildStep *s, const char *where)
{
    _cleanup_free_ char *ref = NULL, *uri = NULL, *digest = NULL;
    if (build_substitute(s->args, &b->vars, &ref) < 0 || !*ref)
        return cli_error(-EINVAL, "%s: bad quotes or ${...} in 'FROM %s'", where, s->args);
    if (strcmp(ref, "scratch") == 0)
        return cli_error(-EOPNOTSUPP, "%s: 'FROM scratch' is not supported by cloche build", where);
    if (!(uri = image_uri_local(ref)))
        return cli_error(-ENOMEM, "Out of memory");
    int r = image_pull(uri, NULL, NULL, false, &digest);
    if (r < 0)
        return r;
    free(b->workdir);
    b->workdir = NULL;
    /* An ARG before FROM is for FROM only, as docker's. */
    build_vars_done(&b->args);
    return set_image(b, uri, digest);
}

static int step_arg(Build *b, const BuildStep *s, const char *where)
{
    _cleanup_(strv_freep) char **words = NULL;
    size_t n = 0;
    if (build_words(s->args, &b->vars, &words, &n) < 0)
        return cli_error(-EINVAL, "%s: bad quotes or ${...} in 'ARG %s'", where, s->args);
    for (size_t i = 0; i < n; i++) {
        char *eq = strchr(words[i], '=');
        if (eq)
            *eq = '\0';
        if (!*words[i])
            return cli_error(-EINVAL, "%s: 'ARG %s': a name is missing", where, s->args);
        const char *value = build_vars_get(&b->given, words[i]);
        if (!value)
            value = eq ? eq + 1 : NULL;
        if (!value)
            continue; /* declared without a value: unset, as docker */
        if (build_vars_set(&b->vars, words[i], value) < 0 ||
            build_vars_set(&b->args, words[i], value) < 0)
            return cli_error(-E2BIG, "%s: too many variables", where);
    }
    return 0;
}

/* The cache key's text for a step, and for COPY/ADD the packed files. */
static int step_key(Build *b, const BuildStep *s, const char *where, ContextPack *pack,
                    char **ret_text)
{
    _cleanup_free_ char *text = NULL, *extra = NULL;
    if (s->kind == BUILD_RUN) {
        /* The build arguments a RUN sees are part of what it does. */
        size_t len = 1;
        for (size_t i = 0; i < b->args.n; i++)
            len += strlen(b->args.v[i]) + 1;
        if (!(extra = calloc(1, len)))
            return cli_error(-ENOMEM, "Out of memory");
        for (size_t i = 0; i < b->args.n; i++) {
            strcat(extra, b->args.v[i]);
            strcat(extra, "\n");
        }
    } else if (s->kind == BUILD_COPY || s->kind == BUILD_ADD) {
        _cleanup_(strv_freep) char **words = NULL;
        size_t n = 0;
        if (s->exec_form) {
            words = calloc(s->argc + 1, sizeof(char *));
            for (size_t i = 0; words && i < s->argc; i++)
                if (build_substitute(s->argv[i], &b->vars, &words[n++]) < 0)
                    return cli_error(-EINVAL, "%s: bad ${...} in '%s'", where, s->argv[i]);
            if (!words)
                return cli_error(-ENOMEM, "Out of memory");
        } else if (build_words(s->args, &b->vars, &words, &n) < 0) {
            return cli_error(-EINVAL, "%s: bad quotes or ${...} in '%s %s'", where, s->keyword,
                             s->args);
        }
        if (n < 2)
            return cli_error(-EINVAL, "%s: '%s' needs a source and a destination", where,
                             s->keyword);
        _cleanup_free_ char *dest = NULL;
        const char *d = words[n - 1], *base = b->workdir ? b->workdir : "/";
        bool here = strcmp(d, ".") == 0 || strcmp(d, "./") == 0;
        if (d[0] == '/' ? !(dest = strdup(d))
                        : asprintf(&dest, "%s%s%s", base, base[strlen(base) - 1] == '/' ? "" : "/",
                                   here ? "" : d) < 0)
            return cli_error(-ENOMEM, "Out of memory");
        int r = context_pack(b->context, words, n - 1, dest, s->kind == BUILD_ADD, where, pack);
        if (r < 0)
            return r;
        if (asprintf(&extra, "%s\n%s\n", pack->dir, pack->digest) < 0)
            return cli_error(-ENOMEM, "Out of memory");
    }
    _cleanup_free_ char *args = NULL;
    if (s->kind == BUILD_RUN || s->kind == BUILD_CMD || s->kind == BUILD_ENTRYPOINT)
        args = strdup(s->args); /* the shell substitutes, inside the container */
    else if (build_substitute(s->args, &b->vars, &args) < 0)
        return cli_error(-EINVAL, "%s: bad quotes or ${...} in '%s %s'", where, s->keyword,
                         s->args);
    if (!args || asprintf(&text, "cloche-build/1\n%s\n%s %s\n%s", b->digest, s->keyword, args,
                          extra ? extra : "") < 0)
        return cli_error(-ENOMEM, "Out of memory");
    *ret_text = TAKE_PTR(text);
    return 0;
}

static void print_step(Build *b, size_t i, const BuildStep *s)
{
    if (!b->quiet)
        fprintf(b->log, "Step %zu/%zu : %s %s\n", i + 1, b->n_steps, s->keyword, s->args);
    fflush(b->log);
}

static int step_run(Build *b, size_t i, const BuildStep *s, const char *where)
{
    _cleanup_(context_pack_done) ContextPack pack = {.fd = -EBADF};
    _cleanup_free_ char *key_text = NULL, *name = NULL, *cache_name = NULL, *digest = NULL,
                        *uri = NULL, *created_by = NULL;
    _cleanup_json_ json_object *config = json_object_new_object();
    int r = step_key(b, s, where, &pack, &key_text);
    if (r < 0)
        return r;
    bool metadata = s->kind != BUILD_RUN && s->kind != BUILD_COPY && s->kind != BUILD_ADD &&
                    s->kind != BUILD_WORKDIR;
    /* The config change is worked out even for a cached step: ENV feeds later
     * substitutions, WORKDIR later relative paths. */
    if ((metadata || s->kind == BUILD_WORKDIR) &&
        (r = build_step_config(s, &b->vars, &b->workdir, config, where)) < 0)
        return r;
    char hex[65];
    hex_sha256(key_text, strlen(key_text), hex);
    if (asprintf(&name, CACHE_REPO ":%s", hex) < 0 ||
        asprintf(&cache_name, "cloche/" CACHE_REPO ":%s", hex) < 0 ||
        asprintf(&uri, "cloche:///%s", name) < 0 ||
        asprintf(&created_by, "%s %s", s->keyword, s->args) < 0)
        return cli_error(-ENOMEM, "Out of memory");

    json_object *hit = b->no_cache ? NULL : json_member(b->cache, cache_name);
    bool cached = hit != NULL;
    if (cached) {
        if (!(digest = strdup(json_object_get_string(hit))))
            return cli_error(-ENOMEM, "Out of memory");
    } else {
        _cleanup_(container_destroy) char *handle = NULL;
        if ((r = container_new(b, &handle)) < 0)
            return r;
        if (s->kind == BUILD_RUN) {
            r = run_process(b, handle, s, where);
        } else if (s->kind == BUILD_COPY || s->kind == BUILD_ADD) {
            char label[40];
            snprintf(label, sizeof(label), "step %zu", i + 1);
            r = stream_in(handle, pack.dir, pack.fd, pack.size, label);
        } else if (s->kind == BUILD_WORKDIR) {
            /* An empty tar: StreamIn makes the destination directory. */
            static const char empty[1024];
            _cleanup_close_ int fd = memfd_create("cloche-build-workdir", MFD_CLOEXEC);
            r = fd >= 0 && write(fd, empty, sizeof(empty)) == (ssize_t)sizeof(empty) &&
                        lseek(fd, 0, SEEK_SET) == 0
                    ? stream_in(handle, b->workdir, fd, sizeof(empty), NULL)
                    : cli_error(-errno, "%s: %m", where);
        }
        if (r >= 0)
            r = commit(b, handle, name, config, created_by, !metadata, &digest);
        if (r < 0)
            return r;
    }
    if (cli_json) {
        _cleanup_json_ json_object *o = json_object_new_object();
        json_object_object_add(o, "step", json_object_new_int((int)(i + 1)));
        json_object_object_add(o, "instruction", json_object_new_string(created_by));
        json_object_object_add(o, "cached", json_object_new_boolean(cached));
        json_object_object_add(o, "image", json_object_new_string(name));
        json_object_object_add(o, "digest", json_object_new_string(digest));
        print_json(o);
    } else if (!b->quiet) {
        if (cached)
            printf(" ---> Using cache\n");
        printf(" ---> %.12s\n", strncmp(digest, "sha256:", 7) == 0 ? digest + 7 : digest);
    }
    fflush(stdout);
    return set_image(b, uri, digest);
}

/* The last image under the -t name: a config-only commit with no change keeps
 * its digest and names it. */
static int tag_image(Build *b, char **ret_digest)
{
    _cleanup_(container_destroy) char *handle = NULL;
    int r = container_new(b, &handle);
    if (r < 0)
        return r;
    return commit(b, handle, b->tag, NULL, NULL, false, ret_digest);
}

/* One of build's options into b (*file: the Dockerfile's path). */
static int build_opt(Build *b, int opt, char *arg, const char **file)
{
    switch (opt) {
    case 't':
        b->tag = arg;
        return 0;
    case 'f':
        *file = arg;
        return 0;
    case 'a': {
        char *eq = strchr(arg, '=');
        if (!eq || eq == arg)
            return cli_usage("build", "Invalid --build-arg '%s': expected NAME=VALUE", arg);
        *eq = '\0';
        if (b->given.n == BUILD_ARGS_MAX || build_vars_set(&b->given, arg, eq + 1) < 0)
            return cli_usage("build", "At most %d --build-arg", BUILD_ARGS_MAX);
        return 0;
    }
    case 'n':
        b->no_cache = true;
        return 0;
    case 'q':
        b->quiet = true;
        return 0;
    default:
        return cli_usage("build", "Unknown option");
    }
}

/* The Dockerfile's steps, one after the other. */
static int run_steps(Build *b, const BuildStep *steps, const char *df_name)
{
    int r = 0;
    for (size_t i = 0; i < b->n_steps && r >= 0; i++) {
        const BuildStep *s = &steps[i];
        char where[300];
        snprintf(where, sizeof(where), "%s:%u: %s", df_name, s->line, s->keyword);
        print_step(b, i, s);
        if (s->kind == BUILD_FROM)
            r = step_from(b, s, where);
        else if (s->kind == BUILD_ARG)
            r = step_arg(b, s, where);
        else if (!b->digest)
            r = cli_error(-EINVAL, "%s: before the first FROM", where);
        else
            r = step_run(b, i, s, where);
    }
    return r;
}

/* Read and parse the Dockerfile (file, or DIR/Dockerfile), then run its steps. */
static int build_file(Build *b, const char *file)
{
    _cleanup_free_ char *path = NULL, *text = NULL;
    size_t len = 0;
    if (!file && asprintf(&path, "%s/Dockerfile", b->context) < 0)
        return cli_error(-ENOMEM, "Out of memory");
    const char *df = file ? file : path;
    int r = read_file_at(AT_FDCWD, df, BUILD_FILE_MAX, &text, &len);
    if (r < 0) {
        errno = -r;
        return cli_error(r, "Cannot read '%s': %m", df);
    }
    const char *slash = strrchr(df, '/');
    const char *df_name = slash ? slash + 1 : df;
    BuildStep *steps = NULL;
    if ((r = build_parse(text, len, df_name, &steps, &b->n_steps)) < 0)
        return r;
    r = load_cache(b);
    if (r >= 0)
        r = run_steps(b, steps, df_name);
    build_steps_free(steps, b->n_steps);
    return r;
}

int cmd_build(int argc, char **argv)
{
    static const struct option opts[] = {
        {"tag", required_argument, NULL, 't'},
        {"file", required_argument, NULL, 'f'},
        {"build-arg", required_argument, NULL, 'a'},
        {"no-cache", no_argument, NULL, 'n'},
        {"quiet", no_argument, NULL, 'q'},
        CLI_COMMON_OPTS,
        {},
    };
    _cleanup_(build_done) Build b = {.log = stdout};
    const char *file = NULL;
    int opt, r;
    while ((opt = getopt_long(argc, argv, "t:f:qJh", opts, NULL)) != -1) {
        if ((r = cli_common_opt(opt, "build")) != 0) {
            if (r < 0)
                return r;
            continue;
        }
        if ((r = build_opt(&b, opt, optarg, &file)) < 0)
            return r;
    }
    if (argc - optind != 1)
        return cli_usage("build", "Expected: build -t NAME[:TAG] [-f DOCKERFILE] DIR");
    if (!b.tag)
        return cli_usage("build", "Missing -t NAME[:TAG]: the image to make");
    b.context = argv[optind];
    if (cli_json)
        b.log = stderr;
    if ((r = build_file(&b, file)) < 0)
        return r;
    _cleanup_free_ char *digest = NULL;
    if ((r = tag_image(&b, &digest)) < 0)
        return r;
    if (cli_json) {
        _cleanup_json_ json_object *o = json_object_new_object();
        json_object_object_add(o, "name", json_object_new_string(b.tag));
        json_object_object_add(o, "digest", json_object_new_string(digest));
        print_json(o);
    } else {
        printf("%s: %s\n", b.tag, digest);
    }
    return 0;
}
