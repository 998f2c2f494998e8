/* Commands on a container's resources: limits, metrics, net-in, net-out, props. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "cloche/duration.h"
#include "cloche/json.h"

static const char *const limit_kinds[] = {"memory", "cpu", "pids", "disk", "bandwidth"};
/* The key each kind has in ContainerSpec.limits (what limit_opt() fills). */
static const char *const limit_keys[] = {"memory_limits", "cpu_limits", "pid_limits", "disk_limits",
                                         "bandwidth_limits"};

static void print_limit(const char *kind, json_object *o)
{
    char a[32], b[32];
    if (strcmp(kind, "memory") == 0) {
        uint64_t v = jget_u64(o, "limit_in_bytes");
        printf("memory:      %s\n", v ? fmt_bytes(v, a, sizeof(a)) : "no limit");
    } else if (strcmp(kind, "cpu") == 0) {
        uint64_t w = jget_u64(o, "weight") ?: jget_u64(o, "limit_in_shares"),
                 m = jget_u64(o, "cloche_millicpus");
        printf("cpu:         ");
        if (m)
            printf("%llu.%02llu CPUs", (unsigned long long)(m / 1000),
                   (unsigned long long)(m % 1000 / 10));
        else
            printf("no cap");
        if (w)
            printf(", weight %llu", (unsigned long long)w);
        putchar('\n');
    } else if (strcmp(kind, "pids") == 0) {
        uint64_t v = jget_u64(o, "max");
        if (v)
            printf("pids:        %llu\n", (unsigned long long)v);
        else
            printf("pids:        no limit\n");
    } else if (strcmp(kind, "disk") == 0) {
        uint64_t v = jget_u64(o, "byte_hard") ?: jget_u64(o, "byte_soft");
        uint64_t i = jget_u64(o, "inode_hard") ?: jget_u64(o, "inode_soft");
        printf("disk:        %s", v ? fmt_bytes(v, a, sizeof(a)) : "no limit");
        if (i)
            printf(", %llu inodes", (unsigned long long)i);
        if (v)
            printf(" (%s)", jget_u64(o, "scope") ? "exclusive" : "total");
        putchar('\n');
    } else {
        uint64_t rate = jget_u64(o, "rate");
        if (rate)
            printf("bandwidth:   %s/s, burst %s\n", fmt_bytes(rate, a, sizeof(a)),
                   fmt_bytes(jget_u64(o, "burst"), b, sizeof(b)));
        else
            printf("bandwidth:   no limit\n");
    }
}

static int limit_index(const char *kind)
{
    for (size_t i = 0; i < ELEMENTSOF(limit_kinds); i++)
        if (strcmp(kind, limit_kinds[i]) == 0)
            return (int)i;
    return -1;
}

static int limits_get(const char *handle, const char *only)
{
    _cleanup_json_ json_object *all = json_object_new_object();
    int r;
    for (size_t i = 0; i < ELEMENTSOF(limit_kinds); i++) {
        if (only && strcmp(only, limit_kinds[i]) != 0)
            continue;
        _cleanup_free_ char *target = NULL;
        _cleanup_json_ json_object *o = NULL;
        if (asprintf(&target, "/containers/%s/limits/%s", handle, limit_kinds[i]) < 0)
            return cli_error(-ENOMEM, "Out of memory");
        if ((r = api_call("GET", target, NULL, &o)) < 0)
            return r;
        if (!cli_json)
            print_limit(limit_kinds[i], o);
        json_object_object_add(all, limit_kinds[i], TAKE_PTR(o));
    }
    if (cli_json)
        print_json(only ? json_member(all, only) : all);
    return 0;
}

