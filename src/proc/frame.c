/* Frames between the daemon and cloche-shim (include/cloche/shim-protocol.h). */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cloche/proc-relay.h"
#include "cloche/proc.h"
#include "cloche/shim-protocol.h"

int proc_send_frame(int fd, uint8_t type, const void *data, size_t len)
{
    if (len > SHIM_FRAME_MAX)
        return -EMSGSIZE;
    uint8_t header[SHIM_FRAME_HEADER];
    shim_frame_header(header, type, (uint32_t)len);
    struct iovec iov[2] = {{.iov_base = header, .iov_len = sizeof(header)},
                           {.iov_base = (void *)data, .iov_len = len}};
    size_t total = sizeof(header) + len, sent = 0;
    while (sent < total) {
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
        ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        sent += (size_t)n;
        /* Advance the iovecs past what went out. */
        size_t k = (size_t)n;
        for (int i = 0; i < 2 && k > 0; i++) {
            size_t take = k < iov[i].iov_len ? k : iov[i].iov_len;
            iov[i].iov_base = (uint8_t *)iov[i].iov_base + take;
            iov[i].iov_len -= take;
            k -= take;
        }
    }
    return 0;
}

int proc_frame_reader_init(ProcFrameReader *r)
{
    *r = (ProcFrameReader){0};
    r->payload = malloc(SHIM_FRAME_MAX);
    return r->payload ? 0 : -ENOMEM;
}

void proc_frame_reader_done(ProcFrameReader *r)
{
    free(r->payload);
    *r = (ProcFrameReader){0};
}

int proc_frame_read(ProcFrameReader *r, int fd)
{
    /* A frame completed by the previous call: start the next one. */
    if (r->header_have == SHIM_FRAME_HEADER && r->payload_have == r->payload_len) {
        r->header_have = 0;
        r->payload_have = 0;
        r->payload_len = 0;
    }
    while (r->header_have < SHIM_FRAME_HEADER) {
        ssize_t n = read(fd, r->header + r->header_have, SHIM_FRAME_HEADER - r->header_have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN ? 0 : -errno;
        if (n == 0)
            return -EPIPE;
        r->header_have += (size_t)n;
        if (r->header_have == SHIM_FRAME_HEADER) {
            r->payload_len = shim_frame_length(r->header);
            if (r->payload_len > SHIM_FRAME_MAX)
                return -EBADMSG;
        }
    }
    while (r->payload_have < r->payload_len) {
        ssize_t n = read(fd, r->payload + r->payload_have, r->payload_len - r->payload_have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN ? 0 : -errno;
        if (n == 0)
            return -EPIPE;
        r->payload_have += (size_t)n;
    }
    return 1;
}

int proc_output_follow(int shim, int known_exit, int client, const atomic_bool *stop,
                       ProcOutputFn output, void *userdata)
{
    ProcFrameReader fr;
    if (proc_frame_reader_init(&fr) < 0) {
        if (shim >= 0)
            close(shim);
        return -ENOMEM;
    }
    int status = known_exit;
    while (shim >= 0 && !atomic_load(stop)) {
        struct pollfd pfd[2] = {{.fd = shim, .events = POLLIN},
                                {.fd = client, .events = POLLRDHUP}};
        if (poll(pfd, 2, 1000) <= 0)
            continue;
        if (pfd[1].revents & (POLLRDHUP | POLLHUP | POLLERR))
            break; /* the client went away: detach */
        int r = proc_frame_read(&fr, shim);
        if (r < 0) {
            status = status < 0 ? 255 : status; /* the shim died without a word */
            break;
        }
        if (r == 0)
            continue;
        uint8_t type = fr.header[0];
        if (type == SHIM_FRAME_EXIT) {
            char buf[16] = {0};
            memcpy(buf, fr.payload, fr.payload_len < 15 ? fr.payload_len : 15);
            status = atoi(buf);
            break;
        }
        if (type != SHIM_FRAME_STDOUT && type != SHIM_FRAME_STDERR)
            continue;
        if (!output(userdata, type == SHIM_FRAME_STDOUT ? 1 : 2, fr.payload, fr.payload_len))
            break;
    }
    if (shim >= 0)
        close(shim);
    proc_frame_reader_done(&fr);
    return status;
}
