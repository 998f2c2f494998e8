/* cloche: the command-line client of cloched. Global options, the command
 * table, help, and the exit code. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cloche/fileio.h"

bool cli_usage_failed;
int cli_exit_code;
int cli_argc;
char **cli_argv;

int cli_error(int r, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    int saved = errno;
    va_start(ap, fmt);
    errno = saved;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    restore_terminal(); /* a message after raw mode starts a line of its own */
    fflush(stdout);
    fprintf(stderr, "cloche: %s\n", msg);
    return r < 0 ? r : -EIO;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "cloche%s%s: %s (see 'cloche %s%s--help')\n", cmd ? " " : "", cmd ? cmd : "",
            msg, cmd ? cmd : "", cmd ? " " : "");
    cli_usage_failed = true;
    return -EINVAL;
}

int cli_common_opt(int opt, const char *cmd)
{
    switch (opt) {
    case 'J':
        cli_json = true;
        return 1;
    case 'h':
        command_help(command_find(cmd));
        return -ECANCELED;
    case '?':
        if (optopt && optopt < 256)
            return cli_usage(cmd, "Unknown option or missing argument: -%c", optopt);
        return cli_usage(cmd, "Unknown option or missing argument: %s",
                         optind > 0 && optind <= cli_argc ? cli_argv[optind - 1] : "?");
    default:
        return 0;
    }
}

#define JSON_HELP "  -J, --json            print the daemon's JSON reply\n"

