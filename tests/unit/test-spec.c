/* Unit tests for the Garden spec codecs: what the Go client sends decodes to the
 * right structs, every bad-input class is refused with a precise message, and
 * decode(encode(x)) == x. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cloche/json.h"
#include "cloche/wire.h"
#include "tap.h"

/* The body the Go client writes for a ContainerSpec with most fields set. */
static const char go_container_spec[] =
    "{\"handle\":\"h1\",\"grace_time\":42000000000,\"rootfs\":\"\",\"image\":{},"
    "\"bind_mounts\":[{\"src_path\":\"/a\",\"dst_path\":\"/b\",\"mode\":1,\"origin\":1}],"
    "\"network\":\"10.0.0.0/30\",\"properties\":{\"k\":\"v\"},\"env\":[\"A=1\"],"
    "\"privileged\":true,\"limits\":{\"bandwidth_limits\":{},\"cpu_limits\":{\"weight\":512},"
    "\"disk_limits\":{},\"memory_limits\":{\"limit_in_bytes\":67108864},"
    "\"pid_limits\":{\"max\":100}},\"netout_rules\":[{\"protocol\":1,\"networks\":[{\"start\":"
    "\"10.0.0.1\",\"end\":\"10.0.0.9\"}],\"ports\":[{\"start\":80,\"end\":443}],\"log\":true}],"
    "\"netin\":[{\"host_port\":0,\"container_port\":8080}]}\n";

/* The same, as cloche writes it back: only the empty "rootfs" is left out. */
static const char encoded_container_spec[] =
    "{\"handle\":\"h1\",\"grace_time\":42000000000,\"image\":{},"
    "\"bind_mounts\":[{\"src_path\":\"/a\",\"dst_path\":\"/b\",\"mode\":1,\"origin\":1}],"
    "\"network\":\"10.0.0.0/30\",\"properties\":{\"k\":\"v\"},\"env\":[\"A=1\"],"
    "\"privileged\":true,\"limits\":{\"bandwidth_limits\":{},\"cpu_limits\":{\"weight\":512},"
    "\"disk_limits\":{},\"memory_limits\":{\"limit_in_bytes\":67108864},"
    "\"pid_limits\":{\"max\":100}},\"netout_rules\":[{\"protocol\":1,\"networks\":[{\"start\":"
    "\"10.0.0.1\",\"end\":\"10.0.0.9\"}],\"ports\":[{\"start\":80,\"end\":443}],\"log\":true}],"
    "\"netin\":[{\"host_port\":0,\"container_port\":8080}]}\n";

/* Protocol §3.2, captured from the Go client. */
static const char go_process_spec[] =
    "{\"id\":\"my-proc\",\"path\":\"sh\",\"args\":[\"-c\",\"cat; echo err \\u003e\\u00262; exit "
    "3\"],\"env\":[\"X=1\"],\"dir\":\"/tmp\",\"user\":\"root\",\"rlimits\":{\"nofile\":1024},"
    "\"tty\":{\"window_size\":{\"columns\":80,\"rows\":24}},\"image\":{}}\n";

static json_object *parse(const char *s)
{
    json_object *o = NULL;
    ApiError e = {0};
    if (json_parse_strict(s, strlen(s), &o, &e) < 0)
        printf("# parse of '%s' failed: %s\n", s, e.message);
    return o;
}

static char *serialize(json_object *o)
{
    return json_serialize(o, NULL);
}

static int decode_container(const char *body, ContainerSpec *spec, ApiError *e)
{
    _cleanup_json_ json_object *o = parse(body);
    return spec_decode_container_spec(o, spec, e);
}

static void container_fails(const char *body, const char *message)
{
    ContainerSpec spec;
    ApiError e = {0};
    memset(&spec, 0x5a, sizeof(spec));
    is_int(decode_container(body, &spec, &e), -EINVAL, "refused: %.100s", body);
    is_int(e.status, 400, "400: %.100s", body);
    is_str(e.message, message, "message: %.100s", body);
    ok(!spec.handle && !spec.bind_mounts && !spec.n_bind_mounts && !spec.properties.n &&
           !spec.netout_rules && !spec.env,
       "zeroed: %.100s", body);
}

static void process_fails(const char *body, const char *message)
{
    _cleanup_json_ json_object *o = parse(body);
    ProcessSpec spec;
    ApiError e = {0};
    memset(&spec, 0x5a, sizeof(spec));
    is_int(spec_decode_process_spec(o, &spec, &e), -EINVAL, "refused: %.100s", body);
    is_str(e.message, message, "message: %.100s", body);
    ok(!spec.id && !spec.args && !spec.tty.present, "zeroed: %.100s", body);
}

/* Encodes, serialises, re-parses and re-decodes a spec, and checks the second
 * encoding is byte-identical to the first. */
static void container_round_trip(const ContainerSpec *spec, const char *desc)
{
    _cleanup_json_ json_object *o1 = spec_encode_container_spec(spec);
    _cleanup_free_ char *s1 = serialize(o1);
    ContainerSpec back;
    ApiError e = {0};
    is_int(decode_container(s1, &back, &e), 0, "%s: re-decodes", desc);
    _cleanup_json_ json_object *o2 = spec_encode_container_spec(&back);
    _cleanup_free_ char *s2 = serialize(o2);
    is_str(s2, s1, "%s: round trip", desc);
    container_spec_done(&back);
}

