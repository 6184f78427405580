/* test_json_schema.c - JSON Schema -> GBNF (core/llm/json_schema.h): for many schemas, the
 * grammar accepts valid instances and refuses invalid ones, fed byte by byte through the
 * grammar engine; llama.cpp's own conversion cases (tests/test-grammar-integration.cpp,
 * translated: the same schemas, the same passing and failing strings) as a second oracle;
 * refused keywords name themselves and their JSON pointer; every integer range over -320..320
 * for bounds around digit boundaries; a property test: random schemas from a small generator
 * (types and type lists, bounds, lengths, dates, patterns, enums, objects with required and
 * additional properties, arrays, anyOf, disjoint oneOf, allOf, $ref), random walks of their
 * grammars (random allowed bytes), every finished walk parses as JSON and validates against the
 * schema by a small validator written here (patterns through POSIX regexec). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/llm/grammar.h"
#include "core/llm/json_schema.h"
#include "tests/mx_test.h"

/* The grammar for schema (the test fails when the conversion does). Caller frees. */
static char *convert_ok(const char *schema) {
    char *g = NULL;
    struct mx_err e = {0};
    int rc = mx_json_schema_to_gbnf(schema, strlen(schema), &g, &e);
    if (rc != 0)
        fail_msg("conversion failed (%d): %s\n--- schema:\n%s", rc, e.msg, schema);
    return g;
}

/* 1 when text is a complete sentence of grammar gbnf, fed one byte at a time. */
static int grammar_takes(const char *gbnf, const char *text) {
    struct mx_grammar *g = NULL;
    struct mx_err e = {0};
    if (mx_grammar_parse(gbnf, strlen(gbnf), "schema", &g, &e) != 0)
        fail_msg("grammar does not parse: %s\n%s", e.msg, gbnf);
    int ok = 1;
    for (size_t i = 0; text[i] && ok; i++)
        ok = mx_grammar_accept(g, text + i, 1) == 0;
    ok = ok && mx_grammar_complete(g);
    mx_grammar_free(g);
    return ok;
}

/* A schema and strings its grammar must take (good) and refuse (bad); NULL-terminated lists. */
struct cas {
    const char *name, *schema;
    const char *good[12], *bad[12];
};

static void run_cases(const struct cas *cs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char *g = convert_ok(cs[i].schema);
        for (size_t k = 0; k < 12 && cs[i].good[k]; k++)
            if (!grammar_takes(g, cs[i].good[k]))
                fail_msg("%s: refused valid '%s'\n--- grammar:\n%s", cs[i].name, cs[i].good[k], g);
        for (size_t k = 0; k < 12 && cs[i].bad[k]; k++)
            if (grammar_takes(g, cs[i].bad[k]))
                fail_msg("%s: took invalid '%s'\n--- grammar:\n%s", cs[i].name, cs[i].bad[k], g);
        free(g);
    }
}

