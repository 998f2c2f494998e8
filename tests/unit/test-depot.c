/* depot: records written atomically, read back after a "restart" (re-open),
 * crash leftovers ignored and cleaned, corrupt records reported, handles checked. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tap.h"

#include "cloche/cleanup.h"
#include "cloche/depot.h"
#include "cloche/fileio.h"
#include "cloche/json.h"

static char tmpdir[PATH_MAX];
static char depot_dir[PATH_MAX + 32];

static int container_fd(const char *handle)
{
    char p[PATH_MAX * 2];
    snprintf(p, sizeof(p), "%s/containers/%s", depot_dir, handle);
    return open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static bool exists_in(const char *handle, const char *name)
{
    _cleanup_close_ int fd = container_fd(handle);
    struct stat st;
    return fd >= 0 && fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        abort();
    return p;
}

static void make_record(ContainerRecord *rec, const char *handle)
{
    *rec = (ContainerRecord){0};
    rec->handle = xstrdup(handle);
    rec->state = CONTAINER_STATE_ACTIVE;
    rec->created_at_ns = 1700000000123456789LL;
    rec->grace_time_ns = 300LL * 1000000000LL;
    strmap_set(&rec->properties, "garden.network.container-ip", "10.254.0.2");
    strmap_set(&rec->properties, "owner", "tricky <&> \"quoted\" \\ caf\xc3\xa9 \n");
    strmap_set(&rec->events, "oom", "");

    ContainerSpec *s = &rec->spec;
    s->handle = xstrdup(handle);
    s->grace_time_ns = rec->grace_time_ns;
    s->image.uri = xstrdup("docker:///busybox");
    s->n_bind_mounts = 2;
    s->bind_mounts = calloc(2, sizeof(BindMount));
    s->bind_mounts[0] =
        (BindMount){xstrdup("/srv/data"), xstrdup("/data"), BIND_MOUNT_RO, BIND_MOUNT_HOST};
    s->bind_mounts[1] =
        (BindMount){xstrdup("/tmp/in"), xstrdup("/scratch"), BIND_MOUNT_RW, BIND_MOUNT_CONTAINER};
    s->limits.memory.limit_in_bytes = 1ULL << 30;
    s->limits.cpu.weight = 512;
    s->limits.pid.max = 100;
    s->limits.disk.byte_hard = 1ULL << 32;
    s->limits.disk.scope = DISK_SCOPE_EXCLUSIVE;
    s->limits.bandwidth.rate = 1000000;
    s->limits.bandwidth.burst = 65536;
    strmap_set(&s->properties, "owner", "tricky");
    s->n_env = 2;
    s->env = calloc(3, sizeof(char *));
    s->env[0] = xstrdup("A=1");
    s->env[1] = xstrdup("PATH=/bin");
}

static void check_record(const ContainerRecord *got, const ContainerRecord *want, const char *what)
{
    is_str(got->handle, want->handle, "%s: handle", what);
    is_int(got->state, want->state, "%s: state", what);
    is_int(got->created_at_ns, want->created_at_ns, "%s: created_at", what);
    is_int(got->grace_time_ns, want->grace_time_ns, "%s: grace_time", what);
    bool same = got->properties.n == want->properties.n;
    STRMAP_FOREACH (i, &want->properties) {
        const char *v = strmap_get(&got->properties, want->properties.keys[i]);
        same = same && v && strcmp(v, want->properties.values[i]) == 0;
    }
    ok(same, "%s: properties", what);
    same = got->events.n == want->events.n;
    STRMAP_FOREACH (i, &want->events)
        same = same && strmap_get(&got->events, want->events.keys[i]);
    ok(same, "%s: events", what);

    const ContainerSpec *g = &got->spec, *w = &want->spec;
    is_str(g->handle, w->handle, "%s: spec handle", what);
    is_int(g->grace_time_ns, w->grace_time_ns, "%s: spec grace_time", what);
    is_str(g->image.uri, w->image.uri, "%s: spec image", what);
    if (is_int(g->n_bind_mounts, w->n_bind_mounts, "%s: bind mount count", what))
        for (size_t i = 0; i < w->n_bind_mounts; i++) {
            const BindMount *a = &g->bind_mounts[i], *b = &w->bind_mounts[i];
            ok(strcmp(a->src_path, b->src_path) == 0 && strcmp(a->dst_path, b->dst_path) == 0 &&
                   a->mode == b->mode && a->origin == b->origin,
               "%s: bind mount %zu", what, i);
        }
    is_u64(g->limits.memory.limit_in_bytes, w->limits.memory.limit_in_bytes, "%s: memory limit",
           what);
    is_u64(g->limits.cpu.weight, w->limits.cpu.weight, "%s: cpu weight", what);
    is_u64(g->limits.pid.max, w->limits.pid.max, "%s: pid limit", what);
    is_u64(g->limits.disk.byte_hard, w->limits.disk.byte_hard, "%s: disk limit", what);
    is_int(g->limits.disk.scope, w->limits.disk.scope, "%s: disk scope", what);
    is_u64(g->limits.bandwidth.rate, w->limits.bandwidth.rate, "%s: bandwidth rate", what);
    is_u64(g->limits.bandwidth.burst, w->limits.bandwidth.burst, "%s: bandwidth burst", what);
    is_str(strmap_get(&g->properties, "owner"), "tricky", "%s: spec properties", what);
    ok(g->n_env == 2 && g->env && strcmp(g->env[1], "PATH=/bin") == 0, "%s: spec env", what);
}

static void test_states(void)
{
    ContainerState s;
    is_str(container_state_to_string(CONTAINER_STATE_CREATING), "creating", "state creating");
    is_str(container_state_to_string(CONTAINER_STATE_DESTROYING), "destroying", "state destroying");
    ok(container_state_to_string((ContainerState)42) == NULL, "unknown state has no name");
    ok(container_state_from_string("stopped", &s) == 0 && s == CONTAINER_STATE_STOPPED,
       "parse stopped");
    is_int(container_state_from_string("Stopped", &s), -EINVAL, "state names are exact");
    is_int(container_state_from_string("", &s), -EINVAL, "empty state refused");
}

static void test_parse(void)
{
    ContainerRecord rec, got = {0};
    make_record(&rec, "p1");
    size_t len;
    _cleanup_free_ char *buf = container_record_serialize(&rec, &len);
    ok(buf && len == strlen(buf), "serialize");

    _cleanup_json_ json_object *obj = NULL;
    ApiError perr = {0};
    ok(buf && json_parse_strict(buf, len, &obj, &perr) == 0, "serialised form is JSON");
    json_object *v = obj ? json_object_object_get(obj, "version") : NULL;
    ok(v && json_object_get_int(v) == DEPOT_RECORD_VERSION, "carries the version");
    v = obj ? json_object_object_get(obj, "state") : NULL;
    is_str(v ? json_object_get_string(v) : NULL, "active", "state as a string");
    v = obj ? json_object_object_get(obj, "events") : NULL;
    ok(v && json_object_is_type(v, json_type_array) && json_object_array_length(v) == 1,
       "events as an array");

    is_int(container_record_parse(buf, len, &got), 0, "parse");
    check_record(&got, &rec, "round trip");
    ok(!got.firewall_pending, "no firewall change pending by default");
    container_record_done(&got);

    /* A NetIn or NetOut recorded but maybe not yet in the firewall. */
    rec.firewall_pending = true;
    size_t plen;
    _cleanup_free_ char *pending = container_record_serialize(&rec, &plen);
    ok(pending && strstr(pending, "\"firewall_pending\":true"), "pending firewall change written");
    is_int(container_record_parse(pending, plen, &got), 0, "parse with a pending change");
    ok(got.firewall_pending, "pending firewall change read back");
    container_record_done(&got);
    rec.firewall_pending = false;

    /* Stopped by a client (not started again after a reboot). */
    ok(!got.stopped_by_client, "not stopped by a client by default");
    rec.stopped_by_client = true;
    _cleanup_free_ char *stopped = container_record_serialize(&rec, &plen);
    ok(stopped && strstr(stopped, "\"stopped_by_client\":true"), "stopped_by_client written");
    is_int(container_record_parse(stopped, plen, &got), 0, "parse a client-stopped record");
    ok(got.stopped_by_client, "stopped_by_client read back");
    container_record_done(&got);
    rec.stopped_by_client = false;

    /* A newer daemon's record. */
    ok(obj != NULL, "have object");
    json_object_object_add(obj, "version", json_object_new_int(DEPOT_RECORD_VERSION + 1));
    _cleanup_free_ char *newer = json_serialize(obj, &len);
    is_int(container_record_parse(newer, len, &got), -EBADMSG, "newer version refused");
    json_object_object_add(obj, "version", json_object_new_int(0));
    _cleanup_free_ char *zero = json_serialize(obj, &len);
    is_int(container_record_parse(zero, len, &got), -EBADMSG, "version 0 refused");
    json_object_object_add(obj, "version", json_object_new_int(DEPOT_RECORD_VERSION));
    json_object_object_add(obj, "state", json_object_new_string("paused"));
    _cleanup_free_ char *badstate = json_serialize(obj, &len);
    is_int(container_record_parse(badstate, len, &got), -EBADMSG, "unknown state refused");
    json_object_object_add(obj, "state", json_object_new_string("active"));
    json_object_object_del(obj, "spec");
    _cleanup_free_ char *nospec = json_serialize(obj, &len);
    is_int(container_record_parse(nospec, len, &got), -EBADMSG, "missing spec refused");

    const char *bad[] = {"", "{", "[]", "null", "{\"version\":1}", "{\"version\":\"1\"}"};
    for (size_t i = 0; i < ELEMENTSOF(bad); i++)
        is_int(container_record_parse(bad[i], strlen(bad[i]), &got), -EBADMSG,
               "garbage %zu refused", i);
    _cleanup_free_ char *trailing = NULL;
    ok(asprintf(&trailing, "%s}", buf) > 0, "trailing byte");
    is_int(container_record_parse(trailing, strlen(trailing), &got), -EBADMSG,
           "trailing bytes refused");
    ok(got.handle == NULL, "output untouched on failure");

    rec.state = (ContainerState)42;
    ok(container_record_serialize(&rec, &len) == NULL, "unknown state not serialised");
    container_record_done(&rec);
}

