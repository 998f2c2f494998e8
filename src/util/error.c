/* ApiError helpers. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cloche/error.h"

static void api_error_vset(ApiError *e, int status, const char *type, const char *fmt, va_list ap)
{
    e->status = status;
    e->type = type;
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
}

int api_errorf(ApiError *e, int r, int status, const char *type, const char *fmt, ...)
{
    if (!e)
        return r;
    va_list ap;
    va_start(ap, fmt);
    api_error_vset(e, status, type, fmt, ap);
    va_end(ap);
    return r;
}

int api_bad_request(ApiError *e, const char *fmt, ...)
{
    if (!e)
        return -EINVAL;
    va_list ap;
    va_start(ap, fmt);
    api_error_vset(e, 400, GARDEN_ERR_GENERIC, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

int api_container_not_found(ApiError *e, const char *handle)
{
    if (!e)
        return -ENOENT;
    api_errorf(e, -ENOENT, 404, GARDEN_ERR_CONTAINER_NOT_FOUND, "unknown handle: %s", handle);
    snprintf(e->handle, sizeof(e->handle), "%s", handle);
    return -ENOENT;
}

int api_process_not_found(ApiError *e, const char *process_id)
{
    if (!e)
        return -ENOENT;
    api_errorf(e, -ENOENT, 404, GARDEN_ERR_PROCESS_NOT_FOUND, "unknown process: %s", process_id);
    snprintf(e->process_id, sizeof(e->process_id), "%s", process_id);
    return -ENOENT;
}

int api_internal_error(ApiError *e, int r, const char *fmt, ...)
{
    if (!e)
        return r;
    char what[API_ERROR_MESSAGE_MAX / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return api_errorf(e, r, 500, GARDEN_ERR_GENERIC, "%s: %s", what, strerror(r < 0 ? -r : r));
}

void api_error_clear(ApiError *e)
{
    if (!e)
        return;
    e->status = 0;
    e->type = GARDEN_ERR_GENERIC;
    e->message[0] = '\0';
    e->handle[0] = '\0';
    e->process_id[0] = '\0';
}