/* Schemas written for mixel: every supported keyword, valid and invalid instances. */
static const struct cas own_cases[] = {
    {"primitives", "{\"type\": \"null\"}", {"null", "null "}, {"nul", "\"null\"", "0"}},
    {"type list", "{\"type\": [\"integer\", \"boolean\", \"null\"]}", {"12", "-3", "true", "null"},
     {"1.5", "\"x\"", "[]"}},
    {"nested object",
     "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":5},"
     "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"b\"]},\"maxItems\":2},"
     "\"inner\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"boolean\"}},"
     "\"required\":[\"x\"]}},\"required\":[\"name\",\"inner\"]}",
     {"{\"name\":\"abc\",\"inner\":{\"x\":true}}",
      "{ \"name\": \"\", \"inner\": {\"x\": false}, \"tags\": [\"a\", \"b\"] }",
      "{\n  \"name\": \"é€😀\",\n  \"inner\": {\"x\": true}\n}"},
     {"{\"name\":\"abcdef\",\"inner\":{\"x\":true}}", "{\"inner\":{\"x\":true}}",
      "{\"name\":\"a\",\"inner\":{\"x\":true},\"tags\":[\"a\",\"b\",\"a\"]}",
      "{\"name\":\"a\",\"inner\":{\"x\":true},\"tags\":[\"c\"]}",
      "{\"name\":\"a\",\"tags\":[\"a\"],\"inner\":{\"x\":true}}",
      "{\"name\":\"a\",\"inner\":{}}"}},
    {"whitespace is bounded", "{\"type\":\"array\",\"items\":{\"type\":\"integer\"}}",
     {"[1, 2]", "[\n  1,\n  2\n]", "[ 1 ]"},
     {"[1,                                      2]", "[\n\n\n1]", "[1 ,2]x"}},
    {"strings: escapes and lengths", "{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}",
     {"\"ab\"", "\"a\\nb\"", "\"\\u00e9\\\"x\"", "\"€€\""},
     {"\"a\"", "\"abcd\"", "\"a\nb\"", "\"\\ud83d\\ude00\"", "\"\\x\"", "\"\\u12\""}},
    {"formats",
     "{\"type\":\"array\",\"prefixItems\":[{\"type\":\"string\",\"format\":\"date\"},"
     "{\"type\":\"string\",\"format\":\"time\"},{\"type\":\"string\",\"format\":\"date-time\"},"
     "{\"type\":\"string\",\"format\":\"uuid\"}]}",
     {"[\"2024-02-29\",\"23:59:59Z\",\"2000-01-31T00:00:00.123+05:30\","
      "\"123e4567-e89b-12d3-a456-426614174000\"]",
      "[\"1900-02-28\",\"00:00:00-01:00\",\"2023-12-31T12:00:00Z\","
      "\"ABCDEF01-2345-6789-abcd-ef0123456789\"]"},
     {"[\"2023-02-29\",\"23:59:59Z\",\"2000-01-31T00:00:00Z\","
      "\"123e4567-e89b-12d3-a456-426614174000\"]",
      "[\"1900-02-29\",\"23:59:59Z\",\"2000-01-31T00:00:00Z\","
      "\"123e4567-e89b-12d3-a456-426614174000\"]",
      "[\"2024-04-31\",\"23:59:59Z\",\"2000-01-31T00:00:00Z\","
      "\"123e4567-e89b-12d3-a456-426614174000\"]",
      "[\"2024-01-01\",\"24:00:00Z\",\"2000-01-31T00:00:00Z\","
      "\"123e4567-e89b-12d3-a456-426614174000\"]",
      "[\"2024-01-01\",\"12:00:00\",\"2000-01-31T00:00:00Z\","
      "\"123e4567-e89b-12d3-a456-426614174000\"]",
      "[\"0000-01-01\",\"12:00:00Z\",\"2000-01-31T00:00:00Z\","
      "\"123e4567-e89b-12d3-a456-426614174000\"]",
      "[\"2024-01-01\",\"12:00:00Z\",\"2000-01-31T00:00:00Z\",\"123e4567\"]"}},
    {"integer bounds", "{\"type\":\"integer\",\"minimum\":-15,\"maximum\":234}",
     {"-15", "-9", "0", "7", "99", "100", "199", "234"},
     {"-16", "-0", "235", "240", "300", "1000", "007", "1.0"}},
    {"integer exclusive", "{\"type\":\"integer\",\"exclusiveMinimum\":9,\"exclusiveMaximum\":1001}",
     {"10", "11", "99", "999", "1000"}, {"9", "1001", "5", "0", "-10"}},
    {"integer one side", "{\"type\":\"integer\",\"minimum\":37}",
     {"37", "38", "99", "100", "123456789"}, {"36", "0", "-40", "3", "037"}},
    {"integer below", "{\"type\":\"integer\",\"maximum\":-7}", {"-7", "-8", "-100", "-1234"},
     {"-6", "0", "7", "-0"}},
    {"number bounds", "{\"type\":\"number\",\"minimum\":-2,\"maximum\":3}",
     {"-2", "-1.5", "-0.25", "0", "0.5", "2.999", "3"},
     {"-2.5", "3.5", "4", "-3", "1e2", "3.0001"}},
    {"number exclusive zero", "{\"type\":\"number\",\"exclusiveMinimum\":0}",
     {"0.5", "0.001", "1", "12.50", "1000000"}, {"0", "0.0", "0.000", "-0.5", "-1"}},
    {"number exclusive max", "{\"type\":\"number\",\"exclusiveMaximum\":-2}",
     {"-2.5", "-3", "-100.25"}, {"-2", "-2.0", "-1.5", "0"}},
    {"enum filtered by type", "{\"type\":\"string\",\"enum\":[\"x\",1,\"y\\\"z\",null]}",
     {"\"x\"", "\"y\\\"z\""}, {"1", "null", "\"y\""}},
    {"const object", "{\"const\":{\"a\":[1,2.5,\"é\"],\"b\":null}}",
     {"{\"a\":[1,2.5,\"é\"],\"b\":null}"}, {"{\"a\":[1,2.5,\"é\"]}", "{}"}},
    {"anyOf with sibling keywords",
     "{\"type\":\"object\",\"required\":[\"kind\"],\"anyOf\":["
     "{\"properties\":{\"kind\":{\"const\":\"dog\"},\"barks\":{\"type\":\"boolean\"}}},"
     "{\"properties\":{\"kind\":{\"const\":\"cat\"},\"lives\":{\"type\":\"integer\","
     "\"minimum\":0,\"maximum\":9}}}]}",
     {"{\"kind\":\"dog\",\"barks\":true}", "{\"kind\":\"cat\",\"lives\":9}", "{\"kind\":\"cat\"}"},
     {"{\"kind\":\"dog\",\"lives\":9}", "{\"kind\":\"cat\",\"lives\":10}", "{}"}},
    {"allOf merged",
     "{\"allOf\":[{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},"
     "\"required\":[\"a\"]},{\"properties\":{\"b\":{\"type\":\"string\"}}},"
     "{\"$ref\":\"#/$defs/c\"}],\"$defs\":{\"c\":{\"properties\":{\"c\":{\"type\":\"null\"}},"
     "\"required\":[\"c\"]}}}",
     {"{\"a\":1,\"c\":null}", "{\"a\":1,\"c\":null,\"b\":\"x\"}"},
     {"{\"a\":1}", "{\"c\":null}", "{\"a\":\"1\",\"c\":null}"}},
    {"recursive $ref",
     "{\"$ref\":\"#/definitions/node\",\"definitions\":{\"node\":{\"type\":\"object\","
     "\"properties\":{\"v\":{\"type\":\"integer\"},\"kids\":{\"type\":\"array\",\"items\":"
     "{\"$ref\":\"#/definitions/node\"}}},\"required\":[\"v\"],\"additionalProperties\":false}}}",
     {"{\"v\":1}", "{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3,\"kids\":[{\"v\":4}]}]}"},
     {"{\"v\":1,\"kids\":[{}]}", "{\"v\":1,\"x\":2}"}},
    {"additionalProperties schema",
     "{\"type\":\"object\",\"properties\":{\"ab\":{\"type\":\"integer\"}},"
     "\"additionalProperties\":{\"type\":\"boolean\"}}",
     {"{\"ab\":1}", "{\"a\":true}", "{\"abc\":false}", "{\"ab\":1,\"b\":true,\"x\":false}", "{}"},
     {"{\"ab\":true}", "{\"a\":1}", "{\"ab\":1,\"ab\":true}", "{\"x\":true,\"ab\":1}"}},
    {"required but not declared", "{\"type\":\"object\",\"required\":[\"id\"]}",
     {"{\"id\":{}}", "{\"id\":{\"x\":[1]}}"}, {"{}", "{\"x\":1}"}},
    {"odd property names",
     "{\"type\":\"object\",\"properties\":{\"\":{\"type\":\"integer\"},\"root\":"
     "{\"type\":\"null\"},\"a b\\\"c\":{\"const\":1},\"space\":{\"type\":\"boolean\"}},"
     "\"required\":[\"\",\"root\",\"a b\\\"c\",\"space\"]}",
     {"{\"\":1,\"root\":null,\"a b\\\"c\":1,\"space\":true}"},
     {"{\"\":1,\"root\":null,\"a b\\\"c\":1}", "{\"\":null,\"root\":null,\"a b\\\"c\":1,"
      "\"space\":true}"}},
    {"tuple and rest",
     "{\"type\":\"array\",\"prefixItems\":[{\"type\":\"string\"},{\"type\":\"integer\"}],"
     "\"items\":{\"type\":\"boolean\"},\"minItems\":3,\"maxItems\":4}",
     {"[\"a\",1,true]", "[\"a\",1,true,false]"},
     {"[\"a\",1]", "[\"a\",1,true,false,true]", "[1,\"a\",true]"}},
    {"array without items", "{\"type\":\"array\",\"minItems\":1,\"maxItems\":2}",
     {"[1]", "[{},\"x\"]"}, {"[]", "[1,2,3]"}},
    {"pattern anchored", "{\"type\":\"string\",\"pattern\":\"^[A-Z]{2}-\\\\d{3,4}(x|yz)?$\"}",
     {"\"AB-123\"", "\"ZZ-0000yz\"", "\"QQ-999x\""},
     {"\"ab-123\"", "\"AB-12\"", "\"AB-12345\"", "\"AB-123y\""}},
    {"pattern search", "{\"type\":\"string\",\"pattern\":\"ab+c\"}",
     {"\"abc\"", "\"xxabbbcyy\""}, {"\"ac\"", "\"abx\""}},
    {"pattern JSON escapes", "{\"type\":\"string\",\"pattern\":\"^[\\\"\\\\\\\\a]\\\\n.\\\\s\\\\w+$\"}",
     {"\"\\\"\\n\\\\ x\"", "\"a\\nq\\tb_1\"", "\"\\\\\\nz\\n9\""},
     {"\"\"\"", "\"a\nq b\"", "\"b\\nq b\""}},
    {"pattern negated classes", "{\"type\":\"string\",\"pattern\":\"^[^a-c]\\\\D\\\\W\\\\S$\"}",
     {"\"d!!x\"", "\"éa ?\""}, {"\"a!!x\"", "\"d1!x\"", "\"d!a x\"", "\"d!! \""}},
};

