/* json_schema.h - JSON Schema -> GBNF grammar (llama.cpp's dialect, core/llm/grammar.h), so a
 * model's answer can be constrained to JSON that validates against a schema (`mixel run
 * --json-schema FILE`, `--json`, tool-call arguments).
 *
 * The conversion follows llama.cpp's json-schema-to-grammar: one rule per sub-schema, object
 * properties in the schema's order (required ones first, then the optional ones in a fixed
 * order, each optional), whitespace between tokens limited to `| " " | "\n"{1,2} [ \t]{0,20}` so
 * a model cannot run on with spaces forever. Where llama.cpp's grammar would let through JSON
 * that does not validate, the grammar here is narrower (it always describes a subset of the
 * valid instances, never a superset):
 *
 *  - types (one or an array), const, enum (values of the wrong type dropped), null, boolean;
 *  - objects: properties, required (also names not in properties), additionalProperties
 *    (absent: none generated; false; true; a schema), keys of additional properties never
 *    equal to a declared one;
 *  - arrays: items, prefixItems (and draft-7 array `items` + additionalItems), minItems,
 *    maxItems;
 *  - strings: minLength, maxLength (in code points; \u escapes never produce surrogates),
 *    format date (exact: days per month, 29 February in leap years only, year 0001-9999), time
 *    and date-time (RFC 3339 with a zone; seconds 00-59, milliseconds optional), uuid; pattern
 *    in the regex subset llama.cpp reads (literals, classes, groups, alternation, ? * + {m,n},
 *    `.`, \d \w \s and their negations, escapes); without ^ ... $ the pattern may appear
 *    anywhere in the string (JSON Schema's search semantics);
 *  - integers: minimum, maximum, exclusiveMinimum, exclusiveMaximum, exact (digit-range rules,
 *    no leading zeros; a missing bound stops at 16 digits like llama.cpp's integral part);
 *  - numbers with bounds: exact for whole-number bounds (every integer inside, and decimals
 *    k.ddd whose whole interval [k, k+1) lies inside); with fractional bounds the decimals
 *    between the last whole number and the bound are left out; no exponent;
 *  - anyOf and oneOf as alternation (oneOf is exact when its branches do not overlap, as in
 *    llama.cpp), keywords beside them distributed into each branch; allOf merged into one
 *    schema (conflicting keywords refused);
 *  - local $ref ("#", "#/$defs/...", "#/definitions/...", any "#/..." JSON pointer), recursion
 *    allowed through rules.
 * Annotations (title, description, default, examples, $schema, $id, $comment, ...) and unknown
 * keywords are ignored. Everything that would constrain the answer in a way the grammar does
 * not (not, if/then/else, patternProperties, dependentRequired, propertyNames, contains,
 * uniqueItems: true, multipleOf, min/maxProperties, remote $ref, an unknown format, a regex
 * feature outside the subset, ...) is refused with MX_EUNSUP and a message naming the keyword
 * and its JSON pointer.
 *
 * Thread-safety: none needed (no shared state).
 */
#ifndef MX_JSON_SCHEMA_H
#define MX_JSON_SCHEMA_H

#include <stddef.h>

#include "core/base/err.h"

/* Converts the JSON Schema text schema[0..len) into GBNF text (root is the start rule).
 * Returns 0 with *gbnf (NUL-terminated; caller frees), or MX_EFORMAT (not JSON, or a keyword
 * with a value of the wrong kind), MX_EUNSUP (a keyword or construction the grammar cannot
 * follow: "json schema: 'not' at /properties/a is not supported"), MX_ENOMEM; *gbnf is NULL
 * then. The grammar is checked with mx_grammar_parse before it is returned. */
int mx_json_schema_to_gbnf(const char *schema, size_t len, char **gbnf, struct mx_err *err);

/* GBNF for any JSON object (`--json`), with the same whitespace limits and string rules as the
 * converter's. Static text. */
const char *mx_json_any_gbnf(void);

#endif
