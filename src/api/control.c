/* The control lines of a hijacked Run/Attach connection (protocol §5.3), decoded
 * for the relay: checked in the Go server's order (tty, then source, then
 * signal); a line that is not understood asks for nothing. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "attach.h"
#include "cloche/cleanup.h"
#include "cloche/json.h"
#include "cloche/log.h"

/* {"tty":{"window_size":{"columns":C,"rows":R}}} */
static int decode_tty(json_object *tty, ProcControl *ret)
{
    ApiError err;
    json_object *ws =
        json_object_is_type(tty, json_type_object) ? json_member(tty, "window_size") : NULL;
    if (!ws || !json_object_is_type(ws, json_type_object))
        return 0;
    uint64_t cols = 0, rows = 0;
    json_object *c = json_member(ws, "columns"), *r = json_member(ws, "rows");
    if ((c && json_get_u64(c, "columns", UINT16_MAX, &cols, &err) < 0) ||
        (r && json_get_u64(r, "rows", UINT16_MAX, &rows, &err) < 0))
        return 0;
    *ret = (ProcControl){
        .kind = PROC_CONTROL_WINDOW_SIZE, .columns = (uint16_t)cols, .rows = (uint16_t)rows};
    return 0;
}

/* {"source":0,"data":"..."} is stdin; without "data", its end. */
static int decode_stdin(json_object *o, json_object *source, ProcControl *ret)
{
    ApiError err;
    uint64_t src;
    if (json_get_u64(source, "source", 2, &src, &err) < 0 || src != 0)
        return 0;
    json_object *data = json_member(o, "data");
    if (!data) {
        ret->kind = PROC_CONTROL_STDIN_CLOSE;
        return 0;
    }
    if (!json_object_is_type(data, json_type_string))
        return 0;
    size_t n = (size_t)json_object_get_string_len(data);
    char *copy = malloc(n + 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, json_object_get_string(data), n);
    copy[n] = '\0';
    *ret = (ProcControl){.kind = PROC_CONTROL_STDIN, .data = copy, .len = n};
    return 0;
}

int api_control_decode(const char *line, size_t len, ProcControl *ret)
{
    *ret = (ProcControl){.kind = PROC_CONTROL_NONE};
    _cleanup_json_ json_object *o = NULL;
    ApiError err;
    if (json_parse_strict(line, len, &o, &err) < 0 || !json_object_is_type(o, json_type_object)) {
        log_debug("Ignoring a malformed control message");
        return 0;
    }
    json_object *tty = json_member(o, "tty");
    if (tty)
        return decode_tty(tty, ret);
    json_object *source = json_member(o, "source");
    if (source)
        return decode_stdin(o, source, ret);
    /* Garden's signals: 0 = terminate, 1 = kill. cloche's extension "cloche_signal"
     * carries any Linux signal number and leaves those two as they are. */
    int sig = 0;
    json_object *signal = json_member(o, "signal");
    json_object *raw = json_member(o, "cloche_signal");
    uint64_t v;
    if (raw && json_get_u64(raw, "cloche_signal", 64, &v, &err) >= 0 && v > 0)
        sig = (int)v;
    else if (signal && json_get_u64(signal, "signal", UINT32_MAX, &v, &err) >= 0)
        sig = v == 0 ? 15 : v == 1 ? 9 : 0;
    if (sig)
        *ret = (ProcControl){.kind = PROC_CONTROL_SIGNAL, .signal = sig};
    return 0;
}
