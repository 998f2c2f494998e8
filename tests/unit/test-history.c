/* history: the three tiers over 8 days of 10 s samples (one series without overlap or
 * gap, means of a known pattern, retention), since, exact means on a handful of
 * samples, 1 s sampling, 32-bit offsets after huge time spans, save/load and the
 * refusal of corrupt files. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tap.h"

#include "cloche/cleanup.h"
#include "cloche/fileio.h"
#include "cloche/history.h"

#define DAY 86400
#define T0 INT64_C(1700000000) /* 80 s into a 2-minute bucket */
#define WEEK_SAMPLES (8 * DAY / 10)

/* File layout (see history.c). */
#define HEADER_SIZE 172
#define RECORD_SIZE 60
#define OFF_VERSION 8
#define OFF_INTERVAL 12
#define OFF_COUNTS 24
#define OFF_BUCKET_COUNT 44

static char tmpdir[PATH_MAX];

static void free_samplesp(HistorySample **p)
{
    free(*p);
}
#define _cleanup_samples_ _cleanup_(free_samplesp)

/* The known pattern: cpu and memory alternate, 5 and 7 bytes each way per sample. */
static HistorySample pattern(int64_t i)
{
    return (HistorySample){
        .time = T0 + 10 * i,
        .cpu_percent = i % 2 ? 100 : 0,
        .memory_used = i % 2 ? 2000 : 1000,
        .memory_limit = 4096,
        .rx_bytes = 5 * (uint64_t)(i + 1),
        .tx_bytes = 7 * (uint64_t)(i + 1),
        .rx_delta = 5,
        .tx_delta = 7,
    };
}

/* What a record of the pattern covers, told by its delta sum: 20-minute means, 2-minute
 * means, raw samples (10 s apart); 0 for anything else. */
static int64_t pattern_width(const HistorySample *s)
{
    switch (s->rx_delta) {
    case 600:
        return 1200;
    case 60:
        return 120;
    case 5:
        return 10;
    default:
        return 0;
    }
}

/* A pattern series is coarse means, then finer means, then raw samples, each record
 * starting exactly where the one before ends, and every mean right. Returns the index
 * of the first bad record, or -1. */
static long pattern_series_bad(const HistorySample *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int64_t width = pattern_width(&s[i]);
        if (width == 0)
            return (long)i;
        if (i > 0 && (pattern_width(&s[i - 1]) < width ||
                      s[i].time != s[i - 1].time + pattern_width(&s[i - 1])))
            return (long)i;
        /* The last sample of the record's span. */
        int64_t last = (s[i].time + width - 10 - T0) / 10;
        HistorySample want = pattern(last);
        if (width > 10) {
            want.time = s[i].time;
            want.cpu_percent = 50;
            want.memory_used = 1500;
            want.rx_delta = 5 * (uint64_t)width / 10;
            want.tx_delta = 7 * (uint64_t)width / 10;
        }
        if (memcmp(&s[i], &want, sizeof(want)) != 0)
            return (long)i;
    }
    return -1;
}

static bool strictly_increasing(const HistorySample *s, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (s[i].time <= s[i - 1].time)
            return false;
    return true;
}

static bool same_queries(const History *a, const History *b)
{
    _cleanup_samples_ HistorySample *sa = NULL, *sb = NULL;
    size_t na = 0, nb = 0;
    if (history_query(a, 0, &sa, &na) < 0 || history_query(b, 0, &sb, &nb) < 0)
        return false;
    return na == nb && (na == 0 || memcmp(sa, sb, na * sizeof(*sa)) == 0);
}

static bool same_stats(const History *a, const History *b)
{
    HistoryStats x, y;
    history_get_stats(a, &x);
    history_get_stats(b, &y);
    return x.raw_samples == y.raw_samples && x.means_2min == y.means_2min &&
           x.means_20min == y.means_20min;
}

