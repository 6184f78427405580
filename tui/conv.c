/* conv.c - the conversation model: the messages on screen, each kept as received (untrusted for
 * the model's answers) and rendered to styled lines on demand, once per text or width change, so
 * streaming a long answer re-renders only the growing message.
 */
#include "tui/conv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/err.h"
#include "core/base/text.h"
#include "core/image/image.h"
#include "app/tools.h"
#include "tui/markdown.h"

struct msg *mx_app_msg_add(struct app *a, enum mx_role role, enum msg_state st,
                           const char *text) {
    if (a->conv.n_msgs == a->conv.cap_msgs) {
        int cap = a->conv.cap_msgs ? a->conv.cap_msgs * 2 : 16;
        struct msg *m = realloc(a->conv.msgs, (size_t)cap * sizeof *m);
        if (!m)
            return NULL;
        a->conv.msgs = m;
        a->conv.cap_msgs = cap;
    }
    struct msg *m = &a->conv.msgs[a->conv.n_msgs];
    memset(m, 0, sizeof *m);
    m->role = role;
    m->state = st;
    size_t len = text ? strlen(text) : 0;
    m->cap = len + 64;
    m->text = malloc(m->cap);
    if (!m->text)
        return NULL;
    memcpy(m->text, text ? text : "", len + 1);
    m->len = len;
    a->conv.n_msgs++;
    return m;
}

int mx_app_msg_append(struct msg *m, const char *s) {
    size_t n = strlen(s);
    if (m->len + n + 1 > m->cap) {
        size_t cap = (m->len + n + 1) * 2;
        char *t = realloc(m->text, cap);
        if (!t)
            return MX_ENOMEM;
        m->text = t;
        m->cap = cap;
    }
    memcpy(m->text + m->len, s, n + 1);
    m->len += n;
    return 0;
}

int mx_app_msg_append_reasoning(struct msg *m, const char *s) {
    size_t n = strlen(s);
    if (m->reasoning_len + n + 1 > m->reasoning_cap) {
        size_t cap = (m->reasoning_len + n + 1) * 2;
        char *t = realloc(m->reasoning, cap);
        if (!t)
            return MX_ENOMEM;
        m->reasoning = t;
        m->reasoning_cap = cap;
    }
    memcpy(m->reasoning + m->reasoning_len, s, n + 1);
    m->reasoning_len += n;
    return 0;
}

void mx_app_msg_free(struct msg *m) {
    free(m->reasoning);
    mx_rtext_free(&m->rr);
    free(m->tool_calls);
    free(m->tool_call_id);
    free(m->shown);
    free(m->image);
    mx_image_free(&m->img);
    free(m->sixel);
    mx_image_free(&m->blk);
    free(m->text);
    mx_rtext_free(&m->r);
}

void mx_app_conv_clear(struct app *a) {
    for (int i = 0; i < a->conv.n_msgs; i++)
        mx_app_msg_free(&a->conv.msgs[i]);
    a->conv.n_msgs = 0;
    a->conv.scroll = 0;
}

static const char no_model_banner[] =
    "No model is loaded. Start mixel with `mixel chat -m MODEL.gguf`, or see `mixel --help`. "
    "Type /help for commands, /quit to leave.";

void mx_app_conv_add_banner(struct app *a) {
    mx_app_msg_add(a, MX_ROLE_SYSTEM, MSG_NOTICE, no_model_banner);
}

void mx_app_conv_drop_banner(struct app *a) {
    int o = 0;
    for (int i = 0; i < a->conv.n_msgs; i++) {
        struct msg *m = &a->conv.msgs[i];
        if (m->state == MSG_NOTICE && m->text && !strcmp(m->text, no_model_banner))
            mx_app_msg_free(m);
        else
            a->conv.msgs[o++] = *m;
    }
    a->conv.n_msgs = o;
}

const char *mx_app_role_label(const struct msg *m) {
    switch (m->role) {
    case MX_ROLE_USER: return "You";
    case MX_ROLE_ASSISTANT: return "Assistant";
    case MX_ROLE_SYSTEM: return m->state == MSG_NOTICE ? "mixel" : "System";
    default: return "Tool";
    }
}

/* (Re)renders a message for `width` columns when its text or the width changed. */
void mx_app_msg_render(struct msg *m, int width) {
    if (m->r_valid && m->r_width == width && m->r_len == m->len)
        return;
    mx_rtext_free(&m->r);
    m->r_valid = false;
    const char *text = m->shown ? m->shown : m->text; /* folded tool calls: their lines */
    size_t len = m->shown ? strlen(m->shown) : m->len;
    char *clean = malloc(MX_SANITIZE_MAX(len));
    if (!clean)
        return;
    size_t n = mx_text_sanitize(text, len, clean, true);
    int base = m->role == MX_ROLE_USER        ? MX_ROLE_user
               : m->role == MX_ROLE_ASSISTANT ? MX_ROLE_assistant
               : m->state == MSG_NOTICE           ? MX_ROLE_muted
                                                  : MX_ROLE_system;
    if (mx_markdown_render(clean, n, width, base, &m->r) == 0) {
        m->r_valid = true;
        m->r_width = width;
        m->r_len = m->len;
    }
    free(clean);
}


