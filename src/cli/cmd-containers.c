/* Commands on containers as a whole: ping, capacity, create, ls, info, stop,
 * destroy. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "cloche/duration.h"
#include "cloche/json.h"

#define CREATE_LIST_MAX 1024 /* --env, --bind, --property, --publish each */
#define BULK_QUERY_MAX 4096  /* bytes of handles per bulk request */

/* A command whose options are only the common ones. */
int parse_common(int argc, char **argv, const char *cmd)
{
    static const struct option opts[] = {CLI_COMMON_OPTS, {}};
    int opt, r;
    while ((opt = getopt_long(argc, argv, "Jh", opts, NULL)) != -1)
        if ((r = cli_common_opt(opt, cmd)) <= 0)
            return r < 0 ? r : -EINVAL;
    return 0;
}

void print_reply(const char *text)
{
    fputs(text, stdout);
    if (!*text || text[strlen(text) - 1] != '\n')
        fputc('\n', stdout);
}

int cmd_ping(int argc, char **argv)
{
    _cleanup_free_ char *text = NULL;
    int r = parse_common(argc, argv, "ping");
    if (r < 0)
        return r;
    if (optind != argc)
        return cli_usage("ping", "No arguments expected");
    if ((r = api_call_raw("GET", "/ping", NULL, &text, NULL)) < 0)
        return r;
    if (cli_json)
        print_reply(text);
    else
        puts("ok");
    return 0;
}

int cmd_capacity(int argc, char **argv)
{
    _cleanup_free_ char *text = NULL;
    _cleanup_json_ json_object *o = NULL;
    char a[32], b[32];
    int r = parse_common(argc, argv, "capacity");
    if (r < 0)
        return r;
    if (optind != argc)
        return cli_usage("capacity", "No arguments expected");
    if ((r = api_call_raw("GET", "/capacity", NULL, &text, &o)) < 0)
        return r;
    if (cli_json) {
        print_reply(text);
        return 0;
    }
    printf("Containers:        %llu of %llu\n",
           (unsigned long long)jget_u64(o, "cloche_containers"),
           (unsigned long long)jget_u64(o, "max_containers"));
    printf("Memory:            %s (%s committed to limits)\n",
           fmt_bytes(jget_u64(o, "memory_in_bytes"), a, sizeof(a)),
           fmt_bytes(jget_u64(o, "cloche_committed_memory_in_bytes"), b, sizeof(b)));
    printf("Disk:              %s (%s committed to limits)\n",
           fmt_bytes(jget_u64(o, "disk_in_bytes"), a, sizeof(a)),
           fmt_bytes(jget_u64(o, "cloche_committed_disk_in_bytes"), b, sizeof(b)));
    printf("Schedulable disk:  %s\n",
           fmt_bytes(jget_u64(o, "schedulable_disk_in_bytes"), a, sizeof(a)));
    return 0;
}

/* "K=V" into obj[K] = V. */
static int add_kv(json_object *obj, const char *cmd, const char *opt, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return cli_usage(cmd, "Invalid %s '%s': expected KEY=VALUE", opt, kv);
    _cleanup_free_ char *k = strndup(kv, (size_t)(eq - kv));
    if (!k)
        return cli_error(-ENOMEM, "Out of memory");
    json_object_object_add(obj, k, json_object_new_string(eq + 1));
    return 0;
}

json_object *obj_child(json_object *parent, const char *key)
{
    json_object *v;
    if (json_object_object_get_ex(parent, key, &v))
        return v;
    v = json_object_new_object();
    json_object_object_add(parent, key, v);
    return v;
}

/* Limit options shared by create and limits set: fill a limits object shaped as
 * ContainerSpec.limits ({memory_limits, cpu_limits, pid_limits, disk_limits,
 * bandwidth_limits}). Returns 1 if opt was one of them. */
