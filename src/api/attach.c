/* The hijacked process streams (protocol §5): Run and Attach turn their
 * connection into the control connection of one "attachment" (a stream id), and
 * the stdout/stderr requests hand their connections to it. The bytes are moved
 * by the attachment's relay (proc/relay.c) on the Run/Attach connection's own
 * thread; this file keeps the stream ids, writes the reply heads, decodes the
 * control lines (control.c) and words the exit line. curl's one-request Run
 * reads the shim through proc_output_follow (proc/frame.c) and words its lines
 * here. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api-internal.h"
#include "attach.h"
#include "cloche/hashmap.h"
#include "cloche/json.h"
#include "cloche/log.h"
#include "cloche/proc-relay.h"
#include "cloche/clock.h"
#include "cloche/fdio.h"
#include "reqstats.h"

typedef struct Attachment {
    char sid[24];
    ProcRelay *relay;
    atomic_uint refs;
} Attachment;

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static HashMap *table;
static atomic_uint_least64_t next_sid = 1;
static atomic_bool stopping;

static void attachment_unref(Attachment *a)
{
    if (!a || atomic_fetch_sub(&a->refs, 1) != 1)
        return;
    proc_relay_unref(a->relay);
    free(a);
}

static Attachment *attachment_new(void)
{
    Attachment *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    if (proc_relay_new(&a->relay) < 0) {
        free(a);
        return NULL;
    }
    atomic_init(&a->refs, 1);
    snprintf(a->sid, sizeof(a->sid), "%llu", (unsigned long long)atomic_fetch_add(&next_sid, 1));
    pthread_mutex_lock(&table_lock);
    int r = table ? 0 : hashmap_new(&table);
    if (r >= 0)
        r = hashmap_put(table, a->sid, a);
    if (r >= 0)
        atomic_fetch_add(&a->refs, 1); /* the table's reference */
    pthread_mutex_unlock(&table_lock);
    if (r < 0) {
        attachment_unref(a);
        return NULL;
    }
    /* A server stopping meanwhile did not see this one in the table. */
    if (atomic_load(&stopping))
        proc_relay_stop(a->relay);
    return a;
}

static void attachment_unregister(Attachment *a)
{
    pthread_mutex_lock(&table_lock);
    Attachment *removed = table ? hashmap_remove(table, a->sid) : NULL;
    pthread_mutex_unlock(&table_lock);
    attachment_unref(removed);
}

void api_attachments_stop(void)
{
    atomic_store(&stopping, true);
    pthread_mutex_lock(&table_lock);
    size_t state = 0;
    const char *key;
    void *value;
    while (table && hashmap_iterate(table, &state, &key, &value) == 0)
        proc_relay_stop(((Attachment *)value)->relay);
    pthread_mutex_unlock(&table_lock);
}

static void http_date(char *buf, size_t size)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, size, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* All of data to a hijacked stream; a client that takes nothing for 10 s is gone. */
static bool send_whole(int fd, const void *data, size_t len)
{
    return fd_send_all(fd, data, len, 10000) == 0;
}

/* The reply head of a hijacked route: HTTP/1.1 with chunked declared but not used,
 * exactly as Go's server (protocol §5.1); HTTP/1.0 with a body until close. */
static bool send_hijack_head(int fd, int minor, int status, bool json)
{
    char date[64], head[256];
    http_date(date, sizeof(date));
    reqstats_stream_reply(status);
    int n;
    if (minor == 0)
        n = snprintf(head, sizeof(head), "HTTP/1.0 %d %s\r\n%sDate: %s\r\n\r\n", status,
                     http_reason(status), json ? "Content-Type: application/json\r\n" : "", date);
    else
        n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\n%sDate: %s\r\nTransfer-Encoding: chunked\r\n\r\n", status,
                     http_reason(status), json ? "Content-Type: application/json\r\n" : "", date);
    return send_whole(fd, head, (size_t)n);
}

static bool send_json_line(int fd, json_object *o)
{
    size_t len;
    _cleanup_free_ char *text = json_serialize(o, &len);
    return text && send_whole(fd, text, len);
}

/* The exit line on the control connection: {"process_id","exit_status"}. */
static void report_exit(int ctl, const char *process_id, int exit_status)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "process_id", json_object_new_string(process_id));
    json_object_object_add(o, "exit_status", json_object_new_int(exit_status));
    send_json_line(ctl, o);
    json_object_put(o);
}