static void test_container_spec(void)
{
    ContainerSpec spec;
    ApiError e = {0};

    is_int(decode_container(go_container_spec, &spec, &e), 0, "Go ContainerSpec decodes");
    is_str(spec.handle, "h1", "handle");
    ok(spec.grace_time_ns == INT64_C(42000000000), "grace_time");
    ok(spec.rootfs == NULL, "empty rootfs is NULL");
    ok(!spec.image.uri && !spec.image.username && !spec.image.password, "empty image");
    is_int(spec.n_bind_mounts, 1, "one bind mount");
    is_str(spec.bind_mounts[0].src_path, "/a", "src_path");
    is_str(spec.bind_mounts[0].dst_path, "/b", "dst_path");
    is_int(spec.bind_mounts[0].mode, BIND_MOUNT_RW, "mode RW");
    is_int(spec.bind_mounts[0].origin, BIND_MOUNT_CONTAINER, "origin Container");
    is_str(spec.network, "10.0.0.0/30", "network");
    is_str(strmap_get(&spec.properties, "k"), "v", "property");
    is_int(spec.n_env, 1, "one env entry");
    is_str(spec.env[0], "A=1", "env entry");
    ok(spec.env[1] == NULL, "env NULL-terminated");
    ok(spec.privileged, "privileged");
    is_u64(spec.limits.cpu.weight, 512, "cpu weight");
    is_u64(spec.limits.memory.limit_in_bytes, 67108864, "memory limit");
    is_u64(spec.limits.pid.max, 100, "pid max");
    is_u64(spec.limits.bandwidth.rate, 0, "no bandwidth");
    is_int(spec.n_netout_rules, 1, "one netout rule");
    is_int(spec.netout_rules[0].protocol, NET_PROTOCOL_TCP, "rule protocol");
    is_int(spec.netout_rules[0].n_networks, 1, "rule networks");
    is_str(spec.netout_rules[0].networks[0].start, "10.0.0.1", "network start");
    is_str(spec.netout_rules[0].networks[0].end, "10.0.0.9", "network end");
    is_int(spec.netout_rules[0].n_ports, 1, "rule ports");
    is_int(spec.netout_rules[0].ports[0].start, 80, "port start");
    is_int(spec.netout_rules[0].ports[0].end, 443, "port end");
    ok(spec.netout_rules[0].log, "rule log");
    ok(!spec.netout_rules[0].has_icmps, "no icmps");
    is_int(spec.n_netin, 1, "one netin");
    is_int(spec.netin[0].host_port, 0, "netin host_port 0");
    is_int(spec.netin[0].container_port, 8080, "netin container_port");

    _cleanup_json_ json_object *o = spec_encode_container_spec(&spec);
    _cleanup_free_ char *s = serialize(o);
    is_str(s, encoded_container_spec, "encodes back to the Go wire form");
    container_round_trip(&spec, "Go ContainerSpec");
    container_spec_done(&spec);
    ok(spec.handle == NULL && spec.n_netin == 0, "container_spec_done zeroes");
    container_spec_done(&spec); /* twice is harmless */
    container_spec_done(NULL);

    /* an empty spec still writes the nested structs, like Go */
    is_int(decode_container("{}", &spec, &e), 0, "empty spec decodes");
    _cleanup_json_ json_object *empty = spec_encode_container_spec(&spec);
    _cleanup_free_ char *es = serialize(empty);
    is_str(es,
           "{\"image\":{},\"limits\":{\"bandwidth_limits\":{},\"cpu_limits\":{},"
           "\"disk_limits\":{},\"memory_limits\":{},\"pid_limits\":{}}}\n",
           "empty spec encoding");
    container_round_trip(&spec, "empty spec");
    container_spec_done(&spec);

    /* keys match case-insensitively; null is absent; unknown keys are ignored */
    is_int(decode_container("{\"Handle\":\"h2\",\"GRACE_TIME\":5,\"Image\":{\"URI\":\"docker:///"
                            "busybox\",\"username\":\"u\",\"password\":\"p\"},\"rootfs\":null,"
                            "\"bogus\":[1],\"Limits\":{\"DISK_LIMITS\":{\"byte_hard\":"
                            "18446744073709551615,\"scope\":1}},\"env\":null}",
                            &spec, &e),
           0, "mixed-case spec decodes");
    is_str(spec.handle, "h2", "Handle");
    ok(spec.grace_time_ns == 5, "GRACE_TIME");
    is_str(spec.image.uri, "docker:///busybox", "image URI");
    is_str(spec.image.username, "u", "image username");
    is_str(spec.image.password, "p", "image password");
    is_u64(spec.limits.disk.byte_hard, UINT64_MAX, "u64 max limit exact");
    is_int(spec.limits.disk.scope, DISK_SCOPE_EXCLUSIVE, "disk scope");
    ok(spec.env == NULL && spec.n_env == 0, "null env is absent");
    container_round_trip(&spec, "image and disk limits");
    container_spec_done(&spec);

    /* several of each list, properties sorted on output */
    is_int(
        decode_container("{\"properties\":{\"z\":\"1\",\"a\":\"\",\"m\":\"<&>\"},\"env\":[\"A=\","
                         "\"B=x=y\"],\"bind_mounts\":[{\"src_path\":\"/x\",\"dst_path\":\"/y\"},"
                         "{\"src_path\":\"/p\",\"dst_path\":\"/q\",\"mode\":1}],"
                         "\"netout_rules\":[{},{\"protocol\":3,\"icmps\":{\"type\":8,\"code\":0}},"
                         "{\"networks\":[{\"start\":\"2001:db8::1\"}],\"ports\":[{\"start\":22},"
                         "{\"end\":1023}]}],\"netin\":[{\"host_port\":61001},{}]}",
                         &spec, &e),
        0, "lists decode");
    is_int(spec.properties.n, 3, "three properties");
    is_str(strmap_get(&spec.properties, "a"), "", "empty property value kept");
    is_int(spec.n_env, 2, "two env entries");
    is_int(spec.bind_mounts[0].mode, BIND_MOUNT_RO, "default mode RO");
    is_int(spec.bind_mounts[0].origin, BIND_MOUNT_HOST, "default origin Host");
    is_int(spec.n_netout_rules, 3, "three rules");
    ok(spec.netout_rules[1].has_icmps && spec.netout_rules[1].icmps.has_code &&
           spec.netout_rules[1].icmps.code == 0 && spec.netout_rules[1].icmps.type == 8,
       "icmps with code 0");
    is_str(spec.netout_rules[2].networks[0].end, "2001:db8::1", "single address: end = start");
    ok(spec.netout_rules[2].ports[0].start == 22 && spec.netout_rules[2].ports[0].end == 22,
       "single port: end = start");
    ok(spec.netout_rules[2].ports[1].start == 0 && spec.netout_rules[2].ports[1].end == 1023,
       "end only: 0..end");
    is_int(spec.n_netin, 2, "two netin");
    _cleanup_json_ json_object *lo = spec_encode_container_spec(&spec);
    _cleanup_free_ char *ls = serialize(lo);
    is_str(ls,
           "{\"image\":{},\"bind_mounts\":[{\"src_path\":\"/x\",\"dst_path\":\"/y\"},{\"src_path\":"
           "\"/p\",\"dst_path\":\"/q\",\"mode\":1}],\"properties\":{\"a\":\"\",\"m\":"
           "\"\\u003c\\u0026\\u003e\",\"z\":\"1\"},\"env\":[\"A=\",\"B=x=y\"],\"limits\":{"
           "\"bandwidth_limits\":{},\"cpu_limits\":{},\"disk_limits\":{},\"memory_limits\":{},"
           "\"pid_limits\":{}},\"netout_rules\":[{},{\"protocol\":3,\"icmps\":{\"type\":8,\"code\":"
           "0}},{\"networks\":[{\"start\":\"2001:db8::1\",\"end\":\"2001:db8::1\"}],\"ports\":[{"
           "\"start\":22,\"end\":22},{\"end\":1023}]}],\"netin\":[{\"host_port\":61001,"
           "\"container_port\":0},{\"host_port\":0,\"container_port\":0}]}\n",
           "lists encoding");
    container_round_trip(&spec, "lists");
    container_spec_done(&spec);
}

