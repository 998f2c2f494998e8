/* Limits (bandwidth, cpu, disk, memory, pid) and process rlimits: flat objects of
 * u64 fields, decoded and encoded through one field table per type. */
#include <errno.h>
#include <string.h>

#include "cloche/cleanup.h"
#include "cloche/json.h"
#include "cloche/wire.h"
#include "spec-internal.h"

const char *const rlimit_kind_names[_RLIMIT_KIND_MAX] = {
    [RLIMIT_KIND_AS] = "as",           [RLIMIT_KIND_CORE] = "core",
    [RLIMIT_KIND_CPU] = "cpu",         [RLIMIT_KIND_DATA] = "data",
    [RLIMIT_KIND_FSIZE] = "fsize",     [RLIMIT_KIND_LOCKS] = "locks",
    [RLIMIT_KIND_MEMLOCK] = "memlock", [RLIMIT_KIND_MSGQUEUE] = "msgqueue",
    [RLIMIT_KIND_NICE] = "nice",       [RLIMIT_KIND_NOFILE] = "nofile",
    [RLIMIT_KIND_NPROC] = "nproc",     [RLIMIT_KIND_RSS] = "rss",
    [RLIMIT_KIND_RTPRIO] = "rtprio",   [RLIMIT_KIND_SIGPENDING] = "sigpending",
    [RLIMIT_KIND_STACK] = "stack",
};

typedef struct U64Field {
    const char *key;
    size_t offset;
} U64Field;

#define FIELD(type, key, member)                                                                   \
    {                                                                                              \
        key, offsetof(type, member)                                                                \
    }

static const U64Field bandwidth_fields[] = {
    FIELD(BandwidthLimits, "rate", rate),
    FIELD(BandwidthLimits, "burst", burst),
};
static const U64Field cpu_fields[] = {
    FIELD(CpuLimits, "weight", weight),
    FIELD(CpuLimits, "limit_in_shares", limit_in_shares),
    FIELD(CpuLimits, "cloche_millicpus", millicpus),
};
static const U64Field disk_fields[] = {
    FIELD(DiskLimits, "inode_soft", inode_soft),
    FIELD(DiskLimits, "inode_hard", inode_hard),
    FIELD(DiskLimits, "byte_soft", byte_soft),
    FIELD(DiskLimits, "byte_hard", byte_hard),
};
static const U64Field memory_fields[] = {
    FIELD(MemoryLimits, "limit_in_bytes", limit_in_bytes),
};
static const U64Field pid_fields[] = {
    FIELD(PidLimits, "max", max),
};

static const char *const disk_scope_names[] = {
    [DISK_SCOPE_TOTAL] = "total",
    [DISK_SCOPE_EXCLUSIVE] = "exclusive",
};

static int decode_u64_fields(json_object *obj, const char *path, const U64Field *fields,
                             size_t n_fields, void *base, ApiError *reterr)
{
    int r = json_expect_object(obj, path, reterr);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n_fields; i++) {
        r = spec_member_u64(obj, path, fields[i].key, UINT64_MAX,
                            (uint64_t *)((char *)base + fields[i].offset), NULL, reterr);
        if (r < 0)
            return r;
    }
    return 0;
}

static json_object *encode_u64_fields(const U64Field *fields, size_t n_fields, const void *base)
{
    _cleanup_json_ json_object *obj = json_object_new_object();
    if (!obj)
        return NULL;
    for (size_t i = 0; i < n_fields; i++)
        if (spec_add_u64(obj, fields[i].key,
                         *(const uint64_t *)((const char *)base + fields[i].offset)) < 0)
            return NULL;
    return TAKE_PTR(obj);
}

/* Each public decoder fills a local copy so that *ret is zeroed on failure. */
#define DEFINE_U64_CODEC(name, type, fields)                                                       \
    static int decode_##name##_at(json_object *obj, const char *path, type *ret, ApiError *reterr) \
    {                                                                                              \
        type l = {0};                                                                              \
        int r = decode_u64_fields(obj, path, fields, ELEMENTSOF(fields), &l, reterr);              \
        if (r < 0)                                                                                 \
            return r;                                                                              \
        *ret = l;                                                                                  \
        return 0;                                                                                  \
    }                                                                                              \
    int spec_decode_##name(json_object *obj, type *ret, ApiError *reterr)                          \
    {                                                                                              \
        *ret = (type){0};                                                                          \
        return decode_##name##_at(obj, "", ret, reterr);                                           \
    }                                                                                              \
    json_object *spec_encode_##name(const type *l)                                                 \
    {                                                                                              \
        return encode_u64_fields(fields, ELEMENTSOF(fields), l);                                   \
    }

DEFINE_U64_CODEC(bandwidth_limits, BandwidthLimits, bandwidth_fields)
DEFINE_U64_CODEC(cpu_limits, CpuLimits, cpu_fields)
DEFINE_U64_CODEC(memory_limits, MemoryLimits, memory_fields)
DEFINE_U64_CODEC(pid_limits, PidLimits, pid_fields)

