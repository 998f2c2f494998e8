/* Crash points and fault injection for the tests. Compiled in only with
 * -Dtest_hooks=true (the test builds); otherwise both calls are constant no-ops.
 *
 *   CLOCHE_TEST_CRASH=POINT[,POINT...]   the daemon kills itself (SIGKILL) when it
 *                                        reaches a named point (testhook_point)
 *   CLOCHE_TEST_DELAY=POINT:MS[,...]     testhook_point(POINT) sleeps MS milliseconds
 *                                        (so a test can land a request there)
 *   CLOCHE_TEST_FAULT=POINT[:N][,...]    testhook_fault(POINT) reports a failure,
 *                                        the first N times (every time without :N)
 *
 * Points are dotted names such as "create.cgroup" or "destroy.depot"; the list
 * of points is in doc/testing.md. Thread-safe. */
#pragma once

#include <stdbool.h>

#ifdef CLOCHE_TEST_HOOKS
/* Read the two variables (once, at start-up, before threads start). */
void testhook_init(void);
/* A named point: crash or sleep here if the tests asked. */
void testhook_point(const char *point);
bool testhook_fault(const char *point);
bool testhook_enabled(void);
#else
static inline void testhook_init(void)
{
}
static inline void testhook_point(const char *point)
{
    (void)point;
}
static inline bool testhook_fault(const char *point)
{
    (void)point;
    return false;
}
static inline bool testhook_enabled(void)
{
    return false;
}
#endif