static void test_depot(void)
{
    Depot *d = NULL;
    ContainerRecord rec, rec2, got;
    struct stat st;

    is_int(depot_open(depot_dir, &d), 0, "open creates the depot");
    ok(d && depot_path(d)[0] == '/', "absolute depot path");
    ok(stat(depot_dir, &st) == 0 && (st.st_mode & 07777) == 0711,
       "depot mode 0711 (traversable, not listable)");
    char containers[PATH_MAX * 2];
    snprintf(containers, sizeof(containers), "%s/containers", depot_dir);
    ok(stat(containers, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0711,
       "containers/ made, 0711");

    const char *h1 = "web-1.a_b";
    make_record(&rec, h1);
    is_int(depot_write_record(d, &rec), -ENOENT, "write needs the container directory");
    is_int(depot_container_create(d, h1), 0, "create container dir");
    is_int(depot_container_create(d, h1), -EEXIST, "duplicate create: -EEXIST");
    is_int(depot_read_record(d, h1, &got), -ENOENT, "no record yet: -ENOENT");
    is_int(depot_read_record(d, "nope", &got), -ENOENT, "unknown container: -ENOENT");

    _cleanup_free_ char *cpath = NULL;
    is_int(depot_container_path(d, h1, &cpath), 0, "container path");
    _cleanup_free_ char *want_path = NULL;
    ok(asprintf(&want_path, "%s/containers/%s", depot_path(d), h1) > 0 && cpath &&
           strcmp(cpath, want_path) == 0,
       "container path is <depot>/containers/<handle>");

    is_int(depot_write_record(d, &rec), 0, "write record");
    ok(exists_in(h1, "state.json") && !exists_in(h1, ".state.json.tmp"),
       "state.json written, no temp left");
    {
        _cleanup_close_ int fd = container_fd(h1);
        ok(fd >= 0 && fstatat(fd, "state.json", &st, 0) == 0 && (st.st_mode & 07777) == 0600,
           "state.json mode 0600");
    }
    is_int(depot_read_record(d, h1, &got), 0, "read record");
    check_record(&got, &rec, "read");
    container_record_done(&got);

    /* Rewrite. */
    rec.state = CONTAINER_STATE_STOPPED;
    strmap_set(&rec.properties, "new", "value");
    strmap_remove(&rec.events, "oom");
    is_int(depot_write_record(d, &rec), 0, "rewrite record");
    is_int(depot_read_record(d, h1, &got), 0, "read rewritten record");
    check_record(&got, &rec, "rewrite");
    container_record_done(&got);

    make_record(&rec2, "a0");
    rec2.state = CONTAINER_STATE_CREATING;
    rec2.grace_time_ns = 0;
    rec2.spec.grace_time_ns = 0;
    is_int(depot_container_create(d, "a0"), 0, "second container");
    is_int(depot_write_record(d, &rec2), 0, "second record");

    /* Crash between write and rename of the second container's next record. */
    {
        _cleanup_close_ int fd = container_fd("a0");
        const char *half = "{\"version\":1,\"hand";
        is_int(atomic_write_stage(fd, "state.json", half, strlen(half), 0600), 0,
               "stage a record, no commit (crash)");
    }
    ok(exists_in("a0", ".state.json.tmp"), "stale temp present");
    is_int(depot_read_record(d, "a0", &got), 0, "stale temp ignored by read");
    check_record(&got, &rec2, "before restart");
    container_record_done(&got);

    /* Directories without a good record. */
    is_int(depot_container_create(d, "empty"), 0, "container without a record");
    is_int(depot_container_create(d, "corrupt"), 0, "container with a corrupt record");
    {
        _cleanup_close_ int fd = container_fd("corrupt");
        is_int(atomic_write_at(fd, "state.json", "{\"version\":1,", 13, 0600), 0,
               "write corrupt state.json");
    }
    is_int(depot_read_record(d, "corrupt", &got), -EBADMSG, "corrupt record: -EBADMSG");
    is_int(depot_container_create(d, "moved"), 0, "container with another's record");
    {
        _cleanup_close_ int from = container_fd("a0"), to = container_fd("moved");
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        ok(read_file_at(from, "state.json", DEPOT_RECORD_MAX, &buf, &len) == 0 &&
               atomic_write_at(to, "state.json", buf, len, 0600) == 0,
           "copy a0's record into moved/");
    }
    is_int(depot_read_record(d, "moved", &got), -EBADMSG, "handle mismatch: -EBADMSG");

    /* Never write what cannot be read back. */
    {
        ContainerRecord huge;
        make_record(&huge, h1);
        size_t n = DEPOT_RECORD_MAX + 1;
        char *big = malloc(n + 1);
        memset(big, 'x', n);
        big[n] = '\0';
        strmap_set(&huge.properties, "big", big);
        free(big);
        is_int(depot_write_record(d, &huge), -EFBIG, "record over DEPOT_RECORD_MAX: -EFBIG");
        container_record_done(&huge);
        is_int(depot_read_record(d, h1, &got), 0, "previous record still there");
        container_record_done(&got);
    }

    /* Restart. */
    depot_free(d);
    d = NULL;
    is_int(depot_open(depot_dir, &d), 0, "re-open (daemon restart)");
    ok(!exists_in("a0", ".state.json.tmp"), "stale temp removed by open");
    ok(exists_in("a0", "state.json"), "old state.json kept");

    ContainerRecord *recs = NULL;
    size_t n = 0;
    char **bad = NULL;
    is_int(depot_load_all(d, &recs, &n, &bad), 0, "load all");
    if (is_int(n, 2, "two good records")) {
        is_str(recs[0].handle, "a0", "sorted: a0 first");
        check_record(&recs[0], &rec2, "restart a0");
        check_record(&recs[1], &rec, "restart web");
    }
    ok(bad && bad[0] && bad[1] && bad[2] && !bad[3], "three bad directories");
    if (bad && bad[0] && bad[1] && bad[2]) {
        is_str(bad[0], "corrupt", "bad: corrupt");
        is_str(bad[1], "empty", "bad: empty (no record)");
        is_str(bad[2], "moved", "bad: moved (wrong handle)");
    }
    container_records_free(recs, n);
    strv_free(bad);

    /* Remove. */
    is_int(depot_container_remove(d, "corrupt"), 0, "remove corrupt");
    is_int(depot_container_remove(d, "empty"), 0, "remove empty");
    is_int(depot_container_remove(d, "moved"), 0, "remove moved");
    {
        _cleanup_close_ int fd = container_fd("a0");
        ok(fd >= 0 && mkdirat(fd, "rootfs", 0700) == 0 && mkdirat(fd, "rootfs/etc", 0700) == 0 &&
               symlinkat(depot_dir, fd, "rootfs/escape") == 0,
           "nested content with a symlink out");
    }
    is_int(depot_container_remove(d, "a0"), 0, "remove a0 with content");
    {
        _cleanup_close_ int fd = container_fd("a0");
        ok(fd < 0 && errno == ENOENT, "a0 gone");
    }
    ok(stat(containers, &st) == 0, "symlink target (the depot) survives");
    is_int(depot_container_remove(d, "a0"), 0, "remove again is success");
    is_int(depot_read_record(d, "a0", &got), -ENOENT, "removed: -ENOENT");

    recs = NULL;
    bad = (char **)1;
    is_int(depot_load_all(d, &recs, &n, &bad), 0, "load all after remove");
    ok(n == 1 && recs && strcmp(recs[0].handle, h1) == 0, "one record left");
    ok(bad == NULL, "no bad directories: NULL");
    container_records_free(recs, n);
    is_int(depot_load_all(d, &recs, &n, NULL), 0, "load all without a bad list");
    container_records_free(recs, n);

    /* Handles. */
    const char *invalid[] = {"", ".", "..", ".hidden", "a/b", "/abs", "../x"};
    for (size_t i = 0; i < ELEMENTSOF(invalid); i++) {
        char *p = NULL;
        is_int(depot_container_create(d, invalid[i]), -EINVAL, "create '%s' refused", invalid[i]);
        is_int(depot_container_remove(d, invalid[i]), -EINVAL, "remove '%s' refused", invalid[i]);
        is_int(depot_read_record(d, invalid[i], &got), -EINVAL, "read '%s' refused", invalid[i]);
        is_int(depot_container_path(d, invalid[i], &p), -EINVAL, "path '%s' refused", invalid[i]);
    }
    is_int(depot_container_create(d, NULL), -EINVAL, "NULL handle refused");
    char longh[SPEC_HANDLE_MAX + 2];
    memset(longh, 'h', sizeof(longh) - 1);
    longh[sizeof(longh) - 1] = '\0';
    is_int(depot_container_create(d, longh), -EINVAL, "over-long handle refused");
    free(rec.handle);
    rec.handle = xstrdup("../escape");
    is_int(depot_write_record(d, &rec), -EINVAL, "write with a bad handle refused");
    ok(stat(containers, &st) == 0, "containers/ still there");

    container_record_done(&rec);
    container_record_done(&rec2);
    depot_free(d);

    /* A file where the depot should be. */
    char file[PATH_MAX + 32];
    snprintf(file, sizeof(file), "%s/afile", tmpdir);
    int fd = open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    close(fd);
    d = NULL;
    is_int(depot_open(file, &d), -ENOTDIR, "depot path is a file: -ENOTDIR");
    ok(d == NULL, "no depot returned on failure");
}

/* The durable write in two halves: the commit renames the staged file when the
 * record is the staged one, writes whole when it changed; a crash between the
 * two (no commit) leaves the old record, and the next open removes the staged
 * file. */
static void test_staged(void)
{
    Depot *d = NULL;
    ContainerRecord rec, got;
    is_int(depot_open(depot_dir, &d), 0, "open the depot again");
    const char *h = "staged-1";
    make_record(&rec, h);
    rec.state = CONTAINER_STATE_CREATING;
    is_int(depot_container_create(d, h), 0, "create container dir");
    is_int(depot_write_record(d, &rec), 0, "the creating record");

    /* Unchanged: the staged file becomes the record. */
    rec.state = CONTAINER_STATE_ACTIVE;
    size_t len;
    char *staged = container_record_serialize(&rec, &len);
    is_int(depot_stage_record(d, h, staged, len), 0, "stage the active record");
    ok(exists_in(h, ".state.json.staged.tmp"), "staged file written beside the record");
    is_int(depot_read_record(d, h, &got), 0, "read while staged");
    is_int(got.state, CONTAINER_STATE_CREATING, "staging leaves the record as it was");
    container_record_done(&got);
    is_int(depot_commit_record(d, &rec, staged, len), 0, "commit the staged record");
    ok(!exists_in(h, ".state.json.staged.tmp") && !exists_in(h, ".state.json.tmp"),
       "no staged or temp file left");
    is_int(depot_read_record(d, h, &got), 0, "read the committed record");
    check_record(&got, &rec, "committed");
    container_record_done(&got);
    free(staged);

    /* Changed after staging: written whole, the staged file gone. */
    rec.state = CONTAINER_STATE_STOPPED;
    staged = container_record_serialize(&rec, &len);
    is_int(depot_stage_record(d, h, staged, len), 0, "stage again");
    strmap_set(&rec.properties, "late", "change");
    is_int(depot_commit_record(d, &rec, staged, len), 0, "commit a record that changed");
    ok(!exists_in(h, ".state.json.staged.tmp"), "the stale staged file removed");
    is_int(depot_read_record(d, h, &got), 0, "read the changed record");
    check_record(&got, &rec, "changed after staging");
    container_record_done(&got);

    /* Nothing staged: a plain durable write. */
    rec.state = CONTAINER_STATE_ACTIVE;
    is_int(depot_commit_record(d, &rec, NULL, 0), 0, "commit with nothing staged");
    is_int(depot_read_record(d, h, &got), 0, "read it back");
    check_record(&got, &rec, "nothing staged");
    container_record_done(&got);

    /* Staged, then a crash: the old record stays, the next open drops the file. */
    is_int(depot_stage_record(d, h, staged, len), 0, "stage, then crash");
    free(staged);
    depot_free(d);
    d = NULL;
    ok(exists_in(h, ".state.json.staged.tmp"), "the crash left the staged file");
    is_int(depot_open(depot_dir, &d), 0, "open after the crash");
    ok(!exists_in(h, ".state.json.staged.tmp"), "the open removed the staged file");
    is_int(depot_read_record(d, h, &got), 0, "read after the crash");
    check_record(&got, &rec, "the last committed record");
    container_record_done(&got);

    /* Refused: too large, no buffer, a bad handle. */
    is_int(depot_stage_record(d, h, "x", DEPOT_RECORD_MAX + 1), -EFBIG, "too large refused");
    is_int(depot_stage_record(d, h, NULL, 0), -EINVAL, "no buffer refused");
    is_int(depot_stage_record(d, "../escape", "{}", 2), -EINVAL, "a bad handle refused");
    ok(!exists_in(h, ".state.json.staged.tmp"), "nothing staged by a refusal");

    container_record_done(&rec);
    depot_free(d);
}

static bool in_table(const char *run, const char *name)
{
    char p[PATH_MAX * 3];
    snprintf(p, sizeof(p), "%s/processes/%s", run, name);
    struct stat st;
    return lstat(p, &st) == 0;
}

/* The run directory: each container's process table there (or, for a container
 * made before it, in the container's directory), removed with the container,
 * and what a crash or another depot left there removed by the next open. */
static void test_run_dir(void)
{
    char run[PATH_MAX + 32], want[PATH_MAX * 2];
    snprintf(run, sizeof(run), "%s/run-here", tmpdir);
    Depot *d = NULL;
    is_int(depot_open(depot_dir, &d), 0, "open with the default run directory");
    snprintf(want, sizeof(want), "%s/run", depot_dir);
    is_str(depot_run_path(d), want, "the default run directory is DEPOT/run");
    depot_free(d);
    d = NULL;

    is_int(depot_open_run(depot_dir, run, &d), 0, "open with a run directory of its own");
    is_str(depot_run_path(d), run, "the run directory given");
    ok(in_table(run, ""), "RUN/processes made");
    const char *h = "runs-1", *old = "runs-old";
    char *path = NULL;
    is_int(depot_container_create(d, h), 0, "create a container");
    is_int(depot_processes_path(d, h, &path), 0, "its process table's path");
    snprintf(want, sizeof(want), "%s/processes/%s", run, h);
    is_str(path, want, "the table is in the run directory");
    ok(mkdir(path, 0700) == 0, "make the table");
    free(path);

    is_int(depot_container_create(d, old), 0, "create a container of an earlier version");
    snprintf(want, sizeof(want), "%s/containers/%s/processes", depot_dir, old);
    ok(mkdir(want, 0700) == 0, "with its table in its own directory");
    is_int(depot_processes_path(d, old, &path), 0, "that container's table's path");
    is_str(path, want, "is where its shims are bound");
    free(path);
    is_int(depot_processes_path(d, "../x", &path), -EINVAL, "a bad handle refused");

    /* Left by a crash, or by containers the depot no longer has. */
    ok(in_table(run, h), "the table exists");
    snprintf(want, sizeof(want), "%s/processes/ghost/p1", run);
    is_int(mkdir_p(want, 0700), 0, "a table without a container");
    snprintf(want, sizeof(want), "%s/processes/.trash-1-1/p1", run);
    is_int(mkdir_p(want, 0700), 0, "a removal a crash cut short");
    depot_free(d);
    d = NULL;
    is_int(depot_open_run(depot_dir, run, &d), 0, "open again");
    ok(!in_table(run, "ghost"), "the table without a container is gone");
    ok(!in_table(run, ".trash-1-1"), "the cut-short removal is finished");
    ok(in_table(run, h), "a container's table stays");

    is_int(depot_container_remove(d, h), 0, "remove the container");
    ok(!in_table(run, h), "its table went with it");
    is_int(depot_container_remove(d, old), 0, "remove the earlier one");
    depot_free(d); /* finishes the queued deletions */
    d = NULL;
    char procs[PATH_MAX + 64];
    snprintf(procs, sizeof(procs), "%s/processes", run);
    int left = 0;
    DIR *dir = opendir(procs);
    for (struct dirent *de; dir && (de = readdir(dir));)
        left += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    if (dir)
        closedir(dir);
    is_int(left, 0, "nothing left in RUN/processes once the deletions are done");
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/test-depot.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        ok(0, "mkdtemp: %s", strerror(errno));
        return tap_done();
    }
    snprintf(depot_dir, sizeof(depot_dir), "%s/var/depot", tmpdir);

    test_states();
    test_parse();
    test_depot();
    test_staged();
    test_run_dir();

    is_int(rm_rf_at(AT_FDCWD, tmpdir), 0, "remove temp dir");
    return tap_done();
}
