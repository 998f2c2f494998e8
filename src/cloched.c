/* cloched: the cloche daemon. Options, start-up order, signals, shutdown. */
#include <getopt.h>
#include <systemd/sd-daemon.h>
#include <inttypes.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cloche/api.h"
#include "cloche/duration.h"
#include "cloche/fdio.h"
#include "cloche/fileio.h"
#include "cloche/garden-setup.h"
#include "cloche/garden.h"
#include "cloche/conffile.h"
#include "cloche/image.h"
#include "cloche/log.h"
#include "cloche/testhook.h"
#include "cloche/netpool.h"

#define DEFAULT_SOCKET "/run/cloche/cloche.sock"
#define DEFAULT_DEPOT "/var/lib/cloche/depot"
/* Beside the default socket: on a systemd host /run is a tmpfs. */
#define DEFAULT_RUN_DIR "/run/cloche"
#define DEFAULT_ROOTFS "/var/lib/cloche/rootfs/busybox"
#define DEFAULT_POOL "10.254.0.0/22"
#define DEFAULT_MAX_CONTAINERS 4096

typedef struct Options {
    const char *socket_path;
    const char *bind_ip;
    uint16_t bind_port;
    bool bind_port_given;
    const char *auth_token_file;
    bool insecure_no_auth;
    const char *depot;
    const char *run_dir;
    const char *default_rootfs;
    uint64_t max_containers;
    int64_t default_grace_time_ns;
    const char *cgroup_parent;
    bool cgroup_delegated;
    const char *init_binary;
    const char *shim_binary;
    const char *tar_binary;
    uint32_t uid_pool_start;
    uint32_t uid_pool_size;
    bool uid_pool_size_given;
    uint32_t uid_range_size;
    bool uid_map_shared;
    Ipv4Net pool;
    uint32_t port_pool_start;
    uint32_t port_pool_size;
    const char *network_tag;
    uint32_t mtu;
    uint32_t external_ip;
    uint32_t dns[16];
    size_t n_dns;
    Ipv4Net deny[64];
    size_t n_deny;
    bool allow_host_access;
    bool no_new_privileges;
    unsigned metrics_interval;
    char metrics_ip[64]; /* --metrics-bind; "" = none */
    uint16_t metrics_port;
    LogLevel log_level;
    LogFormat log_format;
    uint64_t image_cache_bytes;
    unsigned image_cache_grace;
    const char *registry_mirror;
    const char *insecure_registries[64];
    size_t n_insecure_registries;
    const char *registry_ca;
    unsigned registry_stall_timeout;
} Options;

static ApiServer *the_server;

