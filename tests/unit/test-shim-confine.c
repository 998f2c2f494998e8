/* cloche-shim's process set-up and confinement (ids, rlimits, the working
 * directory, capabilities, the seccomp filter, bad confine records), against
 * ordinary processes of this test's own namespaces (shim-harness.h). Root only. */
#include "shim-harness.h"

static void test_process_setup(void)
{
    Run *run = run_new();
    Output o = {0};
    const char *ids[] = {"path",  "/bin/sh",
                         "arg",   "-c",
                         "arg",   "id -u; id -g; id -G",
                         "env",   "PATH=/bin:/usr/bin",
                         "uid",   "1234",
                         "gid",   "2345",
                         "group", "3456",
                         "group", "4567",
                         NULL};
    if (shim_start(run, ids) && run_to_end(run, NULL, &o))
        is_str(o.out, "1234\n2345\n2345 3456 4567\n", "setup: uid, gid and groups");
    else
        ok(0, "setup: ids");
    output_free(&o);
    run_cleanup(run);

    const char *limits[] = {
        "path",   "/bin/sh",   "arg",    "-c",        "arg", "ulimit -n; ulimit -c",
        "rlimit", "7 100 100", "rlimit", "4 inf inf", NULL};
    if (shim_start(run, limits) && run_to_end(run, NULL, &o))
        is_str(o.out, "100\nunlimited\n", "setup: rlimits");
    else
        ok(0, "setup: rlimits");
    output_free(&o);
    run_cleanup(run);

    const char *dir[] = {"path", "/bin/pwd", "dir", "/tmp", NULL};
    if (shim_start(run, dir) && run_to_end(run, NULL, &o))
        is_str(o.out, "/tmp\n", "setup: working directory");
    else
        ok(0, "setup: dir");
    output_free(&o);
    run_cleanup(run);

    /* A missing working directory is created (mkdir -p, mode 0755), as guardian. */
    char base[] = "/tmp/cloche-test-shim-dir-XXXXXX", missing[64], expect[80];
    if (!mkdtemp(base))
        abort();
    snprintf(missing, sizeof(missing), "%s/a/b", base);
    snprintf(expect, sizeof(expect), "%s\n", missing);
    const char *nodir[] = {"path", "/bin/pwd", "dir", missing, NULL};
    struct stat dst = {0};
    if (shim_start(run, nodir) && run_to_end(run, NULL, &o))
        is_str(o.out, expect, "setup: a missing directory is created");
    else
        ok(0, "setup: missing dir");
    ok(stat(missing, &dst) == 0 && S_ISDIR(dst.st_mode) && (dst.st_mode & 07777) == 0755,
       "setup: created with mode 0755");
    output_free(&o);
    run_cleanup(run);
    snprintf(missing, sizeof(missing), "%s/a/b", base);
    rmdir(missing);
    snprintf(missing, sizeof(missing), "%s/a", base);
    rmdir(missing);
    rmdir(base);

    /* Searched in the spec's PATH; argv[0] is the name as given; percent-encoding. */
    const char *env[] = {"path", "sh",
                         "arg",  "-c",
                         "arg",  "printf '%s|%s|%s' \"$FOO\" \"$0\" $#",
                         "arg",  "a b",
                         "env",  "PATH=/cloche-none:/bin:/usr/bin",
                         "env",  "FOO=x%y\nz\t",
                         NULL};
    if (shim_start(run, env) && run_to_end(run, NULL, &o))
        is_str(o.out, "x%y\nz\t|a b|0", "setup: PATH search, env and percent-encoding");
    else
        ok(0, "setup: env");
    output_free(&o);
    run_cleanup(run);

    /* Nothing of the shim's (socket, pidfd, directory, pipes) leaks into the process. */
    const char *fds[] = {"path", "/bin/sh", "arg", "-c", "arg", "ls /proc/$$/fd", NULL};
    if (shim_start(run, fds) && run_to_end(run, NULL, &o))
        is_str(o.out, "0\n1\n2\n", "setup: the process has only stdin, stdout and stderr");
    else
        ok(0, "setup: fds");
    output_free(&o);
    run_cleanup(run);

    const char *umask_kv[] = {"path", "/bin/sh", "arg", "-c", "arg", "umask", NULL};
    if (shim_start(run, umask_kv) && run_to_end(run, NULL, &o))
        is_str(o.out, "0022\n", "setup: umask 022");
    else
        ok(0, "setup: umask");
    output_free(&o);
    run_cleanup(run);
}

