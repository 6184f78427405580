/* picker.h - the model picker: GGUF files found on this machine (picker.c). */
#ifndef MX_TUI_PICKER_H
#define MX_TUI_PICKER_H

#include "tui/app_int.h"

/* Looks for models (no model given) and opens the picker when some are found. */
void mx_app_picker_open(struct app *a);
void mx_app_draw_picker(struct app *a, int top, int height, int width);
/* Keys while the picker is open. Returns bytes consumed. */
size_t mx_app_picker_key(struct app *a, const unsigned char *b, size_t n);

#endif