int limit_opt(int opt, const char *arg, const char *cmd, json_object *limits)
{
    uint64_t v, v2;
    switch (opt) {
    case 'm':
        if (parse_size(arg, &v) < 0)
            return cli_usage(cmd, "Invalid memory size '%s': expected e.g. 512m, 1g", arg);
        json_object_object_add(obj_child(limits, "memory_limits"), "limit_in_bytes",
                               json_new_u64(v));
        return 1;
    case 1000: /* --cpus */
        if (parse_cpus(arg, &v) < 0)
            return cli_usage(cmd, "Invalid CPU count '%s': expected e.g. 0.5, 2 (at most 1024)",
                             arg);
        json_object_object_add(obj_child(limits, "cpu_limits"), "cloche_millicpus",
                               json_new_u64(v));
        return 1;
    case 1001: /* --cpu-weight */
        if (parse_u64(arg, UINT32_MAX, &v) < 0)
            return cli_usage(cmd, "Invalid CPU weight '%s': expected an integer", arg);
        json_object_object_add(obj_child(limits, "cpu_limits"), "weight", json_new_u64(v));
        return 1;
    case 1002: /* --pids */
        if (parse_u64(arg, UINT32_MAX, &v) < 0)
            return cli_usage(cmd, "Invalid process limit '%s': expected an integer", arg);
        json_object_object_add(obj_child(limits, "pid_limits"), "max", json_new_u64(v));
        return 1;
    case 1003: /* --disk */
        if (parse_size(arg, &v) < 0)
            return cli_usage(cmd, "Invalid disk size '%s': expected e.g. 1g", arg);
        json_object_object_add(obj_child(limits, "disk_limits"), "byte_hard", json_new_u64(v));
        return 1;
    case 1004: { /* --bandwidth RATE:BURST */
        const char *colon = strchr(arg, ':');
        _cleanup_free_ char *rate = colon ? strndup(arg, (size_t)(colon - arg)) : NULL;
        if (!colon || parse_size(rate, &v) < 0 || parse_size(colon + 1, &v2) < 0)
            return cli_usage(cmd, "Invalid bandwidth '%s': expected RATE:BURST, e.g. 1m:64k", arg);
        json_object *b = obj_child(limits, "bandwidth_limits");
        json_object_object_add(b, "rate", json_new_u64(v));
        json_object_object_add(b, "burst", json_new_u64(v2));
        return 1;
    }
    default:
        return 0;
    }
}

/* "[HOST:]CONTAINER[/proto]" into a NetIn body. */
int parse_port_mapping(const char *cmd, const char *s, json_object **ret)
{
    _cleanup_free_ char *copy = strdup(s);
    if (!copy)
        return cli_error(-ENOMEM, "Out of memory");
    char *proto = strchr(copy, '/');
    if (proto)
        *proto++ = '\0';
    char *colon = strchr(copy, ':');
    uint64_t host = 0, cont;
    if (colon) {
        *colon = '\0';
        if (parse_u64(copy, 65535, &host) < 0)
            return cli_usage(cmd, "Invalid host port in '%s': expected 0 to 65535", s);
    }
    if (parse_u64(colon ? colon + 1 : copy, 65535, &cont) < 0)
        return cli_usage(cmd, "Invalid port mapping '%s': expected [HOST:]CONTAINER[/udp]", s);
    if (proto && strcmp(proto, "tcp") && strcmp(proto, "udp") && strcmp(proto, "tcp+udp"))
        return cli_usage(cmd, "Invalid protocol in '%s': expected tcp, udp or tcp+udp", s);
    json_object *o = json_object_new_object();
    if (host)
        json_object_object_add(o, "host_port", json_new_u64(host));
    if (cont)
        json_object_object_add(o, "container_port", json_new_u64(cont));
    if (proto && strcmp(proto, "tcp"))
        json_object_object_add(o, "cloche_protocol", json_object_new_string(proto));
    *ret = o;
    return 0;
}

