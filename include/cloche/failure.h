/* Failure: the neutral error of everything below garden (crun's libcrun_error_t
 * is the model). A fallible call returns a negative errno and, when the errno
 * alone would not say enough, fills a Failure with a message; each caller on the
 * way up may prepend its context with failure_wrap(). Nothing here knows HTTP:
 * garden alone turns a Failure into the API's error (garden_failure()).
 *
 * Messages follow the house style: a capital first, the thing named in quotes,
 * no trailing period. All functions accept f == NULL and then only return r. */
#pragma once

#include <stdbool.h>

#include "cloche/cleanup.h"

#define FAILURE_MESSAGE_MAX 1024

/* Whose fault it was: the caller's input, a program that cannot be executed, a
 * remote party (a registry that failed or sent something invalid), or anything
 * else (the system). Garden picks the reply's status and type from it and, for
 * the caller's input, from the errno: -ENOENT names something that does not
 * exist, -EBUSY/-ESTALE/-EEXIST something that conflicts with the state. */
typedef enum FailureCause {
    FAILURE_SYSTEM = 0,
    FAILURE_INPUT,      /* the request itself is wrong: a bad name, a missing path */
    FAILURE_EXECUTABLE, /* the program to run cannot be executed */
    FAILURE_REMOTE      /* a peer we depend on failed or lied: a registry, a layer it sent */
} FailureCause;

typedef struct Failure {
    int error; /* negative errno; 0 = no failure recorded */
    FailureCause cause;
    char message[FAILURE_MESSAGE_MAX];
} Failure;

/* Record r (a negative errno) with the message as given. Returns r. */
int failure_set(Failure *f, int r, FailureCause cause, const char *fmt, ...) _printf_(4, 5);
/* Record r with "MESSAGE: strerror(r)", cause FAILURE_SYSTEM. Returns r. */
int failure_errno(Failure *f, int r, const char *fmt, ...) _printf_(3, 4);
/* Record r, cause FAILURE_INPUT. Returns r. */
int failure_input(Failure *f, int r, const char *fmt, ...) _printf_(3, 4);
/* Prepend "CONTEXT: " to the message (the way up). Returns f->error (or -EIO if
 * nothing was recorded, which is a bug in the callee). */
int failure_wrap(Failure *f, const char *fmt, ...) _printf_(2, 3);
/* Has a failure been recorded? */
bool failure_is_set(const Failure *f);
void failure_clear(Failure *f);
