/* cloche-payload probe: try what a confined container must not do, and report
 * each attempt on a line of its own:
 *
 *   NAME allowed
 *   NAME refused ERRNO          (the errno's name, e.g. EPERM)
 *
 * plus facts: "capbnd HEX", "capeff HEX", "capprm HEX", "capinh HEX",
 * "capamb HEX", "seccomp N", "nonewprivs N" (from /proc/self/status) and, per
 * path of the masked list, "masked PATH empty" or "masked PATH readable N"
 * (bytes or entries read) or "masked PATH missing". Exit 0. The integration
 * tests (tests/integration/test_security.py) decide what is expected; the probe
 * only reports. Attempts that succeed are undone where they leave something. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <linux/perf_event.h>
#include <linux/sched.h>

#include "probe.h"

static const char *errno_name(int e)
{
    static const struct {
        int e;
        const char *name;
    } names[] = {{EPERM, "EPERM"},     {ENOSYS, "ENOSYS"}, {EACCES, "EACCES"},
                 {EINVAL, "EINVAL"},   {EFAULT, "EFAULT"}, {ENOENT, "ENOENT"},
                 {EBADF, "EBADF"},     {EROFS, "EROFS"},   {ESRCH, "ESRCH"},
                 {ENOMEM, "ENOMEM"},   {EBUSY, "EBUSY"},   {ENODEV, "ENODEV"},
                 {ENOTDIR, "ENOTDIR"}, {EEXIST, "EEXIST"}, {EOPNOTSUPP, "EOPNOTSUPP"}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].e == e)
            return names[i].name;
    static char buf[16];
    snprintf(buf, sizeof(buf), "E%d", e);
    return buf;
}

/* r < 0 with errno set = refused; anything else allowed. */
static void report(const char *name, long r)
{
    if (r < 0)
        printf("%s refused %s\n", name, errno_name(errno));
    else
        printf("%s allowed\n", name);
}

/* A system call through the i386 ABI. Returns the raw result (-errno on error). */
static long int80(long nr, long a, long b, long c, long d, long e)
{
#if defined(__x86_64__)
    long ret;
    __asm__ volatile("int $0x80"
                     : "=a"(ret)
                     : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e)
                     : "memory", "r8", "r9", "r10", "r11");
    return ret;
#else
    (void)nr, (void)a, (void)b, (void)c, (void)d, (void)e;
    return -ENOSYS;
#endif
}

static void report_raw(const char *name, long r)
{
    if (r < 0 && r > -4096) {
        errno = (int)-r;
        report(name, -1);
    } else {
        report(name, 0);
    }
}

static void status_facts(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    if (!f)
        return;
    char line[256];
    static const struct {
        const char *key, *name;
    } keys[] = {{"CapBnd:", "capbnd"},        {"CapEff:", "capeff"}, {"CapPrm:", "capprm"},
                {"CapInh:", "capinh"},        {"CapAmb:", "capamb"}, {"Seccomp:", "seccomp"},
                {"NoNewPrivs:", "nonewprivs"}};
    while (fgets(line, sizeof(line), f))
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
            if (strncmp(line, keys[i].key, strlen(keys[i].key)) == 0) {
                char *v = line + strlen(keys[i].key);
                v += strspn(v, " \t");
                printf("%s %s", keys[i].name, v);
            }
    fclose(f);
}

/* Try to add each capability outside the bounding set to the permitted and
 * effective sets: "capraise N allowed|refused ERRNO". */
static void capabilities(void)
{
    for (int cap = 0; cap < 64; cap++) {
        int in = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
        if (in < 0)
            break;
        if (in == 1)
            continue;
        struct __user_cap_header_struct head = {.version = _LINUX_CAPABILITY_VERSION_3};
        struct __user_cap_data_struct data[2];
        if (syscall(SYS_capget, &head, data) < 0)
            continue;
        data[cap / 32].permitted |= 1u << (cap % 32);
        data[cap / 32].effective |= 1u << (cap % 32);
        char name[32];
        snprintf(name, sizeof(name), "capraise %d", cap);
        report(name, syscall(SYS_capset, &head, data));
    }
}

/* Each in a child, so that an allowed unshare changes nothing here. */
static void try_unshare(const char *name, int flags)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(unshare(flags) < 0 ? errno : 0);
    int st = 0;
    waitpid(pid, &st, 0);
    int e = WIFEXITED(st) ? WEXITSTATUS(st) : EINTR;
    errno = e;
    report(name, e ? -1 : 0);
}

