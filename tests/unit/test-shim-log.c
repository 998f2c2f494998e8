/* cloche-shim's log files and restart policy (src/shim/log.c, supervise.c),
 * compiled in: the record format, line splitting, rotation at max_size, and the
 * back-off series; and its pid/exit file writes (file.c). */
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/shim/shim.h"
#include "tap.h"

static char dir[] = "/tmp/test-shim-log-XXXXXX";

static char *slurp(const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strdup(buf);
}

static off_t size_of(const char *name)
{
    char path[256];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return stat(path, &st) == 0 ? st.st_size : -1;
}

static void test_format(void)
{
    char buf[SHIM_LOG_LINE_MAX + 48];
    struct timespec t = {.tv_sec = 1700000000, .tv_nsec = 5};
    size_t n = shim_log_format(buf, SHIM_LOG_STDERR, "hello", 5, &t);
    is_int(n, strlen("1700000000.000000005 stderr hello\n"), "record length");
    ok(memcmp(buf, "1700000000.000000005 stderr hello\n", n) == 0, "record text");
}

static void test_lines(void)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/lines.log", dir);
    ShimLog l;
    ok(shim_log_init(&l, path, 1 << 20, 3) == 0, "init");
    struct timespec t = {.tv_sec = 1, .tv_nsec = 2};
    shim_log_write(&l, SHIM_LOG_STDOUT, (const uint8_t *)"a\nb", 3, &t);
    shim_log_write(&l, SHIM_LOG_STDERR, (const uint8_t *)"x\n", 2, &t);
    shim_log_write(&l, SHIM_LOG_STDOUT, (const uint8_t *)"c\n\n", 3, &t);
    shim_log_write(&l, SHIM_LOG_STDOUT, (const uint8_t *)"tail", 4, &t);
    char *text = slurp("lines.log");
    ok(text && strcmp(text, "1.000000002 stdout a\n1.000000002 stderr x\n"
                            "1.000000002 stdout bc\n1.000000002 stdout \n") == 0,
       "lines are split at newlines, partial lines wait, streams apart");
    for (char *line = text; line && *line;) { /* as TAP comments */
        size_t len = strcspn(line, "\n");
        printf("#   %.*s\n", (int)len, line);
        line += len + (line[len] == '\n');
    }
    free(text);
    shim_log_flush(&l, &t);
    text = slurp("lines.log");
    ok(text && strstr(text, "1.000000002 stdout tail\n"), "flush writes the unfinished line");
    free(text);
    /* A line longer than SHIM_LOG_LINE_MAX is split into full records. */
    size_t big = SHIM_LOG_LINE_MAX * 2 + 10;
    uint8_t *data = malloc(big + 1);
    memset(data, 'z', big);
    data[big] = '\n';
    shim_log_write(&l, SHIM_LOG_STDOUT, data, big + 1, &t);
    free(data);
    shim_log_done(&l);
    text = slurp("lines.log");
    size_t records = 0;
    for (char *p = text; p && (p = strchr(p, '\n')); p++)
        records++;
    is_int(records, 5 + 3, "a long line becomes three records");
    free(text);
}

static void test_rotation(void)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/rot.log", dir);
    ShimLog l;
    ok(shim_log_init(&l, path, 4096, 3) == 0, "init");
    struct timespec t = {.tv_sec = 1700000000, .tv_nsec = 0};
    char line[100];
    /* Each record: 21 + 7 + 69 + 1 = 98 bytes; 41 fit in 4096. */
    memset(line, 'q', 69);
    line[69] = '\n';
    for (int i = 0; i < 200; i++)
        shim_log_write(&l, SHIM_LOG_STDOUT, (uint8_t *)line, 70, &t);
    shim_log_done(&l);
    ok(size_of("rot.log") <= 4096 && size_of("rot.log.1") <= 4096 && size_of("rot.log.2") <= 4096,
       "every file within max_size");
    is_int(size_of("rot.log.1"), 41 * 98, "a rotated file is full");
    is_int(size_of("rot.log.3"), -1, "no more than max_files files");
    is_int(200 % 41 * 98, size_of("rot.log"), "the current file holds the rest");
}

/* A record cut short (a full disk; here RLIMIT_FSIZE, which cuts a write at
 * the limit as ENOSPC would) is taken back: the file holds whole records
 * only, and writing goes on once there is room. */