static void test_basic(void)
{
    _cleanup_history_ History *h = NULL;
    _cleanup_samples_ HistorySample *s = NULL;
    size_t n = 99;

    is_int(history_new_interval(&h, 0), -EINVAL, "interval 0 refused");
    is_int(history_new_interval(&h, HISTORY_INTERVAL_MAX_S + 1), -EINVAL,
           "interval over 4 h refused");
    ok(!h, "nothing returned on failure");
    is_int(history_new(&h), 0, "new");
    is_int(history_query(h, 0, &s, &n), 0, "query empty");
    ok(n == 0 && !s, "empty: no records, NULL");

    HistorySample one = pattern(0);
    is_int(history_add(h, &one), 0, "add");
    is_int(history_query(h, 0, &s, &n), 0, "query one");
    ok(n == 1 && memcmp(&s[0], &one, sizeof(one)) == 0, "the sample comes back as added");
    free(TAKE_PTR(s));

    HistorySample bad = pattern(0);
    is_int(history_add(h, &bad), -EINVAL, "same time refused");
    bad.time = T0 - 1;
    is_int(history_add(h, &bad), -EINVAL, "time going backwards refused");
    bad = pattern(1);
    bad.cpu_percent = NAN;
    is_int(history_add(h, &bad), -EINVAL, "NaN cpu refused");
    bad.cpu_percent = -1;
    is_int(history_add(h, &bad), -EINVAL, "negative cpu refused");
    bad.cpu_percent = INFINITY;
    is_int(history_add(h, &bad), -EINVAL, "infinite cpu refused");
    _cleanup_history_ History *fresh = NULL;
    is_int(history_new(&fresh), 0, "new");
    bad = pattern(0);
    bad.time = -10;
    is_int(history_add(fresh, &bad), -EINVAL, "negative time refused");

    is_int(history_query(h, 0, &s, &n), 0, "query after refusals");
    ok(n == 1 && memcmp(&s[0], &one, sizeof(one)) == 0, "refusals changed nothing");
}

static int add(History *h, int64_t time, double cpu, uint64_t mem, uint64_t limit, uint64_t rx,
               uint64_t rx_delta)
{
    HistorySample s = {
        .time = time,
        .cpu_percent = cpu,
        .memory_used = mem,
        .memory_limit = limit,
        .rx_bytes = rx,
        .tx_bytes = 2 * rx,
        .rx_delta = rx_delta,
        .tx_delta = 2 * rx_delta,
    };
    return history_add(h, &s);
}

/* Exact means on a few samples. Sized for one sample in 4 h, the raw tier holds only
 * the newest sample, so the means show at once. */
static void test_means(void)
{
    const int64_t t = INT64_C(1200) * 1000000; /* a 20-minute boundary */
    _cleanup_history_ History *h = NULL;
    _cleanup_samples_ HistorySample *s = NULL;
    size_t n = 0;
    HistoryStats st;

    is_int(history_new_interval(&h, HISTORY_INTERVAL_MAX_S), 0, "new, one sample per 4 h");
    int r = add(h, t, 10, 100, 1000, 10, 10);
    if (r >= 0)
        r = add(h, t + 30, 20, 200, 1000, 25, 15);
    if (r >= 0)
        r = add(h, t + 60, 60, 600, 4000, 30, 5);
    if (r >= 0)
        r = add(h, t + 120, 0, 0, 0, 31, 1); /* completes the first 2-minute bucket */
    is_int(r, 0, "four samples");
    history_get_stats(h, &st);
    ok(st.raw_samples == 1 && st.means_2min == 1 && st.means_20min == 0,
       "1 raw sample, one 2-minute mean, no 20-minute mean yet");

    is_int(history_query(h, 0, &s, &n), 0, "query");
    if (is_int(n, 2, "a mean and a raw sample")) {
        is_int(s[0].time, t, "mean at the start of its bucket");
        ok(s[0].cpu_percent == 30, "mean cpu 30 (10, 20, 60)");
        is_u64(s[0].memory_used, 300, "mean memory");
        is_u64(s[0].memory_limit, 2000, "mean limit");
        ok(s[0].rx_bytes == 30 && s[0].tx_bytes == 60, "last counters");
        ok(s[0].rx_delta == 30 && s[0].tx_delta == 60, "deltas summed");
        is_int(s[1].time, t + 120, "then the raw sample");
    }
    free(TAKE_PTR(s));

    is_int(add(h, t + 1300, 100, 1, 1, 40, 9), 0, "a sample in the next 20-minute bucket");
    is_int(history_query(h, 0, &s, &n), 0, "query");
    ok(n == 3 && s[0].time == t && s[1].time == t + 120 && s[2].time == t + 1300,
       "the 2-minute tier covers the 20-minute bucket: two 2-minute means, raw");
    free(TAKE_PTR(s));

    /* Two days later the 2-minute means are gone and the 20-minute ones show. */
    is_int(add(h, t + 2 * DAY, 0, 0, 0, 50, 10), 0, "a sample two days later");
    history_get_stats(h, &st);
    ok(st.raw_samples == 1 && st.means_2min == 0 && st.means_20min == 2,
       "2-minute means expired after 24 h");
    is_int(history_query(h, 0, &s, &n), 0, "query");
    if (is_int(n, 3, "two 20-minute means, raw")) {
        is_int(s[0].time, t, "first 20-minute bucket");
        ok(s[0].cpu_percent == 22.5, "mean cpu 22.5 (10, 20, 60, 0)");
        is_u64(s[0].memory_used, 225, "mean memory");
        is_u64(s[0].memory_limit, 1500, "mean limit");
        ok(s[0].rx_bytes == 31 && s[0].rx_delta == 31 && s[0].tx_delta == 62,
           "last counter, deltas summed");
        ok(s[1].time == t + 1200 && s[1].cpu_percent == 100 && s[1].rx_delta == 9,
           "second 20-minute bucket: one sample");
        is_int(s[2].time, t + 2 * DAY, "raw");
    }
    free(TAKE_PTR(s));
    is_int(history_query(h, t + 1, &s, &n), 0, "query since");
    ok(n == 2 && s[0].time == t + 1200, "since drops the bucket that starts before it");
    free(TAKE_PTR(s));

    is_int(add(h, t + 8 * DAY, 0, 0, 0, 60, 10), 0, "a sample eight days later");
    history_get_stats(h, &st);
    ok(st.raw_samples == 1 && st.means_2min == 0 && st.means_20min == 1,
       "20-minute means older than 7 days expired");
    is_int(history_query(h, 0, &s, &n), 0, "query");
    ok(n == 2 && s[0].time == t + 2 * DAY && s[1].time == t + 8 * DAY,
       "the mean of six days ago, raw");
}

