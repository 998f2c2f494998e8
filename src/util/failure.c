/* Failure: the neutral error below garden. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cloche/failure.h"

static void failure_vset(Failure *f, int r, FailureCause cause, const char *fmt, va_list ap)
{
    f->error = r;
    f->cause = cause;
    vsnprintf(f->message, sizeof(f->message), fmt, ap);
}

int failure_set(Failure *f, int r, FailureCause cause, const char *fmt, ...)
{
    if (!f)
        return r;
    va_list ap;
    va_start(ap, fmt);
    failure_vset(f, r, cause, fmt, ap);
    va_end(ap);
    return r;
}

int failure_input(Failure *f, int r, const char *fmt, ...)
{
    if (!f)
        return r;
    va_list ap;
    va_start(ap, fmt);
    failure_vset(f, r, FAILURE_INPUT, fmt, ap);
    va_end(ap);
    return r;
}

int failure_errno(Failure *f, int r, const char *fmt, ...)
{
    if (!f)
        return r;
    /* Half the space for the description, so strerror's text always fits. */
    char what[FAILURE_MESSAGE_MAX / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return failure_set(f, r, FAILURE_SYSTEM, "%s: %s", what, strerror(r < 0 ? -r : r));
}

int failure_wrap(Failure *f, const char *fmt, ...)
{
    if (!f)
        return -EIO;
    char context[FAILURE_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(context, sizeof(context), fmt, ap);
    va_end(ap);
    /* "CONTEXT: MESSAGE", cut to the buffer. */
    size_t room = sizeof(f->message) - 1;
    size_t n_context = strnlen(context, room);
    size_t n_sep = n_context + 2 <= room ? 2 : room - n_context;
    size_t n_old = strnlen(f->message, room);
    size_t keep = room - n_context - n_sep < n_old ? room - n_context - n_sep : n_old;
    memmove(f->message + n_context + n_sep, f->message, keep);
    memcpy(f->message, context, n_context);
    memcpy(f->message + n_context, ": ", n_sep);
    f->message[n_context + n_sep + keep] = '\0';
    if (!f->error)
        f->error = -EIO;
    return f->error;
}

bool failure_is_set(const Failure *f)
{
    return f && f->error != 0;
}

void failure_clear(Failure *f)
{
    if (!f)
        return;
    f->error = 0;
    f->cause = FAILURE_SYSTEM;
    f->message[0] = '\0';
}
