/* cloche-payload: a static multi-call binary the integration tests run inside
 * containers, so that what a test measures does not depend on the image (in the
 * spirit of crun's tests/init.c).
 *
 *   cloche-payload COMMAND [ARGS...]
 *   COMMAND [ARGS...]            (invoked through a symlink named COMMAND)
 *
 * Commands:
 *   true                 exit 0
 *   false                exit 1
 *   exit N               exit N
 *   sleep SECONDS        sleep (fractional seconds allowed)
 *   cat                  copy stdin to stdout
 *   echo ARGS...         print ARGS separated by spaces, then a newline
 *   memhog BYTES         allocate and touch BYTES (suffix K, M or G) in 1 MiB steps,
 *                        printing progress to stderr; exit 0 once all is touched
 *   forkbomb N           fork up to N children that sleep; print "forked K of N" and
 *                        "first_errno E NAME" (0 when every fork worked), then kill
 *                        and reap them and exit 0
 *   pidinfo              one fact per line: pid, ppid, uid, gid, euid, hostname,
 *                        "cgroup LINE" per line of /proc/self/cgroup, and "procs N"
 *                        (processes visible in /proc)
 *   write PATH DATA      write DATA to PATH (created or truncated) and fsync; on
 *                        failure, strerror on stderr and exit 1
 *   read PATH            copy PATH to stdout; on failure, strerror and exit 1
 *   spin SECONDS         busy loop for SECONDS of wall-clock time
 *   serve tcp|udp PORT   answer every TCP connection (one read) or UDP datagram with
 *                        "HOSTNAME:DATA", forever; prints "listening" once bound
 *   connect tcp|udp IP PORT [SECONDS]
 *                        send "ping", print the answer and exit 0; on failure or
 *                        no answer within SECONDS (default 2), print the error and
 *                        exit 1
 *   sink PORT            accept one TCP connection, read it to the end, answer with
 *                        the number of bytes read, exit 0
 *   blast IP PORT BYTES  connect over TCP, send BYTES (suffix K, M or G), shut the
 *                        write side down and wait for the peer to close; exit 0
 *   probe                try what a confined container must not do (probe.c)
 *
 * Usage errors exit 2. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "probe.h"

#define MIB (1024UL * 1024UL)

static const char *prog = "cloche-payload";

static int usage(const char *cmd, const char *args)
{
    fprintf(stderr, "usage: %s %s%s%s\n", prog, cmd, args[0] ? " " : "", args);
    return 2;
}

static int fail(const char *what, const char *path)
{
    fprintf(stderr, "%s: %s: %s: %s\n", prog, what, path, strerror(errno));
    return 1;
}

static int parse_seconds(const char *text, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !(v >= 0) || v > 1e9)
        return -1;
    *out = v;
    return 0;
}

/* Bytes with an optional K, M or G suffix (powers of 1024), optionally
 * followed by "B" or "iB". */
static int parse_bytes(const char *text, uint64_t *out)
{
    char *end;
    if (!isdigit((unsigned char)text[0]))
        return -1;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || end == text)
        return -1;
    uint64_t mult = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K':
        mult = 1024;
        end++;
        break;
    case 'M':
        mult = MIB;
        end++;
        break;
    case 'G':
        mult = 1024 * MIB;
        end++;
        break;
    default:
        break;
    }
    if (mult != 1 && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0))
        end += strlen(end);
    if (*end != '\0' || (v != 0 && mult > UINT64_MAX / v))
        return -1;
    *out = (uint64_t)v * mult;
    return 0;
}

static int parse_int(const char *text, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int copy_fd(int in, int out)
{
    char buf[65536];
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            return 0;
        if (write_all(out, buf, (size_t)n) < 0)
            return -1;
    }
}

static int cmd_true(int argc, char **argv)
{
    return 0;
}

static int cmd_false(int argc, char **argv)
{
    return 1;
}

static int cmd_exit(int argc, char **argv)
{
    long code;
    if (argc != 2 || parse_int(argv[1], 0, 255, &code) < 0)
        return usage("exit", "N (0-255)");
    return (int)code;
}

