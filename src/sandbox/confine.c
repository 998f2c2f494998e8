/* Capabilities, no_new_privs and the seccomp filter of a container's processes
 * (include/cloche/confine.h). Linked into cloche-shim and cloche-tar as well as
 * the core library: libc and raw system calls only. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/seccomp.h>

#include "cloche/confine.h"

int confine_drop_bounding(const ConfinePlan *plan)
{
    for (unsigned long cap = 0; cap < 64; cap++) {
        if (plan->caps & (1ull << cap))
            continue;
        if (syscall(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
            if (errno == EINVAL)
                break; /* past the kernel's last capability */
            return -errno;
        }
    }
    return 0;
}

int confine_load_filter(const ConfinePlan *plan)
{
    if (plan->no_new_privs && syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -errno;
    if (!plan->filter)
        return 0;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, plan->filter) < 0)
        return -errno;
    return 0;
}

int confine_set_caps(const ConfinePlan *plan, bool root)
{
    struct __user_cap_header_struct head = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {{0}};
    if (root) {
        if (syscall(SYS_capget, &head, data) < 0)
            return -errno;
        uint64_t held = (uint64_t)data[1].permitted << 32 | data[0].permitted;
        uint64_t caps = plan->caps & held;
        for (int i = 0; i < 2; i++) {
            uint32_t part = (uint32_t)(caps >> (32 * i));
            data[i].permitted = data[i].effective = data[i].inheritable = part;
        }
    }
    if (syscall(SYS_capset, &head, data) < 0)
        return -errno;
    if (syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 &&
        errno != EINVAL)
        return -errno;
    return 0;
}

int confine_filter_load(const char *path, struct sock_fprog *ret)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
        st.st_size % (off_t)sizeof(struct sock_filter) != 0 ||
        st.st_size > (off_t)(CONFINE_FILTER_MAX * sizeof(struct sock_filter))) {
        close(fd);
        return -EINVAL;
    }
    size_t size = (size_t)st.st_size;
    struct sock_filter *insns = malloc(size);
    if (!insns) {
        close(fd);
        return -ENOMEM;
    }
    size_t have = 0;
    while (have < size) {
        ssize_t n = read(fd, (char *)insns + have, size - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int r = n < 0 ? -errno : -EIO;
            free(insns);
            close(fd);
            return r;
        }
        have += (size_t)n;
    }
    close(fd);
    *ret = (struct sock_fprog){.len = (unsigned short)(size / sizeof(struct sock_filter)),
                               .filter = insns};
    return 0;
}

void confine_filter_free(struct sock_fprog *prog)
{
    free(prog->filter);
    prog->filter = NULL;
    prog->len = 0;
}

int confine_parse(const char *text, ConfinePlan *ret)
{
    char *end;
    errno = 0;
    unsigned long long caps = strtoull(text, &end, 16);
    if (errno || end == text || *end != ' ' || (end[1] != '0' && end[1] != '1') || end[2])
        return -EINVAL;
    ret->caps = caps;
    ret->no_new_privs = end[1] == '1';
    return 0;
}