static int limits_set(int argc, char **argv)
{
    static const struct option opts[] = {
        {"memory", required_argument, NULL, 'm'},
        {"cpus", required_argument, NULL, 1000},
        {"cpu-weight", required_argument, NULL, 1001},
        {"pids", required_argument, NULL, 1002},
        {"disk", required_argument, NULL, 1003},
        {"bandwidth", required_argument, NULL, 1004},
        CLI_COMMON_OPTS,
        {},
    };
    _cleanup_json_ json_object *limits = json_object_new_object();
    int opt, r;
    while ((opt = getopt_long(argc, argv, "m:Jh", opts, NULL)) != -1) {
        if ((r = cli_common_opt(opt, "limits")) != 0) {
            if (r < 0)
                return r;
            continue;
        }
        if ((r = limit_opt(opt, optarg, "limits", limits)) <= 0)
            return r < 0 ? r : cli_usage("limits", "Unknown option");
    }
    if (argc - optind != 1)
        return cli_usage("limits", "Expected: limits set HANDLE OPTIONS");
    const char *handle = argv[optind];
    if ((r = check_name("handle", handle)) < 0)
        return r;
    if (json_object_object_length(limits) == 0)
        return cli_usage("limits", "Nothing to set: give --memory, --cpus, --cpu-weight, "
                                   "--pids, --disk or --bandwidth");

    _cleanup_json_ json_object *all = json_object_new_object();
    for (size_t i = 0; i < ELEMENTSOF(limit_kinds); i++) {
        json_object *want;
        if (!json_object_object_get_ex(limits, limit_keys[i], &want))
            continue;
        _cleanup_free_ char *target = NULL;
        _cleanup_json_ json_object *cur = NULL, *now = NULL;
        if (asprintf(&target, "/containers/%s/limits/%s", handle, limit_kinds[i]) < 0)
            return cli_error(-ENOMEM, "Out of memory");
        /* A PUT replaces the kind whole: keep what the options leave alone
         * (--cpus keeps the weight, and the reverse). */
        if ((r = api_call("GET", target, NULL, &cur)) < 0)
            return r;
        if (cur && json_object_is_type(cur, json_type_object)) {
            json_object_object_foreach(want, k, v)
                json_object_object_add(cur, k, json_object_get(v));
            if (json_member(want, "weight")) /* the weight replaces the shares */
                json_object_object_del(cur, "limit_in_shares");
        }
        if ((r = api_call("PUT", target, cur ? cur : want, &now)) < 0)
            return r;
        if (!cli_json)
            print_limit(limit_kinds[i], now);
        json_object_object_add(all, limit_kinds[i], TAKE_PTR(now));
    }
    if (cli_json)
        print_json(all);
    return 0;
}

int cmd_limits(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "set") == 0) {
        optind = 0;
        return limits_set(argc - 1, argv + 1);
    }
    int r = parse_common(argc, argv, "limits");
    if (r < 0)
        return r;
    if (argc - optind < 1 || argc - optind > 2)
        return cli_usage("limits", "Expected: limits HANDLE [KIND]");
    if ((r = check_name("handle", argv[optind])) < 0)
        return r;
    const char *kind = argc - optind == 2 ? argv[optind + 1] : NULL;
    if (kind && limit_index(kind) < 0)
        return cli_usage("limits",
                         "Unknown limit kind '%s': expected memory, cpu, pids, disk or "
                         "bandwidth",
                         kind);
    return limits_get(argv[optind], kind);
}