static void test_container_spec_refusals(void)
{
    char big[40000];

    container_fails("[]", "Invalid request body: expected an object, got an array");
    container_fails("\"x\"", "Invalid request body: expected an object, got a string");
    container_fails("null", "Invalid request body: expected an object, got null");
    container_fails("{\"handle\":\"a/b\"}", "Invalid handle: byte 0x2f at offset 1 is not allowed "
                                            "(use A-Z, a-z, 0-9, '.', '_' and '-')");
    container_fails("{\"handle\":\".hidden\"}",
                    "Invalid handle '.hidden': must not start with '.'");
    container_fails("{\"handle\":1}",
                    "Invalid value for 'handle': expected a string, got a number");
    snprintf(big, sizeof(big), "{\"handle\":\"%0129d\"}", 0);
    container_fails(big, "Invalid handle '00000000000000000000000000000000...': longer than 128 "
                         "bytes");
    container_fails("{\"grace_time\":\"5s\"}",
                    "Invalid value for 'grace_time': expected an integer, got a string");
    container_fails("{\"grace_time\":-1}",
                    "Invalid value for 'grace_time': -1 is negative (it is in nanoseconds, 0 means "
                    "the server default)");
    container_fails("{\"grace_time\":1.5}", "Invalid value for 'grace_time': expected an integer, "
                                            "got a number with a fraction or exponent (1.5)");
    container_fails("{\"grace_time\":9223372036854775808}",
                    "Invalid value for 'grace_time': 9223372036854775808 is out of range "
                    "(-9223372036854775808..9223372036854775807)");
    container_fails("{\"handle\":\"ok\",\"rootfs\":\"/r\",\"image\":{\"uri\":\"docker:///x\"}}",
                    "Cannot set both 'rootfs' and 'image.uri'");
    container_fails("{\"image\":\"docker:///x\"}",
                    "Invalid value for 'image': expected an object, got a string");
    container_fails("{\"image\":{\"uri\":5}}",
                    "Invalid value for 'image.uri': expected a string, got a number");
    container_fails("{\"handle\":\"ok\",\"bind_mounts\":[{\"mode\":\"RW\"}]}",
                    "Invalid value for 'bind_mounts[0].mode': expected an integer, got a string");
    container_fails("{\"bind_mounts\":[{},{},{\"mode\":2}]}",
                    "Invalid value for 'bind_mounts[2].mode': 2 is not one of 0 (RO), 1 (RW)");
    container_fails("{\"bind_mounts\":[{\"mode\":300}]}",
                    "Invalid value for 'bind_mounts[0].mode': 300 is out of range (0..255)");
    container_fails("{\"bind_mounts\":[{\"origin\":5}]}",
                    "Invalid value for 'bind_mounts[0].origin': 5 is not one of 0 (Host), 1 "
                    "(Container)");
    container_fails("{\"bind_mounts\":[{\"src_path\":\"/a\",\"origin\":-1}]}",
                    "Invalid value for 'bind_mounts[0].origin': -1 is out of range (0..255)");
    container_fails("{\"bind_mounts\":{}}",
                    "Invalid value for 'bind_mounts': expected an array, got an object");
    container_fails("{\"bind_mounts\":[[]]}",
                    "Invalid value for 'bind_mounts[0]': expected an object, got an array");
    container_fails("{\"bind_mounts\":[null]}",
                    "Invalid value for 'bind_mounts[0]': expected an object, got null");
    {
        size_t n = 0;
        n += (size_t)snprintf(big + n, sizeof(big) - n, "{\"bind_mounts\":[");
        for (int i = 0; i < 300; i++)
            n += (size_t)snprintf(big + n, sizeof(big) - n, "%s{}", i ? "," : "");
        snprintf(big + n, sizeof(big) - n, "]}");
        container_fails(big, "Too many bind_mounts: 300 (at most 256)");
    }
    container_fails("{\"network\":[]}", "Invalid value for 'network': expected a string, got an "
                                        "array");
    container_fails("{\"properties\":{\"k\":1}}",
                    "Invalid value for 'properties.k': expected a string, got a number");
    container_fails("{\"properties\":[\"k\",\"v\"]}",
                    "Invalid value for 'properties': expected an object, got an array");
    {
        size_t n = 0;
        n += (size_t)snprintf(big + n, sizeof(big) - n, "{\"properties\":{");
        for (int i = 0; i < 1025; i++)
            n += (size_t)snprintf(big + n, sizeof(big) - n, "%s\"p%d\":\"\"", i ? "," : "", i);
        snprintf(big + n, sizeof(big) - n, "}}");
        container_fails(big, "Too many properties: 1025 (at most 1024)");
    }
    {
        size_t n = (size_t)snprintf(big, sizeof(big), "{\"properties\":{\"");
        memset(big + n, 'k', 1025);
        snprintf(big + n + 1025, sizeof(big) - n - 1025, "\":\"v\"}}");
        container_fails(big, "Invalid property key 'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...': longer "
                             "than 1024 bytes");
    }
    {
        /* 17 values of 64 KiB: under the key count, over the byte budget */
        size_t cap = 17 * (SPEC_PROPERTY_VALUE_MAX + 16) + 32;
        _cleanup_free_ char *props = malloc(cap);
        size_t n = (size_t)snprintf(props, cap, "{\"properties\":{");
        for (int i = 0; i < 17; i++) {
            n += (size_t)snprintf(props + n, cap - n, "%s\"k%d\":\"", i ? "," : "", i);
            memset(props + n, 'v', SPEC_PROPERTY_VALUE_MAX - 2);
            n += SPEC_PROPERTY_VALUE_MAX - 2;
            n += (size_t)snprintf(props + n, cap - n, "\"");
        }
        snprintf(props + n, cap - n, "}}");
        container_fails(props, "Invalid value for 'properties': keys and values exceed 1048576 "
                               "bytes");
    }
    container_fails("{\"env\":[\"FOO\"]}",
                    "Invalid value for 'env[0]': 'FOO' is not of the form NAME=VALUE");
    container_fails("{\"env\":[\"A=1\",\"=x\"]}",
                    "Invalid value for 'env[1]': '=x' is not of the form NAME=VALUE");
    container_fails("{\"env\":[1]}", "Invalid value for 'env[0]': expected a string, got a number");
    container_fails("{\"env\":\"A=1\"}",
                    "Invalid value for 'env': expected an array, got a string");
    container_fails("{\"env\":[\"A=\\u0000\"]}",
                    "Invalid value for 'env[0]': contains a NUL character");
    container_fails("{\"privileged\":\"yes\"}",
                    "Invalid value for 'privileged': expected a bool, got a string");
    container_fails("{\"privileged\":1}", "Invalid value for 'privileged': expected a bool, got a "
                                          "number");
    container_fails("{\"limits\":[]}", "Invalid value for 'limits': expected an object, got an "
                                       "array");
    container_fails("{\"limits\":{\"memory_limits\":{\"limit_in_bytes\":-1}}}",
                    "Invalid value for 'limits.memory_limits.limit_in_bytes': -1 is out of range "
                    "(0..18446744073709551615)");
    container_fails("{\"limits\":{\"cpu_limits\":5}}",
                    "Invalid value for 'limits.cpu_limits': expected an object, got a number");
    container_fails("{\"limits\":{\"disk_limits\":{\"scope\":2}}}",
                    "Invalid value for 'limits.disk_limits.scope': 2 is not one of 0 (total), 1 "
                    "(exclusive)");
    container_fails("{\"limits\":{\"pid_limits\":{\"max\":\"100\"}}}",
                    "Invalid value for 'limits.pid_limits.max': expected an integer, got a string");
    container_fails("{\"limits\":{\"bandwidth_limits\":{\"rate\":1e6}}}",
                    "Invalid value for 'limits.bandwidth_limits.rate': expected an integer, got a "
                    "number with a fraction or exponent (1e6)");
    container_fails("{\"netout_rules\":[{\"protocol\":5}]}",
                    "Invalid value for 'netout_rules[0].protocol': 5 is not one of 0 (all), 1 "
                    "(tcp), 2 (udp), 3 (icmp), 4 (icmpv6)");
    container_fails("{\"netout_rules\":[{\"protocol\":\"tcp\"}]}",
                    "Invalid value for 'netout_rules[0].protocol': expected an integer, got a "
                    "string");
    container_fails("{\"netout_rules\":[{\"ports\":[{\"start\":1},{\"start\":70000}]}]}",
                    "Invalid value for 'netout_rules[0].ports[1].start': 70000 is out of range "
                    "(0..65535)");
    container_fails(
        "{\"netout_rules\":[{},{\"ports\":[{\"start\":443,\"end\":80}]}]}",
        "Invalid value for 'netout_rules[1].ports[0]': start 443 is greater than end 80");
    container_fails("{\"netout_rules\":[{\"ports\":[{}]}]}",
                    "Invalid value for 'netout_rules[0].ports[0]': empty port range");
    container_fails("{\"netout_rules\":[{\"networks\":[{\"start\":\"10.0.0.300\"}]}]}",
                    "Invalid value for 'netout_rules[0].networks[0].start': '10.0.0.300' is not an "
                    "IP address");
    container_fails("{\"netout_rules\":[{\"networks\":[{\"start\":\"10.0.0.1\",\"end\":\"x\"}]}]}",
                    "Invalid value for 'netout_rules[0].networks[0].end': 'x' is not an IP "
                    "address");
    container_fails("{\"netout_rules\":[{\"networks\":[{\"end\":\"10.0.0.1\"}]}]}",
                    "Invalid value for 'netout_rules[0].networks[0]': 'start' is required");
    container_fails(
        "{\"netout_rules\":[{\"networks\":[{\"start\":\"10.0.0.1\",\"end\":\"::1\"}]}]}",
        "Invalid value for 'netout_rules[0].networks[0]': start 10.0.0.1 and end ::1 are not the "
        "same address family");
    container_fails(
        "{\"netout_rules\":[{\"networks\":[{\"start\":\"10.0.0.9\",\"end\":\"10.0.0.1\"}]}]}",
        "Invalid value for 'netout_rules[0].networks[0]': start 10.0.0.9 is after end 10.0.0.1");
    container_fails("{\"netout_rules\":[{\"icmps\":{\"type\":256}}]}",
                    "Invalid value for 'netout_rules[0].icmps.type': 256 is out of range (0..255)");
    container_fails("{\"netout_rules\":[{\"icmps\":{\"code\":-1}}]}",
                    "Invalid value for 'netout_rules[0].icmps.code': -1 is out of range (0..255)");
    container_fails("{\"netout_rules\":[{\"log\":\"true\"}]}",
                    "Invalid value for 'netout_rules[0].log': expected a bool, got a string");
    container_fails("{\"netout_rules\":{}}",
                    "Invalid value for 'netout_rules': expected an array, got an object");
    container_fails("{\"netin\":[{\"host_port\":70000}]}",
                    "Invalid value for 'netin[0].host_port': 70000 is out of range (0..65535)");
    container_fails("{\"netin\":{\"host_port\":1}}",
                    "Invalid value for 'netin': expected an array, got an object");
}