/* llama.cpp's tests/test-grammar-integration.cpp (test_json_schema), translated: the same schemas
 * and strings. "required props" without its uniqueItems (refused here, see test_refused). */
static const struct cas llama_cases[] = {
    {"empty schema (object)", "{}", {"{}", "{\"foo\": \"bar\"}"},
     {"", "[]", "null", "\"\"", "true"}},
    {"exotic formats (list)",
     "{\"items\": [{ \"format\": \"date\" }, { \"format\": \"uuid\" }, { \"format\": \"time\" },"
     " { \"format\": \"date-time\" }]}",
     {"[\"2012-04-23\", \"12345678-1234-1234-1234-1234567890ab\", \"18:25:43.511Z\", "
      "\"2012-04-23T18:25:43.511Z\"]"},
     {"[\"foo\", \"bar\"]", "[\"12345678-1234-1234-1234-1234567890ab\"]"}},
    {"string", "{\"type\": \"string\"}", {"\"foo\"", "\"bar\"", "\"\""},
     {"{}", "\"foo\": \"bar\""}},
    {"string w/ min length 1", "{\"type\": \"string\", \"minLength\": 1}", {"\"foo\"", "\"bar\""},
     {"\"\"", "{}", "\"foo\": \"bar\""}},
    {"string w/ min length 3", "{\"type\": \"string\", \"minLength\": 3}",
     {"\"foo\"", "\"bar\"", "\"foobar\""}, {"\"\"", "\"f\"", "\"fo\""}},
    {"string w/ max length", "{\"type\": \"string\", \"maxLength\": 3}",
     {"\"foo\"", "\"bar\"", "\"\"", "\"f\"", "\"fo\""}, {"\"foobar\""}},
    {"string w/ min & max length", "{\"type\": \"string\", \"minLength\": 1, \"maxLength\": 4}",
     {"\"foo\"", "\"bar\"", "\"f\"", "\"barf\""}, {"\"\"", "\"barfo\"", "\"foobar\""}},
    {"boolean", "{\"type\": \"boolean\"}", {"true", "false"},
     {"\"\"", "\"true\"", "True", "FALSE"}},
    {"integer", "{\"type\": \"integer\"}", {"0", "12345", "1234567890123456"},
     {"", "01", "007", "12345678901234567  "}},
    {"string const", "{\"const\": \"foo\"}", {"\"foo\""}, {"foo", "\"bar\""}},
    {"non-string const", "{\"const\": true}", {"true"}, {"", "foo", "\"true\""}},
    {"non-string enum", "{\"enum\": [\"red\", \"amber\", \"green\", null, 42, [\"foo\"]]}",
     {"\"red\"", "null", "42", "[\"foo\"]"}, {"", "420", "true", "foo"}},
    {"simple pattern", "{\"pattern\": \"^[a-zA-Z0-9_-]*$\"}", {"\"\"", "\"He_llo-12\""},
     {"\"!\"", "\"Hello World\""}},
    {"pattern with escapes",
     "{\"pattern\": \"^a\\\\^\\\\$\\\\.\\\\[\\\\]\\\\(\\\\)\\\\|\\\\{\\\\}\\\\*\\\\+\\\\?b$\"}",
     {"\"a^$.[]()|{}*+?b\""}, {"\"ab\""}},
    {"array or null", "{\"type\": [\"array\", \"null\"], \"items\": { \"type\": \"string\" }}",
     {"null", "[]", "[\"123\"]", "[\"foo\", \"bar\"]"},
     {"", "[123]", "\"foo\"", "[\"foo\", 42]"}},
    {"min+max items",
     "{\"items\": {\"type\": [\"number\", \"integer\"]}, \"minItems\": 3, \"maxItems\": 5}",
     {"[1, 2, 3]", "[1, 2, 3, 4]", "[1, 2, 3, 4, 5]"}, {"[1, 2]", "[1, 2, 3, 4, 5, 6]", "1"}},
    {"object properties",
     "{\"type\": \"object\", \"properties\": {\"number\": { \"type\": \"number\" }, "
     "\"street_name\": { \"type\": \"string\" }, \"street_type\": { \"enum\": [\"Street\", "
     "\"Avenue\", \"Boulevard\"] }}}",
     {"{ \"number\": 1600, \"street_name\": \"Pennsylvania\", \"street_type\":\"Avenue\"}",
      "{ \"street_name\": \"Pennsylvania\" }",
      "{ \"number\": 1600, \"street_name\": \"Pennsylvania\" }", "{}",
      "{ \"number\": 1600, \"street_name\": \"Pennsylvania\", \"street_type\": \"Avenue\" }"},
     {"{ \"number\": \"1600\", \"street_name\": \"Pennsylvania\", \"street_type\":\"Avenue\"}",
      "{ \"street_name\": \"Pennsylvania\", \"number\": 1600 }",
      "{ \"number\": 1600, \"street_name\": \"Pennsylvania\", \"street_type\":\"Avenue\", "
      "\"direction\":\"NW\"}"}},
    {"additional properties can't override other properties",
     "{\"properties\": {\"a\": {\"type\": \"integer\"}, \"b\": {\"type\": \"integer\"}}, "
     "\"additionalProperties\": true}",
     {"{\"a\": 42}", "{\"c\": \"\"}", "{\"a\": 42, \"c\": \"\"}", "{\"a_\": \"\"}"},
     {"", "{\"a\": \"\"}", "{\"a\": \"\", \"b\": \"\"}"}},
    {"object properties, additionalProperties: true",
     "{\"type\": \"object\", \"properties\": {\"number\": { \"type\": \"number\" }, "
     "\"street_name\": { \"type\": \"string\" }, \"street_type\": { \"enum\": [\"Street\", "
     "\"Avenue\", \"Boulevard\"] }}, \"additionalProperties\": true}",
     {"{}", "{\"number\":1600,\"street_name\":\"Pennsylvania\",\"street_type\":\"Avenue\"}",
      "{ \"street_name\": \"Pennsylvania\" }",
      "{ \"number\": 1600, \"street_name\": \"Pennsylvania\" }",
      "{ \"number\": 1600, \"street_name\": \"Pennsylvania\", \"street_type\":\"Avenue\", "
      "\"direction\":\"NW\"}"},
     {"{ \"number\": \"1600\", \"street_name\": \"Pennsylvania\", \"street_type\":\"Avenue\"}",
      "{ \"street_name\": \"Pennsylvania\", \"number\": 1600, \"street_type\":\"Avenue\"}"}},
    {"additionalProperties: false",
     "{\"type\": \"object\", \"properties\": {\"number\": { \"type\": \"number\" }, "
     "\"street_name\": { \"type\": \"string\" }, \"street_type\": { \"enum\": [\"Street\", "
     "\"Avenue\", \"Boulevard\"] }}, \"additionalProperties\": false}",
     {"{ \"street_name\": \"Pennsylvania\" }", "{ \"number\": 1600, \"street_type\":\"Avenue\"}",
      "{ \"number\": 1600, \"street_name\": \"Pennsylvania\" }",
      "{ \"number\": 1600, \"street_name\": \"Pennsylvania\", \"street_type\":\"Avenue\"}",
      "{ \"number\": 1600, \"street_name\": \"Pennsylvania\", \"street_type\": \"Avenue\" }"},
     {"{ \"street_type\": \"Avenue\", \"number\": 1600 }",
      "{ \"number\": 1600, \"street_name\": \"Pennsylvania\", \"street_type\": \"Avenue\", "
      "\"direction\": \"NW\" }"}},
    {"required + optional props each in original order",
     "{\"properties\": {\"b\": {\"type\": \"string\"}, \"a\": {\"type\": \"string\"}, "
     "\"d\": {\"type\": \"string\"}, \"c\": {\"type\": \"string\"}}, \"required\": [\"a\", \"b\"],"
     " \"additionalProperties\": false}",
     {"{\"b\": \"foo\", \"a\": \"bar\"}", "{\"b\":\"foo\",\"a\":\"bar\",\"d\":\"qux\"}",
      "{\"b\":\"foo\", \"a\":\"bar\", \"d\":\"qux\", \"c\":\"baz\"}"},
     {"{\"a\": \"foo\", \"b\": \"bar\"}", "{\"b\": \"bar\"}", "{\"a\": \"foo\", \"c\": \"baz\"}",
      "{\"a\":\"foo\", \"b\":\"bar\", \"c\":\"baz\", \"d\":\"qux\"}"}},
    {"required props",
     "{\"$schema\": \"https://json-schema.org/draft/2020-12/schema\", \"$id\": "
     "\"https://example.com/product.schema.json\", \"title\": \"Product\", \"type\": \"object\","
     " \"properties\": {\"productId\": {\"type\": \"integer\"}, \"productName\": {\"type\": "
     "\"string\"}, \"price\": {\"type\": \"number\", \"exclusiveMinimum\": 0}, \"tags\": "
     "{\"type\": \"array\", \"items\": {\"type\": \"string\"}, \"minItems\": 1}, \"dimensions\": "
     "{\"type\": \"object\", \"properties\": {\"length\": {\"type\": \"number\"}, \"width\": "
     "{\"type\": \"number\"}, \"height\": {\"type\": \"number\"}}, \"required\": [ \"length\", "
     "\"width\", \"height\" ]}}, \"required\": [ \"productId\", \"productName\", \"price\" ]}",
     {"{\"productId\": 1, \"productName\": \"A green door\", \"price\": 12.50}",
      "{\"productId\": 1, \"productName\": \"A green door\", \"price\": 12.50, \"tags\": "
      "[\"home\", \"green\"]}",
      "{\"productId\": 1, \"productName\": \"A green door\", \"price\": 12.50, \"tags\": "
      "[\"home\", \"green\"], \"dimensions\": {\"length\": 785, \"width\": 250.5, \"height\": "
      "-0.359}}"},
     {"{}", "{\"productName\": \"A green door\", \"price\": 12.50, \"productId\": 1}",
      /* llama.cpp lets this through (a TODO there); the bound is exact here */
      "{\"productId\": 1, \"productName\": \"A green door\", \"price\": -12.50}",
      "{\"productId\": 1, \"productName\": \"A green door\"}",
      "{\"productName\": \"A green door\", \"price\": 12.50}",
      "{\"productId\": 1, \"productName\": \"A green door\", \"price\": 12.50, \"tags\": []}",
      "{\"productId\": 1, \"productName\": \"A green door\", \"price\": 12.50, \"dimensions\": "
      "{\"length\": 785, \"width\": 250.5, \"height\": -0.359}, \"tags\": [\"home\", "
      "\"green\"]}"}},
};