static void print_metrics(json_object *m)
{
    char a[32], b[32], c[64];
    json_object *mem = json_member(m, "MemoryStat"), *cpu = json_member(m, "CPUStat"),
                *disk = json_member(m, "DiskStat"), *net = json_member(m, "NetworkStat"),
                *pids = json_member(m, "PidStat");
    uint64_t limit = jget_u64(mem, "hierarchical_memory_limit");
    printf("Age:        %s\n", fmt_duration_ns(jget_u64(m, "Age"), c, sizeof(c)));
    printf("Memory:     %s", fmt_bytes(jget_u64(mem, "TotalUsageTowardLimit"), a, sizeof(a)));
    if (limit && limit < (1ull << 62))
        printf(" of %s", fmt_bytes(limit, b, sizeof(b)));
    printf(" (rss %s, cache %s)\n", fmt_bytes(jget_u64(mem, "total_rss"), a, sizeof(a)),
           fmt_bytes(jget_u64(mem, "total_cache"), b, sizeof(b)));
    uint64_t usage = jget_u64(cpu, "Usage");
    printf("CPU time:   %llu.%03llu s (user %llu.%03llu s, system %llu.%03llu s)\n",
           (unsigned long long)(usage / 1000000000ull),
           (unsigned long long)(usage / 1000000 % 1000),
           (unsigned long long)(jget_u64(cpu, "User") / 1000000000ull),
           (unsigned long long)(jget_u64(cpu, "User") / 1000000 % 1000),
           (unsigned long long)(jget_u64(cpu, "System") / 1000000000ull),
           (unsigned long long)(jget_u64(cpu, "System") / 1000000 % 1000));
    printf("Disk:       %s written, %llu inodes (with the image: %s)\n",
           fmt_bytes(jget_u64(disk, "ExclusiveBytesUsed"), a, sizeof(a)),
           (unsigned long long)jget_u64(disk, "ExclusiveInodesUsed"),
           fmt_bytes(jget_u64(disk, "TotalBytesUsed"), b, sizeof(b)));
    if (net)
        printf("Network:    received %s, sent %s\n",
               fmt_bytes(jget_u64(net, "RxBytes"), a, sizeof(a)),
               fmt_bytes(jget_u64(net, "TxBytes"), b, sizeof(b)));
    else
        printf("Network:    -\n");
    uint64_t pmax = jget_u64(pids, "Max");
    printf("Processes:  %llu", (unsigned long long)jget_u64(pids, "Current"));
    if (pmax)
        printf(" of %llu", (unsigned long long)pmax);
    putchar('\n');
}

static int print_history(json_object *h)
{
    json_object *samples = json_member(h, "samples");
    size_t n = samples && json_object_is_type(samples, json_type_array)
                   ? json_object_array_length(samples)
                   : 0;
    _cleanup_table_ Table *t = table_new(6, "TIME", "CPU %", "MEMORY", "LIMIT", "RX", "TX");
    if (!t)
        return cli_error(-ENOMEM, "Out of memory");
    for (size_t i = 0; i < n; i++) {
        json_object *s = json_object_array_get_idx(samples, i),
                    *cpu = json_member(s, "cpu_percent");
        char when[64], pct[32], mem[32], lim[32], rx[32], tx[32];
        snprintf(pct, sizeof(pct), "%.1f", cpu ? json_object_get_double(cpu) : 0.0);
        uint64_t l = jget_u64(s, "memory_limit");
        if (table_add(t, fmt_ago((int64_t)jget_u64(s, "time"), when, sizeof(when)), pct,
                      fmt_bytes(jget_u64(s, "memory_used"), mem, sizeof(mem)),
                      l ? fmt_bytes(l, lim, sizeof(lim)) : "-",
                      fmt_bytes(jget_u64(s, "rx_bytes"), rx, sizeof(rx)),
                      fmt_bytes(jget_u64(s, "tx_bytes"), tx, sizeof(tx))) < 0)
            return cli_error(-ENOMEM, "Out of memory");
    }
    table_print(t, stdout);
    return 0;
}

int cmd_metrics(int argc, char **argv)
{
    static const struct option opts[] = {
        {"history", no_argument, NULL, 'H'},
        {"since", required_argument, NULL, 's'},
        CLI_COMMON_OPTS,
        {},
    };
    bool history = false;
    int64_t since = 0;
    int opt, r;
    while ((opt = getopt_long(argc, argv, "Hs:Jh", opts, NULL)) != -1) {
        if ((r = cli_common_opt(opt, "metrics")) != 0) {
            if (r < 0)
                return r;
            continue;
        }
        if (opt == 'H') {
            history = true;
        } else if (opt == 's') {
            int64_t ns;
            if (duration_parse_ns(optarg, &ns) < 0)
                return cli_usage("metrics",
                                 "Invalid --since '%s': expected a duration such as "
                                 "1h, 30m",
                                 optarg);
            since = (int64_t)time(NULL) - ns / 1000000000;
            if (since < 0)
                since = 0;
        } else {
            return cli_usage("metrics", "Unknown option");
        }
    }
    if (since && !history)
        return cli_usage("metrics", "--since needs --history");
    if (argc - optind != 1)
        return cli_usage("metrics", "Expected one HANDLE");
    const char *handle = argv[optind];
    if ((r = check_name("handle", handle)) < 0)
        return r;
    _cleanup_free_ char *target = NULL, *text = NULL;
    _cleanup_json_ json_object *o = NULL;
    if ((history ? asprintf(&target, "/containers/%s/metrics/history?since=%lld", handle,
                            (long long)since)
                 : asprintf(&target, "/containers/%s/metrics", handle)) < 0)
        return cli_error(-ENOMEM, "Out of memory");
    if ((r = api_call_raw("GET", target, NULL, &text, &o)) < 0)
        return r;
    if (cli_json)
        print_reply(text);
    else if (history)
        return print_history(o);
    else
        print_metrics(o);
    return 0;
}

