/* The cloche command's units: sizes, CPUs, signals, durations, tables. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"

#include "../../src/cli/cli.h"

static uint64_t size_of(const char *s, int *ret_r)
{
    uint64_t v = 0;
    *ret_r = parse_size(s, &v);
    return v;
}

int main(void)
{
    int r;
    is_u64(size_of("4096", &r), 4096, "bare bytes");
    is_u64(size_of("512m", &r), 512ull << 20, "512m");
    is_u64(size_of("512MiB", &r), 512ull << 20, "512MiB");
    is_u64(size_of("1g", &r), 1ull << 30, "1g");
    is_u64(size_of("1.5G", &r), 3ull << 29, "1.5G");
    is_u64(size_of("64k", &r), 64ull << 10, "64k");
    is_u64(size_of("2TB", &r), 2ull << 40, "2TB");
    is_u64(size_of("100b", &r), 100, "100b");
    size_of("", &r);
    ok(r < 0, "empty size refused");
    size_of("12x", &r);
    ok(r < 0, "unknown unit refused");
    size_of("1.5", &r);
    ok(r < 0, "a fraction of a byte refused");
    size_of("-1m", &r);
    ok(r < 0, "negative refused");
    size_of("99999999999999999999", &r);
    ok(r < 0, "overflow refused");
    size_of("16777216t", &r);
    ok(r == -ERANGE, "overflow after the unit refused");
    size_of("1mm", &r);
    ok(r < 0, "trailing garbage refused");

    uint64_t m = 0;
    ok(parse_cpus("1.5", &m) == 0 && m == 1500, "1.5 CPUs");
    ok(parse_cpus("0.01", &m) == 0 && m == 10, "0.01 CPUs");
    ok(parse_cpus("2", &m) == 0 && m == 2000, "2 CPUs");
    ok(parse_cpus("0.0001", &m) < 0, "finer than a millicpu refused");
    ok(parse_cpus("1025", &m) < 0, "more than 1024 CPUs refused");
    ok(parse_cpus("one", &m) < 0, "words refused");

    int sig = 0;
    ok(parse_signal("TERM", &sig) == 0 && sig == SIGTERM, "TERM");
    ok(parse_signal("sigkill", &sig) == 0 && sig == SIGKILL, "sigkill");
    ok(parse_signal("usr1", &sig) == 0 && sig == SIGUSR1, "usr1");
    ok(parse_signal("9", &sig) == 0 && sig == 9, "9");
    ok(parse_signal("64", &sig) == 0 && sig == 64, "64");
    ok(parse_signal("RTMIN+2", &sig) == 0 && sig == SIGRTMIN + 2, "RTMIN+2");
    ok(parse_signal("RTMAX", &sig) == 0 && sig == SIGRTMAX, "RTMAX");
    ok(parse_signal("0", &sig) < 0, "0 refused");
    ok(parse_signal("65", &sig) < 0, "65 refused");
    ok(parse_signal("BOGUS", &sig) < 0, "unknown name refused");
    ok(parse_signal("RTMIN+99", &sig) < 0, "RTMIN+99 refused");

    uint64_t v = 0;
    ok(parse_u64("128", 1000, &v) == 0 && v == 128, "u64");
    ok(parse_u64("1001", 1000, &v) == -ERANGE, "u64 over max");
    ok(parse_u64("12a", 1000, &v) < 0, "u64 garbage");
    ok(parse_u64("+1", 1000, &v) < 0, "u64 sign refused");

    char buf[64];
    is_str(fmt_bytes(0, buf, sizeof(buf)), "0 B", "0 B");
    is_str(fmt_bytes(1023, buf, sizeof(buf)), "1023 B", "1023 B");
    is_str(fmt_bytes(1024, buf, sizeof(buf)), "1 KiB", "1 KiB");
    is_str(fmt_bytes(1536, buf, sizeof(buf)), "1.5 KiB", "1.5 KiB");
    is_str(fmt_bytes(512ull << 20, buf, sizeof(buf)), "512 MiB", "512 MiB");
    is_str(fmt_bytes(3ull << 29, buf, sizeof(buf)), "1.5 GiB", "1.5 GiB");
    is_str(fmt_bytes(UINT64_MAX, buf, sizeof(buf)), "16 EiB", "the largest");

    is_str(fmt_duration_ns(0, buf, sizeof(buf)), "less than a second", "0 s");
    is_str(fmt_duration_ns(1000000000ull, buf, sizeof(buf)), "1 second", "1 s");
    is_str(fmt_duration_ns(150ull * 1000000000ull, buf, sizeof(buf)), "2 minutes", "150 s");
    is_str(fmt_duration_ns(7200ull * 1000000000ull, buf, sizeof(buf)), "2 hours", "2 h");
    is_str(fmt_duration_ns(86400ull * 3 * 1000000000ull, buf, sizeof(buf)), "3 days", "3 d");

    _cleanup_table_ Table *t = table_new(3, "A", "LONGER", "C");
    ok(t && table_add(t, "wide-cell", "x", "last") == 0, "table rows");
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    table_print(t, f);
    fclose(f);
    is_str(text, "A           LONGER   C\nwide-cell   x        last\n", "aligned columns");
    free(text);

    _cleanup_free_ char *esc = url_escape("a b/c+d%é");
    is_str(esc, "a%20b%2Fc%2Bd%25%C3%A9", "url escape");
    return tap_done();
}
