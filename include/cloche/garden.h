/* The model: the container registry, properties, grace timers and capacity. The
 * only module that knows a container as a whole; it persists every mutation to the
 * depot before it reports success. Thread-safe: the registry has one lock, each
 * container its own; containers are refcounted. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cloche/error.h"
#include "cloche/history.h"
#include "cloche/image.h"
#include "cloche/strmap.h"
#include "cloche/wire.h"

typedef struct Garden Garden;
typedef struct Container Container;
typedef struct GardenEvents GardenEvents;

typedef struct Capacity {
    uint64_t memory_in_bytes;
    uint64_t disk_in_bytes;
    uint64_t schedulable_disk_in_bytes;
    uint64_t max_containers;
    /* cloche's extension: what the containers' limits commit. */
    uint64_t committed_memory_in_bytes;
    uint64_t committed_disk_in_bytes;
    uint64_t containers;
    uint64_t image_store_bytes; /* the layer store: extracted layers' sizes */
    uint64_t image_store_layers;
} Capacity;

void garden_free(Garden *g);

int garden_capacity(Garden *g, Capacity *ret);
size_t garden_count(Garden *g);

/* Look up a container for the duration of a request: takes a reference and pauses
 * its grace timer. 404 ContainerNotFoundError if unknown (or being destroyed). */
int garden_acquire(Garden *g, const char *handle, Container **ret, ApiError *reterr);
/* End of the request: resumes the grace countdown and drops the reference. */
void garden_release(Garden *g, Container *c);

/* Handles of containers whose properties match every filter entry, sorted. The
 * filter key "garden.state" with value "all" also lists containers that are being
 * created or destroyed (hidden otherwise, as guardian does). */
int garden_list(Garden *g, const StringMap *filter, char ***ret_handles, size_t *ret_n);

/* Create a container from spec (its contents are taken; the struct is zeroed):
 * reserve the handle, prepare the root file system, cgroups and namespaces,
 * persist, and reply the handle (malloc'd). Every failure undoes every step. */
int garden_create(Garden *g, ContainerSpec *spec, char **ret_handle, ApiError *reterr);

/* Stop: SIGTERM to every process but init, up to 10 s, then SIGKILL (kill: at
 * once). The container's state becomes stopped. */
int container_stop(Garden *g, Container *c, bool kill, ApiError *reterr);

/* Start a stopped container again (cloche extension): a new init over the same
 * writable layer, address, host ports, NetOut rules, limits, properties and bind
 * mounts. 409 when it is not stopped; on failure it stays stopped. */
int container_start(Garden *g, Container *c, ApiError *reterr);
/* Stop (as container_stop), then start. */
int container_restart(Garden *g, Container *c, bool kill, ApiError *reterr);

/* Start a process (spec contents are taken): ExecutableNotFoundError, 409 for a
 * duplicate id, 400 for an unknown user or image, 501 for bind mounts. A spec
 * with an image is a pea (doc/peas.md). *ret_id is malloc'd. */
int container_run(Garden *g, Container *c, ProcessSpec *spec, char **ret_id, ApiError *reterr);

/* cloche_service: the service's live state as properties, added to props:
 * cloche.service.restart, .state, .restarts, .exit-status, .started-at
 * (doc/api.md). Nothing is added for a container without a service. */
int container_service_properties(Garden *g, Container *c, StringMap *props);

/* Log files of a process (the service, or one run with cloche_log): records of
 * "<unix s>.<ns> <stdout|stderr> <text>", read oldest first. */
typedef struct LogLine {
    int64_t time_ns; /* CLOCK_REALTIME */
    bool is_stderr;
    const char *text; /* not NUL-terminated */
    size_t len;
} LogLine;
/* Returns < 0 to stop (the client left). */
typedef int (*LogLineFn)(const LogLine *line, void *userdata);
typedef struct LogReader LogReader;
/* 404 when the process has no logs. The reader holds a reference to c. */
int container_logs_open(Garden *g, Container *c, const char *process_id, LogReader **ret,
                        ApiError *reterr);
