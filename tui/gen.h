/* gen.h - generation: sending a message, the answer streaming in from the worker (gen.c). */
#ifndef MX_TUI_GEN_H
#define MX_TUI_GEN_H

#include "tui/app_int.h"

/* Sends line as the user's message (stored first) and starts the answer; while an answer
 * streams, queues it instead (shown; sent when the answer ends, back in the input line when it
 * is stopped or fails). */
void mx_app_send(struct app *a, const char *line);
/* Starts the answer to the conversation as it stands (the last message is the user's). */
void mx_app_gen_start(struct app *a);
/* Every tool call of the last answer has its result (a->tools.go_on): the answer goes on. Called
 * after the events and keys that may finish a call. */
void mx_app_gen_go_on(struct app *a);
/* Asks the running answer to stop (it ends with MX_ECANCELED, the partial answer kept). */
void mx_app_gen_stop(struct app *a);
/* Takes every pending worker event into the view and the history. */
void mx_app_gen_events(struct app *a);
/* Frees the last generation job (and a's queued message; a NULL: only the job). At exit, after
 * the worker is joined. */
void mx_app_gen_deinit(struct app *a);

#endif
