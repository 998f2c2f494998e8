/* A metrics history kept in a file (history-store.h).
 *
 * File layout (little-endian):
 *   0     header, 64 bytes: magic "CLOCHHS1", u32 version (1), u32 interval_s,
 *         u32 capacity of the raw, 2-minute and 20-minute rings, zeros, u32 checksum
 *   64    state copy 0, 320 state copy 1, 256 bytes each: u64 sequence, i64 last
 *         time (-1: none), u32 head and u32 count of each ring, the 2-minute then
 *         the 20-minute bucket being filled (68 bytes each, as history.c's file),
 *         zeros, u32 checksum at 252. The valid copy with the higher sequence wins.
 *   1024  the raw ring's slots, then the 2-minute ring's, then the 20-minute ring's,
 *         64 bytes each: i64 time, f32 cpu_percent, u64 memory_used, memory_limit,
 *         rx_bytes, tx_bytes, rx_delta, tx_delta, u32 checksum.
 * Checksums are FNV-1a (32 bits) of the bytes before them. A flush writes slots
 * first, then the state: a state never names a slot that was not written before
 * it (short of the disk reordering writes on power loss, which the slot checksums
 * catch). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cloche/fileio.h"
#include "cloche/history-store.h"

enum {
    TIER_RAW,
    TIER_2MIN,
    TIER_20MIN,
    TIERS,
};

/* As history.c's tiers: the series must be the same record for record. */
static const struct {
    int64_t width;
    int64_t retention;
    uint32_t capacity; /* 0 for raw: it depends on the interval */
} tiers[TIERS] = {
    [TIER_RAW] = {.width = 0, .retention = 4 * 3600, .capacity = 0},
    [TIER_2MIN] = {.width = 120, .retention = 24 * 3600, .capacity = 720},
    [TIER_20MIN] = {.width = 1200, .retention = 7 * 24 * 3600, .capacity = 504},
};

#define TIME_MAX (INT64_C(1) << 62)
#define CPU_PERCENT_MAX 1e9

#define STORE_MAGIC "CLOCHHS1"
#define STORE_VERSION 1u
#define HEADER_SIZE 64u
#define STATE_SIZE 256u
#define STATE_OFFSET(copy) (HEADER_SIZE + (copy)*STATE_SIZE)
#define SLOTS_OFFSET 1024u
#define SLOT_SIZE 64u
#define BUCKET_SIZE 68u

typedef struct Pending {
    uint8_t *slots; /* encoded, SLOT_SIZE each */
    uint32_t first; /* ring index of the first */
    uint32_t n;
    uint32_t allocated;
} Pending;

struct HistoryStore {
    unsigned interval_s;
    bool file_made;    /* the file exists with this header */
    int64_t last_time; /* -1: no samples */
    uint64_t sequence;
    uint32_t capacity[TIERS];
    uint32_t head[TIERS];
    uint32_t count[TIERS];
    HistoryBucket filling[TIERS]; /* [TIER_RAW] unused */
    HistorySample newest;
    bool has_newest;
    Pending pending[TIERS];
};

/* ---- encoding ------------------------------------------------------------ */