static void test_process_spec(void)
{
    _cleanup_json_ json_object *o = parse(go_process_spec);
    ProcessSpec spec;
    ApiError e = {0};

    is_int(spec_decode_process_spec(o, &spec, &e), 0, "Go ProcessSpec decodes");
    is_str(spec.id, "my-proc", "id");
    is_str(spec.path, "sh", "path");
    is_int(spec.n_args, 2, "two args");
    is_str(spec.args[0], "-c", "args[0]");
    is_str(spec.args[1], "cat; echo err >&2; exit 3", "args[1] unescaped");
    ok(spec.args[2] == NULL, "args NULL-terminated");
    is_int(spec.n_env, 1, "one env entry");
    is_str(spec.env[0], "X=1", "env");
    is_str(spec.dir, "/tmp", "dir");
    is_str(spec.user, "root", "user");
    for (int k = 0; k < _RLIMIT_KIND_MAX; k++)
        if (k != RLIMIT_KIND_NOFILE)
            ok(!spec.rlimits.set[k], "rlimit %s unset", rlimit_kind_names[k]);
    ok(spec.rlimits.set[RLIMIT_KIND_NOFILE], "nofile set");
    is_u64(spec.rlimits.value[RLIMIT_KIND_NOFILE], 1024, "nofile value");
    ok(spec.tty.present && spec.tty.has_window_size, "tty with window size");
    is_int(spec.tty.columns, 80, "columns");
    is_int(spec.tty.rows, 24, "rows");
    ok(!spec.image.uri, "no image");
    ok(!spec.has_limits, "no limits");
    is_int(spec.n_bind_mounts, 0, "no bind mounts");
    process_spec_done(&spec);
    ok(spec.id == NULL && spec.args == NULL, "process_spec_done zeroes");
    process_spec_done(NULL);

    _cleanup_json_ json_object *p = parse(
        "{\"path\":\"ls\",\"tty\":{},\"rlimits\":{\"core\":0,\"as\":18446744073709551615},"
        "\"limits\":{\"cpu_limits\":{},\"memory_limits\":{}},\"image\":{\"uri\":\"raw:///r\"},"
        "\"bind_mounts\":[{\"src_path\":\"/s\",\"dst_path\":\"/d\",\"origin\":1}]}");
    is_int(spec_decode_process_spec(p, &spec, &e), 0, "pea spec decodes");
    ok(spec.tty.present && !spec.tty.has_window_size, "tty {} requests a PTY");
    ok(spec.rlimits.set[RLIMIT_KIND_CORE] && spec.rlimits.value[RLIMIT_KIND_CORE] == 0,
       "rlimit 0 is set");
    is_u64(spec.rlimits.value[RLIMIT_KIND_AS], UINT64_MAX, "rlimit u64 max");
    ok(!spec.has_limits, "empty limits are no override");
    is_str(spec.image.uri, "raw:///r", "pea image");
    is_int(spec.n_bind_mounts, 1, "pea bind mount");
    ok(spec.id == NULL && spec.args == NULL && spec.n_args == 0, "absent id and args");
    process_spec_done(&spec);

    _cleanup_json_ json_object *q =
        parse("{\"limits\":{\"memory_limits\":{\"limit_in_bytes\":1048576}},\"TTY\":null}");
    is_int(spec_decode_process_spec(q, &spec, &e), 0, "limits spec decodes");
    ok(spec.has_limits, "non-zero limit is an override");
    is_u64(spec.memory_limits.limit_in_bytes, 1048576, "memory override");
    ok(!spec.tty.present, "tty null = no PTY");
    process_spec_done(&spec);

    is_str(rlimit_kind_names[RLIMIT_KIND_AS], "as", "rlimit name as");
    is_str(rlimit_kind_names[RLIMIT_KIND_SIGPENDING], "sigpending", "rlimit name sigpending");
    is_str(rlimit_kind_names[RLIMIT_KIND_STACK], "stack", "rlimit name stack");

    process_fails("[]", "Invalid request body: expected an object, got an array");
    process_fails("{\"id\":\"../x\"}", "Invalid process id '../x': must not start with '.'");
    process_fails("{\"id\":\"a b\"}", "Invalid process id: byte 0x20 at offset 1 is not allowed "
                                      "(use A-Z, a-z, 0-9, '.', '_' and '-')");
    process_fails("{\"path\":\"sh\",\"args\":[\"-c\",null]}",
                  "Invalid value for 'args[1]': expected a string, got null");
    process_fails("{\"args\":\"-c\"}", "Invalid value for 'args': expected an array, got a string");
    process_fails("{\"env\":[\"NOEQUALS\"]}",
                  "Invalid value for 'env[0]': 'NOEQUALS' is not of the form NAME=VALUE");
    process_fails("{\"tty\":true}", "Invalid value for 'tty': expected an object, got a bool");
    process_fails("{\"tty\":{\"window_size\":{\"columns\":70000}}}",
                  "Invalid value for 'tty.window_size.columns': 70000 is out of range (0..65535)");
    process_fails("{\"tty\":{\"window_size\":{\"rows\":-1}}}",
                  "Invalid value for 'tty.window_size.rows': -1 is out of range (0..65535)");
    process_fails(
        "{\"rlimits\":{\"nofile\":-1}}",
        "Invalid value for 'rlimits.nofile': -1 is out of range (0..18446744073709551615)");
    process_fails("{\"rlimits\":[]}", "Invalid value for 'rlimits': expected an object, got an "
                                      "array");
    process_fails(
        "{\"limits\":{\"cpu_limits\":{\"weight\":\"x\"}}}",
        "Invalid value for 'limits.cpu_limits.weight': expected an integer, got a string");
    process_fails("{\"bind_mounts\":[{\"src_path\":\"/a\",\"dst_path\":\"/b\"}],\"image\":{}}",
                  "Cannot set 'bind_mounts' without 'image.uri'");
    process_fails("{\"image\":{\"uri\":\"x\"},\"bind_mounts\":[{\"mode\":7}]}",
                  "Invalid value for 'bind_mounts[0].mode': 7 is not one of 0 (RO), 1 (RW)");

    /* SPEC_ARGS_MAX entries are fine, one more is not */
    size_t cap = 16 + 4 * (SPEC_ARGS_MAX + 1);
    _cleanup_free_ char *many = malloc(cap);
    size_t n = (size_t)snprintf(many, cap, "{\"args\":[");
    for (int i = 0; i <= SPEC_ARGS_MAX; i++)
        n += (size_t)snprintf(many + n, cap - n, "%s\"\"", i ? "," : "");
    snprintf(many + n, cap - n, "]}");
    process_fails(many, "Too many args: 4097 (at most 4096)");
}