static void test_full_disk(void)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/full.log", dir);
    ShimLog l;
    ok(shim_log_init(&l, path, 1 << 20, 2) == 0, "init");
    struct timespec t = {.tv_sec = 1700000000, .tv_nsec = 0};
    char line[100];
    memset(line, 'f', 69);
    line[69] = '\n';
    struct rlimit old, cap = {.rlim_cur = 1000, .rlim_max = RLIM_INFINITY};
    getrlimit(RLIMIT_FSIZE, &old);
    cap.rlim_max = old.rlim_max;
    signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &cap);
    for (int i = 0; i < 20; i++) /* 98 bytes each: the 11th is cut at 1000 */
        shim_log_write(&l, SHIM_LOG_STDOUT, (uint8_t *)line, 70, &t);
    setrlimit(RLIMIT_FSIZE, &old);
    is_int(size_of("full.log"), 10 * 98, "only the 10 whole records are kept");
    shim_log_write(&l, SHIM_LOG_STDOUT, (uint8_t *)"after\n", 6, &t);
    shim_log_done(&l);
    char *text = slurp("full.log");
    ok(text && strlen(text) == 10 * 98 + 34 &&
           strstr(text, "\n1700000000.000000000 stdout after\n"),
       "the next record follows the last whole one");
    free(text);
}

static void test_backoff(void)
{
    ShimSpec spec = {.supervised = true,
                     .restart = SHIM_RESTART_ON_FAILURE,
                     .max_restarts = 4,
                     .backoff_initial_ms = 100,
                     .backoff_max_ms = 350,
                     .backoff_reset_ms = 10000};
    ShimSupervisor sv;
    shim_supervisor_init(&sv, &spec);
    shim_supervisor_started(&sv, 0, 0);
    uint64_t delay = 0, now = 0;
    static const uint64_t want[] = {100, 200, 350, 350};
    for (int i = 0; i < 4; i++) {
        ok(shim_supervisor_exited(&sv, &spec, 1, now += 10, &delay), "restart %d", i + 1);
        is_int(delay, want[i], "delay %d grows, capped", i + 1);
        sv.restarts++;
        shim_supervisor_started(&sv, now += delay, 0);
    }
    ok(!shim_supervisor_exited(&sv, &spec, 1, now += 10, &delay), "max_restarts reached");
    is_int(sv.state, SHIM_SERVICE_EXITED, "exited");
    /* A long run starts the series again; exit 0 ends on-failure. */
    sv.restarts = 0;
    ok(shim_supervisor_exited(&sv, &spec, 2, now += 20000, &delay) && delay == 100,
       "a run of reset_ms resets the delay");
    ok(!shim_supervisor_exited(&sv, &spec, 0, now += 10, &delay), "on-failure: exit 0 ends it");
    spec.restart = SHIM_RESTART_ALWAYS;
    spec.max_restarts = 0;
    ok(shim_supervisor_exited(&sv, &spec, 0, now += 10, &delay), "always: exit 0 restarts");
    sv.quit = true;
    ok(!shim_supervisor_exited(&sv, &spec, 0, now += 10, &delay), "quit: no more");
    spec.restart = SHIM_RESTART_NO;
    sv.quit = false;
    ok(!shim_supervisor_exited(&sv, &spec, 1, now += 10, &delay), "no: never");
}

/* A first version is created under its name, with no temp file; a later one
 * replaces it through the temp file and a rename. */
static void test_file_first(void)
{
    int dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    is_int(shim_write_file_first(dirfd, "pid.tmp", "pid", "1 2 3\n", 6), 0, "first version");
    char *text = slurp("pid");
    ok(text && strcmp(text, "1 2 3\n") == 0, "whole: '%s'", text ? text : "(none)");
    free(text);
    ok(size_of("pid.tmp") < 0, "no temp file");
    struct stat before, after;
    char path[256];
    snprintf(path, sizeof(path), "%s/pid", dir);
    stat(path, &before);
    is_int(shim_write_file_first(dirfd, "pid.tmp", "pid", "1 2 44\n", 7), 0, "second version");
    stat(path, &after);
    text = slurp("pid");
    ok(text && strcmp(text, "1 2 44\n") == 0, "replaced: '%s'", text ? text : "(none)");
    free(text);
    ok(before.st_ino != after.st_ino && size_of("pid.tmp") < 0,
       "by a rename of a new file: a reader never sees it half written");
    close(dirfd);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    test_file_first();
    test_format();
    test_lines();
    test_rotation();
    test_full_disk();
    test_backoff();
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return tap_done();
}
