/* The seccomp allow-list of unprivileged containers, compiled with libseccomp
 * (include/cloche/security.h). The list follows the syscalls guardian's and
 * Docker's default profiles allow, minus namespace creation, the mount API,
 * keyrings, bpf, perf, userfaultfd, io_uring, kexec, modules, open_by_handle_at,
 * syslog, acct, clock setting, swap and reboot. */
#include <errno.h>
#include <linux/audit.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cloche/cleanup.h"
#include "cloche/fileio.h"
#include "cloche/seccomp-compact.h"
#include "cloche/security.h"

/* CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET (guardian's
 * 0x7C020000 plus NEWCGROUP). */
#define NAMESPACE_FLAGS 0x7E020000ull

/* Unconditionally allowed. Names libseccomp does not know, or that an ABI does
 * not have, are skipped for that ABI. */
static const char *const allowed[] = {
    "_llseek",
    "_newselect",
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "arch_prctl",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "chroot",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "ioctl",
    "ioprio_get",
    "ioprio_set",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "process_vm_readv",
    "process_vm_writev",
    "pselect6",
    "pselect6_time64",
    "ptrace",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "setsid",
    "setsockopt",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
};

/* guardian's personality values: PER_LINUX, PER_LINUX32, and the query. */
static const uint32_t personas[] = {0, 8, 0xffffffff};
#define REFUSED_FAMILY 40 /* AF_VSOCK, which is not namespaced */

static void ctx_releasep(scmp_filter_ctx *ctx)
{
    if (*ctx)
        seccomp_release(*ctx);
}

static int add_rules(scmp_filter_ctx ctx)
{
    int r;
    for (size_t i = 0; i < ELEMENTSOF(allowed); i++) {
        int nr = seccomp_syscall_resolve_name(allowed[i]);
        if (nr == __NR_SCMP_ERROR)
            continue; /* newer than this libseccomp */
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
        if (r < 0 && r != -EDOM)
            return r;
    }
    /* Threads and processes, but no new namespaces. */
    r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                         SCMP_A0(SCMP_CMP_MASKED_EQ, NAMESPACE_FLAGS, 0));
    if (r >= 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(unshare), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, NAMESPACE_FLAGS, 0));
    /* clone3 passes its flags in memory the filter cannot read. */
    if (r >= 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    for (size_t i = 0; r >= 0 && i < ELEMENTSOF(personas); i++)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(personality), 1,
                             SCMP_A0(SCMP_CMP_EQ, personas[i]));
    /* Every socket family but AF_VSOCK (40), which is not namespaced. */
    if (r >= 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
                             SCMP_A0(SCMP_CMP_NE, REFUSED_FAMILY));
    return r;
}

