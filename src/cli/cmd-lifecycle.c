/* start, restart, logs and events: a stopped container brought back
 * (PUT .../cloche/start, /restart), a service's log lines
 * (GET .../cloche/logs, ndjson) and what happened to containers
 * (GET /cloche/events, ndjson), both followed with -f. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "cloche/duration.h"
#include "cloche/json.h"

#define NDJSON_LINE_MAX (1u << 20)
#define TAIL_MAX 100000000ull

static int start_one(const char *cmd, const char *handle, bool kill)
{
    _cleanup_free_ char *target = NULL;
    _cleanup_json_ json_object *body = NULL;
    int r = check_name("handle", handle);
    if (r < 0)
        return r;
    if (asprintf(&target, "/containers/%s/cloche/%s", handle, cmd) < 0)
        return cli_error(-ENOMEM, "Out of memory");
    if (kill) {
        body = json_object_new_object();
        json_object_object_add(body, "kill", json_object_new_boolean(1));
    }
    if ((r = api_call("PUT", target, body, NULL)) < 0)
        return r;
    if (cli_json)
        printf("{\"handle\":\"%s\"}\n", handle); /* checked: [A-Za-z0-9._-] */
    else
        puts(handle);
    return 0;
}

static int start_or_restart(int argc, char **argv, const char *cmd)
{
    static const struct option opts[] = {
        {"kill", no_argument, NULL, 'k'},
        CLI_COMMON_OPTS,
        {},
    };
    bool kill = false, restart = strcmp(cmd, "restart") == 0;
    int opt, r, failed = 0;
    while ((opt = getopt_long(argc, argv, restart ? "kJh" : "Jh", opts, NULL)) != -1) {
        if ((r = cli_common_opt(opt, cmd)) != 0) {
            if (r < 0)
                return r;
            continue;
        }
        if (opt == 'k' && restart)
            kill = true;
        else
            return cli_usage(cmd, "Unknown option");
    }
    if (optind >= argc)
        return cli_usage(cmd, "Expected: %s HANDLE...", cmd);
    for (int i = optind; i < argc; i++)
        if (start_one(cmd, argv[i], kill) < 0)
            failed = 1;
    return failed ? -EIO : 0;
}

int cmd_start(int argc, char **argv)
{
    return start_or_restart(argc, argv, "start");
}

int cmd_restart(int argc, char **argv)
{
    return start_or_restart(argc, argv, "restart");
}

/* --since: a duration back from now ("10m") or unix seconds. */
static int parse_since(const char *cmd, const char *s, char *out, size_t size)
{
    int64_t ns;
    uint64_t unix_s;
    if (duration_parse_ns(s, &ns) >= 0 && strspn(s, "0123456789") != strlen(s)) {
        int64_t t = (int64_t)time(NULL) - ns / 1000000000;
        snprintf(out, size, "%lld", (long long)(t < 0 ? 0 : t));
        return 0;
    }
    if (parse_u64(s, (uint64_t)INT64_MAX, &unix_s) >= 0) {
        snprintf(out, size, "%llu", (unsigned long long)unix_s);
        return 0;
    }
    return cli_usage(cmd, "Invalid --since '%s': a duration such as 10m or 2h, or unix seconds", s);
}

typedef int (*LineFn)(json_object *line, void *userdata);

/* GET target and hand each ndjson line to fn, until the reply ends. */
static int read_ndjson(const char *target, LineFn fn, void *userdata)
{
    _cleanup_http_conn_ HttpConn c = {.fd = -EBADF};
    int r;
    if ((r = http_connect(&c.fd)) < 0 ||
        (r = http_send_head(c.fd, "GET", target, "Accept: application/x-ndjson\r\n", NULL, 0,
                            false)) < 0 ||
        (r = http_read_head(&c)) < 0)
        return r;
    if (c.status < 200 || c.status > 299)
        return http_report_error(&c);
    _cleanup_free_ char *line = malloc(NDJSON_LINE_MAX + 1);
    size_t len = 0;
    if (!line)
        return cli_error(-ENOMEM, "Out of memory");
    for (;;) {
        char buf[16384];
        ssize_t n = http_read_body(&c, buf, sizeof(buf));
        if (n < 0) {
            errno = (int)-n;
            return cli_error((int)n, "The daemon's stream ended early: %m");
        }
        if (n == 0)
            return 0;
        for (ssize_t k = 0; k < n; k++) {
            if (buf[k] != '\n') {
                if (len >= NDJSON_LINE_MAX)
                    return cli_error(-EBADMSG, "A line from the daemon is over 1 MiB");
                line[len++] = buf[k];
                continue;
            }
            _cleanup_json_ json_object *m = NULL;
            ApiError e = {0};
            if (json_parse_strict(line, len, &m, &e) < 0)
                return cli_error(-EBADMSG, "A line from the daemon is not JSON: %s", e.message);
            len = 0;
            if (cli_json) {
                print_json(m);
                fflush(stdout);
                continue;
            }
            if ((r = fn(m, userdata)) < 0)
                return r;
        }
    }
}

