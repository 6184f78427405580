/* commands.h - the slash commands: one table that drives dispatch, /help and completion
 * (commands.c). */
#ifndef MX_TUI_COMMANDS_H
#define MX_TUI_COMMANDS_H

#include "tui/app_int.h"

/* A line the user entered: a /command, else a message to send. */
void mx_app_submit(struct app *a, char *line);
/* The i-th command's name ("/help"), NULL past the end (for completion). */
const char *mx_app_command_name(size_t i);
/* The i-th command takes a path (its argument reads as one, ~ and quotes included). */
bool mx_app_command_takes_path(size_t i);

#endif
