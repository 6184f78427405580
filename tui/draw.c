/* draw.c - one frame: the layout (sidebar | conversation, picker or gallery; the rule; the
 * status bar; the input area), or the full-screen viewer, or a "too small" notice. Each frame is
 * drawn into curses' virtual screen and ncurses sends only the difference, so streaming a long
 * answer costs one markdown render of the growing message plus a diff per batch of tokens.
 *
 * Below the conversation: the rule, the status bar, the notice (wrapped, when there is one) and
 * the input. Sixels live outside curses' model of the screen: they are sent after refresh() at
 * the cells their views recorded in a->frame; when one moves or goes away, the rows it covered are
 * repainted so no ghost stays (../shared/TERMINALS.md has the pitfalls).
 */
#include "tui/draw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <readline/readline.h>

#include "tui/images.h"
#include "tui/input.h"
#include "tui/status.h"
#include "tui/style.h"
#include "tui/view.h"

void mx_app_draw(struct app *a) {
    int rows, cols;
    getmaxyx(stdscr, rows, cols);
    attrset(mx_app_role_attr(a, MX_ROLE_normal, 0));
    erase();
    struct placed old[16];
    int n_old = a->frame.n_placed;
    memcpy(old, a->frame.placed, sizeof old);
    a->frame.n_placed = 0;
    if (a->gal.viewer >= 0 && a->gal.viewer < a->conv.n_msgs && cols >= MIN_COLS &&
        rows >= MIN_ROWS) {
        mx_view_viewer.draw(a, 0, 0, rows, cols);
        curs_set(0);
        bool again =
            a->frame.full_repaint || n_old != 1 || old[0].msg != a->gal.viewer || old[0].rows != 0;
        if (again)
            for (int i = 0; i < n_old; i++)
                wredrawln(stdscr, old[i].y, old[i].rows ? old[i].rows : rows);
        refresh();
        a->frame.n_placed = 1;
        /* rows 0 marks the viewer */
        a->frame.placed[0] = (struct placed){.msg = a->gal.viewer, .box_cols = cols,
                                             .box_rows = rows - 2};
        if (a->img.gfx.mode == MX_GFX_SIXEL && again) {
            struct msg *m = &a->conv.msgs[a->gal.viewer];
            struct mx_bytes b = {0};
            struct mx_err err = {0};
            if (m->img.w && mx_app_encode_sixel(a, &m->img, cols, rows - 2, &b, &err) == 0) {
                mx_app_emit_at(a, 0, 0, b.p, b.n);
                fflush(stdout);
            }
            mx_bytes_free(&b);
        }
        a->frame.full_repaint = false;
        return;
    }
    curs_set(1);
    if (cols < MIN_COLS || rows < MIN_ROWS) {
        char msg[96];
        snprintf(msg, sizeof msg, "terminal too small (%dx%d, need %dx%d)", cols, rows, MIN_COLS,
                 MIN_ROWS);
        mvaddnstr(rows / 2, 0, msg, cols);
        refresh();
        return;
    }
    const char *buf = rl_line_buffer ? rl_line_buffer : "";
    int in_rows = mx_app_input_rows(buf, cols - 2);
    if (in_rows > INPUT_MAX_ROWS)
        in_rows = INPUT_MAX_ROWS;
    /* the notice, whole, above the input: at most a third of what the conversation would get */
    int note_rows = mx_app_notice_rows(a, cols);
    int note_max = (rows - in_rows - 2) / 3;
    if (note_rows > note_max)
        note_rows = note_max < 1 && note_rows ? 1 : note_max;
    int conv_h = rows - in_rows - 2 - note_rows;
    int side_w = 0;
    if (a->side.open) {
        side_w = cols >= 70 ? 28 : cols; /* narrow terminals: the list takes the whole pane */
        mx_view_sidebar.draw(a, 0, 0, conv_h, side_w == cols ? cols : side_w - 1);
        if (side_w < cols) {
            attrset(mx_app_role_attr(a, MX_ROLE_border, 0));
            for (int y = 0; y < conv_h; y++)
                mvaddstr(y, side_w - 1, "\xe2\x94\x82"); /* │ */
        }
    }
    /* the main pane: the picker or the gallery over the whole width, else the conversation */
    if (a->pick.open)
        mx_view_picker.draw(a, 0, 0, conv_h, cols);
    else if (a->fr.open)
        mx_view_firstrun.draw(a, 0, 0, conv_h, cols);
    else if (a->gal.open)
        mx_view_gallery.draw(a, 0, 0, conv_h, cols);
    else if (side_w < cols)
        mx_view_conversation.draw(a, 0, side_w, conv_h, cols - side_w);
    attrset(mx_app_role_attr(a, MX_ROLE_border, 0));
    move(conv_h, 0);
    for (int x = 0; x < cols; x++) /* U+2500: ACS line drawing breaks in some UTF-8 setups */
        addstr("\xe2\x94\x80");
    mx_app_draw_status(a, conv_h + 1, cols);
    mx_app_draw_notice(a, conv_h + 2, note_rows, cols);
    int cy, cx;
    mx_app_draw_input(a, conv_h + 2 + note_rows, in_rows, cols, &cy, &cx);
    move(cy, cx < cols ? cx : cols - 1);
    /* Sixels live outside curses' model of the screen: when one moves or goes away, the cells it
     * covered are repainted so no ghost stays, and it is sent again at its new place. */
    bool moved = a->frame.full_repaint || n_old != a->frame.n_placed ||
                 memcmp(old, a->frame.placed, (size_t)n_old * sizeof old[0]) != 0;
    if (moved)
        for (int i = 0; i < n_old; i++)
            wredrawln(stdscr, old[i].y, old[i].rows ? old[i].rows : rows);
    refresh();
    if (moved && a->frame.n_placed) {
        for (int i = 0; i < a->frame.n_placed; i++)
            mx_app_emit_sixel(a, &a->conv.msgs[a->frame.placed[i].msg], a->frame.placed[i].y,
                              a->frame.placed[i].x, a->frame.placed[i].box_cols,
                              a->frame.placed[i].box_rows);
        fflush(stdout);
    }
    a->frame.full_repaint = false;
}