static void test_since(const History *h, int64_t last)
{
    const int64_t sinces[] = {
        T0 - 100,              /* before everything */
        last - 3 * DAY + 7,    /* among the 20-minute means */
        last - 10 * 3600 + 33, /* among the 2-minute means */
        last - 3600 + 5,       /* among the raw samples */
        last,
    };
    for (size_t i = 0; i < ELEMENTSOF(sinces); i++) {
        _cleanup_samples_ HistorySample *s = NULL;
        size_t n = 0;
        int64_t since = sinces[i];
        is_int(history_query(h, since, &s, &n), 0, "query since last%+" PRId64, since - last);
        if (!ok(n > 0, "  not empty"))
            continue;
        ok(s[0].time >= since && s[n - 1].time == last, "  from since to the last sample");
        ok(i == 0 || s[0].time - since < pattern_width(&s[0]),
           "  the first record is the first of its tier at or after since");
        long bad = pattern_series_bad(s, n);
        is_int(bad, -1, "  one series, no overlap or gap, means right");
    }
    _cleanup_samples_ HistorySample *s = NULL;
    size_t n = 99;
    is_int(history_query(h, last + 1, &s, &n), 0, "query since after the last sample");
    ok(n == 0 && !s, "  nothing");
}

static void test_week(int dfd)
{
    _cleanup_history_ History *h = NULL;
    _cleanup_samples_ HistorySample *s = NULL;
    size_t n = 0;
    HistoryStats st;

    is_int(history_new(&h), 0, "new, 10 s interval");
    int r = 0;
    int64_t i;
    for (i = 0; i < WEEK_SAMPLES && r >= 0; i++) {
        HistorySample p = pattern(i);
        r = history_add(h, &p);
    }
    is_int(r, 0, "8 days of samples at 10 s");
    const int64_t last = pattern(WEEK_SAMPLES - 1).time;

    history_get_stats(h, &st);
    is_int(st.raw_samples, 1440, "raw tier full: 4 h at 10 s");
    is_int(st.means_2min, 720, "2-minute tier full: 24 h");
    is_int(st.means_20min, 504, "20-minute tier full: 7 days");
    printf("# memory per History at 10 s, full: %zu bytes (%.1f KiB); 1000 containers: "
           "%.0f MiB\n",
           st.memory_bytes, st.memory_bytes / 1024.0, st.memory_bytes * 1000.0 / (1 << 20));
    ok(st.memory_bytes <= 150000, "full history within 150 kB");

    is_int(history_query(h, last - 14390, &s, &n), 0, "query the last 4 h");
    ok(n == 1440 && s[0].time == last - 14390 && pattern_width(&s[0]) == 10 &&
           pattern_width(&s[n - 1]) == 10,
       "raw tier holds exactly the last 4 h");
    free(TAKE_PTR(s));

    is_int(history_query(h, 0, &s, &n), 0, "query all");
    is_int(pattern_series_bad(s, n), -1, "one series, no overlap or gap, means right");
    ok(strictly_increasing(s, n), "times strictly increase");
    size_t counts[3] = {0};
    for (size_t k = 0; k < n; k++)
        counts[pattern_width(&s[k]) == 1200 ? 0 : pattern_width(&s[k]) == 120 ? 1 : 2]++;
    printf("# query(0): %zu records: %zu 20-minute, %zu 2-minute, %zu raw\n", n, counts[0],
           counts[1], counts[2]);
    ok(n > 0 && s[0].time <= last - 7 * DAY + 1200 && s[0].time > last - 7 * DAY - 1200,
       "covers 7 days");
    ok(n > 0 && s[n - 1].time == last, "up to the last sample");
    ok(counts[1] > 0 && counts[1] <= 720 && counts[2] > 1400, "all three tiers present");
    free(TAKE_PTR(s));

    test_since(h, last);

    /* Save, load, and carry on adding to both: the same history all along. */
    _cleanup_history_ History *loaded = NULL;
    is_int(history_save(h, dfd, "week"), 0, "save");
    is_int(history_load(dfd, "week", &loaded), 0, "load");
    ok(loaded && same_stats(h, loaded), "same tiers after load");
    ok(loaded && same_queries(h, loaded), "same series after load");
    r = 0;
    for (int64_t k = i; k < i + 360 && r >= 0 && loaded; k++) {
        HistorySample p = pattern(k);
        r = history_add(h, &p);
        if (r >= 0)
            r = history_add(loaded, &p);
    }
    is_int(r, 0, "another hour added to both");
    ok(loaded && same_queries(h, loaded), "still the same series (buckets being filled kept)");
    is_int(history_save(h, dfd, "a"), 0, "save original");
    if (loaded)
        is_int(history_save(loaded, dfd, "b"), 0, "save loaded");
    _cleanup_free_ char *a = NULL, *b = NULL;
    size_t alen = 0, blen = 0;
    ok(read_file_at(dfd, "a", 1 << 20, &a, &alen) == 0 &&
           read_file_at(dfd, "b", 1 << 20, &b, &blen) == 0 && alen == blen &&
           memcmp(a, b, alen) == 0,
       "byte-identical files");
    printf("# file size, full at 10 s: %zu bytes\n", alen);
}

