/* The model against a real depot in a temp dir: restore on start, list filters,
 * properties persisted across restarts, grace expiry destroying, destroy. */
#include "tap.h"

#include <stdlib.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cloche/fileio.h"
#include "cloche/garden-setup.h"
#include "cloche/garden.h"

static GardenConfig config(const char *depot)
{
    return (GardenConfig){.depot_path = depot,
                          .default_rootfs = "/nonexistent",
                          .max_containers = 10,
                          .network_capacity = 256,
                          .cgroup_parent = "cloche-unit"};
}

static int add(Garden *g, const char *handle, const char *k, const char *v, int64_t grace_ns)
{
    ContainerRecord rec = {.state = CONTAINER_STATE_ACTIVE, .grace_time_ns = grace_ns};
    rec.handle = strdup(handle);
    rec.spec.handle = strdup(handle);
    if (k)
        strmap_set(&rec.properties, k, v);
    ApiError e;
    int r = garden_register(g, &rec, &e);
    container_record_done(&rec);
    return r;
}

static size_t list(Garden *g, const char *k, const char *v, char ***ret)
{
    StringMap f = STRING_MAP_INIT;
    if (k)
        strmap_set(&f, k, v);
    size_t n = 0;
    *ret = NULL;
    garden_list(g, &f, ret, &n);
    strmap_clear(&f);
    return n;
}

int main(void)
{
    char tmpl[] = "/tmp/cloche-test-registry-XXXXXX";
    char *dir = mkdtemp(tmpl);
    ok(dir != NULL, "temp dir");
    char depot[512];
    snprintf(depot, sizeof(depot), "%s/depot", dir);
    GardenConfig cfg = config(depot);

    Garden *g;
    ok(garden_new(&cfg, &g) == 0, "garden opens an empty depot");
    is_int(garden_count(g), 0, "no containers");
    Capacity cap;
    ok(garden_capacity(g, &cap) == 0, "capacity");
    is_u64(cap.max_containers, 10, "max containers = min(--max-containers, pool)");
    ok(cap.memory_in_bytes > 0 && cap.disk_in_bytes > 0, "memory and disk figures");

    ok(add(g, "a", "team", "red", 0) == 0, "register a");
    ok(add(g, "b", "team", "blue", 0) == 0, "register b");
    ok(add(g, "c", NULL, NULL, 0) == 0, "register c");
    ok(add(g, "a", NULL, NULL, 0) == -EEXIST, "duplicate handle refused");

    char **h;
    is_int(list(g, NULL, NULL, &h), 3, "unfiltered list has all three");
    is_str(h[0], "a", "sorted");
    strv_free(h);
    is_int(list(g, "team", "red", &h), 1, "filter team=red");
    is_str(h[0], "a", "it is a");
    strv_free(h);
    is_int(list(g, "team", "green", &h), 0, "no match");
    strv_free(h);
    is_int(list(g, "garden.state", "all", &h), 3, "garden.state=all lists all");
    strv_free(h);

    Container *c;
    ApiError e;
    ok(garden_acquire(g, "b", &c, &e) == 0, "acquire b");
    ok(container_set_property(g, c, "k1", "v1", &e) == 0, "set k1");
    ok(container_set_property(g, c, "", "v", &e) < 0 && e.status == 400, "empty key refused");
    char *v = NULL;
    ok(container_get_property(c, "k1", &v, &e) == 0, "get k1");
    is_str(v, "v1", "value");
    free(v);
    ok(container_get_property(c, "nope", &v, &e) < 0, "missing property");
    is_str(e.message, "property does not exist: nope", "guardian's message");
    ok(container_remove_property(g, c, "team", &e) == 0, "remove team");
    ok(container_remove_property(g, c, "team", &e) == 0, "removing a missing key is fine");
    garden_release(g, c);
    ok(garden_acquire(g, "zz", &c, &e) == -ENOENT, "unknown handle");
    is_str(e.message, "unknown handle: zz", "404 message");
    is_str(e.type, "ContainerNotFoundError", "404 type");

    garden_free(g);
    ok(garden_new(&cfg, &g) == 0, "reopen (a daemon restart)");
    is_int(garden_count(g), 3, "all three restored");
    ok(garden_acquire(g, "b", &c, &e) == 0, "acquire b again");
    v = NULL;
    ok(container_get_property(c, "k1", &v, &e) == 0, "k1 survived the restart");
    free(v);
    ok(container_get_property(c, "team", &v, &e) < 0, "the removal survived too");
    garden_release(g, c);

    ok(garden_destroy(g, "c", &e) == 0, "destroy c");
    ok(garden_destroy(g, "c", &e) == -ENOENT, "destroying again: unknown handle");
    char path[600];
    snprintf(path, sizeof(path), "%s/containers/c", depot);
    ok(access(path, F_OK) < 0, "c's depot directory is gone");

    /* Grace: a container with 100 ms expires; one kept busy does not. */
    ok(add(g, "short", NULL, NULL, 100000000) == 0, "register short (grace 100 ms)");
    ok(add(g, "busy", NULL, NULL, 100000000) == 0, "register busy (grace 100 ms)");
    Container *busy;
    ok(garden_acquire(g, "busy", &busy, &e) == 0, "a request holds busy");
    usleep(400000);
    ok(garden_acquire(g, "short", &c, &e) == -ENOENT, "short expired and was destroyed");
    ok(garden_find(g, "busy", &c, &e) == 0, "busy survives while its request runs");
    container_unref(c);
    garden_release(g, busy);
    usleep(50000);
    ok(garden_find(g, "busy", &c, &e) == 0, "busy still there 50 ms after the request ended");
    container_unref(c);
    usleep(300000);
    ok(garden_find(g, "busy", &c, &e) == -ENOENT, "busy expired once idle for its grace time");

    ok(garden_acquire(g, "a", &c, &e) == 0, "acquire a");
    ok(container_set_grace_time(g, c, 0, &e) == 0, "SetGraceTime(0)");
    garden_release(g, c);
    usleep(100000);
    ok(garden_find(g, "a", &c, &e) == -ENOENT, "SetGraceTime(0) destroyed a at once");

    garden_free(g);
    ok(rm_rf_at(AT_FDCWD, dir) == 0, "cleanup");
    return tap_done();
}