static int add_bind(json_object *arr, const char *s)
{
    _cleanup_free_ char *copy = strdup(s);
    if (!copy)
        return cli_error(-ENOMEM, "Out of memory");
    char *dst = strchr(copy, ':');
    if (!dst || dst == copy || !dst[1])
        return cli_usage("create", "Invalid bind mount '%s': expected SRC:DST[:ro|:rw]", s);
    *dst++ = '\0';
    char *mode = strchr(dst, ':');
    bool ro = false;
    if (mode) {
        *mode++ = '\0';
        if (strcmp(mode, "ro") == 0)
            ro = true;
        else if (strcmp(mode, "rw") != 0)
            return cli_usage("create", "Invalid bind mount mode '%s': expected ro or rw", mode);
    }
    _cleanup_free_ char *abs = realpath(copy, NULL);
    if (!abs)
        return cli_error(-errno, "Cannot bind mount '%s': %m", copy);
    json_object *m = json_object_new_object();
    json_object_object_add(m, "src_path", json_object_new_string(abs));
    json_object_object_add(m, "dst_path", json_object_new_string(dst));
    json_object_object_add(m, "mode", json_object_new_int(ro ? 0 : 1));
    json_object_object_add(m, "origin", json_object_new_int(0));
    json_object_array_add(arr, m);
    return 0;
}

/* The create request being built, and its lists. */
typedef struct CreateRequest {
    json_object *spec, *env, *binds, *props, *netin;
} CreateRequest;

/* --service, --service-cmd, --restart, --max-restarts: 1 when opt was one. */
static int service_opt(json_object *spec, int opt, const char *arg)
{
    switch (opt) {
    case 1006: /* the image's Entrypoint and Cmd, as the daemon fills in for {} */
        obj_child(spec, "cloche_service");
        return 1;
    case 1007: {
        json_object *service = obj_child(spec, "cloche_service"), *args = json_object_new_array();
        json_object_object_add(service, "path", json_object_new_string("/bin/sh"));
        json_object_array_add(args, json_object_new_string("-c"));
        json_object_array_add(args, json_object_new_string(arg));
        json_object_object_add(service, "args", args);
        return 1;
    }
    case 1008:
        if (strcmp(arg, "no") && strcmp(arg, "on-failure") && strcmp(arg, "always") &&
            strcmp(arg, "unless-stopped"))
            return cli_usage(
                "create", "Invalid --restart '%s': no, on-failure, always or unless-stopped", arg);
        json_object_object_add(obj_child(spec, "cloche_service"), "restart",
                               json_object_new_string(arg));
        return 1;
    case 1009: {
        uint64_t n;
        if (parse_u64(arg, 1000000, &n) < 0)
            return cli_usage("create", "Invalid --max-restarts '%s': 0 to 1000000", arg);
        json_object_object_add(obj_child(spec, "cloche_service"), "max_restarts", json_new_u64(n));
        return 1;
    }
    default:
        return 0;
    }
}

static int image_opt(json_object *spec, const char *arg)
{
    /* A path is a raw rootfs; a name such as alpine:3 a docker:// image. */
    _cleanup_free_ char *uri = arg[0] == '/' ? strdup(arg) : image_uri_local(arg);
    if (!uri)
        return cli_error(-ENOMEM, "Out of memory");
    json_object_object_add(obj_child(spec, "image"), "uri", json_object_new_string(uri));
    return 0;
}

static int grace_opt(json_object *spec, const char *arg)
{
    int64_t ns;
    if (duration_parse_ns(arg, &ns) < 0)
        return cli_usage("create",
                         "Invalid --grace '%s': expected a duration such as "
                         "30s, 5m, 2h",
                         arg);
    json_object_object_add(spec, "grace_time", json_object_new_int64(ns));
    return 0;
}