static const ProcRelayOps relay_ops = {
    .decode_control = api_control_decode,
    .report_exit = report_exit,
};

void api_attach_serve(int ctl, int minor, int status, const char *process_id, int shim,
                      int known_exit, int proc_dirfd)
{
    Attachment *a = attachment_new();
    if (!a) {
        if (shim >= 0)
            close(shim);
        if (proc_dirfd >= 0)
            close(proc_dirfd);
        return;
    }
    if (send_hijack_head(ctl, minor, status, true)) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "process_id", json_object_new_string(process_id));
        json_object_object_add(o, "stream_id", json_object_new_string(a->sid));
        bool ok = send_json_line(ctl, o);
        json_object_put(o);
        if (ok) {
            proc_relay_run(a->relay, ctl, process_id, shim, known_exit, proc_dirfd, &relay_ops);
            shim = -1;
        }
    }
    if (shim >= 0)
        close(shim);
    if (proc_dirfd >= 0)
        close(proc_dirfd);
    attachment_unregister(a);
    attachment_unref(a);
}

bool api_attach_stream(int fd, int minor, const char *sid, bool stderr_stream)
{
    pthread_mutex_lock(&table_lock);
    Attachment *a = table ? hashmap_get(table, sid) : NULL;
    if (a)
        atomic_fetch_add(&a->refs, 1);
    pthread_mutex_unlock(&table_lock);

    if (!send_hijack_head(fd, minor, 200, false) || !a) {
        /* An unknown stream id gets 200 and an immediate close, as Go's server. */
        attachment_unref(a);
        return false;
    }
    bool taken = proc_relay_connect_output(a->relay, stderr_stream ? 1 : 0, fd);
    attachment_unref(a);
    return taken;
}

/* Write one JSON line as an HTTP chunk (or raw, for HTTP/1.0). */
static bool send_ndjson(int fd, int minor, json_object *o)
{
    size_t len;
    _cleanup_free_ char *text = json_serialize(o, &len);
    if (!text)
        return false;
    if (minor == 0)
        return send_whole(fd, text, len);
    char size[32];
    int n = snprintf(size, sizeof(size), "%zx\r\n", len);
    return send_whole(fd, size, (size_t)n) && send_whole(fd, text, len) &&
           send_whole(fd, "\r\n", 2);
}

typedef struct NdjsonOutput {
    int fd, minor;
    const char *process_id;
    bool ok;
} NdjsonOutput;

/* One {"process_id","source","data"} line per piece of output. */
static bool ndjson_output(void *userdata, int stream, const void *data, size_t len)
{
    NdjsonOutput *out = userdata;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "process_id", json_object_new_string(out->process_id));
    json_object_object_add(o, "source", json_object_new_int(stream));
    json_object_object_add(o, "data", json_object_new_string_len(data, (int)len));
    out->ok = send_ndjson(out->fd, out->minor, o);
    json_object_put(o);
    return out->ok;
}

void api_attach_serve_ndjson(int fd, int minor, const char *process_id, int shim, int known_exit)
{
    char date[64], head[256];
    http_date(date, sizeof(date));
    int n = snprintf(head, sizeof(head),
                     minor == 0 ? "HTTP/1.0 200 OK\r\nContent-Type: application/x-ndjson\r\nDate: "
                                  "%s\r\n\r\n"
                                : "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nDate: "
                                  "%s\r\nTransfer-Encoding: chunked\r\n\r\n",
                     date);
    reqstats_stream_reply(200);
    if (!send_whole(fd, head, (size_t)n)) {
        if (shim >= 0)
            close(shim);
        return;
    }
    NdjsonOutput out = {.fd = fd, .minor = minor, .process_id = process_id};
    json_object *first = json_object_new_object();
    json_object_object_add(first, "process_id", json_object_new_string(process_id));
    out.ok = send_ndjson(fd, minor, first);
    json_object_put(first);
    if (!out.ok) {
        if (shim >= 0)
            close(shim);
        return;
    }
    int status = proc_output_follow(shim, known_exit, fd, &stopping, ndjson_output, &out);
    if (out.ok && status >= 0) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "process_id", json_object_new_string(process_id));
        json_object_object_add(o, "exit_status", json_object_new_int(status));
        send_ndjson(fd, minor, o);
        json_object_put(o);
        if (minor != 0)
            send_whole(fd, "0\r\n\r\n", 5);
    }
}