static void test_rules_and_limits(void)
{
    ApiError e = {0};

    _cleanup_json_ json_object *bulk = parse("[{},{\"protocol\":4,\"icmps\":{\"type\":128}}]");
    NetOutRule *rules = (NetOutRule *)0x1;
    size_t n = 99;
    is_int(spec_decode_netout_rules(bulk, &rules, &n, &e), 0, "BulkNetOut body decodes");
    is_int(n, 2, "two rules");
    is_int(rules[0].protocol, NET_PROTOCOL_ALL, "allow-all rule");
    ok(rules[1].protocol == NET_PROTOCOL_ICMPV6 && rules[1].has_icmps &&
           rules[1].icmps.type == 128 && !rules[1].icmps.has_code,
       "icmpv6 type 128, any code");
    _cleanup_json_ json_object *r1 = spec_encode_netout_rule(&rules[1]);
    _cleanup_free_ char *s1 = serialize(r1);
    is_str(s1, "{\"protocol\":4,\"icmps\":{\"type\":128}}\n", "absent code stays absent");
    netout_rules_free(rules, n);

    _cleanup_json_ json_object *bad = parse("[{},{\"ports\":[{\"start\":\"80\"}]}]");
    is_int(spec_decode_netout_rules(bad, &rules, &n, &e), -EINVAL, "bad second rule refused");
    is_str(e.message,
           "Invalid value for 'netout_rules[1].ports[0].start': expected an integer, got a string",
           "bad second rule message");
    ok(rules == NULL && n == 0, "rules zeroed on failure");
    _cleanup_json_ json_object *notarr = parse("{}");
    is_int(spec_decode_netout_rules(notarr, &rules, &n, &e), -EINVAL, "object for bulk refused");
    _cleanup_json_ json_object *emptyarr = parse("[]");
    is_int(spec_decode_netout_rules(emptyarr, &rules, &n, &e), 0, "empty bulk ok");
    ok(rules == NULL && n == 0, "empty bulk gives no rules");

    _cleanup_json_ json_object *one =
        parse("{\"protocol\":2,\"networks\":[{\"start\":\"fe80::1\",\"end\":\"fe80::ffff\"}],"
              "\"ports\":[{\"start\":53,\"end\":53}]}");
    NetOutRule rule;
    is_int(spec_decode_netout_rule(one, &rule, &e), 0, "NetOut body decodes");
    _cleanup_json_ json_object *ro = spec_encode_netout_rule(&rule);
    _cleanup_free_ char *rs = serialize(ro);
    is_str(rs,
           "{\"protocol\":2,\"networks\":[{\"start\":\"fe80::1\",\"end\":\"fe80::ffff\"}],"
           "\"ports\":[{\"start\":53,\"end\":53}]}\n",
           "NetOut encodes back");
    netout_rule_done(&rule);
    ok(rule.networks == NULL && rule.n_networks == 0, "netout_rule_done zeroes");
    netout_rule_done(NULL);

    _cleanup_json_ json_object *arr = parse("[]");
    is_int(spec_decode_netout_rule(arr, &rule, &e), -EINVAL, "array for NetOut refused");
    is_str(e.message, "Invalid request body: expected an object, got an array",
           "array for NetOut message");

    NetInSpec netin = {1, 1};
    _cleanup_json_ json_object *ni = parse("{\"handle\":\"h\",\"host_port\":1234}");
    is_int(spec_decode_netin(ni, &netin, &e), 0, "NetIn body decodes");
    ok(netin.host_port == 1234 && netin.container_port == 0, "NetIn values");
    _cleanup_json_ json_object *nb = parse("{\"container_port\":65536}");
    is_int(spec_decode_netin(nb, &netin, &e), -EINVAL, "NetIn out of range");
    is_str(e.message, "Invalid value for 'container_port': 65536 is out of range (0..65535)",
           "NetIn top-level path");
    ok(netin.host_port == 0 && netin.container_port == 0, "NetIn zeroed on failure");

    MemoryLimits mem = {7};
    _cleanup_json_ json_object *mo = parse("{\"limit_in_bytes\":\"1G\"}");
    is_int(spec_decode_memory_limits(mo, &mem, &e), -EINVAL, "memory limits type");
    is_str(e.message, "Invalid value for 'limit_in_bytes': expected an integer, got a string",
           "top-level limits path");
    is_u64(mem.limit_in_bytes, 0, "memory limits zeroed");

    Limits limits;
    _cleanup_json_ json_object *lo =
        parse("{\"bandwidth_limits\":{\"rate\":1,\"burst\":2},\"cpu_limits\":{\"weight\":3,"
              "\"limit_in_shares\":4},\"disk_limits\":{\"inode_soft\":5,\"inode_hard\":6,"
              "\"byte_soft\":7,\"byte_hard\":8,\"scope\":1},\"memory_limits\":{\"limit_in_bytes\":"
              "9},\"pid_limits\":{\"max\":10}}");
    is_int(spec_decode_limits(lo, &limits, &e), 0, "full limits decode");
    ok(limits.bandwidth.rate == 1 && limits.bandwidth.burst == 2 && limits.cpu.weight == 3 &&
           limits.cpu.limit_in_shares == 4 && limits.disk.inode_soft == 5 &&
           limits.disk.inode_hard == 6 && limits.disk.byte_soft == 7 &&
           limits.disk.byte_hard == 8 && limits.disk.scope == DISK_SCOPE_EXCLUSIVE &&
           limits.memory.limit_in_bytes == 9 && limits.pid.max == 10,
       "every limit field");

    _cleanup_json_ json_object *b = spec_encode_bandwidth_limits(&limits.bandwidth);
    _cleanup_json_ json_object *c = spec_encode_cpu_limits(&limits.cpu);
    _cleanup_json_ json_object *d = spec_encode_disk_limits(&limits.disk);
    _cleanup_json_ json_object *m = spec_encode_memory_limits(&limits.memory);
    _cleanup_json_ json_object *p = spec_encode_pid_limits(&limits.pid);
    _cleanup_free_ char *bs = serialize(b), *cs = serialize(c), *ds = serialize(d),
                        *ms = serialize(m), *ps = serialize(p);
    is_str(bs, "{\"rate\":1,\"burst\":2}\n", "bandwidth encoding");
    is_str(cs, "{\"weight\":3,\"limit_in_shares\":4}\n", "cpu encoding");
    is_str(ds, "{\"inode_soft\":5,\"inode_hard\":6,\"byte_soft\":7,\"byte_hard\":8,\"scope\":1}\n",
           "disk encoding");
    is_str(ms, "{\"limit_in_bytes\":9}\n", "memory encoding");
    is_str(ps, "{\"max\":10}\n", "pid encoding");

    CpuLimits zero = {0};
    _cleanup_json_ json_object *z = spec_encode_cpu_limits(&zero);
    _cleanup_free_ char *zs = serialize(z);
    is_str(zs, "{}\n", "zero limits encode as {}");

    DiskLimits disk;
    _cleanup_json_ json_object *dd = parse("{\"scope\":1,\"byte_hard\":1}");
    is_int(spec_decode_disk_limits(dd, &disk, &e), 0, "disk limits decode");
    ok(disk.scope == DISK_SCOPE_EXCLUSIVE && disk.byte_hard == 1, "disk values");
    BandwidthLimits bw;
    _cleanup_json_ json_object *bb = parse("{\"RATE\":5}");
    is_int(spec_decode_bandwidth_limits(bb, &bw, &e), 0, "bandwidth decode");
    is_u64(bw.rate, 5, "bandwidth rate");
    PidLimits pid;
    _cleanup_json_ json_object *pp = parse("{\"max\":true}");
    is_int(spec_decode_pid_limits(pp, &pid, &e), -EINVAL, "pid type");
    CpuLimits cpu;
    _cleanup_json_ json_object *cc = parse("{\"weight\":10}");
    is_int(spec_decode_cpu_limits(cc, &cpu, &e), 0, "cpu decode");
    is_u64(cpu.weight, 10, "cpu weight");
}

