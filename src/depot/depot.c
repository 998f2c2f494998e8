/* The depot's directories: <depot>/containers/<handle>/state.json, each record
 * replaced atomically (fileio's write temp, fsync, rename, fsync directory).
 * The process table is in the run directory: <run>/processes/<handle>/<id>
 * (depot.h says why).
 *
 * Callers serialise mutations of one container (the registry's per-container
 * lock): two concurrent writers of the same record would share its temp file. */
#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cloche/cleanup.h"
#include "cloche/depot.h"
#include "cloche/fileio.h"

#define DEPOT_CONTAINERS_DIR "containers"
#define DEPOT_STATE_FILE "state.json"
#define DEPOT_PROCESSES_DIR "processes"
#define DEPOT_DEFAULT_RUN_DIR "run" /* <depot>/run, when no run directory is given */
/* Traversable but not listable: the user namespace of an unprivileged container
 * must walk to its own rootfs directories (its root maps to an unprivileged host
 * id); state files stay 0600. */
#define DEPOT_MODE 0711
#define DEPOT_STATE_MODE 0600
/* The record a create stages while its init mounts (depot_stage_record); its
 * temp file (atomic_write_temp_name) is what a commit renames over state.json. */
#define DEPOT_STAGED_FILE "state.json.staged"

/* Deletion of removed containers' directories happens off the caller's path, on
 * one worker thread: a destroy's reply waits only for the rename. */
typedef struct TrashItem {
    struct TrashItem *next;
    bool run; /* in <run>/processes, not in containers/ */
    char name[];
} TrashItem;

struct Depot {
    char *path;        /* absolute, canonical */
    int containers_fd; /* O_PATH|O_DIRECTORY of <path>/containers */
    char *run_path;    /* the run directory, absolute, canonical */
    int processes_fd;  /* O_PATH|O_DIRECTORY of <run>/processes */
    pthread_mutex_t trash_lock;
    pthread_cond_t trash_cond;
    TrashItem *trash;
    bool trash_stop;
    bool trash_started;
    pthread_t trash_thread;
};

static void *trash_worker(void *arg)
{
    Depot *d = arg;
    pthread_mutex_lock(&d->trash_lock);
    for (;;) {
        while (!d->trash && !d->trash_stop)
            pthread_cond_wait(&d->trash_cond, &d->trash_lock);
        TrashItem *it = d->trash;
        if (!it)
            break; /* stopping, nothing left */
        d->trash = it->next;
        pthread_mutex_unlock(&d->trash_lock);
        (void)rm_rf_at(it->run ? d->processes_fd : d->containers_fd, it->name);
        free(it);
        pthread_mutex_lock(&d->trash_lock);
    }
    pthread_mutex_unlock(&d->trash_lock);
    return NULL;
}

/* Queue name for deletion; false = do it now (no worker). */
static bool trash_queue(Depot *d, const char *name, bool run)
{
    size_t len = strlen(name);
    TrashItem *it = malloc(sizeof(TrashItem) + len + 1);
    if (!it)
        return false;
    it->run = run;
    memcpy(it->name, name, len + 1);
    pthread_mutex_lock(&d->trash_lock);
    if (!d->trash_started && !d->trash_stop)
        d->trash_started = pthread_create(&d->trash_thread, NULL, trash_worker, d) == 0;
    bool ok = d->trash_started && !d->trash_stop;
    if (ok) {
        it->next = d->trash;
        d->trash = it;
        pthread_cond_signal(&d->trash_cond);
    }
    pthread_mutex_unlock(&d->trash_lock);
    if (!ok)
        free(it);
    return ok;
}

/* Handles arrive validated; refuse anything that could name another directory. */
static int depot_check_handle(const char *handle)
{
    if (!handle || !*handle || handle[0] == '.' || strchr(handle, '/'))
        return -EINVAL;
    if (strlen(handle) > SPEC_HANDLE_MAX)
        return -EINVAL;
    return 0;
}

