/* Private to the JSON module (json.c, json-output.c). */
#pragma once

#include <stddef.h>

/* Length of the well-formed UTF-8 sequence at s[0..n) (1 for ASCII), or 0 when it is
 * malformed: overlong forms, UTF-16 surrogates and code points above U+10FFFF are
 * malformed too, as in Go's unicode/utf8. */
size_t json_utf8_sequence_length(const unsigned char *s, size_t n);
