/* The Dockerfile subset cloche build reads: lines and continuations, the
 * instructions, the exec (JSON) form, words and quotes, and variables; and the
 * config change each metadata instruction makes. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "build.h"
#include "cli.h"
#include "cloche/json.h"

static const struct {
    const char *name;
    BuildKind kind;
} keywords[] = {
    {"FROM", BUILD_FROM},       {"RUN", BUILD_RUN},
    {"COPY", BUILD_COPY},       {"ADD", BUILD_ADD},
    {"ENV", BUILD_ENV},         {"ARG", BUILD_ARG},
    {"WORKDIR", BUILD_WORKDIR}, {"USER", BUILD_USER},
    {"CMD", BUILD_CMD},         {"ENTRYPOINT", BUILD_ENTRYPOINT},
    {"EXPOSE", BUILD_EXPOSE},   {"LABEL", BUILD_LABEL},
};

/* Dockerfile instructions outside the subset, named as such in the error. */
static const char *const unsupported[] = {"ONBUILD", "HEALTHCHECK", "SHELL",
                                          "VOLUME",  "STOPSIGNAL",  "MAINTAINER"};

#define SUBSET "FROM, RUN, COPY, ADD, ENV, ARG, WORKDIR, USER, CMD, ENTRYPOINT, EXPOSE, LABEL"

void build_steps_free(BuildStep *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        free(v[i].keyword);
        free(v[i].args);
        strv_free(v[i].argv);
    }
    free(v);
}

/* The JSON array form, if args is one (else, as docker, the shell form). */
static bool exec_form(const char *args, char ***ret, size_t *ret_n)
{
    if (args[0] != '[')
        return false;
    _cleanup_json_ json_object *o = NULL;
    ApiError e = {0};
    if (json_parse_strict(args, strlen(args), &o, &e) < 0 ||
        !json_object_is_type(o, json_type_array))
        return false;
    size_t n = json_object_array_length(o);
    char **v = calloc(n + 1, sizeof(char *));
    if (!v)
        return false;
    for (size_t i = 0; i < n; i++) {
        json_object *s = json_object_array_get_idx(o, i);
        if (!json_object_is_type(s, json_type_string) ||
            !(v[i] = strdup(json_object_get_string(s)))) {
            strv_free(v);
            return false;
        }
    }
    *ret = v;
    *ret_n = n;
    return true;
}

static int parse_instruction(char *text, unsigned line, const char *name, BuildStep *s,
                             bool seen_from)
{
    char *p = text;
    while (isspace((unsigned char)*p))
        p++;
    size_t klen = strcspn(p, " \t");
    char *args = p + klen;
    while (isspace((unsigned char)*args))
        args++;
    size_t alen = strlen(args);
    while (alen > 0 && isspace((unsigned char)args[alen - 1]))
        args[--alen] = '\0';
    char keyword[32];
    snprintf(keyword, sizeof(keyword), "%.*s", (int)(klen < 31 ? klen : 31), p);
    for (char *k = keyword; *k; k++)
        *k = (char)toupper((unsigned char)*k);

    size_t i;
    for (i = 0; i < ELEMENTSOF(keywords); i++)
        if (strcmp(keyword, keywords[i].name) == 0)
            break;
    if (i == ELEMENTSOF(keywords)) {
        for (size_t u = 0; u < ELEMENTSOF(unsupported); u++)
            if (strcmp(keyword, unsupported[u]) == 0)
                return cli_error(-EOPNOTSUPP,
                                 "%s:%u: '%s' is not supported by cloche build (it reads " SUBSET
                                 ")",
                                 name, line, keyword);
        return cli_error(-EINVAL, "%s:%u: unknown instruction '%s'", name, line, keyword);
    }
    BuildKind kind = keywords[i].kind;
    if (!*args)
        return cli_error(-EINVAL, "%s:%u: '%s' needs arguments", name, line, keyword);
    if (kind != BUILD_FROM && kind != BUILD_ARG && !seen_from)
        return cli_error(-EINVAL, "%s:%u: '%s' before the first FROM", name, line, keyword);
    if (strncmp(args, "--", 2) == 0) {
        size_t flen = strcspn(args, " \t=");
        return cli_error(-EOPNOTSUPP, "%s:%u: '%s %.*s' is not supported by cloche build", name,
                         line, keyword, (int)flen, args);
    }
    if (kind == BUILD_FROM) {
        char *sp = args + strcspn(args, " \t");
        while (isspace((unsigned char)*sp))
            sp++;
        if (*sp)
            return cli_error(-EOPNOTSUPP,
                             "%s:%u: 'FROM ... %s' (multi-stage builds) is not supported by "
                             "cloche build",
                             name, line, sp);
    }
    if ((kind == BUILD_ADD) && strstr(args, "://"))
        return cli_error(-EOPNOTSUPP,
                         "%s:%u: 'ADD' of a URL is not supported by cloche build (local files "
                         "only)",
                         name, line);
    *s = (BuildStep){.kind = kind, .line = line, .keyword = strdup(keyword), .args = strdup(args)};
    if (!s->keyword || !s->args)
        return cli_error(-ENOMEM, "Out of memory");
    if (kind == BUILD_RUN || kind == BUILD_CMD || kind == BUILD_ENTRYPOINT || kind == BUILD_COPY ||
        kind == BUILD_ADD)
        s->exec_form = exec_form(args, &s->argv, &s->argc);
    if (s->exec_form && (kind == BUILD_RUN || kind == BUILD_COPY || kind == BUILD_ADD) &&
        s->argc < (kind == BUILD_RUN ? 1u : 2u))
        return cli_error(-EINVAL, "%s:%u: '%s' needs %s", name, line, keyword,
                         kind == BUILD_RUN ? "a command" : "a source and a destination");
    return 0;
}