static void test_own_cases(void **state) {
    (void)state;
    run_cases(own_cases, sizeof own_cases / sizeof own_cases[0]);
}

static void test_llama_cases(void **state) {
    (void)state;
    run_cases(llama_cases, sizeof llama_cases / sizeof llama_cases[0]);
}

/* Every integer range -300..300 against a direct check, for bounds around digit boundaries. */
static void test_integer_ranges(void **state) {
    (void)state;
    static const long long bounds[] = {-201, -100, -99, -10, -9, -1, 0, 1, 9, 10, 99, 100, 101,
                                       199, 200, 299};
    size_t nb = sizeof bounds / sizeof bounds[0];
    int n_checked = 0;
    for (size_t i = 0; i < nb; i++)
        for (size_t j = i; j < nb; j++) {
            long long lo = bounds[i], hi = bounds[j];
            char schema[128];
            snprintf(schema, sizeof schema,
                     "{\"type\":\"integer\",\"minimum\":%lld,\"maximum\":%lld}", lo, hi);
            char *g = convert_ok(schema);
            struct mx_grammar *gr = NULL;
            assert_int_equal(mx_grammar_parse(g, strlen(g), "s", &gr, NULL), 0);
            for (long long v = -320; v <= 320; v++) {
                char t[32];
                snprintf(t, sizeof t, "%lld", v);
                mx_grammar_reset(gr);
                bool took = mx_grammar_accept(gr, t, strlen(t)) == 0 && mx_grammar_complete(gr);
                if (took != (v >= lo && v <= hi))
                    fail_msg("[%lld, %lld]: %lld %s\n%s", lo, hi, v, took ? "taken" : "refused",
                             g);
                n_checked++;
            }
            mx_grammar_free(gr);
            free(g);
        }
    printf("integer ranges: %d values checked\n", n_checked);
}

