/* cloche-shim (include/cloche/shim-protocol.h) against ordinary processes in this
 * test's own namespaces, so that the shim skips every setns: the start line, the
 * pid and exit files, frames both ways, the output rings, backpressure, a pty,
 * signals, ids, rlimits, cgroups, and the throughput of one reader.
 *
 * Root only (the shim sets ids and writes cgroup.procs). The built shim's path
 * comes from $CLOCHE_SHIM. This test is a child subreaper, so the detached shims
 * (and anything they leave behind) become its children and are reaped here; every
 * shim, process and directory is removed by pid and path at the end. */
#include "shim-harness.h"

static void test_basic(void)
{
    Run *run = run_new();
    const char *kv[] = {"path", "/bin/sh",
                        "arg",  "-c",
                        "arg",  "cat; echo err >&2; exit 3",
                        "env",  "PATH=/bin:/usr/bin",
                        NULL};
    if (!ok(shim_start(run, kv), "basic: the shim says ok"))
        return;
    ok(run->process > 0, "basic: ok carries the process pid (%d)", run->process);
    ok(file_exists(run, "sock"), "basic: the socket exists once ok is written");
    struct stat st;
    char path[128];
    snprintf(path, sizeof(path), "%s/sock", run->dir);
    ok(stat(path, &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 0777) == 0600,
       "basic: sock is a socket of mode 0600");

    FILE *f = fopen((snprintf(path, sizeof(path), "%s/pid", run->dir), path), "re");
    int shim = -1, proc = -1;
    unsigned long long start = 0;
    ok(f && fscanf(f, "%d %llu %d", &shim, &start, &proc) == 3, "basic: pid file has 3 fields");
    if (f)
        fclose(f);
    ok(shim > 0 && start == start_time_of(shim), "basic: pid file: shim pid and start time");
    is_int(proc, run->process, "basic: pid file: the process pid");
    ok(!file_exists(run, "pid.tmp"), "basic: no pid.tmp left");

    Output o = {0};
    ok(run_to_end(run, "hello\n", &o), "basic: got 'X'");
    is_str(o.out, "hello\n", "basic: stdin came back on stdout");
    is_str(o.err, "err\n", "basic: stderr");
    is_str(o.status, "3", "basic: exit status 3");
    ok(o.closed, "basic: the shim closed the connection after 'X'");
    is_str(file_text(run, "exit"), "3", "basic: exit file");
    ok(wait_shim_exit(run, 5000), "basic: the shim exits once 'X' is delivered");
    ok(!file_exists(run, "sock"), "basic: the socket is removed");
    output_free(&o);
    run_cleanup(run);
}

static void test_start_errors(void)
{
    Run *run = run_new();
    const char *missing[] = {"path", "/nonexistent/cloche-prog", NULL};
    ok(!shim_start_spec(run, missing, true), "errors: missing executable fails");
    ok(strncmp(run->line, "err 2 ", 6) == 0, "errors: missing executable: err 2 ('%s')", run->line);
    ok(!file_exists(run, "sock"), "errors: no socket left");
    ok(!file_exists(run, "pid"), "errors: no pid file");
    run_cleanup(run);

    const char *unfound[] = {"path", "cloche-no-such-program", "env", "PATH=/bin:/usr/bin", NULL};
    shim_start_spec(run, unfound, true);
    ok(strncmp(run->line, "err 2 ", 6) == 0, "errors: not in PATH: err 2 ('%s')", run->line);
    run_cleanup(run);

    const char *noexec[] = {"path", "/etc/passwd", NULL};
    shim_start_spec(run, noexec, true);
    ok(strncmp(run->line, "err 13 ", 7) == 0, "errors: not executable: err 13 ('%s')", run->line);
    run_cleanup(run);

    const char *nopath[] = {"arg", "x", NULL};
    shim_start_spec(run, nopath, true);
    ok(strncmp(run->line, "err 22 ", 7) == 0, "errors: no path: err 22 ('%s')", run->line);
    run_cleanup(run);

    const char *sh[] = {"path", "/bin/true", NULL};
    shim_start_spec(run, sh, false);
    ok(strncmp(run->line, "err 22 ", 7) == 0, "errors: no init_pid: err 22 ('%s')", run->line);
    run_cleanup(run);

    char stale[32];
    snprintf(stale, sizeof(stale), "%llu", init_start + 1);
    char pid[32];
    snprintf(pid, sizeof(pid), "%d", init_pid);
    const char *reused[] = {"path", "/bin/true", "init_pid", pid, "init_start", stale, NULL};
    shim_start_spec(run, reused, false);
    ok(strncmp(run->line, "err 3 ", 6) == 0, "errors: reused init pid: err 3 ('%s')", run->line);
    run_cleanup(run);

    const char *badkey[] = {"path", "/bin/true", "colour", "blue", NULL};
    shim_start_spec(run, badkey, true);
    ok(strncmp(run->line, "err 22 ", 7) == 0, "errors: unknown key: err 22 ('%s')", run->line);
    run_cleanup(run);

    const char *nocg[] = {"path", "/bin/true", "cgroup", "/sys/fs/cgroup/cloche-no-such", NULL};
    shim_start_spec(run, nocg, true);
    ok(strncmp(run->line, "err 2 ", 6) == 0, "errors: missing cgroup: err 2 ('%s')", run->line);
    run_cleanup(run);

    /* A newline in a value must not break the one-line report. */
    const char *nl[] = {"path", "/no/such\nthing", NULL};
    shim_start_spec(run, nl, true);
    ok(strncmp(run->line, "err 2 ", 6) == 0 && !strchr(run->line, '\n'),
       "errors: the start line stays one line ('%s')", run->line);
    run_cleanup(run);
}