int build_parse(const char *text, size_t len, const char *name, BuildStep **ret, size_t *ret_n)
{
    BuildStep *steps = calloc(BUILD_STEPS_MAX, sizeof(BuildStep));
    _cleanup_free_ char *cur = malloc(BUILD_LINE_MAX + 1);
    size_t n = 0, cur_len = 0;
    unsigned line = 0, start = 0;
    bool seen_from = false;
    int r = 0;
    if (!steps || !cur) {
        free(steps);
        return cli_error(-ENOMEM, "Out of memory");
    }
    for (size_t off = 0; off < len && r >= 0;) {
        const char *eol = memchr(text + off, '\n', len - off);
        size_t llen = eol ? (size_t)(eol - (text + off)) : len - off;
        const char *l = text + off;
        off += llen + (eol ? 1 : 0);
        line++;
        while (llen > 0 && (l[llen - 1] == '\r' || l[llen - 1] == ' ' || l[llen - 1] == '\t'))
            llen--;
        size_t lead = 0;
        while (lead < llen && (l[lead] == ' ' || l[lead] == '\t'))
            lead++;
        if (lead == llen || l[lead] == '#')
            continue; /* blank lines and comments, also inside a continuation */
        if (memchr(l, '\0', llen)) {
            r = cli_error(-EINVAL, "%s:%u: a NUL byte", name, line);
            break;
        }
        bool more = l[llen - 1] == '\\';
        if (more)
            llen--;
        if (cur_len == 0)
            start = line;
        if (cur_len + llen + 1 > BUILD_LINE_MAX) {
            r = cli_error(-E2BIG, "%s:%u: an instruction over %u KiB", name, start,
                          BUILD_LINE_MAX >> 10);
            break;
        }
        memcpy(cur + cur_len, l, llen);
        cur_len += llen;
        if (more) {
            cur[cur_len++] = ' ';
            if (off < len)
                continue;
        }
        cur[cur_len] = '\0';
        cur_len = 0;
        if (n == BUILD_STEPS_MAX) {
            r = cli_error(-E2BIG, "%s:%u: more than %d instructions", name, start, BUILD_STEPS_MAX);
            break;
        }
        r = parse_instruction(cur, start, name, &steps[n], seen_from);
        if (r >= 0) {
            seen_from = seen_from || steps[n].kind == BUILD_FROM;
            n++;
        } else {
            build_steps_free(steps, n + 1);
            return r;
        }
    }
    if (r >= 0 && !seen_from)
        r = cli_error(-EINVAL, "%s: no FROM instruction", name);
    if (r < 0) {
        build_steps_free(steps, n);
        return r;
    }
    *ret = steps;
    *ret_n = n;
    return 0;
}

