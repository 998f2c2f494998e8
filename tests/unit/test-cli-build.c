/* cloche build's Dockerfile reader: lines, continuations and comments, the
 * subset and its errors (instruction and line named), the exec form, words,
 * quotes and variables, and the config change of each metadata instruction. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"

#include "../../src/cli/build.h"
#include "../../src/cli/cli.h"
#include "cloche/json.h"

/* The client's error printer, here keeping the last message for the checks. */
static char last_error[2048];
bool cli_json;

int cli_error(int r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
    return r < 0 ? r : -EIO;
}

static int parse(const char *text, BuildStep **steps, size_t *n)
{
    last_error[0] = '\0';
    return build_parse(text, strlen(text), "Dockerfile", steps, n);
}

static const char *words_joined(const char *text, const BuildVars *vars)
{
    static char out[512];
    char **w = NULL;
    size_t n = 0;
    if (build_words(text, vars, &w, &n) < 0)
        return "ERROR";
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        strcat(out, i ? "|" : "");
        strcat(out, w[i]);
    }
    strv_free(w);
    return out;
}

static const char *config_of(const char *line, BuildVars *vars, char **workdir)
{
    static char out[1024];
    char text[512];
    snprintf(text, sizeof(text), "FROM x\n%s\n", line);
    BuildStep *s = NULL;
    size_t n = 0;
    if (parse(text, &s, &n) < 0)
        return "PARSE ERROR";
    json_object *config = json_object_new_object();
    int r = build_step_config(&s[1], vars, workdir, config, "test");
    snprintf(out, sizeof(out), "%s",
             r < 0 ? "ERROR"
                   : json_object_to_json_string_ext(config, JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(config);
    build_steps_free(s, n);
    return out;
}

int main(void)
{
    BuildStep *s = NULL;
    size_t n = 0;
    const char *df = "# syntax comment\n"
                     "ARG BASE=img:1\n"
                     "from $BASE\n"
                     "RUN echo a \\\n"
                     "  # a comment inside a continuation\n"
                     "  && echo b\n"
                     "\n"
                     "CMD [\"/bin/app\", \"--port\", \"80\"]\n"
                     "ENTRYPOINT not [json\n"
                     "COPY [\"a b\", \"/dst/\"]\r\n";
    is_int(parse(df, &s, &n), 0, "a Dockerfile parses");
    is_int((int)n, 6, "six instructions");
    is_int(s[1].kind, BUILD_FROM, "keywords are case-insensitive");
    is_str(s[2].args, "echo a    && echo b", "continuations joined, the comment dropped");
    is_int((int)s[2].line, 4, "a step's line is where it starts");
    ok(s[3].exec_form && s[3].argc == 3 && strcmp(s[3].argv[2], "80") == 0, "CMD's exec form");
    ok(!s[4].exec_form, "not JSON: the shell form, as docker");
    ok(s[5].exec_form && strcmp(s[5].argv[0], "a b") == 0, "COPY's JSON form, CR stripped");
    build_steps_free(s, n);

    ok(parse("FROM a\nRUN true\nHEALTHCHECK CMD true\n", &s, &n) == -EOPNOTSUPP &&
           strstr(last_error, "Dockerfile:3: 'HEALTHCHECK' is not supported by cloche build"),
       "outside the subset: named with its line (%s)", last_error);
    ok(parse("FROM a\nFROBNICATE x\n", &s, &n) < 0 &&
           strstr(last_error, "Dockerfile:2: unknown instruction 'FROBNICATE'"),
       "an unknown instruction (%s)", last_error);
    ok(parse("FROM a\nCOPY --chown=1:1 a /b\n", &s, &n) == -EOPNOTSUPP &&
           strstr(last_error, "Dockerfile:2: 'COPY --chown' is not supported"),
       "flags are refused (%s)", last_error);
    ok(parse("FROM a AS build\n", &s, &n) < 0 && strstr(last_error, "multi-stage"),
       "multi-stage builds are refused");
    ok(parse("FROM a\nADD https://example.com/x /x\n", &s, &n) < 0 &&
           strstr(last_error, "'ADD' of a URL"),
       "ADD of a URL is refused");
    ok(parse("RUN true\n", &s, &n) < 0 && strstr(last_error, "before the first FROM"),
       "RUN before FROM is refused");
    ok(parse("# nothing\n", &s, &n) < 0 && strstr(last_error, "no FROM"), "no FROM is refused");
    ok(parse("FROM a\nRUN\n", &s, &n) < 0 && strstr(last_error, "'RUN' needs arguments"),
       "an instruction without arguments");
    ok(parse("FROM a\nCOPY [\"only\"]\n", &s, &n) < 0, "COPY needs a destination");
    {
        /* The limit on instructions. */
        size_t cap = (BUILD_STEPS_MAX + 2) * 12 + 16;
        char *big = calloc(1, cap);
        strcpy(big, "FROM a\n");
        for (int i = 0; i < BUILD_STEPS_MAX; i++)
            strcat(big, "RUN true\n");
        ok(parse(big, &s, &n) == -E2BIG, "more than %d instructions are refused", BUILD_STEPS_MAX);
        free(big);
        ok(parse("FROM a\nRUN true\n", &s, &n) == 0, "while two are fine");
        build_steps_free(s, n);
    }

    BuildVars vars = {0};
    build_vars_set(&vars, "NAME", "world");
    build_vars_set(&vars, "EMPTY", "");
    is_str(words_joined("a \"b c\" 'd $NAME' e\\ f", &vars), "a|b c|d $NAME|e f",
           "quotes and escapes group words; single quotes keep $");
    is_str(words_joined("$NAME ${NAME}x \\$NAME", &vars), "world|worldx|$NAME",
           "$NAME, ${NAME}, an escaped $");
    is_str(
        words_joined("${UNSET:-dflt} ${NAME:-dflt} ${EMPTY:-e} ${NAME:+set} ${UNSET:+set}x", &vars),
        "dflt|world|e|set|x", "${:-} and ${:+}");
    is_str(words_joined("\"unbalanced", &vars), "ERROR", "unbalanced quotes are an error");
    is_str(words_joined("${NAME", &vars), "ERROR", "an unclosed ${ is an error");

    char *workdir = NULL;
    is_str(config_of("ENV A=1 B=\"two words\"", &vars, &workdir),
           "{\"Env\":[\"A=1\",\"B=two words\"]}", "ENV K=V pairs");
    is_str(build_vars_get(&vars, "B"), "two words", "ENV values join the variables");
    is_str(config_of("ENV LEGACY value with spaces $NAME", &vars, &workdir),
           "{\"Env\":[\"LEGACY=value with spaces world\"]}", "ENV K the rest");
    is_str(config_of("LABEL a=b \"c d\"=e", &vars, &workdir),
           "{\"Labels\":{\"a\":\"b\",\"c d\":\"e\"}}", "LABEL");
    is_str(config_of("EXPOSE 80 53/UDP", &vars, &workdir),
           "{\"ExposedPorts\":{\"80/tcp\":{},\"53/udp\":{}}}", "EXPOSE");
    is_str(config_of("EXPOSE 70000", &vars, &workdir), "ERROR", "a port over 65535");
    is_str(config_of("WORKDIR /srv", &vars, &workdir), "{\"WorkingDir\":\"/srv\"}",
           "WORKDIR absolute");
    is_str(config_of("WORKDIR app/$NAME", &vars, &workdir), "{\"WorkingDir\":\"/srv/app/world\"}",
           "WORKDIR relative to the last one");
    is_str(config_of("USER 1000:1000", &vars, &workdir), "{\"User\":\"1000:1000\"}", "USER");
    is_str(config_of("CMD echo $HOME", &vars, &workdir),
           "{\"Cmd\":[\"/bin/sh\",\"-c\",\"echo $HOME\"]}",
           "CMD's shell form (the shell substitutes)");
    is_str(config_of("ENTRYPOINT [\"/bin/app\"]", &vars, &workdir),
           "{\"Cmd\":null,\"Entrypoint\":[\"/bin/app\"]}", "ENTRYPOINT drops the base's Cmd");
    is_str(config_of("RUN true", &vars, &workdir), "ERROR", "RUN changes no config");
    is_str(config_of("ENV =x", &vars, &workdir), "ERROR", "an empty name");
    free(workdir);
    build_vars_done(&vars);
    return tap_done();
}