/* The lines written so far with time >= since_ns, the last `tail` of them
 * (UINT64_MAX = all). Memory is bounded: two passes over the files. */
int log_reader_history(LogReader *r, uint64_t tail, int64_t since_ns, LogLineFn fn, void *userdata);
/* The lines written since the last call (following rotation); -ESRCH once the
 * container is destroyed. */
int log_reader_follow(LogReader *r, LogLineFn fn, void *userdata);
void log_reader_free(LogReader *r);

/* Connect to a process's shim. If the shim is gone, *ret_fd = -1 and *ret_exit is
 * the exit status from its exit file. *ret_dirfd (if not NULL) gets an O_PATH fd of
 * the process's directory, for proc_control(). 404 ProcessNotFoundError when
 * unknown. */
int container_process_attach(Garden *g, Container *c, const char *id, int *ret_fd, int *ret_exit,
                             int *ret_dirfd, ApiError *reterr);

/* Ids of the processes still running, sorted (NULL-terminated, malloc'd). */
int container_process_ids(Garden *g, Container *c, char ***ret);

/* StreamIn/StreamOut: what cloche-tar needs to enter a container (opaque: the
 * container's init, its cgroups, the requesting user, the confinement). */
typedef struct ContainerFilesTarget ContainerFilesTarget;

/* The container's init, its cgroups, the user ("" = root; an unknown one is a
 * 400) and the helper's path. Works for stopped containers (their init lives
 * on); 409 when the container is not running, 500 when the daemon has no
 * cloche-tar. *ret is freed with container_files_target_free. */
int container_files_target(Garden *g, Container *c, const char *user, ContainerFilesTarget **ret,
                           ApiError *reterr);
void container_files_target_free(ContainerFilesTarget *t);

/* cloche-tar at work in a container. */
typedef struct ContainerFiles {
    pid_t pid;
    int data;     /* its stdin ("in" modes) or its stdout ("out" modes), non-blocking */
    int messages; /* its stderr, non-blocking */
} ContainerFiles;

/* Start cloche-tar for mode ("in", "in-file", "out" or "out-file") on path in the
 * container. A negative errno when it cannot be started. */
int container_files_start(const ContainerFilesTarget *t, const char *mode, const char *path,
                          ContainerFiles *ret);
/* End it at once (a body cut short must not look complete to it). */
void container_files_kill(ContainerFiles *f);
/* Reap it (killed first if kill_it) once its pipes are closed or drained: its
 * exit status, 128+N for signal N. */
int container_files_wait(ContainerFiles *f, bool kill_it);

/* The limits in effect (as applied at create or changed since). */
int container_get_limits(Container *c, Limits *ret);

typedef enum LimitKind {
    LIMIT_KIND_MEMORY = 1u << 0,
    LIMIT_KIND_CPU = 1u << 1,
    LIMIT_KIND_PIDS = 1u << 2,
    LIMIT_KIND_DISK = 1u << 3,
    LIMIT_KIND_BANDWIDTH = 1u << 4,
    LIMIT_KIND_ALL = 0x1f,
} LimitKind;

/* Change one kind of limit of a live container (its part of *in) and persist it.
 * 400 for invalid values, 409 for a memory limit below what cannot be reclaimed,
 * a disk limit that would shrink, or one on a container created without. */
int container_set_limits(Garden *g, Container *c, LimitKind kind, const Limits *in,
                         ApiError *reterr);

/* Destroy: refuses a second concurrent destroy with 500 "container already being
 * destroyed"; removes the depot directory and the registry entry. */
int garden_destroy(Garden *g, const char *handle, ApiError *reterr);

/* Look up without touching the grace timer (BulkInfo, BulkMetrics, List): takes a
 * reference, dropped with container_unref(). */
int garden_find(Garden *g, const char *handle, Container **ret, ApiError *reterr);
void container_unref(Container *c);

