/* grammar.h - GBNF grammars (llama.cpp's dialect) and a matcher that keeps generated text inside
 * one, for grammar-constrained sampling.
 *
 * The dialect is the one llama.cpp reads, so users' existing .gbnf files work: `name ::= ...`
 * rules (one per line, continued inside parentheses), alternation `|`, groups `( )`, postfix
 * `*` `+` `?` `{m}` `{m,}` `{m,n}`, string literals with escapes (\n \r \t \" \\ \[ \] \xHH
 * \uHHHH \UHHHHHHHH), character classes `[a-z_]` with ranges and negation `[^...]`, `.` (any code
 * point), `#` comments and rule references; `root` is the start rule. Everything works on Unicode
 * code points; the text fed in is UTF-8 bytes, and a character split over several tokens is
 * carried from one to the next.
 *
 * The matcher keeps a set of parse stacks (the positions still possible in the rules, like
 * llama.cpp's llama-grammar) and advances them code point by code point. With a vocabulary
 * attached (the bytes every token id stands for), it answers "may this token come next" and
 * filters a candidate list; end-of-generation tokens are allowed only when the grammar is
 * complete.
 *
 * Thread-safety: a grammar is used by one thread at a time.
 */
#ifndef MX_GRAMMAR_H
#define MX_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"
#include "core/llm/sampler.h"

struct mx_grammar;

/* Parses GBNF text[0..len) (name: the file name for messages) into a grammar in its start state.
 * Returns 0 with *out (caller frees), MX_EFORMAT with "name:line:col: problem" in err (a syntax
 * error, an undefined rule, no root rule, a left-recursive rule, a bad escape or UTF-8), or
 * MX_ENOMEM. */
int mx_grammar_parse(const char *text, size_t len, const char *name, struct mx_grammar **out,
                     struct mx_err *err);
void mx_grammar_free(struct mx_grammar *g); /* NULL ok */

/* Back to the start state (the root rule, nothing accepted). */
void mx_grammar_reset(struct mx_grammar *g);

/* True when bytes[0..n) can follow the text accepted so far (a trailing incomplete UTF-8
 * sequence counts when some continuation of it could be accepted). Does not change the state. */
bool mx_grammar_allows(struct mx_grammar *g, const char *bytes, size_t n);
/* Accepts bytes[0..n). Returns 0, or MX_EINVAL when they cannot follow, MX_ENOMEM, MX_ERANGE
 * (a grammar so ambiguous that more than 4096 parses are alive; such text is also refused by
 * mx_grammar_allows); the state is unchanged after an error. */
int mx_grammar_accept(struct mx_grammar *g, const char *bytes, size_t n);
/* True when the text so far is a complete sentence of the grammar (end of generation allowed). */
bool mx_grammar_complete(const struct mx_grammar *g);
/* True when nothing more can be appended (every parse is complete, or none is left). */
bool mx_grammar_finished(const struct mx_grammar *g);
/* Number of live parse stacks (for tests and statistics). */
size_t mx_grammar_n_stacks(const struct mx_grammar *g);

/* ---- a vocabulary: what each token id stands for ------------------------------------------- */

/* Attaches a vocabulary of n_vocab ids, all empty (never allowed) until set. Returns 0,
 * MX_EINVAL (n_vocab <= 0), MX_ENOMEM. */
int mx_grammar_vocab_init(struct mx_grammar *g, int32_t n_vocab);
/* Sets token id's bytes (copied) and whether it ends a generation. Returns 0, MX_EINVAL (no
 * vocabulary or id out of range), MX_ENOMEM. */
int mx_grammar_vocab_set(struct mx_grammar *g, int32_t id, const char *bytes, size_t n,
                         bool eog);
/* May token id come next: an end-of-generation token when the grammar is complete, any other
 * token when its bytes are non-empty and allowed. False for ids outside the vocabulary. */
bool mx_grammar_token_allowed(struct mx_grammar *g, int32_t id);
/* Accepts token id (end-of-generation tokens change nothing). Returns 0, MX_EINVAL (not
 * allowed; state unchanged), MX_ENOMEM. */
int mx_grammar_accept_token(struct mx_grammar *g, int32_t id);
/* Removes the candidates that may not come next (order kept). */
void mx_grammar_filter(struct mx_grammar *g, struct mx_cand *c);

#endif