/* One of create's own options into the request. */
static int create_opt(const CreateRequest *c, int opt, const char *arg)
{
    int r = service_opt(c->spec, opt, arg);
    if (r != 0)
        return r < 0 ? r : 0;
    switch (opt) {
    case 'i':
        return image_opt(c->spec, arg);
    case 'e':
        if (!strchr(arg, '='))
            return cli_usage("create", "Invalid --env '%s': expected KEY=VALUE", arg);
        json_object_array_add(c->env, json_object_new_string(arg));
        return 0;
    case 'b':
        return add_bind(c->binds, arg);
    case 'p':
        return add_kv(c->props, "create", "--property", arg);
    case 'n':
        json_object_object_add(c->spec, "network", json_object_new_string(arg));
        return 0;
    case 'g':
        return grace_opt(c->spec, arg);
    case 1005:
        json_object_object_add(c->spec, "privileged", json_object_new_boolean(true));
        return 0;
    case 'P': {
        json_object *m;
        if ((r = parse_port_mapping("create", arg, &m)) < 0)
            return r;
        json_object_array_add(c->netin, m);
        return 0;
    }
    default:
        return cli_usage("create", "Unknown option");
    }
}

int cmd_create(int argc, char **argv)
{
    static const struct option opts[] = {
        {"image", required_argument, NULL, 'i'},
        {"memory", required_argument, NULL, 'm'},
        {"cpus", required_argument, NULL, 1000},
        {"cpu-weight", required_argument, NULL, 1001},
        {"pids", required_argument, NULL, 1002},
        {"disk", required_argument, NULL, 1003},
        {"bandwidth", required_argument, NULL, 1004},
        {"env", required_argument, NULL, 'e'},
        {"bind", required_argument, NULL, 'b'},
        {"property", required_argument, NULL, 'p'},
        {"network", required_argument, NULL, 'n'},
        {"grace", required_argument, NULL, 'g'},
        {"privileged", no_argument, NULL, 1005},
        {"publish", required_argument, NULL, 'P'},
        {"service", no_argument, NULL, 1006},
        {"service-cmd", required_argument, NULL, 1007},
        {"restart", required_argument, NULL, 1008},
        {"max-restarts", required_argument, NULL, 1009},
        CLI_COMMON_OPTS,
        {},
    };
    _cleanup_json_ json_object *spec = json_object_new_object();
    json_object *limits = json_object_new_object();
    CreateRequest c = {.spec = spec,
                       .env = json_object_new_array(),
                       .binds = json_object_new_array(),
                       .props = json_object_new_object(),
                       .netin = json_object_new_array()};
    json_object_object_add(spec, "limits", limits);
    json_object_object_add(spec, "env", c.env);
    json_object_object_add(spec, "bind_mounts", c.binds);
    json_object_object_add(spec, "properties", c.props);
    json_object_object_add(spec, "netin", c.netin);
    size_t n_items = 0;
    int opt, r;

    while ((opt = getopt_long(argc, argv, "i:m:e:b:p:n:g:P:Jh", opts, NULL)) != -1) {
        if ((r = cli_common_opt(opt, "create")) != 0) {
            if (r < 0)
                return r;
            continue;
        }
        if ((r = limit_opt(opt, optarg, "create", limits)) != 0) {
            if (r < 0)
                return r;
            continue;
        }
        if (++n_items > 4 * CREATE_LIST_MAX)
            return cli_usage("create", "Too many options");
        if ((r = create_opt(&c, opt, optarg)) < 0)
            return r;
    }
    if (argc - optind > 1)
        return cli_usage("create", "Too many arguments: expected at most a HANDLE");
    if (optind < argc) {
        if ((r = check_name("handle", argv[optind])) < 0)
            return r;
        json_object_object_add(spec, "handle", json_object_new_string(argv[optind]));
    }

    _cleanup_free_ char *text = NULL;
    _cleanup_json_ json_object *reply = NULL;
    if ((r = api_call_raw("POST", "/containers", spec, &text, &reply)) < 0)
        return r;
    if (cli_json)
        print_reply(text);
    else
        puts(jget_str(reply, "Handle"));
    return 0;
}