/* 1 s samples: the raw ring is sized for them, and allocated as it fills. */
static void test_interval_1s(void)
{
    _cleanup_history_ History *h = NULL;
    HistoryStats st;
    is_int(history_new_interval(&h, 1), 0, "new, 1 s interval");
    int r = 0;
    for (int64_t i = 0; i < 100 && r >= 0; i++)
        r = add(h, T0 + i, 1, 1, 1, (uint64_t)i, 1);
    history_get_stats(h, &st);
    printf("# memory after 100 s at 1 s: %zu bytes\n", st.memory_bytes);
    ok(r == 0 && st.memory_bytes < 16384, "rings allocated as they fill");
    for (int64_t i = 100; i < 5 * 3600 && r >= 0; i++)
        r = add(h, T0 + i, 1, 1, 1, (uint64_t)i, 1);
    is_int(r, 0, "5 h at 1 s");
    history_get_stats(h, &st);
    is_int(st.raw_samples, 14400, "raw tier: 4 h at 1 s");
    is_int(st.means_2min, 5 * 30, "2-minute tier: 5 h");
    printf("# memory after 5 h at 1 s: %zu bytes\n", st.memory_bytes);
    ok(st.memory_bytes < 1000000, "bounded");
}

/* Records keep 32-bit offsets from an epoch; spans beyond 2^32 s move it. */
static void test_long_spans(int dfd)
{
    _cleanup_history_ History *h = NULL;
    _cleanup_samples_ HistorySample *s = NULL;
    size_t n = 0;

    is_int(history_new(&h), 0, "new");
    int r = add(h, 1000, 1, 1, 1, 1, 1);
    if (r >= 0)
        r = add(h, 1010, 1, 1, 1, 2, 1);
    if (r >= 0)
        r = add(h, 1000 + INT64_C(5000000000), 7, 1, 1, 3, 1);
    is_int(r, 0, "a jump of 5e9 s");
    is_int(history_query(h, 0, &s, &n), 0, "query");
    ok(n == 1 && s[0].time == 1000 + INT64_C(5000000000) && s[0].cpu_percent == 7,
       "only the new sample remains");
    free(TAKE_PTR(s));
    h = history_free(h);

    /* A sample every 6 days for more than 2^32 s: always the previous one's 20-minute
     * mean, then the new raw sample. */
    const int64_t step = 6 * DAY; /* a multiple of 1200 */
    is_int(history_new(&h), 0, "new");
    long bad = -1;
    for (int64_t i = 0; i < 8400 && bad < 0; i++) {
        if (add(h, i * step, 1, (uint64_t)i, 1, (uint64_t)i, 1) < 0 ||
            history_query(h, 0, &s, &n) < 0)
            bad = (long)i;
        else if (i > 0 && (n != 2 || s[0].time != (i - 1) * step ||
                           s[0].memory_used != (uint64_t)i - 1 || s[1].time != i * step))
            bad = (long)i;
        free(TAKE_PTR(s));
    }
    is_int(bad, -1, "8400 samples 6 days apart (%.2g s)", 8400.0 * step);

    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    _cleanup_history_ History *loaded = NULL;
    is_int(history_save(h, dfd, "long"), 0, "save");
    is_int(read_file_at(dfd, "long", 1 << 20, &data, &len), 0, "read");
    is_int(history_decode(data, len, &loaded), 0, "decode");
    ok(loaded && same_queries(h, loaded), "same series");
}

