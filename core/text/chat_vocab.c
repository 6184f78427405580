/* chat_vocab.c - model files to chat layer: template choice from GGUF metadata, the tokenizer
 * adapter and the vocabulary strings. See chat_vocab.h. */
#include "core/text/chat_vocab.h"

#include "core/base/bytes.h"

#include <stdlib.h>
#include <string.h>

int mx_chat_choose_template(const struct mx_gguf *g, const char *override_name,
                            struct mx_tmpl_choice *out, struct mx_err *err) {
    const char *tmpl = NULL, *arch = NULL;
    int rc;
    if (!g)
        return mx_err_set(err, MX_EINVAL, "chat template: no model");
    rc = mx_gguf_get_str(g, "tokenizer.chat_template", &tmpl, err);
    if (rc < 0 && rc != MX_ENOENT)
        return rc;
    rc = mx_gguf_get_str(g, "general.architecture", &arch, err);
    if (rc < 0 && rc != MX_ENOENT)
        return rc;
    return mx_tmpl_choose(override_name, tmpl, arch, out, err);
}

static int copy_token(char *dst, size_t cap, const struct mx_tokenizer *t, int32_t id,
                      const char *what, struct mx_err *err) {
    size_t len = 0;
    const char *s;
    dst[0] = '\0';
    if (id == MX_TOK_NONE)
        return 0;
    s = mx_tokenizer_token_text(t, id, &len);
    if (!s)
        return 0;
    if (len >= cap || memchr(s, '\0', len))
        return mx_err_set(err, MX_EFORMAT, "tokenizer: %s token %d text unusable (%zu bytes)",
                          what, (int)id, len);
    memcpy(dst, s, len);
    dst[len] = '\0';
    return 0;
}

int mx_chat_vocab_init(struct mx_chat_vocab *v, const struct mx_tokenizer *t, struct mx_err *err) {
    int rc;
    if (!v || !t)
        return mx_err_set(err, MX_EINVAL, "chat vocab: no tokenizer");
    memset(v, 0, sizeof(*v));
    rc = copy_token(v->bos, sizeof(v->bos), t, mx_tokenizer_bos(t), "BOS", err);
    if (rc == 0)
        rc = copy_token(v->eos, sizeof(v->eos), t, mx_tokenizer_eos(t), "EOS", err);
    if (rc < 0)
        return rc;
    v->add_bos = mx_tokenizer_add_bos(t);
    return 0;
}

void mx_chat_vocab_apply(const struct mx_chat_vocab *v, struct mx_tmpl_opts *opts) {
    if (!v || !opts)
        return;
    /* An empty BOS text means "none": the renderer then never finds one to strip. */
    opts->bos = v->bos;
    if (v->eos[0])
        opts->eos = v->eos;
    opts->model_add_bos = v->add_bos;
}

static int vocab_tokenize(void *ud, const char *text, size_t len, bool add_bos, int32_t **ids,
                          size_t *n_ids, struct mx_err *err) {
    const struct mx_tokenizer *t = ud;
    int32_t *v = NULL, bos = mx_tokenizer_bos(t);
    size_t n = 0;
    int rc = mx_tokenizer_encode(t, text, len, MX_TOK_PARSE_SPECIAL, &v, &n, err);
    if (rc < 0)
        return rc;
    if (add_bos && bos != MX_TOK_NONE) {
        int32_t *w = malloc((n + 1) * sizeof(*w));
        if (!w) {
            free(v);
            return mx_err_set(err, MX_ENOMEM, "tokenizer: out of memory (%zu ids)", n + 1);
        }
        w[0] = bos;
        if (n)
            memcpy(w + 1, v, n * sizeof(*w));
        free(v);
        v = w;
        n++;
    }
    *ids = v;
    *n_ids = n;
    return 0;
}

/* The text of ids as the streaming detokenizer gives it while generating (what the history
 * stores), specials as their text (prompts parse them), with the length after each id. */
static int vocab_text(void *ud, const int32_t *ids, size_t n, char **text, size_t **ends) {
    struct mx_detok_stream st;
    struct mx_bytes out = {0};
    size_t *e = malloc((n ? n : 1) * sizeof(*e));
    int rc = e ? 0 : MX_ENOMEM;
    mx_detok_stream_init(&st, ud, MX_DETOK_SPECIAL);
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *p;
        size_t k;
        rc = mx_detok_stream_push(&st, ids[i], &p, &k);
        if (rc == 0)
            rc = mx_bytes_add(&out, p, k);
        e[i] = out.n;
    }
    mx_detok_stream_deinit(&st);
    if (rc < 0) {
        free(e);
        mx_bytes_free(&out);
        return rc;
    }
    *text = out.p; /* NULL when nothing was added: no byte is read then */
    *ends = e;
    return 0;
}

struct mx_chat_tokenizer mx_chat_tokenizer_from(const struct mx_tokenizer *t) {
    struct mx_chat_tokenizer ct = {vocab_tokenize, (void *)(uintptr_t)t, vocab_text};
    return ct;
}
