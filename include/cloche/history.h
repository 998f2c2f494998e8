/* Per-container metrics history in three tiers: raw samples for 4 hours, 2-minute
 * means for 24 hours, 20-minute means for 7 days, each in a ring of bounded capacity
 * so that memory stays bounded whatever the sampling rate. Pure data structure: no
 * kernel, no JSON. Not thread-safe: the caller locks. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "cloche/cleanup.h"

typedef struct HistorySample {
    int64_t time;       /* unix seconds (the sample's time; for a mean, the start of its bucket) */
    double cpu_percent; /* CPU use over the interval, 100 = one full CPU */
    uint64_t memory_used;        /* bytes */
    uint64_t memory_limit;       /* bytes, 0 = none */
    uint64_t rx_bytes, tx_bytes; /* cumulative counters seen from the container */
    uint64_t rx_delta, tx_delta; /* bytes since the previous sample (summed in means) */
} HistorySample;

typedef struct History History;

#define HISTORY_DEFAULT_INTERVAL_S 10u
/* The longest sampling interval: one raw sample covers the whole raw tier. */
#define HISTORY_INTERVAL_MAX_S (4u * 3600u)

/* Records in each tier and what the history takes in memory now (rings grow as they
 * fill, up to their capacity). */
typedef struct HistoryStats {
    size_t raw_samples;
    size_t means_2min;
    size_t means_20min;
    size_t memory_bytes;
} HistoryStats;

/* A history sized for one sample every interval_s seconds (1..HISTORY_INTERVAL_MAX_S,
 * else -EINVAL): the raw ring holds ceil(4 h / interval_s) samples, the 2-minute ring
 * 720 means, the 20-minute ring 504. Sampling faster than interval_s keeps less than
 * 4 hours of raw samples (the means are unaffected). Rings are allocated as they fill;
 * a full history at 10 s takes 2664 records of 56 bytes, about 146 KiB. */
int history_new_interval(History **ret, unsigned interval_s);

/* history_new_interval with HISTORY_DEFAULT_INTERVAL_S. */
int history_new(History **ret);

/* Always returns NULL. */
History *history_free(History *h);
static inline void history_freep(History **h)
{
    if (*h)
        *h = history_free(*h);
}
#define _cleanup_history_ _cleanup_(history_freep)

/* Add a raw sample (borrowed, copied). Times must strictly increase: a sample not
 * newer than the last one, a negative time, or a cpu_percent that is not a finite
 * number >= 0 is refused with -EINVAL and changes nothing; so does -ENOMEM.
 * A 2-minute or 20-minute mean is computed when its bucket (aligned to multiples of
 * 120 s / 1200 s of unix time) is complete, i.e. when a sample arrives in a later
 * bucket: means of cpu_percent, memory_used, memory_limit; the last rx/tx_bytes; the
 * sums of rx/tx_delta. */
int history_add(History *h, const HistorySample *s);

/* The records with time >= since, oldest first, as one series without overlap:
 * 20-minute means for what is older than the 2-minute tier holds, 2-minute means for
 * what is older than the raw tier holds, then raw samples. A coarse bucket that
 * straddles the start of a finer tier is kept whole and the finer records inside it
 * are left out, so the series has no gap either. *ret is malloc'd (NULL when
 * *ret_n is 0). */
int history_query(const History *h, int64_t since, HistorySample **ret, size_t *ret_n);

void history_get_stats(const History *h, HistoryStats *ret);

/* Write the history to dirfd/name atomically (atomic_write_at, mode 0600) as a
 * compact little-endian binary file: magic, version, interval, last time, counts,
 * the two buckets being filled, then the three rings. */
int history_save(const History *h, int dirfd, const char *name);

/* Read a file written by history_save. Everything is validated: a truncated, oversized
 * or inconsistent file is -EBADMSG; a missing one -ENOENT. */
int history_load(int dirfd, const char *name, History **ret);

/* The decoding half of history_load, on bytes in memory (for tests and fuzzers). */
int history_decode(const void *data, size_t len, History **ret);

/* ---- carrying a history over (history-store.h) ---------------------------- */

/* The running sums of a mean bucket being filled. */
typedef struct HistoryBucket {
    int64_t start;
    uint32_t count;
    double cpu_sum, memory_used_sum, memory_limit_sum;
    uint64_t rx_bytes, tx_bytes; /* of the last sample */
    uint64_t rx_delta, tx_delta; /* sums */
} HistoryBucket;

/* The records of tier 0 (raw), 1 (2-minute means) or 2 (20-minute means), oldest
 * first, copied into out (NULL: only counted); the count is returned. */
size_t history_tier_records(const History *h, unsigned tier, HistorySample *out);

/* The bucket being filled of tier 1 or 2 (all zero when empty). */
void history_tier_filling(const History *h, unsigned tier, HistoryBucket *ret);

/* The newest sample's time, -1 when there is none; the interval it was made for. */
int64_t history_last_time(const History *h);
unsigned history_interval(const History *h);