static void on_stop_signal(int sig)
{
    if (the_server)
        api_server_stop(the_server);
}

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: cloched [OPTIONS]\n"
            "\n"
            "The cloche container server: the Garden HTTP API on a Unix socket and/or TCP.\n"
            "\n"
            "Listeners:\n"
            "  --bind-socket PATH        Unix socket to serve on, mode 0660 ('' = none)\n"
            "                            (default " DEFAULT_SOCKET ")\n"
            "  --bind-ip IP              Also serve TCP on this address\n"
            "  --bind-port PORT          TCP port (default 7777 when --bind-ip is given)\n"
            "  --auth-token-file FILE    Bearer token required on non-loopback TCP\n"
            "  --insecure-no-auth        Serve non-loopback TCP without a token\n"
            "\n"
            "State and containers:\n"
            "  --depot DIR               Container state directory (default " DEFAULT_DEPOT ")\n"
            "  --run-dir DIR             Process table and idle shims, best on a tmpfs\n"
            "                            (default " DEFAULT_RUN_DIR " with the default depot,\n"
            "                            else DEPOT/run)\n"
            "  --default-rootfs DIR      Root filesystem for containers that name none\n"
            "                            (default " DEFAULT_ROOTFS ")\n"
            "  --max-containers N        At most N containers (default %d; capacity also\n"
            "                            counts the subnets in --network-pool)\n"
            "  --default-grace-time DUR  Grace time for containers created without one,\n"
            "                            Go syntax: 30s, 5m, 1h30m; 0 = never (default 0)\n"
            "  --cgroup-parent NAME      Parent cgroup of every container (default cloche)\n"
            "  --cgroup-delegated        Pure cgroup v2 under systemd's Delegate=yes: build\n"
            "                            the tree inside the daemon's own group (the parent\n"
            "                            is then a name below it; the daemon moves to a\n"
            "                            leaf 'daemon')\n"
            "  --init-binary PATH        cloche-init, PID 1 of every container (default:\n"
            "                            next to cloched, else " CLOCHE_LIBEXECDIR ")\n"
            "  --shim-binary PATH        cloche-shim, the monitor of every process (default:\n"
            "                            next to cloched, else " CLOCHE_LIBEXECDIR ")\n"
            "  --tar-binary PATH         cloche-tar, the helper of StreamIn/StreamOut\n"
            "                            (default: next to cloched, else " CLOCHE_LIBEXECDIR ")\n"
            "  --uid-pool-start ID       First host id of the per-container id ranges\n"
            "                            (default 268435456)\n"
            "  --uid-pool-size N         Number of id ranges (default: as many as fit, 61439\n"
            "                            with the default start and range size)\n"
            "  --uid-range-size N        Ids per container (default 65536): container ids\n"
            "                            0..N-1 are usable\n"
            "  --uid-map-mode MODE       'ranges' (default: each container its own range)\n"
            "                            or 'shared' (guardian's map: container root is host\n"
            "                            id 4294967294, every other id is the host's own)\n"
            "\n"
            "Networking:\n"
            "  --network-pool CIDR       IPv4 pool carved into /30s (default " DEFAULT_POOL ")\n"
            "  --port-pool-start N       First host port for NetIn (default 61001)\n"
            "  --port-pool-size N        Number of host ports for NetIn (default 4534)\n"
            "  --mtu N                   MTU of the containers' links (default: that of the\n"
            "                            default route's interface, at most 1500)\n"
            "  --external-ip IP          Address reported as ExternalIP (default: the\n"
            "                            default route interface's)\n"
            "  --dns-server IP           Name server for the containers' resolv.conf, and\n"
            "                            reachable on port 53 (repeatable, at most 16)\n"
            "  --deny-network CIDR       Containers may not reach this network unless a\n"
            "                            NetOut rule allows it (repeatable, at most 64)\n"
            "  --allow-host-access       Containers may reach the host's own services\n"
            "  --no-new-privileges       Set no_new_privs for every process in every\n"
            "                            container (setuid binaries stop working)\n"
            "  --network-tag TAG         Up to 2 of [a-z0-9]: names the links cl<TAG>... and\n"
            "                            the nftables table cloche<TAG> (default none)\n"
            "\n"
            "Images (docker:// and oci:// references; the layer store is DEPOT/images):\n"
            "  --image-cache-bytes N     Evict unused layers, least recently used first,\n"
            "                            past N bytes (default 0 = no limit)\n"
            "  --image-cache-grace SECS  Never evict a layer used this recently (default 60)\n"
            "  --registry-mirror URL     Serve Docker Hub references (docker:///NAME) from\n"
            "                            this mirror\n"
            "  --insecure-registry HOST:PORT  Allow plain HTTP or an unverified certificate\n"
            "                            for this registry (repeatable, at most 64)\n"
            "  --registry-ca FILE        A CA certificate (PEM) trusted beside the system's\n"
            "  --registry-stall-timeout SECS  Fail a registry transfer that receives\n"
            "                            nothing for this long (default 30)\n"
            "\n"
            "Metrics:\n"
            "  --metrics-interval SECS   Period of the metrics history sampler (default 10)\n"
            "  --metrics-bind IP:PORT    Also serve GET /metrics (Prometheus) on this address\n"
            "                            ([IPv6]:PORT); non-loopback needs the token\n"
            "\n"
            "Logging:\n"
            "  --log-level LEVEL         debug, info, warn or error (default info)\n"
            "  --log-format FORMAT       text or json (default text)\n"
            "\n"
            "  --config FILE             Read options from FILE first, one per line\n"
            "                            (\"depot = /path\", \"allow-host-access\"); flags\n"
            "                            given here override single-valued ones\n"
            "  -h, --help                Show this help\n"
            "  --version                 Show the version\n",
            DEFAULT_MAX_CONTAINERS);
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
    if (!s || *s < '0' || *s > '9')
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -ERANGE;
    *ret = v;
    return 0;
}

static int bad_option(const char *opt, const char *value, const char *why)
{
    fprintf(stderr, "cloched: invalid value '%s' for %s: %s\n", value, opt, why);
    return -EINVAL;
}

enum {
    OPT_BIND_SOCKET = 0x100,
    OPT_BIND_IP,
    OPT_BIND_PORT,
    OPT_AUTH_TOKEN_FILE,
    OPT_INSECURE_NO_AUTH,
    OPT_DEPOT,
    OPT_RUN_DIR,
    OPT_DEFAULT_ROOTFS,
    OPT_MAX_CONTAINERS,
    OPT_DEFAULT_GRACE_TIME,
    OPT_CGROUP_PARENT,
    OPT_INIT_BINARY,
    OPT_SHIM_BINARY,
    OPT_TAR_BINARY,
    OPT_UID_POOL_START,
    OPT_UID_POOL_SIZE,
    OPT_UID_RANGE_SIZE,
    OPT_UID_MAP_MODE,
    OPT_NETWORK_POOL,
    OPT_PORT_POOL_START,
    OPT_PORT_POOL_SIZE,
    OPT_MTU,
    OPT_EXTERNAL_IP,
    OPT_DNS_SERVER,
    OPT_DENY_NETWORK,
    OPT_ALLOW_HOST_ACCESS,
    OPT_NO_NEW_PRIVILEGES,
    OPT_NETWORK_TAG,
    OPT_METRICS_INTERVAL,
    OPT_METRICS_BIND,
    OPT_CGROUP_DELEGATED,
    OPT_LOG_LEVEL,
    OPT_LOG_FORMAT,
    OPT_VERSION,
    OPT_CONFIG,
    OPT_IMAGE_CACHE_BYTES,
    OPT_IMAGE_CACHE_GRACE,
    OPT_REGISTRY_MIRROR,
    OPT_INSECURE_REGISTRY,
    OPT_REGISTRY_CA,
    OPT_REGISTRY_STALL_TIMEOUT,
};

