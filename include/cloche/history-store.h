/* The metrics history of one container kept in a file, with only its bookkeeping
 * in memory (a few hundred bytes): the same three tiers and the same series as
 * History (history.h), whose semantics it follows record for record. Each tier is
 * a ring of fixed 64-byte slots in the file, each slot carrying its own checksum;
 * a small state block (ring positions, newest time, the buckets being filled) is
 * written after the slots it describes, alternately into one of two copies, so a
 * crash at any point leaves either the new or the previous state, and a slot that
 * was torn or never reached the disk is skipped on reading, never returned as
 * garbage. Not thread-safe: the caller locks. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "cloche/cleanup.h"
#include "cloche/history.h"

typedef struct HistoryStore HistoryStore;

/* Records added but not yet written are held in memory, at most this many per tier;
 * history_store_add refuses (-ENOBUFS) past it until a flush. */
#define HISTORY_STORE_PENDING_MAX 256u

/* A new, empty history for one sample every interval_s seconds
 * (1..HISTORY_INTERVAL_MAX_S, else -EINVAL). Its file is created by the first
 * history_store_flush. */
int history_store_new(unsigned interval_s, HistoryStore **ret);

/* Always returns NULL. */
HistoryStore *history_store_free(HistoryStore *h);
static inline void history_store_freep(HistoryStore **h)
{
    if (*h)
        *h = history_store_free(*h);
}
#define _cleanup_history_store_ _cleanup_(history_store_freep)

/* As history_add (same checks, same means), the new records held until the next
 * flush; -ENOBUFS (changing nothing) when that would exceed
 * HISTORY_STORE_PENDING_MAX in a tier. */
int history_store_add(HistoryStore *h, const HistorySample *s);

/* Records waiting for a flush (all tiers). */
size_t history_store_pending(const HistoryStore *h);

/* Write what was added since the last flush to dirfd/name, creating the file
 * (atomically, header and an empty state) the first time or when it is gone. On
 * failure the records stay pending and the next flush writes them again. */
int history_store_flush(HistoryStore *h, int dirfd, const char *name);

/* As history_query: the records with time >= since, oldest first, one series.
 * Reads the file (dirfd/name) and what is pending. Slots that fail their checksum
 * or are out of order are left out. */
int history_store_query(const HistoryStore *h, int dirfd, const char *name, int64_t since,
                        HistorySample **ret, size_t *ret_n);

/* The newest sample (as history_query would return it), from memory: -ENODATA when
 * there is none. */
int history_store_latest(const HistoryStore *h, HistorySample *ret);

/* The sampling interval the history was made for. */
unsigned history_store_interval(const HistoryStore *h);

/* Open a history written by history_store_flush: reads only its header and state
 * (1 KiB). -ENOENT when missing, -EBADMSG when its header or both states are bad. */
int history_store_open(int dirfd, const char *name, HistoryStore **ret);

/* A store holding everything `old` holds (its rings and the buckets being filled),
 * written to dirfd/name: how a history file of the previous format is carried over. */
int history_store_import(const History *old, int dirfd, const char *name, HistoryStore **ret);

/* Bytes of memory the store takes now (its structure and pending records). */
size_t history_store_memory(const HistoryStore *h);
