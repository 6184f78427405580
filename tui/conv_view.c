/* conv_view.c - the conversation view: each message as a header line ("You", "Assistant", its
 * branch "◂ 2/3 ▸" and state), its rendered lines, its image rows and a blank separator; short
 * conversations sit at the bottom next to the input, long ones scroll (PgUp/PgDn).
 *
 * An answer with reasoning (a reasoning model's thinking, gpt-oss's analysis channel) gets one
 * folded line under its header, "▸ Reasoning · N words (F4 unfolds)"; unfolded (F4 again
 * folds), "▾ Reasoning (F4 folds)" and the reasoning's lines in the muted colour, before the
 * answer. The reasoning is never the answer: it is not stored, and the next turn's prompt does
 * not contain it.
 *
 * Sixels are not drawn here: the rows they take are left blank and their places recorded in
 * a->frame for draw.c to send after the frame (only when the whole image fits the pane).
 */
#include "tui/view.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/text.h"
#include "tui/conv.h"
#include "tui/markdown.h"
#include "tui/images.h"
#include "tui/style.h"

/* (Re)renders m's reasoning for width columns, muted, when it or the width changed. */
static void reasoning_render(struct msg *m, int width) {
    if (m->rr_valid && m->rr_width == width && m->rr_len == m->reasoning_len)
        return;
    mx_rtext_free(&m->rr);
    m->rr_valid = false;
    char *clean = malloc(MX_SANITIZE_MAX(m->reasoning_len));
    if (!clean)
        return;
    size_t n = mx_text_sanitize(m->reasoning, m->reasoning_len, clean, true);
    if (mx_markdown_render(clean, n, width, MX_ROLE_muted, &m->rr) == 0) {
        m->rr_valid = true;
        m->rr_width = width;
        m->rr_len = m->reasoning_len;
    }
    free(clean);
}

/* Lines the reasoning takes under the header: none, the folded line, or that line and the
 * reasoning's lines. */
static int reasoning_lines(struct app *a, struct msg *m, int width) {
    if (!m->reasoning || m->reasoning_len == 0)
        return 0;
    if (!a->conv.show_reasoning)
        return 1;
    reasoning_render(m, width);
    return 1 + (m->rr_valid ? (int)m->rr.n_lines : 0);
}

/* Lines a message takes: header + reasoning + rendered lines + image rows + a blank separator. */
static int msg_lines(struct app *a, struct msg *m, int width) {
    if (m->hidden) /* a tool result: shown on its call's line */
        return 0;
    return 1 + reasoning_lines(a, m, width) + (m->r_valid ? (int)m->r.n_lines : 0) +
           mx_app_img_rows(a, m, width, NULL) + 1;
}

/* Words of the reasoning (runs of non-space bytes), for the folded line. */
static size_t word_count(const char *s, size_t n) {
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\n' && s[i] != '\t' && (i == 0 || s[i - 1] == ' ' ||
                                                              s[i - 1] == '\n' || s[i - 1] == '\t'))
            w++;
    return w;
}

/* Line `line` of the reasoning block (0: the fold line). */
static void draw_reasoning_line(struct app *a, struct msg *m, int line, int y, int x0,
                                int width) {
    if (line == 0) {
        char t[96];
        int k = a->conv.show_reasoning
                    ? snprintf(t, sizeof t, "\xe2\x96\xbe Reasoning (F4 folds)") /* ▾ */
                    : snprintf(t, sizeof t, "\xe2\x96\xb8 Reasoning \xc2\xb7 %zu words (F4 "
                               "unfolds)", word_count(m->reasoning, m->reasoning_len)); /* ▸ · */
        mx_app_put_text(a, y, x0, t, (size_t)k, width, MX_ROLE_muted, 0);
        return;
    }
    const struct mx_rline *l = &m->rr.lines[line - 1];
    mx_app_put_text(a, y, x0, l->text, l->len, width, MX_ROLE_muted, 0);
}