static uint32_t checksum(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

static uint8_t *put_le(uint8_t *p, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

static uint64_t get_le(const uint8_t **p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)(*p)[i] << (8 * i);
    *p += n;
    return v;
}

static uint8_t *put_f64(uint8_t *p, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    return put_le(p, bits, 8);
}

static double get_f64(const uint8_t **p)
{
    uint64_t bits = get_le(p, 8);
    double v;
    memcpy(&v, &bits, sizeof(v));
    return v;
}

static void encode_slot(const HistorySample *s, uint8_t out[SLOT_SIZE])
{
    float cpu = (float)s->cpu_percent;
    uint32_t cpu_bits;
    memcpy(&cpu_bits, &cpu, sizeof(cpu_bits));
    uint8_t *p = put_le(out, (uint64_t)s->time, 8);
    p = put_le(p, cpu_bits, 4);
    p = put_le(p, s->memory_used, 8);
    p = put_le(p, s->memory_limit, 8);
    p = put_le(p, s->rx_bytes, 8);
    p = put_le(p, s->tx_bytes, 8);
    p = put_le(p, s->rx_delta, 8);
    p = put_le(p, s->tx_delta, 8);
    put_le(p, checksum(out, SLOT_SIZE - 4), 4);
}

static bool decode_slot(const uint8_t in[SLOT_SIZE], HistorySample *ret)
{
    const uint8_t *p = in + SLOT_SIZE - 4;
    if (get_le(&p, 4) != checksum(in, SLOT_SIZE - 4))
        return false;
    p = in;
    ret->time = (int64_t)get_le(&p, 8);
    uint32_t cpu_bits = (uint32_t)get_le(&p, 4);
    float cpu;
    memcpy(&cpu, &cpu_bits, sizeof(cpu));
    ret->cpu_percent = cpu;
    ret->memory_used = get_le(&p, 8);
    ret->memory_limit = get_le(&p, 8);
    ret->rx_bytes = get_le(&p, 8);
    ret->tx_bytes = get_le(&p, 8);
    ret->rx_delta = get_le(&p, 8);
    ret->tx_delta = get_le(&p, 8);
    return ret->time >= 0 && ret->time <= TIME_MAX && isfinite(ret->cpu_percent) &&
           ret->cpu_percent >= 0;
}

static void encode_header(const HistoryStore *h, uint8_t out[HEADER_SIZE])
{
    memset(out, 0, HEADER_SIZE);
    memcpy(out, STORE_MAGIC, 8);
    uint8_t *p = put_le(out + 8, STORE_VERSION, 4);
    p = put_le(p, h->interval_s, 4);
    for (size_t t = 0; t < TIERS; t++)
        p = put_le(p, h->capacity[t], 4);
    put_le(out + HEADER_SIZE - 4, checksum(out, HEADER_SIZE - 4), 4);
}

static uint8_t *put_bucket(uint8_t *p, const HistoryBucket *b)
{
    p = put_le(p, (uint64_t)b->start, 8);
    p = put_le(p, b->count, 4);
    p = put_f64(p, b->cpu_sum);
    p = put_f64(p, b->memory_used_sum);
    p = put_f64(p, b->memory_limit_sum);
    p = put_le(p, b->rx_bytes, 8);
    p = put_le(p, b->tx_bytes, 8);
    p = put_le(p, b->rx_delta, 8);
    return put_le(p, b->tx_delta, 8);
}

static void get_bucket(const uint8_t **p, HistoryBucket *b)
{
    b->start = (int64_t)get_le(p, 8);
    b->count = (uint32_t)get_le(p, 4);
    b->cpu_sum = get_f64(p);
    b->memory_used_sum = get_f64(p);
    b->memory_limit_sum = get_f64(p);
    b->rx_bytes = get_le(p, 8);
    b->tx_bytes = get_le(p, 8);
    b->rx_delta = get_le(p, 8);
    b->tx_delta = get_le(p, 8);
}

/* The state as it is with nothing added: what a new file starts with. */
static void encode_state(const HistoryStore *h, bool empty, uint8_t out[STATE_SIZE])
{
    memset(out, 0, STATE_SIZE);
    uint8_t *p = put_le(out, empty ? 0 : h->sequence, 8);
    p = put_le(p, (uint64_t)(empty ? -1 : h->last_time), 8);
    for (size_t t = 0; t < TIERS; t++)
        p = put_le(p, empty ? 0 : h->head[t], 4);
    for (size_t t = 0; t < TIERS; t++)
        p = put_le(p, empty ? 0 : h->count[t], 4);
    HistoryBucket none = {0};
    for (size_t t = TIER_RAW + 1; t < TIERS; t++)
        p = put_bucket(p, empty ? &none : &h->filling[t]);
    put_le(out + STATE_SIZE - 4, checksum(out, STATE_SIZE - 4), 4);
}

/* ---- the history --------------------------------------------------------- */

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

static uint32_t raw_capacity(unsigned interval_s)
{
    return (uint32_t)((tiers[TIER_RAW].retention + interval_s - 1) / interval_s);
}

int history_store_new(unsigned interval_s, HistoryStore **ret)
{
    if (!ret || interval_s < 1 || interval_s > HISTORY_INTERVAL_MAX_S)
        return -EINVAL;
    HistoryStore *h = calloc(1, sizeof(HistoryStore));
    if (!h)
        return -ENOMEM;
    h->interval_s = interval_s;
    h->last_time = -1;
    for (size_t t = 0; t < TIERS; t++)
        h->capacity[t] = t == TIER_RAW ? raw_capacity(interval_s) : tiers[t].capacity;
    *ret = h;
    return 0;
}

static void pending_clear(HistoryStore *h)
{
    for (size_t t = 0; t < TIERS; t++) {
        free(h->pending[t].slots);
        h->pending[t] = (Pending){0};
    }
}

HistoryStore *history_store_free(HistoryStore *h)
{
    if (!h)
        return NULL;
    pending_clear(h);
    free(h);
    return NULL;
}

unsigned history_store_interval(const HistoryStore *h)
{
    return h->interval_s;
}

size_t history_store_pending(const HistoryStore *h)
{
    size_t n = 0;
    for (size_t t = 0; t < TIERS; t++)
        n += h->pending[t].n;
    return n;
}

size_t history_store_memory(const HistoryStore *h)
{
    size_t n = sizeof(HistoryStore);
    for (size_t t = 0; t < TIERS; t++)
        n += (size_t)h->pending[t].allocated * SLOT_SIZE;
    return n;
}

/* Room for one more pending record of tier t; the only step of an add that fails. */
static int pending_reserve(HistoryStore *h, size_t t)
{
    Pending *p = &h->pending[t];
    if (p->n >= HISTORY_STORE_PENDING_MAX)
        return -ENOBUFS;
    if (p->n < p->allocated)
        return 0;
    uint32_t n = p->allocated ? p->allocated * 2 : 4;
    if (n > HISTORY_STORE_PENDING_MAX)
        n = HISTORY_STORE_PENDING_MAX;
    uint8_t *slots = realloc(p->slots, (size_t)n * SLOT_SIZE);
    if (!slots)
        return -ENOMEM;
    p->slots = slots;
    p->allocated = n;
    return 0;
}

/* Append to ring t: the next index, or over the oldest when full. */
static void ring_push(HistoryStore *h, size_t t, const HistorySample *s)
{
    uint32_t index;
    if (h->count[t] < h->capacity[t]) {
        index = (h->head[t] + h->count[t]) % h->capacity[t];
        h->count[t]++;
    } else {
        index = h->head[t];
        h->head[t] = (h->head[t] + 1) % h->capacity[t];
    }
    Pending *p = &h->pending[t];
    if (p->n == 0)
        p->first = index;
    encode_slot(s, p->slots + (size_t)p->n * SLOT_SIZE);
    p->n++;
}

static void bucket_add(HistoryBucket *b, int64_t start, const HistorySample *s)
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

static void bucket_mean(const HistoryBucket *b, HistorySample *ret)
{
    *ret = (HistorySample){
        .time = b->start,
        .cpu_percent = (float)(b->cpu_sum / b->count),
        .memory_used = mean_u64(b->memory_used_sum, b->count),
        .memory_limit = mean_u64(b->memory_limit_sum, b->count),
        .rx_bytes = b->rx_bytes,
        .tx_bytes = b->tx_bytes,
        .rx_delta = b->rx_delta,
        .tx_delta = b->tx_delta,
    };
}

int history_store_add(HistoryStore *h, const HistorySample *s)
{
    if (!h || !s)
        return -EINVAL;
    if (s->time < 0 || s->time > TIME_MAX || (h->last_time >= 0 && s->time <= h->last_time))
        return -EINVAL;
    if (!cpu_percent_valid(s->cpu_percent))
        return -EINVAL;
    for (size_t t = 0; t < TIERS; t++) {
        const HistoryBucket *b = &h->filling[t];
        if (t != TIER_RAW && (b->count == 0 || b->start == align_down(s->time, tiers[t].width)))
            continue;
        int r = pending_reserve(h, t);
        if (r < 0)
            return r;
    }
    for (size_t t = TIER_RAW + 1; t < TIERS; t++) {
        HistoryBucket *b = &h->filling[t];
        int64_t start = align_down(s->time, tiers[t].width);
        if (b->count > 0 && b->start != start) {
            HistorySample mean;
            bucket_mean(b, &mean);
            ring_push(h, t, &mean);
            *b = (HistoryBucket){0};
        }
        bucket_add(b, start, s);
    }
    ring_push(h, TIER_RAW, s);
    h->last_time = s->time;
    h->newest = *s;
    h->newest.cpu_percent = (float)s->cpu_percent; /* as stored */
    h->has_newest = true;
    return 0;
}

int history_store_latest(const HistoryStore *h, HistorySample *ret)
{
    if (!h || !h->has_newest)
        return -ENODATA;
    *ret = h->newest;
    return 0;
}

/* ---- the file ------------------------------------------------------------ */

static uint64_t tier_offset(const HistoryStore *h, size_t tier, uint32_t index)
{
    uint64_t slots = 0;
    for (size_t t = 0; t < tier; t++)
        slots += h->capacity[t];
    return SLOTS_OFFSET + (slots + index) * SLOT_SIZE;
}

static int pwrite_all(int fd, const void *data, size_t len, uint64_t offset)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t k = pwrite(fd, p, len, (off_t)offset);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        if (k == 0)
            return -EIO;
        p += k;
        len -= (size_t)k;
        offset += (uint64_t)k;
    }
    return 0;
}