static const struct option longopts[] = {
    {"bind-socket", required_argument, NULL, OPT_BIND_SOCKET},
    {"bind-ip", required_argument, NULL, OPT_BIND_IP},
    {"bind-port", required_argument, NULL, OPT_BIND_PORT},
    {"auth-token-file", required_argument, NULL, OPT_AUTH_TOKEN_FILE},
    {"insecure-no-auth", no_argument, NULL, OPT_INSECURE_NO_AUTH},
    {"depot", required_argument, NULL, OPT_DEPOT},
    {"run-dir", required_argument, NULL, OPT_RUN_DIR},
    {"default-rootfs", required_argument, NULL, OPT_DEFAULT_ROOTFS},
    {"max-containers", required_argument, NULL, OPT_MAX_CONTAINERS},
    {"default-grace-time", required_argument, NULL, OPT_DEFAULT_GRACE_TIME},
    {"cgroup-parent", required_argument, NULL, OPT_CGROUP_PARENT},
    {"init-binary", required_argument, NULL, OPT_INIT_BINARY},
    {"shim-binary", required_argument, NULL, OPT_SHIM_BINARY},
    {"tar-binary", required_argument, NULL, OPT_TAR_BINARY},
    {"uid-pool-start", required_argument, NULL, OPT_UID_POOL_START},
    {"uid-pool-size", required_argument, NULL, OPT_UID_POOL_SIZE},
    {"uid-range-size", required_argument, NULL, OPT_UID_RANGE_SIZE},
    {"uid-map-mode", required_argument, NULL, OPT_UID_MAP_MODE},
    {"network-pool", required_argument, NULL, OPT_NETWORK_POOL},
    {"port-pool-start", required_argument, NULL, OPT_PORT_POOL_START},
    {"port-pool-size", required_argument, NULL, OPT_PORT_POOL_SIZE},
    {"mtu", required_argument, NULL, OPT_MTU},
    {"external-ip", required_argument, NULL, OPT_EXTERNAL_IP},
    {"dns-server", required_argument, NULL, OPT_DNS_SERVER},
    {"deny-network", required_argument, NULL, OPT_DENY_NETWORK},
    {"allow-host-access", no_argument, NULL, OPT_ALLOW_HOST_ACCESS},
    {"no-new-privileges", no_argument, NULL, OPT_NO_NEW_PRIVILEGES},
    {"network-tag", required_argument, NULL, OPT_NETWORK_TAG},
    {"metrics-interval", required_argument, NULL, OPT_METRICS_INTERVAL},
    {"metrics-bind", required_argument, NULL, OPT_METRICS_BIND},
    {"cgroup-delegated", no_argument, NULL, OPT_CGROUP_DELEGATED},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"image-cache-bytes", required_argument, NULL, OPT_IMAGE_CACHE_BYTES},
    {"image-cache-grace", required_argument, NULL, OPT_IMAGE_CACHE_GRACE},
    {"registry-mirror", required_argument, NULL, OPT_REGISTRY_MIRROR},
    {"insecure-registry", required_argument, NULL, OPT_INSECURE_REGISTRY},
    {"registry-ca", required_argument, NULL, OPT_REGISTRY_CA},
    {"registry-stall-timeout", required_argument, NULL, OPT_REGISTRY_STALL_TIMEOUT},
    {0},
};

/* --config FILE: its options go ahead of the command line's, so a flag given
 * there wins over the file for single-valued options. *ret_argv is argv itself
 * when there is no --config. The merged list lives as long as the process (the
 * options keep pointers into it). */