static void test_signal(void)
{
    Run *run = run_new();
    const char *kv[] = {"path", "/bin/sleep", "arg", "100", NULL};
    if (!ok(shim_start(run, kv), "signal: started sleep"))
        return;
    int fd = shim_connect(run);
    Output o = {0};
    ok(fd >= 0 && send_text(fd, SHIM_FRAME_SIGNAL, "9"), "signal: sent 'S' 9");
    ok(exchange(fd, NULL, 0, false, &o, NULL, TIMEOUT_MS), "signal: got 'X'");
    is_str(o.status, "137", "signal: status 128+9");
    is_str(file_text(run, "exit"), "137", "signal: exit file 137");
    close(fd);
    output_free(&o);
    run_cleanup(run);

    const char *self[] = {"path", "/bin/sh", "arg", "-c", "arg", "kill -TERM $$", NULL};
    if (shim_start(run, self)) {
        run_to_end(run, NULL, &o);
        is_str(o.status, "143", "signal: a process killed by SIGTERM reports 143");
        output_free(&o);
    }
    run_cleanup(run);
}

static void test_ring(void)
{
    Run *run = run_new();
    const char *kv[] = {"path", "/bin/sh", "arg", "-c", "arg", "echo out; echo err >&2", NULL};
    if (!ok(shim_start(run, kv), "ring: started"))
        return;
    ok(wait_for_file(run, "exit", TIMEOUT_MS), "ring: exited with nobody attached");
    ok(file_exists(run, "sock"), "ring: the shim lingers with its status undelivered");
    Output o = {0};
    ok(run_to_end(run, NULL, &o), "ring: a late connection gets 'X'");
    is_str(o.out, "out\n", "ring: late stdout");
    is_str(o.err, "err\n", "ring: late stderr");
    is_str(o.status, "0", "ring: status 0");
    ok(wait_shim_exit(run, 5000), "ring: the shim exits after delivering");
    output_free(&o);
    run_cleanup(run);

    /* A flood larger than the ring with nobody attached: the process never blocks
     * and the newest bytes win. */
    const char *flood[] = {"path",   "/usr/bin/seq", "arg",  "1", "arg",
                           "300000", "ring",         "1000", NULL};
    if (!ok(shim_start(run, flood), "ring: flood started"))
        return;
    ok(wait_for_file(run, "exit", TIMEOUT_MS), "ring: a 2 MB flood with nobody attached ends");
    run_to_end(run, NULL, &o);
    size_t expect_size = 300000 * 8, expect_len = 0;
    char *expect = malloc(expect_size);
    for (int i = 1; i <= 300000; i++)
        expect_len += (size_t)snprintf(expect + expect_len, expect_size - expect_len, "%d\n", i);
    is_int(o.out_len, 1000, "ring: the late reader gets exactly the ring's size");
    ok(o.out_len == 1000 && memcmp(o.out, expect + expect_len - 1000, 1000) == 0,
       "ring: ... and those are the newest bytes");
    is_str(o.status, "0", "ring: flood status 0");
    free(expect);
    output_free(&o);
    run_cleanup(run);
}

