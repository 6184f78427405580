/* tools.h - tool calls in the chat (tools.c): an answer that calls tools is folded to one line
 * per call, each call waits for the user's y / n / a(lways this session) (--yes: none waits),
 * runs (generate_image through the /image job, the others on the worker), and its result goes
 * back to the model as a tool message; the answer then goes on, for at most
 * MX_APP_TOOL_ROUNDS answers with calls per user message. */
#ifndef MX_TUI_TOOLS_H
#define MX_TUI_TOOLS_H

#include "tui/app_int.h"
#include "tui/view.h"

#define MX_APP_TOOL_ROUNDS 8 /* answers with tool calls per user message before mixel stops */

/* Takes the registry and --yes from the options (the app owns the registry from now on). */
void mx_app_tools_init(struct app *a, struct mx_tools *reg, bool yes);
/* Frees the registry and the turn's state. */
void mx_app_tools_deinit(struct app *a);

/* Fills the settings of an answer about to start: the tools the template describes, and the
 * lazy grammar that keeps a call well-formed with its arguments inside the tool's schema (from
 * the family's trigger on; made once per template family; not when the user gave --grammar). */
void mx_app_tools_settings(struct app *a, struct mx_gen_settings *s);
/* While answer m streams: what may still become a tool call is held back from the screen (m's
 * shown text is its surely-text part, core/text/tool_call.h mx_tool_calls_text_len), so a call's
 * JSON never flashes by before it is folded. */
void mx_app_tools_streaming(struct app *a, struct msg *m);
/* A stored tool result as the engine's template family carries it (app/tools.h
 * mx_tool_result_text); caller frees; NULL when out of memory. */
char *mx_app_tools_result(struct app *a, const char *text);
/* An answer m (the last message) finished: when it calls tools, m's text becomes the answer's
 * text without the calls, m->tool_calls the calls (the caller stores both), and true is
 * returned: the caller then calls mx_app_tools_start once the message is stored. A malformed
 * call is said in a notice and the answer kept as text (false). */
bool mx_app_tools_take(struct app *a, struct msg *m);
/* Works through the calls of the last answer taken: asks for the first (or runs it). */
void mx_app_tools_start(struct app *a);
/* The user sent a message: a new turn (the round count starts again). */
void mx_app_tools_new_turn(struct app *a);

/* The worker's tool job ended (code, msg as MX_EV_DONE carries them). */
void mx_app_tools_job_done(struct app *a, int code, const char *msg);
/* The image a generate_image call asked for is done (code 0: result says what was drawn), or
 * failed / was stopped (result: why). */
void mx_app_tools_image_done(struct app *a, int code, const char *result);

/* /tools: lists the tools, what each may touch and whether it asks. */
void mx_app_cmd_tools(struct app *a, const char *arg);

/* The confirmation: has the keys while a call waits for y / n / a. */
extern const struct mx_view_ops mx_view_toolask;

#endif