static int load_config(int argc, char **argv, int *ret_argc, char ***ret_argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            path = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            path = argv[i] + 9;
    }
    *ret_argc = argc;
    *ret_argv = argv;
    if (!path)
        return 0;
    static const char *known[ELEMENTSOF(longopts)];
    static int takes[ELEMENTSOF(longopts)];
    size_t k = 0;
    for (size_t i = 0; longopts[i].name; i++) {
        /* Not from a file: another file, or a request to print and exit. */
        if (strcmp(longopts[i].name, "config") == 0 || strcmp(longopts[i].name, "help") == 0 ||
            strcmp(longopts[i].name, "version") == 0)
            continue;
        known[k] = longopts[i].name;
        takes[k++] = longopts[i].has_arg == required_argument;
    }
    known[k] = NULL;
    char **args = NULL, err[256] = "";
    size_t n = 0;
    unsigned line = 0;
    int r = conffile_read(path, known, takes, &args, &n, &line, err, sizeof(err));
    if (r < 0) {
        if (line)
            fprintf(stderr, "cloched: %s:%u: %s\n", path, line, err);
        else
            fprintf(stderr, "cloched: cannot read the configuration file %s: %s\n", path, err);
        return r;
    }
    char **merged = calloc((size_t)argc + n + 1, sizeof(char *));
    if (!merged) {
        strv_free(args);
        return -ENOMEM;
    }
    merged[0] = argv[0];
    memcpy(merged + 1, args, n * sizeof(char *));
    memcpy(merged + 1 + n, argv + 1, (size_t)(argc - 1) * sizeof(char *));
    free(args); /* the strings now belong to merged, kept until exit */
    *ret_argc = argc + (int)n;
    *ret_argv = merged;
    return 0;
}

/* 0 = run, 1 = exit successfully (help/version), <0 = usage error. */
/* What the options say together. */
static int options_check(int argc, char **argv, Options *o)
{
    if (optind < argc) {
        fprintf(stderr, "cloched: unexpected argument '%s'\n", argv[optind]);
        return -EINVAL;
    }
    if (o->port_pool_start + o->port_pool_size - 1 > 65535) {
        fprintf(stderr, "cloched: the port pool %u+%u runs past port 65535\n", o->port_pool_start,
                o->port_pool_size);
        return -EINVAL;
    }
    /* Without --uid-pool-size, the pool holds as many ranges as fit (61439 with the
     * defaults, a bitmap of 7.5 KiB), so the network pool, not ids, limits the
     * number of containers. */
    uint64_t fit = ((uint64_t)UINT32_MAX - o->uid_pool_start) / o->uid_range_size;
    if (!o->uid_pool_size_given)
        o->uid_pool_size = (uint32_t)(fit < 65535 ? fit : 65535);
    if (o->uid_pool_size == 0 ||
        (uint64_t)o->uid_pool_start + (uint64_t)o->uid_pool_size * o->uid_range_size > UINT32_MAX) {
        fprintf(stderr, "cloched: the id pool %u+%u*%u runs past the last id\n", o->uid_pool_start,
                o->uid_pool_size, o->uid_range_size);
        return -EINVAL;
    }
    if (o->bind_ip && !o->bind_port_given)
        o->bind_port = 7777;
    if (o->bind_port_given && !o->bind_ip) {
        fprintf(stderr, "cloched: --bind-port needs --bind-ip\n");
        return -EINVAL;
    }
    return 0;
}

/* ---- the options, as a table ---- */

/* Values that need more than a range check: NULL, or what was expected. */
static const char *parse_cgroup_parent(Options *o, const char *arg)
{
    if (!*arg || arg[0] == '/' || strstr(arg, "..") || strchr(arg, '\n'))
        return "expected a relative cgroup path without '..'";
    o->cgroup_parent = arg;
    return NULL;
}

static const char *parse_grace_time(Options *o, const char *arg)
{
    return duration_parse_ns(arg, &o->default_grace_time_ns) < 0
               ? "expected a duration such as 30s, 5m or 0"
               : NULL;
}

static const char *parse_uid_pool_size(Options *o, const char *arg)
{
    uint64_t v;
    if (parse_u64(arg, 1, 65535, &v) < 0)
        return "expected 1..65535";
    o->uid_pool_size = (uint32_t)v;
    o->uid_pool_size_given = true;
    return NULL;
}

static const char *parse_uid_map_mode(Options *o, const char *arg)
{
    if (strcmp(arg, "ranges") != 0 && strcmp(arg, "shared") != 0)
        return "expected 'ranges' or 'shared'";
    o->uid_map_shared = strcmp(arg, "shared") == 0;
    return NULL;
}

static const char *parse_network_pool(Options *o, const char *arg)
{
    return netpool_parse(arg, &o->pool) < 0
               ? "expected an IPv4 network such as 10.254.0.0/22 (prefix 1..30, host bits zero)"
               : NULL;
}

static const char *parse_external_ip(Options *o, const char *arg)
{
    return ipv4_parse(arg, &o->external_ip) < 0 ? "expected an IPv4 address" : NULL;
}

static const char *parse_dns_server(Options *o, const char *arg)
{
    if (o->n_dns >= ELEMENTSOF(o->dns))
        return "at most 16 may be given";
    if (ipv4_parse(arg, &o->dns[o->n_dns]) < 0)
        return "expected an IPv4 address";
    o->n_dns++;
    return NULL;
}

static const char *parse_deny_network(Options *o, const char *arg)
{
    if (o->n_deny >= ELEMENTSOF(o->deny))
        return "at most 64 may be given";
    if (ipv4net_parse(arg, 0, 32, &o->deny[o->n_deny]) < 0)
        return "expected an IPv4 network such as 0.0.0.0/0 or 10.0.0.0/8";
    o->n_deny++;
    return NULL;
}

