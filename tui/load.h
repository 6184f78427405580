/* load.h - loading a model on the worker thread (load.c). */
#ifndef MX_TUI_LOAD_H
#define MX_TUI_LOAD_H

#include "tui/app_int.h"

/* Starts loading the GGUF at path (notice on failure to start). */
void mx_app_load_start(struct app *a, const char *path);
/* The load job ended with code (msg: why it failed): switch engines, or say why not. */
void mx_app_load_finish(struct app *a, int code, const char *msg);
/* A session was opened (--resume, /resume, the sessions list). With no model loaded, loads the
 * one the session was made with, or says why it cannot (the file is gone); with another model
 * loaded (the user's choice, kept), says which model the session was made with. */
void mx_app_load_session_model(struct app *a);
/* Frees what the last load left (the path, an engine nobody took). At exit. */
void mx_app_load_deinit(void);

#endif
