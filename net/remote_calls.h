/* remote_calls.h - tool calls an OpenAI-compatible server streams back, for the remote engine.
 *
 * A server streams a call in fragments: choices[0].delta.tool_calls[i] with an "index" (which
 * call), and "id", "function.name" and "function.arguments" pieces to append; a server that does
 * not stream gives message.tool_calls whole (the same fields, no index needed). This module
 * gathers them (bounded: MX_REMOTE_MAX_CALLS calls, names of 64 bytes, arguments of
 * MX_REMOTE_MAX_ARGS bytes) and, at the end of the answer, writes them as the text the chat's
 * call parser reads for Mistral v3 (core/text/tool_call.h):
 *   [TOOL_CALLS][{"name": "f", "arguments": {...}}]
 * The TUI reads a non-LLM engine's answers with that family (tui/tools.c engine_family), so the
 * calls join the one path every engine's calls take: parse, confirm, run, store, continue.
 */
#ifndef MX_REMOTE_CALLS_H
#define MX_REMOTE_CALLS_H

#include <jansson.h>
#include <stddef.h>

#include "core/base/err.h"

#define MX_REMOTE_MAX_CALLS 16          /* calls in one answer */
#define MX_REMOTE_MAX_NAME 64           /* a tool name's bytes (OpenAI's limit) */
#define MX_REMOTE_MAX_ARGS (256 * 1024) /* one call's arguments text */

/* One call being gathered. */
struct mx_remote_call {
    char name[MX_REMOTE_MAX_NAME + 1]; /* the function's name so far, NUL-terminated */
    char *args;                        /* owned: the arguments' JSON text so far (NULL: none) */
    size_t args_len;                   /* strlen(args) */
    long index;                        /* the server's "index" for it */
};

/* The calls of one answer. Zero-initialised is empty. */
struct mx_remote_calls {
    struct mx_remote_call v[MX_REMOTE_MAX_CALLS];
    size_t n;
};

/* Appends one tool_calls array's fragments (a streamed delta's, or a whole message's: entries
 * without "index" are taken as new calls in order). Returns 0, MX_ERANGE (too many calls, a name
 * or arguments too long: "tool call: ... (N bytes, at most M)"), MX_EFORMAT (not an array of
 * objects), MX_ENOMEM. */
int mx_remote_calls_add(struct mx_remote_calls *c, json_t *tool_calls, struct mx_err *err);

/* The gathered calls as Mistral v3 call text ("[TOOL_CALLS][...]"), caller frees; "" (a new
 * empty string) when there are none. Empty arguments are {}. Returns 0, MX_EFORMAT (a call
 * without a name, or arguments that are not a JSON object: the message quotes the server's
 * text), MX_ENOMEM. */
int mx_remote_calls_text(const struct mx_remote_calls *c, char **text, struct mx_err *err);

/* Frees the arguments and empties *c; NULL ok. */
void mx_remote_calls_free(struct mx_remote_calls *c);

#endif