static char *ports_text(json_object *info)
{
    json_object *ports = json_member(info, "MappedPorts");
    size_t n =
        ports && json_object_is_type(ports, json_type_array) ? json_object_array_length(ports) : 0;
    char *out = strdup("");
    for (size_t i = 0; out && i < n; i++) {
        json_object *p = json_object_array_get_idx(ports, i);
        char *next;
        if (asprintf(&next, "%s%s%llu->%llu", out, i ? "," : "",
                     (unsigned long long)jget_u64(p, "HostPort"),
                     (unsigned long long)jget_u64(p, "ContainerPort")) < 0)
            next = NULL;
        free(out);
        out = next;
    }
    return out;
}

/* GET /containers/ROUTE?handles=a,b,... for every handle, batched so that no
 * request line nears the daemon's 64 KiB limit; the replies merged into one map. */
static int bulk_fetch(const char *route, json_object *handles, json_object **ret)
{
    _cleanup_json_ json_object *all = json_object_new_object();
    size_t n = json_object_array_length(handles), i = 0;
    int r;
    if (!all)
        return cli_error(-ENOMEM, "Out of memory");
    while (i < n) {
        _cleanup_free_ char *target = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&target, &len);
        if (!f)
            return cli_error(-ENOMEM, "Out of memory");
        fprintf(f, "/containers/%s?handles=", route);
        for (size_t k = 0; i < n && (k == 0 || len < BULK_QUERY_MAX); i++, k++) {
            _cleanup_free_ char *esc =
                url_escape(json_object_get_string(json_object_array_get_idx(handles, i)));
            if (!esc) {
                fclose(f);
                return cli_error(-ENOMEM, "Out of memory");
            }
            fprintf(f, "%s%s", k ? "%2C" : "", esc);
            fflush(f);
        }
        if (fclose(f) != 0)
            return cli_error(-ENOMEM, "Out of memory");
        _cleanup_json_ json_object *part = NULL;
        if ((r = api_call("GET", target, NULL, &part)) < 0)
            return r;
        if (part && json_object_is_type(part, json_type_object)) {
            json_object_object_foreach(part, k, v)
                json_object_object_add(all, k, json_object_get(v));
        }
    }
    *ret = TAKE_PTR(all);
    return 0;
}

/* KEY=VALUE appended to the query string *query ("?k=v&..."). */
static int add_filter(const char *cmd, const char *kv, char **query)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return cli_usage(cmd, "Invalid filter '%s': expected KEY=VALUE", kv);
    _cleanup_free_ char *k0 = strndup(kv, (size_t)(eq - kv));
    _cleanup_free_ char *k = k0 ? url_escape(k0) : NULL, *v = url_escape(eq + 1);
    char *next;
    if (!k || !v || strlen(*query) > 60000 ||
        asprintf(&next, "%s%s%s=%s", *query, **query ? "&" : "?", k, v) < 0)
        return cli_error(-ENOMEM, "Out of memory or too many filters");
    free(*query);
    *query = next;
    return 0;
}

/* One container of the list as a JSON row or a table line. */
static int list_row(const char *h, json_object *entry, json_object *mentry, json_object *out,
                    Table *t)
{
    json_object *info = json_member(entry, "Info"), *m = json_member(mentry, "Metrics");
    bool has_age = m && !json_member(mentry, "Err");
    if (cli_json) {
        json_object *row = json_object_new_object();
        json_object_object_add(row, "handle", json_object_new_string(h));
        json_object_object_add(row, "info", json_object_get(info));
        if (has_age)
            json_object_object_add(row, "age_ns", json_new_u64(jget_u64(m, "Age")));
        json_object_array_add(out, row);
        return 0;
    }
    json_object *pids = json_member(info, "ProcessIDs");
    char nproc[32], created[64] = "";
    snprintf(nproc, sizeof(nproc), "%zu",
             pids && json_object_is_type(pids, json_type_array) ? json_object_array_length(pids)
                                                                : (size_t)0);
    if (has_age)
        fmt_ago((int64_t)time(NULL) - (int64_t)(jget_u64(m, "Age") / 1000000000ull), created,
                sizeof(created));
    _cleanup_free_ char *ports = ports_text(info);
    if (table_add(t, h, jget_str(info, "State"), jget_str(info, "ContainerIP"), ports, nproc,
                  created) < 0)
        return cli_error(-ENOMEM, "Out of memory");
    return 0;
}

