/* json_schema_regex.h - a JSON Schema `pattern` (the regex subset llama.cpp reads) as a GBNF
 * expression over the JSON text of a string's contents; json_schema.c's helper, apart because
 * reading a regex is a concern of its own.
 */
#ifndef MX_JSON_SCHEMA_REGEX_H
#define MX_JSON_SCHEMA_REGEX_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/bytes.h"
#include "core/base/err.h"

/* Appends to out a GBNF expression matching the contents (between the quotes, as JSON writes
 * them) of strings whose decoded text the regex re[0..n) finds: a search, as JSON Schema's
 * pattern is; ^ and $ at the ends anchor it. An unanchored end refers to the rule `char` (one
 * JSON string character), which the caller defines. Returns 0, MX_EUNSUP with "a lookaround or
 * named group '(?' is not supported" in err (a feature outside the subset), or MX_ENOMEM; out
 * may hold a partial expression then. */
int mx_json_pattern_gbnf(const char *re, size_t n, struct mx_bytes *out, struct mx_err *err);

/* Appends code point cp as a member of a GBNF character class (a letter or digit as it is,
 * anything else as \xHH, \uHHHH or \UHHHHHHHH). Returns 0 or MX_ENOMEM. */
int mx_gbnf_class_cp(struct mx_bytes *b, uint32_t cp);

#endif