int spec_decode_cpu_limits_at(json_object *obj, const char *path, CpuLimits *ret, ApiError *reterr)
{
    return decode_cpu_limits_at(obj, path, ret, reterr);
}

int spec_decode_memory_limits_at(json_object *obj, const char *path, MemoryLimits *ret,
                                 ApiError *reterr)
{
    return decode_memory_limits_at(obj, path, ret, reterr);
}

int spec_decode_pid_limits_at(json_object *obj, const char *path, PidLimits *ret, ApiError *reterr)
{
    return decode_pid_limits_at(obj, path, ret, reterr);
}

/* DiskLimits has one enum beside its u64 fields. */
static int decode_disk_limits_at(json_object *obj, const char *path, DiskLimits *ret,
                                 ApiError *reterr)
{
    DiskLimits l = {0};
    unsigned scope = DISK_SCOPE_TOTAL;
    int r = decode_u64_fields(obj, path, disk_fields, ELEMENTSOF(disk_fields), &l, reterr);
    if (r < 0)
        return r;
    r = spec_member_enum(obj, path, "scope", disk_scope_names, ELEMENTSOF(disk_scope_names), &scope,
                         reterr);
    if (r < 0)
        return r;
    l.scope = (DiskLimitScope)scope;
    *ret = l;
    return 0;
}

int spec_decode_disk_limits(json_object *obj, DiskLimits *ret, ApiError *reterr)
{
    *ret = (DiskLimits){0};
    return decode_disk_limits_at(obj, "", ret, reterr);
}

json_object *spec_encode_disk_limits(const DiskLimits *l)
{
    _cleanup_json_ json_object *obj = encode_u64_fields(disk_fields, ELEMENTSOF(disk_fields), l);
    if (!obj || spec_add_u64(obj, "scope", l->scope) < 0)
        return NULL;
    return TAKE_PTR(obj);
}

/* Runs one member decoder if the member is present; absent leaves *ret zero. */
#define DECODE_MEMBER(obj, path, key, decoder, ret, reterr)                                        \
    ({                                                                                             \
        char _p[SPEC_PATH_MAX];                                                                    \
        json_object *_m = json_member(obj, key);                                                   \
        _m ? decoder(_m, spec_path(_p, path, key), ret, reterr) : 0;                               \
    })

int spec_decode_limits_at(json_object *obj, const char *path, Limits *ret, ApiError *reterr)
{
    Limits l = {0};
    int r = json_expect_object(obj, path, reterr);
    if (r < 0)
        return r;
    if ((r = DECODE_MEMBER(obj, path, "bandwidth_limits", decode_bandwidth_limits_at, &l.bandwidth,
                           reterr)) < 0 ||
        (r = DECODE_MEMBER(obj, path, "cpu_limits", decode_cpu_limits_at, &l.cpu, reterr)) < 0 ||
        (r = DECODE_MEMBER(obj, path, "disk_limits", decode_disk_limits_at, &l.disk, reterr)) < 0 ||
        (r = DECODE_MEMBER(obj, path, "memory_limits", decode_memory_limits_at, &l.memory,
                           reterr)) < 0 ||
        (r = DECODE_MEMBER(obj, path, "pid_limits", decode_pid_limits_at, &l.pid, reterr)) < 0)
        return r;
    *ret = l;
    return 0;
}

int spec_decode_limits(json_object *obj, Limits *ret, ApiError *reterr)
{
    *ret = (Limits){0};
    return spec_decode_limits_at(obj, "", ret, reterr);
}

/* Go never omits a nested struct, so every *_limits object is written, even {}. */
json_object *spec_encode_limits(const Limits *l)
{
    _cleanup_json_ json_object *obj = json_object_new_object();
    if (!obj ||
        spec_add(obj, "bandwidth_limits", spec_encode_bandwidth_limits(&l->bandwidth)) < 0 ||
        spec_add(obj, "cpu_limits", spec_encode_cpu_limits(&l->cpu)) < 0 ||
        spec_add(obj, "disk_limits", spec_encode_disk_limits(&l->disk)) < 0 ||
        spec_add(obj, "memory_limits", spec_encode_memory_limits(&l->memory)) < 0 ||
        spec_add(obj, "pid_limits", spec_encode_pid_limits(&l->pid)) < 0)
        return NULL;
    return TAKE_PTR(obj);
}

int spec_decode_rlimits_at(json_object *obj, const char *path, ResourceLimits *ret,
                           ApiError *reterr)
{
    ResourceLimits l = {0};
    int r = json_expect_object(obj, path, reterr);
    if (r < 0)
        return r;
    /* Go's fields are *uint64: a present 0 is a limit of 0, not "unset". */
    for (size_t k = 0; k < _RLIMIT_KIND_MAX; k++) {
        r = spec_member_u64(obj, path, rlimit_kind_names[k], UINT64_MAX, &l.value[k], &l.set[k],
                            reterr);
        if (r < 0)
            return r;
    }
    *ret = l;
    return 0;
}