static void try_clone(void)
{
    /* Raw clone with a namespace flag: the filter sees the flags. */
    long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid((pid_t)pid, NULL, 0);
    report("clone_newuser", pid);
    struct clone_args args = {.exit_signal = SIGCHLD};
    pid = syscall(SYS_clone3, &args, sizeof(args));
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid((pid_t)pid, NULL, 0);
    report("clone3", pid);
    pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid((pid_t)pid, NULL, 0);
    report("clone_plain", pid);
}

static void mounts(void)
{
    mkdir("/tmp/probe-mnt", 0700);
    long r = mount("tmpfs", "/tmp/probe-mnt", "tmpfs", 0, NULL);
    report("mount_tmpfs", r);
    if (r == 0)
        umount2("/tmp/probe-mnt", MNT_DETACH);
    r = syscall(SYS_fsopen, "tmpfs", 0);
    report("fsopen", r);
    if (r >= 0)
        close((int)r);
    r = syscall(SYS_open_tree, AT_FDCWD, "/tmp", 1 /* OPEN_TREE_CLONE */);
    report("open_tree", r);
    if (r >= 0)
        close((int)r);
    report("move_mount", syscall(SYS_move_mount, -1, "", -1, "", 0));
    report("fsmount", syscall(SYS_fsmount, -1, 0, 0));
    report("umount2",
           umount2("/proc", MNT_DETACH) < 0 && errno == EINVAL ? 0 : umount2("/nonexistent", 0));
    report("pivot_root", syscall(SYS_pivot_root, "/tmp", "/tmp"));
    rmdir("/tmp/probe-mnt");
}