static ssize_t pread_full(int fd, void *data, size_t len, uint64_t offset)
{
    uint8_t *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t k = pread(fd, p + done, len - done, (off_t)(offset + done));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        if (k == 0)
            break;
        done += (size_t)k;
    }
    return (ssize_t)done;
}

/* A new file holding the header and two empty states, in place atomically. */
static int file_create(HistoryStore *h, int dirfd, const char *name)
{
    uint8_t data[SLOTS_OFFSET] = {0};
    encode_header(h, data);
    encode_state(h, true, data + STATE_OFFSET(0));
    encode_state(h, true, data + STATE_OFFSET(1));
    int r = atomic_write_volatile_at(dirfd, name, data, sizeof(data), 0600);
    if (r < 0)
        return r;
    h->file_made = true;
    return 0;
}

int history_store_flush(HistoryStore *h, int dirfd, const char *name)
{
    if (!h || !name)
        return -EINVAL;
    if (history_store_pending(h) == 0 && h->file_made)
        return 0;
    int r;
    int fd = -1;
    if (h->file_made) {
        fd = openat(dirfd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 && errno != ENOENT)
            return -errno;
        if (fd < 0)
            h->file_made = false; /* removed under us: start the file again */
    }
    if (!h->file_made) {
        r = file_create(h, dirfd, name);
        if (r < 0)
            return r;
        fd = openat(dirfd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            return -errno;
    }
    _cleanup_close_ int file = fd;
    for (size_t t = 0; t < TIERS; t++) {
        const Pending *p = &h->pending[t];
        if (p->n == 0)
            continue;
        /* One run of consecutive slots, split where the ring wraps. */
        uint32_t first_part = h->capacity[t] - p->first;
        if (first_part > p->n)
            first_part = p->n;
        r = pwrite_all(file, p->slots, (size_t)first_part * SLOT_SIZE, tier_offset(h, t, p->first));
        if (r >= 0 && first_part < p->n)
            r = pwrite_all(file, p->slots + (size_t)first_part * SLOT_SIZE,
                           (size_t)(p->n - first_part) * SLOT_SIZE, tier_offset(h, t, 0));
        if (r < 0)
            return r;
    }
    h->sequence++;
    uint8_t state[STATE_SIZE];
    encode_state(h, false, state);
    r = pwrite_all(file, state, sizeof(state), STATE_OFFSET(h->sequence % 2));
    if (r < 0) {
        h->sequence--;
        return r;
    }
    pending_clear(h);
    return 0;
}

/* The records of one tier in ring order, from the file's slots (`slots` holds the
 * tier's whole ring, or NULL) and the pending ones; bad, out-of-order and expired
 * ones left out. Returns how many went to out. */
static size_t tier_collect(const HistoryStore *h, size_t t, const uint8_t *slots,
                           HistorySample *out)
{
    const Pending *p = &h->pending[t];
    uint32_t cap = h->capacity[t], count = h->count[t];
    uint32_t from_file = count - p->n;
    int64_t previous = -1;
    size_t n = 0;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *slot;
        if (i < from_file) {
            if (!slots)
                continue;
            slot = slots + (size_t)((h->head[t] + i) % cap) * SLOT_SIZE;
        } else {
            slot = p->slots + (size_t)(i - from_file) * SLOT_SIZE;
        }
        HistorySample s;
        if (!decode_slot(slot, &s) || s.time <= previous || s.time > h->last_time)
            continue;
        previous = s.time;
        /* history.c prunes what its retention no longer keeps. */
        if (s.time + tiers[t].width <= h->last_time - tiers[t].retention)
            continue;
        out[n++] = s;
    }
    return n;
}

