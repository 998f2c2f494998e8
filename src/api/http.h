/* Private to src/api: the libmicrohttpd side of the server. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "api-internal.h"

struct MHD_Daemon;

typedef struct HttpServer {
    struct MHD_Daemon *mhd;
    const ApiConfig *cfg;
    Garden *garden;
    size_t max_body;
    unsigned max_connections;
    unsigned threads;
    bool metrics_only; /* the --metrics-bind listener: GET /metrics and nothing else */
    pthread_mutex_t workers_lock;
    pthread_cond_t workers_done;
    unsigned workers; /* slow-route threads running */
    bool stopping;
    bool started;
} HttpServer;

int http_server_start(HttpServer *hs);
/* Hand a connected socket to libmicrohttpd (which then owns and closes it). */
int http_server_add_connection(HttpServer *hs, int fd, const struct sockaddr *addr,
                               socklen_t addrlen);
void http_server_stop(HttpServer *hs);
