/* sidebar.c - the sessions sidebar (F2, /sessions): the saved sessions, newest first, the open
 * one marked; with the focus, Up/Down select, Enter opens, n starts a new one, d deletes (asks
 * first), r renames, Tab/Esc give the focus back to typing. Narrow terminals: it takes the pane.
 */
#include "tui/sidebar.h"

#include <stdio.h>
#include <string.h>

#include <readline/readline.h>

#include "core/base/text.h"
#include "history/db.h"
#include "tui/conv.h"
#include "tui/load.h"
#include "tui/status.h"
#include "tui/store.h"
#include "tui/style.h"

#define SIDEBAR_HELP \
    "sessions: Up/Down, Enter opens, n new, d delete, r rename, Tab or q back to typing, / a command"

/* The sessions list: newest first, the open one marked, the selection highlighted. */
static void sidebar_draw(struct app *a, int top, int left, int height, int width) {
    const char *head = a->side.confirm_delete ? "Delete? y/n" : "Sessions (F2)";
    mx_app_put_text(a, top, left, head, strlen(head), width,
                    a->side.confirm_delete ? MX_ROLE_warning : MX_ROLE_heading, MX_ATTR_BOLD);
    int rows = height - 1;
    int first = a->side.sel >= rows ? a->side.sel - rows + 1 : 0;
    for (int r = 0; r < rows && first + r < (int)a->side.sessions.n; r++) {
        const struct mx_session *ss = &a->side.sessions.v[first + r];
        char line[256], clean[MX_SANITIZE_MAX(256)];
        snprintf(line, sizeof line, "%s%s", ss->id == a->store.session ? "\xe2\x80\xa2 " : "  ",
                 ss->title[0] ? ss->title : "(untitled)");
        size_t n = mx_text_sanitize(line, strlen(line), clean, false);
        bool sel = first + r == a->side.sel && a->side.focus;
        if (sel) {
            attrset(mx_app_role_attr(a, MX_ROLE_selection, 0));
            mvhline(top + 1 + r, left, ' ', width);
        }
        mx_app_put_text(a, top + 1 + r, left, clean, n, width,
                        sel ? MX_ROLE_selection : MX_ROLE_normal, 0);
    }
    if (!a->side.sessions.n)
        mx_app_put_text(a, top + 1, left, "  (none yet)", 12, width, MX_ROLE_muted, 0);
}

void mx_app_sidebar_refresh(struct app *a) {
    mx_session_list_free(&a->side.sessions);
    memset(&a->side.sessions, 0, sizeof a->side.sessions);
    if (a->store.db)
        mx_db_session_list(a->store.db, 500, &a->side.sessions, NULL);
    if (a->side.sel >= (int)a->side.sessions.n)
        a->side.sel = a->side.sessions.n ? (int)a->side.sessions.n - 1 : 0;
    if (a->side.sel < 0)
        a->side.sel = 0;
}

void mx_app_sidebar_open(struct app *a) {
    if (!a->store.db) {
        mx_app_notice(a, true, "no history database: sessions are not saved");
        return;
    }
    a->side.open = true;
    a->side.focus = true;
    mx_app_sidebar_refresh(a);
    for (size_t i = 0; i < a->side.sessions.n; i++)
        if (a->side.sessions.v[i].id == a->store.session)
            a->side.sel = (int)i;
    mx_app_notice(a, false, SIDEBAR_HELP);
}

void mx_app_sidebar_toggle(struct app *a) {
    if (a->side.open && a->side.focus) { /* open but typing has the focus: F2 gives it back */
        a->side.open = a->side.focus = false;
        a->status.note[0] = '\0';
    } else {
        mx_app_sidebar_open(a);
    }
}

static bool sidebar_focused(const struct app *a) {
    return a->side.focus;
}

/* Gives the focus back to typing (the list stays open where there is room for both). */
static void sidebar_unfocus(struct app *a) {
    a->side.focus = false;
    a->status.note[0] = '\0';
    if (COLS < 70)
        a->side.open = false;
}