/* ---- variables and words ---- */

void build_vars_done(BuildVars *vars)
{
    for (size_t i = 0; i < vars->n; i++)
        free(vars->v[i]);
    vars->n = 0;
}

static char **vars_find(const BuildVars *vars, const char *name, size_t nlen)
{
    for (size_t i = 0; vars && i < vars->n; i++)
        if (strncmp(vars->v[i], name, nlen) == 0 && vars->v[i][nlen] == '=')
            return (char **)&vars->v[i];
    return NULL;
}

const char *build_vars_get(const BuildVars *vars, const char *name)
{
    char **p = vars_find(vars, name, strlen(name));
    return p ? *p + strlen(name) + 1 : NULL;
}

int build_vars_set(BuildVars *vars, const char *name, const char *value)
{
    char *kv = NULL;
    if (asprintf(&kv, "%s=%s", name, value) < 0)
        return -ENOMEM;
    char **p = vars_find(vars, name, strlen(name));
    if (p) {
        free(*p);
        *p = kv;
        return 0;
    }
    if (vars->n == BUILD_VARS_MAX) {
        free(kv);
        return -E2BIG;
    }
    vars->v[vars->n++] = kv;
    return 0;
}

typedef struct Buf {
    char *s;
    size_t len, cap;
} Buf;

static int buf_add(Buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        if (cap > 2 * BUILD_LINE_MAX + 64)
            return -E2BIG;
        char *g = realloc(b->s, cap);
        if (!g)
            return -ENOMEM;
        b->s = g;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
    return 0;
}

/* $NAME, ${NAME}, ${NAME:-word}, ${NAME:+word} at p (p[0] == '$'); *used is
 * how many bytes it took. */
static int expand(const char *p, const BuildVars *vars, Buf *out, size_t *used)
{
    const char *q = p + 1;
    bool braced = *q == '{';
    if (braced)
        q++;
    size_t nlen = 0;
    while (isalnum((unsigned char)q[nlen]) || q[nlen] == '_')
        nlen++;
    if (nlen == 0 || isdigit((unsigned char)q[0])) {
        *used = 1;
        return buf_add(out, "$", 1);
    }
    char **kv = vars_find(vars, q, nlen);
    const char *value = kv ? *kv + nlen + 1 : NULL;
    if (!braced) {
        *used = 1 + nlen;
        return value ? buf_add(out, value, strlen(value)) : 0;
    }
    const char *after = q + nlen;
    const char *close = strchr(after, '}');
    if (!close)
        return -EINVAL;
    *used = (size_t)(close + 1 - p);
    if (after == close)
        return value ? buf_add(out, value, strlen(value)) : 0;
    if (after[0] == ':' && (after[1] == '-' || after[1] == '+')) {
        const char *word = after + 2;
        size_t wlen = (size_t)(close - word);
        bool set = value && *value;
        if (after[1] == '-')
            return set ? buf_add(out, value, strlen(value)) : buf_add(out, word, wlen);
        return set ? buf_add(out, word, wlen) : 0;
    }
    return -EINVAL;
}

