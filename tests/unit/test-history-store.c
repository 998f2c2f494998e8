/* history-store: the same series as the in-memory History, record for record, over
 * 8 days at 10 s and hours at 1 s, flushed at irregular points and reopened
 * mid-way; the memory it keeps; -ENOBUFS past the pending bound; carrying a
 * History over; and what a crash or a damaged file leaves: a bad slot is skipped,
 * a torn state falls back to the other copy, a bad header is -EBADMSG. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tap.h"

#include "cloche/cleanup.h"
#include "cloche/fileio.h"
#include "cloche/history-store.h"
#include "cloche/history.h"

#define DAY 86400
#define T0 INT64_C(1700000000)
/* At a 20-minute boundary: raw records from here are not covered by any mean. */
#define TA (T0 + 400)
#define FILE_NAME "metrics-history"
/* File layout (see history-store.c). */
#define STATE_OFFSET(copy) (64 + (copy)*256)
#define SLOTS_OFFSET 1024
#define SLOT_SIZE 64

static char tmpdir[PATH_MAX];

/* A load that is not periodic: irregular gaps (10 to 30 s), fractional cpu,
 * counters that only grow. */
static HistorySample sample_at(int64_t i, int64_t *time)
{
    *time += 10 + 10 * (i % 7 == 3) + 10 * (i % 13 == 5);
    return (HistorySample){
        .time = *time,
        .cpu_percent = (double)((i * 37) % 1000) / 7.0,
        .memory_used = 1000000 + (uint64_t)((i * 7919) % 100000),
        .memory_limit = i < 20000 ? 1 << 30 : 1 << 29,
        .rx_bytes = 100 * (uint64_t)i,
        .tx_bytes = 50 * (uint64_t)i,
        .rx_delta = 100,
        .tx_delta = 50,
    };
}

static bool same_sample(const HistorySample *a, const HistorySample *b)
{
    return a->time == b->time && a->cpu_percent == b->cpu_percent &&
           a->memory_used == b->memory_used && a->memory_limit == b->memory_limit &&
           a->rx_bytes == b->rx_bytes && a->tx_bytes == b->tx_bytes && a->rx_delta == b->rx_delta &&
           a->tx_delta == b->tx_delta;
}

/* The store answers as the History does, for a few `since`s. */
static bool same_series(const History *mem, const HistoryStore *st, int dfd)
{
    int64_t last = history_last_time(mem);
    const int64_t sinces[] = {0,          last - 6 * DAY, last - 23 * 3600, last - 3 * 3600,
                              last - 600, last,           last + 1};
    for (size_t k = 0; k < sizeof(sinces) / sizeof(sinces[0]); k++) {
        HistorySample *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        bool same = history_query(mem, sinces[k], &a, &na) == 0 &&
                    history_store_query(st, dfd, FILE_NAME, sinces[k], &b, &nb) == 0 && na == nb;
        for (size_t i = 0; same && i < na; i++)
            same = same_sample(&a[i], &b[i]);
        if (!same)
            printf("# since %lld: %zu records in memory, %zu in the store\n", (long long)sinces[k],
                   na, nb);
        free(a);
        free(b);
        if (!same)
            return false;
    }
    return true;
}

static void test_week(int dfd)
{
    _cleanup_history_ History *mem = NULL;
    _cleanup_history_store_ HistoryStore *st = NULL;
    is_int(history_new(&mem), 0, "in-memory history");
    is_int(history_store_new(10, &st), 0, "store");
    (void)unlinkat(dfd, FILE_NAME, 0);

    int64_t time = T0, i = 0;
    int r = 0;
    bool same = true;
    size_t most_memory = 0;
    /* 8 days, flushed every 1 to 97 samples; compared now and then, sometimes with
     * records still pending. */
    for (int64_t day = 1; day <= 8 && r == 0; day++) {
        while (r == 0 && time < T0 + day * DAY) {
            HistorySample s = sample_at(i, &time);
            r = history_add(mem, &s);
            if (r == 0)
                r = history_store_add(st, &s);
            if (r == 0 && i % (1 + i % 97) == 0)
                r = history_store_flush(st, dfd, FILE_NAME);
            if (history_store_memory(st) > most_memory)
                most_memory = history_store_memory(st);
            i++;
        }
        if (same && !same_series(mem, st, dfd)) {
            same = false;
            printf("# differs after day %lld\n", (long long)day);
        }
    }
    is_int(r, 0, "8 days of irregular samples added to both");
    ok(same, "the store's series is the in-memory one, every day");
    is_int(history_store_flush(st, dfd, FILE_NAME), 0, "flush");
    is_int(history_store_pending(st), 0, "nothing pending after a flush");
    ok(history_store_memory(st) < 1024, "a week in the store keeps %zu bytes in memory",
       history_store_memory(st));
    ok(most_memory < 64 * 1024, "at most %zu bytes while records were pending", most_memory);

    HistorySample newest, expect;
    HistorySample *all = NULL;
    size_t n = 0;
    history_query(mem, 0, &all, &n);
    expect = all[n - 1];
    free(all);
    ok(history_store_latest(st, &newest) == 0 && same_sample(&newest, &expect),
       "latest is the newest record of the series");

    /* Reopen, then go on adding to both: the buckets being filled came back too. */
    _cleanup_history_store_ HistoryStore *back = NULL;
    is_int(history_store_open(dfd, FILE_NAME, &back), 0, "reopen");
    ok(back && same_series(mem, back, dfd), "reopened: the same series");
    ok(back && history_store_latest(back, &newest) == 0 && same_sample(&newest, &expect),
       "reopened: the same latest sample");
    is_int(history_store_interval(back), 10, "reopened: the interval");
    for (int64_t k = 0; r == 0 && k < 400; k++) {
        HistorySample s = sample_at(i++, &time);
        r = history_add(mem, &s);
        if (r == 0)
            r = history_store_add(back, &s);
        if (r == 0 && k % 100 == 99)
            r = history_store_flush(back, dfd, FILE_NAME);
    }
    is_int(r, 0, "400 more samples added to both");
    is_int(history_store_flush(back, dfd, FILE_NAME), 0, "flush the reopened store");
    ok(same_series(mem, back, dfd), "the means completed after reopening are the same");

    /* A sample not newer than the last, or a bad cpu, changes nothing. */
    HistorySample old = expect;
    is_int(history_store_add(back, &old), -EINVAL, "an old sample is refused");
    HistorySample bad = sample_at(i, &time);
    bad.cpu_percent = -1;
    is_int(history_store_add(back, &bad), -EINVAL, "a negative cpu is refused");
    is_int(history_store_pending(back), 0, "nothing pending after refusals");
}

