/* security and confine: the seccomp filter compiled with libseccomp, saved and
 * read back as cloche-shim and cloche-tar read it, then installed in a child
 * (real kernel, no mocks): what it refuses next to what it allows, through the
 * x86_64 and the i386 ABI; the capability plan; the text form of the plan. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/sched.h>

#include "tap.h"

#include "cloche/cleanup.h"
#include "cloche/confine.h"
#include "cloche/security.h"

/* Codes the child exits with: bit i set = check i failed. */
enum {
    CHECK_GETPID = 1 << 0,
    CHECK_UNSHARE_USER = 1 << 1,
    CHECK_UNSHARE_FILES = 1 << 2,
    CHECK_CLONE3 = 1 << 3,
    CHECK_MOUNT = 1 << 4,
    CHECK_KEYCTL = 1 << 5,
    CHECK_PERSONALITY = 1 << 6,
    CHECK_I386_GETPID = 1 << 7,
    CHECK_I386_MOUNT = 1 << 8,
    CHECK_CAPS = 1 << 9,
    CHECK_LOAD = 1 << 10,
    CHECK_X32_GETPID = 1 << 11,
    CHECK_X32_MOUNT = 1 << 12,
};

#if defined(__x86_64__)
static long int80(long nr, long a, long b)
{
    long ret;
    __asm__ volatile("int $0x80"
                     : "=a"(ret)
                     : "a"(nr), "b"(a), "c"(b), "d"(0), "S"(0), "D"(0)
                     : "memory", "r8", "r9", "r10", "r11");
    return ret;
}
#endif

static int refused(long r, int want)
{
    return r < 0 && errno == want;
}

static int confined_child(const ConfinePlan *plan)
{
    int failed = 0;
    /* A mount namespace of its own, so that a filter that let mount() through
     * would change nothing outside this child. */
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return CHECK_LOAD;
    if (confine_drop_bounding(plan) < 0 || confine_load_filter(plan) < 0)
        return CHECK_LOAD;
    if (confine_set_caps(plan, true) < 0)
        failed |= CHECK_CAPS;
    struct __user_cap_header_struct head = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &head, data) < 0 ||
        ((uint64_t)data[1].effective << 32 | data[0].effective) & ~CONFINE_CAPS_UNPRIVILEGED ||
        prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0) != 0 ||
        prctl(PR_CAPBSET_READ, CAP_CHOWN, 0, 0, 0) != 1)
        failed |= CHECK_CAPS;
    if (getpid() <= 0)
        failed |= CHECK_GETPID;
    if (!refused(unshare(CLONE_NEWUSER), EPERM))
        failed |= CHECK_UNSHARE_USER;
    if (unshare(CLONE_FILES) < 0)
        failed |= CHECK_UNSHARE_FILES;
    struct clone_args args = {.exit_signal = SIGCHLD};
    if (!refused(syscall(SYS_clone3, &args, sizeof(args)), ENOSYS))
        failed |= CHECK_CLONE3;
    if (!refused(mount("none", "/", "tmpfs", 0, NULL), EPERM))
        failed |= CHECK_MOUNT;
    if (!refused(syscall(SYS_keyctl, 0, -3, 0, 0, 0), EPERM))
        failed |= CHECK_KEYCTL;
    if (syscall(SYS_personality, 0xffffffff) < 0 ||
        !refused(syscall(SYS_personality, 0x40000), EPERM))
        failed |= CHECK_PERSONALITY;
#if defined(__x86_64__)
    /* x32: an allowed call goes through (to ENOSYS where the kernel has no x32,
     * which the filter then answers itself), a refused one never succeeds, and
     * nothing kills the process. */
    long x32_pid = syscall(0x40000000 | SYS_getpid);
    if (x32_pid >= 0 ? x32_pid != getpid() : errno != ENOSYS)
        failed |= CHECK_X32_GETPID;
    if (syscall(0x40000000 | SYS_mount, "none", "/", "tmpfs", 0, NULL) >= 0 ||
        (errno != EPERM && errno != ENOSYS))
        failed |= CHECK_X32_MOUNT;
    long pid = int80(20, 0, 0); /* i386 getpid */
    if (pid != -ENOSYS) {
        if (pid != getpid())
            failed |= CHECK_I386_GETPID;
        if (int80(21, 0, 0) != -EPERM) /* i386 mount */
            failed |= CHECK_I386_MOUNT;
    }
#endif
    return failed;
}

static void test_filter(void)
{
    SecurityProfile p = {0};
    is_int(security_profile_build(&p), 0, "the profile compiles");
    ok(p.filter.len > 100 && p.filter.len <= CONFINE_FILTER_MAX, "it has %u instructions",
       p.filter.len);

    char dir[] = "/tmp/cloche-test-security.XXXXXX";
    if (!mkdtemp(dir)) {
        ok(false, "mkdtemp: %s", strerror(errno));
        return;
    }
    _cleanup_close_ int dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    is_int(security_profile_save(&p, dirfd, "seccomp.bpf"), 0, "saved");
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/seccomp.bpf", dir);
    struct sock_fprog loaded = {0};
    is_int(confine_filter_load(path, &loaded), 0, "read back as the helpers read it");
    ok(loaded.len == p.filter.len &&
           memcmp(loaded.filter, p.filter.filter, p.filter.len * sizeof(struct sock_filter)) == 0,
       "the same program");
    unlinkat(dirfd, "seccomp.bpf", 0);
    /* A file that is not a whole number of instructions is refused. */
    int fd = openat(dirfd, "bad", O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    ok(fd >= 0 && write(fd, "1234567", 7) == 7, "a bad file");
    close(fd);
    snprintf(path, sizeof(path), "%s/bad", dir);
    struct sock_fprog bad = {0};
    is_int(confine_filter_load(path, &bad), -EINVAL, "a bad file is refused");
    unlinkat(dirfd, "bad", 0);
    rmdir(dir);

    if (geteuid() != 0) {
        ok(true, "# SKIP installing the filter needs root");
    } else {
        ConfinePlan plan = {.caps = CONFINE_CAPS_UNPRIVILEGED, .filter = &loaded};
        pid_t pid = fork();
        if (pid == 0)
            _exit(confined_child(&plan));
        int st = 0;
        waitpid(pid, &st, 0);
        is_int(WIFEXITED(st) ? WEXITSTATUS(st) : -1, 0,
               "in a confined child: namespaces, mount, keyctl refused (also via int 0x80 and "
               "x32), "
               "clone3 ENOSYS, the rest allowed, the 14 capabilities (failed checks as bits)");
    }
    confine_filter_free(&loaded);
    security_profile_clear(&p);
}

static void test_parse(void)
{
    ConfinePlan plan = {0};
    is_int(confine_parse("a80425fb 1", &plan), 0, "parse");
    ok(plan.caps == CONFINE_CAPS_UNPRIVILEGED && plan.no_new_privs, "caps and nnp");
    is_int(confine_parse("3fffffffff 0", &plan), 0, "parse privileged");
    ok(plan.caps == CONFINE_CAPS_PRIVILEGED && !plan.no_new_privs, "privileged caps");
    static const char *const bad[] = {"", "a80425fb", "a80425fb 2", "zz 1", "a80425fb 1 ", "1  1"};
    for (size_t i = 0; i < ELEMENTSOF(bad); i++)
        is_int(confine_parse(bad[i], &plan), -EINVAL, "refused: '%s'", bad[i]);
}

int main(void)
{
    test_parse();
    test_filter();
    return tap_done();
}
