/* Crash points and fault injection (see testhook.h). */
#include "cloche/testhook.h"

#ifdef CLOCHE_TEST_HOOKS
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cloche/log.h"

#define HOOKS_MAX 32
#define POINT_MAX 64

typedef struct Hook {
    char point[POINT_MAX];
    long remaining; /* -1 = always */
} Hook;

static Hook crashes[HOOKS_MAX], faults[HOOKS_MAX], delays[HOOKS_MAX];
static size_t n_crashes, n_faults, n_delays;
static pthread_mutex_t hooks_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t parse_list(const char *text, Hook *out)
{
    size_t n = 0;
    while (text && *text && n < HOOKS_MAX) {
        size_t len = strcspn(text, ",");
        size_t name = strcspn(text, ",:");
        if (name > 0 && name < POINT_MAX) {
            memcpy(out[n].point, text, name);
            out[n].point[name] = '\0';
            out[n].remaining = name < len ? strtol(text + name + 1, NULL, 10) : -1;
            n++;
        }
        text += len;
        if (*text == ',')
            text++;
    }
    return n;
}

void testhook_init(void)
{
    n_crashes = parse_list(getenv("CLOCHE_TEST_CRASH"), crashes);
    n_faults = parse_list(getenv("CLOCHE_TEST_FAULT"), faults);
    n_delays = parse_list(getenv("CLOCHE_TEST_DELAY"), delays);
    if (n_crashes || n_faults || n_delays)
        log_warn("Test hooks armed: %zu crash point(s), %zu fault(s), %zu delay(s)", n_crashes,
                 n_faults, n_delays);
}

bool testhook_enabled(void)
{
    return true;
}

void testhook_point(const char *point)
{
    for (size_t i = 0; i < n_delays; i++)
        if (strcmp(delays[i].point, point) == 0 && delays[i].remaining > 0) {
            log_info("Test delay of %ld ms at '%s'", delays[i].remaining, point);
            usleep((useconds_t)delays[i].remaining * 1000);
        }
    for (size_t i = 0; i < n_crashes; i++)
        if (strcmp(crashes[i].point, point) == 0) {
            static const char msg[] = "cloched: test crash point reached\n";
            (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
            kill(getpid(), SIGKILL);
            _exit(137);
        }
}

bool testhook_fault(const char *point)
{
    bool hit = false;
    pthread_mutex_lock(&hooks_lock);
    for (size_t i = 0; i < n_faults && !hit; i++) {
        if (strcmp(faults[i].point, point) != 0 || faults[i].remaining == 0)
            continue;
        if (faults[i].remaining > 0)
            faults[i].remaining--;
        hit = true;
    }
    pthread_mutex_unlock(&hooks_lock);
    if (hit)
        log_info("Test fault injected at '%s'", point);
    return hit;
}
#endif