static void test_interval_1s(int dfd)
{
    _cleanup_history_ History *mem = NULL;
    _cleanup_history_store_ HistoryStore *st = NULL;
    is_int(history_new_interval(&mem, 1), 0, "1 s in memory");
    is_int(history_store_new(1, &st), 0, "1 s store");
    (void)unlinkat(dfd, FILE_NAME, 0);
    int r = 0;
    for (int64_t i = 0; r == 0 && i < 6 * 3600; i++) {
        HistorySample s = {.time = T0 + i, .cpu_percent = (double)(i % 300), .memory_used = 7};
        r = history_add(mem, &s);
        if (r == 0)
            r = history_store_add(st, &s);
        if (r == 0 && i % 50 == 0)
            r = history_store_flush(st, dfd, FILE_NAME);
    }
    is_int(r, 0, "6 hours at 1 s");
    ok(same_series(mem, st, dfd), "1 s: the same series (with some pending)");
}

static void test_bounds(int dfd)
{
    _cleanup_history_store_ HistoryStore *st = NULL;
    HistoryStore *none = NULL;
    is_int(history_store_new(0, &none), -EINVAL, "interval 0 is refused");
    is_int(history_store_new(HISTORY_INTERVAL_MAX_S + 1, &none), -EINVAL, "too long an interval");
    is_int(history_store_new(10, &st), 0, "store");
    (void)unlinkat(dfd, FILE_NAME, 0);
    int r = 0;
    int64_t i = 0;
    for (; i < HISTORY_STORE_PENDING_MAX && r == 0; i++) {
        HistorySample s = {.time = TA + 10 * i};
        r = history_store_add(st, &s);
    }
    is_int(r, 0, "as many samples as may be pending");
    HistorySample more = {.time = TA + 10 * i};
    is_int(history_store_add(st, &more), -ENOBUFS, "one more is refused until a flush");
    is_int(history_store_flush(st, dfd, FILE_NAME), 0, "flush");
    is_int(history_store_add(st, &more), 0, "then it is taken");

    /* The file removed under the store: the next flush starts it again. */
    is_int(unlinkat(dfd, FILE_NAME, 0), 0, "remove the file");
    more.time += 10;
    is_int(history_store_add(st, &more), 0, "add");
    is_int(history_store_flush(st, dfd, FILE_NAME), 0, "flush recreates the file");
    HistorySample *s = NULL;
    size_t n = 0;
    is_int(history_store_query(st, dfd, FILE_NAME, 0, &s, &n), 0, "query");
    /* The sample taken after the ENOBUFS and this one were never written before. */
    ok(n == 2 && s[0].time == more.time - 10 && s[1].time == more.time,
       "only what was written since is read back (%zu)", n);
    free(s);
}

static void test_import(int dfd)
{
    _cleanup_history_ History *mem = NULL;
    is_int(history_new(&mem), 0, "in-memory history");
    int64_t time = T0;
    for (int64_t i = 0; i < 3 * DAY / 10; i++) {
        HistorySample s = sample_at(i, &time);
        (void)history_add(mem, &s);
    }
    (void)unlinkat(dfd, FILE_NAME, 0);
    _cleanup_history_store_ HistoryStore *st = NULL;
    is_int(history_store_import(mem, dfd, FILE_NAME, &st), 0, "import");
    ok(st && same_series(mem, st, dfd), "imported: the same series");
    _cleanup_history_store_ HistoryStore *back = NULL;
    is_int(history_store_open(dfd, FILE_NAME, &back), 0, "reopen the import");
    int r = 0;
    for (int64_t i = 0; r == 0 && i < 300; i++) {
        HistorySample s = sample_at(i, &time);
        r = history_add(mem, &s);
        if (r == 0)
            r = history_store_add(back, &s);
        if (r == 0 && i % 100 == 99)
            r = history_store_flush(back, dfd, FILE_NAME);
    }
    ok(r == 0 && same_series(mem, back, dfd), "imported then added to: the same series");
}

