/* libFuzzer: the JSON layer and every Garden request decoder, plus the encoders
 * and serializer on whatever decodes. Input: one request body. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cloche/json.h"
#include "cloche/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    json_object *o = NULL;
    ApiError e;
    if (json_parse_strict(buf, size, &o, &e) == 0) {
        size_t n;
        free(json_serialize(o, &n));
        ContainerSpec cs;
        if (spec_decode_container_spec(o, &cs, &e) == 0) {
            json_object *enc = spec_encode_container_spec(&cs);
            free(json_serialize(enc, &n));
            json_object_put(enc);
            container_spec_done(&cs);
        }
        ProcessSpec ps;
        if (spec_decode_process_spec(o, &ps, &e) == 0)
            process_spec_done(&ps);
        NetOutRule *rules;
        size_t nr;
        if (spec_decode_netout_rules(o, &rules, &nr, &e) == 0)
            netout_rules_free(rules, nr);
        NetInSpec ni;
        (void)spec_decode_netin(o, &ni, &e);
        Limits l;
        (void)spec_decode_limits(o, &l, &e);
        json_object_put(o);
    }
    free(buf);
    return 0;
}