static const char *parse_network_tag(Options *o, const char *arg)
{
    if (strlen(arg) > 2 || strspn(arg, "abcdefghijklmnopqrstuvwxyz0123456789") != strlen(arg))
        return "expected up to 2 of [a-z0-9]";
    o->network_tag = arg;
    return NULL;
}

static const char *parse_metrics_bind(Options *o, const char *arg)
{
    return api_parse_bind_address(arg, o->metrics_ip, sizeof(o->metrics_ip), &o->metrics_port) < 0
               ? "expected IP:PORT, an IPv6 address in brackets, port 1..65535"
               : NULL;
}

static const char *parse_log_level(Options *o, const char *arg)
{
    return log_level_from_string(arg, &o->log_level) < 0 ? "expected debug, info, warn or error"
                                                         : NULL;
}

static const char *parse_log_format(Options *o, const char *arg)
{
    return log_format_from_string(arg, &o->log_format) < 0 ? "expected text or json" : NULL;
}

static const char *parse_registry_mirror(Options *o, const char *arg)
{
    if (strncmp(arg, "http://", 7) != 0 && strncmp(arg, "https://", 8) != 0)
        return "expected an http(s) URL";
    o->registry_mirror = arg;
    return NULL;
}

static const char *parse_insecure_registry(Options *o, const char *arg)
{
    if (o->n_insecure_registries == ELEMENTSOF(o->insecure_registries))
        return "at most 64 may be given";
    if (!*arg || strchr(arg, '/'))
        return "expected HOST[:PORT]";
    o->insecure_registries[o->n_insecure_registries++] = arg;
    return NULL;
}

static const char *parse_registry_ca(Options *o, const char *arg)
{
    if (access(arg, R_OK) < 0)
        return "not a readable file";
    o->registry_ca = arg;
    return NULL;
}

typedef enum OptionKind {
    OPTION_STRING, /* the argument as it is */
    OPTION_PATH,   /* an absolute path */
    OPTION_FLAG,   /* no argument: true */
    OPTION_NUMBER, /* an unsigned decimal in [min, max], into a field of `size` bytes */
    OPTION_PARSE,  /* parse() stores it, or says what was expected */
} OptionKind;

typedef struct OptionRule {
    int id; /* OPT_* */
    OptionKind kind;
    size_t offset; /* of the field in Options */
    size_t size;
    uint64_t min, max;
    const char *expect; /* OPTION_NUMBER: what a bad value is told */
    const char *(*parse)(Options *o, const char *arg);
} OptionRule;

#define FIELD(f) offsetof(Options, f), sizeof(((Options *)NULL)->f)
#define STRING(id, f)                                                                              \
    {                                                                                              \
        id, OPTION_STRING, FIELD(f), 0, 0, NULL, NULL                                              \
    }
#define PATH(id, f)                                                                                \
    {                                                                                              \
        id, OPTION_PATH, FIELD(f), 0, 0, NULL, NULL                                                \
    }
#define FLAG(id, f)                                                                                \
    {                                                                                              \
        id, OPTION_FLAG, FIELD(f), 0, 0, NULL, NULL                                                \
    }
#define NUMBER(id, f, min, max, expect)                                                            \
    {                                                                                              \
        id, OPTION_NUMBER, FIELD(f), min, max, expect, NULL                                        \
    }
#define PARSE(id, fn)                                                                              \
    {                                                                                              \
        id, OPTION_PARSE, 0, 0, 0, 0, NULL, fn                                                     \
    }

