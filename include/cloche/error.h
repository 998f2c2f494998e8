/* ApiError: what a call that serves the API reports back to the HTTP face.
 *
 * Functions that can fail because of caller input take a last `ApiError *reterr`
 * and return a negative errno; on failure they fill reterr with the HTTP status,
 * the Garden error type and a precise message (capitalised, names the thing in
 * quotes, no trailing period). */
#pragma once

#include <stddef.h>

#include "cloche/cleanup.h"

/* Garden error types (protocol §4). */
#define GARDEN_ERR_GENERIC ""
#define GARDEN_ERR_CONTAINER_NOT_FOUND "ContainerNotFoundError"
#define GARDEN_ERR_PROCESS_NOT_FOUND "ProcessNotFoundError"
#define GARDEN_ERR_EXECUTABLE_NOT_FOUND "ExecutableNotFoundError"
#define GARDEN_ERR_SERVICE_UNAVAILABLE "ServiceUnavailableError"
#define GARDEN_ERR_UNRECOVERABLE "UnrecoverableError"

#define API_ERROR_MESSAGE_MAX 1024
#define API_ERROR_ID_MAX 512

typedef struct ApiError {
    int status;       /* HTTP status code; 0 = not set */
    const char *type; /* one of GARDEN_ERR_* (static storage) */
    char message[API_ERROR_MESSAGE_MAX];
    char handle[API_ERROR_ID_MAX];     /* filled for ContainerNotFoundError */
    char process_id[API_ERROR_ID_MAX]; /* filled for ProcessNotFoundError */
} ApiError;

/* Fill *e (if e is not NULL) and return r, so callers can `return api_errorf(...)`. */
int api_errorf(ApiError *e, int r, int status, const char *type, const char *fmt, ...)
    _printf_(5, 6);

/* 400 with a generic type: malformed input. Returns -EINVAL. */
int api_bad_request(ApiError *e, const char *fmt, ...) _printf_(2, 3);

/* 404 ContainerNotFoundError, message "unknown handle: H". Returns -ENOENT. */
int api_container_not_found(ApiError *e, const char *handle);

/* 404 ProcessNotFoundError, message "unknown process: P". Returns -ENOENT. */
int api_process_not_found(ApiError *e, const char *process_id);

/* 500 generic error built from an errno and a description ("Failed to X: strerror"). */
int api_internal_error(ApiError *e, int r, const char *fmt, ...) _printf_(3, 4);

void api_error_clear(ApiError *e);