/* A consistent snapshot of what Info reports from the model. */
typedef struct ContainerSnapshot {
    ContainerState state;
    char **events; /* NULL-terminated */
    StringMap properties;
    char *container_path;
} ContainerSnapshot;

int container_snapshot(Garden *g, Container *c, ContainerSnapshot *ret);
void container_snapshot_done(ContainerSnapshot *s);

/* NetIn (in->host_port 0 = from the pool, container_port 0 = the host port):
 * *ret gets the mapping as made. */
int container_net_in(Garden *g, Container *c, const NetInSpec *in, NetInSpec *ret,
                     ApiError *reterr);
/* NetOut and BulkNetOut: the rules' contents are taken on success. */
int container_net_out(Garden *g, Container *c, NetOutRule *rules, size_t n, ApiError *reterr);

typedef struct ContainerNetInfo {
    char host_ip[16]; /* "" without a network */
    char container_ip[16];
    char external_ip[16];
    NetInSpec *mapped; /* malloc'd */
    size_t n_mapped;
} ContainerNetInfo;
int container_net_info(Garden *g, Container *c, ContainerNetInfo *ret);

/* Garden's ContainerMemoryStat, field for field (JSON key = field name, except
 * total_usage_toward_limit, which Garden sends as "TotalUsageTowardLimit"). Every
 * value is in bytes, except the pg* counters (events). How each is read on
 * cgroup v1 and v2 is cgroup.h's CgroupMemoryStat. */
typedef struct ContainerMemoryStats {
    uint64_t active_anon;
    uint64_t active_file;
    uint64_t cache;
    uint64_t hierarchical_memory_limit;
    uint64_t inactive_anon;
    uint64_t inactive_file;
    uint64_t mapped_file;
    uint64_t pgfault;
    uint64_t pgmajfault;
    uint64_t pgpgin;
    uint64_t pgpgout;
    uint64_t rss;
    uint64_t total_active_anon;
    uint64_t total_active_file;
    uint64_t total_cache;
    uint64_t total_inactive_anon;
    uint64_t total_inactive_file;
    uint64_t total_mapped_file;
    uint64_t total_pgfault;
    uint64_t total_pgmajfault;
    uint64_t total_pgpgin;
    uint64_t total_pgpgout;
    uint64_t total_rss;
    uint64_t total_unevictable;
    uint64_t unevictable;
    uint64_t swap;
    uint64_t hierarchical_memsw_limit;
    uint64_t total_swap;
    uint64_t total_usage_toward_limit;
    uint64_t anon;
    uint64_t file;
    uint64_t swapcached;
} ContainerMemoryStats;

/* CPU time in nanoseconds and CFS bandwidth counters (0 where the kernel has none). */
typedef struct ContainerCpuStats {
    uint64_t usage_ns, user_ns, system_ns;
    uint64_t nr_periods, nr_throttled, throttled_ns;
} ContainerCpuStats;

/* Processes now and the limit (0 = none). */
typedef struct ContainerPidStats {
    uint64_t current, max;
} ContainerPidStats;

typedef struct ContainerMetrics {
    ContainerMemoryStats memory;
    ContainerCpuStats cpu;
    ContainerPidStats pids;
    uint64_t disk_total_bytes, disk_total_inodes; /* the writable layer plus the image */
    uint64_t disk_exclusive_bytes, disk_exclusive_inodes;
    bool has_network;
    uint64_t rx_bytes, tx_bytes; /* as the container sees them */
    uint64_t age_ns;
    uint64_t cpu_entitlement; /* ns, guardian's formula */
} ContainerMetrics;

/* -ESRCH when the container has no live kernel side (being destroyed).
 * may_cache: the disk usage of a writable layer without a disk limit (a walk of
 * its tree) may come from a walk up to 10 s old (bulk calls). */
int container_metrics(Garden *g, Container *c, bool may_cache, ContainerMetrics *ret);

/* The metrics history since `since` (unix seconds), oldest first (*ret malloc'd). */
int container_metrics_history(Garden *g, Container *c, int64_t since, HistorySample **ret,
                              size_t *ret_n, unsigned *ret_interval);