static int print_log_line(json_object *m, void *userdata)
{
    bool timestamps = *(bool *)userdata;
    FILE *f = strcmp(jget_str(m, "stream"), "stderr") == 0 ? stderr : stdout;
    if (timestamps)
        fprintf(f, "%s ", jget_str(m, "time"));
    fprintf(f, "%s\n", jget_str(m, "line"));
    fflush(f);
    return 0;
}

int cmd_logs(int argc, char **argv)
{
    static const struct option opts[] = {
        {"follow", no_argument, NULL, 'f'},
        {"tail", required_argument, NULL, 'n'},
        {"since", required_argument, NULL, 's'},
        {"process", required_argument, NULL, 'p'},
        {"timestamps", no_argument, NULL, 't'},
        CLI_COMMON_OPTS,
        {},
    };
    bool follow = false, timestamps = false;
    const char *process = "service";
    char tail[32] = "", since[32] = "";
    uint64_t n;
    int opt, r;
    while ((opt = getopt_long(argc, argv, "fn:s:p:tJh", opts, NULL)) != -1) {
        if ((r = cli_common_opt(opt, "logs")) != 0) {
            if (r < 0)
                return r;
            continue;
        }
        switch (opt) {
        case 'f':
            follow = true;
            break;
        case 'n':
            if (parse_u64(optarg, TAIL_MAX, &n) < 0)
                return cli_usage("logs", "Invalid --tail '%s': a number of lines", optarg);
            snprintf(tail, sizeof(tail), "%llu", (unsigned long long)n);
            break;
        case 's':
            if ((r = parse_since("logs", optarg, since, sizeof(since))) < 0)
                return r;
            break;
        case 'p':
            process = optarg;
            break;
        case 't':
            timestamps = true;
            break;
        default:
            return cli_usage("logs", "Unknown option");
        }
    }
    if (argc - optind != 1)
        return cli_usage("logs", "Expected: logs [OPTIONS] HANDLE");
    const char *handle = argv[optind];
    if ((r = check_name("handle", handle)) < 0 || (r = check_name("process id", process)) < 0)
        return r;
    _cleanup_free_ char *target = NULL;
    if (asprintf(&target, "/containers/%s/cloche/logs?process=%s%s%s%s%s%s", handle, process,
                 *tail ? "&tail=" : "", tail, *since ? "&since=" : "", since,
                 follow ? "&follow=true" : "") < 0)
        return cli_error(-ENOMEM, "Out of memory");
    return read_ndjson(target, print_log_line, &timestamps);
}

static int print_event(json_object *m, void *userdata)
{
    (void)userdata;
    if (strcmp(jget_str(m, "type"), "dropped") == 0) {
        printf("(%llu events dropped)\n", (unsigned long long)jget_u64(m, "count"));
        fflush(stdout);
        return 0;
    }
    char when[64];
    time_t t = (time_t)jget_u64(m, "time");
    struct tm tm;
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
    printf("%s  %-17s %s", when, jget_str(m, "type"), jget_str(m, "handle"));
    if (*jget_str(m, "process_id"))
        printf("  process=%s", jget_str(m, "process_id"));
    json_object *status = json_member(m, "exit_status");
    if (status)
        printf("  exit=%d", json_object_get_int(status));
    if (*jget_str(m, "message"))
        printf("  %s", jget_str(m, "message"));
    putchar('\n');
    fflush(stdout);
    return 0;
}

int cmd_events(int argc, char **argv)
{
    static const struct option opts[] = {
        {"follow", no_argument, NULL, 'f'},
        {"since", required_argument, NULL, 's'},
        {"handle", required_argument, NULL, 'H'},
        CLI_COMMON_OPTS,
        {},
    };
    bool follow = false;
    const char *handle = NULL;
    char since[32] = "";
    int opt, r;
    while ((opt = getopt_long(argc, argv, "fs:H:Jh", opts, NULL)) != -1) {
        if ((r = cli_common_opt(opt, "events")) != 0) {
            if (r < 0)
                return r;
            continue;
        }
        if (opt == 'f')
            follow = true;
        else if (opt == 's' && (r = parse_since("events", optarg, since, sizeof(since))) < 0)
            return r;
        else if (opt == 'H')
            handle = optarg;
        else if (opt != 's')
            return cli_usage("events", "Unknown option");
    }
    if (optind != argc)
        return cli_usage("events", "Expected: events [-f] [--since WHEN] [--handle HANDLE]");
    if (handle && (r = check_name("handle", handle)) < 0)
        return r;
    _cleanup_free_ char *target = NULL;
    if (asprintf(&target, "/cloche/events?follow=%s%s%s%s%s", follow ? "true" : "false",
                 *since ? "&since=" : "", since, handle ? "&handle=" : "",
                 handle ? handle : "") < 0)
        return cli_error(-ENOMEM, "Out of memory");
    return read_ndjson(target, print_event, NULL);
}