/* The lexer: quotes, backslashes and variables; blanks split words when split. */
static int lex(const char *text, const BuildVars *vars, bool split, char ***ret, size_t *ret_n)
{
    char **words = NULL;
    size_t n = 0;
    Buf w = {0};
    bool in_word = false;
    char quote = 0;
    int r = 0;
    for (const char *p = text; *p && r >= 0;) {
        if (!quote && split && (*p == ' ' || *p == '\t')) {
            if (in_word) {
                char **g = realloc(words, (n + 2) * sizeof(char *));
                if (!g) {
                    r = -ENOMEM;
                    break;
                }
                words = g;
                words[n++] = w.s ? w.s : strdup("");
                words[n] = NULL;
                w = (Buf){0};
                in_word = false;
                if (!words[n - 1])
                    r = -ENOMEM;
            }
            p++;
            continue;
        }
        in_word = true;
        if (quote != '\'' && *p == '\\' && p[1]) {
            /* In double quotes only \" \\ \$ are escapes, as in the shell. */
            if (quote == '"' && !strchr("\"\\$", p[1]))
                r = buf_add(&w, p, 2);
            else
                r = buf_add(&w, p + 1, 1);
            p += 2;
        } else if (!quote && (*p == '"' || *p == '\'')) {
            quote = *p++;
            r = buf_add(&w, "", 0);
        } else if (quote && *p == quote) {
            quote = 0;
            p++;
        } else if (quote != '\'' && *p == '$') {
            size_t used = 1;
            r = expand(p, vars, &w, &used);
            p += used;
        } else {
            r = buf_add(&w, p++, 1);
        }
    }
    if (r >= 0 && quote)
        r = -EINVAL;
    if (r >= 0 && in_word) {
        char **g = realloc(words, (n + 2) * sizeof(char *));
        if (!g)
            r = -ENOMEM;
        else {
            words = g;
            words[n++] = w.s ? w.s : strdup("");
            words[n] = NULL;
            w = (Buf){0};
            if (!words[n - 1])
                r = -ENOMEM;
        }
    }
    free(w.s);
    if (r < 0) {
        if (words)
            words[n] = NULL;
        strv_free(words);
        return r;
    }
    if (!words && !(words = calloc(1, sizeof(char *))))
        return -ENOMEM;
    *ret = words;
    *ret_n = n;
    return 0;
}

int build_words(const char *text, const BuildVars *vars, char ***ret, size_t *ret_n)
{
    return lex(text, vars, true, ret, ret_n);
}

int build_substitute(const char *text, const BuildVars *vars, char **ret)
{
    char **words = NULL;
    size_t n = 0;
    int r = lex(text, vars, false, &words, &n);
    if (r < 0)
        return r;
    *ret = n ? words[0] : strdup("");
    if (n)
        words[0] = NULL;
    strv_free(words);
    return *ret ? 0 : -ENOMEM;
}

/* ---- a step's config change ---- */

static int add_string(json_object *config, const char *key, const char *value)
{
    json_object_object_add(config, key, json_object_new_string(value));
    return 0;
}

static json_object *member(json_object *config, const char *key, json_type type)
{
    json_object *v = json_member(config, key);
    if (!v || !json_object_is_type(v, type)) {
        v = type == json_type_array ? json_object_new_array() : json_object_new_object();
        json_object_object_add(config, key, v);
    }
    return v;
}

static json_object *argv_json(const BuildStep *s)
{
    json_object *a = json_object_new_array();
    if (s->exec_form) {
        for (size_t i = 0; i < s->argc; i++)
            json_object_array_add(a, json_object_new_string(s->argv[i]));
    } else {
        json_object_array_add(a, json_object_new_string("/bin/sh"));
        json_object_array_add(a, json_object_new_string("-c"));
        json_object_array_add(a, json_object_new_string(s->args));
    }
    return a;
}

static int key_value_words(const BuildStep *s, BuildVars *vars, json_object *config,
                           const char *where)
{
    _cleanup_(strv_freep) char **words = NULL;
    size_t n = 0;
    int r = build_words(s->args, vars, &words, &n);
    if (r < 0)
        return cli_error(r, "%s: '%s %s': unbalanced quotes or a bad ${...}", where, s->keyword,
                         s->args);
    bool legacy = s->kind == BUILD_ENV && n > 0 && !strchr(words[0], '=');
    if (legacy) { /* ENV KEY the rest of the line */
        _cleanup_free_ char *value = NULL;
        const char *rest = s->args + strcspn(s->args, " \t");
        while (*rest == ' ' || *rest == '\t')
            rest++;
        if (!*rest)
            return cli_error(-EINVAL, "%s: 'ENV %s' needs a value", where, words[0]);
        if (build_substitute(rest, vars, &value) < 0)
            return cli_error(-EINVAL, "%s: 'ENV %s': bad quotes or ${...}", where, s->args);
        _cleanup_free_ char *kv = NULL;
        if (asprintf(&kv, "%s=%s", words[0], value) < 0)
            return cli_error(-ENOMEM, "Out of memory");
        json_object_array_add(member(config, "Env", json_type_array), json_object_new_string(kv));
        return build_vars_set(vars, words[0], value) < 0
                   ? cli_error(-E2BIG, "%s: too many variables", where)
                   : 0;
    }
    for (size_t i = 0; i < n; i++) {
        char *eq = strchr(words[i], '=');
        if (!eq || eq == words[i])
            return cli_error(-EINVAL, "%s: '%s' in '%s' is not KEY=VALUE", where, words[i],
                             s->keyword);
        if (s->kind == BUILD_ENV) {
            json_object_array_add(member(config, "Env", json_type_array),
                                  json_object_new_string(words[i]));
            *eq = '\0';
            if (build_vars_set(vars, words[i], eq + 1) < 0)
                return cli_error(-E2BIG, "%s: too many variables", where);
        } else {
            *eq = '\0';
            json_object_object_add(member(config, "Labels", json_type_object), words[i],
                                   json_object_new_string(eq + 1));
        }
    }
    return 0;
}

