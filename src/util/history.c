/* Metrics history: three rings of compact records (raw samples, 2-minute means,
 * 20-minute means) plus, for each mean tier, the bucket being filled.
 *
 * File format (little-endian, written by history_save):
 *   0    magic "CLOCHIST"
 *   8    u32 version (1)
 *   12   u32 interval_s
 *   16   i64 last_time (-1: no samples yet)
 *   24   u32 record count of the raw, 2-minute and 20-minute rings
 *   36   the 2-minute then the 20-minute bucket being filled, 68 bytes each:
 *        i64 start, u32 count, f64 sums of cpu_percent, memory_used, memory_limit,
 *        u64 last rx_bytes, last tx_bytes, sum of rx_delta, sum of tx_delta
 *   172  the records, ring by ring, oldest first, 60 bytes each: i64 time,
 *        f32 cpu_percent, u64 memory_used, memory_limit, rx_bytes, tx_bytes, rx_delta,
 *        tx_delta */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cloche/cleanup.h"
#include "cloche/fileio.h"
#include "cloche/history.h"

enum {
    TIER_RAW,
    TIER_2MIN,
    TIER_20MIN,
    TIERS,
};

typedef struct TierSpec {
    int64_t width;     /* bucket width in seconds; 0 for raw samples */
    int64_t retention; /* a record is kept while time + width > newest time - retention */
    uint32_t capacity; /* 0 for raw: it depends on the interval */
} TierSpec;

static const TierSpec tiers[TIERS] = {
    [TIER_RAW] = {.width = 0, .retention = 4 * 3600, .capacity = 0},
    [TIER_2MIN] = {.width = 120, .retention = 24 * 3600, .capacity = 720},
    [TIER_20MIN] = {.width = 1200, .retention = 7 * 24 * 3600, .capacity = 504},
};

/* The oldest record kept is at most this long before the newest time. */
#define RETENTION_SPAN (7 * 24 * 3600 + 1200)
/* Far beyond any clock; keeps all time arithmetic clear of overflow. */
#define TIME_MAX (INT64_C(1) << 62)
#define CPU_PERCENT_MAX 1e9
/* First allocation of a ring; it doubles from there up to its capacity. */
#define RING_INITIAL 32u

#define FILE_MAGIC "CLOCHIST"
#define FILE_VERSION 1u
#define FILE_BUCKET_SIZE 68u
#define FILE_HEADER_SIZE (36u + 2u * FILE_BUCKET_SIZE)
#define FILE_RECORD_SIZE 60u

/* 56 bytes instead of HistorySample's 64: the time as seconds after History.epoch,
 * cpu_percent as a float (7 significant digits are plenty for a graph). */
typedef struct Record {
    uint32_t offset;
    float cpu_percent;
    uint64_t memory_used;
    uint64_t memory_limit;
    uint64_t rx_bytes, tx_bytes;
    uint64_t rx_delta, tx_delta;
} Record;
_Static_assert(sizeof(Record) == 56, "Record must stay packed");

typedef struct Ring {
    Record *items;
    uint32_t head;      /* index of the oldest record */
    uint32_t count;     /* records held */
    uint32_t allocated; /* records room has been allocated for */
    uint32_t capacity;  /* the most it ever holds */
} Ring;

/* Running sums of the samples in one bucket of a mean tier. */
typedef struct Bucket {
    int64_t start;
    uint32_t count;
    double cpu_sum, memory_used_sum, memory_limit_sum;
    uint64_t rx_bytes, tx_bytes; /* of the last sample */
    uint64_t rx_delta, tx_delta; /* sums */
} Bucket;

struct History {
    unsigned interval_s;
    bool has_samples;
    int64_t last_time;
    /* Records store times as 32-bit offsets from here; a multiple of every bucket
     * width, at or before everything held. */
    int64_t epoch;
    Ring rings[TIERS];
    Bucket filling[TIERS]; /* [TIER_RAW] unused */
};

static int64_t align_down(int64_t t, int64_t width)
{
    return t - t % width; /* t >= 0 */
}