/* Keys while the list has the focus. Tab, q or Esc give it back to typing; "/" does too and is
 * not the list's: the input line takes it, so a command typed here (/quit) is that command.
 * Every other key is the list's (unknown ones say which keys are), and none reaches the chat:
 * what was typed with a q goes with it (issue 15: "/quit" here sent "uit" as a message). */
static int sidebar_key(struct app *a, const unsigned char *b, size_t n, size_t *used) {
    *used = mx_key_len(b, n);
    if (a->side.confirm_delete) {
        a->side.confirm_delete = false;
        if (b[0] == 'y' && a->side.sel < (int)a->side.sessions.n) {
            int64_t id = a->side.sessions.v[a->side.sel].id;
            struct mx_err err = {0};
            int rc = mx_db_session_delete(a->store.db, id, &err);
            if (rc != 0) {
                mx_app_store_warn(a, &err, rc);
            } else {
                if (id == a->store.session) {
                    mx_app_conv_clear(a);
                    a->store.session = 0;
                    a->store.title[0] = '\0';
                }
                mx_app_notice(a, false, "session deleted");
            }
            mx_app_sidebar_refresh(a);
        } else {
            mx_app_notice(a, false, "kept");
        }
        return MX_KEY_HANDLED | MX_KEY_REDRAW;
    }
    if (*used == 3 && (b[1] == '[' || b[1] == 'O') && (b[2] == 'A' || b[2] == 'B')) {
        a->side.sel += b[2] == 'A' ? -1 : 1;
        if (a->side.sel < 0)
            a->side.sel = 0;
        if (a->side.sel >= (int)a->side.sessions.n)
            a->side.sel = a->side.sessions.n ? (int)a->side.sessions.n - 1 : 0;
        return MX_KEY_HANDLED | MX_KEY_REDRAW;
    }
    if ((*used == 3 && b[1] == 'O' && b[2] == 'Q') ||
        (*used == 5 && !memcmp(b, "\033[12~", 5))) { /* F2 closes */
        a->side.open = a->side.focus = false;
        return MX_KEY_HANDLED | MX_KEY_REDRAW;
    }
    if (b[0] == 0x1b && *used > 1)
        return MX_KEY_HANDLED; /* another key's sequence: not the list's, not text either */
    switch (b[0]) {
    case '\r':
    case '\n':
        if (a->side.sel < (int)a->side.sessions.n && !a->gen.busy) {
            mx_app_session_load(a, a->side.sessions.v[a->side.sel].id);
            a->side.focus = false;
            if (COLS < 70)
                a->side.open = false;
            mx_app_notice(a, false, "resumed: %s",
                          a->store.title[0] ? a->store.title : "(untitled)");
            mx_app_load_session_model(a);
        }
        break;
    case 'n':
        mx_app_session_fresh(a, "new conversation");
        a->side.focus = false;
        break;
    case 'd':
        if (a->side.sessions.n)
            a->side.confirm_delete = true;
        break;
    case 'r':
        if (a->side.sel < (int)a->side.sessions.n && !a->gen.busy) {
            mx_app_session_load(a, a->side.sessions.v[a->side.sel].id);
            rl_replace_line("/title ", 0);
            rl_point = rl_end;
            a->side.focus = false;
        }
        break;
    case '/':
        sidebar_unfocus(a);
        return MX_KEY_REDRAW; /* not handled: the input line takes the "/" */
    case 'q':
        *used = n; /* what was typed with the q is not a message either */
        sidebar_unfocus(a);
        break;
    case '\t':
    case 0x1b:
        sidebar_unfocus(a);
        break;
    default:
        mx_app_notice(a, false, SIDEBAR_HELP);
        break;
    }
    return MX_KEY_HANDLED | MX_KEY_REDRAW;
}

const struct mx_view_ops mx_view_sidebar = {
    .name = "sidebar", .focused = sidebar_focused, .draw = sidebar_draw, .key = sidebar_key,
};
