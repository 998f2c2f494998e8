/* The Garden request types (protocol §3) as typed C structs, their limits, and
 * their JSON codecs (src/wire/). Decoders validate every field; encoders
 * write the wire form (used for replies and by the depot to persist specs). */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cloche/error.h"
#include "cloche/strmap.h"

/* Limits on everything a caller controls. */
#define SPEC_HANDLE_MAX 128        /* bytes; charset [A-Za-z0-9._-], not starting with '.' */
#define SPEC_STRING_MAX 4096       /* any free-form string field (paths, uris, users) */
#define SPEC_ARG_STRING_MAX 131072 /* one arg or env entry: the kernel's MAX_ARG_STRLEN */
#define SPEC_PROPERTY_KEY_MAX 1024
#define SPEC_PROPERTY_VALUE_MAX 65536
#define SPEC_PROPERTIES_MAX 1024             /* keys per container */
#define SPEC_PROPERTIES_BYTES_MAX (1u << 20) /* keys and values together, per container */
#define SPEC_ENV_MAX 1024                    /* entries */
#define SPEC_ARGS_MAX 4096
#define SPEC_BIND_MOUNTS_MAX 256
#define SPEC_NETOUT_RULES_MAX 4096 /* per request */
#define SPEC_NETOUT_RANGES_MAX 256 /* networks or ports per rule */
#define SPEC_NETIN_MAX 256

typedef struct ImageRef {
    char *uri;
    char *username;
    char *password;
} ImageRef;

typedef enum BindMountMode { BIND_MOUNT_RO = 0, BIND_MOUNT_RW = 1 } BindMountMode;
typedef enum BindMountOrigin { BIND_MOUNT_HOST = 0, BIND_MOUNT_CONTAINER = 1 } BindMountOrigin;

typedef struct BindMount {
    char *src_path;
    char *dst_path;
    BindMountMode mode;
    BindMountOrigin origin;
} BindMount;

typedef struct BandwidthLimits {
    uint64_t rate;  /* bytes per second */
    uint64_t burst; /* bytes */
} BandwidthLimits;

typedef struct CpuLimits {
    uint64_t weight;
    uint64_t limit_in_shares; /* deprecated alias of weight */
    /* cloche extension "cloche_millicpus": a hard cap, 1000 = one CPU (cgroup
     * quota/period); 0 = none. Left out of replies when 0. */
    uint64_t millicpus;
} CpuLimits;

typedef enum DiskLimitScope { DISK_SCOPE_TOTAL = 0, DISK_SCOPE_EXCLUSIVE = 1 } DiskLimitScope;

typedef struct DiskLimits {
    uint64_t inode_soft;
    uint64_t inode_hard;
    uint64_t byte_soft;
    uint64_t byte_hard;
    DiskLimitScope scope;
} DiskLimits;

typedef struct MemoryLimits {
    uint64_t limit_in_bytes;
} MemoryLimits;

typedef struct PidLimits {
    uint64_t max;
} PidLimits;

typedef struct Limits {
    BandwidthLimits bandwidth; /* "bandwidth_limits" */
    CpuLimits cpu;             /* "cpu_limits" */
    DiskLimits disk;           /* "disk_limits" */
    MemoryLimits memory;       /* "memory_limits" */
    PidLimits pid;             /* "pid_limits" */
} Limits;

typedef enum NetProtocol {
    NET_PROTOCOL_ALL = 0,
    NET_PROTOCOL_TCP = 1,
    NET_PROTOCOL_UDP = 2,
    NET_PROTOCOL_ICMP = 3,
    NET_PROTOCOL_ICMPV6 = 4,
} NetProtocol;

typedef struct IpRange {
    char *start; /* textual IPv4 or IPv6 address, validated with inet_pton */
    char *end;   /* same family as start */
} IpRange;

typedef struct PortRange {
    uint16_t start;
    uint16_t end;
} PortRange;

typedef struct IcmpControl {
    uint8_t type;
    uint8_t code;
    bool has_code; /* "code" absent = any code */
} IcmpControl;

typedef struct NetOutRule {
    NetProtocol protocol;
    IpRange *networks;
    size_t n_networks;
    PortRange *ports;
    size_t n_ports;
    IcmpControl icmps;
    bool has_icmps;
    bool log;
} NetOutRule;

typedef enum NetInProtocol {
    NETIN_TCP = 0, /* Garden's only kind */
    NETIN_UDP = 1,
    NETIN_TCP_UDP = 2,
} NetInProtocol;