struct msg *mx_app_streaming_msg(struct app *a) {
    for (int i = a->conv.n_msgs - 1; i >= 0; i--)
        if (a->conv.msgs[i].state == MSG_STREAMING)
            return &a->conv.msgs[i];
    return NULL;
}

void mx_app_input_give(struct app *a, const char *text) {
    size_t n = strlen(text), old = a->rl.next_text ? strlen(a->rl.next_text) : 0;
    char *t = malloc(old + n + 2);
    if (!t)
        return;
    if (old) { /* a second give before readline took the first: keep both, oldest first */
        memcpy(t, a->rl.next_text, old);
        t[old++] = '\n';
    }
    memcpy(t + old, text, n + 1);
    free(a->rl.next_text);
    a->rl.next_text = t;
}

/* ---- tool calls, folded ------------------------------------------------------------------- */

/* "1.2 KB" for n bytes. */
static void size_text(size_t n, char *buf, size_t size) {
    if (n < 1024)
        snprintf(buf, size, "%zu B", n);
    else if (n < 1024 * 1024)
        snprintf(buf, size, "%.1f KB", (double)n / 1024);
    else
        snprintf(buf, size, "%.1f MB", (double)n / (1024 * 1024));
}

/* The result message answering call id after message i (NULL: none yet). */
static struct msg *result_of(struct app *a, int i, const char *id) {
    for (int k = i + 1; k < a->conv.n_msgs; k++) {
        struct msg *r = &a->conv.msgs[k];
        if (r->role == MX_ROLE_USER)
            break;
        if (r->role == MX_ROLE_TOOL && r->tool_call_id && !strcmp(r->tool_call_id, id))
            return r;
    }
    return NULL;
}

/* Recomputes message i's folded text: its words, then one line per call with where it stands
 * ("→ 1.2 KB", "→ declined", "→ failed", the question, "running"). */
void mx_app_conv_fold(struct app *a, int i) {
    struct msg *m = &a->conv.msgs[i];
    struct mx_tool_calls c;
    if (!m->tool_calls || mx_tool_calls_from_json(m->tool_calls, &c, NULL) != 0)
        return;
    size_t cap = m->len + 64 + c.n_calls * 600, len = 0;
    char *s = malloc(cap);
    if (!s) {
        mx_tool_calls_free(&c);
        return;
    }
    s[0] = '\0';
    if (m->len)
        len += (size_t)snprintf(s + len, cap - len, "%s\n\n", m->text);
    for (size_t k = 0; k < c.n_calls; k++) {
        char line[300], status[200];
        mx_tool_call_line(c.calls[k].name, c.calls[k].arguments, 48, line, sizeof line);
        for (char *p = line; *p; p++) /* the line is a code span: no backtick may end it */
            if (*p == '`')
                *p = '\'';
        struct msg *r = result_of(a, i, c.calls[k].id);
        bool current = a->tools.msg == i && a->tools.next == k && a->tools.calls;
        if (r && !strcmp(r->text, MX_APP_TOOL_DECLINED)) {
            snprintf(status, sizeof status, " \xe2\x86\x92 declined");
        } else if (r && !strncmp(r->text, MX_APP_TOOL_ERROR, strlen(MX_APP_TOOL_ERROR))) {
            snprintf(status, sizeof status, " \xe2\x86\x92 failed");
        } else if (r) {
            char sz[32];
            size_text(r->len, sz, sizeof sz);
            snprintf(status, sizeof status, " \xe2\x86\x92 %s", sz);
        } else if (current && a->tools.asking) {
            snprintf(status, sizeof status, "  run it? **y** yes \xc2\xb7 **n** no \xc2\xb7 **a** "
                     "always (this session)");
        } else if (current) {
            snprintf(status, sizeof status, "  running\xe2\x80\xa6");
        } else {
            status[0] = '\0';
        }
        len += (size_t)snprintf(s + len, cap - len, "%s\xe2\x9a\x99 `%s`%s", k ? "\n" : "", line,
                                status);
    }
    free(m->shown);
    m->shown = s;
    m->r_valid = false;
    mx_tool_calls_free(&c);
}

void mx_app_conv_fold_all(struct app *a) {
    for (int i = 0; i < a->conv.n_msgs; i++) {
        struct msg *m = &a->conv.msgs[i];
        if (m->role == MX_ROLE_TOOL)
            m->hidden = true;
        else if (m->role == MX_ROLE_ASSISTANT && m->tool_calls)
            mx_app_conv_fold(a, i);
    }
}