/* A refused schema: the code and a piece of the message. */
static void refused(const char *schema, int code, const char *want) {
    char *g = (char *)1;
    struct mx_err e = {0};
    int rc = mx_json_schema_to_gbnf(schema, strlen(schema), &g, &e);
    if (rc != code || g)
        fail_msg("schema %s: got %d, want %d (%s)", schema, rc, code, e.msg);
    if (!strstr(e.msg, want))
        fail_msg("schema %s: message '%s' lacks '%s'", schema, e.msg, want);
}

static void test_refused(void **state) {
    (void)state;
    refused("{\"type\":\"object\",\"properties\":{\"a\":{\"not\":{\"type\":\"string\"}}}}",
            MX_EUNSUP, "'not' at /properties/a is not supported");
    refused("{\"if\":{\"type\":\"string\"},\"then\":{\"minLength\":1}}", MX_EUNSUP,
            "'if' at / is not supported");
    refused("{\"type\":\"object\",\"patternProperties\":{\"^x\":{}}}", MX_EUNSUP,
            "'patternProperties' at /");
    refused("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"object\","
            "\"dependentRequired\":{\"a\":[\"b\"]}}}}",
            MX_EUNSUP, "'dependentRequired' at /properties/a");
    refused("{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"uniqueItems\":true}", MX_EUNSUP,
            "'uniqueItems'");
    refused("{\"$ref\":\"https://example.com/s.json#/x\"}", MX_EUNSUP,
            "only local references");
    refused("{\"type\":\"array\",\"items\":[{\"$ref\":\"#/$defs/none\"}]}", MX_EFORMAT,
            "points to nothing");
    refused("{\"type\":\"string\",\"pattern\":\"^(?=a)b$\"}", MX_EUNSUP,
            "'pattern' at /: a lookaround");
    refused("{\"type\":\"string\",\"pattern\":\"^(a)\\\\1$\"}", MX_EUNSUP, "the escape \\1");
    refused("{\"type\":\"string\",\"pattern\":\"^a\\\\bc$\"}", MX_EUNSUP, "the escape \\b");
    refused("{\"type\":\"string\",\"pattern\":\"^(a$\"}", MX_EUNSUP, "unclosed '('");
    refused("{\"type\":\"string\",\"format\":\"email\"}", MX_EUNSUP, "'format': 'email'");
    refused("{\"type\":\"integer\",\"multipleOf\":3}", MX_EUNSUP, "'multipleOf'");
    refused("{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", MX_EUNSUP, "leave no integer");
    refused("{\"type\":\"string\",\"maxLength\":100000}", MX_EUNSUP, "'maxLength'");
    refused("{\"type\":\"integer\",\"exclusiveMinimum\":1e18}", MX_EUNSUP,
            "'exclusiveMinimum' at / is beyond");
    refused("{\"type\":\"strin\"}", MX_EFORMAT, "'type' at / is not a JSON type");
    refused("{\"$ref\":\"#/$defs/a\",\"$defs\":{\"a\":{\"anyOf\":[{\"$ref\":\"#/$defs/a\"},"
            "{\"type\":\"null\"}]}}}",
            MX_EUNSUP, "does not compile");
    refused("{\"type\":", MX_EFORMAT, "not JSON");
    refused("false", MX_EUNSUP, "nothing matches");
    refused("{\"allOf\":[{\"properties\":{\"a\":{\"type\":\"string\"}}},"
            "{\"properties\":{\"a\":{\"type\":\"integer\"}}}]}",
            MX_EUNSUP, "property 'a' defined twice");
}