static int cmd_sleep(int argc, char **argv)
{
    double secs;
    if (argc != 2 || parse_seconds(argv[1], &secs) < 0)
        return usage("sleep", "SECONDS");
    struct timespec ts = {.tv_sec = (time_t)secs,
                          .tv_nsec = (long)((secs - (double)(time_t)secs) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    return 0;
}

static int cmd_spin(int argc, char **argv)
{
    double secs;
    if (argc != 2 || parse_seconds(argv[1], &secs) < 0)
        return usage("spin", "SECONDS");
    double end = now() + secs;
    volatile uint64_t counter = 0;
    while (now() < end)
        for (int i = 0; i < 100000; i++)
            counter++;
    return 0;
}

static int cmd_cat(int argc, char **argv)
{
    if (argc != 1)
        return usage("cat", "");
    if (copy_fd(STDIN_FILENO, STDOUT_FILENO) < 0)
        return fail("cat", "stdin/stdout");
    return 0;
}

static int cmd_echo(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (i > 1)
            putchar(' ');
        fputs(argv[i], stdout);
    }
    putchar('\n');
    return fflush(stdout) == 0 ? 0 : 1;
}

static int cmd_memhog(int argc, char **argv)
{
    uint64_t total;
    if (argc != 2 || parse_bytes(argv[1], &total) < 0)
        return usage("memhog", "BYTES[K|M|G]");
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0)
        page = 4096;
    uint64_t done = 0;
    while (done < total) {
        size_t step = total - done < MIB ? (size_t)(total - done) : MIB;
        /* Each step is its own mapping, never freed: the memory stays charged. */
        char *p = mmap(NULL, step, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            fprintf(stderr, "%s: memhog: mmap after %llu bytes: %s\n", prog,
                    (unsigned long long)done, strerror(errno));
            return 1;
        }
        for (size_t off = 0; off < step; off += (size_t)page)
            p[off] = (char)(off | 1);
        done += step;
        fprintf(stderr, "memhog: touched %llu MiB\n", (unsigned long long)(done / MIB));
    }
    fprintf(stderr, "memhog: done, %llu bytes\n", (unsigned long long)total);
    return 0;
}

static int cmd_forkbomb(int argc, char **argv)
{
    long n;
    if (argc != 2 || parse_int(argv[1], 0, 100000, &n) < 0)
        return usage("forkbomb", "N");
    pid_t *kids = calloc((size_t)n + 1, sizeof *kids);
    if (kids == NULL)
        return fail("forkbomb", "calloc");
    long forked = 0;
    int first_errno = 0;
    fflush(NULL);
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (;;)
                pause();
        }
        if (pid < 0) {
            if (first_errno == 0)
                first_errno = errno;
            continue;
        }
        kids[forked++] = pid;
    }
    for (long i = 0; i < forked; i++)
        kill(kids[i], SIGKILL);
    for (long i = 0; i < forked; i++)
        while (waitpid(kids[i], NULL, 0) < 0 && errno == EINTR)
            ;
    free(kids);
    printf("forked %ld of %ld\n", forked, n);
    printf("first_errno %d %s\n", first_errno, first_errno ? strerrorname_np(first_errno) : "none");
    return fflush(stdout) == 0 ? 0 : 1;
}

static int count_procs(void)
{
    DIR *d = opendir("/proc");
    if (d == NULL)
        return -1;
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *s = e->d_name;
        while (isdigit((unsigned char)*s))
            s++;
        if (s != e->d_name && *s == '\0')
            count++;
    }
    closedir(d);
    return count;
}

static int cmd_pidinfo(int argc, char **argv)
{
    if (argc != 1)
        return usage("pidinfo", "");
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) < 0)
        snprintf(host, sizeof host, "?");
    printf("pid %d\n", (int)getpid());
    printf("ppid %d\n", (int)getppid());
    printf("uid %u\n", (unsigned)getuid());
    printf("gid %u\n", (unsigned)getgid());
    printf("euid %u\n", (unsigned)geteuid());
    printf("hostname %s\n", host);
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (f != NULL) {
        char line[4096];
        while (fgets(line, sizeof line, f) != NULL) {
            line[strcspn(line, "\n")] = '\0';
            printf("cgroup %s\n", line);
        }
        fclose(f);
    }
    printf("procs %d\n", count_procs());
    return fflush(stdout) == 0 ? 0 : 1;
}

static int cmd_write(int argc, char **argv)
{
    if (argc != 3)
        return usage("write", "PATH DATA");
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return fail("write", argv[1]);
    if (write_all(fd, argv[2], strlen(argv[2])) < 0 || fsync(fd) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return fail("write", argv[1]);
    }
    if (close(fd) < 0)
        return fail("write", argv[1]);
    return 0;
}

static int cmd_read(int argc, char **argv)
{
    if (argc != 2)
        return usage("read", "PATH");
    int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail("read", argv[1]);
    int rc = copy_fd(fd, STDOUT_FILENO);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc < 0 ? fail("read", argv[1]) : 0;
}

static int parse_proto(const char *s)
{
    if (strcmp(s, "tcp") == 0)
        return SOCK_STREAM;
    if (strcmp(s, "udp") == 0)
        return SOCK_DGRAM;
    return -1;
}