/* As history.c's history_select, over the collected tiers. */
static size_t select_series(HistorySample *const recs[TIERS], const size_t counts[TIERS],
                            int64_t since, HistorySample *out)
{
    int64_t cursor = since;
    size_t n = 0;
    for (size_t t = TIERS; t-- > 0;) {
        int64_t finer_start = INT64_MAX;
        for (size_t f = 0; f < t; f++)
            if (counts[f] > 0 && recs[f][0].time < finer_start)
                finer_start = recs[f][0].time;
        for (size_t i = 0; i < counts[t]; i++) {
            int64_t time = recs[t][i].time;
            if (time < cursor)
                continue;
            if (time >= finer_start)
                break;
            out[n++] = recs[t][i];
            cursor = time + tiers[t].width;
        }
    }
    return n;
}

int history_store_query(const HistoryStore *h, int dirfd, const char *name, int64_t since,
                        HistorySample **ret, size_t *ret_n)
{
    if (!h || !name || !ret || !ret_n)
        return -EINVAL;
    *ret = NULL;
    *ret_n = 0;
    size_t total = 0, slots_total = 0;
    for (size_t t = 0; t < TIERS; t++) {
        total += h->count[t];
        slots_total += h->capacity[t];
    }
    if (total == 0)
        return 0;
    _cleanup_free_ uint8_t *file = NULL;
    bool have_file = false;
    if (h->file_made && total > history_store_pending(h)) {
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 && errno != ENOENT)
            return -errno;
        if (fd >= 0) {
            file = calloc(slots_total, SLOT_SIZE);
            if (!file)
                return -ENOMEM;
            ssize_t k = pread_full(fd, file, slots_total * SLOT_SIZE, SLOTS_OFFSET);
            if (k < 0)
                return (int)k; /* past the end: zeros, which fail their checksum */
            have_file = true;
        }
    }
    _cleanup_free_ HistorySample *all = calloc(total, sizeof(HistorySample));
    if (!all)
        return -ENOMEM;
    HistorySample *recs[TIERS];
    size_t counts[TIERS], used = 0;
    for (size_t t = 0; t < TIERS; t++) {
        recs[t] = all + used;
        const uint8_t *slots = have_file ? file + (tier_offset(h, t, 0) - SLOTS_OFFSET) : NULL;
        counts[t] = tier_collect(h, t, slots, recs[t]);
        used += h->count[t];
    }
    HistorySample *out = calloc(total, sizeof(HistorySample));
    if (!out)
        return -ENOMEM;
    size_t n = select_series(recs, counts, since, out);
    if (n == 0) {
        free(out);
        return 0;
    }
    *ret = out;
    *ret_n = n;
    return 0;
}

