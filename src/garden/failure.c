/* The one place a neutral Failure from below garden becomes the API's error. */
#include "garden-internal.h"

int garden_failure(ApiError *reterr, const Failure *f, int r)
{
    if (!failure_is_set(f))
        return r; /* the callee reported through reterr itself (a garden callback) */
    switch (f->cause) {
    case FAILURE_INPUT:
        return api_errorf(reterr, r, 400, GARDEN_ERR_GENERIC, "%s", f->message);
    case FAILURE_EXECUTABLE:
        return api_errorf(reterr, r, 500, GARDEN_ERR_EXECUTABLE_NOT_FOUND, "%s", f->message);
    case FAILURE_SYSTEM:
    default:
        return api_errorf(reterr, r, 500, GARDEN_ERR_GENERIC, "%s", f->message);
    }
}