const Command cli_commands[] = {
    {"ping", cmd_ping, "cloche ping", "Check that the daemon answers", JSON_HELP},
    {"capacity", cmd_capacity, "cloche capacity", "Show the host's capacity and what is committed",
     JSON_HELP},
    {"create", cmd_create, "cloche create [OPTIONS] [HANDLE]",
     "Create a container (a handle is made up when none is given) and print its handle",
     "  -i, --image IMAGE        root file system: an image (docker://..., oci://..., or\n"
     "                           a name such as alpine:3 or registry:5000/app:v1), or\n"
     "                           a directory (raw:///path or /path); default: the\n"
     "                           daemon's --default-rootfs\n"
     "  -m, --memory SIZE        memory limit, e.g. 512m, 1g (KiB/MiB/GiB units)\n"
     "      --cpus N            CPU cap, e.g. 1.5 (cloche_millicpus)\n"
     "      --cpu-weight N       relative CPU weight\n"
     "      --pids N             process limit\n"
     "      --disk SIZE          disk limit of the writable layer, e.g. 1g\n"
     "      --bandwidth RATE:BURST  bandwidth limit in bytes/s and bytes, e.g. 1m:64k\n"
     "  -e, --env K=V            environment for every process (repeatable)\n"
     "  -b, --bind SRC:DST[:ro]  bind mount a host path (repeatable; read-write unless :ro)\n"
     "  -p, --property K=V       property (repeatable)\n"
     "  -n, --network ADDR       address a.b.c.d or subnet a.b.c.d/n\n"
     "  -g, --grace DURATION     destroy after this long unused, e.g. 5m, 1h\n"
     "      --privileged         no user namespace: container root is host root\n"
     "  -P, --publish [HOST:]CONTAINER[/udp|/tcp+udp]  map a host port (repeatable;\n"
     "                           HOST 0 or absent = one from the daemon's pool)\n"
     "      --service            run the image's Entrypoint and Cmd as the container's\n"
     "                           service: restarted per policy, output in its logs\n"
     "      --service-cmd CMD    the service is 'sh -c CMD' instead\n"
     "      --restart POLICY     no, on-failure (default), always, unless-stopped\n"
     "      --max-restarts N     at most N restarts (0: no limit)\n" JSON_HELP},
    {"ls", cmd_list, "cloche ls [OPTIONS]", "List containers (alias: list)",
     "  -f, --filter K=V   only containers with this property (repeatable, ANDed)\n"
     "  -a, --all          also containers being created or destroyed\n"
     "  -q, --quiet        print handles only\n" JSON_HELP},
    {"list", cmd_list, "cloche list [OPTIONS]", "List containers (alias of ls)",
     "  -f, --filter K=V   only containers with this property (repeatable, ANDed)\n"
     "  -a, --all          also containers being created or destroyed\n"
     "  -q, --quiet        print handles only\n" JSON_HELP},
    {"info", cmd_info, "cloche info HANDLE...", "Show containers' state, addresses and properties",
     JSON_HELP},
    {"stop", cmd_stop, "cloche stop [-k] HANDLE...",
     "Stop containers' processes (TERM, then KILL after 10 s)",
     "  -k, --kill   send KILL at once\n" JSON_HELP},
    {"start", cmd_start, "cloche start HANDLE...",
     "Start stopped containers again (same layer, address, ports, limits; then the service)",
     JSON_HELP},
    {"restart", cmd_restart, "cloche restart [-k] HANDLE...", "Stop and start containers",
     "  -k, --kill   stop with KILL at once\n" JSON_HELP},
    {"logs", cmd_logs, "cloche logs [OPTIONS] HANDLE",
     "Show a container's service logs (stdout lines on stdout, stderr on stderr)",
     "  -f, --follow          keep printing new lines as they are written\n"
     "  -n, --tail N          only the last N lines\n"
     "  -s, --since WHEN      lines since a duration ago (10m, 2h) or unix seconds\n"
     "  -p, --process ID      a process run with cloche_log (default: service)\n"
     "  -t, --timestamps      each line's time first\n" JSON_HELP},
    {"events", cmd_events, "cloche events [OPTIONS]",
     "Show what happened to containers: created, started, stopped, destroyed, oom, ...",
     "  -f, --follow          keep printing events as they happen\n"
     "  -s, --since WHEN      events since a duration ago (10m, 2h) or unix seconds\n"
     "  -H, --handle HANDLE   one container's only\n" JSON_HELP},
    {"destroy", cmd_destroy, "cloche destroy HANDLE...", "Destroy containers (alias: rm)",
     JSON_HELP},
    {"rm", cmd_destroy, "cloche rm HANDLE...", "Destroy containers (alias of destroy)", JSON_HELP},
    {"run", cmd_run, "cloche run [OPTIONS] HANDLE [COMMAND [ARG...]]",
     "Run a command (default: the image's Entrypoint and Cmd) in a container; exit with its "
     "status",
     "  -i, --interactive   forward stdin (without it the process's stdin is empty)\n"
     "  -t, --tty           give the process a terminal (implies -i): raw mode,\n"
     "                      window size changes forwarded\n"
     "  -d, --detach        print the process id and leave it running\n"
     "  -u, --user USER     user name or uid:gid (default root)\n"
     "  -e, --env K=V       environment variable (repeatable)\n"
     "  -w, --workdir DIR   working directory (default the user's home)\n"
     "      --id ID         the process id (default: one made up)\n"
     "Signals the client gets (INT, TERM, HUP, QUIT, USR1, USR2) are sent on to the\n"
     "process. The exit status is the process's; 125 means cloche itself failed.\n"
     "  -J, --json            with -d: print {\"process_id\":...}; otherwise the output\n"
     "                        is the process's own bytes\n"},
    {"exec", cmd_run, "cloche exec [OPTIONS] HANDLE [COMMAND [ARG...]]",
     "Run a command in a container (alias of run)",
     "  the options of 'cloche run'\n"
     "  -J, --json            with -d: print {\"process_id\":...}\n"},
    {"attach", cmd_attach, "cloche attach [-i] HANDLE PROCESS-ID",
     "Attach to a running process's output; exit with its status",
     "  -i, --interactive   forward stdin too\n"
     "  -t, --tty           the process has a terminal: put this one in raw mode\n"
     "  -J, --json          accepted (the output is the process's own bytes)\n"},
    {"kill", cmd_kill, "cloche kill [-s SIGNAL] HANDLE PROCESS-ID",
     "Send a signal to a process (default TERM)",
     "  -s, --signal SIG   a name (TERM, SIGKILL, hup, RTMIN+1) or a number 1-64\n" JSON_HELP},
    {"cp", cmd_cp, "cloche cp [-u USER] SRC DST",
     "Copy files between the host and a container (one side is HANDLE:PATH)",
     "  -u, --user USER   the container-side user (default root)\n"
     "  SRC or DST '-' is a tar stream on stdin or stdout.\n"
     "  DST is a directory (created if missing) that SRC is copied into by its name;\n"
     "  a SRC ending in '/' copies the directory's contents instead.\n"
     "  -J, --json        print {} once copied\n"},
    {"limits", cmd_limits, "cloche limits HANDLE [KIND] | cloche limits set HANDLE [OPTIONS]",
     "Show or change limits (KIND: memory, cpu, pids, disk, bandwidth)",
     "  set options (changed live):\n"
     "  -m, --memory SIZE   --cpus N   --cpu-weight N   --pids N   --disk SIZE\n"
     "  --bandwidth RATE:BURST\n" JSON_HELP},
    {"metrics", cmd_metrics, "cloche metrics [OPTIONS] HANDLE",
     "Show a container's memory, CPU, disk, network and process use",
     "  --history        the sampled history (one row per sample or mean)\n"
     "  --since DURATION with --history: only this far back, e.g. 1h\n" JSON_HELP},
    {"net-in", cmd_net_in, "cloche net-in HANDLE [HOST:]CONTAINER[/udp|/tcp+udp]",
     "Map a host port to a container port (HOST 0 or absent = one from the pool)", JSON_HELP},
    {"net-out", cmd_net_out, "cloche net-out [OPTIONS] HANDLE", "Allow traffic out of a container",
     "  --protocol P        all (default), tcp, udp, icmp\n"
     "  --network A[-B]     destination address or inclusive range (repeatable)\n"
     "  --port N[-M]        destination port or range, tcp/udp only (repeatable)\n"
     "  --icmp-type T       with --protocol icmp\n"
     "  --icmp-code C       with --icmp-type\n"
     "  --log               log each connection the rule lets through\n" JSON_HELP},
    {"props", cmd_props,
     "cloche props HANDLE | props get HANDLE KEY | props set HANDLE KEY VALUE "
     "| props rm HANDLE KEY",
     "Show or change a container's properties", JSON_HELP},
    {"images", cmd_images,
     "cloche images [-q] | images rm REF... | images import FILE|- NAME[:TAG] | "
     "images export [-o FILE] NAME[:TAG]|REF | images commit [-c INSTRUCTION]... [--no-layer] "
     "HANDLE NAME[:TAG]",
     "List the images the daemon has, remove, import, export them, or commit a container",
     "  -q, --quiet            print names only\n"
     "  import: an OCI or docker-save archive (tar, possibly compressed) from FILE or\n"
     "          stdin, as cloche:///NAME:TAG; a progress bar on a terminal\n"
     "  export: the image as an OCI archive\n"
     "  -o, --output FILE      export into FILE (default: stdout, not a terminal)\n"
     "  commit: the container's writable layer on top of its image, as\n"
     "          cloche:///NAME:TAG\n"
     "  -c, --change INSTR     commit: a Dockerfile ENV, LABEL, EXPOSE, USER, WORKDIR,\n"
     "                         CMD or ENTRYPOINT line changing the config (repeatable)\n"
     "      --no-layer         commit: the config change only, no new layer\n"
     "  REF is a docker://... or oci://... reference, or a name such as\n"
     "  registry:5000/app:v1 or alpine:3 (docker://registry:5000/app#v1,\n"
     "  docker:///alpine#3).\n" JSON_HELP},
    {"build", cmd_build, "cloche build -t NAME[:TAG] [OPTIONS] DIR",
     "Build an image from a Dockerfile, step by step in containers, as cloche:///NAME:TAG",
     "  -t, --tag NAME[:TAG]    the image to make (required)\n"
     "  -f, --file FILE         the Dockerfile (default: DIR/Dockerfile)\n"
     "      --build-arg K=V     a value for an ARG (repeatable)\n"
     "      --no-cache          run every step, even unchanged ones\n"
     "  -q, --quiet             only the result (and RUN's output)\n"
     "  Instructions: FROM, RUN, COPY, ADD (local files and tar archives), ENV, ARG,\n"
     "  WORKDIR, USER, CMD, ENTRYPOINT, EXPOSE, LABEL. Each step is committed as\n"
     "  cloche:///build-cache:KEY; a later build reuses a step whose parent image,\n"
     "  instruction, build arguments and copied files are unchanged.\n"
     "  With --json: one JSON line per step and the result; output on stderr.\n" JSON_HELP},
    {"pull", cmd_pull, "cloche pull [OPTIONS] REF",
     "Pull an image into the daemon's store without a container",
     "  -u, --username USER     registry user\n"
     "      --password-stdin    read the registry password from stdin\n"
     "  A progress bar per layer when stdout is a terminal, a line per finished\n"
     "  layer otherwise; the image's digest last.\n" JSON_HELP},
    {NULL, NULL, NULL, NULL, NULL},
};

