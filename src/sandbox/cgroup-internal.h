/* Private to the cgroup files of src/sandbox: the system and group structures and
 * the helpers they share. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cloche/cgroup.h"

/* v1 memory, cpu(+cpuacct), cpuacct, pids, freezer, devices, and v2: at most 7 in use. */
#define HIERARCHY_MAX 8
#define GROUP_NAME_MAX 200
#define PARENT_MAX 512
#define REL_PATH_MAX (PARENT_MAX + 2 * GROUP_NAME_MAX + 64) /* a child's: group/child/file */

extern const char *const cgroup_controller_names[_CGROUP_CONTROLLER_MAX];

typedef struct Hierarchy {
    char *mount;          /* mount point, root prefix included */
    int up_fd;            /* O_PATH fd of the parent's parent (for rmdir) */
    int parent_fd;        /* O_PATH fd of <mount>/<parent> */
    unsigned controllers; /* CGROUP_CONTROLLER_BIT set served here */
    bool v2;
    bool created; /* setup made the parent directory */
} Hierarchy;

struct CgroupSystem {
    CgroupLayout layout;
    char *parent;
    const char *parent_base; /* last component of parent */
    size_t n_hierarchies;
    Hierarchy hierarchies[HIERARCHY_MAX];
    int index[_CGROUP_CONTROLLER_MAX + 1]; /* hierarchy serving each controller, CORE last */
    int v2_index;                          /* -1: no v2 hierarchy */
    int freezer_index;                     /* v1 freezer (pure v1 only), -1: none */
    bool plain_files;    /* a fake tree of plain files: writes create missing files */
    bool memsw;          /* v1 memory.memsw.limit_in_bytes exists (swap accounting) */
    bool has_kill;       /* v2 cgroup.kill */
    bool has_events;     /* v2 cgroup.events, pollable */
    bool has_freeze;     /* v2 cgroup.freeze */
    int device_progs[2]; /* v2 device programs (plain, privileged), -1: none */
};

struct Cgroup {
    const CgroupSystem *system;
    char name[];
};

/* cgroup-detect.c */
/* Bits of the known controllers named in a whitespace-separated list. */
unsigned cgroup_controller_bits(const char *list);
/* Decimal u64 between start and end, whitespace around it allowed; "max" and "-1"
 * (v1's "no limit") read as UINT64_MAX. */
int cgroup_parse_value(const char *start, const char *end, uint64_t *ret);
/* Read fd to EOF into buf, NUL-terminated; -ENOBUFS if it does not fit. */
int cgroup_read_fd(int fd, char *buf, size_t size, size_t *ret_len);
int cgroup_read_at(int dirfd, const char *path, char *buf, size_t size, size_t *ret_len);

/* cgroup.c */
/* Index of the hierarchy serving controller (or CGROUP_CORE); -ENODEV if none. */
int cgroup_hierarchy_for(const CgroupSystem *s, CgroupController controller);
/* openat() of <group>/<file> in hierarchy idx; writes create files in fake trees. */
int cgroup_group_open(const Cgroup *cg, int idx, const char *file, int flags);
int cgroup_group_write(const Cgroup *cg, int idx, const char *file, const char *value);
/* cgroup_group_read for a statistics file the kernel writes as one record
 * (memory.stat, cpu.stat, one value): that comes whole in one read, so a read that
 * does not fill buf is the end, and the read that would find EOF is saved (bulk
 * metrics read five such files per container). Not for lists (cgroup.procs). */
int cgroup_group_read_stat(const Cgroup *cg, int idx, const char *file, char *buf, size_t size,
                           size_t *ret_len);
int cgroup_group_read(const Cgroup *cg, int idx, const char *file, char *buf, size_t size,
                      size_t *ret_len);
int cgroup_group_read_u64(const Cgroup *cg, int idx, const char *file, uint64_t *ret);
void cgroup_sleep_us(long us);

/* cgroup-procs.c: the group's own processes, without its children's. */
int cgroup_list_own_pids(const Cgroup *cg, pid_t **ret_pids, size_t *ret_count);
