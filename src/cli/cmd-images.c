/* images and pull: the image store's routes (cloche extensions): GET and
 * DELETE /cloche/images, POST /cloche/images/pull with its ndjson progress. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cloche/json.h"

#define PULL_LINE_MAX (64u << 10)
#define REF_MAX 4096

/* A reference as the daemon takes it. "docker://…" and "oci://…" pass as they
 * are; a docker-style name gets the scheme, its tag after '#': "alpine:3" is
 * docker:///alpine#3 (the default registry), "127.0.0.1:5000/app:v1" is
 * docker://127.0.0.1:5000/app#v1 (a first component with '.' or ':', or
 * "localhost", names the registry, as docker decides). */
char *image_uri(const char *ref)
{
    char *out = NULL;
    if (strstr(ref, "://"))
        return strdup(ref);
    const char *slash = strchr(ref, '/');
    size_t first = slash ? (size_t)(slash - ref) : 0;
    bool host = slash && (memchr(ref, '.', first) || memchr(ref, ':', first) ||
                          (first == 9 && strncmp(ref, "localhost", 9) == 0));
    const char *last_slash = strrchr(ref, '/'), *base = last_slash ? last_slash + 1 : ref;
    const char *colon = strchr(base, ':');
    if (strchr(base, '@'))
        colon = NULL; /* a digest: kept as it is */
    if (asprintf(&out, "docker://%s%.*s%s%s", host ? "" : "/",
                 (int)(colon ? (size_t)(colon - ref) : strlen(ref)), ref, colon ? "#" : "",
                 colon ? colon + 1 : "") < 0)
        return NULL;
    return out;
}

static int images_list(bool quiet)
{
    _cleanup_free_ char *text = NULL;
    _cleanup_json_ json_object *o = NULL;
    int r = api_call_raw("GET", "/cloche/images", NULL, &text, &o);
    if (r < 0)
        return r;
    if (cli_json) {
        print_reply(text);
        return 0;
    }
    json_object *list = json_member(o, "images");
    size_t n =
        list && json_object_is_type(list, json_type_array) ? json_object_array_length(list) : 0;
    _cleanup_table_ Table *t = table_new(5, "NAME", "DIGEST", "SIZE", "LAYERS", "CONTAINERS");
    if (!t)
        return cli_error(-ENOMEM, "Out of memory");
    for (size_t i = 0; i < n; i++) {
        json_object *img = json_object_array_get_idx(list, i);
        if (quiet) {
            puts(jget_str(img, "name"));
            continue;
        }
        const char *digest = jget_str(img, "digest");
        char shortd[20], size[32], layers[24], containers[24];
        snprintf(shortd, sizeof(shortd), "%.12s",
                 strncmp(digest, "sha256:", 7) == 0 ? digest + 7 : digest);
        snprintf(layers, sizeof(layers), "%llu", (unsigned long long)jget_u64(img, "layers"));
        snprintf(containers, sizeof(containers), "%llu",
                 (unsigned long long)jget_u64(img, "containers"));
        if (table_add(t, jget_str(img, "name"), shortd,
                      fmt_bytes(jget_u64(img, "bytes"), size, sizeof(size)), layers,
                      containers) < 0)
            return cli_error(-ENOMEM, "Out of memory");
    }
    if (!quiet)
        table_print(t, stdout);
    return 0;
}

static int images_rm(int argc, char **argv)
{
    int failed = 0;
    if (optind >= argc)
        return cli_usage("images", "Expected: images rm REF...");
    for (int i = optind; i < argc; i++) {
        _cleanup_free_ char *uri = image_uri(argv[i]), *esc = uri ? url_escape(uri) : NULL,
                            *target = NULL;
        if (!esc || asprintf(&target, "/cloche/images?ref=%s", esc) < 0)
            return cli_error(-ENOMEM, "Out of memory");
        if (strlen(argv[i]) > REF_MAX || api_call("DELETE", target, NULL, NULL) < 0) {
            failed = 1;
            continue;
        }
        puts(argv[i]);
    }
    return failed ? -EIO : 0;
}

int cmd_images(int argc, char **argv)
{
    static const struct option opts[] = {
        {"quiet", no_argument, NULL, 'q'},
        CLI_COMMON_OPTS,
        {},
    };
    bool rm = argc > 1 && strcmp(argv[1], "rm") == 0, quiet = false;
    int opt, r;
    if (argc > 1 && (strcmp(argv[1], "import") == 0 || strcmp(argv[1], "export") == 0 ||
                     strcmp(argv[1], "commit") == 0)) {
        optind = 0;
        return images_io_command(argv[1], argc - 1, argv + 1);
    }
    if (rm) {
        argc--;
        argv++;
        optind = 0;
    }
    while ((opt = getopt_long(argc, argv, "qJh", opts, NULL)) != -1) {
        if ((r = cli_common_opt(opt, "images")) != 0) {
            if (r < 0)
                return r;
            continue;
        }
        if (opt != 'q')
            return cli_usage("images", "Unknown option");
        quiet = true;
    }
    if (rm)
        return images_rm(argc, argv);
    if (optind != argc)
        return cli_usage("images", "Expected: images [-q] | images rm REF...");
    return images_list(quiet);
}

