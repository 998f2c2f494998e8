/* Route matching and URL component decoding. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cloche/router.h"

int url_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int url_query_unescape(const char *s, size_t len, char **ret)
{
    char *out = malloc(len + 1);
    if (!out)
        return -ENOMEM;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '+') {
            out[o++] = ' ';
        } else if (c == '%') {
            int hi = i + 1 < len ? url_hex_digit(s[i + 1]) : -1;
            int lo = i + 2 < len ? url_hex_digit(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                return -EINVAL;
            }
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = c;
        }
    }
    out[o] = '\0';
    *ret = out;
    return 0;
}

/* Split path into segments (pointers into path, with lengths). The path must start
 * with '/'; an empty path or one with too many segments cannot match anything. */
static int split_path(const char *path, const char **seg, size_t *len, size_t *ret_n)
{
    if (path[0] != '/')
        return -EINVAL;
    size_t n = 0;
    const char *p = path + 1;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t l = slash ? (size_t)(slash - p) : strlen(p);
        if (n == ROUTE_SEGMENTS_MAX)
            return -E2BIG;
        seg[n] = p;
        len[n] = l;
        n++;
        if (!slash)
            break;
        p = slash + 1;
    }
    *ret_n = n;
    return 0;
}

/* Does pattern match the segments? Literal segments compare exactly; a :param
 * matches any non-empty segment. */
static bool pattern_matches(const char *pattern, const char **seg, const size_t *len, size_t n)
{
    const char *pseg[ROUTE_SEGMENTS_MAX];
    size_t plen[ROUTE_SEGMENTS_MAX], pn = 0;
    if (split_path(pattern, pseg, plen, &pn) < 0 || pn != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (pseg[i][0] == ':') {
            if (len[i] == 0)
                return false;
        } else if (plen[i] != len[i] || memcmp(pseg[i], seg[i], len[i]) != 0) {
            return false;
        }
    }
    return true;
}

static void allow_append(char *allow, size_t size, const char *method)
{
    if (!allow || size == 0)
        return;
    /* Skip duplicates: several routes may share a method on one path. */
    size_t ml = strlen(method);
    for (const char *a = allow; (a = strstr(a, method)); a += ml)
        if ((a == allow || a[-1] == ' ') && (a[ml] == ',' || a[ml] == '\0'))
            return;
    size_t used = strlen(allow);
    if (used + ml + 3 > size)
        return;
    if (used)
        strcat(allow, ", ");
    strcat(allow, method);
}

int router_match(const Route *table, size_t n, const char *method, const char *path,
                 RouteMatch *ret, char *allow, size_t allow_size, ApiError *reterr)
{
    const char *seg[ROUTE_SEGMENTS_MAX];
    size_t len[ROUTE_SEGMENTS_MAX], n_seg = 0;
    if (allow && allow_size)
        allow[0] = '\0';
    if (split_path(path, seg, len, &n_seg) < 0)
        return api_errorf(reterr, -ENOENT, 404, GARDEN_ERR_GENERIC, "No route for %s %s", method,
                          path);

    const Route *found = NULL;
    bool path_known = false;
    for (size_t i = 0; i < n; i++) {
        if (!pattern_matches(table[i].pattern, seg, len, n_seg))
            continue;
        path_known = true;
        if (strcmp(table[i].method, method) == 0) {
            found = &table[i];
            break;
        }
        allow_append(allow, allow_size, table[i].method);
    }
    if (!found) {
        if (path_known)
            return api_errorf(reterr, -EOPNOTSUPP, 405, GARDEN_ERR_GENERIC,
                              "Method %s not allowed on %s", method, path);
        return api_errorf(reterr, -ENOENT, 404, GARDEN_ERR_GENERIC, "No route for %s %s", method,
                          path);
    }

    RouteMatch m = {.route = found};
    const char *pseg[ROUTE_SEGMENTS_MAX];
    size_t plen[ROUTE_SEGMENTS_MAX], pn = 0;
    (void)split_path(found->pattern, pseg, plen, &pn);
    for (size_t i = 0; i < n_seg && i < pn; i++) {
        if (pseg[i][0] != ':' || m.n_params == ROUTE_PARAMS_MAX)
            continue;
        int r = url_query_unescape(seg[i], len[i], &m.params[m.n_params]);
        if (r < 0) {
            route_match_done(&m);
            if (r == -ENOMEM)
                return api_internal_error(reterr, r, "Failed to decode the path");
            return api_bad_request(reterr, "Invalid percent-encoding in path segment '%.*s'",
                                   (int)len[i], seg[i]);
        }
        m.n_params++;
    }
    *ret = m;
    return 0;
}

void route_match_done(RouteMatch *m)
{
    for (size_t i = 0; i < m->n_params; i++)
        free(m->params[i]);
    *m = (RouteMatch){0};
}

int url_parse_query(const char *query, StringMap *ret, ApiError *reterr)
{
    StringMap m = STRING_MAP_INIT;
    const char *p = query ? query : "";
    size_t count = 0;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t l = amp ? (size_t)(amp - p) : strlen(p);
        if (l > 0) {
            if (++count > 256) {
                strmap_clear(&m);
                return api_bad_request(reterr, "Too many query parameters (at most 256)");
            }
            const char *eq = memchr(p, '=', l);
            size_t kl = eq ? (size_t)(eq - p) : l;
            char *k = NULL, *v = NULL;
            int r = url_query_unescape(p, kl, &k);
            if (r >= 0)
                r = eq ? url_query_unescape(eq + 1, l - kl - 1, &v) : url_query_unescape("", 0, &v);
            if (r >= 0 && !strmap_get(&m, k))
                r = strmap_set(&m, k, v);
            free(k);
            free(v);
            if (r < 0) {
                strmap_clear(&m);
                if (r == -ENOMEM)
                    return api_internal_error(reterr, r, "Failed to parse the query");
                return api_bad_request(reterr, "Invalid percent-encoding in query parameter '%.*s'",
                                       (int)l, p);
            }
        }
        if (!amp)
            break;
        p = amp + 1;
    }
    *ret = m;
    return 0;
}
