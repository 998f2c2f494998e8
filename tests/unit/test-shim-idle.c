/* Idle cloche-shims (the pool; shim-protocol.h "Idle shims"), both halves: the
 * daemon's proc_idle_spawn()/proc_idle_take() against the built shim, with
 * ordinary processes of this test's own namespaces (as test-shim.c). An idle shim
 * says ready, takes a process directory with its spec inline or in DIR/spec,
 * becomes that process's shim (argv naming the directory) and serves it as any
 * shim; it exits quietly when the daemon's end closes or the message is bad; a
 * killed one is refused at the take, with nothing started.
 *
 * Root only. The built shim's path comes from $CLOCHE_SHIM. */
#include "shim-harness.h"

#include <stdio.h>
#include <string.h>

#include "cloche/proc.h"

/* argv of pid, NUL separators turned to spaces and trailing blanks cut. */
static void argv_text(pid_t pid, char *buf, size_t size)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    buf[0] = '\0';
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    size_t n = fread(buf, 1, size - 1, f);
    fclose(f);
    for (size_t i = 0; i < n; i++)
        if (buf[i] == '\0')
            buf[i] = ' ';
    while (n && buf[n - 1] == ' ')
        n--;
    buf[n] = '\0';
}

/* An idle shim's reaping: this test is its subreaper (it detached from us). */
static bool reaped_within(pid_t pid, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        pid_t r = waitpid(pid, NULL, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD))
            return true;
        if (now_ms() > deadline)
            return false;
        sleep_ms(5);
    }
}

static bool new_dir(Run *run)
{
    run->process = run->shim = -1;
    run->shim_reaped = false;
    snprintf(run->dir, sizeof(run->dir), "/tmp/cloche-test-shim-XXXXXX");
    return mkdtemp(run->dir) != NULL;
}

/* The spec of "sh -c script" against the test's init. */
static char *spec_of(const char *script, size_t *ret_len)
{
    char *const args[] = {(char *)"-c", (char *)script, NULL};
    char *const env[] = {(char *)"PATH=/bin:/usr/bin", NULL};
    ProcUser user = {.uid = 0, .gid = 0};
    char *const cgroups[] = {NULL};
    ProcLaunch l = {.path = "/bin/sh",
                    .args = args,
                    .env = env,
                    .dir = "/",
                    .user = &user,
                    .init_pid = init_pid,
                    .init_start = init_start,
                    .cgroups = cgroups,
                    .linger = 10};
    char *text = NULL;
    if (proc_format_spec(&l, &text, ret_len) < 0)
        abort();
    return text;
}

static void test_take(bool inline_spec)
{
    const char *how = inline_spec ? "inline" : "file";
    int fd = -1;
    pid_t idle = -1;
    if (!ok(proc_idle_spawn(shim_path, "/test/label", &fd, &idle) == 0 && fd >= 0 && idle > 0,
            "%s: an idle shim is ready", how))
        return;
    char text[1024];
    argv_text(idle, text, sizeof(text));
    is_str(text, "cloche-shim --idle /test/label", "%s: its argv names the label", how);

    Run *run = run_new();
    if (!new_dir(run))
        abort();
    size_t len;
    char *spec = spec_of("cat; echo err >&2; exit 3", &len);
    if (!inline_spec) {
        int dirfd = open(run->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ok(atomic_write_volatile_at(dirfd, "spec", spec, len, 0600) == 0, "%s: spec written", how);
        close(dirfd);
    }
    Failure f = {0};
    pid_t pid = -1;
    int r = proc_idle_take(fd, run->dir, inline_spec ? spec : NULL, len, &pid, &f);
    free(spec);
    if (!ok(r == 0 && pid > 0, "%s: the idle shim started the process (%d: %s)", how, r, f.message))
        return;
    run->process = pid;
    run->shim = idle; /* the pid file says so too */
    FILE *pf = fopen((snprintf(text, sizeof(text), "%s/pid", run->dir), text), "re");
    int shim = -1, proc = -1;
    unsigned long long start = 0;
    ok(pf && fscanf(pf, "%d %llu %d", &shim, &start, &proc) == 3, "%s: pid file", how);
    if (pf)
        fclose(pf);
    ok(shim == idle && start == start_time_of(idle) && proc == pid,
       "%s: the pid file names the idle shim and the process", how);
    is_int(file_exists(run, "spec"), !inline_spec, "%s: DIR/spec only when it was sent so", how);
    argv_text(idle, text, sizeof(text));
    char want[128];
    snprintf(want, sizeof(want), "cloche-shim %s", run->dir);
    is_str(text, want, "%s: its argv now names the directory", how);

    Output o = {0};
    ok(run_to_end(run, "hello\n", &o), "%s: got 'X'", how);
    is_str(o.out, "hello\n", "%s: stdin came back on stdout", how);
    is_str(o.err, "err\n", "%s: stderr", how);
    is_str(o.status, "3", "%s: exit status 3", how);
    is_str(file_text(run, "exit"), "3", "%s: exit file", how);
    ok(reaped_within(idle, 5000), "%s: the shim exits once 'X' is delivered", how);
    run->shim_reaped = true;
    output_free(&o);
    run_cleanup(run);
}

static void test_ends(void)
{
    int fd = -1;
    pid_t idle = -1;
    if (!ok(proc_idle_spawn(shim_path, "x", &fd, &idle) == 0, "ends: an idle shim"))
        return;
    close(fd);
    ok(reaped_within(idle, 5000), "ends: it exits when the daemon's end closes");

    if (!ok(proc_idle_spawn(shim_path, "x", &fd, &idle) == 0, "ends: another"))
        return;
    ok(send(fd, "relative/dir", 12, MSG_NOSIGNAL) == 12, "ends: a bad message sent");
    char c;
    ok(recv(fd, &c, 1, 0) == 0, "ends: it hangs up without a start line");
    ok(reaped_within(idle, 5000), "ends: and exits");
    close(fd);

    Run *run = run_new();
    if (!new_dir(run))
        abort();
    if (!ok(proc_idle_spawn(shim_path, "x", &fd, &idle) == 0, "ends: a third"))
        return;
    kill(idle, SIGKILL);
    ok(reaped_within(idle, 5000), "ends: killed while idle");
    size_t len;
    char *spec = spec_of("exit 0", &len);
    Failure f = {0};
    pid_t pid = -1;
    is_int(proc_idle_take(fd, run->dir, spec, len, &pid, &f), -EPIPE,
           "ends: a take of the killed one fails with EPIPE (%s)", f.message);
    ok(!file_exists(run, "pid") && !file_exists(run, "sock"), "ends: nothing was started");
    /* The allowed case in the same test: a live one takes the same directory. */
    ok(proc_idle_spawn(shim_path, "x", &fd, &idle) == 0, "ends: a fresh one");
    ok(proc_idle_take(fd, run->dir, spec, len, &pid, &f) == 0 && pid > 0,
       "ends: which starts the process");
    free(spec);
    run->process = pid;
    run->shim = idle;
    Output o = {0};
    ok(run_to_end(run, "", &o), "ends: got 'X'");
    is_str(o.status, "0", "ends: exit status 0");
    ok(reaped_within(idle, 5000), "ends: the shim exits");
    run->shim_reaped = true;
    output_free(&o);
    run_cleanup(run);
}

int main(void)
{
    if (!harness_begin())
        return 0;
    test_take(true);
    test_take(false);
    test_ends();
    harness_end();
    return tap_done();
}