/* ---- pull */

int image_pull(const char *uri, const char *user, const char *password, bool echo_json,
               char **ret_digest)
{
    _cleanup_free_ char *target = NULL, *euri = url_escape(uri),
                        *euser = user ? url_escape(user) : NULL,
                        *epass = password ? url_escape(password) : NULL;
    if (!euri || (user && !euser) || (password && !epass) ||
        asprintf(&target, "/cloche/images/pull?ref=%s%s%s%s%s", euri, euser ? "&username=" : "",
                 euser ? euser : "", epass ? "&password=" : "", epass ? epass : "") < 0)
        return cli_error(-ENOMEM, "Out of memory");

    _cleanup_http_conn_ HttpConn c = {.fd = -EBADF};
    int r;
    if ((r = http_connect(&c.fd)) < 0 ||
        (r = http_send_head(c.fd, "POST", target, "Content-Length: 0\r\n", NULL, 0, false)) < 0 ||
        (r = http_read_head(&c)) < 0)
        return r;
    if (c.status < 200 || c.status > 299)
        return http_report_error(&c);

    _cleanup_progress_ Progress *p = progress_new();
    _cleanup_free_ char *line = malloc(PULL_LINE_MAX + 1);
    size_t len = 0;
    if (!line || !p)
        return cli_error(-ENOMEM, "Out of memory");
    for (;;) {
        char buf[4096];
        ssize_t n = http_read_body(&c, buf, sizeof(buf));
        if (n < 0) {
            errno = (int)-n;
            return cli_error((int)n, "The pull's progress from the daemon ended early: %m");
        }
        if (n == 0)
            return cli_error(-EPIPE, "The daemon ended the pull without a result");
        for (ssize_t k = 0; k < n; k++) {
            if (buf[k] != '\n') {
                if (len >= PULL_LINE_MAX)
                    return cli_error(-EBADMSG, "A progress line from the daemon is over 64 KiB");
                line[len++] = buf[k];
                continue;
            }
            _cleanup_json_ json_object *m = NULL;
            ApiError e = {0};
            if (json_parse_strict(line, len, &m, &e) < 0)
                return cli_error(-EBADMSG, "A progress line from the daemon is not JSON: %s",
                                 e.message);
            len = 0;
            if (cli_json && echo_json) {
                print_json(m);
                fflush(stdout);
            }
            json_object *v;
            if ((v = json_member(m, "error")))
                return cli_error(-EIO, "%s", json_object_get_string(v));
            if ((v = json_member(m, "digest"))) {
                *ret_digest = strdup(json_object_get_string(v));
                return *ret_digest ? 0 : cli_error(-ENOMEM, "Out of memory");
            }
            progress_update(p, jget_str(m, "layer"), jget_u64(m, "done"), jget_u64(m, "total"));
        }
    }
}

int cmd_pull(int argc, char **argv)
{
    static const struct option opts[] = {
        {"username", required_argument, NULL, 'u'},
        {"password-stdin", no_argument, NULL, 'P'},
        CLI_COMMON_OPTS,
        {},
    };
    const char *user = NULL;
    bool password_stdin = false;
    int opt, r;
    while ((opt = getopt_long(argc, argv, "u:PJh", opts, NULL)) != -1) {
        if ((r = cli_common_opt(opt, "pull")) != 0) {
            if (r < 0)
                return r;
            continue;
        }
        if (opt == 'u')
            user = optarg;
        else if (opt == 'P')
            password_stdin = true;
        else
            return cli_usage("pull", "Unknown option");
    }
    if (argc - optind != 1)
        return cli_usage("pull", "Expected: pull [OPTIONS] REF");
    if (password_stdin && !user)
        return cli_usage("pull", "--password-stdin needs --username");
    const char *ref = argv[optind];
    if (strlen(ref) > REF_MAX)
        return cli_usage("pull", "The reference is over %d bytes", REF_MAX);

    _cleanup_free_ char *password = NULL, *uri = image_uri(ref), *digest = NULL;
    if (!uri)
        return cli_error(-ENOMEM, "Out of memory");
    if (password_stdin) {
        size_t cap = 0;
        ssize_t n = getline(&password, &cap, stdin);
        if (n <= 0)
            return cli_error(-EINVAL, "No password on stdin");
        while (n > 0 && (password[n - 1] == '\n' || password[n - 1] == '\r'))
            password[--n] = '\0';
    }
    if ((r = image_pull(uri, user, password, true, &digest)) < 0)
        return r;
    if (!cli_json)
        printf("%s: %s\n", ref, digest);
    return 0;
}
