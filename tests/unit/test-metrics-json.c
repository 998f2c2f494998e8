/* BulkMetrics' direct writer: byte for byte what json_serialize writes for the
 * tree the Metrics route builds, over random values (0, UINT64_MAX and everything
 * between, with and without a network), and json_out_string / json_out_u64 against
 * json_serialize on awkward strings and numbers. */
#include "tap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/api/api-internal.h"
#include "cloche/json.h"

static uint64_t state = 88172645463325252ull;

static uint64_t next_random(void)
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    switch (state % 8) {
    case 0:
        return 0;
    case 1:
        return UINT64_MAX;
    case 2:
        return state % 1000;
    default:
        return state;
    }
}

/* What json_serialize writes, without its newline. */
static char *tree_text(json_object *v)
{
    size_t len;
    char *text = json_serialize(v, &len);
    if (text && len > 0)
        text[len - 1] = '\0';
    json_object_put(v);
    return text;
}

static char *direct_text(JsonOut *o)
{
    size_t len;
    char *text = json_out_finish(o, &len);
    if (text && len > 0)
        text[len - 1] = '\0';
    return text;
}

int main(void)
{
    int same = 0, runs = 2000;
    for (int i = 0; i < runs; i++) {
        ContainerMetrics m;
        uint64_t *words = (uint64_t *)&m;
        for (size_t k = 0; k < sizeof(m) / sizeof(uint64_t); k++)
            words[k] = next_random();
        m.has_network = i % 2;
        char *want = tree_text(api_metrics_to_json(&m));
        JsonOut o = {0};
        api_metrics_write(&o, &m);
        char *got = direct_text(&o);
        if (want && got && strcmp(want, got) == 0)
            same++;
        else if (same == i)
            printf("# first difference:\n# tree   %s\n# direct %s\n", want, got);
        free(want);
        free(got);
    }
    is_int(same, runs, "direct metrics text equals the tree's, %d random metrics", runs);

    const char *strings[] = {"",
                             "plain",
                             "quote\" backslash\\ slash/",
                             "tab\t nl\n cr\r",
                             "<script>&amp;</script>",
                             "\x01\x1f\x7f",
                             "caf\xc3\xa9",
                             "bad \xff utf-8",
                             "line sep \xe2\x80\xa8 para \xe2\x80\xa9"};
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
        char *want = tree_text(json_object_new_string(strings[i]));
        JsonOut o = {0};
        json_out_string(&o, strings[i]);
        char *got = direct_text(&o);
        ok(want && got && strcmp(want, got) == 0, "string %zu: %s", i, got ? got : "(null)");
        free(want);
        free(got);
    }
    const uint64_t numbers[] = {0, 1, 9, 10, 4294967296ull, UINT64_MAX - 1, UINT64_MAX};
    for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
        char *want = tree_text(json_new_u64(numbers[i]));
        JsonOut o = {0};
        json_out_u64(&o, numbers[i]);
        char *got = direct_text(&o);
        ok(want && got && strcmp(want, got) == 0, "u64 %s", got ? got : "(null)");
        free(want);
        free(got);
    }
    JsonOut empty = {0};
    size_t len = 9;
    char *text = json_out_finish(&empty, &len);
    ok(text && strcmp(text, "\n") == 0 && len == 1, "an empty JsonOut finishes as a newline");
    free(text);
    return tap_done();
}
