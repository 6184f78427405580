/* picker.h - the model picker: GGUF files found on this machine (picker.c). */
#ifndef MX_TUI_PICKER_H
#define MX_TUI_PICKER_H

#include "tui/app_int.h"
#include "tui/view.h"

/* Looks for models (no model given) and opens the picker when some are found. */
void mx_app_picker_open(struct app *a);
/* The picker's draw and keys: mx_view_picker (view.h). */

#endif
