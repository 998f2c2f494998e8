/* GET /cloche/events?since=UNIX&follow=true&handle=H (cloche extension): the
 * daemon's event ring as ndjson, one event per line, oldest first; with follow,
 * new events as they happen until the client leaves. Served on its own thread
 * (stream.c), so a follower never holds one of libmicrohttpd's pool threads.
 * The reader copies events out of the ring and writes them without holding any
 * lock: a slow client never delays the daemon. One that falls more than the
 * ring's size behind gets a {"type":"dropped","count":N} line where events were
 * skipped; one that accepts nothing for EVENTS_SEND_TIMEOUT_S is disconnected. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "api-internal.h"
#include "cloche/json.h"
#include "cloche/wire.h"
#include "reqstats.h"
#include "stream.h"

#define EVENTS_FOLLOWERS_MAX 64
#define EVENTS_SEND_TIMEOUT_S 10
#define EVENTS_WAIT_MS 1000 /* how often a follower checks whether its client left */
#define EVENTS_BATCH_MAX 256
#define EVENTS_SINCE_MAX 253402300799LL /* 9999-12-31 */

static atomic_uint followers;

typedef struct EventStream {
    int fd;
    int minor;
    bool broken;
    char *buf; /* one batch, sent in one chunk */
    size_t len, cap;
} EventStream;

static void send_bytes(EventStream *s, const char *data, size_t len)
{
    while (len > 0 && !s->broken) {
        ssize_t n = send(s->fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            s->broken = true; /* gone, or too slow (the send timeout) */
            return;
        }
        data += n;
        len -= (size_t)n;
    }
}

static void append(EventStream *s, json_object *o)
{
    size_t len = 0;
    _cleanup_free_ char *line = o ? json_serialize(o, &len) : NULL;
    json_object_put(o);
    if (!line)
        return;
    if (s->len + len > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + len)
            cap *= 2;
        char *grown = realloc(s->buf, cap);
        if (!grown)
            return;
        s->buf = grown;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, line, len); /* json_serialize ends the line with "\n" */
    s->len += len;
}

static void flush(EventStream *s)
{
    if (s->len == 0)
        return;
    if (s->minor) {
        char size[32];
        int n = snprintf(size, sizeof(size), "%zx\r\n", s->len);
        send_bytes(s, size, (size_t)n);
        send_bytes(s, s->buf, s->len);
        send_bytes(s, "\r\n", 2);
    } else {
        send_bytes(s, s->buf, s->len);
    }
    s->len = 0;
}

static json_object *event_to_json(const GardenEvent *e)
{
    json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    json_object_object_add(o, "seq", json_new_u64(e->seq));
    json_object_object_add(o, "time", json_object_new_int64(e->time_ns / 1000000000));
    json_object_object_add(o, "time_ns", json_object_new_int64(e->time_ns));
    json_object_object_add(o, "type", json_object_new_string(e->type));
    if (e->handle)
        json_object_object_add(o, "handle", json_object_new_string(e->handle));
    if (e->process_id)
        json_object_object_add(o, "process_id", json_object_new_string(e->process_id));
    if (e->exit_status >= 0)
        json_object_object_add(o, "exit_status", json_object_new_int(e->exit_status));
    if (e->message)
        json_object_object_add(o, "message", json_object_new_string(e->message));
    return o;
}

static json_object *dropped_to_json(uint64_t count)
{
    json_object *o = json_object_new_object();
    if (o) {
        json_object_object_add(o, "type", json_object_new_string("dropped"));
        json_object_object_add(o, "count", json_new_u64(count));
    }
    return o;
}

/* Has the client closed its end (or reset the connection)? */
static bool client_left(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0)
        return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
        return true;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
}

static int parse_query(const StringMap *q, GardenEventFilter *f, bool *ret_follow, bool *ret_since,
                       ApiError *err)
{
    const char *since = strmap_get(q, "since");
    *ret_since = since != NULL;
    if (since) {
        char *end;
        errno = 0;
        long long v = strtoll(since, &end, 10);
        if (errno || end == since || *end || v < 0 || v > EVENTS_SINCE_MAX)
            return api_bad_request(err,
                                   "Invalid value for 'since': '%s' (a unix time in seconds, "
                                   "0 to %lld)",
                                   since, EVENTS_SINCE_MAX);
        f->since_ns = (int64_t)v * 1000000000;
    }
    const char *follow = strmap_get(q, "follow");
    *ret_follow = false;
    if (follow) {
        if (strcmp(follow, "true") == 0 || strcmp(follow, "1") == 0)
            *ret_follow = true;
        else if (strcmp(follow, "false") != 0 && strcmp(follow, "0") != 0)
            return api_bad_request(err, "Invalid value for 'follow': '%s' (true or false)", follow);
    }
    f->handle = strmap_get(q, "handle");
    if (f->handle)
        return spec_validate_handle(f->handle, err);
    return 0;
}

void api_events_serve(int fd, const HttpHead *head, Garden *garden)
{
    ApiError err;
    api_error_clear(&err);
    StringMap query = STRING_MAP_INIT;
    GardenEventFilter f = {0};
    bool follow = false, since = false;
    int r = url_parse_query(head->query, &query, &err);
    if (r >= 0)
        r = parse_query(&query, &f, &follow, &since, &err);
    if (r >= 0 && follow && atomic_fetch_add(&followers, 1) >= EVENTS_FOLLOWERS_MAX) {
        atomic_fetch_sub(&followers, 1);
        r = api_errorf(&err, -EBUSY, 503, GARDEN_ERR_SERVICE_UNAVAILABLE,
                       "Too many event followers (at most %d)", EVENTS_FOLLOWERS_MAX);
        follow = false;
    }
    if (r < 0) {
        strmap_clear(&query);
        stream_reply_error(fd, head, &err);
        return;
    }
    struct timeval tv = {.tv_sec = EVENTS_SEND_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    EventStream s = {.fd = fd, .minor = head->minor_version};
    char hdr[256];
    reqstats_stream_reply(200);
    int n = snprintf(hdr, sizeof(hdr),
                     "HTTP/1.%d 200 OK\r\nContent-Type: application/x-ndjson\r\nCache-Control: "
                     "no-cache\r\n%s\r\n",
                     s.minor, s.minor ? "Transfer-Encoding: chunked\r\n" : "");
    send_bytes(&s, hdr, (size_t)n);

    /* Without since, a follower sees what happens from now on; a plain read gets
     * every event the ring still holds. */
    uint64_t after = follow && !since ? garden_events_last(garden) : 0;
    bool caught_up = false;
    while (!s.broken) {
        GardenEventBatch b;
        int wait = caught_up && follow ? EVENTS_WAIT_MS : 0;
        if (garden_events_read(garden, &f, after, EVENTS_BATCH_MAX, wait, &b) < 0)
            break;
        if (b.lost)
            append(&s, dropped_to_json(b.lost));
        for (size_t i = 0; i < b.n; i++)
            append(&s, event_to_json(&b.events[i]));
        bool stopping = b.stopping;
        bool more = b.next != after;
        after = b.next;
        garden_events_batch_done(&b);
        flush(&s);
        if (!more)
            caught_up = true;
        if (caught_up && (!follow || stopping || client_left(fd)))
            break;
    }
    if (s.minor && !s.broken)
        send_bytes(&s, "0\r\n\r\n", 5);
    free(s.buf);
    strmap_clear(&query);
    if (follow)
        atomic_fetch_sub(&followers, 1);
}