static void draw_msg_line(struct app *a, struct msg *m, int line, int y, int x0, int width) {
    if (line == 0) {
        int role = m->role == MX_ROLE_USER ? MX_ROLE_user
                   : m->role == MX_ROLE_ASSISTANT ? MX_ROLE_heading : MX_ROLE_muted;
        const char *label = mx_app_role_label(m);
        int x = mx_app_put_text(a, y, x0, label, strlen(label), width, role, MX_ATTR_BOLD);
        if (m->sib_count > 1) {
            char sib[48];
            int k = snprintf(sib, sizeof sib, "  \xe2\x97\x82 %d/%d \xe2\x96\xb8", m->sib_index,
                             m->sib_count); /* ◂ 2/3 ▸ */
            x += mx_app_put_text(a, y, x0 + x, sib, (size_t)k, width - x, MX_ROLE_muted, 0);
        }
        const char *tag = m->state == MSG_STREAMING ? "  \xe2\x80\xa6" /* … */
                          : m->state == MSG_STOPPED ? "  [stopped]"
                          : m->state == MSG_FAILED  ? "  [failed]"
                          : m->state == MSG_QUEUED  ? "  [queued: sent when the answer ends]"
                          : m->state == MSG_TRUNCATED ? "  [cut: the context is full]" : "";
        mx_app_put_text(a, y, x0 + x, tag, strlen(tag), width - x,
                 m->state == MSG_FAILED ? MX_ROLE_error : MX_ROLE_muted, 0);
        return;
    }
    line--;
    int n_reason = reasoning_lines(a, m, width);
    if (line < n_reason) {
        draw_reasoning_line(a, m, line, y, x0, width);
        return;
    }
    line -= n_reason;
    int n_text = m->r_valid ? (int)m->r.n_lines : 0;
    if (line >= n_text) {
        if (a->img.gfx.mode == MX_GFX_BLOCKS)
            mx_app_draw_block_row(a, m, line - n_text, y, x0, width);
        return;
    }
    const struct mx_rline *l = &m->r.lines[line];
    int x = 0;
    size_t i = 0;
    while (i < l->len && x < width) {
        size_t j = i + 1;
        while (j < l->len && l->role[j] == l->role[i] && l->attrs[j] == l->attrs[i])
            j++;
        x += mx_app_put_text(a, y, x0 + x, l->text + i, j - i, width - x, l->role[i], l->attrs[i]);
        i = j;
    }
}

/* Message i of what the view shows: the conversation, then a queued message (gen.c). */
static struct msg *shown_msg(struct app *a, int i) {
    return i < a->conv.n_msgs ? &a->conv.msgs[i] : &a->gen.queued;
}

static void conversation_draw(struct app *a, int top, int left, int height, int width) {
    int n_shown = a->conv.n_msgs + (a->gen.queued.text ? 1 : 0);
    int total = 0;
    for (int i = 0; i < n_shown; i++) {
        mx_app_msg_render(shown_msg(a, i), width);
        total += msg_lines(a, shown_msg(a, i), width);
    }
    int max_scroll = total > height ? total - height : 0;
    if (a->conv.scroll > max_scroll)
        a->conv.scroll = max_scroll;
    int first = total - height - a->conv.scroll; /* first visible line index (may be < 0) */
    int y = top, idx = 0;
    if (first < 0) {
        y += -first; /* short conversations sit at the bottom, next to the input */
        first = 0;
    }
    a->frame.n_placed = 0;
    for (int i = 0; i < n_shown && y < top + height; i++) {
        struct msg *m = shown_msg(a, i);
        int n = msg_lines(a, m, width);
        int n_text = (m->r_valid ? (int)m->r.n_lines : 0) + reasoning_lines(a, m, width);
        int n_img = n - n_text - 2;
        for (int l = 0; l < n && y < top + height; l++, idx++) {
            if (idx < first)
                continue;
            /* a sixel is sent only when the whole image fits the pane (never half an image) */
            if (n_img > 0 && l == 1 + n_text && y + n_img <= top + height &&
                a->img.gfx.mode == MX_GFX_SIXEL && a->frame.n_placed < 16) {
                a->frame.placed[a->frame.n_placed].msg = i;
                a->frame.placed[a->frame.n_placed].y = y;
                a->frame.placed[a->frame.n_placed].x = left;
                a->frame.placed[a->frame.n_placed].rows = n_img;
                a->frame.placed[a->frame.n_placed].box_cols = width;
                a->frame.placed[a->frame.n_placed].box_rows = IMAGE_ROWS;
                a->frame.n_placed++;
            }
            if (l < n - 1)
                draw_msg_line(a, m, l, y, left, width);
            y++;
        }
    }
    if (a->conv.scroll > 0) {
        char more[64];
        int k = snprintf(more, sizeof more, " \xe2\x86\x93 %d more (PgDn) ", a->conv.scroll);
        mx_app_put_text(a, top + height - 1, left + width - mx_text_width(more, (size_t)k), more,
                 (size_t)k, width, MX_ROLE_status, 0);
    }
}

/* The conversation takes no keys of its own: the input line has them (PgUp/PgDn are keys.h's). */
const struct mx_view_ops mx_view_conversation = {
    .name = "conversation", .draw = conversation_draw,
};
