/* Starting and reaping cloche-tar (see include/cloche/proc-tar.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cloche/cleanup.h"
#include "cloche/proc-tar.h"
#include "cloche/spawn.h"

#define TAR_PIPE_SIZE (1 << 20)
#define TAR_CGROUPS_MAX 8

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno : 0;
}

int proc_tar_start(const ProcTarLaunch *l, pid_t *ret_pid, int *ret_data, int *ret_messages)
{
    bool in = strncmp(l->mode, "in", 2) == 0;
    const ProcUser *u = l->user;
    char pid[24], start[24], uid[16], gid[16], groups[PROC_GROUPS_MAX * 11 + 1] = "";
    snprintf(pid, sizeof(pid), "%d", (int)l->init_pid);
    snprintf(start, sizeof(start), "%" PRIu64, l->init_start);
    snprintf(uid, sizeof(uid), "%u", (unsigned)u->uid);
    snprintf(gid, sizeof(gid), "%u", (unsigned)u->gid);
    for (size_t i = 0, off = 0; i < u->n_groups; i++)
        off += (size_t)snprintf(groups + off, sizeof(groups) - off, "%s%u", i ? "," : "",
                                (unsigned)u->groups[i]);
    /* `cloche-tar MODE PID START UID GID GROUPS HOME PATH [CGROUP_DIR...]` */
    char *argv[9 + TAR_CGROUPS_MAX] = {
        (char *)"cloche-tar", (char *)l->mode, pid, start, uid, gid, groups,
        (char *)u->home,      (char *)l->path};
    size_t argc = 9;
    for (char *const *cg = l->cgroups; cg && *cg && argc < ELEMENTSOF(argv) - 1; cg++)
        argv[argc++] = *cg;
    argv[argc] = NULL;
    /* Not the daemon's environment: nothing of it belongs in a container. */
    char confine[64], seccomp[PATH_MAX + 32] = "";
    snprintf(confine, sizeof(confine), "CLOCHE_CONFINE=%s", l->confine);
    if (l->seccomp_path)
        snprintf(seccomp, sizeof(seccomp), "CLOCHE_SECCOMP=%s", l->seccomp_path);
    char *envp[] = {(char *)"PATH=/usr/sbin:/usr/bin:/sbin:/bin", confine,
                    seccomp[0] ? seccomp : NULL, NULL};

    int data[2], err[2];
    if (pipe2(data, O_CLOEXEC) < 0)
        return -errno;
    if (pipe2(err, O_CLOEXEC) < 0) {
        int r = -errno;
        close(data[0]);
        close(data[1]);
        return r;
    }
    (void)fcntl(data[0], F_SETPIPE_SZ, TAR_PIPE_SIZE);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (in) {
        posix_spawn_file_actions_adddup2(&fa, data[0], 0);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    } else {
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, data[1], 1);
    }
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    pid_t child;
    int r = spawn_clean(&child, l->tar_path, &fa, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    close(err[1]);
    close(in ? data[0] : data[1]);
    int ours = in ? data[1] : data[0];
    if (r >= 0 && (set_nonblock(ours) < 0 || set_nonblock(err[0]) < 0)) {
        r = -errno;
        (void)proc_tar_wait(child, true);
    }
    if (r < 0) {
        close(ours);
        close(err[0]);
        return r;
    }
    *ret_pid = child;
    *ret_data = ours;
    *ret_messages = err[0];
    return 0;
}

void proc_tar_kill(pid_t pid)
{
    if (pid > 0)
        kill(pid, SIGKILL);
}

int proc_tar_wait(pid_t pid, bool kill_it)
{
    if (kill_it)
        proc_tar_kill(pid);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}