static void kernel_interfaces(void)
{
    report("keyctl", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0, 0, 0));
    /* Key types that do not exist: where allowed, nothing is added (ENODEV). */
    report("add_key", syscall(SYS_add_key, "cloche-probe", "probe", "x", 1, -3 /* session */));
    report("request_key", syscall(SYS_request_key, "cloche-probe", "probe", NULL, 0));
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 4;
    attr.max_entries = 1;
    long r = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr));
    report("bpf", r);
    if (r >= 0)
        close((int)r);
    struct perf_event_attr pe = {.type = PERF_TYPE_SOFTWARE,
                                 .size = sizeof(pe),
                                 .config = PERF_COUNT_SW_CPU_CLOCK,
                                 .disabled = 1,
                                 .exclude_kernel = 1};
    r = syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0);
    report("perf_event_open", r);
    if (r >= 0)
        close((int)r);
    r = syscall(SYS_userfaultfd, O_CLOEXEC);
    report("userfaultfd", r);
    if (r >= 0)
        close((int)r);
    char params[120] = {0};
    r = syscall(SYS_io_uring_setup, 1, params);
    report("io_uring_setup", r);
    if (r >= 0)
        close((int)r);
    char handle[136] = {0};
    report("open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD, handle, O_RDONLY));
    r = syscall(SYS_ptrace, 16 /* PTRACE_ATTACH */, 1, 0, 0);
    report("ptrace_init", r);
    if (r == 0)
        syscall(SYS_ptrace, 17 /* PTRACE_DETACH */, 1, 0, 0);
    char buf[16];
    struct iovec local = {.iov_base = buf, .iov_len = sizeof(buf)};
    struct iovec remote = {.iov_base = (void *)0x400000, .iov_len = sizeof(buf)};
    r = syscall(SYS_process_vm_readv, 1, &local, 1, &remote, 1, 0);
    report("process_vm_readv", r < 0 && errno == EFAULT ? 0 : r);
    report("syslog", syscall(SYS_syslog, 10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0));
    /* Arguments the kernel rejects where the call is allowed (privileged
     * containers), so that the probe never changes the host's clock or
     * accounting: EINVAL/ENOENT there, EPERM from the filter. */
    report("acct", syscall(SYS_acct, "/nonexistent/acct"));
    struct timespec bad_ts = {.tv_sec = 0, .tv_nsec = 2000000000L};
    report("clock_settime", syscall(SYS_clock_settime, CLOCK_REALTIME, &bad_ts));
    struct timeval bad_tv = {.tv_sec = 0, .tv_usec = 2000000};
    report("settimeofday", syscall(SYS_settimeofday, &bad_tv, NULL));
    report("swapoff", syscall(SYS_swapoff, "/nonexistent"));
    report("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
    report("init_module", syscall(SYS_init_module, NULL, 0, ""));
    report("personality_bad", syscall(SYS_personality, 0x0040000 /* ADDR_NO_RANDOMIZE */));
    report("personality_query", syscall(SYS_personality, 0xffffffff));
}

/* An i386 call that may create a process or namespaces, made in a child so
 * nothing of it reaches the probe: the child exits with the errno (0 = allowed). */
static long int80_in_child(long nr, long flags)
{
    pid_t pid = fork();
    if (pid == 0) {
        long r = int80(nr, flags, 0, 0, 0, 0);
        _exit(r < 0 && r > -4096 ? (int)-r : 0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ; /* a grandchild made by an allowed clone */
    int e = WIFEXITED(st) ? WEXITSTATUS(st) : EINTR;
    return e ? -e : 0;
}

/* The same through the i386 ABI. getpid first shows int 0x80 works at all. */
static void i386_abi(void)
{
    long r = int80(20 /* getpid */, 0, 0, 0, 0, 0);
    if (r == -ENOSYS) {
        printf("i386 unavailable\n");
        return;
    }
    report_raw("i386_getpid", r);
    report_raw("i386_mount", int80(21, 0, 0, 0, 0, 0));
    report_raw("i386_unshare", int80_in_child(310, CLONE_NEWUSER));
    report_raw("i386_clone_newuser", int80_in_child(120, CLONE_NEWUSER | CLONE_NEWNS | SIGCHLD));
    report_raw("i386_keyctl", int80(288, 0, -3, 0, 0, 0));
    report_raw("i386_bpf", int80(357, BPF_MAP_CREATE, 0, 0, 0, 0));
    report_raw("i386_perf_event_open", int80(336, 0, 0, -1, -1, 0));
    report_raw("i386_userfaultfd", int80(374, 0, 0, 0, 0, 0));
    report_raw("i386_io_uring_setup", int80(425, 1, 0, 0, 0, 0));
    report_raw("i386_syslog", int80(103, 10, 0, 0, 0, 0));
    /* Bad pointers: EFAULT where allowed, nothing changed. */
    report_raw("i386_acct", int80(51, 1, 0, 0, 0, 0));
    report_raw("i386_swapoff", int80(115, 1, 0, 0, 0, 0));
    report_raw("i386_settimeofday", int80(79, 1, 0, 0, 0, 0));
    report_raw("i386_fsopen", int80(430, 0, 0, 0, 0, 0));
}

static void masked(void)
{
    static const char *const paths[] = {"/proc/kcore",         "/proc/keys",
                                        "/proc/latency_stats", "/proc/sched_debug",
                                        "/proc/scsi",          "/proc/timer_list",
                                        "/proc/timer_stats",   "/proc/acpi",
                                        "/sys/firmware",       "/sys/devices/virtual/powercap",
                                        "/proc/asound"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        DIR *d = opendir(paths[i]);
        if (d) {
            long n = 0;
            for (struct dirent *de; (de = readdir(d));)
                if (de->d_name[0] != '.')
                    n++;
            closedir(d);
            if (n)
                printf("masked %s readable %ld\n", paths[i], n);
            else
                printf("masked %s empty\n", paths[i]);
            continue;
        }
        int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            printf("masked %s %s\n", paths[i], errno == ENOENT ? "missing" : errno_name(errno));
            continue;
        }
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof(buf));
        close(fd);
        if (n > 0)
            printf("masked %s readable %zd\n", paths[i], n);
        else
            printf("masked %s empty\n", paths[i]);
    }
    static const char *const readonly[] = {"/proc/sysrq-trigger", "/proc/sys/kernel/domainname"};
    for (size_t i = 0; i < sizeof(readonly) / sizeof(readonly[0]); i++) {
        char name[64];
        snprintf(name, sizeof(name), "write %s", readonly[i]);
        int fd = open(readonly[i], O_WRONLY | O_CLOEXEC);
        report(name, fd);
        if (fd >= 0)
            close(fd);
    }
}

int cmd_probe(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    setvbuf(stdout, NULL, _IOLBF, 0);
    status_facts();
    capabilities();
    try_unshare("unshare_user", CLONE_NEWUSER);
    try_unshare("unshare_mount", CLONE_NEWNS);
    try_unshare("unshare_net", CLONE_NEWNET);
    try_unshare("unshare_pid", CLONE_NEWPID);
    try_unshare("unshare_files", CLONE_FILES);
    try_clone();
    mounts();
    kernel_interfaces();
    i386_abi();
    masked();
    return 0;
}