/* The grammar engine reads only well-formed UTF-8: an overlong "-" (E0 80 AD), a surrogate or a
 * code point past U+10FFFF never gets into a JSON answer (a decoder shows them as U+FFFD). */
static void test_utf8_well_formed(void **state) {
    (void)state;
    const char *g = "root ::= [^\"]*";
    assert_true(grammar_takes(g, "-\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xed\x9f\xbf\xf4\x8f\xbf\xbf"));
    assert_false(grammar_takes(g, "\xe0\x80\xad"));
    assert_false(grammar_takes(g, "\xc0\xad"));
    assert_false(grammar_takes(g, "\xf0\x80\x80\xad"));
    assert_false(grammar_takes(g, "\xed\xa0\x80"));
    assert_false(grammar_takes(g, "\xf4\x90\x80\x80"));
    /* a lead byte alone (a byte token) is allowed only when a well-formed character can follow */
    struct mx_grammar *gr = NULL;
    const char *dash = "root ::= \"-\" | [\\u0800-\\uFFFF]";
    assert_int_equal(mx_grammar_parse(dash, strlen(dash), "d", &gr, NULL), 0);
    assert_true(mx_grammar_allows(gr, "\xe0", 1));
    mx_grammar_free(gr);
    const char *dash_only = "root ::= \"-\" | [\\x80-\\u07FF]";
    assert_int_equal(mx_grammar_parse(dash_only, strlen(dash_only), "d", &gr, NULL), 0);
    assert_false(mx_grammar_allows(gr, "\xe0", 1)); /* E0 80 AD would be an overlong "-" */
    assert_false(mx_grammar_allows(gr, "\xf0", 1));
    assert_true(mx_grammar_allows(gr, "\xc2", 1));
    mx_grammar_free(gr);
}

/* --json: any object, bounded whitespace. */
static void test_any_json(void **state) {
    (void)state;
    const char *g = mx_json_any_gbnf();
    assert_true(grammar_takes(g, "{}"));
    assert_true(grammar_takes(g, "{\"a\": [1, -2.5e3, true, null, {\"b\": \"\\u00e9\"}]}"));
    assert_false(grammar_takes(g, "[1]"));
    assert_false(grammar_takes(g, "{\"a\" 1}"));
    assert_false(grammar_takes(g, "{\"a\":                                         1}"));
}

/* ---- the property test: random schemas, random walks, a small validator -------------------- */

/* Code points in a UTF-8 string. */
static size_t n_code_points(const char *s) {
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* True when instance v validates against schema s (the generator's keywords only; refs resolved
 * in doc). */
static bool valid(json_t *doc, json_t *s, json_t *v) {
    json_t *ref = json_object_get(s, "$ref");
    if (ref) {
        const char *r = json_string_value(ref); /* "#/$defs/NAME" */
        return valid(doc, json_object_get(json_object_get(doc, "$defs"), r + 8), v);
    }
    json_t *any = json_object_get(s, "anyOf");
    if (any) {
        size_t i;
        json_t *a;
        json_array_foreach(any, i, a) {
            if (valid(doc, a, v))
                return true;
        }
        return false;
    }
    json_t *one = json_object_get(s, "oneOf"), *all = json_object_get(s, "allOf");
    if (one || all) { /* oneOf: exactly one branch; allOf: every component */
        size_t i, n_ok = 0;
        json_t *a;
        json_array_foreach(one ? one : all, i, a) n_ok += valid(doc, a, v);
        return one ? n_ok == 1 : n_ok == json_array_size(all);
    }
    json_t *types = json_object_get(s, "type");
    if (json_is_array(types)) { /* one of the types, the other keywords applying to it */
        size_t i;
        json_t *t1;
        json_array_foreach(types, i, t1) {
            json_t *c1 = json_copy(s);
            json_object_set(c1, "type", t1);
            bool ok = valid(doc, c1, v);
            json_decref(c1);
            if (ok)
                return true;
        }
        return false;
    }
    json_t *e = json_object_get(s, "enum");
    if (e) {
        size_t i;
        json_t *a;
        json_array_foreach(e, i, a) {
            if (json_equal(a, v))
                return true;
        }
        return false;
    }
    const char *t = json_string_value(json_object_get(s, "type"));
    if (!t)
        return json_is_object(v); /* the generator's {} */
    if (!strcmp(t, "null"))
        return json_is_null(v);
    if (!strcmp(t, "boolean"))
        return json_is_boolean(v);
    if (!strcmp(t, "integer") || !strcmp(t, "number")) {
        if (!strcmp(t, "integer") ? !json_is_integer(v) : !json_is_number(v))
            return false;
        double x = json_number_value(v);
        json_t *m;
        if ((m = json_object_get(s, "minimum")) && x < json_number_value(m))
            return false;
        if ((m = json_object_get(s, "maximum")) && x > json_number_value(m))
            return false;
        if ((m = json_object_get(s, "exclusiveMinimum")) && x <= json_number_value(m))
            return false;
        if ((m = json_object_get(s, "exclusiveMaximum")) && x >= json_number_value(m))
            return false;
        return true;
    }
    if (!strcmp(t, "string")) {
        if (!json_is_string(v))
            return false;
        size_t n = n_code_points(json_string_value(v));
        json_t *m;
        if ((m = json_object_get(s, "minLength")) && n < (size_t)json_integer_value(m))
            return false;
        if ((m = json_object_get(s, "maxLength")) && n > (size_t)json_integer_value(m))
            return false;
        if ((m = json_object_get(s, "pattern"))) { /* ASCII patterns POSIX ERE reads alike */
            regex_t re;
            assert_int_equal(regcomp(&re, json_string_value(m), REG_EXTENDED | REG_NOSUB), 0);
            int r = regexec(&re, json_string_value(v), 0, NULL, 0);
            regfree(&re);
            if (r != 0)
                return false;
        }
        const char *f = json_string_value(json_object_get(s, "format"));
        if (f && !strcmp(f, "date")) {
            const char *d = json_string_value(v);
            int y, mo, da;
            static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
            if (strlen(d) != 10 || sscanf(d, "%4d-%2d-%2d", &y, &mo, &da) != 3 || y < 1 ||
                mo < 1 || mo > 12 || da < 1)
                return false;
            bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            return da <= days[mo - 1] + (mo == 2 && leap);
        }
        return true;
    }
    if (!strcmp(t, "array")) {
        if (!json_is_array(v))
            return false;
        size_t n = json_array_size(v);
        json_t *m;
        if ((m = json_object_get(s, "minItems")) && n < (size_t)json_integer_value(m))
            return false;
        if ((m = json_object_get(s, "maxItems")) && n > (size_t)json_integer_value(m))
            return false;
        json_t *items = json_object_get(s, "items");
        for (size_t i = 0; i < n; i++)
            if (items && !valid(doc, items, json_array_get(v, i)))
                return false;
        return true;
    }
    /* object */
    if (!json_is_object(v))
        return false;
    json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
    json_t *add = json_object_get(s, "additionalProperties");
    size_t i;
    json_t *r;
    json_array_foreach(req, i, r) {
        if (!json_object_get(v, json_string_value(r)))
            return false;
    }
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
        json_t *ps = json_object_get(props, k);
        if (ps && !valid(doc, ps, x))
            return false;
        if (!ps && (json_is_false(add) || (json_is_object(add) && !valid(doc, add, x))))
            return false;
    }
    return true;
}

