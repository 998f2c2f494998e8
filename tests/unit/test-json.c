/* Unit tests for the JSON layer: strict parsing, exact integers, escapes and UTF-8,
 * member lookup, typed getters and Go-style output. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cloche/json.h"
#include "tap.h"

/* Parses s (length len, or strlen when len is -1); NULL and a "# ..." line on failure. */
static json_object *parse_len(const char *s, ssize_t len)
{
    json_object *o = NULL;
    ApiError e = {0};
    int r = json_parse_strict(s, len < 0 ? strlen(s) : (size_t)len, &o, &e);
    if (r < 0)
        printf("# parse of '%s' failed: %s\n", s, e.message);
    return o;
}

static json_object *parse(const char *s)
{
    return parse_len(s, -1);
}

static void parse_fails_len(const char *s, size_t len, const char *message, const char *desc)
{
    json_object *o = (json_object *)0x1;
    ApiError e = {0};
    int r = json_parse_strict(s, len, &o, &e);
    is_int(r, -EINVAL, "%s: refused", desc);
    is_int(e.status, 400, "%s: 400", desc);
    is_str(e.message, message, "%s: message", desc);
    ok(o == (json_object *)0x1, "%s: *ret untouched", desc);
}

static void parse_fails(const char *s, const char *message, const char *desc)
{
    parse_fails_len(s, strlen(s), message, desc);
}

static void test_integers(void)
{
    static const struct {
        const char *text;
        uint64_t value;
    } u64s[] = {
        {"0", 0},
        {"9007199254740993", UINT64_C(9007199254740993)}, /* 2^53+1: lost through a double */
        {"9223372036854775807", INT64_MAX},
        {"9223372036854775808", UINT64_C(9223372036854775808)},
        {"18446744073709551615", UINT64_MAX},
        {"-0", 0},
    };
    for (size_t i = 0; i < ELEMENTSOF(u64s); i++) {
        _cleanup_json_ json_object *o = parse(u64s[i].text);
        uint64_t v = 1;
        ApiError e = {0};
        is_int(json_get_u64(o, "x", UINT64_MAX, &v, &e), 0, "u64 %s accepted", u64s[i].text);
        is_u64(v, u64s[i].value, "u64 %s exact", u64s[i].text);
    }

    parse_fails("18446744073709551616", "Number 18446744073709551616 at offset 0 is out of range",
                "UINT64_MAX+1");
    parse_fails("[1, 99999999999999999999999]",
                "Number 99999999999999999999999 at offset 4 is out of range", "huge in array");
    parse_fails("{\"a\":-9223372036854775809}",
                "Number -9223372036854775809 at offset 5 is out of range", "below INT64_MIN");
    parse_fails("123456789012345678901234567890123456789012345678901234567890",
                "Number 1234567890123456789012345678901234567890... at offset 0 is out of range",
                "long number quoted short");

    {
        _cleanup_json_ json_object *o = parse("-9223372036854775808");
        int64_t v = 0;
        ApiError e = {0};
        is_int(json_get_i64(o, "x", &v, &e), 0, "INT64_MIN accepted");
        ok(v == INT64_MIN, "INT64_MIN exact");
    }
    {
        _cleanup_json_ json_object *o = parse("9223372036854775807");
        int64_t v = 0;
        ApiError e = {0};
        is_int(json_get_i64(o, "x", &v, &e), 0, "INT64_MAX as i64");
        ok(v == INT64_MAX, "INT64_MAX exact");
    }
    {
        _cleanup_json_ json_object *o = parse("9223372036854775808");
        int64_t v = 7;
        ApiError e = {0};
        is_int(json_get_i64(o, "t", &v, &e), -EINVAL, "INT64_MAX+1 refused as i64");
        is_str(e.message,
               "Invalid value for 't': 9223372036854775808 is out of range "
               "(-9223372036854775808..9223372036854775807)",
               "i64 range message");
        is_int(v, 7, "i64 ret untouched");
    }
    {
        _cleanup_json_ json_object *o = parse("-1");
        uint64_t v = 7;
        ApiError e = {0};
        is_int(json_get_u64(o, "size", UINT64_MAX, &v, &e), -EINVAL, "-1 refused as u64");
        is_str(e.message, "Invalid value for 'size': -1 is out of range (0..18446744073709551615)",
               "negative u64 message");
        is_u64(v, 7, "u64 ret untouched");
    }
    {
        _cleanup_json_ json_object *o = parse("300");
        uint64_t v = 0;
        ApiError e = {0};
        is_int(json_get_u64(o, "mode", 255, &v, &e), -EINVAL, "300 refused for u8");
        is_str(e.message, "Invalid value for 'mode': 300 is out of range (0..255)", "max message");
        is_int(json_get_u64(o, "mode", 300, &v, &e), 0, "300 ok at max 300");
    }
    static const char *const fractions[] = {"1.0", "1e3", "-2.5E-3", "0.1"};
    for (size_t i = 0; i < ELEMENTSOF(fractions); i++) {
        _cleanup_json_ json_object *o = parse(fractions[i]);
        uint64_t u = 0;
        int64_t s = 0;
        ApiError e = {0};
        char want[256];
        ok(o != NULL, "%s parses as a number", fractions[i]);
        is_int(json_get_u64(o, "g", UINT64_MAX, &u, &e), -EINVAL, "%s refused as u64",
               fractions[i]);
        snprintf(want, sizeof(want),
                 "Invalid value for 'g': expected an integer, got a number with a fraction or "
                 "exponent (%s)",
                 fractions[i]);
        is_str(e.message, want, "%s message", fractions[i]);
        is_int(json_get_i64(o, "g", &s, &e), -EINVAL, "%s refused as i64", fractions[i]);
    }
}