static void put_le(char *p, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)(v >> (8 * i));
}

/* Decode a copy of data with the width-byte little-endian v written at off. */
static int decode_patched(const char *data, size_t len, size_t off, uint64_t v, size_t width)
{
    _cleanup_free_ char *copy = malloc(len);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, data, len);
    put_le(copy + off, v, width);
    _cleanup_history_ History *h = NULL;
    return history_decode(copy, len, &h);
}

static void test_corrupt(int dfd)
{
    _cleanup_history_ History *h = NULL;
    is_int(history_new(&h), 0, "new");
    int r = 0;
    for (int64_t i = 0; i < 400 && r >= 0; i++) {
        HistorySample p = pattern(i);
        r = history_add(h, &p);
    }
    is_int(r, 0, "400 samples");
    HistoryStats st;
    history_get_stats(h, &st);
    ok(st.raw_samples == 400 && st.means_2min > 0 && st.means_20min > 0, "all tiers in use");
    is_int(history_save(h, dfd, "small"), 0, "save");
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    is_int(read_file_at(dfd, "small", 1 << 20, &data, &len), 0, "read");
    is_int(len, HEADER_SIZE + (400 + st.means_2min + st.means_20min) * RECORD_SIZE,
           "file size: header and 60-byte records");

    _cleanup_history_ History *back = NULL;
    is_int(history_decode(data, len, &back), 0, "decodes");
    ok(back && same_queries(h, back), "same series");

    size_t truncated_ok = 0;
    for (size_t l = 0; l < len; l++) {
        _cleanup_history_ History *x = NULL;
        if (history_decode(data, l, &x) == -EBADMSG && !x)
            truncated_ok++;
    }
    is_int(truncated_ok, len, "every truncation is -EBADMSG");

    const size_t raw0 = HEADER_SIZE, mid0 = HEADER_SIZE + 400 * RECORD_SIZE;
    is_int(decode_patched(data, len, 0, 'X', 1), -EBADMSG, "bad magic");
    is_int(decode_patched(data, len, OFF_VERSION, 2, 4), -EBADMSG, "unknown version");
    is_int(decode_patched(data, len, OFF_INTERVAL, 0, 4), -EBADMSG, "interval 0");
    is_int(decode_patched(data, len, OFF_COUNTS, UINT32_MAX, 4), -EBADMSG, "huge raw count");
    is_int(decode_patched(data, len, OFF_COUNTS + 4, UINT32_MAX, 4), -EBADMSG,
           "huge 2-minute count");
    is_int(decode_patched(data, len, OFF_COUNTS + 8, 505, 4), -EBADMSG,
           "20-minute count over capacity");
    is_int(decode_patched(data, len, OFF_COUNTS, 399, 4), -EBADMSG, "count and size disagree");
    is_int(decode_patched(data, len, OFF_BUCKET_COUNT, 0, 4), -EBADMSG, "empty bucket with data");
    is_int(decode_patched(data, len, OFF_BUCKET_COUNT, 1000, 4), -EBADMSG,
           "more samples in a bucket than seconds");
    is_int(decode_patched(data, len, raw0 + RECORD_SIZE, (uint64_t)T0, 8), -EBADMSG,
           "raw times not increasing");
    is_int(decode_patched(data, len, raw0 + 8, 0x7fc00000, 4), -EBADMSG, "NaN cpu");
    is_int(decode_patched(data, len, mid0, (uint64_t)T0 + 1, 8), -EBADMSG,
           "unaligned 2-minute bucket");
    is_int(decode_patched(data, len, 16, (uint64_t)T0 + 10 * 400, 8), -EBADMSG,
           "last time is not the newest raw sample's");
    is_int(decode_patched(data, len, 16, UINT64_MAX, 8), -EBADMSG, "no samples, yet records");

    _cleanup_free_ char *longer = malloc(len + 1);
    if (longer) {
        memcpy(longer, data, len);
        longer[len] = 0;
        _cleanup_history_ History *x = NULL;
        is_int(history_decode(longer, len + 1, &x), -EBADMSG, "trailing byte");
    }

    /* Every single-byte change is either refused or yields a sane history. */
    size_t refused = 0, accepted = 0, insane = 0;
    const unsigned char flips[] = {0x01, 0x80, 0xff};
    for (size_t off = 0; off < len; off++)
        for (size_t f = 0; f < ELEMENTSOF(flips); f++) {
            data[off] ^= (char)flips[f];
            _cleanup_history_ History *x = NULL;
            r = history_decode(data, len, &x);
            data[off] ^= (char)flips[f];
            if (r == -EBADMSG) {
                refused++;
                continue;
            }
            _cleanup_samples_ HistorySample *s = NULL;
            size_t n = 0;
            if (r == 0 && history_query(x, 0, &s, &n) == 0 && strictly_increasing(s, n))
                accepted++;
            else
                insane++;
        }
    printf("# single-byte changes: %zu refused, %zu accepted\n", refused, accepted);
    is_int(insane, 0, "every changed byte: -EBADMSG or a sane history");

    /* The same through files. */
    _cleanup_history_ History *x = NULL;
    is_int(atomic_write_volatile_at(dfd, "cut", data, len / 2, 0600), 0, "write a truncated file");
    is_int(history_load(dfd, "cut", &x), -EBADMSG, "truncated file is -EBADMSG");
    is_int(atomic_write_volatile_at(dfd, "empty", "", 0, 0600), 0, "write an empty file");
    is_int(history_load(dfd, "empty", &x), -EBADMSG, "empty file is -EBADMSG");
    _cleanup_free_ char *big = calloc(1, 2 << 20);
    if (big) {
        memcpy(big, data, HEADER_SIZE);
        is_int(atomic_write_volatile_at(dfd, "big", big, 2 << 20, 0600), 0, "write a 2 MiB file");
        is_int(history_load(dfd, "big", &x), -EBADMSG, "oversized file is -EBADMSG");
    }
    is_int(history_load(dfd, "missing", &x), -ENOENT, "missing file is -ENOENT");
    ok(!x, "nothing returned on failure");

    _cleanup_history_ History *empty = NULL, *empty_back = NULL;
    is_int(history_new_interval(&empty, 15), 0, "new, 15 s interval");
    is_int(history_save(empty, dfd, "none"), 0, "save an empty history");
    is_int(history_load(dfd, "none", &empty_back), 0, "load it");
    ok(empty_back && same_queries(empty, empty_back), "still empty");
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/test-history.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        ok(0, "mkdtemp: %s", strerror(errno));
        return tap_done();
    }
    int dfd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ok(dfd >= 0, "open temp dir");

    test_basic();
    test_means();
    test_week(dfd);
    test_interval_1s();
    test_long_spans(dfd);
    test_corrupt(dfd);

    close(dfd);
    is_int(rm_rf_at(AT_FDCWD, tmpdir), 0, "remove temp dir");
    return tap_done();
}