/* A random schema (depth-limited) using the keywords valid() knows. */
static json_t *gen_schema(uint64_t *rs, int depth) {
    json_t *s = json_object();
    int pick = (int)(mx_test_rand(rs) % (depth > 2 ? 6 : 10));
    switch (pick) {
    case 0: json_object_set_new(s, "type", json_string(mx_test_rand(rs) % 2 ? "null" : "boolean"));
        break;
    case 1: case 2: {
        bool integer = pick == 1;
        json_object_set_new(s, "type", json_string(integer ? "integer" : "number"));
        long long a = (long long)(mx_test_rand(rs) % 2000) - 1000;
        long long b = a + (long long)(mx_test_rand(rs) % 1500);
        int how = (int)(mx_test_rand(rs) % 4);
        json_object_set_new(s, how & 1 ? "exclusiveMinimum" : "minimum", json_integer(a));
        if (how != 3 || integer)
            json_object_set_new(s, how & 2 ? "exclusiveMaximum" : "maximum", json_integer(b + 2));
        break;
    }
    case 3: {
        json_object_set_new(s, "type", json_string("string"));
        int how = (int)(mx_test_rand(rs) % 3);
        if (how == 0) {
            long a = (long)(mx_test_rand(rs) % 4);
            json_object_set_new(s, "minLength", json_integer(a));
            json_object_set_new(s, "maxLength", json_integer(a + (long)(mx_test_rand(rs) % 5)));
        } else if (how == 1) {
            json_object_set_new(s, "format", json_string("date"));
        } else {
            json_object_set_new(s, "maxLength", json_integer(6));
        }
        break;
    }
    case 4: {
        json_t *e = json_array();
        json_array_append_new(e, json_string("red"));
        json_array_append_new(e, json_integer((long long)(mx_test_rand(rs) % 100)));
        json_array_append_new(e, json_null());
        json_object_set_new(s, "enum", e);
        break;
    }
    case 5: {
        static const char *const pats[] = {"^[a-c]{2,3}(-x|y)?$", "^(ab|c)+[0-9]{1,2}$", "b[0-9]",
                                           "^[A-Z][a-z_]{0,4}\\.?$"};
        int how = (int)(mx_test_rand(rs) % 5);
        if (how == 0) {
            json_object_set_new(s, "$ref", json_string("#/$defs/leaf"));
        } else if (how == 1) { /* disjoint branches: exactly one matches */
            json_t *one = json_array(), *a = json_object(), *b = gen_schema(rs, 99);
            json_object_set_new(a, "type", json_string("string"));
            json_object_set_new(a, "pattern", json_string(pats[mx_test_rand(rs) % 4]));
            json_array_append_new(one, a);
            json_array_append_new(one, b);
            json_object_set_new(s, "oneOf", one);
            const char *bt = json_string_value(json_object_get(b, "type"));
            if (!bt || !strcmp(bt, "string")) /* could be a string too: not disjoint */
                json_array_remove(one, 1);
        } else if (how == 2) {
            json_t *types = json_array();
            json_array_append_new(types, json_string("integer"));
            json_array_append_new(types, json_string("null"));
            json_array_append_new(types, json_string("string"));
            json_object_set_new(s, "type", types);
            json_object_set_new(s, "minimum", json_integer(-3));
            json_object_set_new(s, "maximum", json_integer(3));
            json_object_set_new(s, "maxLength", json_integer(2));
        } else if (how == 3 && depth < 3) { /* allOf of two objects, merged */
            json_t *all = json_array();
            for (int k = 0; k < 2; k++) {
                json_t *o = json_object(), *props = json_object(), *req = json_array();
                char name[16];
                snprintf(name, sizeof name, "q%d", k);
                json_object_set_new(props, name, gen_schema(rs, depth + 1));
                json_array_append_new(req, json_string(name));
                json_object_set_new(o, "type", json_string("object"));
                json_object_set_new(o, "properties", props);
                json_object_set_new(o, "required", req);
                json_array_append_new(all, o);
            }
            json_object_set_new(s, "allOf", all);
        } else {
            json_object_set_new(s, "type", json_string("string"));
            json_object_set_new(s, "pattern", json_string(pats[mx_test_rand(rs) % 4]));
        }
        break;
    }
    case 6: case 7: {
        json_object_set_new(s, "type", json_string("object"));
        json_t *props = json_object(), *req = json_array();
        int n = 1 + (int)(mx_test_rand(rs) % 3);
        for (int i = 0; i < n; i++) {
            char name[16];
            snprintf(name, sizeof name, "p%d", i);
            json_object_set_new(props, name, gen_schema(rs, depth + 1));
            if (mx_test_rand(rs) % 2)
                json_array_append_new(req, json_string(name));
        }
        json_object_set_new(s, "properties", props);
        json_object_set_new(s, "required", req);
        int add = (int)(mx_test_rand(rs) % 3);
        if (add == 0)
            json_object_set_new(s, "additionalProperties", json_false());
        else if (add == 1)
            json_object_set_new(s, "additionalProperties", gen_schema(rs, depth + 2));
        break;
    }
    case 8: {
        json_object_set_new(s, "type", json_string("array"));
        json_object_set_new(s, "items", gen_schema(rs, depth + 1));
        long a = (long)(mx_test_rand(rs) % 3);
        json_object_set_new(s, "minItems", json_integer(a));
        json_object_set_new(s, "maxItems", json_integer(a + (long)(mx_test_rand(rs) % 3)));
        break;
    }
    default: {
        json_t *any = json_array();
        json_array_append_new(any, gen_schema(rs, depth + 1));
        json_array_append_new(any, gen_schema(rs, depth + 1));
        json_object_set_new(s, "anyOf", any);
        break;
    }
    }
    return s;
}

