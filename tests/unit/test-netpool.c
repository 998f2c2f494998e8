#include "tap.h"

#include "cloche/netpool.h"

int main(void)
{
    Ipv4Net p;
    ok(netpool_parse("10.254.0.0/22", &p) == 0, "default pool parses");
    is_u64(((uint64_t)1 << (30 - p.prefix)), 256, "a /22 holds 256 /30s");
    ok(netpool_parse("10.1.0.0/24", &p) == 0, "/24 parses");
    is_u64(((uint64_t)1 << (30 - p.prefix)), 64, "a /24 holds 64 /30s");
    ok(netpool_parse("10.1.0.0/30", &p) == 0, "/30 parses");
    is_u64(((uint64_t)1 << (30 - p.prefix)), 1, "a /30 holds one");
    ok(netpool_parse("10.1.0.1/24", &p) < 0, "host bits set refused");
    ok(netpool_parse("10.1.0.0/31", &p) < 0, "/31 refused");
    ok(netpool_parse("10.1.0.0/0", &p) < 0, "/0 refused");
    ok(netpool_parse("10.1.0.0", &p) < 0, "missing prefix refused");
    ok(netpool_parse("10.1.0.0/24x", &p) < 0, "trailing junk refused");
    ok(netpool_parse("10.1.0.0/024", &p) < 0, "leading zero refused");
    ok(netpool_parse("300.1.0.0/24", &p) < 0, "bad octet refused");
    ok(netpool_parse("::1/64", &p) < 0, "IPv6 refused");
    return tap_done();
}