static void test_two_connections(void)
{
    Run *run = run_new();
    const char *kv[] = {"path", "/bin/sh", "arg", "-c", "arg", "read x; echo got-$x", NULL};
    if (!ok(shim_start(run, kv), "two: started"))
        return;
    int a = shim_connect(run);
    int b = shim_connect(run);
    /* b's input is read only after b was accepted, and a was accepted before b. */
    Output oa = {0}, ob = {0};
    ok(b >= 0 && send_text(b, SHIM_FRAME_STDIN, "x\n"), "two: input from the second");
    ok(exchange(a, NULL, 0, false, &oa, NULL, TIMEOUT_MS), "two: first gets 'X'");
    ok(exchange(b, NULL, 0, false, &ob, NULL, TIMEOUT_MS), "two: second gets 'X'");
    is_str(oa.out, "got-x\n", "two: first got the output");
    is_str(ob.out, "got-x\n", "two: second got the output");
    close(a);
    close(b);
    output_free(&oa);
    output_free(&ob);
    run_cleanup(run);
}

static void test_tty(void)
{
    Run *run = run_new();
    const char *kv[] = {"path",
                        "/bin/sh",
                        "arg",
                        "-c",
                        "arg",
                        "test -t 0 && test -t 1 && test -t 2 && echo is-tty; echo to-err >&2; "
                        "stty size; read x; stty size",
                        "env",
                        "PATH=/bin:/usr/bin",
                        "tty",
                        "100 30",
                        NULL};
    if (!ok(shim_start(run, kv), "tty: started"))
        return;
    int fd = shim_connect(run);
    Output o = {0};
    ok(exchange(fd, NULL, 0, false, &o, "30 100", TIMEOUT_MS), "tty: stty size says 30 100");
    ok(strstr(o.out, "is-tty") != NULL, "tty: stdin, stdout and stderr are a terminal");
    ok(strstr(o.out, "to-err") != NULL && o.err_len == 0, "tty: stderr merged into stdout");
    ok(send_text(fd, SHIM_FRAME_WINSIZE, "120 40") && send_text(fd, SHIM_FRAME_STDIN, "\n"),
       "tty: sent 'W' and a line");
    ok(exchange(fd, NULL, 0, false, &o, NULL, TIMEOUT_MS), "tty: got 'X'");
    ok(strstr(o.out, "40 120") != NULL, "tty: 'W' changed the size");
    is_str(o.status, "0", "tty: status 0");
    if (!strstr(o.out, "40 120"))
        printf("# output: '%s'\n", o.out);
    close(fd);
    output_free(&o);
    run_cleanup(run);

    /* 'C' on a terminal types its EOF character. */
    const char *cat[] = {"path", "/bin/cat", "tty", "80 24", NULL};
    if (!ok(shim_start(run, cat), "tty: cat started"))
        return;
    ok(run_to_end(run, "line\n", &o), "tty: 'C' ends cat on a terminal");
    ok(strstr(o.out, "line") != NULL, "tty: cat echoed the line");
    output_free(&o);
    run_cleanup(run);
}

static void test_binary(void)
{
    uint8_t all[256 * 4];
    for (size_t i = 0; i < sizeof(all); i++)
        all[i] = (uint8_t)i;
    Run *run = run_new();
    const char *kv[] = {"path", "/bin/cat", NULL};
    if (!ok(shim_start(run, kv), "binary: cat started"))
        return;
    int fd = shim_connect(run);
    Output o = {0};
    ok(exchange(fd, all, sizeof(all), true, &o, NULL, TIMEOUT_MS), "binary: got 'X'");
    ok(o.out_len == sizeof(all) && memcmp(o.out, all, sizeof(all)) == 0,
       "binary: all 256 byte values intact both ways");
    close(fd);
    output_free(&o);
    run_cleanup(run);

    /* 8 MiB through cat: stdin and stdout both past their caps at once. */
    size_t big_len = 8u << 20;
    uint8_t *big = malloc(big_len);
    uint32_t x = 12345;
    for (size_t i = 0; i < big_len; i++) {
        x = x * 1103515245 + 12345;
        big[i] = (uint8_t)(x >> 16);
    }
    if (ok(shim_start(run, kv), "binary: second cat started")) {
        fd = shim_connect(run);
        ok(exchange(fd, big, big_len, true, &o, NULL, 60000), "binary: 8 MiB: got 'X'");
        ok(o.out_len == big_len && memcmp(o.out, big, big_len) == 0,
           "binary: 8 MiB of stdin came back intact (%zu bytes)", o.out_len);
        close(fd);
        output_free(&o);
    }
    free(big);
    run_cleanup(run);
}

