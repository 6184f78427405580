/* conv.c - the conversation model: the messages on screen, each kept as received (untrusted for
 * the model's answers) and rendered to styled lines on demand, once per text or width change, so
 * streaming a long answer re-renders only the growing message.
 */
#include "tui/conv.h"

#include <stdlib.h>
#include <string.h>

#include "core/base/err.h"
#include "core/base/text.h"
#include "core/image/image.h"
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

void mx_app_msg_free(struct msg *m) {
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
    char *clean = malloc(MX_SANITIZE_MAX(m->len));
    if (!clean)
        return;
    size_t n = mx_text_sanitize(m->text, m->len, clean, true);
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
