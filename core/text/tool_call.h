/* tool_call.h - tool calls in a model's answer, per chat-template family: parsing a finished
 * answer into its text and its calls, telling a streaming front end how much of an answer so far
 * is surely text, and the GBNF grammar (plus its lazy trigger) that keeps a call well-formed.
 *
 * The call syntax each family writes (core/text/template.h renders the same syntax back):
 *   mistral-v3, -v3-tekken, -v7, -v7-tekken:
 *       [TOOL_CALLS] [{"name": "f", "arguments": {...}, "id": "abc123XYZ"}, ...]
 *     ("id" optional: v3 models leave it out, mixel then makes one), and the newer tekken form
 *       [TOOL_CALLS]f[ARGS]{...}  or  [TOOL_CALLS]f[CALL_ID]abc123XYZ[ARGS]{...}  (repeated)
 *     [TOOL_CALLS] is a control token in v3+ vocabularies: the generate loop writes its text
 *     into the answer when it is the grammar trigger (app/llm.h grammar_trigger).
 *   chatml (Hermes-2-Pro, Qwen2.5): <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>
 *     blocks, several per answer; the closing tag may be missing at the very end.
 *   llama3 (Llama 3.1): {"name": "f", "parameters": {...}} (also "arguments"), optionally after
 *     <|python_tag|>; several objects may follow each other (separated by space or ';').
 *   the others (generic JSON convention): {"tool_calls": [{"name": "f", "arguments": {...}}]}.
 * Text before, between and after the calls is the answer's content.
 *
 * What counts as a call, and malformed calls: a family marker ([TOOL_CALLS], <tool_call>,
 * <|python_tag|>, {"tool_calls") followed by something that does not parse is an error
 * (MX_EFORMAT, message naming the family and the byte offset); the caller may show the answer as
 * text instead. Llama 3's bare {"name" ...} object is only a call when the object parses with a
 * string "name" and an object "parameters"/"arguments" and nothing else but "type"; any other
 * JSON (an answer the user asked to be JSON) stays text.
 *
 * Arguments are kept as JSON text (one line, ", " and ": " separators, key order kept, literals
 * as written); an "arguments" given as a JSON string that holds an object (OpenAI style) is
 * decoded. A tool name outside mx_tool_name_valid is a malformed call. An id from the answer is
 * kept when every renderer can write it back (9 alphanumerics; exactly 9 for mistral-v3 and
 * -v3-tekken, up to 64 otherwise), else one is made up.
 *
 * Use (the chat loop): render with opts.tools; generate with mx_gen_settings.grammar_text =
 * the mx_tool_grammar text and .grammar_trigger = its trigger (app/llm.h), showing the streamed
 * answer only up to mx_tool_calls_text_len; parse the finished answer with mx_tool_calls_parse;
 * run the calls; append the assistant message (content + calls) and one tool message per call
 * (tool_call_id = the call's id) and render again.
 *
 * Thread-safety: no shared state except the id generator's counter (atomic).
 */
#ifndef MX_TOOL_CALL_H
#define MX_TOOL_CALL_H

#include <stdbool.h>
#include <stddef.h>

#include "core/base/err.h"
#include "core/text/template.h"

/* An answer split into text and calls. Everything here is owned (mx_tool_calls_free). */
struct mx_tool_calls {
    char *content;              /* the text outside the calls, ends trimmed, NUL-terminated;
                                 * "" when there is none, never NULL after a parse */
    struct mx_tool_call *calls; /* [n_calls]: id, name, arguments all owned, never NULL; ids
                                 * from the answer, or made up (9 alphanumerics) */
    size_t n_calls;
    bool partial;               /* mx_tool_calls_parse_partial: the answer so far ends inside a
                                 * call or a marker (more calls may follow the ones here) */
};

/* Parses text[0..n) (a finished answer) with kind's call syntax into *out
 * (zeroed first; caller frees with mx_tool_calls_free even on error). An answer without calls
 * gives n_calls 0 and the whole text as content. Returns 0, MX_EFORMAT (a marker followed by a
 * malformed call: "tool call (FAMILY): problem (at byte N)"; out->content then holds the whole
 * text), MX_EINVAL (bad kind or NULL text with n > 0), MX_ENOMEM. Never reads past text + n. */
int mx_tool_calls_parse(enum mx_tmpl_kind kind, const char *text, size_t n,
                        struct mx_tool_calls *out, struct mx_err *err);

/* mx_tool_calls_parse for the answer so far, while it streams: a call (or a marker) that the
 * text ends inside is no error; the complete calls before it are returned, the content is the
 * text outside them, and out->partial is set. A call that is malformed before the end of the
 * text is MX_EFORMAT as in mx_tool_calls_parse. */
int mx_tool_calls_parse_partial(enum mx_tmpl_kind kind, const char *text, size_t n,
                                struct mx_tool_calls *out, struct mx_err *err);

/* Frees everything and zeroes *c; NULL ok. */
void mx_tool_calls_free(struct mx_tool_calls *c);

/* For streaming: how many leading bytes of the answer so far, text[0..n), are surely text a front
 * end may show. The rest is a call, or may still become one (a prefix of a marker at the end; for
 * llama3 and the generic convention an answer whose first non-space character is '{'). The
 * result only grows as text grows, except that it may end a UTF-8 character early; it never
 * splits one. */
size_t mx_tool_calls_text_len(enum mx_tmpl_kind kind, const char *text, size_t n);

/* The text that opens a call in kind's syntax ("[TOOL_CALLS]", "<tool_call>", "{\"name\"",
 * "{\"tool_calls\""), static; what mx_tool_grammar returns as the trigger. */
const char *mx_tool_trigger(enum mx_tmpl_kind kind);

/* A tool's name as the grammar and the parser accept it: 1 to 64 of [A-Za-z0-9_.-] (OpenAI's
 * rule plus '.'). */
bool mx_tool_name_valid(const char *name);

/* The GBNF grammar for kind's call syntax: root starts with the trigger text, then the family's
 * envelope with one alternative per tool, its name a literal and its arguments args_gbnf[i] (a
 * GBNF grammar of the arguments object with its own `root`; its rules are renamed "t<i>-NAME"
 * so tools cannot clash). For Mistral an "id" of 9 alphanumerics may follow the arguments.
 * Returns 0 with *gbnf (caller frees) and *trigger (static, mx_tool_trigger), or MX_EINVAL (no
 * tools, a tool name mx_tool_name_valid refuses, a missing argument grammar), MX_ENOMEM. The
 * text parses with mx_grammar_parse when every args_gbnf[i] does. */
int mx_tool_grammar_args(enum mx_tmpl_kind kind, const struct mx_tool_def *tools, size_t n,
                         const char *const *args_gbnf, char **gbnf, const char **trigger,
                         struct mx_err *err);

/* mx_tool_grammar_args with each tool's argument grammar converted from its JSON schema
 * (tools[i].parameters; core/llm/json_schema.h, llama.cpp's semantics; NULL: any JSON object),
 * so the arguments of every constrained call validate. Returns 0 with *gbnf (caller frees) and
 * *trigger (static), or the converter's error prefixed with the tool's name (MX_EFORMAT: not
 * JSON; MX_EUNSUP: a keyword the grammar cannot follow), or mx_tool_grammar_args's. */
int mx_tool_grammar(enum mx_tmpl_kind kind, const struct mx_tool_def *tools, size_t n,
                    char **gbnf, const char **trigger, struct mx_err *err);

#endif