static int patch(int dfd, off_t offset, const void *data, size_t len)
{
    _cleanup_close_ int fd = openat(dfd, FILE_NAME, O_RDWR | O_CLOEXEC);
    return fd >= 0 && pwrite(fd, data, len, offset) == (ssize_t)len ? 0 : -1;
}

static void test_damage(int dfd)
{
    _cleanup_history_store_ HistoryStore *st = NULL;
    is_int(history_store_new(10, &st), 0, "store");
    (void)unlinkat(dfd, FILE_NAME, 0);
    for (int64_t i = 0; i < 100; i++) {
        HistorySample s = {.time = TA + 10 * i, .memory_used = (uint64_t)i};
        (void)history_store_add(st, &s);
        if (i == 59)
            is_int(history_store_flush(st, dfd, FILE_NAME), 0, "flush 60 samples");
    }
    is_int(history_store_flush(st, dfd, FILE_NAME), 0, "flush 40 more");

    /* A torn slot (raw record 10) is left out, the rest read back. */
    char junk[8] = "garbage!";
    is_int(patch(dfd, SLOTS_OFFSET + 10 * SLOT_SIZE + 20, junk, sizeof(junk)), 0,
           "damage one slot");
    HistorySample *s = NULL;
    size_t n = 0;
    is_int(history_store_query(st, dfd, FILE_NAME, 0, &s, &n), 0, "query");
    bool skipped = n == 99;
    for (size_t i = 0; skipped && i < n; i++)
        skipped = s[i].memory_used != 10 && s[i].time == TA + 10 * (int64_t)(s[i].memory_used);
    ok(skipped, "the damaged record is left out, the 99 others are intact (%zu)", n);
    free(s);

    /* The newer state torn: the older one (60 samples) is what opens. */
    is_int(patch(dfd, STATE_OFFSET(0) + 100, junk, sizeof(junk)), 0, "tear the newer state");
    _cleanup_history_store_ HistoryStore *back = NULL;
    is_int(history_store_open(dfd, FILE_NAME, &back), 0, "opens from the other copy");
    s = NULL;
    n = 0;
    if (back)
        is_int(history_store_query(back, dfd, FILE_NAME, 0, &s, &n), 0, "query it");
    ok(n == 59 && s[n - 1].time == TA + 590, "the first flush's 60 samples less the bad one");
    free(s);
    HistorySample latest;
    ok(back && history_store_latest(back, &latest) == 0 && latest.time == TA + 590,
       "its latest sample");

    /* Both states torn, or the header: -EBADMSG. */
    is_int(patch(dfd, STATE_OFFSET(1) + 100, junk, sizeof(junk)), 0, "tear the other state");
    HistoryStore *x = NULL;
    is_int(history_store_open(dfd, FILE_NAME, &x), -EBADMSG, "no good state: -EBADMSG");
    ok(!x, "nothing returned");
    is_int(atomic_write_at(dfd, FILE_NAME, "CLOCHHS1", 8, 0600), 0, "a cut file");
    is_int(history_store_open(dfd, FILE_NAME, &x), -EBADMSG, "a cut file is -EBADMSG");
    is_int(unlinkat(dfd, FILE_NAME, 0), 0, "remove");
    is_int(history_store_open(dfd, FILE_NAME, &x), -ENOENT, "a missing file is -ENOENT");

    /* A fresh store's file with a header claiming another interval's capacities. */
    _cleanup_history_store_ HistoryStore *fresh = NULL;
    HistorySample one = {.time = TA};
    is_int(history_store_new(10, &fresh), 0, "new");
    is_int(history_store_add(fresh, &one), 0, "one sample");
    is_int(history_store_flush(fresh, dfd, FILE_NAME), 0, "flush");
    uint8_t interval[4] = {20, 0, 0, 0};
    is_int(patch(dfd, 12, interval, sizeof(interval)), 0, "change the header's interval");
    is_int(history_store_open(dfd, FILE_NAME, &x), -EBADMSG, "a bad header is -EBADMSG");
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/test-history-store.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        ok(0, "mkdtemp: %s", strerror(errno));
        return tap_done();
    }
    int dfd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ok(dfd >= 0, "open temp dir");

    test_week(dfd);
    test_interval_1s(dfd);
    test_bounds(dfd);
    test_import(dfd);
    test_damage(dfd);

    close(dfd);
    is_int(rm_rf_at(AT_FDCWD, tmpdir), 0, "remove temp dir");
    return tap_done();
}
