/* The subnet pool (--network-pool): an IPv4 CIDR carved into /30s, one per container
 * (gateway .1, container .2). This part parses and sizes it; allocation comes with
 * networking. */
#pragma once

#include <stdint.h>

typedef struct NetPool {
    uint32_t network; /* host byte order, masked */
    unsigned prefix;  /* 0..30 */
} NetPool;

/* Parse "a.b.c.d/n" (n in 1..30, host bits must be zero). -EINVAL otherwise. */
int netpool_parse(const char *cidr, NetPool *ret);
/* Number of /30 subnets in the pool. */
uint64_t netpool_capacity(const NetPool *pool);
