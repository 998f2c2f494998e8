/* Private to src/garden: the registry's structures, shared by registry.c (the
 * model) and lifecycle.c (the kernel side of create, stop, destroy, restore). */
#pragma once

#include <pthread.h>
#include <stdatomic.h>

#include "cloche/cgroup.h"
#include "cloche/depot.h"
#include "cloche/garden.h"
#include "cloche/grace.h"
#include "cloche/hashmap.h"
#include "cloche/sandbox.h"

struct Container {
    atomic_uint refcount;
    pthread_mutex_t lock;
    ContainerRecord rec;        /* under lock */
    GraceTimer grace;           /* under lock */
    int64_t grace_scheduled_ns; /* earliest deadline queued in the service, under lock */

    /* Kernel objects (set once the container exists; torn down by destroy). */
    Cgroup *cgroup;
    int init_pidfd;     /* -1 when unknown */
    bool init_is_child; /* cloned by this daemon: must be reaped */
    bool busy;          /* a stop or destroy holds the kernel side */
};

struct Garden {
    GardenConfig cfg;
    char *depot_path;
    char *default_rootfs;
    char *cgroup_parent;
    Depot *depot;
    GraceService *grace;
    pthread_mutex_t lock; /* guards containers */
    HashMap *containers;  /* handle -> Container*, one reference held */

    /* The kernel side; absent (NULL/-1) when cfg.init_path is NULL (unit tests). */
    CgroupSystem *cgroups;
    IdPool *ids;
    int init_fd;
};

/* lifecycle.c */
int garden_kernel_setup(Garden *g);
void garden_kernel_free(Garden *g);
/* Re-attach to a restored container's kernel objects; -ESRCH if they are gone. */
int garden_kernel_restore(Garden *g, Container *c);
/* Kill and remove the container's kernel objects (idempotent). */
int garden_kernel_teardown(Garden *g, Container *c);
/* Tear down what a record describes, for records that are not restored. */
void garden_kernel_cleanup_record(Garden *g, const ContainerRecord *rec);
void container_free_kernel(Container *c);

/* process.c */
void garden_kill_shims(Garden *g, Container *c);
/* The container's cgroup directories on the host, one per hierarchy (malloc'd,
 * NULL-terminated; NULL on ENOMEM). */
char **garden_cgroup_dirs(Garden *g, const char *handle);

/* registry.c */
int garden_insert_new(Garden *g, Container *c, ApiError *reterr);
Container *container_new(ContainerRecord *rec);
void garden_unregister(Garden *g, Container *c);
int garden_persist(Garden *g, Container *c);
void garden_arm_grace(Garden *g, Container *c);