const Command *command_find(const char *name)
{
    for (const Command *c = cli_commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

void command_help(const Command *c)
{
    if (!c)
        return;
    printf("Usage: %s\n\n%s.\n\nOptions:\n%s  -h, --help            show this help\n", c->usage,
           c->summary, c->help);
}

static void main_help(void)
{
    printf("Usage: cloche [GLOBAL OPTIONS] COMMAND [ARGS...]\n\n"
           "The command-line client of cloched, the container server.\n\n"
           "Global options:\n"
           "  -H, --host HOST:PORT   the daemon's TCP address (default: $CLOCHE_HOST, else the\n"
           "                         Unix socket)\n"
           "  -s, --socket PATH      the daemon's Unix socket (default: $CLOCHE_SOCKET, else\n"
           "                         " CLI_DEFAULT_SOCKET ")\n"
           "      --token-file FILE  bearer token for a non-loopback TCP address (default:\n"
           "                         $CLOCHE_TOKEN_FILE)\n"
           "  -J, --json             print JSON (every command)\n"
           "  -h, --help             show this help\n"
           "  -v, --version          print the version\n\n"
           "Commands:\n");
    for (const Command *c = cli_commands; c->name; c++)
        printf("  %-10s %s\n", c->name, c->summary);
    printf("\nRun 'cloche COMMAND --help' for a command's options; man cloche for more.\n");
}

static int set_host(const char *hostport)
{
    free(cli_target.host);
    free(cli_target.port);
    cli_target.host = cli_target.port = NULL;
    const char *colon = strrchr(hostport, ':');
    if (hostport[0] == '[') { /* [v6]:port */
        const char *close = strchr(hostport, ']');
        if (!close || close[1] != ':' || !close[2])
            return cli_usage(NULL, "Invalid host '%s': expected HOST:PORT or [V6]:PORT", hostport);
        cli_target.host = strndup(hostport + 1, (size_t)(close - hostport - 1));
        cli_target.port = strdup(close + 2);
    } else {
        if (!colon || colon == hostport || !colon[1])
            return cli_usage(NULL, "Invalid host '%s': expected HOST:PORT", hostport);
        cli_target.host = strndup(hostport, (size_t)(colon - hostport));
        cli_target.port = strdup(colon + 1);
    }
    if (!cli_target.host || !cli_target.port)
        return cli_error(-ENOMEM, "Out of memory");
    free(cli_target.unix_path);
    cli_target.unix_path = NULL;
    return 0;
}

static int load_token(const char *path)
{
    _cleanup_free_ char *text = NULL;
    size_t len = 0;
    int r = read_file_at(AT_FDCWD, path, CLI_TOKEN_MAX, &text, &len);
    if (r < 0) {
        errno = -r;
        return cli_error(r, "Cannot read the token file %s: %m", path);
    }
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
        text[--len] = '\0';
    if (len == 0 || strpbrk(text, "\r\n"))
        return cli_error(-EINVAL, "The token file %s must hold one line", path);
    cli_target.token = TAKE_PTR(text);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'},
        {"socket", required_argument, NULL, 's'},
        {"token-file", required_argument, NULL, 'T'},
        {"json", no_argument, NULL, 'J'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'v'},
        {},
    };
    const char *host = getenv("CLOCHE_HOST"), *sock = getenv("CLOCHE_SOCKET"),
               *token_file = getenv("CLOCHE_TOKEN_FILE");
    bool sock_given = false;
    int opt, r;

    signal(SIGPIPE, SIG_IGN);
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "+H:s:Jhv", opts, NULL)) != -1) {
        switch (opt) {
        case 'H':
            host = optarg;
            break;
        case 's':
            sock = optarg;
            sock_given = true;
            break;
        case 'T':
            token_file = optarg;
            break;
        case 'J':
            cli_json = true;
            break;
        case 'h':
            main_help();
            return 0;
        case 'v':
            printf("cloche %s\n", CLOCHE_VERSION);
            return 0;
        default:
            if (optopt && optopt < 256)
                cli_usage(NULL, "Unknown option or missing argument: -%c", optopt);
            else
                cli_usage(NULL, "Unknown option or missing argument: %s", argv[optind - 1]);
            return CLI_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        main_help();
        return CLI_EXIT_USAGE;
    }

    const char *name = argv[optind];
    if (strcmp(name, "help") == 0) {
        if (optind + 1 < argc && command_find(argv[optind + 1])) {
            command_help(command_find(argv[optind + 1]));
            return 0;
        }
        main_help();
        return 0;
    }
    const Command *c = command_find(name);
    if (!c) {
        cli_usage(NULL, "Unknown command '%s'", name);
        return CLI_EXIT_USAGE;
    }

    if (host && *host && !sock_given) {
        if (set_host(host) < 0)
            return CLI_EXIT_USAGE;
    } else {
        cli_target.unix_path = strdup(sock && *sock ? sock : CLI_DEFAULT_SOCKET);
    }
    if (token_file && *token_file && load_token(token_file) < 0)
        return CLI_EXIT_ERROR;

    /* Each command parses its own options from its name on. */
    argc -= optind;
    argv += optind;
    optind = 0;
    cli_argc = argc;
    cli_argv = argv;
    r = c->run(argc, argv);
    fflush(stdout);
    if (r == -ECANCELED) /* --help */
        return 0;
    if (r == -ENOEXEC && c->run == cmd_run)
        return CLI_EXIT_NOT_FOUND;
    if (r < 0)
        return cli_usage_failed ? CLI_EXIT_USAGE
                                : (c->run == cmd_run || c->run == cmd_attach ? CLI_EXIT_RUN_FAILED
                                                                             : CLI_EXIT_ERROR);
    if (ferror(stdout))
        return CLI_EXIT_ERROR;
    return cli_exit_code;
}