static const OptionRule option_rules[] = {
    STRING(OPT_BIND_SOCKET, socket_path),
    STRING(OPT_BIND_IP, bind_ip),
    NUMBER(OPT_BIND_PORT, bind_port, 1, 65535, "expected a port number 1..65535"),
    STRING(OPT_AUTH_TOKEN_FILE, auth_token_file),
    FLAG(OPT_INSECURE_NO_AUTH, insecure_no_auth),
    PATH(OPT_DEPOT, depot),
    PATH(OPT_RUN_DIR, run_dir),
    PATH(OPT_DEFAULT_ROOTFS, default_rootfs),
    NUMBER(OPT_MAX_CONTAINERS, max_containers, 1, 1000000, "expected 1..1000000"),
    PARSE(OPT_DEFAULT_GRACE_TIME, parse_grace_time),
    PARSE(OPT_CGROUP_PARENT, parse_cgroup_parent),
    STRING(OPT_INIT_BINARY, init_binary),
    STRING(OPT_SHIM_BINARY, shim_binary),
    STRING(OPT_TAR_BINARY, tar_binary),
    NUMBER(OPT_UID_POOL_START, uid_pool_start, 65536, UINT32_MAX, "expected an id >= 65536"),
    PARSE(OPT_UID_POOL_SIZE, parse_uid_pool_size),
    NUMBER(OPT_UID_RANGE_SIZE, uid_range_size, 65536, UINT32_MAX - 65536,
           "expected 65536..4294901759"),
    PARSE(OPT_UID_MAP_MODE, parse_uid_map_mode),
    PARSE(OPT_NETWORK_POOL, parse_network_pool),
    NUMBER(OPT_PORT_POOL_START, port_pool_start, 1, 65535, "expected a port 1..65535"),
    NUMBER(OPT_PORT_POOL_SIZE, port_pool_size, 1, 65535, "expected 1..65535"),
    NUMBER(OPT_MTU, mtu, 576, 65535, "expected 576..65535"),
    PARSE(OPT_EXTERNAL_IP, parse_external_ip),
    PARSE(OPT_DNS_SERVER, parse_dns_server),
    PARSE(OPT_DENY_NETWORK, parse_deny_network),
    FLAG(OPT_ALLOW_HOST_ACCESS, allow_host_access),
    FLAG(OPT_NO_NEW_PRIVILEGES, no_new_privileges),
    PARSE(OPT_NETWORK_TAG, parse_network_tag),
    FLAG(OPT_CGROUP_DELEGATED, cgroup_delegated),
    PARSE(OPT_METRICS_BIND, parse_metrics_bind),
    NUMBER(OPT_METRICS_INTERVAL, metrics_interval, 1, 3600, "expected 1..3600 seconds"),
    PARSE(OPT_LOG_LEVEL, parse_log_level),
    PARSE(OPT_LOG_FORMAT, parse_log_format),
    NUMBER(OPT_IMAGE_CACHE_BYTES, image_cache_bytes, 0, UINT64_MAX, "expected a number of bytes"),
    NUMBER(OPT_IMAGE_CACHE_GRACE, image_cache_grace, 0, 86400, "expected 0..86400 seconds"),
    PARSE(OPT_REGISTRY_MIRROR, parse_registry_mirror),
    PARSE(OPT_INSECURE_REGISTRY, parse_insecure_registry),
    PARSE(OPT_REGISTRY_CA, parse_registry_ca),
    NUMBER(OPT_REGISTRY_STALL_TIMEOUT, registry_stall_timeout, 1, 3600, "expected 1..3600 seconds"),
};

static const char *option_name(int id)
{
    for (size_t i = 0; longopts[i].name; i++)
        if (longopts[i].val == id)
            return longopts[i].name;
    return "?";
}

/* One option by its rule: 0, or -EINVAL with the reason printed. */
static int option_apply(const OptionRule *rule, const char *arg, Options *o)
{
    void *field = (char *)o + rule->offset;
    const char *why = NULL;
    uint64_t v;
    switch (rule->kind) {
    case OPTION_PATH:
        if (arg[0] != '/') {
            why = "expected an absolute path";
            break;
        }
        /* fallthrough */
    case OPTION_STRING:
        *(const char **)field = arg;
        break;
    case OPTION_FLAG:
        *(bool *)field = true;
        break;
    case OPTION_NUMBER:
        if (parse_u64(arg, rule->min, rule->max, &v) < 0) {
            why = rule->expect;
            break;
        }
        if (rule->size == sizeof(uint16_t))
            *(uint16_t *)field = (uint16_t)v;
        else if (rule->size == sizeof(uint32_t))
            *(uint32_t *)field = (uint32_t)v;
        else
            *(uint64_t *)field = v;
        break;
    case OPTION_PARSE:
        why = rule->parse(o, arg);
        break;
    }
    if (!why)
        return 0;
    char name[64];
    snprintf(name, sizeof(name), "--%s", option_name(rule->id));
    return bad_option(name, arg, why);
}

static const OptionRule *option_rule(int id)
{
    for (size_t i = 0; i < ELEMENTSOF(option_rules); i++)
        if (option_rules[i].id == id)
            return &option_rules[i];
    return NULL;
}

static int parse_options(int argc, char **argv, Options *o)
{
    *o = (Options){
        .socket_path = DEFAULT_SOCKET,
        .depot = DEFAULT_DEPOT,
        .default_rootfs = DEFAULT_ROOTFS,
        .max_containers = DEFAULT_MAX_CONTAINERS,
        .cgroup_parent = "cloche",
        .uid_pool_start = 0x10000000u,
        .uid_pool_size = 4096,
        .uid_range_size = 65536,
        .port_pool_start = 61001,
        .port_pool_size = 4534,
        .log_level = LOG_LEVEL_INFO,
        .log_format = LOG_FORMAT_TEXT,
        .image_cache_grace = 60,
        .registry_stall_timeout = 30,
    };
    (void)netpool_parse(DEFAULT_POOL, &o->pool);
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) >= 0) {
        const OptionRule *rule = option_rule(c);
        if (rule) {
            int r = option_apply(rule, optarg, o);
            if (r < 0)
                return r;
            if (c == OPT_BIND_PORT)
                o->bind_port_given = true;
        } else if (c == 'h') {
            usage(stdout);
            return 1;
        } else if (c == OPT_VERSION) {
            printf("cloched %s%s\n", CLOCHE_VERSION, testhook_enabled() ? " (test hooks)" : "");
            return 1;
        } else if (c != OPT_CONFIG) { /* --config is read before parsing (load_config) */
            usage(stderr);
            return -EINVAL;
        }
    }
    return options_check(argc, argv, o);
}