int cmd_net_in(int argc, char **argv)
{
    int r = parse_common(argc, argv, "net-in");
    if (r < 0)
        return r;
    if (argc - optind != 2)
        return cli_usage("net-in", "Expected: net-in HANDLE [HOST:]CONTAINER[/udp|/tcp+udp]");
    const char *handle = argv[optind];
    if ((r = check_name("handle", handle)) < 0)
        return r;
    _cleanup_json_ json_object *body = NULL, *reply = NULL;
    _cleanup_free_ char *target = NULL, *text = NULL;
    if ((r = parse_port_mapping("net-in", argv[optind + 1], &body)) < 0)
        return r;
    if (asprintf(&target, "/containers/%s/net/in", handle) < 0)
        return cli_error(-ENOMEM, "Out of memory");
    if ((r = api_call_raw("POST", target, body, &text, &reply)) < 0)
        return r;
    if (cli_json) {
        print_reply(text);
        return 0;
    }
    const char *proto = jget_str(reply, "cloche_protocol");
    printf("%llu -> %llu/%s\n", (unsigned long long)jget_u64(reply, "host_port"),
           (unsigned long long)jget_u64(reply, "container_port"), *proto ? proto : "tcp");
    return 0;
}

/* "A" or "A-B" into {"start":A,"end":B}. */
static json_object *range_obj(const char *s, bool numeric)
{
    _cleanup_free_ char *copy = strdup(s);
    if (!copy)
        return NULL;
    char *dash = strchr(copy, '-');
    if (dash)
        *dash++ = '\0';
    json_object *o = json_object_new_object();
    if (numeric) {
        uint64_t a, b;
        if (parse_u64(copy, 65535, &a) < 0 || (dash && parse_u64(dash, 65535, &b) < 0)) {
            json_object_put(o);
            return NULL;
        }
        json_object_object_add(o, "start", json_new_u64(a));
        json_object_object_add(o, "end", json_new_u64(dash ? b : a));
    } else {
        json_object_object_add(o, "start", json_object_new_string(copy));
        json_object_object_add(o, "end", json_object_new_string(dash ? dash : copy));
    }
    return o;
}