static int export_filter(scmp_filter_ctx ctx, struct sock_fprog *ret)
{
    _cleanup_close_ int fd = memfd_create("cloche-seccomp", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = seccomp_export_bpf(ctx, fd);
    if (r < 0)
        return r;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    size_t size = (size_t)st.st_size;
    if (size == 0 || size % sizeof(struct sock_filter) ||
        size > CONFINE_FILTER_MAX * sizeof(struct sock_filter))
        return -E2BIG;
    _cleanup_free_ struct sock_filter *insns = malloc(size);
    if (!insns)
        return -ENOMEM;
    if (pread(fd, insns, size, 0) != (ssize_t)size)
        return -EIO;
    *ret = (struct sock_fprog){.len = (unsigned short)(size / sizeof(struct sock_filter)),
                               .filter = TAKE_PTR(insns)};
    return 0;
}

#if defined(__x86_64__)
/* Can this daemon's descendants make x32 system calls? Not when the kernel was
 * built or booted without the ABI, nor under a filter of our own parent's that
 * refuses it: a child tries one (it may be killed for it). */
static bool x32_usable(void)
{
    pid_t pid = fork();
    if (pid < 0)
        return true; /* unknown: keep the ABI's rules */
    if (pid == 0)
        _exit(syscall(0x40000000 /* __X32_SYSCALL_BIT */ | SYS_getpid) > 0 ? 0 : 1);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return true;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}
#endif

#define ABI_SPAN 2048 /* above every ABI's last number */

typedef struct AbiNumbers {
    SeccompAbi abi;
    int allowed[ABI_SPAN];
} AbiNumbers;

/* ref's answer for one call of an ABI with arg 0, or 0 (never an answer it
 * gives: that would be a kill) where it cannot be evaluated. */
static uint32_t answer(const struct sock_fprog *ref, uint32_t arch, uint32_t nr, uint64_t arg0)
{
    struct seccomp_data d = {.nr = (int)nr, .arch = arch};
    d.args[0] = arg0;
    uint32_t action;
    return seccomp_bpf_eval(ref, &d, &action) < 0 ? 0 : action;
}

/* What libseccomp's program ref decides for each number of an ABI, read from the
 * program itself (libseccomp knows, for instance, i386's socket calls by two
 * numbers each): allowed whatever the arguments, or one of the argument tests.
 * -EPROTO for a number whose answers match none of those. */
static int abi_numbers(const struct sock_fprog *ref, uint32_t arch, uint32_t nr_bit, bool wide,
                       AbiNumbers *ret)
{
    const uint32_t allow = SECCOMP_RET_ALLOW, refuse = SECCOMP_RET_ERRNO | EPERM;
    SeccompAbi *abi = &ret->abi;
    *abi = (SeccompAbi){.arch = arch,
                        .nr_bit = nr_bit,
                        .wide_args = wide,
                        .clone = -1,
                        .unshare = -1,
                        .clone3 = -1,
                        .personality = -1,
                        .socket = -1};
    for (int i = 0; i < ABI_SPAN; i++) {
        uint32_t nr = nr_bit | (uint32_t)i;
        uint32_t zero = answer(ref, arch, nr, 0), ones = answer(ref, arch, nr, ~0ull);
        uint32_t ns = answer(ref, arch, nr, NAMESPACE_FLAGS & -NAMESPACE_FLAGS);
        uint32_t family = answer(ref, arch, nr, REFUSED_FAMILY), other = answer(ref, arch, nr, 1);
        int *slot = NULL;
        if (zero == allow && ones == allow && ns == allow && family == allow && other == allow)
            ret->allowed[abi->n_allowed++] = i;
        else if (zero == refuse && ones == refuse && ns == refuse && family == refuse &&
                 other == refuse)
            continue;
        else if (zero == (SECCOMP_RET_ERRNO | ENOSYS) && ones == zero && family == zero)
            slot = &abi->clone3;
        else if (zero == allow && ns == refuse && family == allow && other == allow)
            slot = abi->clone < 0 ? &abi->clone : &abi->unshare;
        else if (zero == allow && answer(ref, arch, nr, 0xffffffffu) == allow && other == refuse &&
                 family == refuse)
            slot = &abi->personality;
        else if (zero == allow && other == allow && family == refuse)
            slot = &abi->socket;
        else
            return -EPROTO;
        if (slot && *slot >= 0)
            return -EPROTO; /* a second number of the same kind */
        if (slot)
            *slot = i;
    }
    abi->allowed = ret->allowed;
    return 0;
}

/* The same decisions as libseccomp's program ref, in fewer instructions
 * (seccomp-compact.h), or ref itself where they would differ. */
static int shorten(struct sock_fprog *ref, bool x32)
{
    _cleanup_free_ AbiNumbers *abis = calloc(3, sizeof(AbiNumbers));
    if (!abis)
        return -ENOMEM;
    size_t n = 0;
#if defined(__x86_64__)
    if (abi_numbers(ref, AUDIT_ARCH_X86_64, 0, true, &abis[n++]) < 0 ||
        (x32 && abi_numbers(ref, AUDIT_ARCH_X86_64, 0x40000000u, false, &abis[n++]) < 0) ||
        abi_numbers(ref, AUDIT_ARCH_I386, 0, false, &abis[n++]) < 0)
        return 0;
#else
    (void)x32;
    return 0;
#endif
    SeccompAbi list[3];
    for (size_t i = 0; i < n; i++)
        list[i] = abis[i].abi;
    /* The answer for another arch, as libseccomp's program gives it. */
    uint32_t badarch;
    struct seccomp_data other = {.arch = AUDIT_ARCH_AARCH64};
    if (seccomp_bpf_eval(ref, &other, &badarch) < 0)
        return 0;
    SeccompPolicy policy = {
        .abis = list,
        .n_abis = n,
        .namespace_flags = (uint32_t)NAMESPACE_FLAGS,
        .personas = personas,
        .n_personas = ELEMENTSOF(personas),
        .refused_family = REFUSED_FAMILY,
        .default_action = SECCOMP_RET_ERRNO | EPERM,
        .badarch_action = badarch,
    };
    struct sock_fprog compact;
    if (seccomp_compact_build(&policy, &compact) < 0)
        return 0;
    if (compact.len >= ref->len || !seccomp_programs_agree(ref, &compact, &policy, NULL)) {
        free(compact.filter);
        return 0;
    }
    free(ref->filter);
    *ref = compact;
    return 1;
}

int security_profile_build(SecurityProfile *ret)
{
#if defined(__x86_64__)
    return security_profile_build_for(ret, x32_usable());
#else
    return security_profile_build_for(ret, false);
#endif
}

int security_profile_build_for(SecurityProfile *ret, bool x32)
{
    _cleanup_(ctx_releasep) scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    if (!ctx)
        return -ENOMEM;
    /* A process may switch ABIs (int 0x80, x32 syscall numbers): the filter
     * covers all three, and kills anything else. Where the kernel has no x32
     * (Debian's default), its third of the program would only let calls through
     * to the kernel's ENOSYS: every x32 call gets that ENOSYS from the filter
     * instead, and each process loads a third fewer instructions. */
    int r = 0;
#if defined(__x86_64__)
    r = seccomp_arch_add(ctx, SCMP_ARCH_X86);
    if ((r >= 0 || r == -EEXIST) && x32)
        r = seccomp_arch_add(ctx, SCMP_ARCH_X32);
    else if (r >= 0 || r == -EEXIST)
        r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_ERRNO(ENOSYS));
    if (r < 0 && r != -EEXIST)
        return r;
#endif
    /* Filters are installed without no_new_privs unless asked: the processes
     * hold CAP_SYS_ADMIN in their namespace at that point. */
    r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
    if (r < 0)
        return r;
    /* A binary tree of the syscall numbers instead of a linear list: every
     * allowed call of the container pays a few comparisons, not hundreds. */
    r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    if (r < 0)
        return r;
    r = add_rules(ctx);
    if (r < 0)
        return r;
    *ret = (SecurityProfile){0};
    r = export_filter(ctx, &ret->filter);
    if (r < 0)
        return r;
    ret->reference_len = ret->filter.len;
    r = shorten(&ret->filter, x32);
    if (r < 0) {
        security_profile_clear(ret);
        return r;
    }
    ret->compact = r > 0;
    return 0;
}

void security_profile_clear(SecurityProfile *p)
{
    free(p->filter.filter);
    p->filter.filter = NULL;
    p->filter.len = 0;
}

int security_profile_save(const SecurityProfile *p, int dirfd, const char *name)
{
    return atomic_write_at(dirfd, name, p->filter.filter,
                           p->filter.len * sizeof(struct sock_filter), 0600);
}
