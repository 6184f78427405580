/* picker.c - the model picker: started without a model, mixel offers the GGUF files found on this
 * machine (app/discover.c), newest first; Enter loads one on the worker (load.c), Esc closes. In a
 * chat over a server, /model with no argument lists the server's models first (opts.list_models)
 * and the local files below them, so one can switch either way.
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

/* Finds the GGUF files on this machine into a->pick.models (the last list dropped). */
static void picker_discover(struct app *a) {
    const char *home = getenv("HOME");
    char cwd[4096];
    const char *dir = getcwd(cwd, sizeof cwd) ? cwd : NULL;
    mx_model_list_free(&a->pick.models);
    memset(&a->pick.models, 0, sizeof a->pick.models);
    if (mx_discover_models(home, dir, &a->pick.models, NULL) == 0)
        mx_discover_read_meta_all(&a->pick.models);
}

void mx_app_picker_open(struct app *a) {
    picker_discover(a);
    a->pick.sel = 0;
    a->pick.open = a->pick.models.n + a->pick.n_remote > 0;
}

void mx_app_picker_free(struct app *a) {
    for (size_t i = 0; i < a->pick.n_remote; i++)
        free(a->pick.remote[i]);
    free(a->pick.remote);
    a->pick.remote = NULL;
    a->pick.n_remote = 0;
}

int mx_app_picker_open_remote(struct app *a) {
    if (!a->o.list_models)
        return 1;
    struct mx_err err = {0};
    char **paths = NULL;
    size_t n = 0;
    int rc = a->o.list_models(a->o.model_path, &paths, &n, &err);
    if (rc == 1)
        return 1;
    mx_app_picker_free(a);
    if (rc < 0) /* the local files are still offered: the server's failure is a notice */
        mx_app_notice(a, true, "%s", mx_err_msg(&err, rc));
    else if (n == 0)
        mx_app_notice(a, true, "the server lists no model");
    a->pick.remote = paths;
    a->pick.n_remote = n;
    mx_app_picker_open(a);
    for (size_t i = 0; i < n; i++) /* the model in use selected */
        if (a->o.model_path && !strcmp(paths[i], a->o.model_path))
            a->pick.sel = (int)i;
    return 0;
}

/* The number of entries (the server's, then the local ones). */
static int picker_count(const struct app *a) {
    return (int)(a->pick.n_remote + a->pick.models.n);
}

/* The loader path of entry i. */
static const char *picker_path(const struct app *a, int i) {
    return i < (int)a->pick.n_remote ? a->pick.remote[i]
                                     : a->pick.models.items[i - (int)a->pick.n_remote].path;
}

/* The screen line of entry i: with server models, a heading above each section. */
static int picker_line(const struct app *a, int i) {
    if (!a->pick.n_remote)
        return i;
    return i < (int)a->pick.n_remote ? i + 1 : i + 2;
}

/* Entry i's text: "* " marks the model in use; a server model shows its name and server. */
static void picker_text(const struct app *a, int i, char *line, size_t size) {
    const char *path = picker_path(a, i);
    const char *mark = a->o.model_path && !strcmp(a->o.model_path, path) ? "* " : "  ";
    if (i < (int)a->pick.n_remote) {
        const char *hash = strrchr(path, '#');
        int url_len = hash ? (int)(hash - path - 7) : (int)strlen(path + 7);
        snprintf(line, size, "%s%s  \xc2\xb7 %.*s", mark, hash ? hash + 1 : path + 7, url_len,
                 path + 7);
        return;
    }
    const struct mx_model_entry *e = &a->pick.models.items[i - (int)a->pick.n_remote];
    char desc[256];
    mx_discover_describe(e, desc, sizeof desc);
    snprintf(line, size, "%s%s  \xc2\xb7 %s", mark, e->name, desc);
}

/* The model picker: the server's models (if asked), then the GGUF files found on this machine,
 * newest first. */
static void picker_draw(struct app *a, int top, int left, int height, int width) {
    const char *head = "Choose a model: Up/Down, Enter loads it, Esc or q closes, / a command";
    mx_app_put_text(a, top, left, head, strlen(head), width, MX_ROLE_heading, MX_ATTR_BOLD);
    const char *hint = "(or start mixel with --model PATH.gguf; /model PATH loads any file)";
    mx_app_put_text(a, top + 1, left, hint, strlen(hint), width, MX_ROLE_muted, 0);
    int rows = height - 3;
    int first = picker_line(a, a->pick.sel) >= rows ? picker_line(a, a->pick.sel) - rows + 1 : 0;
    if (a->pick.n_remote) {
        const char *heads[2] = {"On the server:", "On this machine:"};
        int lines[2] = {0, (int)a->pick.n_remote + 1};
        for (int h = 0; h < (a->pick.models.n ? 2 : 1); h++)
            if (lines[h] >= first && lines[h] < first + rows)
                mx_app_put_text(a, top + 3 + lines[h] - first, left, heads[h], strlen(heads[h]),
                                width, MX_ROLE_heading, 0);
    }
    for (int i = 0; i < picker_count(a); i++) {
        int r = picker_line(a, i) - first;
        if (r < 0 || r >= rows)
            continue;
        char line[768], clean[MX_SANITIZE_MAX(768)];
        picker_text(a, i, line, sizeof line);
        size_t n = mx_text_sanitize(line, strlen(line), clean, false);
        bool sel = i == a->pick.sel;
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
        if (a->pick.sel >= picker_count(a))
            a->pick.sel = picker_count(a) - 1;
    } else if (b[0] == '\r' || b[0] == '\n') {
        if (a->pick.sel < picker_count(a))
            mx_app_load_start(a, picker_path(a, a->pick.sel));
    } else if (b[0] == '/') {
        a->pick.open = false;
        return MX_KEY_REDRAW; /* not handled: the input line takes the "/" */
    } else if ((b[0] == 0x1b && *used == 1) || b[0] == 'q') {
        a->pick.open = false;
        if (a->o.engine)
            mx_app_notice(a, false, "model: %s (kept)", a->o.engine->name);
        else
            mx_app_notice(a, false, "no model: /model PATH loads one");
        if (b[0] == 'q')
            *used = n; /* what was typed with the q is not a message either */
    }
    return MX_KEY_HANDLED | MX_KEY_REDRAW;
}

const struct mx_view_ops mx_view_picker = {
    .name = "picker", .focused = picker_focused, .draw = picker_draw, .key = picker_key,
};
