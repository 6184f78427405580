/* sidebar.h - the sessions sidebar (F2, /sessions) (sidebar.c). */
#ifndef MX_TUI_SIDEBAR_H
#define MX_TUI_SIDEBAR_H

#include "tui/app_int.h"
#include "tui/view.h"

/* Re-reads the sessions list, keeping the selection in range. */
void mx_app_sidebar_refresh(struct app *a);
/* Opens the list with the focus, the current session selected. */
void mx_app_sidebar_open(struct app *a);
/* F2: opens with the focus; gives the focus back when open without it; else closes. */
void mx_app_sidebar_toggle(struct app *a);
/* The list's draw and keys: mx_view_sidebar (view.h). */

#endif