static int expose(const BuildStep *s, BuildVars *vars, json_object *config, const char *where)
{
    _cleanup_(strv_freep) char **words = NULL;
    size_t n = 0;
    if (build_words(s->args, vars, &words, &n) < 0)
        return cli_error(-EINVAL, "%s: bad quotes in 'EXPOSE %s'", where, s->args);
    for (size_t i = 0; i < n; i++) {
        char *slash = strchr(words[i], '/');
        const char *proto = slash ? slash + 1 : "tcp";
        if (slash)
            *slash = '\0';
        uint64_t port = 0;
        if (parse_u64(words[i], 65535, &port) < 0 || port == 0 ||
            (strcasecmp(proto, "tcp") && strcasecmp(proto, "udp") && strcasecmp(proto, "sctp")))
            return cli_error(-EINVAL, "%s: invalid port '%s%s%s' in EXPOSE (PORT[/tcp|udp|sctp])",
                             where, words[i], slash ? "/" : "", slash ? proto : "");
        char key[40];
        snprintf(key, sizeof(key), "%u/%s", (unsigned)port, proto);
        for (char *k = key; *k; k++)
            *k = (char)tolower((unsigned char)*k);
        json_object_object_add(member(config, "ExposedPorts", json_type_object), key,
                               json_object_new_object());
    }
    return 0;
}

int build_step_config(const BuildStep *s, BuildVars *vars, char **workdir, json_object *config,
                      const char *where)
{
    _cleanup_free_ char *value = NULL;
    switch (s->kind) {
    case BUILD_ENV:
    case BUILD_LABEL:
        return key_value_words(s, vars, config, where);
    case BUILD_EXPOSE:
        return expose(s, vars, config, where);
    case BUILD_USER:
    case BUILD_WORKDIR:
        if (build_substitute(s->args, vars, &value) < 0 || !*value)
            return cli_error(-EINVAL, "%s: bad quotes or ${...} in '%s %s'", where, s->keyword,
                             s->args);
        if (s->kind == BUILD_USER)
            return add_string(config, "User", value);
        if (value[0] != '/') {
            const char *base = *workdir ? *workdir : "/";
            char *joined = NULL;
            if (asprintf(&joined, "%s%s%s", base, base[strlen(base) - 1] == '/' ? "" : "/", value) <
                0)
                return cli_error(-ENOMEM, "Out of memory");
            free(value);
            value = joined;
        }
        free(*workdir);
        if (!(*workdir = strdup(value)))
            return cli_error(-ENOMEM, "Out of memory");
        return add_string(config, "WorkingDir", value);
    case BUILD_CMD:
        json_object_object_add(config, "Cmd", argv_json(s));
        return 0;
    case BUILD_ENTRYPOINT:
        /* As docker: a new entrypoint drops the base image's Cmd. */
        if (!json_member(config, "Cmd"))
            json_object_object_add(config, "Cmd", NULL);
        json_object_object_add(config, "Entrypoint", argv_json(s));
        return 0;
    default:
        return cli_error(-EINVAL, "%s: '%s' does not change an image's config", where, s->keyword);
    }
}