static int read_token(const char *path, char **ret)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return log_error_errno(-errno, "Cannot read the token file %s: %m", path);
    if (st.st_mode & 0004)
        log_warn("The token file %s is readable by everyone", path);
    char *data = NULL;
    size_t len = 0;
    int r = read_file_at(AT_FDCWD, path, 4096, &data, &len);
    if (r < 0)
        return log_error_errno(r, "Cannot read the token file %s: %m", path);
    while (len && (data[len - 1] == '\n' || data[len - 1] == '\r' || data[len - 1] == ' '))
        data[--len] = '\0';
    if (len < 8) {
        free(data);
        log_error("The token in %s is empty or shorter than 8 characters", path);
        return -EINVAL;
    }
    *ret = data;
    return 0;
}

/* A helper binary (cloche-init, cloche-shim, cloche-tar) next to this executable (a build
 * tree or a relocated install), else in the configured libexec directory. */
static char *default_helper_binary(const char *name)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            snprintf(slash + 1, sizeof(self) - (size_t)(slash + 1 - self), "%s", name);
            if (access(self, X_OK) == 0)
                return strdup(self);
        }
    }
    char *path;
    return asprintf(&path, "%s/%s", CLOCHE_LIBEXECDIR, name) < 0 ? NULL : path;
}

/* Socket activation (systemd's cloche.socket, systemd-socket-activate): the
 * handed-over sockets replace --bind-socket and --bind-ip. Their number, or -1. */
static int take_listen_fds(int fds[API_MAX_LISTENERS])
{
    int n_fds = sd_listen_fds(1);
    if (n_fds < 0) {
        log_error_errno(n_fds, "Failed to take the sockets handed over (LISTEN_FDS): %m");
        return -1;
    }
    if (n_fds > API_MAX_LISTENERS) {
        log_error("%d sockets were handed over; at most %d can be served", n_fds,
                  API_MAX_LISTENERS);
        return -1;
    }
    for (int i = 0; i < n_fds; i++)
        fds[i] = SD_LISTEN_FDS_START + i;
    return n_fds;
}

/* The helper binaries, from the options or beside the daemon. */
typedef struct Helpers {
    char *init, *shim, *tar;
    bool have_shim, have_tar;
} Helpers;

static void helpers_done(Helpers *h)
{
    free(h->init);
    free(h->shim);
    free(h->tar);
}

static int find_helpers(const Options *o, Helpers *ret)
{
    ret->init = o->init_binary ? strdup(o->init_binary) : default_helper_binary("cloche-init");
    ret->shim = o->shim_binary ? strdup(o->shim_binary) : default_helper_binary("cloche-shim");
    ret->tar = o->tar_binary ? strdup(o->tar_binary) : default_helper_binary("cloche-tar");
    if (!ret->init || !ret->shim || !ret->tar)
        return -ENOMEM;
    ret->have_shim = access(ret->shim, X_OK) == 0;
    if (!ret->have_shim)
        log_warn("cloche-shim is not executable at %s (%m): processes cannot run", ret->shim);
    ret->have_tar = access(ret->tar, X_OK) == 0;
    if (!ret->have_tar)
        log_warn("cloche-tar is not executable at %s (%m): files cannot be streamed", ret->tar);
    return 0;
}

static int open_image_store(const Options *o, ImageStore **ret)
{
    _cleanup_free_ char *image_dir = NULL;
    if (asprintf(&image_dir, "%s/images", o->depot) < 0)
        return -ENOMEM;
    ImageStoreConfig ic = {
        .dir = image_dir,
        .cache_bytes = o->image_cache_bytes,
        .mirror = o->registry_mirror,
        .insecure = o->insecure_registries,
        .n_insecure = o->n_insecure_registries,
        .ca_file = o->registry_ca,
        .stall_timeout_s = o->registry_stall_timeout,
        .eviction_grace_s = o->image_cache_grace,
    };
    int r = image_store_new(&ic, ret);
    if (r < 0)
        log_error_errno(r, "Failed to open the image store %s: %m", image_dir);
    return r;
}