/* The listed handles with their BulkInfo and BulkMetrics, in as few requests as
 * the daemon's request-line limit allows. */
static int list_print(json_object *handles, size_t n)
{
    _cleanup_json_ json_object *infos = NULL, *metrics = NULL;
    int r;
    if ((r = bulk_fetch("bulk_info", handles, &infos)) < 0 ||
        (r = bulk_fetch("bulk_metrics", handles, &metrics)) < 0)
        return r;
    _cleanup_json_ json_object *out = json_object_new_array();
    _cleanup_table_ Table *t =
        table_new(6, "HANDLE", "STATE", "ADDRESS", "PORTS", "PROCESSES", "CREATED");
    if (!t || !out)
        return cli_error(-ENOMEM, "Out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *h = json_object_get_string(json_object_array_get_idx(handles, i));
        json_object *entry = NULL, *mentry = NULL;
        json_object_object_get_ex(infos, h, &entry);
        json_object_object_get_ex(metrics, h, &mentry);
        if (!entry || json_member(entry, "Err"))
            continue; /* destroyed since the list */
        if ((r = list_row(h, entry, mentry, out, t)) < 0)
            return r;
    }
    if (cli_json)
        print_json(out);
    else
        table_print(t, stdout);
    return 0;
}

int cmd_list(int argc, char **argv)
{
    static const struct option opts[] = {
        {"filter", required_argument, NULL, 'f'},
        {"all", no_argument, NULL, 'a'},
        {"quiet", no_argument, NULL, 'q'},
        CLI_COMMON_OPTS,
        {},
    };
    _cleanup_free_ char *query = strdup("");
    bool quiet = false;
    int opt, r;
    while ((opt = getopt_long(argc, argv, "f:aqJh", opts, NULL)) != -1) {
        if ((r = cli_common_opt(opt, argv[0])) != 0) {
            if (r < 0)
                return r;
            continue;
        }
        if (opt == 'a' || opt == 'f') {
            if ((r = add_filter(argv[0], opt == 'a' ? "garden.state=all" : optarg, &query)) < 0)
                return r;
        } else if (opt == 'q')
            quiet = true;
        else
            return cli_usage(argv[0], "Unknown option");
    }
    if (optind != argc)
        return cli_usage(argv[0], "No arguments expected");

    _cleanup_free_ char *target = NULL;
    _cleanup_json_ json_object *list = NULL;
    if (asprintf(&target, "/containers%s", query) < 0)
        return cli_error(-ENOMEM, "Out of memory");
    if ((r = api_call("GET", target, NULL, &list)) < 0)
        return r;
    json_object *handles = json_member(list, "Handles");
    size_t n = handles && json_object_is_type(handles, json_type_array)
                   ? json_object_array_length(handles)
                   : 0;
    if (quiet) {
        for (size_t i = 0; i < n; i++)
            puts(json_object_get_string(json_object_array_get_idx(handles, i)));
        return 0;
    }
    if (n == 0) {
        if (cli_json)
            puts("[]");
        else
            puts("HANDLE   STATE   ADDRESS   PORTS   PROCESSES   CREATED");
        return 0;
    }
    return list_print(handles, n);
}

