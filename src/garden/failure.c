/* The one place a neutral Failure from below garden becomes the API's error. */
#include <errno.h>

#include "garden-internal.h"

int garden_failure(ApiError *reterr, const Failure *f, int r)
{
    if (!failure_is_set(f))
        return r; /* the callee reported through reterr itself (a garden callback) */
    switch (f->cause) {
    case FAILURE_INPUT:
        return api_errorf(reterr, r, 400, GARDEN_ERR_GENERIC, "%s", f->message);
    case FAILURE_REMOTE:
        return api_errorf(reterr, r, 502, GARDEN_ERR_GENERIC, "%s", f->message);
    case FAILURE_EXECUTABLE:
        return api_errorf(reterr, r, 500, GARDEN_ERR_EXECUTABLE_NOT_FOUND, "%s", f->message);
    case FAILURE_SYSTEM:
    default:
        return api_errorf(reterr, r, 500, GARDEN_ERR_GENERIC, "%s", f->message);
    }
}

/* The image store's input failures say which kind by their errno: a name that
 * is not there, one that conflicts with what exists, or a plain bad request. */
int garden_image_failure(ApiError *reterr, const Failure *f, int r)
{
    if (!failure_is_set(f) || f->cause != FAILURE_INPUT)
        return garden_failure(reterr, f, r);
    int status = 400;
    if (f->error == -ENOENT)
        status = 404;
    else if (f->error == -EBUSY || f->error == -ESTALE || f->error == -EEXIST)
        status = 409;
    return api_errorf(reterr, r, status, GARDEN_ERR_GENERIC, "%s", f->message);
}