/* The `confine` and `seccomp` records: the process gets the bounding set, the
 * capabilities (none for a non-root user) and the filter the daemon compiled;
 * a bad record or a missing filter file stops the start. */
static void test_confine(void)
{
    SecurityProfile profile = {0};
    char dir[] = "/tmp/cloche-test-shim-seccomp.XXXXXX";
    if (security_profile_build(&profile) < 0 || !mkdtemp(dir)) {
        ok(0, "confine: compile the filter");
        return;
    }
    int dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/seccomp.bpf", dir);
    ok(security_profile_save(&profile, dirfd, "seccomp.bpf") == 0, "confine: filter saved");

    Run *run = run_new();
    Output o = {0};
    const char *script = "grep -E '^(CapBnd|CapEff|Seccomp):' /proc/self/status | tr -d '\\t'; "
                         "unshare -U true 2>/dev/null && echo unshared || echo refused";
    const char *root[] = {
        "path",    "/bin/sh",    "arg",     "-c", "arg", script, "env", "PATH=/bin:/usr/bin",
        "confine", "a80425fb 0", "seccomp", path, NULL};
    if (shim_start(run, root) && run_to_end(run, NULL, &o))
        is_str(o.out, "CapEff:00000000a80425fb\nCapBnd:00000000a80425fb\nSeccomp:2\nrefused\n",
               "confine: root gets the 14 and the filter");
    else
        ok(0, "confine: root");
    output_free(&o);
    run_cleanup(run);

    const char *user[] = {
        "path", "/bin/sh", "arg", "-c",   "arg",     script,       "env",     "PATH=/bin:/usr/bin",
        "uid",  "1234",    "gid", "1234", "confine", "a80425fb 1", "seccomp", path,
        NULL};
    if (shim_start(run, user) && run_to_end(run, NULL, &o))
        is_str(o.out, "CapEff:0000000000000000\nCapBnd:00000000a80425fb\nSeccomp:2\nrefused\n",
               "confine: another user gets no capability");
    else
        ok(0, "confine: user");
    output_free(&o);
    run_cleanup(run);

    /* Without the records: what the ids give (the allowed case of the above). */
    const char *plain[] = {
        "path", "/bin/sh", "arg", "-c", "arg", script, "env", "PATH=/bin:/usr/bin", NULL};
    if (shim_start(run, plain) && run_to_end(run, NULL, &o)) {
        if (!ok(strstr(o.out, "Seccomp:0\n") && !strstr(o.out, "CapBnd:00000000a80425fb"),
                "confine: without records, no filter and the full bounding set"))
            for (char *line = strtok(o.out, "\n"); line; line = strtok(NULL, "\n"))
                printf("#   %s\n", line);
    } else
        ok(0, "confine: plain");
    output_free(&o);
    run_cleanup(run);

    const char *bad[] = {"path", "/bin/true", "confine", "zz", NULL};
    shim_start_spec(run, bad, true);
    ok(strncmp(run->line, "err 22 ", 7) == 0, "confine: bad record: err 22 ('%s')", run->line);
    run_cleanup(run);
    const char *nofile[] = {"path", "/bin/true", "seccomp", "/nonexistent/seccomp.bpf", NULL};
    shim_start_spec(run, nofile, true);
    ok(strncmp(run->line, "err 2 ", 6) == 0, "confine: missing filter: err 2 ('%s')", run->line);
    run_cleanup(run);

    unlinkat(dirfd, "seccomp.bpf", 0);
    close(dirfd);
    rmdir(dir);
    security_profile_clear(&profile);
}

/* Groups of our own in two hierarchies (v1 pids, and the v2 one), if present. */

int main(void)
{
    if (!harness_begin())
        return 0;
    test_confine();
    test_process_setup();
    harness_end();
    return tap_done();
}
