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
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/sched.h>

#include "tap.h"

#include "cloche/cleanup.h"
#include "cloche/confine.h"
#include "cloche/seccomp-compact.h"
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

#define BAD 0xdeadu

static uint32_t decide(const struct sock_fprog *p, uint32_t arch, uint32_t nr, uint64_t a0)
{
    struct seccomp_data d = {.nr = (int)nr, .arch = arch};
    d.args[0] = a0;
    uint32_t r;
    return seccomp_bpf_eval(p, &d, &r) < 0 ? BAD : r;
}

#define ALLOW SECCOMP_RET_ALLOW
#define EPERM_ (SECCOMP_RET_ERRNO | EPERM)
#define ENOSYS_ (SECCOMP_RET_ERRNO | ENOSYS)

/* The shorter program (seccomp-compact.h) is the one kept, and decides as the
 * profile says, through each ABI; the check that guards it sees a single
 * changed answer; the evaluator refuses what the kernel would. */
static void test_compact(void)
{
#if defined(__x86_64__)
    const uint32_t X64 = AUDIT_ARCH_X86_64, I386 = AUDIT_ARCH_I386, X32 = 0x40000000u;
    for (int x32 = 0; x32 < 2; x32++) {
        SecurityProfile p = {0};
        is_int(security_profile_build_for(&p, x32), 0, "x32 %d: the profile compiles", x32);
        ok(p.compact && p.filter.len * 2 < p.reference_len,
           "x32 %d: the shorter program is kept: %u instructions for libseccomp's %u", x32,
           p.filter.len, p.reference_len);
        const struct sock_fprog *f = &p.filter;
        const struct {
            uint32_t arch, nr;
            uint64_t a0, want;
            const char *what;
        } cases[] = {
            {X64, 39, 0, ALLOW, "getpid"},
            {X64, 0, 0, ALLOW, "read"},
            {X64, 56, 0x50f00, ALLOW, "clone of a thread"},
            {X64, 56, CLONE_NEWUSER, EPERM_, "clone of a user namespace"},
            {X64, 272, CLONE_FILES, ALLOW, "unshare of the file table"},
            {X64, 272, CLONE_NEWNET, EPERM_, "unshare of the network"},
            {X64, 435, 0, ENOSYS_, "clone3"},
            {X64, 135, 8, ALLOW, "personality PER_LINUX32"},
            {X64, 135, 0xffffffff, ALLOW, "personality query"},
            {X64, 135, 0x40000, EPERM_, "personality ADDR_NO_RANDOMIZE"},
            {X64, 135, (1ull << 32) | 8, EPERM_, "personality with a high word"},
            {X64, 41, 2, ALLOW, "socket AF_INET"},
            {X64, 41, 40, EPERM_, "socket AF_VSOCK"},
            {X64, 41, (1ull << 32) | 40, ALLOW, "socket 40 with a high word (not AF_VSOCK)"},
            {X64, 165, 0, EPERM_, "mount"},
            {X64, 250, 0, EPERM_, "keyctl"},
            {X64, 321, 0, EPERM_, "bpf"},
            {X64, 1000, 0, EPERM_, "a number past the last"},
            {X64, 0xffffffff, 0, EPERM_, "-1"},
            {I386, 20, 0, ALLOW, "i386 getpid"},
            {I386, 21, 0, EPERM_, "i386 mount"},
            {I386, 120, CLONE_NEWUSER, EPERM_, "i386 clone of a user namespace"},
            {I386, 359, 40, EPERM_, "i386 socket AF_VSOCK"},
            {I386, 359, 2, ALLOW, "i386 socket AF_INET"},
            {I386, 102, 1, ALLOW, "i386 socketcall"},
            {X64, X32 | 39, 0, x32 ? ALLOW : ENOSYS_, "x32 getpid"},
            {X64, X32 | 165, 0, x32 ? EPERM_ : ENOSYS_, "x32 mount"},
            {AUDIT_ARCH_AARCH64, 39, 0, x32 ? SECCOMP_RET_KILL_THREAD : ENOSYS_, "another arch"},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
            is_int(decide(f, cases[i].arch, cases[i].nr, cases[i].a0), cases[i].want, "x32 %d: %s",
                   x32, cases[i].what);

        /* One answer changed: the check sees it. */
        SeccompAbi abis[2] = {{.arch = X64}, {.arch = I386}};
        static const uint32_t personas[] = {0, 8, 0xffffffff};
        SeccompPolicy policy = {.abis = abis,
                                .n_abis = 2,
                                .namespace_flags = 0x7E020000u,
                                .personas = personas,
                                .n_personas = 3,
                                .refused_family = 40};
        ok(seccomp_programs_agree(f, f, &policy, NULL), "x32 %d: a program agrees with itself",
           x32);
        struct sock_filter *copy = malloc(f->len * sizeof(*copy));
        memcpy(copy, f->filter, f->len * sizeof(*copy));
        struct sock_fprog changed = {.len = f->len, .filter = copy};
        for (size_t i = 0; i < changed.len; i++)
            if (copy[i].code == (BPF_RET | BPF_K) && copy[i].k == ENOSYS_) {
                copy[i].k = EPERM_; /* the first ENOSYS answer: clone3 in x86_64's part */
                break;
            }
        struct seccomp_data diff = {0};
        bool same = seccomp_programs_agree(f, &changed, &policy, &diff);
        ok(!same, "x32 %d: one changed answer is seen (arch %x, number %d)", x32, diff.arch,
           diff.nr);
        free(copy);
        security_profile_clear(&p);
    }

    /* The evaluator: what the kernel would refuse, it refuses. */
    struct sock_filter past_end[] = {BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 1, 5, 0),
                                     BPF_STMT(BPF_RET | BPF_K, ALLOW)};
    struct sock_filter no_ret[] = {BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0)};
    struct sock_filter outside[] = {BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 64),
                                    BPF_STMT(BPF_RET | BPF_K, ALLOW)};
    struct sock_fprog progs[] = {{2, past_end}, {1, no_ret}, {2, outside}};
    is_int(seccomp_bpf_check(&progs[0]), -EINVAL, "a jump past the end is refused unrun");
    is_int(seccomp_bpf_check(&progs[1]), -EINVAL, "a program that does not end in a return");
    is_int(decide(&progs[1], X64, 1, 0), BAD, "which cannot run either");
    is_int(decide(&progs[2], X64, 1, 0), BAD, "a load outside the call's data is refused");

    /* Ranges: numbers 0-2, 5, 7-9 of a made-up ABI. */
    static const int some[] = {9, 0, 1, 2, 5, 7, 8};
    SeccompAbi abi = {.arch = X64,
                      .allowed = some,
                      .n_allowed = 7,
                      .clone = -1,
                      .unshare = -1,
                      .clone3 = -1,
                      .personality = -1,
                      .socket = -1};
    SeccompPolicy one = {.abis = &abi,
                         .n_abis = 1,
                         .default_action = EPERM_,
                         .badarch_action = SECCOMP_RET_KILL_PROCESS};
    struct sock_fprog small = {0};
    is_int(seccomp_compact_build(&one, &small), 0, "a program of three runs");
    bool right = true;
    for (uint32_t nr = 0; nr < 20; nr++) {
        bool in = nr <= 2 || nr == 5 || (nr >= 7 && nr <= 9);
        right &= decide(&small, X64, nr, 0) == (in ? ALLOW : EPERM_);
    }
    ok(right && decide(&small, I386, 0, 0) == SECCOMP_RET_KILL_PROCESS,
       "its ranges decide 0..19 and another arch as given (%u instructions)", small.len);
    free(small.filter);
#else
    ok(true, "# SKIP the shorter program is for x86_64");
#endif
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
    test_compact();
    return tap_done();
}
