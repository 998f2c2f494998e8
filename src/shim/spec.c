/* DIR/spec: "key=value\n" records with percent-encoded values, decoded in place. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cloche/shim-protocol.h"
#include "shim.h"

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decode s (len bytes) in place and NUL-terminate it. A %00 is refused: every
 * value ends up in a C string. */
static int percent_decode(char *s, size_t len)
{
    size_t out = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            s[out++] = s[i];
            continue;
        }
        if (i + 2 >= len)
            return -EINVAL;
        int hi = hex_digit(s[i + 1]);
        int lo = hex_digit(s[i + 2]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
            return -EINVAL;
        s[out++] = (char)(hi << 4 | lo);
        i += 2;
    }
    s[out] = '\0';
    return 0;
}

static int parse_u64(const char *s, uint64_t max, uint64_t *ret)
{
    if (*s < '0' || *s > '9')
        return -EINVAL;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        unsigned d = (unsigned)(*s - '0');
        if (v > (max - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *ret = v;
    return 0;
}

/* Split s at single spaces into exactly n fields (s is modified). */
static int split_fields(char *s, char **fields, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        fields[i] = s;
        char *sp = strchr(s, ' ');
        if (i + 1 < n) {
            if (!sp)
                return -EINVAL;
            *sp = '\0';
            s = sp + 1;
        } else if (sp) {
            return -EINVAL;
        }
    }
    return 0;
}

static int parse_rlim(const char *s, rlim_t *ret)
{
    if (strcmp(s, "inf") == 0) {
        *ret = RLIM_INFINITY;
        return 0;
    }
    uint64_t v;
    int r = parse_u64(s, UINT64_MAX, &v);
    if (r < 0)
        return r;
    *ret = (rlim_t)v;
    return 0;
}

/* Append item to a NULL-terminated vector of *n entries. */
static int strv_push(char ***v, size_t *n, char *item)
{
    if (*n % 64 == 0) {
        char **nv = realloc(*v, (*n + 65) * sizeof(char *));
        if (!nv)
            return -ENOMEM;
        *v = nv;
    }
    (*v)[(*n)++] = item;
    (*v)[*n] = NULL;
    return 0;
}

static int array_grow(void **array, size_t n, size_t elem_size)
{
    if (n % 64)
        return 0;
    void *na = realloc(*array, (n + 64) * elem_size);
    if (!na)
        return -ENOMEM;
    *array = na;
    return 0;
}

void shim_spec_clear(ShimSpec *spec)
{
    free(spec->text);
    free(spec->argv);
    free(spec->envp);
    free(spec->groups);
    free(spec->rlimits);
    free(spec->cgroups);
    confine_filter_free(&spec->filter);
    *spec = (ShimSpec){0};
}

/* "<no|on-failure|always|unless-stopped> <max_restarts> <initial_ms> <max_ms> <reset_ms>" */
static int parse_restart(ShimSpec *s, const char *value, ShimError *reterr)
{
    static const char *const policies[] = {
        [SHIM_RESTART_NO] = "no",
        [SHIM_RESTART_ON_FAILURE] = "on-failure",
        [SHIM_RESTART_ALWAYS] = "always",
        [SHIM_RESTART_UNLESS_STOPPED] = "unless-stopped",
    };
    char copy[128];
    char *f[5];
    uint64_t max_restarts;
    snprintf(copy, sizeof(copy), "%s", value);
    if (strlen(value) >= sizeof(copy) || split_fields(copy, f, 5) < 0 ||
        parse_u64(f[1], SHIM_RESTARTS_LIMIT, &max_restarts) < 0 ||
        parse_u64(f[2], SHIM_BACKOFF_LIMIT_MS, &s->backoff_initial_ms) < 0 ||
        parse_u64(f[3], SHIM_BACKOFF_LIMIT_MS, &s->backoff_max_ms) < 0 ||
        parse_u64(f[4], SHIM_RESET_LIMIT_MS, &s->backoff_reset_ms) < 0 ||
        s->backoff_initial_ms == 0 || s->backoff_max_ms < s->backoff_initial_ms)
        return shim_error(reterr, EINVAL, "Invalid spec: restart '%s'", value);
    size_t i = 0;
    while (i < ELEMENTSOF(policies) && strcmp(f[0], policies[i]) != 0)
        i++;
    if (i == ELEMENTSOF(policies))
        return shim_error(reterr, EINVAL, "Invalid spec: restart policy '%s'", f[0]);
    s->supervised = true;
    s->restart = (ShimRestartPolicy)i;
    s->max_restarts = (uint32_t)max_restarts;
    return 0;
}

/* One decoded record. */
/* "rlimit RESOURCE SOFT HARD" */
static int parse_rlimit(ShimSpec *s, char *value, ShimError *reterr)
{
    uint64_t v;
    int r;
    char copy[128];
    char *f[3];
    snprintf(copy, sizeof(copy), "%s", value);
    ShimRlimit rl;
    if (strlen(value) >= sizeof(copy) || split_fields(copy, f, 3) < 0 ||
        parse_u64(f[0], RLIM_NLIMITS - 1, &v) < 0 || parse_rlim(f[1], &rl.limit.rlim_cur) < 0 ||
        parse_rlim(f[2], &rl.limit.rlim_max) < 0)
        return shim_error(reterr, EINVAL, "Invalid spec: rlimit '%s'", value);
    rl.resource = (int)v;
    if ((r = array_grow((void **)&s->rlimits, s->n_rlimits, sizeof(ShimRlimit))) < 0)
        return r;
    s->rlimits[s->n_rlimits++] = rl;
    return 0;
}

/* "tty COLUMNS ROWS" */
static int parse_tty(ShimSpec *s, char *value, ShimError *reterr)
{
    char copy[64];
    char *f[2];
    uint64_t cols, rows;
    snprintf(copy, sizeof(copy), "%s", value);
    if (strlen(value) >= sizeof(copy) || split_fields(copy, f, 2) < 0 ||
        parse_u64(f[0], USHRT_MAX, &cols) < 0 || parse_u64(f[1], USHRT_MAX, &rows) < 0)
        return shim_error(reterr, EINVAL, "Invalid spec: tty '%s'", value);
    s->tty = true;
    s->columns = (unsigned short)cols;
    s->rows = (unsigned short)rows;
    return 0;
}

/* "log_rotate MAX_SIZE MAX_FILES" */
static int parse_log_rotate(ShimSpec *s, char *value, ShimError *reterr)
{
    char copy[64];
    char *f[2];
    uint64_t files;
    snprintf(copy, sizeof(copy), "%s", value);
    if (strlen(value) >= sizeof(copy) || split_fields(copy, f, 2) < 0 ||
        parse_u64(f[0], SHIM_LOG_SIZE_LIMIT, &s->log_max_size) < 0 ||
        s->log_max_size < SHIM_LOG_SIZE_MIN || parse_u64(f[1], SHIM_LOG_FILES_LIMIT, &files) < 0 ||
        files == 0)
        return shim_error(reterr, EINVAL, "Invalid spec: log_rotate '%s'", value);
    s->log_max_files = (unsigned)files;
    return 0;
}

/* "group GID", one supplementary group */
static int parse_group(ShimSpec *s, char *value, ShimError *reterr)
{
    uint64_t v;
    int r;
    if (parse_u64(value, UINT32_MAX - 1, &v) < 0)
        return shim_error(reterr, EINVAL, "Invalid spec: group '%s'", value);
    if (s->n_groups >= SHIM_GROUPS_MAX)
        return shim_error(reterr, E2BIG, "Invalid spec: more than %d groups", SHIM_GROUPS_MAX);
    if ((r = array_grow((void **)&s->groups, s->n_groups, sizeof(gid_t))) < 0)
        return r;
    s->groups[s->n_groups++] = (gid_t)v;
    return 0;
}

static int spec_apply(ShimSpec *s, size_t *n_argv, size_t *n_envp, bool *have_init_start,
                      const char *key, char *value, ShimError *reterr)
{
    uint64_t v;
    if (strcmp(key, "path") == 0) {
        s->path = value;
        s->argv[0] = value;
        return 0;
    }
    if (strcmp(key, "arg") == 0)
        return strv_push(&s->argv, n_argv, value);
    if (strcmp(key, "env") == 0) {
        if (!strchr(value, '='))
            return shim_error(reterr, EINVAL, "Invalid spec: env '%s' has no '='", value);
        return strv_push(&s->envp, n_envp, value);
    }
    if (strcmp(key, "dir") == 0) {
        s->dir = value;
        return 0;
    }
    if (strcmp(key, "uid") == 0 || strcmp(key, "gid") == 0) {
        if (parse_u64(value, UINT32_MAX - 1, &v) < 0)
            return shim_error(reterr, EINVAL, "Invalid spec: %s '%s'", key, value);
        if (key[0] == 'u')
            s->uid = (uid_t)v;
        else
            s->gid = (gid_t)v;
        return 0;
    }
    if (strcmp(key, "group") == 0)
        return parse_group(s, value, reterr);
    if (strcmp(key, "rlimit") == 0)
        return parse_rlimit(s, value, reterr);
    if (strcmp(key, "tty") == 0)
        return parse_tty(s, value, reterr);
    if (strcmp(key, "init_pid") == 0) {
        if (parse_u64(value, INT_MAX, &v) < 0 || v == 0)
            return shim_error(reterr, EINVAL, "Invalid spec: init_pid '%s'", value);
        s->init_pid = (pid_t)v;
        return 0;
    }
    if (strcmp(key, "init_start") == 0) {
        if (parse_u64(value, UINT64_MAX, &s->init_start) < 0)
            return shim_error(reterr, EINVAL, "Invalid spec: init_start '%s'", value);
        *have_init_start = true;
        return 0;
    }
    if (strcmp(key, "cgroup") == 0) {
        if (value[0] != '/')
            return shim_error(reterr, EINVAL, "Invalid spec: cgroup '%s' is not absolute", value);
        if (s->n_cgroups >= SHIM_CGROUPS_MAX)
            return shim_error(reterr, E2BIG, "Invalid spec: more than %d cgroups",
                              SHIM_CGROUPS_MAX);
        return strv_push(&s->cgroups, &s->n_cgroups, value);
    }
    if (strcmp(key, "ring") == 0) {
        if (parse_u64(value, SHIM_RING_LIMIT, &v) < 0)
            return shim_error(reterr, EINVAL, "Invalid spec: ring '%s' (at most %u)", value,
                              SHIM_RING_LIMIT);
        s->ring = (size_t)v;
        return 0;
    }
    if (strcmp(key, "linger") == 0) {
        if (parse_u64(value, SHIM_LINGER_LIMIT, &v) < 0)
            return shim_error(reterr, EINVAL, "Invalid spec: linger '%s' (at most %u)", value,
                              SHIM_LINGER_LIMIT);
        s->linger = (unsigned)v;
        return 0;
    }
    if (strcmp(key, "confine") == 0) {
        if (confine_parse(value, &s->confine) < 0)
            return shim_error(reterr, EINVAL, "Invalid spec: confine '%s'", value);
        s->confined = true;
        return 0;
    }
    if (strcmp(key, "seccomp") == 0) {
        if (value[0] != '/')
            return shim_error(reterr, EINVAL, "Invalid spec: seccomp '%s' is not absolute", value);
        s->seccomp_path = value;
        return 0;
    }
    if (strncmp(key, "pea_", 4) == 0)
        return shim_pea_spec_apply(s, key, value, reterr);
    if (strcmp(key, "restart") == 0)
        return parse_restart(s, value, reterr);
    if (strcmp(key, "log") == 0) {
        if (value[0] != '/')
            return shim_error(reterr, EINVAL, "Invalid spec: log '%s' is not absolute", value);
        s->log_path = value;
        return 0;
    }
    if (strcmp(key, "log_rotate") == 0)
        return parse_log_rotate(s, value, reterr);
    /* The daemon and the shim ship together: an unknown key is a bug, not news. */
    return shim_error(reterr, EINVAL, "Invalid spec: unknown key '%s'", key);
}

int shim_spec_parse(char *text, size_t len, ShimSpec *ret, ShimError *reterr)
{
    ShimSpec s = {.ring = SHIM_DEFAULT_RING,
                  .linger = SHIM_DEFAULT_LINGER,
                  .log_max_size = SHIM_DEFAULT_LOG_SIZE,
                  .log_max_files = SHIM_DEFAULT_LOG_FILES};
    size_t n_argv = 1, n_envp = 0;
    bool have_init_start = false;
    int r = 0;

    s.argv = calloc(65, sizeof(char *));
    s.envp = calloc(64, sizeof(char *));
    s.cgroups = calloc(64, sizeof(char *));
    if (!s.argv || !s.envp || !s.cgroups) {
        r = shim_error(reterr, ENOMEM, "Failed to read the spec");
        goto fail;
    }
    /* argv[0] is a placeholder until path is seen; strv_push keeps argv NULL-terminated
     * after it. */
    s.argv[0] = (char *)"";

    size_t line_no = 0;
    for (size_t pos = 0; pos < len;) {
        char *line = text + pos;
        char *nl = memchr(line, '\n', len - pos);
        line_no++;
        if (!nl) {
            r = shim_error(reterr, EINVAL, "Invalid spec: line %zu does not end in a newline",
                           line_no);
            goto fail;
        }
        size_t line_len = (size_t)(nl - line);
        pos += line_len + 1;
        char *eq = memchr(line, '=', line_len);
        if (!eq || eq == line) {
            *nl = '\0';
            r = shim_error(reterr, EINVAL, "Invalid spec: line %zu has no key", line_no);
            goto fail;
        }
        *eq = '\0';
        char *value = eq + 1;
        /* The decoded value (never longer) ends at or before the newline, which
         * becomes its NUL. */
        if (percent_decode(value, (size_t)(nl - value)) < 0) {
            r = shim_error(reterr, EINVAL, "Invalid spec: bad percent encoding in '%s'", line);
            goto fail;
        }
        r = spec_apply(&s, &n_argv, &n_envp, &have_init_start, line, value, reterr);
        if (r < 0) {
            if (r == -ENOMEM)
                shim_error(reterr, ENOMEM, "Failed to read the spec");
            goto fail;
        }
    }
    if (!s.path) {
        r = shim_error(reterr, EINVAL, "Invalid spec: no path");
        goto fail;
    }
    if (!s.init_pid || !have_init_start) {
        r = shim_error(reterr, EINVAL, "Invalid spec: no init_pid and init_start");
        goto fail;
    }
    if (!s.dir || !*s.dir)
        s.dir = "/";
    s.text = text;
    *ret = s;
    return 0;

fail:
    s.text = NULL; /* still the caller's */
    shim_spec_clear(&s);
    return r;
}

int shim_spec_load(int dirfd, ShimSpec *ret, ShimError *reterr)
{
    _cleanup_close_ int fd = openat(dirfd, "spec", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return shim_error(reterr, errno, "Failed to open the spec");
    struct stat st;
    if (fstat(fd, &st) < 0)
        return shim_error(reterr, errno, "Failed to read the spec");
    if (!S_ISREG(st.st_mode) || st.st_size > SHIM_SPEC_MAX)
        return shim_error(reterr, EFBIG, "Invalid spec: not a file of at most %u bytes",
                          SHIM_SPEC_MAX);
    _cleanup_free_ char *text = malloc((size_t)st.st_size + 1);
    if (!text)
        return shim_error(reterr, ENOMEM, "Failed to read the spec");
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, text + len, (size_t)st.st_size + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return shim_error(reterr, errno, "Failed to read the spec");
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > (size_t)st.st_size)
            return shim_error(reterr, EFBIG, "Invalid spec: it changed while being read");
    }
    int r = shim_spec_adopt(text, len, ret, reterr);
    if (r >= 0)
        TAKE_PTR(text);
    return r;
}

int shim_spec_adopt(char *text, size_t len, ShimSpec *ret, ShimError *reterr)
{
    int r = shim_spec_parse(text, len, ret, reterr);
    if (r < 0)
        return r;
    /* The filter is read once, here: a restarted service gets the same. */
    if (ret->seccomp_path) {
        r = confine_filter_load(ret->seccomp_path, &ret->filter);
        if (r < 0) {
            shim_error(reterr, r, "Failed to read the seccomp filter '%s'", ret->seccomp_path);
            ret->text = NULL; /* still the caller's */
            shim_spec_clear(ret);
            return r;
        }
        ret->confine.filter = &ret->filter;
    }
    return 0;
}
