/* cloche build: the Dockerfile subset it reads (build-parse.c) and the config
 * changes a step makes (shared with `images commit -c`). */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#define BUILD_STEPS_MAX 256
#define BUILD_FILE_MAX (1u << 20)  /* a Dockerfile */
#define BUILD_LINE_MAX (64u << 10) /* one instruction, continuations joined */
#define BUILD_VARS_MAX 256

typedef enum BuildKind {
    BUILD_FROM,
    BUILD_RUN,
    BUILD_COPY,
    BUILD_ADD,
    BUILD_ENV,
    BUILD_ARG,
    BUILD_WORKDIR,
    BUILD_USER,
    BUILD_CMD,
    BUILD_ENTRYPOINT,
    BUILD_EXPOSE,
    BUILD_LABEL,
} BuildKind;

typedef struct BuildStep {
    BuildKind kind;
    unsigned line;  /* where it starts in the Dockerfile */
    char *keyword;  /* as written, upper-cased */
    char *args;     /* the rest, continuations joined */
    bool exec_form; /* RUN/CMD/ENTRYPOINT/COPY/ADD written as a JSON array */
    char **argv;    /* exec form: the array */
    size_t argc;
} BuildStep;

void build_steps_free(BuildStep *v, size_t n);

/* Parse a Dockerfile. Anything outside the subset is an error naming the
 * instruction and its line ("Dockerfile:7: 'HEALTHCHECK' is not supported ...").
 * name is the file's name for messages. Errors are printed (cli_error). */
int build_parse(const char *text, size_t len, const char *name, BuildStep **ret, size_t *ret_n);

/* Variables in scope ($NAME, ${NAME}, ${NAME:-word}, ${NAME:+word}): ARG and
 * ENV values, NAME=VALUE. */
typedef struct BuildVars {
    char *v[BUILD_VARS_MAX];
    size_t n;
} BuildVars;
void build_vars_done(BuildVars *vars);
const char *build_vars_get(const BuildVars *vars, const char *name);
int build_vars_set(BuildVars *vars, const char *name, const char *value);

/* Split text into words as the shell would for ENV/LABEL/ARG/COPY: blanks
 * separate, quotes group, backslash escapes; variables substituted (vars may
 * be NULL). */
int build_words(const char *text, const BuildVars *vars, char ***ret, size_t *ret_n);
/* Substitute variables in text (no splitting). */
int build_substitute(const char *text, const BuildVars *vars, char **ret);

/* A step's change to the image config, added to config (the commit body's
 * "config" object): ENV, LABEL, EXPOSE, USER, WORKDIR, CMD, ENTRYPOINT.
 * workdir is the current working directory (a relative WORKDIR is resolved
 * against it) and is updated; ENV values join vars. where names the step in
 * messages. */
int build_step_config(const BuildStep *s, BuildVars *vars, char **workdir, json_object *config,
                      const char *where);
