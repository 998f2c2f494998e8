/* The `cloche` command-line client: shared declarations of src/cli/.
 *
 * The client speaks only the HTTP API. Every function that can fail prints one
 * line on stderr ("cloche: ...") where the failure is found and returns a
 * negative errno; callers pass the number up without printing again. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cloche/cleanup.h"

/* Exit codes: 0 success, 1 an error, 2 bad usage. `run`, `exec` and `attach`
 * exit with the process's status, 127 when the command does not exist, and
 * 125 when the client itself failed (as docker does). */
#define CLI_EXIT_ERROR 1
#define CLI_EXIT_USAGE 2
#define CLI_EXIT_RUN_FAILED 125
#define CLI_EXIT_NOT_FOUND 127 /* run: the command was not found */

#define CLI_DEFAULT_SOCKET "/run/cloche/cloche.sock"
#define CLI_REPLY_MAX (64u << 20) /* the largest JSON reply the client reads */
#define CLI_TOKEN_MAX 4096

/* Print "cloche: MESSAGE" on stderr (newlines folded into spaces) and return r. */
int cli_error(int r, const char *fmt, ...) _printf_(2, 3);
/* Usage error: "cloche CMD: MESSAGE" plus a hint to --help; returns -EINVAL and
 * marks the exit code as CLI_EXIT_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...) _printf_(2, 3);
extern bool cli_usage_failed;
/* Put the terminal back in its own mode if run -t changed it (cmd-process.c). */
void restore_terminal(void);

/* ---- connection to the daemon (http.c) */

typedef struct CliTarget {
    char *unix_path; /* the socket, or NULL for TCP */
    char *host;      /* TCP host and port */
    char *port;
    char *token; /* bearer token, or NULL */
} CliTarget;

extern CliTarget cli_target;
extern bool cli_json; /* --json: print the daemon's JSON */

/* An open connection with a read buffer, after the reply's head was read. */
typedef struct HttpConn {
    int fd;
    int status;
    bool chunked;
    bool has_length;
    uint64_t length;     /* Content-Length, or what is left of it */
    uint64_t chunk_left; /* bytes left in the current chunk */
    bool body_done;
    char *buf;
    size_t start, end, cap;
} HttpConn;

void http_conn_done(HttpConn *c);
#define _cleanup_http_conn_ _cleanup_(http_conn_done)

/* Connect to the daemon (fd, close-on-exec). */
int http_connect(int *ret_fd);
/* Send a request head (plus the body, if not NULL). extra_headers is a block of
 * "Name: value\r\n" lines or NULL. */
int http_send_head(int fd, const char *method, const char *target, const char *extra_headers,
                   const void *body, size_t len, bool chunked_body);
int http_write_all(int fd, const void *buf, size_t len);
/* Read and parse the reply's status line and headers. */
int http_read_head(HttpConn *c);
/* Read the body by its framing (Content-Length, chunked, or until close): returns
 * the number of bytes (0 at its end) or a negative errno. */
ssize_t http_read_body(HttpConn *c, void *buf, size_t len);
/* Read raw bytes after the head (hijacked connections): 0 at EOF. */
ssize_t http_read_raw(HttpConn *c, void *buf, size_t len);
/* Bytes already buffered beyond the head. */
static inline size_t http_buffered(const HttpConn *c)
{
    return c->end - c->start;
}
/* The whole body (at most max bytes), NUL-terminated. */
int http_read_all_body(HttpConn *c, size_t max, char **ret, size_t *ret_len);
/* Print the error a non-2xx reply carries (the Garden error's Message) and
 * return -EIO (-ENOENT for the NotFound types). */
int http_report_error(HttpConn *c);

/* One ordinary call: method, target (already escaped), optional JSON body.
 * On a 2xx reply *ret is the parsed JSON (NULL for `null`); otherwise the
 * Garden error is printed and a negative errno returned. ret may be NULL. */
int api_call(const char *method, const char *target, json_object *body, json_object **ret);
/* The same, with the raw reply text when --json wants it printed as it came. */
int api_call_raw(const char *method, const char *target, json_object *body, char **ret_text,
                 json_object **ret);

/* Percent-encode s for a path segment or query value into a malloc'd string. */
char *url_escape(const char *s);
/* Check a handle or process id: 1-128 of [A-Za-z0-9._-], not starting with '.'. */
int check_name(const char *what, const char *s);

/* ---- output and units (format.c) */

/* "1.5 GiB", "512 MiB", "12 KiB", "100 B" into buf. */
const char *fmt_bytes(uint64_t n, char *buf, size_t size);
/* "3 seconds", "5 minutes", "2 hours", "4 days" (durations in ns). */
const char *fmt_duration_ns(uint64_t ns, char *buf, size_t size);
/* "5 minutes ago" for a unix time. */
const char *fmt_ago(int64_t unix_time, char *buf, size_t size);
/* Parse "512m", "1g", "1.5GiB", "4096" (bytes; k, m, g, t, p with optional i/iB/B,
 * powers of 1024). */
