/* oai.h - the OpenAI API's wire format, both directions: request bodies of /v1/chat/completions
 * and /v1/completions read into the engine's terms (turns, the one settings struct), and the
 * response bodies, stream chunks, model list and error objects written exactly as OpenAI and
 * llama.cpp's server write them. Pure JSON work (jansson), no sockets: `mixel serve` uses it, and
 * so can the remote-engine client, and the fuzz target feeds it hostile bodies.
 *
 * Requests are untrusted: every field is checked for its type and range, and an error names the
 * field ("temperature: must be a number from 0 to 100 (got \"hot\")").
 */
#ifndef MX_OAI_H
#define MX_OAI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"
#include "app/engine.h"
#include "app/llm.h"

/* Which endpoint a request is for. */
enum mx_oai_kind {
    MX_OAI_CHAT,        /* /v1/chat/completions: messages */
    MX_OAI_COMPLETION,  /* /v1/completions: prompt text */
};

/* A parsed request. Strings point into the parsed body or into owned copies; everything is freed
 * by mx_oai_req_free. */
struct mx_oai_req {
    enum mx_oai_kind kind;
    void *root;                 /* owned: the jansson tree the strings point into */
    struct mx_turn *turns;      /* chat: the conversation, n_turns of them (owned array) */
    size_t n_turns;
    struct mx_tool_call *calls; /* owned: every assistant tool call; turns point into it */
    char **owned;               /* owned: texts joined from content parts, n_owned of them */
    size_t n_owned;
    const char *prompt;         /* completion: the prompt text (NUL-terminated) */
    size_t prompt_len;          /* its bytes */
    const char *model;          /* "model" as sent; NULL when absent */
    bool stream;                /* "stream": true: server-sent events */
    bool max_set;               /* "max_tokens"/"max_completion_tokens" given */
};

/* Parses body[0..len) as a request of `kind` into *req, applying its sampling fields onto *s
 * (temperature, top_p, top_k, min_p, seed, max_tokens / max_completion_tokens -> n_predict,
 * frequency_penalty, presence_penalty, repeat_penalty, stop -> s->stop after the stops s already
 * has). s's other fields stay as the caller set them; s->stop's strings then point into req.
 * Fields OpenAI has that change nothing here (user, logprobs false, ...) are ignored; fields
 * this server cannot honour are refused rather than ignored (n other than 1, tools,
 * logprobs true). response_format json_object / json_schema sets s->grammar_text (kept in req)
 * to the JSON grammar (--json) or the schema's (--json-schema); a schema the converter refuses
 * is MX_EINVAL naming the keyword. Returns 0, MX_EINVAL with err naming the
 * field (the body is not JSON, a field has the wrong type or range) or MX_ENOMEM; *req is then
 * empty. */
int mx_oai_parse(enum mx_oai_kind kind, const char *body, size_t len, struct mx_oai_req *req,
                 struct mx_gen_settings *s, struct mx_err *err);

/* Frees what req owns and empties it. NULL ok. */
void mx_oai_req_free(struct mx_oai_req *req);

/* Token counts of one answer ("usage"). */
struct mx_oai_usage {
    size_t prompt_tokens;
    size_t completion_tokens;
};

/* The answer's identity, shared by all of its chunks. */
struct mx_oai_meta {
    enum mx_oai_kind kind;
    const char *id;         /* "chatcmpl-..." / "cmpl-..." */
    long long created;      /* Unix seconds */
    const char *model;      /* the model id */
};

/* One server-sent event of a streamed answer, "data: {...}\n\n": a chat chunk
 * ("chat.completion.chunk", delta {"role":"assistant","content":""} when role is set, else
 * {"content": text} or {} with finish_reason) or a completion chunk ("text_completion"). finish
 * NULL: null; usage NULL: none (the last chunk carries it, as llama.cpp's server sends it).
 * text[0..n) is UTF-8 from the model; invalid bytes become U+FFFD. Returns a malloc'd string
 * (caller frees) or NULL when out of memory. */
char *mx_oai_chunk(const struct mx_oai_meta *m, bool role, const char *text, size_t n,
                   const char *finish, const struct mx_oai_usage *usage);

/* The whole answer as one response body ("chat.completion" with message, or "text_completion"
 * with text), finish_reason and usage. Returns a malloc'd string or NULL (out of memory). */
char *mx_oai_response(const struct mx_oai_meta *m, const char *text, size_t n,
                      const char *finish, const struct mx_oai_usage *usage);

/* {"object":"list","data":[{"id":id,"object":"model","created":created,"owned_by":"mixel"},...]}
 * for ids[0..n). Returns a malloc'd string or NULL. */
char *mx_oai_models(const char *const *ids, size_t n, long long created);

/* OpenAI's error object: {"error":{"message":msg,"type":type,"param":null,"code":code}}
 * (code NULL: null). The message is made valid UTF-8. Returns a malloc'd string or NULL. */
char *mx_oai_error(const char *msg, const char *type, const char *code);

/* The generation's end as OpenAI names it: "length" (max_tokens or a full context), else
 * "stop". */
const char *mx_oai_finish(enum mx_gen_end end);

/* A JSON string for UTF-8-ish bytes s[0..n): invalid sequences become U+FFFD (NUL is \u0000), so
 * model output never makes a body unencodable. Returns a jansson json_t * (as void *, the caller
 * decrefs) or NULL when out of memory. */
void *mx_oai_json_text(const char *s, size_t n);

#endif
