/* tokenizer.c - the parts every tokenizer kind shares: building the vocabulary (hash map from
 * text to id, merge ranks, the special-token list), splitting a text on special tokens
 * (llama.cpp's tokenizer_st_partition), dispatching to SPM/BPE/CLIP, turning ids back into bytes
 * (llama_token_to_piece, llama_detokenize) and the streaming detokenizer. The algorithms live in
 * tok_spm.c, tok_bpe.c and tok_clip.c; reading a GGUF's tokenizer.ggml.* in tok_gguf.c; the
 * lookups they share (and this file's map slots) in tok_vocab.c.
 *
 * Workload: encode a prompt (up to a few hundred KB) per chat turn and decode one token at a
 * time while generating; building happens once at model load (32K-256K tokens).
 */
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/text/tok_internal.h"
#include "core/base/util.h"

/* ---- building ------------------------------------------------------------------------------- */

static size_t desc_len(const struct mx_tok_desc *d, int32_t i) {
    return d->token_lens ? d->token_lens[i] : strlen(d->tokens[i]);
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n)
        c *= 2;
    return c;
}

/* Orders the special-token list: longest text first (llama.cpp sorts by length; ties, which its
 * unstable sort leaves unspecified, go by id). Insertion sort: the list is short. */
static void sort_special(struct mx_tokenizer *t) {
    for (int32_t i = 1; i < t->n_special; i++) {
        int32_t v = t->special[i];
        int32_t j = i - 1;
        while (j >= 0) {
            int32_t u = t->special[j];
            uint32_t lu = t->vocab[u].len, lv = t->vocab[v].len;
            if (lu > lv || (lu == lv && u < v))
                break;
            t->special[j + 1] = u;
            j--;
        }
        t->special[j + 1] = v;
    }
}

/* A special id outside [0, n) is dropped with a warning, as llama.cpp does for bad metadata. */
static int32_t check_special(int32_t id, int32_t n, const char *what) {
    if (id == MX_TOK_NONE || (id >= 0 && id < n))
        return id;
    mx_log(MX_LOG_WARN, "tokenizer: %s id %d outside the vocabulary (%d tokens), ignored", what,
           id, n);
    return MX_TOK_NONE;
}

static void add_eog(struct mx_tokenizer *t, int32_t id) {
    if (id < 0 || t->n_eog == (int)MX_ARRAY_LEN(t->eog))
        return;
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id)
            return;
    t->eog[t->n_eog++] = id;
}

/* The token texts llama.cpp's llama_vocab::load treats as end of generation (its list, by text,
 * ref. llama.cpp issue 9606): such a token is made a control token when the file says otherwise,
 * so it is only matched as special text when special tokens are parsed. */