static int cmd_serve(int argc, char **argv)
{
    int type = argc == 3 ? parse_proto(argv[1]) : -1;
    if (type < 0)
        return usage("serve", "tcp|udp PORT");
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        (type == SOCK_STREAM && listen(fd, 64) < 0))
        return fail("serve", argv[2]);
    printf("listening\n");
    fflush(stdout);
    for (;;) {
        char buf[2048], out[2400];
        struct sockaddr_in peer;
        socklen_t plen = sizeof(peer);
        if (type == SOCK_DGRAM) {
            ssize_t n = recvfrom(fd, buf, sizeof(buf) - 1, 0, (struct sockaddr *)&peer, &plen);
            if (n < 0)
                continue;
            buf[n] = '\0';
            int k = snprintf(out, sizeof(out), "%s:%s", host, buf);
            sendto(fd, out, (size_t)k, 0, (struct sockaddr *)&peer, plen);
            continue;
        }
        int c = accept4(fd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        struct pollfd pfd = {.fd = c, .events = POLLIN};
        ssize_t n = poll(&pfd, 1, 2000) == 1 ? read(c, buf, sizeof(buf) - 1) : 0;
        buf[n > 0 ? n : 0] = '\0';
        int k = snprintf(out, sizeof(out), "%s:%s", host, buf);
        (void)write_all(c, out, (size_t)k);
        close(c);
    }
}

static int cmd_connect(int argc, char **argv)
{
    int type = argc >= 4 && argc <= 5 ? parse_proto(argv[1]) : -1;
    if (type < 0)
        return usage("connect", "tcp|udp IP PORT [SECONDS]");
    int timeout_ms = argc == 5 ? (int)(atof(argv[4]) * 1000) : 2000;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3]))};
    if (inet_pton(AF_INET, argv[2], &sa.sin_addr) != 1)
        return usage("connect", "tcp|udp IP PORT [SECONDS]");
    int fd = socket(AF_INET, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return fail("connect", "socket");
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS)
        return fail("connect", argv[2]);
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    if (poll(&pfd, 1, timeout_ms) != 1) {
        fprintf(stderr, "connect: %s: timed out\n", argv[2]);
        return 1;
    }
    int err = 0;
    socklen_t elen = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen);
    if (err) {
        errno = err;
        return fail("connect", argv[2]);
    }
    if (send(fd, "ping", 4, MSG_NOSIGNAL) < 0)
        return fail("connect", "send");
    pfd.events = POLLIN;
    if (poll(&pfd, 1, timeout_ms) != 1) {
        fprintf(stderr, "connect: %s: no answer\n", argv[2]);
        return 1;
    }
    char buf[2400];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
    if (n < 0)
        return fail("connect", "recv");
    buf[n] = '\0';
    printf("%s\n", buf);
    return fflush(stdout) == 0 ? 0 : 1;
}

static int cmd_sink(int argc, char **argv)
{
    if (argc != 2)
        return usage("sink", "PORT");
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0)
        return fail("sink", argv[1]);
    printf("listening\n");
    fflush(stdout);
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0)
        return fail("sink", "accept");
    static char buf[1 << 16];
    unsigned long long total = 0;
    for (;;) {
        ssize_t n = read(c, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        total += (unsigned long long)n;
    }
    char out[32];
    int k = snprintf(out, sizeof(out), "%llu\n", total);
    (void)write_all(c, out, (size_t)k);
    close(c);
    printf("%llu\n", total);
    return 0;
}

static int cmd_blast(int argc, char **argv)
{
    uint64_t total = 0;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (argc != 4 || parse_bytes(argv[3], &total) < 0 ||
        inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1)
        return usage("blast", "IP PORT BYTES");
    sa.sin_port = htons((uint16_t)atoi(argv[2]));
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return fail("blast", argv[1]);
    static char buf[1 << 16];
    memset(buf, 'x', sizeof(buf));
    while (total > 0) {
        size_t n = total < sizeof(buf) ? (size_t)total : sizeof(buf);
        if (write_all(fd, buf, n) < 0)
            return fail("blast", "write");
        total -= n;
    }
    shutdown(fd, SHUT_WR);
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    return 0;
}

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
};

static const struct command commands[] = {
    {"true", cmd_true},     {"false", cmd_false},       {"exit", cmd_exit},
    {"sleep", cmd_sleep},   {"cat", cmd_cat},           {"echo", cmd_echo},
    {"memhog", cmd_memhog}, {"forkbomb", cmd_forkbomb}, {"pidinfo", cmd_pidinfo},
    {"write", cmd_write},   {"read", cmd_read},         {"spin", cmd_spin},
    {"serve", cmd_serve},   {"connect", cmd_connect},   {"sink", cmd_sink},
    {"blast", cmd_blast},   {"probe", cmd_probe},
};

static const struct command *find(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static int list_commands(void)
{
    fprintf(stderr, "usage: %s COMMAND [ARGS...]\ncommands:", prog);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(stderr, " %s", commands[i].name);
    fputc('\n', stderr);
    return 2;
}

int main(int argc, char **argv)
{
    const char *base = argc > 0 ? strrchr(argv[0], '/') : NULL;
    base = base ? base + 1 : (argc > 0 ? argv[0] : "");
    const struct command *cmd = find(base);
    if (cmd != NULL) /* invoked through a symlink named after the command */
        return cmd->fn(argc, argv);
    if (argc < 2)
        return list_commands();
    cmd = find(argv[1]);
    if (cmd == NULL) {
        fprintf(stderr, "%s: unknown command '%s'\n", prog, argv[1]);
        return list_commands();
    }
    return cmd->fn(argc - 1, argv + 1);
}
