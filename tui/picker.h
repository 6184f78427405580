/* picker.h - the model picker: a server's models and the GGUF files on this machine (picker.c). */
#ifndef MX_TUI_PICKER_H
#define MX_TUI_PICKER_H

#include "tui/app_int.h"
#include "tui/view.h"

/* Looks for models (no model given) and opens the picker when some are found. */
void mx_app_picker_open(struct app *a);
/* /model with no argument: asks opts.list_models for the server's models (a short, bounded wait;
 * a failure is a notice) and opens the picker with them above the local files, the one in use
 * selected. Returns 1 without opening when there is no server to ask (no list_models, or none
 * known), else 0. */
int mx_app_picker_open_remote(struct app *a);
/* Frees the server's model list (at exit; a new list replaces the old one). */
void mx_app_picker_free(struct app *a);
/* The picker's draw and keys: mx_view_picker (view.h). */

#endif
