#include "tap.h"

#include "cloche/strmap.h"

int main(void)
{
    StringMap m = STRING_MAP_INIT;
    ok(strmap_set(&m, "b", "2") == 0, "set b");
    ok(strmap_set(&m, "a", "1") == 0, "set a");
    ok(strmap_set(&m, "c", "3") == 0, "set c");
    ok(strmap_set(&m, "b", "22") == 0, "overwrite b");
    is_int(m.n, 3, "three keys");
    is_str(m.keys[0], "a", "sorted first");
    is_str(m.keys[2], "c", "sorted last");
    is_str(strmap_get(&m, "b"), "22", "overwritten value");
    ok(strmap_get(&m, "zz") == NULL, "missing key");
    ok(strmap_remove(&m, "a"), "remove a");
    ok(!strmap_remove(&m, "a"), "remove a twice");
    StringMap copy = STRING_MAP_INIT;
    ok(strmap_copy(&m, &copy) == 0, "copy");
    is_int(copy.n, 2, "copy size");
    is_str(strmap_get(&copy, "c"), "3", "copy value");
    strmap_clear(&copy);
    strmap_clear(&m);
    is_int(m.n, 0, "cleared");
    return tap_done();
}