typedef struct NetInSpec {
    uint32_t host_port;      /* 0 = from the port pool */
    uint32_t container_port; /* 0 = same as host_port */
    /* cloche extension "cloche_protocol": "tcp" (default), "udp" or "tcp+udp";
     * written back only when not tcp, so Garden bodies stay as they were. */
    NetInProtocol protocol;
} NetInSpec;

/* "tcp", "udp", "tcp+udp" */
const char *netin_protocol_to_string(NetInProtocol p);

/* cloche extension "cloche_service" (doc/api.md): the container's supervised
 * main process, run by its monitor under the process id "service". */
typedef enum ServiceRestart {
    SERVICE_RESTART_NO = 0,
    SERVICE_RESTART_ON_FAILURE = 1, /* the default */
    SERVICE_RESTART_ALWAYS = 2,
    SERVICE_RESTART_UNLESS_STOPPED = 3,
} ServiceRestart;

#define SERVICE_MAX_RESTARTS_MAX 1000000u
#define SERVICE_BACKOFF_MIN_MS 10u
#define SERVICE_BACKOFF_MAX_MS 3600000u /* one hour */
#define SERVICE_RESET_MAX_MS 86400000u  /* one day */
#define SERVICE_LOG_SIZE_MIN 4096u
#define SERVICE_LOG_SIZE_MAX (1u << 30)
#define SERVICE_LOG_FILES_MAX 100u
#define SERVICE_DEFAULT_BACKOFF_INITIAL_MS 500u
#define SERVICE_DEFAULT_BACKOFF_MAX_MS 60000u
#define SERVICE_DEFAULT_BACKOFF_RESET_MS 10000u
#define SERVICE_DEFAULT_LOG_SIZE (10u << 20)
#define SERVICE_DEFAULT_LOG_FILES 3u

typedef struct ServiceSpec {
    char *path;  /* NULL: the image's Entrypoint and Cmd (filled in at create) */
    char **args; /* NULL-terminated */
    size_t n_args;
    char **env; /* NULL-terminated, added to the container's */
    size_t n_env;
    char *dir;
    char *user;
    ServiceRestart restart;
    uint32_t max_restarts; /* 0 = no limit */
    uint32_t backoff_initial_ms, backoff_max_ms, backoff_reset_ms;
    uint64_t log_max_size;
    uint32_t log_max_files;
} ServiceSpec;

/* "no", "on-failure", "always", "unless-stopped" */
const char *service_restart_to_string(ServiceRestart r);
/* Decode the "cloche_service" object at path (defaults filled in); encode writes
 * every field, so decode(encode(x)) == x. */
int spec_decode_service(json_object *obj, const char *path, ServiceSpec **ret, ApiError *reterr);
json_object *spec_encode_service(const ServiceSpec *s);
void service_spec_free(ServiceSpec *s);

typedef struct ContainerSpec {
    char *handle;          /* NULL or "" = generate */
    int64_t grace_time_ns; /* 0 = server default */
    char *rootfs;          /* deprecated */
    ImageRef image;
    BindMount *bind_mounts;
    size_t n_bind_mounts;
    char *network;
    StringMap properties;
    char **env; /* NULL-terminated, n_env entries, each "K=V" */
    size_t n_env;
    bool privileged;
    Limits limits;
    NetOutRule *netout_rules;
    size_t n_netout_rules;
    NetInSpec *netin;
    size_t n_netin;
    ServiceSpec *service; /* "cloche_service"; NULL = none */
} ContainerSpec;

/* rlimits: 15 optional u64 values, indexed by RlimitKind. */
typedef enum RlimitKind {
    RLIMIT_KIND_AS,
    RLIMIT_KIND_CORE,
    RLIMIT_KIND_CPU,
    RLIMIT_KIND_DATA,
    RLIMIT_KIND_FSIZE,
    RLIMIT_KIND_LOCKS,
    RLIMIT_KIND_MEMLOCK,
    RLIMIT_KIND_MSGQUEUE,
    RLIMIT_KIND_NICE,
    RLIMIT_KIND_NOFILE,
    RLIMIT_KIND_NPROC,
    RLIMIT_KIND_RSS,
    RLIMIT_KIND_RTPRIO,
    RLIMIT_KIND_SIGPENDING,
    RLIMIT_KIND_STACK,
    _RLIMIT_KIND_MAX,
} RlimitKind;

/* JSON key of each RlimitKind ("as", "core", ...). */
extern const char *const rlimit_kind_names[_RLIMIT_KIND_MAX];

typedef struct ResourceLimits {
    uint64_t value[_RLIMIT_KIND_MAX];
    bool set[_RLIMIT_KIND_MAX];
} ResourceLimits;

typedef struct TtySpec {
    bool present; /* "tty" present, even as {}, requests a PTY */
    bool has_window_size;
    uint16_t columns;
    uint16_t rows;
} TtySpec;