int parse_size(const char *s, uint64_t *ret);
/* Parse "1.5" CPUs into millicpus (0.01 to 1024). */
int parse_cpus(const char *s, uint64_t *ret);
/* Parse a decimal unsigned integer, at most max. */
int parse_u64(const char *s, uint64_t max, uint64_t *ret);
/* Parse a signal: a number (1-64), "TERM", "SIGTERM", "term". */
int parse_signal(const char *s, int *ret);

/* An aligned table: add rows of cells, then print (columns padded to width). */
typedef struct Table {
    size_t n_cols;
    size_t n_rows;
    char **cells; /* n_rows * n_cols, row 0 the header */
} Table;
Table *table_new(size_t n_cols, ...);
int table_add(Table *t, ...); /* n_cols strings (copied; NULL = "") */
void table_print(const Table *t, FILE *out);
void table_free(Table *t);
static inline void table_freep(Table **t)
{
    table_free(*t);
    *t = NULL;
}
#define _cleanup_table_ _cleanup_(table_freep)

/* Progress bars (progress.c): one per item (a layer, an upload), redrawn in
 * place when stdout is a terminal and --json is not given; otherwise a plain
 * line "ID: SIZE" when an item finishes (none with --json). */
typedef struct Progress Progress;
Progress *progress_new(void);
void progress_free(Progress *p);
bool progress_is_tty(const Progress *p);
/* total 0: unknown. */
void progress_update(Progress *p, const char *id, uint64_t done, uint64_t total);
/* Start a new set of bars below the ones drawn. */
void progress_forget(Progress *p);
static inline void progress_freep(Progress **p)
{
    progress_free(*p);
    *p = NULL;
}
#define _cleanup_progress_ _cleanup_(progress_freep)

/* Print JSON pretty when stdout is a terminal, compact otherwise. */
void print_json(json_object *o);

/* json helpers for replies */
uint64_t jget_u64(json_object *o, const char *key);
const char *jget_str(json_object *o, const char *key);

/* ---- commands */

typedef struct Command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage;   /* "cloche NAME ..." */
    const char *summary; /* one line */
    const char *help;    /* options, several lines */
} Command;

extern const Command cli_commands[];
const Command *command_find(const char *name);
/* Print the command's help on stdout. */
void command_help(const Command *c);

/* --json and --help, in every command's option table; its getopt_long loop
 * passes each option to cli_common_opt() first. */
#define CLI_COMMON_OPTS                                                                            \
    {"json", no_argument, NULL, 'J'},                                                              \
    {                                                                                              \
        "help", no_argument, NULL, 'h'                                                             \
    }

int cmd_ping(int argc, char **argv);
int cmd_capacity(int argc, char **argv);
int cmd_create(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_destroy(int argc, char **argv);
int cmd_start(int argc, char **argv);
int cmd_restart(int argc, char **argv);
int cmd_logs(int argc, char **argv);
int cmd_events(int argc, char **argv);
int cmd_limits(int argc, char **argv);
int cmd_metrics(int argc, char **argv);
int cmd_net_in(int argc, char **argv);
int cmd_net_out(int argc, char **argv);
int cmd_props(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_attach(int argc, char **argv);
int cmd_kill(int argc, char **argv);
int cmd_cp(int argc, char **argv);
int cmd_images(int argc, char **argv);
/* A docker-style image name ("alpine:3", "registry:5000/app:v1") as the
 * daemon's docker:// URI; URIs pass as they are (cmd-images.c). */
char *image_uri(const char *ref);
int cmd_pull(int argc, char **argv);
/* Pull (or refresh) an image by URI, showing progress (--json and echo_json:
 * the daemon's lines); *ret_digest the image's digest (cmd-images.c). */
int image_pull(const char *uri, const char *user, const char *password, bool echo_json,
               char **ret_digest);
/* A name the daemon's store has as cloche/NAME[:TAG] (imported, committed or
 * built) as cloche:///NAME:TAG; anything else as image_uri(). */
char *image_uri_local(const char *ref);
int cmd_build(int argc, char **argv);
/* images import|export|commit (cmd-image-io.c); argv[0] is the subcommand. */
int images_io_command(const char *sub, int argc, char **argv);

/* The common options in a command's getopt loop: 1 if opt was --json, 0 if it
 * is the command's own, -ECANCELED after --help (printed: exit 0), -EINVAL
 * after an unknown option or a missing argument (reported: exit 2). */
int cli_common_opt(int opt, const char *cmd);
/* Exit code requested by a command that finished normally (run's status). */
extern int cli_exit_code;
extern int cli_argc;
extern char **cli_argv;

/* Shared option parsers (cmd-containers.c). */
int limit_opt(int opt, const char *arg, const char *cmd, json_object *limits);
int parse_port_mapping(const char *cmd, const char *s, json_object **ret);
json_object *obj_child(json_object *parent, const char *key);
void print_reply(const char *text);
int parse_common(int argc, char **argv, const char *cmd);
