/* The HTTP face: listeners owned by the daemon, ordinary routes served through
 * libmicrohttpd, the four streaming process routes and StreamIn/StreamOut by
 * cloche's own handler. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cloche/garden.h"

#define API_DEFAULT_MAX_BODY (1u << 20) /* JSON request bodies */
#define API_MAX_HEADER_BYTES                                                                       \
    (64u << 10) /* request line + headers: room for bulk calls naming 1000 GUID handles */
#define API_DEFAULT_MAX_CONNECTIONS 4096

typedef struct ApiConfig {
    const char *socket_path; /* NULL or "" = no Unix socket */
    const char *bind_ip;     /* NULL = no TCP listener */
    uint16_t bind_port;
    const char *auth_token; /* bearer token for non-loopback TCP; NULL = none */
    bool insecure_no_auth;  /* serve non-loopback TCP without a token */
    size_t max_body;        /* 0 = API_DEFAULT_MAX_BODY */
    unsigned max_connections;
    unsigned threads; /* MHD worker threads; 0 = 8, or two per CPU beyond 4 */
    /* Listening sockets handed over by a service manager (LISTEN_FDS): when
     * given, they are the listeners and socket_path/bind_ip are not used. Taken
     * (closed by the server); at most API_MAX_LISTENERS. */
    const int *listen_fds;
    size_t n_listen_fds;
    /* --metrics-bind: a listener that serves only GET /metrics, with the same
     * token rule as bind_ip. NULL = none. */
    const char *metrics_ip;
    uint16_t metrics_port;
} ApiConfig;

#define API_MAX_LISTENERS 8

/* Split "IP:PORT" or "[IPv6]:PORT" (port 1..65535) into ret_ip (a numeric address,
 * checked) and *ret_port. -EINVAL when malformed. */
int api_parse_bind_address(const char *text, char *ret_ip, size_t ip_size, uint16_t *ret_port);

typedef struct ApiServer ApiServer;

/* The checks api_server_new() makes before binding, for an early start-up error:
 * a listener is given; non-loopback TCP has a token or insecure_no_auth. */
int api_config_check(const ApiConfig *cfg);

/* Validate cfg, bind the listeners and start serving threads. Refuses (-EPERM)
 * a non-loopback TCP address without a token unless insecure_no_auth. */
int api_server_new(const ApiConfig *cfg, Garden *garden, ApiServer **ret);
/* Accept connections until api_server_stop(). */
int api_server_run(ApiServer *s);
/* Async-signal-safe: ask api_server_run() to return. */
void api_server_stop(ApiServer *s);
/* Stop serving, close listeners, remove the Unix socket file. NULL-safe. */
void api_server_free(ApiServer *s);