static uint64_t add_saturating(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t mean_u64(double sum, uint32_t count)
{
    double mean = sum / count;
    if (!(mean > 0))
        return 0;
    if (mean >= 18446744073709551615.0)
        return UINT64_MAX;
    return (uint64_t)(mean + 0.5);
}

static bool cpu_percent_valid(double v)
{
    return isfinite(v) && v >= 0 && v <= CPU_PERCENT_MAX;
}

/* ---- rings --------------------------------------------------------------- */

static Record *ring_at(const Ring *r, uint32_t i)
{
    return &r->items[(r->head + i) % r->allocated];
}

/* Make room for one more record unless the ring is at its capacity (where a push
 * replaces the oldest). The only step of an add that can fail. */
static int ring_reserve(Ring *r)
{
    if (r->count < r->allocated || r->allocated == r->capacity)
        return 0;
    uint32_t n = r->allocated ? r->allocated * 2 : RING_INITIAL;
    if (n > r->capacity)
        n = r->capacity;
    Record *items = malloc(sizeof(Record) * n);
    if (!items)
        return -ENOMEM;
    for (uint32_t i = 0; i < r->count; i++)
        items[i] = *ring_at(r, i);
    free(r->items);
    r->items = items;
    r->head = 0;
    r->allocated = n;
    return 0;
}

static void ring_push(Ring *r, const Record *rec)
{
    if (r->count < r->allocated) {
        *ring_at(r, r->count) = *rec;
        r->count++;
        return;
    }
    /* Full at capacity (ring_reserve made room otherwise): replace the oldest. */
    r->items[r->head] = *rec;
    r->head = (r->head + 1) % r->allocated;
}

static void ring_drop_oldest(Ring *r)
{
    r->head = (r->head + 1) % r->allocated;
    r->count--;
}

/* ---- records ------------------------------------------------------------- */

static int64_t record_time(const History *h, const Record *rec)
{
    return h->epoch + rec->offset;
}

static void record_to_sample(const History *h, const Record *rec, HistorySample *ret)
{
    *ret = (HistorySample){
        .time = record_time(h, rec),
        .cpu_percent = rec->cpu_percent,
        .memory_used = rec->memory_used,
        .memory_limit = rec->memory_limit,
        .rx_bytes = rec->rx_bytes,
        .tx_bytes = rec->tx_bytes,
        .rx_delta = rec->rx_delta,
        .tx_delta = rec->tx_delta,
    };
}

static void bucket_add(Bucket *b, int64_t start, const HistorySample *s)
{
    if (b->count == 0)
        b->start = start;
    b->count++;
    b->cpu_sum += s->cpu_percent;
    b->memory_used_sum += (double)s->memory_used;
    b->memory_limit_sum += (double)s->memory_limit;
    b->rx_bytes = s->rx_bytes;
    b->tx_bytes = s->tx_bytes;
    b->rx_delta = add_saturating(b->rx_delta, s->rx_delta);
    b->tx_delta = add_saturating(b->tx_delta, s->tx_delta);
}

static void bucket_mean(const History *h, const Bucket *b, Record *ret)
{
    *ret = (Record){
        .offset = (uint32_t)(b->start - h->epoch),
        .cpu_percent = (float)(b->cpu_sum / b->count),
        .memory_used = mean_u64(b->memory_used_sum, b->count),
        .memory_limit = mean_u64(b->memory_limit_sum, b->count),
        .rx_bytes = b->rx_bytes,
        .tx_bytes = b->tx_bytes,
        .rx_delta = b->rx_delta,
        .tx_delta = b->tx_delta,
    };
}

/* ---- the history --------------------------------------------------------- */

static uint32_t raw_capacity(unsigned interval_s)
{
    return (uint32_t)((tiers[TIER_RAW].retention + interval_s - 1) / interval_s);
}

static int history_alloc(unsigned interval_s, History **ret)
{
    if (interval_s < 1 || interval_s > HISTORY_INTERVAL_MAX_S)
        return -EINVAL;
    History *h = calloc(1, sizeof(History));
    if (!h)
        return -ENOMEM;
    h->interval_s = interval_s;
    h->last_time = -1;
    for (size_t t = 0; t < TIERS; t++)
        h->rings[t].capacity = t == TIER_RAW ? raw_capacity(interval_s) : tiers[t].capacity;
    *ret = h;
    return 0;
}

int history_new_interval(History **ret, unsigned interval_s)
{
    if (!ret)
        return -EINVAL;
    return history_alloc(interval_s, ret);
}

int history_new(History **ret)
{
    return history_new_interval(ret, HISTORY_DEFAULT_INTERVAL_S);
}

History *history_free(History *h)
{
    if (!h)
        return NULL;
    for (size_t t = 0; t < TIERS; t++)
        free(h->rings[t].items);
    free(h);
    return NULL;
}

static void history_prune(History *h)
{
    for (size_t t = 0; t < TIERS; t++) {
        Ring *r = &h->rings[t];
        while (r->count > 0 &&
               record_time(h, ring_at(r, 0)) + tiers[t].width <= h->last_time - tiers[t].retention)
            ring_drop_oldest(r);
    }
}

/* Offsets are 32 bits. Before one would overflow (a clock jump, or 136 years of
 * samples), move the epoch up to just below the oldest time the retention can still
 * keep at now; whatever is older goes (the prune after the add would drop it anyway). */
static void history_rebase(History *h, int64_t now)
{
    int64_t epoch = align_down(now - RETENTION_SPAN, tiers[TIER_20MIN].width);
    int64_t shift = epoch - h->epoch;
    for (size_t t = 0; t < TIERS; t++) {
        Ring *r = &h->rings[t];
        while (r->count > 0 && ring_at(r, 0)->offset < shift)
            ring_drop_oldest(r);
        for (uint32_t i = 0; i < r->count; i++)
            ring_at(r, i)->offset -= (uint32_t)shift;
        if (h->filling[t].count > 0 && h->filling[t].start < epoch)
            h->filling[t] = (Bucket){0};
    }
    h->epoch = epoch;
}

int history_add(History *h, const HistorySample *s)
{
    if (!h || !s)
        return -EINVAL;
    if (s->time < 0 || s->time > TIME_MAX || (h->has_samples && s->time <= h->last_time))
        return -EINVAL;
    if (!cpu_percent_valid(s->cpu_percent))
        return -EINVAL;

    /* Room first, in the rings this sample pushes to, so that a failed allocation
     * leaves the history as it was. */
    for (size_t t = 0; t < TIERS; t++) {
        const Bucket *b = &h->filling[t];
        if (t != TIER_RAW && (b->count == 0 || b->start == align_down(s->time, tiers[t].width)))
            continue;
        int r = ring_reserve(&h->rings[t]);
        if (r < 0)
            return r;
    }

    if (!h->has_samples)
        h->epoch = align_down(s->time, tiers[TIER_20MIN].width);
    else if (s->time - h->epoch > UINT32_MAX)
        history_rebase(h, s->time);

    for (size_t t = TIER_RAW + 1; t < TIERS; t++) {
        Bucket *b = &h->filling[t];
        int64_t start = align_down(s->time, tiers[t].width);
        if (b->count > 0 && b->start != start) {
            Record mean;
            bucket_mean(h, b, &mean);
            ring_push(&h->rings[t], &mean);
            *b = (Bucket){0};
        }
        bucket_add(b, start, s);
    }

    Record rec = {
        .offset = (uint32_t)(s->time - h->epoch),
        .cpu_percent = (float)s->cpu_percent,
        .memory_used = s->memory_used,
        .memory_limit = s->memory_limit,
        .rx_bytes = s->rx_bytes,
        .tx_bytes = s->tx_bytes,
        .rx_delta = s->rx_delta,
        .tx_delta = s->tx_delta,
    };
    ring_push(&h->rings[TIER_RAW], &rec);
    h->has_samples = true;
    h->last_time = s->time;
    history_prune(h);
    return 0;
}

/* The records history_query returns, counted (out NULL) or copied into out. From the
 * coarsest tier to the finest: each covers time up to where a finer tier starts, and
 * `cursor` is where the series has got to, so that a bucket straddling the start of a
 * finer tier is kept whole and the finer records inside it are skipped. */
static size_t history_select(const History *h, int64_t since, HistorySample *out)
{
    int64_t cursor = since;
    size_t n = 0;
    for (size_t t = TIERS; t-- > 0;) {
        int64_t finer_start = INT64_MAX;
        for (size_t f = 0; f < t; f++)
            if (h->rings[f].count > 0) {
                int64_t first = record_time(h, ring_at(&h->rings[f], 0));
                if (first < finer_start)
                    finer_start = first;
            }

        const Ring *r = &h->rings[t];
        for (uint32_t i = 0; i < r->count; i++) {
            const Record *rec = ring_at(r, i);
            int64_t time = record_time(h, rec);
            if (time < cursor)
                continue;
            if (time >= finer_start)
                break;
            if (out)
                record_to_sample(h, rec, &out[n]);
            n++;
            cursor = time + tiers[t].width;
        }
    }
    return n;
}

int history_query(const History *h, int64_t since, HistorySample **ret, size_t *ret_n)
{
    if (!h || !ret || !ret_n)
        return -EINVAL;
    size_t n = history_select(h, since, NULL);
    _cleanup_free_ HistorySample *samples = NULL;
    if (n > 0) {
        samples = calloc(n, sizeof(HistorySample));
        if (!samples)
            return -ENOMEM;
        history_select(h, since, samples);
    }
    *ret = TAKE_PTR(samples);
    *ret_n = n;
    return 0;
}

void history_get_stats(const History *h, HistoryStats *ret)
{
    size_t memory = sizeof(History);
    for (size_t t = 0; t < TIERS; t++)
        memory += (size_t)h->rings[t].allocated * sizeof(Record);
    *ret = (HistoryStats){
        .raw_samples = h->rings[TIER_RAW].count,
        .means_2min = h->rings[TIER_2MIN].count,
        .means_20min = h->rings[TIER_20MIN].count,
        .memory_bytes = memory,
    };
}

/* ---- the file ------------------------------------------------------------ */

static uint8_t *put_u32(uint8_t *p, uint32_t v)
{
    for (size_t i = 0; i < 4; i++)
        *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

static uint8_t *put_u64(uint8_t *p, uint64_t v)
{
    for (size_t i = 0; i < 8; i++)
        *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

static uint8_t *put_f64(uint8_t *p, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    return put_u64(p, bits);
}

static uint8_t *put_f32(uint8_t *p, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof(bits));
    return put_u32(p, bits);
}

/* Reads past the end yield zeros and set `short_read`; checked once at the end. */
typedef struct Reader {
    const uint8_t *p;
    size_t left;
    bool short_read;
} Reader;

static uint64_t get_bytes(Reader *rd, size_t n)
{
    if (rd->left < n) {
        rd->short_read = true;
        rd->left = 0;
        return 0;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)rd->p[i] << (8 * i);
    rd->p += n;
    rd->left -= n;
    return v;
}

static uint32_t get_u32(Reader *rd)
{
    return (uint32_t)get_bytes(rd, 4);
}

static uint64_t get_u64(Reader *rd)
{
    return get_bytes(rd, 8);
}

static int64_t get_i64(Reader *rd)
{
    return (int64_t)get_bytes(rd, 8);
}

static double get_f64(Reader *rd)
{
    uint64_t bits = get_u64(rd);
    double v;
    memcpy(&v, &bits, sizeof(v));
    return v;
}

static float get_f32(Reader *rd)
{
    uint32_t bits = get_u32(rd);
    float v;
    memcpy(&v, &bits, sizeof(v));
    return v;
}

static size_t file_size(const size_t counts[TIERS])
{
    return FILE_HEADER_SIZE + (counts[0] + counts[1] + counts[2]) * FILE_RECORD_SIZE;
}

int history_save(const History *h, int dirfd, const char *name)
{
    if (!h || !name)
        return -EINVAL;
    size_t counts[TIERS];
    for (size_t t = 0; t < TIERS; t++)
        counts[t] = h->rings[t].count;
    size_t size = file_size(counts);
    _cleanup_free_ uint8_t *data = malloc(size);
    if (!data)
        return -ENOMEM;

    uint8_t *p = data;
    memcpy(p, FILE_MAGIC, 8);
    p += 8;
    p = put_u32(p, FILE_VERSION);
    p = put_u32(p, h->interval_s);
    p = put_u64(p, (uint64_t)(h->has_samples ? h->last_time : -1));
    for (size_t t = 0; t < TIERS; t++)
        p = put_u32(p, h->rings[t].count);
    for (size_t t = TIER_RAW + 1; t < TIERS; t++) {
        const Bucket *b = &h->filling[t];
        p = put_u64(p, (uint64_t)b->start);
        p = put_u32(p, b->count);
        p = put_f64(p, b->cpu_sum);
        p = put_f64(p, b->memory_used_sum);
        p = put_f64(p, b->memory_limit_sum);
        p = put_u64(p, b->rx_bytes);
        p = put_u64(p, b->tx_bytes);
        p = put_u64(p, b->rx_delta);
        p = put_u64(p, b->tx_delta);
    }
    for (size_t t = 0; t < TIERS; t++)
        for (uint32_t i = 0; i < h->rings[t].count; i++) {
            const Record *rec = ring_at(&h->rings[t], i);
            p = put_u64(p, (uint64_t)record_time(h, rec));
            p = put_f32(p, rec->cpu_percent);
            p = put_u64(p, rec->memory_used);
            p = put_u64(p, rec->memory_limit);
            p = put_u64(p, rec->rx_bytes);
            p = put_u64(p, rec->tx_bytes);
            p = put_u64(p, rec->rx_delta);
            p = put_u64(p, rec->tx_delta);
        }
    return atomic_write_at(dirfd, name, data, size, 0600);
}

/* A bucket being filled: empty and all zero, or holding samples of the bucket the
 * last sample fell in. */
static bool bucket_valid(const Bucket *b, size_t tier, bool has_samples, int64_t last_time)
{
    /* Every add puts its sample in both buckets. */
    if (b->count == 0)
        return !has_samples && b->start == 0 && b->cpu_sum == 0 && b->memory_used_sum == 0 &&
               b->memory_limit_sum == 0 && b->rx_bytes == 0 && b->tx_bytes == 0 &&
               b->rx_delta == 0 && b->tx_delta == 0;
    /* Times strictly increase, so a bucket holds at most one sample a second. */
    if (!has_samples || b->count > tiers[tier].width ||
        b->start != align_down(last_time, tiers[tier].width))
        return false;
    double count = b->count;
    return cpu_percent_valid(b->cpu_sum / count) && isfinite(b->memory_used_sum) &&
           b->memory_used_sum >= 0 && b->memory_used_sum <= count * 18446744073709551615.0 &&
           isfinite(b->memory_limit_sum) && b->memory_limit_sum >= 0 &&
           b->memory_limit_sum <= count * 18446744073709551615.0;
}

/* Read and check the records of one ring into h (whose epoch is set). Everything
 * add and prune guarantee must hold: strictly increasing times, within retention of
 * the last time, buckets aligned and complete, the newest raw sample at last_time. */
static int decode_ring(Reader *rd, History *h, size_t tier, uint32_t count)
{
    Ring *r = &h->rings[tier];
    if (count == 0)
        return 0;
    r->items = calloc(count, sizeof(Record));
    if (!r->items)
        return -ENOMEM;
    r->allocated = count;

    int64_t width = tiers[tier].width;
    int64_t previous = -1;
    for (uint32_t i = 0; i < count; i++) {
        int64_t time = get_i64(rd);
        Record rec = {
            .cpu_percent = get_f32(rd),
            .memory_used = get_u64(rd),
            .memory_limit = get_u64(rd),
            .rx_bytes = get_u64(rd),
            .tx_bytes = get_u64(rd),
            .rx_delta = get_u64(rd),
            .tx_delta = get_u64(rd),
        };
        if (rd->short_read || time <= previous || time > h->last_time ||
            time + width <= h->last_time - tiers[tier].retention ||
            !cpu_percent_valid(rec.cpu_percent))
            return -EBADMSG;
        if (width > 0 && (time % width != 0 || time + width > align_down(h->last_time, width)))
            return -EBADMSG;
        rec.offset = (uint32_t)(time - h->epoch);
        r->items[r->count++] = rec;
        previous = time;
    }
    if (tier == TIER_RAW && previous != h->last_time)
        return -EBADMSG;
    return 0;
}

int history_decode(const void *data, size_t len, History **ret)
{
    if ((!data && len > 0) || !ret)
        return -EINVAL;
    Reader rd = {.p = data, .left = len};
    if (len < FILE_HEADER_SIZE || memcmp(data, FILE_MAGIC, 8) != 0)
        return -EBADMSG;
    rd.p += 8;
    rd.left -= 8;
    if (get_u32(&rd) != FILE_VERSION)
        return -EBADMSG;
    uint32_t interval_s = get_u32(&rd);
    int64_t last_time = get_i64(&rd);
    uint32_t counts[TIERS];
    for (size_t t = 0; t < TIERS; t++)
        counts[t] = get_u32(&rd);

    if (interval_s < 1 || interval_s > HISTORY_INTERVAL_MAX_S || last_time < -1 ||
        last_time > TIME_MAX)
        return -EBADMSG;
    _cleanup_history_ History *h = NULL;
    int r = history_alloc(interval_s, &h);
    if (r < 0)
        return r;
    h->has_samples = last_time >= 0;
    h->last_time = last_time;
    size_t sizes[TIERS];
    for (size_t t = 0; t < TIERS; t++) {
        if (counts[t] > h->rings[t].capacity || (!h->has_samples && counts[t] > 0))
            return -EBADMSG;
        sizes[t] = counts[t];
    }
    if (len != file_size(sizes) || (h->has_samples && counts[TIER_RAW] == 0))
        return -EBADMSG;

    for (size_t t = TIER_RAW + 1; t < TIERS; t++) {
        Bucket *b = &h->filling[t];
        b->start = get_i64(&rd);
        b->count = get_u32(&rd);
        b->cpu_sum = get_f64(&rd);
        b->memory_used_sum = get_f64(&rd);
        b->memory_limit_sum = get_f64(&rd);
        b->rx_bytes = get_u64(&rd);
        b->tx_bytes = get_u64(&rd);
        b->rx_delta = get_u64(&rd);
        b->tx_delta = get_u64(&rd);
        if (!bucket_valid(b, t, h->has_samples, last_time))
            return -EBADMSG;
    }

    /* Everything kept lies within RETENTION_SPAN of the last time, so offsets from
     * this epoch fit. */
    int64_t oldest = last_time - RETENTION_SPAN;
    h->epoch = oldest > 0 ? align_down(oldest, tiers[TIER_20MIN].width) : 0;
    for (size_t t = 0; t < TIERS; t++) {
        r = decode_ring(&rd, h, t, counts[t]);
        if (r < 0)
            return r;
    }
    if (rd.short_read || rd.left != 0)
        return -EBADMSG;
    *ret = TAKE_PTR(h);
    return 0;
}

int history_load(int dirfd, const char *name, History **ret)
{
    if (!name || !ret)
        return -EINVAL;
    size_t most[TIERS] = {raw_capacity(1), tiers[TIER_2MIN].capacity, tiers[TIER_20MIN].capacity};
    _cleanup_free_ char *data = NULL;
    size_t len;
    int r = read_file_at(dirfd, name, file_size(most), &data, &len);
    if (r == -EFBIG)
        return -EBADMSG;
    if (r < 0)
        return r;
    return history_decode(data, len, ret);
}

/* ---- carrying a history over ---------------------------------------------- */

size_t history_tier_records(const History *h, unsigned tier, HistorySample *out)
{
    if (tier >= TIERS)
        return 0;
    const Ring *r = &h->rings[tier];
    if (out)
        for (uint32_t i = 0; i < r->count; i++)
            record_to_sample(h, ring_at(r, i), &out[i]);
    return r->count;
}

void history_tier_filling(const History *h, unsigned tier, HistoryBucket *ret)
{
    *ret = (HistoryBucket){0};
    if (tier == TIER_RAW || tier >= TIERS)
        return;
    const Bucket *b = &h->filling[tier];
    *ret = (HistoryBucket){
        .start = b->start,
        .count = b->count,
        .cpu_sum = b->cpu_sum,
        .memory_used_sum = b->memory_used_sum,
        .memory_limit_sum = b->memory_limit_sum,
        .rx_bytes = b->rx_bytes,
        .tx_bytes = b->tx_bytes,
        .rx_delta = b->rx_delta,
        .tx_delta = b->tx_delta,
    };
}

int64_t history_last_time(const History *h)
{
    return h->has_samples ? h->last_time : -1;
}

unsigned history_interval(const History *h)
{
    return h->interval_s;
}