typedef struct ProcessSpec {
    char *id;
    char *path;
    char **args; /* NULL-terminated */
    size_t n_args;
    char **env; /* NULL-terminated */
    size_t n_env;
    char *dir;
    char *user;
    ResourceLimits rlimits;
    bool has_limits; /* "limits" present and non-empty (peas) */
    /* "limits" present at all, even {}: Garden's OverrideContainerLimits, a
     * cgroup of the process's own under the container's. */
    bool override_limits;
    CpuLimits cpu_limits;
    MemoryLimits memory_limits;
    PidLimits pid_limits; /* cloche extension: "limits":{"pid_limits":{"max":N}} */
    TtySpec tty;
    ImageRef image;
    BindMount *bind_mounts;
    size_t n_bind_mounts;
    bool cloche_log; /* cloche extension: output also to rotated log files */
} ProcessSpec;

/* Handle syntax check: 1..SPEC_HANDLE_MAX bytes of [A-Za-z0-9._-], not starting
 * with '.'. Returns 0 or -EINVAL with a 400 naming the problem. */
int spec_validate_handle(const char *handle, ApiError *reterr);

/* Decoders: obj is the parsed request body. Unknown keys are ignored, keys match
 * case-insensitively, null = absent. Every field is type- and range-checked, enum
 * integers outside their set are refused, list lengths are capped by the SPEC_*
 * limits. On failure: -EINVAL and a 400 naming the field path, *ret zeroed.
 * Decoded strings are NULL when absent or "", lists NULL (count 0) when absent or
 * empty, so that decode(encode(x)) == x. */
int spec_decode_container_spec(json_object *obj, ContainerSpec *ret, ApiError *reterr);
int spec_decode_process_spec(json_object *obj, ProcessSpec *ret, ApiError *reterr);
int spec_decode_netout_rule(json_object *obj, NetOutRule *ret, ApiError *reterr);
/* A JSON array of rules (BulkNetOut). */
int spec_decode_netout_rules(json_object *arr, NetOutRule **ret, size_t *ret_n, ApiError *reterr);
int spec_decode_netin(json_object *obj, NetInSpec *ret, ApiError *reterr);
json_object *spec_encode_netin(const NetInSpec *n);
/* Guardian's garden.network.mapped-ports property: [{"HostPort":N,"ContainerPort":N}]
 * (malloc'd text; NULL on ENOMEM). */
char *spec_encode_mapped_ports(const NetInSpec *in, size_t n);
/* The same, for an element at `path` of a larger document (error messages name it). */
int spec_decode_netin_at(json_object *obj, const char *path, NetInSpec *ret, ApiError *reterr);
int spec_decode_limits(json_object *obj, Limits *ret, ApiError *reterr);
int spec_decode_memory_limits(json_object *obj, MemoryLimits *ret, ApiError *reterr);
int spec_decode_cpu_limits(json_object *obj, CpuLimits *ret, ApiError *reterr);
int spec_decode_disk_limits(json_object *obj, DiskLimits *ret, ApiError *reterr);
int spec_decode_bandwidth_limits(json_object *obj, BandwidthLimits *ret, ApiError *reterr);
int spec_decode_pid_limits(json_object *obj, PidLimits *ret, ApiError *reterr);

/* Encoders: the wire form with omitempty as Garden's Go types have it. Return a
 * new json_object or NULL on ENOMEM. */
json_object *spec_encode_container_spec(const ContainerSpec *spec);
json_object *spec_encode_netout_rule(const NetOutRule *rule);
json_object *spec_encode_memory_limits(const MemoryLimits *l);
json_object *spec_encode_cpu_limits(const CpuLimits *l);
json_object *spec_encode_disk_limits(const DiskLimits *l);
json_object *spec_encode_bandwidth_limits(const BandwidthLimits *l);
json_object *spec_encode_pid_limits(const PidLimits *l);

/* A container's state as Garden's Info and cloche's records spell it. */
typedef enum ContainerState {
    CONTAINER_STATE_CREATING = 0,
    CONTAINER_STATE_ACTIVE,
    CONTAINER_STATE_STOPPED,
    CONTAINER_STATE_DESTROYING,
} ContainerState;

/* "creating", "active", "stopped", "destroying" */
const char *container_state_to_string(ContainerState s);
int container_state_from_string(const char *s, ContainerState *ret);

/* Free the contents (not the struct itself) and zero it. NULL-safe. */
void container_spec_done(ContainerSpec *spec);
void process_spec_done(ProcessSpec *spec);
void netout_rule_done(NetOutRule *rule);
void netout_rules_free(NetOutRule *rules, size_t n);