static void test_handles(void)
{
    ApiError e = {0};
    is_int(spec_validate_handle("abc-1.2_X", &e), 0, "good handle");
    is_int(spec_validate_handle("a..b", &e), 0, "inner dots are fine");
    is_int(spec_validate_handle("", &e), -EINVAL, "empty handle");
    is_str(e.message, "Invalid handle: must not be empty", "empty handle message");
    is_int(spec_validate_handle(NULL, &e), -EINVAL, "NULL handle");
    is_int(spec_validate_handle("..", &e), -EINVAL, "dot-dot handle");
    is_int(spec_validate_handle("a\nb", &e), -EINVAL, "newline in handle");
    is_str(e.message,
           "Invalid handle: byte 0x0a at offset 1 is not allowed (use A-Z, a-z, 0-9, "
           "'.', '_' and '-')",
           "newline message");
    char h[SPEC_HANDLE_MAX + 2];
    memset(h, 'h', SPEC_HANDLE_MAX);
    h[SPEC_HANDLE_MAX] = '\0';
    is_int(spec_validate_handle(h, &e), 0, "handle at max length");
    h[SPEC_HANDLE_MAX] = 'h';
    h[SPEC_HANDLE_MAX + 1] = '\0';
    is_int(spec_validate_handle(h, &e), -EINVAL, "handle over max length");
}