int cmd_net_out(int argc, char **argv)
{
    static const struct option opts[] = {
        {"protocol", required_argument, NULL, 'p'},
        {"network", required_argument, NULL, 'n'},
        {"port", required_argument, NULL, 'P'},
        {"icmp-type", required_argument, NULL, 't'},
        {"icmp-code", required_argument, NULL, 'c'},
        {"log", no_argument, NULL, 'l'},
        CLI_COMMON_OPTS,
        {},
    };
    static const char *const protos[] = {"all", "tcp", "udp", "icmp"};
    _cleanup_json_ json_object *rule = json_object_new_object();
    json_object *nets = json_object_new_array(), *ports = json_object_new_array();
    json_object_object_add(rule, "networks", nets);
    json_object_object_add(rule, "ports", ports);
    int opt, r;
    uint64_t v;
    while ((opt = getopt_long(argc, argv, "p:n:P:t:c:lJh", opts, NULL)) != -1) {
        if ((r = cli_common_opt(opt, "net-out")) != 0) {
            if (r < 0)
                return r;
            continue;
        }
        json_object *o;
        switch (opt) {
        case 'p': {
            int p = -1;
            for (size_t i = 0; i < ELEMENTSOF(protos); i++)
                if (strcmp(optarg, protos[i]) == 0)
                    p = (int)i;
            if (p < 0)
                return cli_usage("net-out", "Invalid protocol '%s': expected all, tcp, udp or icmp",
                                 optarg);
            json_object_object_add(rule, "protocol", json_object_new_int(p));
            break;
        }
        case 'n':
            if (json_object_array_length(nets) >= 256)
                return cli_usage("net-out", "At most 256 networks per rule");
            json_object_array_add(nets, range_obj(optarg, false));
            break;
        case 'P':
            if (json_object_array_length(ports) >= 256)
                return cli_usage("net-out", "At most 256 port ranges per rule");
            if (!(o = range_obj(optarg, true)))
                return cli_usage("net-out", "Invalid port '%s': expected N or N-M (0 to 65535)",
                                 optarg);
            json_object_array_add(ports, o);
            break;
        case 't':
        case 'c':
            if (parse_u64(optarg, 255, &v) < 0)
                return cli_usage("net-out", "Invalid ICMP %s '%s': expected 0 to 255",
                                 opt == 't' ? "type" : "code", optarg);
            json_object_object_add(obj_child(rule, "icmps"), opt == 't' ? "type" : "code",
                                   json_new_u64(v));
            break;
        case 'l':
            json_object_object_add(rule, "log", json_object_new_boolean(true));
            break;
        default:
            return cli_usage("net-out", "Unknown option");
        }
    }
    if (argc - optind != 1)
        return cli_usage("net-out", "Expected one HANDLE");
    const char *handle = argv[optind];
    if ((r = check_name("handle", handle)) < 0)
        return r;
    if (json_object_array_length(nets) == 0)
        json_object_object_del(rule, "networks");
    if (json_object_array_length(ports) == 0)
        json_object_object_del(rule, "ports");
    _cleanup_free_ char *target = NULL, *text = NULL;
    if (asprintf(&target, "/containers/%s/net/out", handle) < 0)
        return cli_error(-ENOMEM, "Out of memory");
    if ((r = api_call_raw("POST", target, rule, &text, NULL)) < 0)
        return r;
    if (cli_json)
        print_reply(text);
    return 0;
}

int cmd_props(int argc, char **argv)
{
    const char *verb = argc > 1 && (strcmp(argv[1], "get") == 0 || strcmp(argv[1], "set") == 0 ||
                                    strcmp(argv[1], "rm") == 0)
                           ? argv[1]
                           : NULL;
    if (verb) {
        argc--;
        argv++;
        optind = 0;
    }
    int r = parse_common(argc, argv, "props");
    if (r < 0)
        return r;
    int want = !verb ? 1 : strcmp(verb, "set") == 0 ? 3 : 2;
    if (argc - optind != want)
        return cli_usage("props", "Expected: props HANDLE | props get HANDLE KEY | props set "
                                  "HANDLE KEY VALUE | props rm HANDLE KEY");
    const char *handle = argv[optind];
    if ((r = check_name("handle", handle)) < 0)
        return r;
    _cleanup_free_ char *target = NULL, *text = NULL,
                        *key = want > 1 ? url_escape(argv[optind + 1]) : NULL;
    _cleanup_json_ json_object *reply = NULL, *body = NULL;
    if (want > 1 && !key)
        return cli_error(-ENOMEM, "Out of memory");
    if (want > 1 && !*argv[optind + 1])
        return cli_usage("props", "The property name is empty");
    if (asprintf(&target, "/containers/%s/properties%s%s", handle, key ? "/" : "", key ? key : "") <
        0)
        return cli_error(-ENOMEM, "Out of memory");

    if (!verb || strcmp(verb, "get") == 0) {
        if ((r = api_call_raw("GET", target, NULL, &text, &reply)) < 0)
            return r;
        if (cli_json)
            print_reply(text);
        else if (verb)
            puts(jget_str(reply, "value"));
        else if (reply && json_object_is_type(reply, json_type_object)) {
            json_object_object_foreach(reply, k, v) printf("%s=%s\n", k, json_object_get_string(v));
        }
        return 0;
    }
    if (strcmp(verb, "set") == 0) {
        body = json_object_new_object();
        json_object_object_add(body, "value", json_object_new_string(argv[optind + 2]));
    }
    if ((r = api_call_raw(strcmp(verb, "set") == 0 ? "PUT" : "DELETE", target, body, &text, NULL)) <
        0)
        return r;
    if (cli_json)
        print_reply(text);
    return 0;
}