static const char *const eog_names[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>", "[e~[",
};

/* End-of-generation ids: eos, eot, and the tokens named in eog_names (llama.cpp finds the same
 * ones by name for files that do not set tokenizer.ggml.eot_token_id). gpt-oss's o200k_harmony
 * vocabulary ends a turn with <|return|> or <|call|>; its <|end|> only closes a channel (the
 * reasoning comes first), so with both of those present <|end|> is not an end, as in llama.cpp. */
static void find_eog(struct mx_tokenizer *t) {
    int32_t ret = mx_tokenizer_find(t, "<|return|>", 10);
    int32_t call = mx_tokenizer_find(t, "<|call|>", 8);
    bool harmony = ret >= 0 && call >= 0 && t->vocab[ret].type == MX_TOKT_CONTROL &&
                   t->vocab[call].type == MX_TOKT_CONTROL;
    add_eog(t, t->d.eos_id);
    add_eog(t, t->d.eot_id);
    if (t->d.kind == MX_TOK_CLIP)
        return;
    for (size_t i = 0; i < MX_ARRAY_LEN(eog_names); i++) {
        int32_t id = mx_tokenizer_find(t, eog_names[i], strlen(eog_names[i]));
        if (id >= 0 && t->vocab[id].type == MX_TOKT_CONTROL &&
            !(harmony && !strcmp(eog_names[i], "<|end|>")))
            add_eog(t, id);
    }
}

/* The id of text (NUL-terminated) or -1. */
static int32_t find_str(const struct mx_tokenizer *t, const char *text) {
    return mx_tokenizer_find(t, text, strlen(text));
}

static void set_rstrip(struct mx_tokenizer *t, const char *text, bool on) {
    int32_t id = find_str(t, text);
    if (id >= 0)
        t->vocab[id].rstrip = on;
}

/* Token types as llama.cpp's llama_vocab::load leaves them, whatever the file says: the
 * end-of-generation texts are control tokens; gpt-oss's <|channel|> <|message|> <|start|>
 * <|constrain|> are user-defined (always rendered); with <|return|> and <|call|> (or <|calls|>
 * and <|flush|>) <|end|> is user-defined and ends nothing; with <|tool_response> (gemma4) </s>
 * is normal text. */
static void fix_types(struct mx_tokenizer *t) {
    static const char *const harmony[] = {"<|channel|>", "<|message|>", "<|start|>",
                                          "<|constrain|>"};
    for (size_t i = 0; i < MX_ARRAY_LEN(eog_names); i++) {
        int32_t id = find_str(t, eog_names[i]);
        if (id >= 0)
            t->vocab[id].type = MX_TOKT_CONTROL;
    }
    for (size_t i = 0; i < MX_ARRAY_LEN(harmony); i++) {
        int32_t id = find_str(t, harmony[i]);
        if (id >= 0)
            t->vocab[id].type = MX_TOKT_USER_DEFINED;
    }
    int32_t end = find_str(t, "<|end|>");
    if (end >= 0 && ((find_str(t, "<|return|>") >= 0 && find_str(t, "<|call|>") >= 0) ||
                     (find_str(t, "<|calls|>") >= 0 && find_str(t, "<|flush|>") >= 0)))
        t->vocab[end].type = MX_TOKT_USER_DEFINED;
    int32_t s_end = find_str(t, "</s>");
    if (s_end >= 0 && find_str(t, "<|tool_response>") >= 0)
        t->vocab[s_end].type = MX_TOKT_NORMAL;
}

int mx_tokenizer_token_type(const struct mx_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab ? t->vocab[id].type : MX_TOKT_UNDEFINED;
}

const char *mx_tokenizer_token_text(const struct mx_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab)
        return NULL;
    if (len)
        *len = t->vocab[id].len;
    return t->vocab[id].text;
}

int mx_tokenizer_new(const struct mx_tok_desc *d, struct mx_tokenizer **out, struct mx_err *err) {
    *out = NULL;
    if (!d || d->n_tokens <= 0 || !d->tokens || (d->n_merges > 0 && !d->merges) ||
        d->n_merges < 0 || d->n_tokens > (1 << 28) || d->n_merges > (1 << 28))
        return mx_err_set(err, MX_EINVAL, "tokenizer: bad description (%d tokens, %d merges)",
                          d ? d->n_tokens : 0, d ? d->n_merges : 0);
    int rc = MX_ENOMEM;
    struct mx_tokenizer *t = calloc(1, sizeof(*t));
    if (!t)
        goto nomem;
    t->d = *d;
    t->d.tokens = NULL;
    t->d.token_lens = NULL;
    t->d.scores = NULL;
    t->d.types = NULL;
    t->d.merges = NULL;
    t->n_vocab = d->n_tokens;

    /* one string pool for every token and merge text */
    size_t pool = 0;
    for (int32_t i = 0; i < d->n_tokens; i++) {
        if (!d->tokens[i]) {
            rc = mx_err_set(err, MX_EFORMAT, "tokenizer: token %d has no text", i);
            goto fail;
        }
        size_t len = desc_len(d, i);
        if (len > MX_TOK_MAX_TEXT) {
            rc = mx_err_set(err, MX_EFORMAT, "tokenizer: token %d is %zu bytes long (max %d)", i,
                            len, MX_TOK_MAX_TEXT);
            goto fail;
        }
        pool += len + 1;
    }
    for (int32_t i = 0; i < d->n_merges; i++) {
        if (!d->merges[i]) {
            rc = mx_err_set(err, MX_EFORMAT, "tokenizer: merge %d has no text", i);
            goto fail;
        }
        size_t len = strlen(d->merges[i]);
        if (len > 2 * MX_TOK_MAX_TEXT) {
            rc = mx_err_set(err, MX_EFORMAT, "tokenizer: merge %d is %zu bytes long", i, len);
            goto fail;
        }
        pool += len + 1;
    }
    t->pool = malloc(pool ? pool : 1);
    t->vocab = calloc((size_t)d->n_tokens, sizeof(*t->vocab));
    t->map_cap = pow2_at_least((size_t)d->n_tokens * 2);
    t->map = malloc(t->map_cap * sizeof(int32_t));
    t->special = malloc((size_t)d->n_tokens * sizeof(int32_t));
    if (!t->pool || !t->vocab || !t->map || !t->special)
        goto nomem;
    memset(t->map, 0xff, t->map_cap * sizeof(int32_t));

    char *p = t->pool;
    for (int32_t i = 0; i < d->n_tokens; i++) {
        size_t len = desc_len(d, i);
        struct mx_tok_entry *e = &t->vocab[i];
        memcpy(p, d->tokens[i], len);
        p[len] = 0;
        e->text = p;
        e->len = (uint32_t)len;
        p += len + 1;
        e->score = d->scores ? d->scores[i] : 0.0f;
        e->type = d->types ? d->types[i] : MX_TOKT_NORMAL;
        if (e->type < MX_TOKT_UNDEFINED || e->type > MX_TOKT_BYTE)
            e->type = MX_TOKT_UNDEFINED;
        /* later ids win for duplicate texts, as llama.cpp's token_to_id[text] = id */
        t->map[mx_tok_map_slot(t, e->text, len)] = i;
    }
    if (d->kind != MX_TOK_CLIP)
        fix_types(t);
    for (int32_t i = 0; i < d->n_tokens; i++) {
        int ty = t->vocab[i].type;
        if ((ty == MX_TOKT_CONTROL || ty == MX_TOKT_USER_DEFINED || ty == MX_TOKT_UNKNOWN) &&
            t->vocab[i].len > 0)
            t->special[t->n_special++] = i;
    }
    sort_special(t);
    if (d->rstrip_special) { /* llama.cpp's rule for models named phi-3 */
        for (int32_t k = 0; k < t->n_special; k++)
            t->vocab[t->special[k]].rstrip = true;
        set_rstrip(t, "</s>", true);
        set_rstrip(t, "<unk>", false);
        set_rstrip(t, "<s>", false);
        set_rstrip(t, "<|endoftext|>", false);
    }

    if (d->n_merges > 0) {
        t->merges = calloc((size_t)d->n_merges, sizeof(*t->merges));
        t->mmap_cap = pow2_at_least((size_t)d->n_merges * 2);
        t->mmap_ = malloc(t->mmap_cap * sizeof(int32_t));
        if (!t->merges || !t->mmap_)
            goto nomem;
        memset(t->mmap_, 0xff, t->mmap_cap * sizeof(int32_t));
        for (int32_t i = 0; i < d->n_merges; i++) {
            size_t len = strlen(d->merges[i]);
            memcpy(p, d->merges[i], len + 1);
            /* llama.cpp splits at the first space after position 0; no space: ("", "") */
            char *sp = len > 1 ? memchr(p + 1, ' ', len - 1) : NULL;
            struct mx_tok_merge *m = &t->merges[t->n_merges];
            if (sp) {
                m->left = p;
                m->left_len = (uint32_t)(sp - p);
                m->right = sp + 1;
                m->right_len = (uint32_t)(len - m->left_len - 1);
            } else {
                m->left = m->right = p + len;
                m->left_len = m->right_len = 0;
            }
            p += len + 1;
            size_t slot = mx_tok_merge_slot(t, m->left, m->left_len, m->right, m->right_len);
            if (t->mmap_[slot] < 0) /* first rank wins (std::map::emplace) */
                t->mmap_[slot] = t->n_merges;
            t->n_merges++;
        }
    }

    t->d.bos_id = check_special(d->bos_id, t->n_vocab, "bos");
    t->d.eos_id = check_special(d->eos_id, t->n_vocab, "eos");
    t->d.unk_id = check_special(d->unk_id, t->n_vocab, "unknown");
    t->d.pad_id = check_special(d->pad_id, t->n_vocab, "padding");
    t->d.eot_id = check_special(d->eot_id, t->n_vocab, "eot");

    /* SPM byte fallback: <0xNN>, else the raw byte as a token (llama.cpp byte_to_token) */
    for (int b = 0; b < 256; b++) {
        static const char hex[] = "0123456789ABCDEF";
        char buf[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
        char raw = (char)b;
        int32_t id = mx_tokenizer_find(t, buf, 6);
        if (id < 0)
            id = mx_tokenizer_find(t, &raw, 1);
        t->byte_ids[b] = id;
    }
    find_eog(t);
    if (t->d.kind == MX_TOK_BPE && (rc = mx_tok_pretok_new(t->d.pre, &t->pretok, err)) < 0)
        goto fail;
    *out = t;
    return 0;
nomem:
    rc = mx_err_set(err, MX_ENOMEM, "tokenizer: out of memory (%d tokens, %d merges)",
                    d->n_tokens, d->n_merges);
fail:
    mx_tokenizer_free(t);
    return rc;
}

void mx_tokenizer_free(struct mx_tokenizer *t) {
    if (!t)
        return;
    free(t->vocab);
    free(t->pool);
    free(t->map);
    free(t->merges);
    free(t->mmap_);
    free(t->special);
    mx_tok_pretok_free(t->pretok);
    free(t);
}

/* ---- accessors ------------------------------------------------------------------------------ */

enum mx_tok_kind mx_tokenizer_kind(const struct mx_tokenizer *t) { return t->d.kind; }
int32_t mx_tokenizer_n_vocab(const struct mx_tokenizer *t) { return t->n_vocab; }
int32_t mx_tokenizer_bos(const struct mx_tokenizer *t) { return t->d.bos_id; }
int32_t mx_tokenizer_eos(const struct mx_tokenizer *t) { return t->d.eos_id; }
int32_t mx_tokenizer_unk(const struct mx_tokenizer *t) { return t->d.unk_id; }
int32_t mx_tokenizer_pad(const struct mx_tokenizer *t) { return t->d.pad_id; }
bool mx_tokenizer_add_bos(const struct mx_tokenizer *t) { return t->d.add_bos; }

bool mx_tokenizer_is_eog(const struct mx_tokenizer *t, int32_t id) {
    for (int i = 0; id >= 0 && id < t->n_vocab && i < t->n_eog; i++)
        if (t->eog[i] == id)
            return true;
    return false;
}

/* ---- encode --------------------------------------------------------------------------------- */

/* A piece of the input: raw text [off, off+len) or a special token. */
struct frag {
    size_t off, len;
    int32_t id; /* -1: text */
};

struct fragvec {
    struct frag *v;
    size_t n, cap;
};

static int frag_push(struct fragvec *fv, struct frag f) {
    if (fv->n == fv->cap) {
        size_t cap = fv->cap ? fv->cap * 2 : 16;
        struct frag *v = realloc(fv->v, cap * sizeof(*v));
        if (!v)
            return MX_ENOMEM;
        fv->v = v;
        fv->cap = cap;
    }
    fv->v[fv->n++] = f;
    return 0;
}

/* llama.cpp tokenizer_st_partition: for each special token, longest first, every text fragment
 * is cut at the token's occurrences (left to right, non-overlapping). Control and unknown tokens
 * take part only with parse_special; user-defined tokens always do. Returns 0 or MX_ENOMEM. */
static int partition(const struct mx_tokenizer *t, const char *text, size_t len,
                     bool parse_special, struct fragvec *fv) {
    struct fragvec tmp = {0};
    int rc = 0;
    if (len && (rc = frag_push(fv, (struct frag){0, len, -1})) < 0)
        return rc;
    for (int32_t k = 0; k < t->n_special && fv->n; k++) {
        int32_t sid = t->special[k];
        const struct mx_tok_entry *e = &t->vocab[sid];
        if (!parse_special && e->type != MX_TOKT_USER_DEFINED)
            continue;
        tmp.n = 0;
        for (size_t i = 0; i < fv->n; i++) {
            struct frag f = fv->v[i];
            if (f.id >= 0 || f.len < e->len) {
                if ((rc = frag_push(&tmp, f)) < 0)
                    goto out;
                continue;
            }
            size_t pos = f.off, end = f.off + f.len;
            for (;;) {
                const char *m = memmem(text + pos, end - pos, e->text, e->len);
                if (!m)
                    break;
                size_t at = (size_t)(m - text);
                if (at > pos && (rc = frag_push(&tmp, (struct frag){pos, at - pos, -1})) < 0)
                    goto out;
                if ((rc = frag_push(&tmp, (struct frag){0, 0, sid})) < 0)
                    goto out;
                pos = at + e->len;
                while (e->rstrip && pos < end && mx_is_space_ascii(text[pos]))
                    pos++;
            }
            if (pos < end && (rc = frag_push(&tmp, (struct frag){pos, end - pos, -1})) < 0)
                goto out;
        }
        struct fragvec sw = *fv;
        *fv = tmp;
        tmp = sw;
    }
out:
    free(tmp.v);
    return rc;
}

/* SPM text fragment: optional space prefix, spaces escaped to U+2581, then the merge loop. */
static int spm_text(const struct mx_tokenizer *t, const char *s, size_t len, bool prefix,
                    struct mx_idvec *out) {
    size_t n_sp = prefix ? 1 : 0;
    for (size_t i = 0; i < len; i++)
        n_sp += s[i] == ' ';
    size_t cap;
    if (!mx_mul_size(n_sp, 2, &cap) || !mx_add_size(cap, len + 1 + (prefix ? 1 : 0), &cap))
        return MX_ENOMEM;
    char *buf = malloc(cap);
    if (!buf)
        return MX_ENOMEM;
    size_t n = 0;
    if (prefix) {
        memcpy(buf, "\xe2\x96\x81", 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ') {
            memcpy(buf + n, "\xe2\x96\x81", 3);
            n += 3;
        } else {
            buf[n++] = s[i];
        }
    }
    int rc = mx_tok_spm_fragment(t, buf, n, out);
    free(buf);
    return rc;
}

int mx_tokenizer_encode(const struct mx_tokenizer *t, const char *text, size_t len,
                        unsigned flags, int32_t **ids, size_t *n_ids, struct mx_err *err) {
    struct mx_idvec out = {0};
    struct fragvec fv = {0};
    bool add_special = flags & MX_TOK_ADD_SPECIAL;
    int rc = 0;
    *ids = NULL;
    *n_ids = 0;
    if (!text)
        len = 0;

    if (add_special && t->d.add_bos && t->d.bos_id >= 0 && (rc = mx_idvec_push(&out, t->d.bos_id)))
        goto fail;
    if ((rc = partition(t, text, len, flags & MX_TOK_PARSE_SPECIAL, &fv)) < 0)
        goto fail;
    bool prev_special = true; /* SPM: the first fragment gets the space prefix too */
    for (size_t i = 0; i < fv.n; i++) {
        const struct frag *f = &fv.v[i];
        if (f->id >= 0) {
            rc = mx_idvec_push(&out, f->id);
            prev_special = true;
        } else if (t->d.kind == MX_TOK_SPM) {
            rc = spm_text(t, text + f->off, f->len, t->d.add_space_prefix && prev_special, &out);
            prev_special = false;
        } else if (t->d.kind == MX_TOK_BPE) {
            rc = mx_tok_bpe_fragment(t, text + f->off, f->len, &out);
        } else {
            rc = mx_tok_clip_text(t, text + f->off, f->len, &out);
        }
        if (rc < 0)
            goto fail;
    }
    if (add_special && t->d.add_eos && t->d.eos_id >= 0 && (rc = mx_idvec_push(&out, t->d.eos_id)))
        goto fail;
    if (out.n > INT32_MAX) {
        rc = mx_err_set(err, MX_ERANGE, "tokenize: %zu tokens is too many", out.n);
        goto fail;
    }
    free(fv.v);
    *ids = out.v;
    *n_ids = out.n;
    if (!out.n) {
        free(out.v);
        *ids = NULL;
    }
    return 0;
fail:
    free(fv.v);
    free(out.v);
    if (rc == MX_ENOMEM)
        mx_err_set(err, rc, "tokenize: out of memory (text of %zu bytes)", len);
    return rc;
}

/* ---- decode --------------------------------------------------------------------------------- */

/* Copies src[0..n) into buf (room cap), dropping one leading space when lstrip. Returns n. */
static size_t put(char *buf, size_t cap, size_t at, const char *src, size_t n) {
    if (at < cap)
        memcpy(buf + at, src, MX_MIN(n, cap - at));
    return n;
}

int mx_tokenizer_piece(const struct mx_tokenizer *t, int32_t id, unsigned flags, char *buf,
                       size_t cap) {
    if (id < 0 || id >= t->n_vocab)
        return MX_EINVAL;
    const struct mx_tok_entry *e = &t->vocab[id];
    bool special = flags & MX_DETOK_SPECIAL;
    bool lstrip = flags & MX_DETOK_LSTRIP;
    const char *s = e->text;
    size_t len = e->len, n = 0;

    if (e->type == MX_TOKT_CONTROL || e->type == MX_TOKT_UNKNOWN) {
        if (!special)
            return 0;
        goto raw;
    }
    if (e->type == MX_TOKT_USER_DEFINED)
        goto raw;

    /* SentencePiece-style BPE (gemma4) renders its pieces like SPM does */
    switch (t->d.kind == MX_TOK_BPE && t->d.escape_spaces ? MX_TOK_SPM : t->d.kind) {
    case MX_TOK_SPM:
        if (e->type == MX_TOKT_NORMAL) {
            /* U+2581 -> space */
            for (size_t i = 0; i < len;) {
                if (i + 3 <= len && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
                    if (!(lstrip && n == 0))
                        n += put(buf, cap, n, " ", 1);
                    i += 3;
                } else {
                    if (!(lstrip && n == 0 && s[i] == ' '))
                        n += put(buf, cap, n, s + i, 1);
                    i++;
                }
                lstrip = false;
            }
            return (int)n;
        }
        if (e->type == MX_TOKT_BYTE) {
            /* llama.cpp: strtol(text + 3, 16) of "<0xNN>" */
            unsigned v = 0;
            for (size_t i = 3; i < len && mx_hex_digit((unsigned char)s[i]) >= 0 && v < 256; i++)
                v = v * 16 + (unsigned)mx_hex_digit((unsigned char)s[i]);
            char c = (char)(v & 0xff);
            if (lstrip && c == ' ')
                return 0;
            return (int)put(buf, cap, 0, &c, 1);
        }
        return 0;
    case MX_TOK_BPE:
    case MX_TOK_CLIP: {
        if (e->type != MX_TOKT_NORMAL)
            return 0;
        size_t end = len;
        bool word_end = false;
        if (t->d.kind == MX_TOK_CLIP && len >= 4 && memcmp(s + len - 4, "</w>", 4) == 0) {
            end = len - 4;
            word_end = true;
        }
        for (size_t off = 0; off < end;) {
            size_t at = off;
            uint32_t cp = mx_utf8_next(s, end, &off);
            int b = mx_cp_to_byte(cp);
            if (b >= 0) {
                char c = (char)b;
                if (!(lstrip && n == 0 && c == ' '))
                    n += put(buf, cap, n, &c, 1);
            } else {
                /* not a byte-level char: pass its bytes through */
                n += put(buf, cap, n, s + at, off - at);
            }
            lstrip = false;
        }
        if (word_end && !(lstrip && n == 0))
            n += put(buf, cap, n, " ", 1);
        return (int)n;
    }
    }
    return 0;
raw:
    if (lstrip && len && s[0] == ' ') {
        s++;
        len--;
    }
    return (int)put(buf, cap, 0, s, len);
}

/* Appends the piece of id to a growable buffer. */
static int piece_append(const struct mx_tokenizer *t, int32_t id, unsigned flags, char **buf,
                        size_t *n, size_t *cap) {
    int k = mx_tokenizer_piece(t, id, flags, *buf ? *buf + *n : NULL, *cap - *n);
    if (k < 0)
        return k;
    if ((size_t)k > *cap - *n) {
        size_t want = MX_MAX(*cap * 2, *n + (size_t)k + 64);
        char *nb = realloc(*buf, want);
        if (!nb)
            return MX_ENOMEM;
        *buf = nb;
        *cap = want;
        k = mx_tokenizer_piece(t, id, flags, *buf + *n, *cap - *n);
    }
    *n += (size_t)k;
    return 0;
}

/* clean_up_tokenization_spaces as llama_detokenize does it, in place, in three passes over
 * single bytes: a space before ? ! . , goes; " ' " becomes "'"; the space before 's 'm 're 've
 * goes (not before 't 'd 'll). Returns the new length.
 * Ref: https://github.com/ggml-org/llama.cpp/blob/master/src/llama-vocab.cpp (detokenize) */
static size_t clean_spaces(char *text, size_t n) {
    if (n == 0)
        return 0;
    size_t total = 1;
    for (size_t i = 1; i < n; i++) { /* " ?", " !", " .", " ," */
        char x = text[i];
        if (text[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ','))
            total--;
        text[total++] = x;
    }
    size_t n2 = total;
    total = 1;
    for (size_t i = 1; i < n2; i++) { /* " ' " */
        char x = text[i];
        if (x == '\'' && i + 1 < n2 && text[i - 1] == ' ' && text[i + 1] == ' ') {
            total--;
            text[++i] = 0;
        }
        text[total++] = x;
    }
    size_t n3 = total;
    total = 1;
    for (size_t i = 1; i < n3; i++) { /* " 's", " 'm", " 're", " 've" */
        char x = text[i];
        if (text[i - 1] == ' ' && x == '\'' && i + 1 < n3) {
            char x1 = text[i + 1];
            if (x1 == 's' || x1 == 'm')
                total--;
            else if (i + 2 < n3 && ((x1 == 'r' && text[i + 2] == 'e') ||
                                    (x1 == 'v' && text[i + 2] == 'e')))
                total--;
        }
        text[total++] = x;
    }
    return total;
}

int mx_tokenizer_decode(const struct mx_tokenizer *t, const int32_t *ids, size_t n,
                        unsigned flags, char **text, size_t *len, struct mx_err *err) {
    char *buf = NULL;
    size_t bn = 0, cap = 0;
    bool remove_space = t->d.add_space_prefix;
    *text = NULL;
    *len = 0;
    if (flags & MX_DETOK_REMOVE_SPECIAL) {
        if (t->d.add_bos && n > 0 && ids[0] == t->d.bos_id) {
            remove_space = false;
            ids++;
            n--;
        }
        if (t->d.add_eos && n > 0 && ids[n - 1] == t->d.eos_id)
            n--;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned f = (flags & MX_DETOK_SPECIAL) | (remove_space ? MX_DETOK_LSTRIP : 0);
        int rc = piece_append(t, ids[i], f, &buf, &bn, &cap);
        remove_space = false;
        if (rc < 0) {
            free(buf);
            if (rc == MX_EINVAL)
                return mx_err_set(err, rc, "detokenize: token id %d at position %zu is outside "
                                  "the vocabulary (0..%d)", ids[i], i, t->n_vocab - 1);
            return mx_err_set(err, rc, "detokenize: out of memory");
        }
    }
    if (t->d.clean_spaces && !(flags & MX_DETOK_NO_CLEAN))
        bn = clean_spaces(buf, bn);
    char *res = realloc(buf, bn + 1);
    if (!res) {
        free(buf);
        return mx_err_set(err, MX_ENOMEM, "detokenize: out of memory");
    }
    res[bn] = 0;
    *text = res;
    *len = bn;
    return 0;
}

/* ---- streaming ------------------------------------------------------------------------------ */

void mx_detok_stream_init(struct mx_detok_stream *s, const struct mx_tokenizer *t, unsigned flags) {
    memset(s, 0, sizeof(*s));
    s->tok = t;
    s->flags = flags;
    s->first = true;
}

void mx_detok_stream_deinit(struct mx_detok_stream *s) {
    if (!s)
        return;
    free(s->buf);
    s->buf = NULL;
    s->cap = 0;
}

static int stream_reserve(struct mx_detok_stream *s, size_t need) {
    if (need <= s->cap)
        return 0;
    size_t cap = MX_MAX(need, s->cap * 2);
    char *b = realloc(s->buf, cap);
    if (!b)
        return MX_ENOMEM;
    s->buf = b;
    s->cap = cap;
    return 0;
}

/* Bytes a sequence led by c needs (0: c cannot start one) and the allowed range of its second
 * byte (Unicode's well-formed table: no overlongs, surrogates or > U+10FFFF). */
static int utf8_need(unsigned char c, unsigned char *lo, unsigned char *hi) {
    *lo = 0x80;
    *hi = 0xBF;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return 2;
    if (c >= 0xE0 && c <= 0xEF) {
        if (c == 0xE0)
            *lo = 0xA0;
        if (c == 0xED)
            *hi = 0x9F;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (c == 0xF0)
            *lo = 0x90;
        if (c == 0xF4)
            *hi = 0x8F;
        return 4;
    }
    return 0;
}

/* Moves complete, valid UTF-8 from in[0..n) to s->buf at *w (room reserved by the caller: 3
 * bytes per input byte); an incomplete tail goes to s->pend; invalid subparts become U+FFFD. */
static void stream_scan(struct mx_detok_stream *s, const unsigned char *in, size_t n, size_t *w,
                        bool final) {
    size_t i = 0;
    while (i < n) {
        unsigned char lo, hi;
        int need = utf8_need(in[i], &lo, &hi);
        if (need == 1) {
            s->buf[(*w)++] = (char)in[i++];
            continue;
        }
        if (need == 0) {
            memcpy(s->buf + *w, "\xef\xbf\xbd", 3);
            *w += 3;
            i++;
            continue;
        }
        /* how many bytes of the sequence are valid */
        int k = 1;
        while (k < need && i + (size_t)k < n) {
            unsigned char c = in[i + (size_t)k];
            unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
            if (c < l || c > h)
                break;
            k++;
        }
        if (k == need) {
            memcpy(s->buf + *w, in + i, (size_t)need);
            *w += (size_t)need;
            i += (size_t)need;
        } else if (i + (size_t)k == n && !final) {
            memcpy(s->pend, in + i, (size_t)k); /* may still complete */
            s->n_pend = k;
            return;
        } else {
            memcpy(s->buf + *w, "\xef\xbf\xbd", 3); /* maximal invalid subpart */
            *w += 3;
            i += (size_t)k;
        }
    }
}

static int stream_emit(struct mx_detok_stream *s, int32_t id, bool final, const char **out,
                       size_t *n) {
    *out = "";
    *n = 0;
    int plen = 0;
    unsigned pf = s->flags & MX_DETOK_SPECIAL;
    if (id >= 0) {
        if (s->first && (s->flags & MX_DETOK_LSTRIP) && s->tok->d.add_space_prefix)
            pf |= MX_DETOK_LSTRIP;
        plen = mx_tokenizer_piece(s->tok, id, pf, NULL, 0);
        if (plen < 0)
            return plen;
        s->first = false;
    }
    /* layout: [output: 3 bytes per input byte][input: pend + piece] */
    size_t in_n = (size_t)s->n_pend + (size_t)plen;
    size_t need;
    if (!mx_mul_size(in_n, 4, &need) || !mx_add_size(need, 8, &need))
        return MX_ENOMEM;
    if (stream_reserve(s, need) < 0)
        return MX_ENOMEM;
    unsigned char *in = (unsigned char *)s->buf + in_n * 3 + 4;
    memcpy(in, s->pend, (size_t)s->n_pend);
    if (plen > 0)
        mx_tokenizer_piece(s->tok, id, pf, (char *)in + s->n_pend, (size_t)plen);
    s->n_pend = 0;
    size_t w = 0;
    stream_scan(s, in, in_n, &w, final);
    *out = s->buf;
    *n = w;
    return 0;
}

int mx_detok_stream_push(struct mx_detok_stream *s, int32_t id, const char **out, size_t *n) {
    if (id < 0 || id >= s->tok->n_vocab) {
        *out = "";
        *n = 0;
        return MX_EINVAL;
    }
    return stream_emit(s, id, false, out, n);
}

int mx_detok_stream_flush(struct mx_detok_stream *s, const char **out, size_t *n) {
    return stream_emit(s, -1, true, out, n);
}