static int fsync_dirfd(int dirfd)
{
    _cleanup_close_ int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    return fsync(fd) < 0 ? -errno : 0;
}

/* A readable stream over the entries of containers/. */
static int depot_open_listing(Depot *d, DIR **ret)
{
    int fd = openat(d->containers_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *dir = fdopendir(fd);
    if (!dir) {
        int r = -errno;
        close(fd);
        return r;
    }
    *ret = dir;
    return 0;
}

static int depot_open_container(Depot *d, const char *handle, int *ret)
{
    int r = depot_check_handle(handle);
    if (r < 0)
        return r;
    int fd = openat(d->containers_fd, handle, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    *ret = fd;
    return 0;
}

/* A crash between writing a temp file and renaming it leaves the temp behind; the
 * state.json beside it is still the last complete record. */
static int depot_remove_stale_temps(Depot *d)
{
    char tmp[NAME_MAX + 1], staged[NAME_MAX + 1];
    int r = atomic_write_temp_name(DEPOT_STATE_FILE, tmp, sizeof(tmp));
    if (r >= 0)
        r = atomic_write_temp_name(DEPOT_STAGED_FILE, staged, sizeof(staged));
    if (r < 0)
        return r;

    _cleanup_closedir_ DIR *dir = NULL;
    r = depot_open_listing(d, &dir);
    if (r < 0)
        return r;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(dir);
        if (!de)
            return errno != 0 ? -errno : 0;
        if (strncmp(de->d_name, ".trash-", 7) == 0) {
            /* A removal a crash interrupted: finish it. */
            (void)rm_rf_at(d->containers_fd, de->d_name);
            continue;
        }
        if (de->d_name[0] == '.')
            continue;
        if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
            continue;
        _cleanup_close_ int cfd = -EBADF;
        if (depot_open_container(d, de->d_name, &cfd) < 0)
            continue;
        /* Best effort: an undeletable leftover only blocks that container's next
         * write, which then reports the error where it can be acted on. */
        (void)unlinkat(cfd, tmp, 0);
        (void)unlinkat(cfd, staged, 0);
    }
}

static void depot_freep(Depot **d)
{
    depot_free(*d);
    *d = NULL;
}

/* <run>/processes: what a crash left of a removal, and the process tables of
 * containers the depot no longer has (removed while the run directory was
 * elsewhere, or a crash between the two renames of a removal), removed. */
static int open_run_dir(Depot *d, const char *run_path)
{
    int r = mkdir_p(run_path, DEPOT_MODE);
    if (r < 0)
        return r;
    d->run_path = realpath(run_path, NULL);
    if (!d->run_path)
        return -errno;
    _cleanup_close_ int run_fd = open(d->run_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (run_fd < 0)
        return -errno;
    if (mkdirat(run_fd, DEPOT_PROCESSES_DIR, 0700) < 0 && errno != EEXIST)
        return -errno;
    d->processes_fd =
        openat(run_fd, DEPOT_PROCESSES_DIR, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (d->processes_fd < 0)
        return -errno;
    int fd = openat(d->processes_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    _cleanup_closedir_ DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dir) {
        r = -errno;
        if (fd >= 0)
            close(fd);
        return r;
    }
    for (struct dirent *de; (de = readdir(dir));) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        struct stat st;
        if (de->d_name[0] == '.' ||
            fstatat(d->containers_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            (void)rm_rf_at(d->processes_fd, de->d_name);
    }
    return 0;
}

int depot_open(const char *path, Depot **ret)
{
    return depot_open_run(path, NULL, ret);
}

int depot_open_run(const char *path, const char *run_path, Depot **ret)
{
    if (!path || !*path || !ret)
        return -EINVAL;

    int r = mkdir_p(path, DEPOT_MODE);
    if (r < 0)
        return r;

    _cleanup_(depot_freep) Depot *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->containers_fd = -EBADF;
    d->processes_fd = -EBADF;
    pthread_mutex_init(&d->trash_lock, NULL);
    pthread_cond_init(&d->trash_cond, NULL);

    d->path = realpath(path, NULL);
    if (!d->path)
        return -errno;

    _cleanup_close_ int depot_fd = open(d->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (depot_fd < 0)
        r = -errno;
    if (r >= 0 && chmod(d->path, DEPOT_MODE) < 0)
        r = -errno;
    if (r >= 0 && mkdirat(depot_fd, DEPOT_CONTAINERS_DIR, DEPOT_MODE) < 0 && errno != EEXIST)
        r = -errno;
    if (r >= 0 && fchmodat(depot_fd, DEPOT_CONTAINERS_DIR, DEPOT_MODE, 0) < 0)
        r = -errno;
    if (r >= 0) {
        d->containers_fd =
            openat(depot_fd, DEPOT_CONTAINERS_DIR, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (d->containers_fd < 0)
            r = -errno;
    }
    if (r >= 0)
        r = depot_remove_stale_temps(d);
    _cleanup_free_ char *default_run = NULL;
    if (r >= 0 && !run_path) {
        if (asprintf(&default_run, "%s/" DEPOT_DEFAULT_RUN_DIR, d->path) < 0)
            r = -ENOMEM;
        run_path = default_run;
    }
    if (r >= 0)
        r = open_run_dir(d, run_path);
    if (r < 0)
        return r;

    *ret = TAKE_PTR(d);
    return 0;
}

void depot_free(Depot *d)
{
    if (!d)
        return;
    /* Finish the queued deletions (a crash would leave them to depot_open). */
    pthread_mutex_lock(&d->trash_lock);
    d->trash_stop = true;
    bool started = d->trash_started;
    pthread_cond_signal(&d->trash_cond);
    pthread_mutex_unlock(&d->trash_lock);
    if (started)
        pthread_join(d->trash_thread, NULL);
    pthread_cond_destroy(&d->trash_cond);
    pthread_mutex_destroy(&d->trash_lock);
    closep(&d->containers_fd);
    closep(&d->processes_fd);
    free(d->path);
    free(d->run_path);
    free(d);
}

const char *depot_path(const Depot *d)
{
    return d ? d->path : NULL;
}

int depot_container_create(Depot *d, const char *handle)
{
    int r = depot_check_handle(handle);
    if (r < 0)
        return r;
    if (mkdirat(d->containers_fd, handle, DEPOT_MODE) < 0)
        return -errno;
    /* Some umasks narrow the mode; the traversal bit matters (see DEPOT_MODE). */
    if (fchmodat(d->containers_fd, handle, DEPOT_MODE, 0) < 0)
        return -errno;
    return 0;
}

int depot_container_remove(Depot *d, const char *handle)
{
    int r = depot_check_handle(handle);
    if (r < 0)
        return r;
    /* Rename first, so the container disappears from the depot in one step; a
     * crash during the deletion leaves a ".trash-" directory that depot_open
     * removes (load skips names starting with '.'). */
    char trash[NAME_MAX + 1];
    static atomic_uint counter;
    snprintf(trash, sizeof(trash), ".trash-%d-%u", (int)getpid(), atomic_fetch_add(&counter, 1));
    if (renameat(d->containers_fd, handle, d->containers_fd, trash) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!trash_queue(d, trash, false))
        (void)rm_rf_at(d->containers_fd, trash);
    /* Its process table: depot_open_run removes it should a crash come first. */
    if (renameat(d->processes_fd, handle, d->processes_fd, trash) < 0)
        return 0;
    if (!trash_queue(d, trash, true))
        (void)rm_rf_at(d->processes_fd, trash);
    return 0;
}

int depot_container_path(const Depot *d, const char *handle, char **ret)
{
    int r = depot_check_handle(handle);
    if (r < 0)
        return r;
    char *p;
    if (asprintf(&p, "%s/" DEPOT_CONTAINERS_DIR "/%s", d->path, handle) < 0)
        return -ENOMEM;
    *ret = p;
    return 0;
}

int depot_processes_path(const Depot *d, const char *handle, char **ret)
{
    int r = depot_check_handle(handle);
    if (r < 0)
        return r;
    char *p;
    struct stat st;
    /* A container made by a daemon from before the run directory keeps its
     * process table where its shims are bound. */
    if (asprintf(&p, "%s/" DEPOT_CONTAINERS_DIR "/%s/" DEPOT_PROCESSES_DIR, d->path, handle) < 0)
        return -ENOMEM;
    if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
        *ret = p;
        return 0;
    }
    free(p);
    if (asprintf(&p, "%s/" DEPOT_PROCESSES_DIR "/%s", d->run_path, handle) < 0)
        return -ENOMEM;
    *ret = p;
    return 0;
}

const char *depot_run_path(const Depot *d)
{
    return d->run_path;
}

int depot_write_record(Depot *d, const ContainerRecord *rec)
{
    return depot_write_record_flags(d, rec, 0);
}

int depot_write_record_flags(Depot *d, const ContainerRecord *rec, unsigned flags)
{
    if (!rec)
        return -EINVAL;
    _cleanup_close_ int cfd = -EBADF;
    int r = depot_open_container(d, rec->handle, &cfd);
    if (r < 0)
        return r;

    size_t len;
    _cleanup_free_ char *buf = container_record_serialize(rec, &len);
    if (!buf)
        return container_state_to_string(rec->state) ? -ENOMEM : -EINVAL;
    /* Never write what depot_read_record would refuse to read back. */
    if (len > DEPOT_RECORD_MAX)
        return -EFBIG;

    if (flags & DEPOT_WRITE_VOLATILE)
        return atomic_write_volatile_at(cfd, DEPOT_STATE_FILE, buf, len, DEPOT_STATE_MODE);
    r = atomic_write_at(cfd, DEPOT_STATE_FILE, buf, len, DEPOT_STATE_MODE);
    if (r >= 0 && (flags & DEPOT_WRITE_NEW))
        r = fsync_dirfd(d->containers_fd);
    return r;
}

int depot_stage_record(Depot *d, const char *handle, const char *buf, size_t len)
{
    if (!buf)
        return -EINVAL;
    if (len > DEPOT_RECORD_MAX)
        return -EFBIG;
    _cleanup_close_ int cfd = -EBADF;
    int r = depot_open_container(d, handle, &cfd);
    if (r < 0)
        return r;
    return atomic_write_stage(cfd, DEPOT_STAGED_FILE, buf, len, DEPOT_STATE_MODE);
}

int depot_commit_record(Depot *d, const ContainerRecord *rec, const char *staged, size_t staged_len)
{
    if (!rec)
        return -EINVAL;
    _cleanup_close_ int cfd = -EBADF;
    int r = depot_open_container(d, rec->handle, &cfd);
    if (r < 0)
        return r;
    char tmp[NAME_MAX + 1];
    if ((r = atomic_write_temp_name(DEPOT_STAGED_FILE, tmp, sizeof(tmp))) < 0)
        return r;
    if (staged) {
        size_t len;
        _cleanup_free_ char *buf = container_record_serialize(rec, &len);
        if (buf && len == staged_len && memcmp(buf, staged, len) == 0) {
            if (renameat(cfd, tmp, cfd, DEPOT_STATE_FILE) == 0)
                return fsync_dirfd(cfd);
            if (errno != ENOENT)
                return -errno;
        }
    }
    /* Nothing staged, or not this record: the staged file goes, the record is
     * written whole. */
    (void)unlinkat(cfd, tmp, 0);
    return depot_write_record(d, rec);
}

int depot_read_record(Depot *d, const char *handle, ContainerRecord *ret)
{
    _cleanup_close_ int cfd = -EBADF;
    int r = depot_open_container(d, handle, &cfd);
    if (r < 0)
        return r;

    _cleanup_free_ char *buf = NULL;
    size_t len;
    r = read_file_at(cfd, DEPOT_STATE_FILE, DEPOT_RECORD_MAX, &buf, &len);
    if (r == -EFBIG)
        return -EBADMSG;
    if (r < 0)
        return r;

    ContainerRecord rec;
    r = container_record_parse(buf, len, &rec);
    if (r < 0)
        return r;
    /* A record copied or renamed into another container's directory is not that
     * container's. */
    if (strcmp(rec.handle, handle) != 0) {
        container_record_done(&rec);
        return -EBADMSG;
    }
    *ret = rec;
    return 0;
}

static int compare_records(const void *a, const void *b)
{
    return strcmp(((const ContainerRecord *)a)->handle, ((const ContainerRecord *)b)->handle);
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct RecordList {
    ContainerRecord *items;
    size_t n, allocated;
} RecordList;

static void record_list_done(RecordList *l)
{
    container_records_free(l->items, l->n);
    *l = (RecordList){0};
}

typedef struct NameList {
    char **items; /* NULL-terminated once non-empty */
    size_t n, allocated;
} NameList;

static void name_list_done(NameList *l)
{
    strv_free(l->items);
    *l = (NameList){0};
}

static int record_list_push(RecordList *l, ContainerRecord *rec)
{
    if (l->n == l->allocated) {
        size_t na = l->allocated ? l->allocated * 2 : 16;
        ContainerRecord *ni = reallocarray(l->items, na, sizeof(*ni));
        if (!ni)
            return -ENOMEM;
        l->items = ni;
        l->allocated = na;
    }
    l->items[l->n++] = *rec;
    *rec = (ContainerRecord){0};
    return 0;
}

static int name_list_push(NameList *l, const char *name)
{
    if (l->n + 1 >= l->allocated) {
        size_t na = l->allocated ? l->allocated * 2 : 8;
        char **ni = reallocarray(l->items, na, sizeof(*ni));
        if (!ni)
            return -ENOMEM;
        l->items = ni;
        l->allocated = na;
    }
    l->items[l->n] = strdup(name);
    if (!l->items[l->n])
        return -ENOMEM;
    l->items[++l->n] = NULL;
    return 0;
}

int depot_load_all(Depot *d, ContainerRecord **ret_records, size_t *ret_n, char ***ret_bad)
{
    if (!ret_records || !ret_n)
        return -EINVAL;

    _cleanup_closedir_ DIR *dir = NULL;
    int r = depot_open_listing(d, &dir);
    if (r < 0)
        return r;

    _cleanup_(record_list_done) RecordList records = {0};
    _cleanup_(name_list_done) NameList bad = {0};
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(dir);
        if (!de) {
            if (errno != 0)
                return -errno;
            break;
        }
        /* Not a handle: ".", "..", and nothing cloche creates. */
        if (de->d_name[0] == '.')
            continue;

        ContainerRecord rec;
        r = depot_read_record(d, de->d_name, &rec);
        if (r == -ENOMEM)
            return r;
        if (r < 0) {
            /* Missing, corrupt, unreadable, or not a directory at all. */
            r = name_list_push(&bad, de->d_name);
            if (r < 0)
                return r;
            continue;
        }
        r = record_list_push(&records, &rec);
        if (r < 0) {
            container_record_done(&rec);
            return r;
        }
    }

    if (records.n > 0)
        qsort(records.items, records.n, sizeof(*records.items), compare_records);
    if (bad.n > 0)
        qsort(bad.items, bad.n, sizeof(*bad.items), compare_strings);

    *ret_n = records.n;
    *ret_records = TAKE_PTR(records.items); /* NULL when there are none */
    records.n = 0;
    if (ret_bad) {
        *ret_bad = TAKE_PTR(bad.items); /* NULL when there are none */
        bad.n = 0;
    }
    return 0;
}