static void test_backpressure(void)
{
    /* A reader that stops reading holds the process up; nothing is lost. */
    Run *run = run_new();
    const char *kv[] = {"path", "/bin/sh", "arg", "-c", "arg", "read x; exec head -c 20M /dev/zero",
                        NULL};
    if (!ok(shim_start(run, kv), "backpressure: started"))
        return;
    int fd = shim_connect(run);
    send_text(fd, SHIM_FRAME_STDIN, "\n");
    sleep_ms(500);
    ok(!file_exists(run, "exit"), "backpressure: the process waits for the reader");
    Output o = {0};
    ok(exchange(fd, NULL, 0, false, &o, NULL, TIMEOUT_MS), "backpressure: got 'X'");
    is_int(o.out_len, 20 << 20, "backpressure: every byte arrived");
    is_str(o.status, "0", "backpressure: status 0");
    close(fd);
    output_free(&o);
    run_cleanup(run);

    /* A stale socket (a shim that crashed) is replaced. */
    make_stale_socket = true;
    const char *echo[] = {"path", "/bin/echo", "arg", "fresh", NULL};
    bool started = shim_start(run, echo);
    make_stale_socket = false;
    if (ok(started, "stale socket: started over a stale DIR/sock")) {
        ok(run_to_end(run, NULL, &o), "stale socket: the new socket works");
        is_str(o.out, "fresh\n", "stale socket: output");
        output_free(&o);
    }
    run_cleanup(run);
}

static void test_disconnect(void)
{
    Run *run = run_new();
    const char *kv[] = {"path", "/bin/sh", "arg", "-c", "arg", "read x; echo got-$x", NULL};
    if (!ok(shim_start(run, kv), "disconnect: started"))
        return;
    int fd = shim_connect(run);
    close(fd);
    sleep_ms(200);
    ok(kill(run->process, 0) == 0 && !file_exists(run, "exit"),
       "disconnect: the process survives the daemon going away");
    Output o = {0};
    ok(run_to_end(run, "y\n", &o), "disconnect: a new connection works");
    is_str(o.out, "got-y\n", "disconnect: and drives the process");
    is_str(o.status, "0", "disconnect: status 0");
    output_free(&o);
    run_cleanup(run);
}

static void test_cgroups(void)
{
    char v1[128], v2[128];
    snprintf(v1, sizeof(v1), "/sys/fs/cgroup/pids/cloche-test-shim-%d", getpid());
    snprintf(v2, sizeof(v2), "/sys/fs/cgroup/unified/cloche-test-shim-%d", getpid());
    if (mkdir(v1, 0755) < 0 || mkdir(v2, 0755) < 0) {
        ok(1, "# SKIP no v1 pids and unified hierarchies here (%s)", strerror(errno));
        rmdir(v1);
        return;
    }
    Run *run = run_new();
    Output o = {0};
    const char *kv[] = {"path",   "/bin/cat", "arg", "/proc/self/cgroup", "cgroup", v1,
                        "cgroup", v2,         NULL};
    if (shim_start(run, kv) && run_to_end(run, NULL, &o)) {
        char want[128];
        snprintf(want, sizeof(want), ":pids:/cloche-test-shim-%d\n", getpid());
        ok(strstr(o.out, want) != NULL, "cgroups: the process is in the v1 group");
        snprintf(want, sizeof(want), "0::/cloche-test-shim-%d\n", getpid());
        ok(strstr(o.out, want) != NULL, "cgroups: the process is in the v2 group");
    } else {
        ok(0, "cgroups: run");
    }
    output_free(&o);
    run_cleanup(run);
    ok(rmdir(v1) == 0 && rmdir(v2) == 0, "cgroups: the groups are empty again");
}

