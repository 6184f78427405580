/* conv.h - the conversation model: messages as received, rendered on demand (conv.c). */
#ifndef MX_TUI_CONV_H
#define MX_TUI_CONV_H

#include "tui/app_int.h"

/* Appends a message (text copied; NULL: empty). Returns it, valid until the next add, or NULL
 * when out of memory (nothing added). */
struct msg *mx_app_msg_add(struct app *a, enum mx_role role, enum msg_state st,
                           const char *text);
/* Appends s to m's text. Returns 0 or MX_ENOMEM (m unchanged). */
int mx_app_msg_append(struct msg *m, const char *s);
/* Appends s to m's reasoning (shown folded). Returns 0 or MX_ENOMEM (m unchanged). */
int mx_app_msg_append_reasoning(struct msg *m, const char *s);
/* Frees what m owns (m itself is an array slot). */
void mx_app_msg_free(struct msg *m);
/* Drops every message and scrolls back to the bottom. */
void mx_app_conv_clear(struct app *a);
/* Adds the "No model is loaded" banner; drop takes it out again (a model was loaded). */
void mx_app_conv_add_banner(struct app *a);
void mx_app_conv_drop_banner(struct app *a);
/* "You", "Assistant", "System", "mixel" (a notice) or "Tool". */
const char *mx_app_role_label(const struct msg *m);
/* (Re)renders m for width columns when its text or the width changed (r_valid says if it did). */
void mx_app_msg_render(struct msg *m, int width);
/* Gives text back to the input line for the user to edit (/edit, a queued message that was not
 * sent): it goes in front of what is typed there once readline is done with the line being
 * entered (a->rl.next_text). Out of memory: nothing changes. */
void mx_app_input_give(struct app *a, const char *text);
/* The message being streamed into, or NULL. */
struct msg *mx_app_streaming_msg(struct app *a);

/* What the model is told for a call the user refused, and the prefix of a result that is an
 * error (the folded line then says "failed"). */
#define MX_APP_TOOL_DECLINED "the user declined this call"
#define MX_APP_TOOL_ERROR "error: "
/* Recomputes the folded text (m->shown) of message i, an answer with tool calls: its words, then
 * one line per call "⚙ `f(x=1)` → 1.2 KB" (or declined, failed, the question while a->tools asks
 * it, running); the results (tool messages after it) count for the sizes. */
void mx_app_conv_fold(struct app *a, int i);
/* The same for every answer with calls, and hides the tool messages (after a session load). */
void mx_app_conv_fold_all(struct app *a);

#endif