#ifdef CLOCHE_TEST_HOOKS
/* Test builds only: replace the history by made-up samples, one per interval over
 * the last `seconds`, added through the sampler's own path. -ESRCH for a container
 * being created or destroyed. */
int container_history_synthesise(Garden *g, Container *c, int64_t seconds, size_t *ret_added);
#endif

const char *container_handle(const Container *c);
int container_get_properties(Container *c, StringMap *ret);
/* 500 "property does not exist: KEY" when missing (guardian's message). */
int container_get_property(Container *c, const char *key, char **ret, ApiError *reterr);
int container_set_property(Garden *g, Container *c, const char *key, const char *value,
                           ApiError *reterr);
/* Removing a missing key is not an error (as guardian). */
int container_remove_property(Garden *g, Container *c, const char *key, ApiError *reterr);
int container_set_grace_time(Garden *g, Container *c, int64_t grace_ns, ApiError *reterr);
int64_t container_grace_time(Container *c);
ContainerState container_state(Container *c);

/* Images (cloche extensions): what the store knows, removal of a name (409 while
 * a container uses the image), and a pull without a container, reporting
 * progress through fn. uri: docker:// or oci://. */
int garden_images_list(Garden *g, ImageInfo **ret, size_t *ret_n, ApiError *reterr);
int garden_image_remove(Garden *g, const char *uri, ApiError *reterr);
int garden_image_pull(Garden *g, const char *uri, const ImageCredentials *cred, ImageProgressFn fn,
                      void *userdata, char **ret_digest, ApiError *reterr);
/* Import an image archive (cloche extension): a file to receive it, then the
 * archive in it taken in as cloche:///NAME[:TAG]. */
int garden_image_import_file(Garden *g, int *ret_fd, ApiError *reterr);
int garden_image_import(Garden *g, const char *name_tag, int fd, char **ret_digest,
                        ApiError *reterr);
/* Commit a container's writable layer on top of its image as cloche:///NAME[:TAG];
 * opts (may be NULL) changes the config, checks the parent, skips the layer. */
int container_commit(Garden *g, Container *c, const char *name_tag, const ImageCommitOptions *opts,
                     char **ret_digest, ApiError *reterr);
/* Export an image the store knows as an OCI archive through fn (-EPIPE: cut short
 * after it began). */
int garden_image_export(Garden *g, const char *uri, ImageWriteFn fn, void *userdata,
                        ApiError *reterr);

/* Events (cloche extension): what happened to containers, newest last. */
typedef struct GardenEvent {
    uint64_t seq;    /* from 1, increasing, per daemon start */
    int64_t time_ns; /* CLOCK_REALTIME */
    char type[24];   /* created, started, stopped, destroyed, oom, service_exited,
                        service_restarted, limits_changed */
    char *handle;
    char *process_id; /* NULL when none */
    int exit_status;  /* -1 when none */
    char *message;    /* NULL when none */
} GardenEvent;

typedef struct GardenEventFilter {
    int64_t since_ns;   /* events at or after this time (CLOCK_REALTIME) */
    const char *handle; /* NULL = every container */
} GardenEventFilter;

typedef struct GardenEventBatch {
    GardenEvent *events; /* malloc'd, n of them, oldest first */
    size_t n;
    uint64_t next; /* pass as `after` to read on from here */
    uint64_t lost; /* events overwritten before this reader saw them */
    bool stopping; /* the daemon is shutting down: no more events */
} GardenEventBatch;

/* Events after sequence number `after` (0 = the oldest still kept) that match f,
 * at most max; waits up to timeout_ms for the first one (0 = does not wait). */
int garden_events_read(Garden *g, const GardenEventFilter *f, uint64_t after, size_t max,
                       int timeout_ms, GardenEventBatch *ret);
void garden_events_batch_done(GardenEventBatch *b);
/* The sequence number of the newest event (0 when none yet). */
uint64_t garden_events_last(Garden *g);
