/* The depot: crash-safe on-disk state, one directory per container.
 *
 *   <depot>/containers/<handle>/state.json   the ContainerRecord, written atomically
 *   <depot>/containers/<handle>/...          rootfs upper/work, peas, logs
 *
 * Every mutation of a container is persisted with depot_write_record() before the
 * API replies; a daemon restarted after a crash reads every record back with
 * depot_load_all(). */
#pragma once

#include <stdint.h>

#include "cloche/wire.h"
#include "cloche/strmap.h"

#define DEPOT_RECORD_VERSION 1
#define DEPOT_RECORD_MAX (16u << 20) /* refuse to read a state file larger than this */

/* A container's network, as allocated (all addresses IPv4, host byte order). */
typedef struct ContainerNet {
    char *id;         /* names its links and firewall chain; NULL = no network */
    uint32_t subnet;  /* network address */
    uint32_t prefix;  /* of the subnet */
    uint32_t gateway; /* the bridge's address */
    uint32_t ip;      /* the container's address */
    uint32_t mtu;
    NetInSpec *netin; /* the NetIn mappings in effect (ports resolved) */
    size_t n_netin;
} ContainerNet;

typedef struct ContainerRecord {
    char *handle;
    ContainerState state;
    int64_t created_at_ns; /* CLOCK_REALTIME */
    int64_t grace_time_ns; /* effective grace time (0 = never) */
    StringMap properties;  /* the container's properties, including garden.* keys */
    StringMap events;      /* reserved: events as keys (e.g. "oom"), values "" */
    ContainerSpec spec;    /* the create request as received (handle filled in) */

    /* Kernel objects, so a restarted daemon can find them again. */
    int32_t init_pid;         /* 0 until the init exists */
    uint64_t init_start_time; /* /proc/PID/stat start time, to tell a reused pid */
    uint32_t uid_base;        /* host id of container root (unprivileged) */
    char *rootfs;             /* the image directory used as the lower */
    ContainerNet net;
    /* A NetIn or NetOut was recorded and may not have reached the firewall yet
     * (the daemon died in between): a restarted daemon rebuilds the
     * container's firewall state from the record. */
    bool firewall_pending;
    /* Garden's Stop stopped it (start clears it): not started again after a
     * reboot, whatever its service's restart policy. */
    bool stopped_by_client;
} ContainerRecord;

typedef struct Depot Depot;

/* The run directory holds what lives only as long as the processes do: each
 * container's process table, <run>/processes/<handle>/<id>/ (pid, exit, the
 * shim's sockets), and the idle shims' directories. Nothing there outlives a
 * reboot that ends those processes, so it belongs on a tmpfs (/run): a Run
 * then writes nothing to the depot's disk. */

/* Open (creating if needed, mode 0700) the depot at path. Removes temp files that
 * a crash left behind. */
int depot_open(const char *path, Depot **ret);
/* depot_open with the run directory at run_path (created if needed; NULL:
 * <depot>/run). Removes what a crash left there, and the process tables of
 * containers the depot does not have. */
int depot_open_run(const char *path, const char *run_path, Depot **ret);
/* The run directory (absolute, canonical). */
const char *depot_run_path(const Depot *d);
/* Absolute path of the container's process table, malloc'd: <run>/processes/
 * <handle>, or <depot>/containers/<handle>/processes for a container made by an
 * earlier version (whose shims are bound there). */
int depot_processes_path(const Depot *d, const char *handle, char **ret);
void depot_free(Depot *d);
const char *depot_path(const Depot *d);

/* mkdir <depot>/containers/<handle>; -EEXIST if it exists. Not yet durable: the
 * first depot_write_record() with DEPOT_WRITE_NEW makes the directory durable. */
int depot_container_create(Depot *d, const char *handle);
/* Remove <depot>/containers/<handle> and everything in it, and its process
 * table in the run directory; missing = 0. The
 * directory is first renamed out of the way (atomic), then deleted by a worker
 * thread (depot_free finishes the queue); not fsynced:
 * a record that reappears after a power loss describes a container whose
 * processes are gone, which start-up cleans up. */
int depot_container_remove(Depot *d, const char *handle);
/* Absolute path of the container's directory, malloc'd. */
int depot_container_path(const Depot *d, const char *handle, char **ret);

/* Atomically write rec to <handle>/state.json (the directory must exist), durably:
 * fsync of the file and its directory before returning. */
int depot_write_record(Depot *d, const ContainerRecord *rec);

typedef enum DepotWriteFlags {
    DEPOT_WRITE_VOLATILE = 1u << 0, /* no fsync: transitional states only */
    DEPOT_WRITE_NEW = 1u << 1,      /* also make the container's directory entry durable */
} DepotWriteFlags;
int depot_write_record_flags(Depot *d, const ContainerRecord *rec, unsigned flags);
/* The durable write in two halves, so that its slow half (writing and fsyncing
 * the file) can run while something else is slow, before the record is final.
 * depot_stage_record writes buf (a serialized record, container_record_serialize)
 * fsynced beside <handle>/state.json, which it leaves as it is: a crash now
 * leaves the old record. depot_commit_record then makes rec durable: when rec
 * serializes to the staged bytes (staged, staged_len: the buffer given to the
 * stage; borrowed), by renaming the staged file over state.json and fsyncing
 * the directory only; otherwise (or staged NULL) as depot_write_record does,
 * removing any staged file. The caller keeps other writes of the record out
 * between the two, or lets the commit see the change. */
int depot_stage_record(Depot *d, const char *handle, const char *buf, size_t len);
int depot_commit_record(Depot *d, const ContainerRecord *rec, const char *staged,
                        size_t staged_len);
/* Read one record. -ENOENT if there is none; -EBADMSG if it is corrupt. */
int depot_read_record(Depot *d, const char *handle, ContainerRecord *ret);

/* Read every container's record. Directories without a readable record are
 * reported through *ret_bad (malloc'd NULL-terminated list of handles, may be NULL)
 * so the caller can log and clean them up. */
int depot_load_all(Depot *d, ContainerRecord **ret_records, size_t *ret_n, char ***ret_bad);

/* JSON form of a record (exposed for tests and tools). */
char *container_record_serialize(const ContainerRecord *rec, size_t *ret_len);
int container_record_parse(const char *buf, size_t len, ContainerRecord *ret);

void container_record_done(ContainerRecord *rec);
void container_records_free(ContainerRecord *recs, size_t n);