static void string_is(const char *json, const char *want, size_t want_len, const char *desc)
{
    _cleanup_json_ json_object *o = parse(json);
    ok(o && json_object_get_string_len(o) == (int)want_len &&
           memcmp(json_object_get_string(o), want, want_len) == 0,
       "%s", desc);
}

static void test_strings(void)
{
    string_is("\"a\\n\\\"\\\\\\/\\t\\u00e9\"", "a\n\"\\/\t\xc3\xa9", 8, "simple escapes");
    string_is("\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4, "surrogate pair to 4-byte UTF-8");
    string_is("\"\\u20ac\"", "\xe2\x82\xac", 3, "\\u20ac");
    string_is("\"\xe2\x82\xac \xf0\x9f\x98\x80\"", "\xe2\x82\xac \xf0\x9f\x98\x80", 8,
              "raw UTF-8 kept");
    /* Go's decoder turns lone surrogates into U+FFFD; so does json-c */
    string_is("\"\\ud83d\"", "\xef\xbf\xbd", 3, "lone high surrogate -> U+FFFD");
    string_is("\"\\ude00x\"", "\xef\xbf\xbdx", 4, "lone low surrogate -> U+FFFD");
    string_is("\"\\ud83d\\u0041\"",
              "\xef\xbf\xbd"
              "A",
              4, "high surrogate then non-surrogate");

    {
        _cleanup_json_ json_object *o = parse("\"a\\u0000b\"");
        char *s = (char *)0x1;
        ApiError e = {0};
        ok(o != NULL, "\\u0000 parses");
        is_int(json_get_string(o, "name", 100, &s, &e), -EINVAL, "NUL refused by json_get_string");
        is_str(e.message, "Invalid value for 'name': contains a NUL character", "NUL message");
        ok(s == (char *)0x1, "string ret untouched");
    }
    parse_fails("{\"a\\u0000b\":1}", "Invalid JSON at offset 3: NUL character in an object key",
                "NUL in a key");
    {
        _cleanup_json_ json_object *o = parse("\"abcd\"");
        _cleanup_free_ char *s = NULL;
        ApiError e = {0};
        is_int(json_get_string(o, "k", 3, &s, &e), -EINVAL, "too long refused");
        is_str(e.message, "Invalid value for 'k': longer than 3 bytes", "too long message");
        is_int(json_get_string(o, "k", 4, &s, &e), 0, "at max accepted");
        is_str(s, "abcd", "copied");
    }

    parse_fails("\"\xff\"", "Invalid JSON at offset 1: invalid UTF-8 in a string", "byte 0xff");
    parse_fails("\"ab\xc0\xaf\"", "Invalid JSON at offset 3: invalid UTF-8 in a string",
                "overlong /");
    parse_fails("\"\xed\xa0\x80\"", "Invalid JSON at offset 1: invalid UTF-8 in a string",
                "encoded surrogate");
    parse_fails("\"\xf4\x90\x80\x80\"", "Invalid JSON at offset 1: invalid UTF-8 in a string",
                "above U+10FFFF");
    parse_fails("[\"\xe2\x82\"]", "Invalid JSON at offset 2: invalid UTF-8 in a string",
                "cut sequence");
    parse_fails("\"\x80\"", "Invalid JSON at offset 1: invalid UTF-8 in a string",
                "lone continuation byte");
    parse_fails("\"a\tb\"", "Invalid JSON at offset 2: control character in a string",
                "raw tab in a string");
    parse_fails("{\"a\nb\":1}", "Invalid JSON at offset 3: control character in a string",
                "raw newline in a key");
}

static void test_syntax(void)
{
    parse_fails("", "Request body is empty", "empty");
    parse_fails(" \r\n\t", "Request body is empty", "whitespace only");

    parse_fails("{}x", "Unexpected data after the JSON value at offset 2", "trailing byte");
    parse_fails("{} {}", "Unexpected data after the JSON value at offset 3", "two values");
    parse_fails("42 x", "Unexpected data after the JSON value at offset 3", "scalar then junk");
    parse_fails("\"a\"b", "Unexpected data after the JSON value at offset 3", "string then junk");
    parse_fails("[1]]", "Unexpected data after the JSON value at offset 3", "extra bracket");
    parse_fails_len("{}\0", 3, "Unexpected data after the JSON value at offset 2", "trailing NUL");

    static const char *const truncated[] = {"{",     "{\"a\":",  "{\"a\":1", "[1,2", "\"abc",
                                            "\"a\\", "tru",      "-",        "1.",   "[1e",
                                            "nul",   "{\"a\":[", "[fals"};
    for (size_t i = 0; i < ELEMENTSOF(truncated); i++)
        parse_fails(truncated[i], "Unexpected end of JSON input", truncated[i]);

    parse_fails("[1,]", "Invalid JSON at offset 3: unexpected character", "trailing comma");
    parse_fails("{'a':1}", "Invalid JSON at offset 2: invalid literal", "single quotes");
    parse_fails("[01]", "Invalid JSON at offset 1: invalid number", "leading zero");
    parse_fails("[-01]", "Invalid JSON at offset 1: invalid number", "negative leading zero");
    parse_fails("[1.]", "Invalid JSON at offset 1: invalid number", "bare dot");
    parse_fails("[.5]", "Invalid JSON at offset 1: unexpected character", "leading dot");
    parse_fails("[NaN]", "Invalid JSON at offset 1: invalid literal", "NaN");
    parse_fails("-Infinity", "Invalid JSON at offset 0: invalid number", "-Infinity");
    parse_fails("[True]", "Invalid JSON at offset 1: invalid literal", "True");
    parse_fails("[1 2]", "Invalid JSON at offset 3: array value separator ',' expected",
                "missing comma");

    {
        _cleanup_json_ json_object *o = parse("{\"a\":[1,{\"b\":null}]} \r\n\t");
        ok(o && json_object_is_type(o, json_type_object), "trailing whitespace accepted");
    }
    {
        _cleanup_json_ json_object *o = parse("{\"k\":\"v\"}\n");
        ok(o != NULL, "Go encoder's trailing newline accepted");
    }
    {
        _cleanup_json_ json_object *o = parse("42000000000\n");
        int64_t v = 0;
        ApiError e = {0};
        is_int(json_get_i64(o, "grace_time", &v, &e), 0, "bare integer body");
        ok(v == INT64_C(42000000000), "bare integer value");
    }
    {
        _cleanup_json_ json_object *o = parse("\"abc\"");
        is_str(json_object_get_string(o), "abc", "bare string body");
    }
    {
        _cleanup_json_ json_object *o = parse("true");
        bool b = false;
        ApiError e = {0};
        is_int(json_get_bool(o, "b", &b, &e), 0, "bare true");
        ok(b, "true value");
    }
    {
        json_object *o = (json_object *)0x1;
        ApiError e = {0};
        is_int(json_parse_strict("null", 4, &o, &e), 0, "null body accepted");
        ok(o == NULL, "null body gives NULL");
    }

    /* depth: 32 nested arrays are fine, 33 are not */
    char deep[80];
    memset(deep, '[', 32);
    memset(deep + 32, ']', 32);
    deep[64] = '\0';
    {
        _cleanup_json_ json_object *o = parse(deep);
        ok(o != NULL, "depth 32 accepted");
    }
    memset(deep, '[', 33);
    memset(deep + 33, ']', 33);
    deep[66] = '\0';
    parse_fails(deep, "Invalid JSON at offset 32: nesting too deep", "depth 33 refused");
}

static void test_member(void)
{
    _cleanup_json_ json_object *o =
        parse("{\"Handle\":\"a\",\"grace_time\":1,\"GRACE_TIME\":2,\"LIMITS\":3,\"Limits\":4,"
              "\"gone\":null,\"env\":null,\"ENV\":5}");
    is_str(json_object_get_string(json_member(o, "handle")), "a", "case-insensitive match");
    is_int(json_object_get_int(json_member(o, "grace_time")), 1, "exact match wins (first)");
    is_int(json_object_get_int(json_member(o, "GRACE_TIME")), 2, "exact match wins (second)");
    is_int(json_object_get_int(json_member(o, "limits")), 4, "last folded match wins");
    ok(json_member(o, "gone") == NULL, "null is absent");
    is_int(json_object_get_int(json_member(o, "env")), 5, "exact null falls back to folded");
    ok(json_member(o, "missing") == NULL, "missing is absent");
    ok(json_member(NULL, "x") == NULL, "NULL object");
    _cleanup_json_ json_object *a = parse("[1]");
    ok(json_member(a, "x") == NULL, "member of an array");
}

static void test_types(void)
{
    _cleanup_json_ json_object *o =
        parse("{\"s\":\"x\",\"n\":1,\"d\":1.5,\"b\":true,\"o\":{},\"a\":[1,2,3]}");
    is_str(json_type_word(json_member(o, "s")), "string", "word string");
    is_str(json_type_word(json_member(o, "n")), "number", "word int");
    is_str(json_type_word(json_member(o, "d")), "number", "word double");
    is_str(json_type_word(json_member(o, "b")), "bool", "word bool");
    is_str(json_type_word(json_member(o, "o")), "object", "word object");
    is_str(json_type_word(json_member(o, "a")), "array", "word array");
    is_str(json_type_word(NULL), "null", "word null");

    ApiError e = {0};
    uint64_t u;
    bool b;
    char *s = NULL;
    is_int(json_get_u64(json_member(o, "s"), "grace_time", UINT64_MAX, &u, &e), -EINVAL,
           "string for integer");
    is_str(e.message, "Invalid value for 'grace_time': expected an integer, got a string",
           "string for integer message");
    is_int(json_get_u64(json_member(o, "b"), "x", UINT64_MAX, &u, &e), -EINVAL, "bool for int");
    is_str(e.message, "Invalid value for 'x': expected an integer, got a bool", "bool message");
    is_int(json_get_u64(NULL, "x", UINT64_MAX, &u, &e), -EINVAL, "null for int");
    is_str(e.message, "Invalid value for 'x': expected an integer, got null", "null message");
    is_int(json_get_bool(json_member(o, "n"), "privileged", &b, &e), -EINVAL, "number for bool");
    is_str(e.message, "Invalid value for 'privileged': expected a bool, got a number",
           "number for bool message");
    is_int(json_get_string(json_member(o, "o"), "path", 10, &s, &e), -EINVAL, "object for string");
    is_str(e.message, "Invalid value for 'path': expected a string, got an object",
           "object for string message");
    is_int(json_expect_object(json_member(o, "a"), "limits", &e), -EINVAL, "array for object");
    is_str(e.message, "Invalid value for 'limits': expected an object, got an array",
           "array for object message");
    is_int(json_expect_object(json_member(o, "a"), NULL, &e), -EINVAL, "array body");
    is_str(e.message, "Invalid request body: expected an object, got an array",
           "array body message");
    is_int(json_expect_object(o, "x", &e), 0, "object is an object");
    is_int(json_expect_array(json_member(o, "a"), "bind_mounts", 3, &e), 0, "array at max");
    is_int(json_expect_array(json_member(o, "a"), "bind_mounts", 2, &e), -EINVAL, "array cap");
    is_str(e.message, "Too many bind_mounts: 3 (at most 2)", "array cap message");
    is_int(json_expect_array(json_member(o, "o"), "env", 2, &e), -EINVAL, "object for array");
    is_str(e.message, "Invalid value for 'env': expected an array, got an object",
           "object for array message");
}

static void serialized_is(json_object *o, const char *want, const char *desc)
{
    size_t len = 0;
    _cleanup_free_ char *out = json_serialize(o, &len);
    is_str(out, want, "%s", desc);
    is_int(len, strlen(want), "%s: length", desc);
}

static void test_serialize(void)
{
    _cleanup_json_ json_object *o = json_object_new_object();
    json_object_object_add(o, "html", json_object_new_string("<a href=\"/x\">&</a>"));
    json_object_object_add(o, "ctl", json_object_new_string("\x01\b\f\n\r\t\\\x7f"));
    json_object_object_add(o, "uni",
                           json_object_new_string("\xc3\xa9\xe2\x80\xa8\xe2\x80\xa9"
                                                  "\xf0\x9f\x98\x80"));
    json_object_object_add(o, "bad",
                           json_object_new_string("a\xff"
                                                  "b\xed\xa0\x80"));
    json_object_object_add(o, "max", json_new_u64(UINT64_MAX));
    json_object_object_add(o, "min", json_object_new_int64(INT64_MIN));
    json_object_object_add(o, "zero", json_new_u64(0));
    json_object_object_add(o, "k<\"", json_object_new_boolean(false));
    json_object_object_add(o, "nul", NULL);
    json_object_object_add(o, "arr", json_object_new_array());
    json_object_object_add(o, "obj", json_object_new_object());
    serialized_is(o,
                  "{\"html\":\"\\u003ca href=\\\"/x\\\"\\u003e\\u0026\\u003c/a\\u003e\","
                  "\"ctl\":\"\\u0001\\b\\f\\n\\r\\t\\\\\x7f\","
                  "\"uni\":\"\xc3\xa9\\u2028\\u2029\xf0\x9f\x98\x80\","
                  "\"bad\":\"a\\ufffdb\\ufffd\\ufffd\\ufffd\","
                  "\"max\":18446744073709551615,\"min\":-9223372036854775808,\"zero\":0,"
                  "\"k\\u003c\\\"\":false,\"nul\":null,\"arr\":[],\"obj\":{}}\n",
                  "Go-style escaping");

    const char *doc = "{\"a\":[1,-2,18446744073709551615,true,false,null,\"x/y\"],\"b\":{}}";
    _cleanup_json_ json_object *p = parse(doc);
    char want[256];
    snprintf(want, sizeof(want), "%s\n", doc);
    serialized_is(p, want, "parse/serialize round trip, no \\/");

    _cleanup_json_ json_object *d =
        parse("[1.5,1e21,1e-7,0.000001,1e20,3.0,-0.25,123456789.125,5e-324,1.8464407370955162e20,"
              "-0.0,0.0001234]");
    serialized_is(d,
                  "[1.5,1e+21,1e-7,0.000001,100000000000000000000,3,-0.25,123456789.125,5e-324,"
                  "184644073709551600000,-0,0.0001234]\n",
                  "floats formatted like Go");

    _cleanup_json_ json_object *u = json_new_u64(UINT64_C(9007199254740993));
    serialized_is(u, "9007199254740993\n", "bare 2^53+1");
    serialized_is(NULL, "null\n", "NULL is null");
}

/* The same checks below garden, reporting a neutral Failure. */
static void test_failure_face(void)
{
    Failure f = {0};
    json_object *o = NULL;
    is_int(json_parse_value("{\"a\":1} x", 9, &o, &f), -EINVAL, "value: trailing data refused");
    ok(f.cause == FAILURE_INPUT &&
           strcmp(f.message, "Unexpected data after the JSON value at offset 8") == 0,
       "value: as input, with json_parse_strict's message (%s)", f.message);
    is_int(json_parse_value("{\"size\":300}", 12, &o, &f), 0, "value: a valid document parses");
    uint64_t u = 0;
    is_int(json_read_u64(json_member(o, "size"), "size", 255, &u, &f), -EINVAL,
           "u64: out of range refused");
    ok(strstr(f.message, "300 is out of range (0..255)") != NULL, "u64: says why (%s)", f.message);
    is_int(json_read_u64(json_member(o, "size"), "size", 1000, &u, &f), 0, "u64: in range read");
    is_int((int)u, 300, "u64: the value");
    json_object_put(o);
}

int main(void)
{
    test_failure_face();
    test_integers();
    test_strings();
    test_syntax();
    test_member();
    test_types();
    test_serialize();
    return tap_done();
}