/* A bucket being filled: empty and all zero, or holding samples of the bucket the
 * last sample fell in (as history.c checks its own file's). */
static bool bucket_valid(const HistoryBucket *b, size_t tier, int64_t last_time)
{
    if (b->count == 0)
        return b->start == 0 && b->cpu_sum == 0 && b->memory_used_sum == 0 &&
               b->memory_limit_sum == 0 && b->rx_bytes == 0 && b->tx_bytes == 0 &&
               b->rx_delta == 0 && b->tx_delta == 0;
    if (last_time < 0 || b->count > tiers[tier].width ||
        b->start != align_down(last_time, tiers[tier].width))
        return false;
    double count = b->count;
    return cpu_percent_valid(b->cpu_sum / count) && isfinite(b->memory_used_sum) &&
           b->memory_used_sum >= 0 && b->memory_used_sum <= count * 18446744073709551615.0 &&
           isfinite(b->memory_limit_sum) && b->memory_limit_sum >= 0 &&
           b->memory_limit_sum <= count * 18446744073709551615.0;
}

static bool decode_state(HistoryStore *h, const uint8_t in[STATE_SIZE])
{
    const uint8_t *p = in + STATE_SIZE - 4;
    if (get_le(&p, 4) != checksum(in, STATE_SIZE - 4))
        return false;
    p = in;
    h->sequence = get_le(&p, 8);
    h->last_time = (int64_t)get_le(&p, 8);
    if (h->last_time < -1 || h->last_time > TIME_MAX)
        return false;
    for (size_t t = 0; t < TIERS; t++)
        h->head[t] = (uint32_t)get_le(&p, 4);
    for (size_t t = 0; t < TIERS; t++)
        h->count[t] = (uint32_t)get_le(&p, 4);
    for (size_t t = 0; t < TIERS; t++)
        if (h->head[t] >= h->capacity[t] || h->count[t] > h->capacity[t] ||
            (h->last_time < 0 && h->count[t] > 0))
            return false;
    if (h->last_time >= 0 && h->count[TIER_RAW] == 0)
        return false;
    h->filling[TIER_RAW] = (HistoryBucket){0};
    for (size_t t = TIER_RAW + 1; t < TIERS; t++) {
        get_bucket(&p, &h->filling[t]);
        if (!bucket_valid(&h->filling[t], t, h->last_time))
            return false;
    }
    return true;
}