static void test_lifetimes(void)
{
    Run *run = run_new();
    const char *quick[] = {"path", "/bin/true", "linger", "0", NULL};
    if (ok(shim_start(run, quick), "linger 0: started")) {
        ok(wait_shim_exit(run, TIMEOUT_MS), "linger 0: the shim exits with nobody attached");
        is_str(file_text(run, "exit"), "0", "linger 0: the exit file is written");
        ok(!file_exists(run, "sock"), "linger 0: the socket is removed");
    }
    run_cleanup(run);

    const char *linger[] = {"path", "/bin/true", "linger", "1", NULL};
    if (ok(shim_start(run, linger), "linger 1: started")) {
        ok(wait_for_file(run, "exit", TIMEOUT_MS), "linger 1: exited");
        ok(!wait_shim_exit(run, 300), "linger 1: the shim waits for a reader");
        ok(wait_shim_exit(run, 5000), "linger 1: ... then gives up");
        ok(!file_exists(run, "sock"), "linger 1: the socket is removed");
    }
    run_cleanup(run);

    /* A background child holding stdout open must not hold up the exit. */
    const char *bg[] = {"path", "/bin/sh", "arg", "-c", "arg", "sleep 100 & echo $!", NULL};
    if (ok(shim_start(run, bg), "background: started")) {
        Output o = {0};
        uint64_t t0 = now_ms();
        ok(run_to_end(run, NULL, &o), "background: got 'X'");
        ok(now_ms() - t0 < 5000, "background: promptly (%llu ms)",
           (unsigned long long)(now_ms() - t0));
        pid_t sleeper = atoi(o.out);
        if (sleeper > 0 && n_strays < sizeof(strays) / sizeof(strays[0]))
            strays[n_strays++] = sleeper;
        output_free(&o);
    }
    run_cleanup(run);
}

static void test_throughput(void)
{
    Run *run = run_new();
    /* The flood starts once we are attached (with nobody attached, the ring would
     * keep only its newest bytes). */
    const char *kv[] = {"path", "/bin/sh", "arg", "-c", "arg", "read x; exec head -c 1G /dev/zero",
                        NULL};
    if (!ok(shim_start(run, kv), "throughput: started"))
        return;
    int fd = shim_connect(run);
    send_text(fd, SHIM_FRAME_STDIN, "\n");
    static uint8_t buf[1 << 20];
    size_t buf_len = 0;
    uint64_t bytes = 0;
    bool exited = false;
    uint64_t t0 = now_ms();
    while (!exited) {
        ssize_t n = read(fd, buf + buf_len, sizeof(buf) - buf_len);
        if (n <= 0)
            break;
        buf_len += (size_t)n;
        size_t pos = 0;
        while (buf_len - pos >= SHIM_FRAME_HEADER) {
            uint32_t len = shim_frame_length(buf + pos);
            if (buf_len - pos < SHIM_FRAME_HEADER + len)
                break;
            if (buf[pos] == SHIM_FRAME_STDOUT)
                bytes += len;
            else if (buf[pos] == SHIM_FRAME_EXIT)
                exited = true;
            pos += SHIM_FRAME_HEADER + len;
        }
        memmove(buf, buf + pos, buf_len - pos);
        buf_len -= pos;
    }
    uint64_t ms = now_ms() - t0;
    close(fd);
    is_u64(bytes, UINT64_C(1) << 30, "throughput: 1 GiB arrived");
    ok(exited, "throughput: then 'X'");
    printf("# throughput: 1 GiB in %llu ms = %.0f MB/s\n", (unsigned long long)ms,
           ms ? (double)(UINT64_C(1) << 30) / 1e6 / ((double)ms / 1000) : 0.0);
    run_cleanup(run);
}

int main(void)
{
    if (!harness_begin())
        return 0;
    test_basic();
    test_start_errors();
    test_signal();
    test_ring();
    test_two_connections();
    test_tty();
    test_binary();
    test_backpressure();
    test_disconnect();
    test_cgroups();
    test_lifetimes();
    test_throughput();
    harness_end();
    return tap_done();
}
