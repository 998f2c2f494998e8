/* Subnet pool parsing and sizing. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloche/netpool.h"

int netpool_parse(const char *cidr, Ipv4Net *ret)
{
    char addr[INET_ADDRSTRLEN];
    const char *slash = strchr(cidr, '/');
    if (!slash || (size_t)(slash - cidr) >= sizeof(addr))
        return -EINVAL;
    memcpy(addr, cidr, (size_t)(slash - cidr));
    addr[slash - cidr] = '\0';

    struct in_addr in;
    if (inet_pton(AF_INET, addr, &in) != 1)
        return -EINVAL;
    const char *p = slash + 1;
    if (*p < '0' || *p > '9')
        return -EINVAL;
    char *end;
    unsigned long prefix = strtoul(p, &end, 10);
    if (*end || prefix < 1 || prefix > 30 || (p[0] == '0' && p[1]))
        return -EINVAL;

    uint32_t network = ntohl(in.s_addr);
    uint32_t mask = (uint32_t)(0xffffffffu << (32 - prefix));
    if (network & ~mask)
        return -EINVAL;
    ret->network = network;
    ret->prefix = (unsigned)prefix;
    return 0;
}
