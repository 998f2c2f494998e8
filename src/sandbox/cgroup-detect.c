/* Cgroup layout detection from mountinfo, controller names, and the small parsers
 * shared by the cgroup files (values, "key value" lines). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cloche/cgroup.h"
#include "cloche/cleanup.h"
#include "cgroup-internal.h"

/* The v1 controllers whose presence makes a host v1 (or hybrid). */
static const CgroupController v1_markers[] = {
    CGROUP_CONTROLLER_MEMORY,
    CGROUP_CONTROLLER_CPU,
    CGROUP_CONTROLLER_CPUACCT,
    CGROUP_CONTROLLER_PIDS,
};

const char *const cgroup_controller_names[_CGROUP_CONTROLLER_MAX] = {
    [CGROUP_CONTROLLER_MEMORY] = "memory",   [CGROUP_CONTROLLER_CPU] = "cpu",
    [CGROUP_CONTROLLER_CPUACCT] = "cpuacct", [CGROUP_CONTROLLER_PIDS] = "pids",
    [CGROUP_CONTROLLER_CPUSET] = "cpuset",   [CGROUP_CONTROLLER_FREEZER] = "freezer",
    [CGROUP_CONTROLLER_BLKIO] = "blkio",     [CGROUP_CONTROLLER_DEVICES] = "devices",
    [CGROUP_CONTROLLER_IO] = "io",           [CGROUP_CONTROLLER_HUGETLB] = "hugetlb",
};
const char *cgroup_layout_to_string(CgroupLayout layout)
{
    switch (layout) {
    case CGROUP_LAYOUT_NONE:
        return "none";
    case CGROUP_LAYOUT_V1:
        return "v1";
    case CGROUP_LAYOUT_V2:
        return "v2";
    case CGROUP_LAYOUT_HYBRID:
        return "hybrid";
    }
    return NULL;
}

const char *cgroup_controller_to_string(CgroupController controller)
{
    if (controller == CGROUP_CORE)
        return "core";
    if ((unsigned)controller >= _CGROUP_CONTROLLER_MAX)
        return NULL;
    return cgroup_controller_names[controller];
}

static int controller_from_name(const char *s, size_t len)
{
    for (int c = 0; c < _CGROUP_CONTROLLER_MAX; c++)
        if (strlen(cgroup_controller_names[c]) == len &&
            memcmp(cgroup_controller_names[c], s, len) == 0)
            return c;
    return -1;
}

