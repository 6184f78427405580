/* picker.c - the model picker: started without a model, mixel offers the GGUF files found on this
 * machine (app/discover.c), newest first; Enter loads one on the worker (load.c), Esc closes.
 */
#include "tui/picker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/discover.h"
#include "core/base/text.h"
#include "tui/load.h"
#include "tui/status.h"
#include "tui/style.h"

void mx_app_picker_open(struct app *a) {
    const char *home = getenv("HOME");
    char cwd[4096];
    const char *dir = getcwd(cwd, sizeof cwd) ? cwd : NULL;
    if (mx_discover_models(home, dir, &a->pick.models, NULL) == 0 && a->pick.models.n) {
        mx_discover_read_meta_all(&a->pick.models);
        a->pick.open = true;
    }
}

/* The model picker: the GGUF files found on this machine, newest first. */
static void picker_draw(struct app *a, int top, int left, int height, int width) {
    const char *head = "Choose a model: Up/Down, Enter loads it, Esc or q closes, / a command";
    mx_app_put_text(a, top, left, head, strlen(head), width, MX_ROLE_heading, MX_ATTR_BOLD);
    const char *hint = "(or start mixel with --model PATH.gguf; /model PATH loads any file)";
    mx_app_put_text(a, top + 1, left, hint, strlen(hint), width, MX_ROLE_muted, 0);
    int rows = height - 3;
    int first = a->pick.sel >= rows ? a->pick.sel - rows + 1 : 0;
    for (int r = 0; r < rows && first + r < (int)a->pick.models.n; r++) {
        const struct mx_model_entry *e = &a->pick.models.items[first + r];
        char desc[256], line[768], clean[MX_SANITIZE_MAX(768)];
        mx_discover_describe(e, desc, sizeof desc);
        snprintf(line, sizeof line, "  %s  \xc2\xb7 %s", e->name, desc);
        size_t n = mx_text_sanitize(line, strlen(line), clean, false);
        bool sel = first + r == a->pick.sel;
        if (sel) {
            attrset(mx_app_role_attr(a, MX_ROLE_selection, 0));
            mvhline(top + 3 + r, left, ' ', width);
        }
        mx_app_put_text(a, top + 3 + r, left, clean, n, width,
                        sel ? MX_ROLE_selection : MX_ROLE_normal, 0);
    }
}

static bool picker_focused(const struct app *a) {
    return a->pick.open && !a->load.busy; /* while a model loads, keys go to the input line */
}

/* Up/Down select, Enter loads the selection, Esc or q closes. "/" closes it too and is not
 * the picker's: the input line takes it, so a command typed here (/quit) is that command. Every
 * other key is the picker's; none reaches the chat (issue 15: "/quit" there sent "uit"). */
static int picker_key(struct app *a, const unsigned char *b, size_t n, size_t *used) {
    *used = mx_key_len(b, n);
    if (*used == 3 && (b[1] == '[' || b[1] == 'O') && (b[2] == 'A' || b[2] == 'B')) {
        a->pick.sel += b[2] == 'A' ? -1 : 1;
        if (a->pick.sel < 0)
            a->pick.sel = 0;
        if (a->pick.sel >= (int)a->pick.models.n)
            a->pick.sel = (int)a->pick.models.n - 1;
    } else if (b[0] == '\r' || b[0] == '\n') {
        if (a->pick.sel < (int)a->pick.models.n)
            mx_app_load_start(a, a->pick.models.items[a->pick.sel].path);
    } else if (b[0] == '/') {
        a->pick.open = false;
        return MX_KEY_REDRAW; /* not handled: the input line takes the "/" */
    } else if ((b[0] == 0x1b && *used == 1) || b[0] == 'q') {
        a->pick.open = false;
        mx_app_notice(a, false, "no model: /model PATH loads one");
        if (b[0] == 'q')
            *used = n; /* what was typed with the q is not a message either */
    }
    return MX_KEY_HANDLED | MX_KEY_REDRAW;
}

const struct mx_view_ops mx_view_picker = {
    .name = "picker", .focused = picker_focused, .draw = picker_draw, .key = picker_key,
};