int history_store_open(int dirfd, const char *name, HistoryStore **ret)
{
    if (!name || !ret)
        return -EINVAL;
    _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    uint8_t head[SLOTS_OFFSET];
    ssize_t k = pread_full(fd, head, sizeof(head), 0);
    if (k < 0)
        return (int)k;
    if ((size_t)k < sizeof(head))
        return -EBADMSG;
    const uint8_t *p = head + HEADER_SIZE - 4;
    if (memcmp(head, STORE_MAGIC, 8) != 0 || get_le(&p, 4) != checksum(head, HEADER_SIZE - 4))
        return -EBADMSG;
    p = head + 8;
    if (get_le(&p, 4) != STORE_VERSION)
        return -EBADMSG;
    uint32_t interval_s = (uint32_t)get_le(&p, 4);
    _cleanup_history_store_ HistoryStore *h = NULL;
    if (history_store_new(interval_s, &h) < 0)
        return -EBADMSG;
    for (size_t t = 0; t < TIERS; t++)
        if (get_le(&p, 4) != h->capacity[t])
            return -EBADMSG;

    /* The valid state with the higher sequence. */
    HistoryStore a = *h, b = *h;
    bool a_ok = decode_state(&a, head + STATE_OFFSET(0));
    bool b_ok = decode_state(&b, head + STATE_OFFSET(1));
    if (!a_ok && !b_ok)
        return -EBADMSG;
    *h = (a_ok && (!b_ok || a.sequence > b.sequence)) ? a : b;
    h->file_made = true;

    /* The newest sample is the last raw slot. */
    if (h->count[TIER_RAW] > 0) {
        uint32_t index = (h->head[TIER_RAW] + h->count[TIER_RAW] - 1) % h->capacity[TIER_RAW];
        uint8_t slot[SLOT_SIZE];
        HistorySample s;
        if (pread_full(fd, slot, sizeof(slot), tier_offset(h, TIER_RAW, index)) ==
                (ssize_t)sizeof(slot) &&
            decode_slot(slot, &s) && s.time == h->last_time) {
            h->newest = s;
            h->has_newest = true;
        }
    }
    *ret = TAKE_PTR(h);
    return 0;
}

int history_store_import(const History *old, int dirfd, const char *name, HistoryStore **ret)
{
    if (!old || !name || !ret)
        return -EINVAL;
    _cleanup_history_store_ HistoryStore *h = NULL;
    int r = history_store_new(history_interval(old), &h);
    if (r < 0)
        return r;
    r = file_create(h, dirfd, name);
    if (r < 0)
        return r;
    _cleanup_close_ int fd = openat(dirfd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    for (size_t t = 0; t < TIERS; t++) {
        size_t n = history_tier_records(old, (unsigned)t, NULL);
        if (n > h->capacity[t])
            return -EINVAL;
        if (n == 0)
            continue;
        _cleanup_free_ HistorySample *samples = calloc(n, sizeof(HistorySample));
        _cleanup_free_ uint8_t *slots = calloc(n, SLOT_SIZE);
        if (!samples || !slots)
            return -ENOMEM;
        history_tier_records(old, (unsigned)t, samples);
        for (size_t i = 0; i < n; i++)
            encode_slot(&samples[i], slots + i * SLOT_SIZE);
        r = pwrite_all(fd, slots, n * SLOT_SIZE, tier_offset(h, t, 0));
        if (r < 0)
            return r;
        h->head[t] = 0;
        h->count[t] = (uint32_t)n;
        if (t == TIER_RAW) {
            h->newest = samples[n - 1];
            h->has_newest = true;
        }
    }
    for (size_t t = TIER_RAW + 1; t < TIERS; t++)
        history_tier_filling(old, (unsigned)t, &h->filling[t]);
    h->last_time = history_last_time(old);
    h->sequence = 1;
    uint8_t state[STATE_SIZE];
    encode_state(h, false, state);
    r = pwrite_all(fd, state, sizeof(state), STATE_OFFSET(1));
    if (r < 0)
        return r;
    *ret = TAKE_PTR(h);
    return 0;
}