static void test_service_spec(void)
{
    ContainerSpec spec;
    ApiError e = {0};
    is_int(decode_container("{\"cloche_service\":{}}", &spec, &e), 0, "empty service");
    ok(spec.service && !spec.service->path, "no path: the image's");
    is_int(spec.service->restart, SERVICE_RESTART_ON_FAILURE, "default policy");
    is_int(spec.service->backoff_initial_ms, SERVICE_DEFAULT_BACKOFF_INITIAL_MS,
           "default back-off");
    is_int(spec.service->log_max_size, 10u << 20, "default log size");
    is_int(spec.service->log_max_files, 3, "default log files");
    container_round_trip(&spec, "empty service");
    container_spec_done(&spec);

    is_int(decode_container("{\"cloche_service\":{\"path\":\"/app\",\"args\":[\"-v\"],"
                            "\"env\":[\"A=1\"],\"dir\":\"/srv\",\"user\":\"app\","
                            "\"restart\":\"unless-stopped\",\"max_restarts\":7,"
                            "\"backoff\":{\"initial_ms\":10,\"max_ms\":20,\"reset_after_ms\":0},"
                            "\"log\":{\"max_size\":4096,\"max_files\":1}}}",
                            &spec, &e),
           0, "full service");
    ok(spec.service && strcmp(spec.service->path, "/app") == 0 && spec.service->n_args == 1 &&
           spec.service->n_env == 1 && strcmp(spec.service->user, "app") == 0,
       "fields decoded");
    is_int(spec.service->restart, SERVICE_RESTART_UNLESS_STOPPED, "policy");
    is_int(spec.service->max_restarts, 7, "max_restarts");
    is_int(spec.service->backoff_reset_ms, 0, "reset_after_ms 0 kept");
    container_round_trip(&spec, "full service");
    container_spec_done(&spec);

    container_fails("{\"cloche_service\":{\"restart\":\"often\"}}",
                    "Invalid value for 'cloche_service.restart': 'often' is not one of 'no', "
                    "'on-failure', 'always', 'unless-stopped'");
    container_fails(
        "{\"cloche_service\":{\"log\":{\"max_files\":101}}}",
        "Invalid value for 'cloche_service.log.max_files': 101 is out of range (0..100)");
    container_fails("{\"cloche_service\":{\"backoff\":{\"initial_ms\":9}}}",
                    "Invalid value for 'cloche_service.backoff.initial_ms': 9 is out of range "
                    "(10..3600000)");
    container_fails("{\"cloche_service\":[]}",
                    "Invalid value for 'cloche_service': expected an object, got an array");
}

int main(void)
{
    test_service_spec();
    test_container_spec();
    test_container_spec_refusals();
    test_process_spec();
    test_rules_and_limits();
    test_handles();
    return tap_done();
}