static int open_garden(const Options *o, const Helpers *h, ImageStore *images, Garden **ret)
{
    GardenConfig gc = {
        .images = images,
        .init_path = h->init,
        .shim_path = h->have_shim ? h->shim : NULL,
        .tar_path = h->have_tar ? h->tar : NULL,
        .uid_pool_base = o->uid_pool_start,
        .uid_pool_count = o->uid_pool_size,
        .uid_range_size = o->uid_range_size,
        .uid_map_shared = o->uid_map_shared,
        .depot_path = o->depot,
        /* Another depot gets its own (DEPOT/run): two daemons never share one. */
        .run_path = o->run_dir                             ? o->run_dir
                    : strcmp(o->depot, DEFAULT_DEPOT) == 0 ? DEFAULT_RUN_DIR
                                                           : NULL,
        .default_rootfs = o->default_rootfs,
        .max_containers = o->max_containers,
        .network_capacity = (uint64_t)1 << (30 - o->pool.prefix),
        .default_grace_time_ns = o->default_grace_time_ns,
        .cgroup_parent = o->cgroup_parent,
        .cgroup_delegated = o->cgroup_delegated,
        .network_pool = o->pool,
        .network_tag = o->network_tag,
        .port_pool_start = o->port_pool_start,
        .port_pool_size = o->port_pool_size,
        .mtu = o->mtu,
        .external_ip = o->external_ip,
        .dns_servers = o->dns,
        .n_dns_servers = o->n_dns,
        .deny_networks = o->deny,
        .n_deny_networks = o->n_deny,
        .allow_host_access = o->allow_host_access,
        .no_new_privileges = o->no_new_privileges,
        .metrics_interval_s = o->metrics_interval,
    };
    int r = garden_new(&gc, ret);
    if (r < 0)
        return log_error_errno(r, "Failed to start with the depot %s: %m", o->depot);
    log_info("Depot %s: %zu container(s) restored", o->depot, garden_count(*ret));
    return 0;
}

/* Serve until a stop signal, then stop taking requests and finish those in
 * flight. Every depot write is atomic, so whatever was interrupted left whole
 * files. */
static int serve(Garden *garden)
{
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    log_info("cloched %s ready", CLOCHE_VERSION);
    /* Type=notify: ready once the depot is loaded and the listeners bound. */
    (void)sd_notifyf(0, "READY=1\nSTATUS=Serving %zu container(s)", garden_count(garden));
    int r = api_server_run(the_server);
    log_info("Shutting down");
    (void)sd_notify(0, "STOPPING=1");
    api_server_free(the_server);
    the_server = NULL;
    return r;
}

/* Before anything reads the limit (fd_high_base). What the daemon starts gets
 * the limit found again (fd_limit_restore). */
static void raise_open_files_limit(void)
{
    struct rlimit found, now;
    int r = fd_limit_raise(&found, &now);
    if (r < 0) {
        log_warn_errno(r, "Failed to raise the open files limit: %m");
        return;
    }
    if (now.rlim_cur != found.rlim_cur)
        log_info("Open files: soft limit raised from %llu to %llu (what cloche starts keeps %llu)",
                 (unsigned long long)found.rlim_cur, (unsigned long long)now.rlim_cur,
                 (unsigned long long)found.rlim_cur);
    if (now.rlim_cur < 65536)
        log_warn("Open files: the limit is %llu; cloche holds about 2 descriptors per container "
                 "and 3 per process (up to a minute after its exit, for a late attach): raise "
                 "the hard limit (LimitNOFILE= in a unit, ulimit -Hn) for more than a few "
                 "hundred containers",
                 (unsigned long long)now.rlim_cur);
}

int main(int argc, char **argv)
{
    Options o;
    int r = load_config(argc, argv, &argc, &argv);
    if (r < 0)
        return 2;
    r = parse_options(argc, argv, &o);
    if (r != 0)
        return r > 0 ? EXIT_SUCCESS : 2;
    log_setup(o.log_level, o.log_format);
    testhook_init();
    raise_open_files_limit();

    _cleanup_free_ char *token = NULL;
    if (o.auth_token_file && read_token(o.auth_token_file, &token) < 0)
        return EXIT_FAILURE;
    int listen_fds[API_MAX_LISTENERS];
    int n_fds = take_listen_fds(listen_fds);
    if (n_fds < 0)
        return EXIT_FAILURE;
    ApiConfig ac = {
        .listen_fds = listen_fds,
        .n_listen_fds = (size_t)n_fds,
        .socket_path = o.socket_path,
        .bind_ip = o.bind_ip,
        .bind_port = o.bind_port,
        .auth_token = token,
        .insecure_no_auth = o.insecure_no_auth,
        .metrics_ip = o.metrics_ip[0] ? o.metrics_ip : NULL,
        .metrics_port = o.metrics_port,
    };
    if (api_config_check(&ac) < 0)
        return EXIT_FAILURE;

    struct sigaction sa = {.sa_handler = SIG_IGN};
    sigaction(SIGPIPE, &sa, NULL);

    _cleanup_(helpers_done) Helpers helpers = {0};
    ImageStore *images = NULL;
    if (find_helpers(&o, &helpers) < 0 || open_image_store(&o, &images) < 0)
        return EXIT_FAILURE;
    Garden *garden = NULL;
    if (open_garden(&o, &helpers, images, &garden) < 0) {
        image_store_free(images);
        return EXIT_FAILURE;
    }
    r = api_server_new(&ac, garden, &the_server);
    if (r >= 0)
        r = serve(garden);
    /* The model after the server, so no request is left in flight. */
    garden_free(garden);
    image_store_free(images);
    return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