/* Bits of the known controllers named in a space-separated list. */
unsigned cgroup_controller_bits(const char *list)
{
    unsigned bits = 0;
    const char *p = list;
    while (*p) {
        p += strspn(p, " \t\n");
        size_t len = strcspn(p, " \t\n");
        int c = len ? controller_from_name(p, len) : -1;
        if (c >= 0)
            bits |= CGROUP_CONTROLLER_BIT(c);
        p += len;
    }
    return bits;
}
int cgroup_parse_value(const char *start, const char *end, uint64_t *ret)
{
    while (start < end && (*start == ' ' || *start == '\t' || *start == '\n'))
        start++;
    while (end > start && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n'))
        end--;
    size_t len = (size_t)(end - start);
    if ((len == 3 && memcmp(start, "max", 3) == 0) || (len == 2 && memcmp(start, "-1", 2) == 0)) {
        *ret = UINT64_MAX;
        return 0;
    }
    if (len == 0 || len > 20)
        return -EINVAL;
    uint64_t v = 0;
    for (const char *p = start; p < end; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *ret = v;
    return 0;
}

/* Read fd from its current offset until EOF into buf (NUL-terminated). */
int cgroup_read_fd(int fd, char *buf, size_t size, size_t *ret_len)
{
    if (size == 0)
        return -ENOBUFS;
    size_t len = 0;
    for (;;) {
        if (len == size - 1) {
            char extra;
            ssize_t n = read(fd, &extra, 1);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return -errno;
            if (n > 0)
                return -ENOBUFS;
            break;
        }
        ssize_t n = read(fd, buf + len, size - 1 - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    if (ret_len)
        *ret_len = len;
    return 0;
}

int cgroup_read_at(int dirfd, const char *path, char *buf, size_t size, size_t *ret_len)
{
    _cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    return cgroup_read_fd(fd, buf, size, ret_len);
}

/* ---- detection ---------------------------------------------------------- */

/* Undo mountinfo's octal escapes (\040 for a space, ...) in place. */
static void unescape_octal(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
            r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)(((r[1] - '0') << 6) | ((r[2] - '0') << 3) | (r[3] - '0'));
            r += 3;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

static char *join_prefix(const char *prefix, const char *mountpoint)
{
    size_t plen = prefix ? strlen(prefix) : 0;
    while (plen > 0 && prefix[plen - 1] == '/')
        plen--;
    char *s = NULL;
    if (asprintf(&s, "%.*s%s", (int)plen, plen ? prefix : "", mountpoint) < 0)
        return NULL;
    return s;
}

/* Keep the first mount of a hierarchy, but prefer one of its root ("/") over a bind
 * mount of a subdirectory. */
static int record_mount(char **slot, bool *slot_is_root, const char *prefix, const char *mountpoint,
                        bool is_root)
{
    if (*slot && (*slot_is_root || !is_root))
        return 0;
    char *s = join_prefix(prefix, mountpoint);
    if (!s)
        return -ENOMEM;
    free(*slot);
    *slot = s;
    *slot_is_root = is_root;
    return 0;
}

void cgroup_mounts_clear(CgroupMounts *mounts)
{
    if (!mounts)
        return;
    for (int c = 0; c < _CGROUP_CONTROLLER_MAX; c++)
        free(mounts->v1[c]);
    free(mounts->v2);
    *mounts = (CgroupMounts){0};
}

static int parse_mountinfo_line(char *line, CgroupMounts *m, bool *v1_is_root, bool *v2_is_root,
                                const char *prefix)
{
    char *fields[64];
    size_t n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(line, " \n", &save); tok && n < ELEMENTSOF(fields);
         tok = strtok_r(NULL, " \n", &save))
        fields[n++] = tok;
    /* id parent major:minor root mountpoint options [optional...] - fstype source super */
    size_t sep = 6;
    while (sep < n && strcmp(fields[sep], "-") != 0)
        sep++;
    if (n < 10 || sep + 3 >= n)
        return 0;
    const char *fstype = fields[sep + 1];
    char *super = fields[sep + 3];
    char *root = fields[3], *mountpoint = fields[4];
    unescape_octal(root);
    unescape_octal(mountpoint);
    bool is_root = strcmp(root, "/") == 0;

    if (strcmp(fstype, "cgroup2") == 0)
        return record_mount(&m->v2, v2_is_root, prefix, mountpoint, is_root);
    if (strcmp(fstype, "cgroup") != 0)
        return 0;
    char *save2 = NULL;
    for (char *opt = strtok_r(super, ",", &save2); opt; opt = strtok_r(NULL, ",", &save2)) {
        int c = controller_from_name(opt, strlen(opt)); /* "name=systemd" matches nothing */
        if (c < 0)
            continue;
        int r = record_mount(&m->v1[c], &v1_is_root[c], prefix, mountpoint, is_root);
        if (r < 0)
            return r;
    }
    return 0;
}

static void mounts_clearp(CgroupMounts *m)
{
    cgroup_mounts_clear(m);
}

int cgroup_detect(const char *mountinfo_path, const char *root_prefix, CgroupMounts *ret)
{
    if (!mountinfo_path || !ret)
        return -EINVAL;
    _cleanup_fclose_ FILE *f = fopen(mountinfo_path, "re");
    if (!f)
        return -errno;

    _cleanup_(mounts_clearp) CgroupMounts m = {0};
    bool v1_is_root[_CGROUP_CONTROLLER_MAX] = {0}, v2_is_root = false;
    _cleanup_free_ char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        int r = parse_mountinfo_line(line, &m, v1_is_root, &v2_is_root, root_prefix);
        if (r < 0)
            return r;
    }
    if (ferror(f))
        return -EIO;

    bool v1 = false;
    for (size_t i = 0; i < ELEMENTSOF(v1_markers); i++)
        v1 = v1 || m.v1[v1_markers[i]];
    if (v1)
        m.layout = m.v2 ? CGROUP_LAYOUT_HYBRID : CGROUP_LAYOUT_V1;
    else
        m.layout = m.v2 ? CGROUP_LAYOUT_V2 : CGROUP_LAYOUT_NONE;

    if (m.v2) {
        _cleanup_close_ int fd = open(m.v2, O_PATH | O_DIRECTORY | O_CLOEXEC);
        char buf[512];
        if (fd >= 0 && cgroup_read_at(fd, "cgroup.controllers", buf, sizeof(buf), NULL) >= 0)
            m.v2_controllers = cgroup_controller_bits(buf);
    }
    *ret = m;
    m = (CgroupMounts){0};
    return 0;
}

int cgroup_keyed_get(const char *text, const char *key, uint64_t *ret)
{
    size_t klen = strlen(key);
    if (klen == 0)
        return -EINVAL;
    for (const char *p = text; p && *p;) {
        const char *eol = strchrnul(p, '\n');
        if ((size_t)(eol - p) > klen && memcmp(p, key, klen) == 0 && p[klen] == ' ')
            return cgroup_parse_value(p + klen + 1, eol, ret);
        p = *eol ? eol + 1 : eol;
    }
    return -ENOENT;
}

int cgroup_keyed_next(const char **cursor, const char **ret_key, size_t *ret_key_len,
                      uint64_t *ret_value)
{
    const char *p = *cursor;
    while (p && *p) {
        const char *eol = strchrnul(p, '\n');
        const char *next = *eol ? eol + 1 : eol;
        const char *sp = memchr(p, ' ', (size_t)(eol - p));
        uint64_t v;
        if (sp && sp > p && cgroup_parse_value(sp + 1, eol, &v) == 0) {
            *cursor = next;
            *ret_key = p;
            *ret_key_len = (size_t)(sp - p);
            *ret_value = v;
            return 1;
        }
        p = next;
    }
    *cursor = p;
    return 0;
}
