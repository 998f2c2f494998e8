/* /proc/PID/stat. Only libc: cloche-shim and cloche-tar link this file too. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cloche/procfs.h"

int procfs_stat(pid_t pid, uint64_t *ret_start, char *ret_state)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? -ESRCH : -errno;
    ssize_t n;
    do
        n = read(fd, buf, sizeof(buf) - 1);
    while (n < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    if (n < 0)
        return saved == ESRCH ? -ESRCH : -saved;
    buf[n] = '\0';
    /* Field 2 (comm) may hold spaces and parentheses: start after the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ' || !p[2])
        return -EBADMSG;
    if (ret_state)
        *ret_state = p[2];
    p++;
    /* Fields 3..22: the start time is the 20th field after comm. */
    for (int field = 3; field < 22; field++) {
        p = strchr(p + 1, ' ');
        if (!p)
            return -EBADMSG;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(p + 1, &end, 10);
    if (end == p + 1 || errno)
        return -EBADMSG;
    *ret_start = v;
    return 0;
}

int procfs_start_time(pid_t pid, uint64_t *ret_start)
{
    return procfs_stat(pid, ret_start, NULL);
}
