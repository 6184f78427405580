/* engine.h - what the chat view asks of a chat engine: generate the next assistant message for a
 * conversation, on the worker thread, streaming text through the job's events. The LLM engine
 * (app/llm.c's model and generate loop + the chat template) and the scripted test engine both
 * implement it, so the TUI is tested without a model and the model without a TUI.
 */
#ifndef MX_ENGINE_H
#define MX_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/role.h"
#include "core/text/template.h"
#include "app/llm.h"
#include "app/worker.h"


/* One message of a conversation as the engine sees it: what core/text's chat template renders
 * (struct mx_chat_msg), so an assistant's tool calls and a tool's answer reach the model.
 * Strings borrowed. */
struct mx_turn {
    enum mx_role role;
    const char *text;                      /* NULL only for an assistant turn of tool calls */
    const struct mx_tool_call *tool_calls; /* assistant only; NULL when n_tool_calls == 0 */
    size_t n_tool_calls;
    const char *tool_call_id;              /* tool turns: the call answered; NULL: none */
};

struct mx_engine {
    char name[128];     /* shown in the status bar (model file name) */
    char device[32];    /* "CPU", "CUDA" */
    int n_ctx;          /* context size in tokens (0: unknown) */
    /* Runs on the worker thread: generates the answer to turns[0..n) (the last is the user's),
     * posting MX_EV_TEXT pieces, MX_EV_STATS, and ending with mx_job_done. turns and settings
     * are valid until the job ends. */
    void (*reply)(struct mx_engine *e, struct mx_job *job, const struct mx_turn *turns, int n,
                  const struct mx_gen_settings *settings);
    void (*free)(struct mx_engine *e);
};

/* The scripted engine for tests and demos: answers with the contents of `reply_file` (streamed in
 * small pieces, byte for byte, escape sequences included: it is how the hostile-output test feeds
 * the view), or, when reply_file is NULL, echoes the user's last message. reply_file may list
 * files separated by ':': the k-th answer after the user's message (the rounds of a turn with
 * tool calls) replays the k-th, the last one when there are fewer. It speaks Mistral's tool-call
 * syntax ([TOOL_CALLS] in the file). Returns NULL on OOM. */
struct mx_engine *mx_engine_scripted_new(const char *reply_file);

#endif