/* Walks grammar g from its start: random allowed bytes (from a small alphabet, structural
 * bytes preferred), stopping at random once complete. Returns the text length, or -1 when the
 * walk did not finish within cap bytes. */
static long random_walk(struct mx_grammar *g, uint64_t *rs, char *out, size_t cap) {
    static const char pref[] = "\"}],:0123456789-.tfnrue";
    static const char alpha[] = "\"}],:{[ \n\t0123456789-.+eEtfnrulasxyzAZ\\/b\xc3\xa9";
    size_t n = 0;
    mx_grammar_reset(g);
    while (n + 1 < cap) {
        if (mx_grammar_complete(g) && (mx_grammar_finished(g) || mx_test_rand(rs) % 3 == 0))
            return (long)n;
        char ok[64];
        size_t n_ok = 0;
        const char *set = mx_test_rand(rs) % 3 ? pref : alpha;
        for (const char *p = set; *p; p++)
            if (mx_grammar_allows(g, p, 1))
                ok[n_ok++] = *p;
        if (n_ok == 0 && set == pref)
            for (const char *p = alpha; *p; p++)
                if (mx_grammar_allows(g, p, 1))
                    ok[n_ok++] = *p;
        if (n_ok == 0)
            return -1;
        char b = ok[mx_test_rand(rs) % n_ok];
        assert_int_equal(mx_grammar_accept(g, &b, 1), 0);
        out[n++] = b;
    }
    return -1;
}

static void test_property(void **state) {
    (void)state;
    uint64_t rs = 18;
    int n_schemas = 0, n_walks = 0, n_done = 0;
    for (int it = 0; it < 120; it++) {
        json_t *doc = gen_schema(&rs, 0);
        json_t *defs = json_object();
        json_t *leaf = json_object();
        json_object_set_new(leaf, "type", json_string("integer"));
        json_object_set_new(leaf, "minimum", json_integer(-5));
        json_object_set_new(leaf, "maximum", json_integer(5));
        json_object_set_new(defs, "leaf", leaf);
        json_object_set_new(doc, "$defs", defs);
        char *text = json_dumps(doc, JSON_COMPACT);
        char *g = convert_ok(text);
        struct mx_grammar *gr = NULL;
        struct mx_err e = {0};
        if (mx_grammar_parse(g, strlen(g), "s", &gr, &e) != 0)
            fail_msg("%s\n%s", e.msg, g);
        n_schemas++;
        for (int w = 0; w < 6; w++) {
            char buf[4096];
            long n = random_walk(gr, &rs, buf, sizeof buf);
            n_walks++;
            if (n < 0)
                continue;
            n_done++;
            json_error_t je;
            json_t *v = json_loadb(buf, (size_t)n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
            if (!v)
                fail_msg("schema %s\nwalk '%.*s' is not JSON: %s\n%s", text, (int)n, buf, je.text,
                         g);
            if (!valid(doc, doc, v))
                fail_msg("schema %s\nwalk '%.*s' does not validate\n%s", text, (int)n, buf, g);
            json_decref(v);
        }
        mx_grammar_free(gr);
        free(g);
        free(text);
        json_decref(doc);
    }
    printf("property: %d schemas, %d walks, %d finished and validated\n", n_schemas, n_walks,
           n_done);
    assert_true(n_done > n_walks / 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_own_cases),
        cmocka_unit_test(test_llama_cases),
        cmocka_unit_test(test_integer_ranges),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_utf8_well_formed),
        cmocka_unit_test(test_any_json),
        cmocka_unit_test(test_property),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