static int print_info(const char *handle, json_object *info)
{
    json_object *props = json_member(info, "Properties"), *pids = json_member(info, "ProcessIDs"),
                *events = json_member(info, "Events");
    _cleanup_free_ char *ports = ports_text(info);
    printf("Handle:        %s\n", handle);
    printf("State:         %s\n", jget_str(info, "State"));
    printf("Address:       %s (gateway %s, external %s)\n", jget_str(info, "ContainerIP"),
           jget_str(info, "HostIP"), jget_str(info, "ExternalIP"));
    printf("Ports:         %s\n", ports && *ports ? ports : "-");
    printf("Path:          %s\n", jget_str(info, "ContainerPath"));
    printf("Processes:    ");
    size_t n =
        pids && json_object_is_type(pids, json_type_array) ? json_object_array_length(pids) : 0;
    for (size_t i = 0; i < n; i++)
        printf(" %s", json_object_get_string(json_object_array_get_idx(pids, i)));
    printf("%s\n", n ? "" : " -");
    printf("Events:       ");
    n = events && json_object_is_type(events, json_type_array) ? json_object_array_length(events)
                                                               : 0;
    for (size_t i = 0; i < n; i++)
        printf(" %s", json_object_get_string(json_object_array_get_idx(events, i)));
    printf("%s\n", n ? "" : " -");
    printf("Properties:\n");
    if (props && json_object_is_type(props, json_type_object)) {
        json_object_object_foreach(props, k, v) printf("  %s=%s\n", k, json_object_get_string(v));
    }
    return 0;
}

int cmd_info(int argc, char **argv)
{
    int r = parse_common(argc, argv, "info"), failed = 0;
    if (r < 0)
        return r;
    if (optind >= argc)
        return cli_usage("info", "Expected at least one HANDLE");
    _cleanup_json_ json_object *all = json_object_new_object();
    for (int i = optind; i < argc; i++) {
        _cleanup_free_ char *target = NULL;
        _cleanup_json_ json_object *info = NULL;
        if (check_name("handle", argv[i]) < 0 ||
            asprintf(&target, "/containers/%s/info", argv[i]) < 0 ||
            api_call("GET", target, NULL, &info) < 0) {
            failed = 1;
            continue;
        }
        if (cli_json) {
            json_object_object_add(all, argv[i], TAKE_PTR(info));
        } else {
            if (i > optind)
                putchar('\n');
            print_info(argv[i], info);
        }
    }
    if (cli_json)
        print_json(argc - optind == 1 ? json_member(all, argv[optind]) : all);
    return failed ? -EIO : 0;
}

/* Apply method to /containers/H<suffix> for each handle; keep going after a
 * failure, fail at the end. */
static int for_each_handle(int argc, char **argv, const char *cmd, const char *method,
                           const char *suffix, json_object *body)
{
    int failed = 0;
    if (optind >= argc)
        return cli_usage(cmd, "Expected at least one HANDLE");
    for (int i = optind; i < argc; i++) {
        _cleanup_free_ char *target = NULL;
        if (check_name("handle", argv[i]) < 0 ||
            asprintf(&target, "/containers/%s%s", argv[i], suffix) < 0 ||
            api_call(method, target, body, NULL) < 0) {
            failed = 1;
            continue;
        }
        if (cli_json)
            printf("{\"handle\":\"%s\"}\n", argv[i]);
        else
            puts(argv[i]);
    }
    return failed ? -EIO : 0;
}

int cmd_stop(int argc, char **argv)
{
    static const struct option opts[] = {{"kill", no_argument, NULL, 'k'}, CLI_COMMON_OPTS, {}};
    bool kill = false;
    int opt, r;
    while ((opt = getopt_long(argc, argv, "kJh", opts, NULL)) != -1) {
        if ((r = cli_common_opt(opt, "stop")) != 0) {
            if (r < 0)
                return r;
            continue;
        }
        if (opt != 'k')
            return cli_usage("stop", "Unknown option");
        kill = true;
    }
    _cleanup_json_ json_object *body = json_object_new_object();
    json_object_object_add(body, "kill", json_object_new_boolean(kill));
    return for_each_handle(argc, argv, "stop", "PUT", "/stop", body);
}

int cmd_destroy(int argc, char **argv)
{
    int r = parse_common(argc, argv, argv[0]);
    if (r < 0)
        return r;
    return for_each_handle(argc, argv, argv[0], "DELETE", "", NULL);
}
