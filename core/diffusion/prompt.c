/* prompt.c - A1111 prompt attention syntax and CLIP chunking (see prompt.h).
 *
 * The parser is a hand-written scanner equal to A1111's re_attention regex run with finditer:
 * at each position the first alternative that matches wins (escapes, brackets, ":number)",
 * a text run, a lone ':'), and every byte is matched by one of them. Weights are doubles and are
 * multiplied in the same order as Python does, so equal-weight merging and the float32 weights
 * given to CLIP are bit-identical to A1111's. Prompts are short (hundreds of bytes); nothing
 * here is tuned for speed beyond being linear in the prompt for every realistic input.
 * Ref: https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/v1.10.1/modules/prompt_parser.py
 * Ref: https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/v1.10.1/modules/sd_hijack_clip.py
 */
#include "core/diffusion/prompt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/diffusion/embedding.h"

/* A segment while parsing: text not yet NUL-terminated, grown by merging. */
struct seg {
    char *text;    /* owned, len bytes (+1 for the NUL added at the end) */
    size_t len;    /* bytes of text */
    double weight; /* A1111 multiplier */
    float wf;      /* the same product in float32, as stable-diffusion.cpp computes it */
};

/* The parser's state. */
struct parser {
    struct seg *res;     /* [n] segments so far (A1111's res) */
    int64_t n, cap;
    int64_t *round;      /* [n_round] stack: index into res where each open '(' began */
    int64_t n_round, cap_round;
    int64_t *square;     /* [n_square] the same for '[' */
    int64_t n_square, cap_square;
};

/* Python's \s for the ASCII range: space, \t \n \v \f \r and the separators 0x1c..0x1f. */
static bool is_space(unsigned char c) {
    return c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x1f);
}

/* \w: ASCII letters, digits, '_'; bytes of non-ASCII characters count as word bytes. */
static bool is_word(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c >= 0x80;
}

static bool is_digit(unsigned char c) {
    return c >= '0' && c <= '9';
}

/* Appends a segment with a copy of s[0..len). Returns 0 or MX_ENOMEM. */
static int push_seg(struct parser *p, const char *s, size_t len, double weight) {
    if (p->n == p->cap) {
        int64_t cap = p->cap ? p->cap * 2 : 16;
        struct seg *r = realloc(p->res, (size_t)cap * sizeof *r);
        if (!r)
            return MX_ENOMEM;
        p->res = r;
        p->cap = cap;
    }
    char *t = malloc(len + 1);
    if (!t)
        return MX_ENOMEM;
    memcpy(t, s, len);
    t[len] = 0;
    p->res[p->n++] = (struct seg){.text = t, .len = len, .weight = weight, .wf = (float)weight};
    return 0;
}

/* Pushes v on a bracket stack. Returns 0 or MX_ENOMEM. */
static int push_pos(int64_t **st, int64_t *n, int64_t *cap, int64_t v) {
    if (*n == *cap) {
        int64_t c = *cap ? *cap * 2 : 16;
        int64_t *s = realloc(*st, (size_t)c * sizeof *s);
        if (!s)
            return MX_ENOMEM;
        *st = s;
        *cap = c;
    }
    (*st)[(*n)++] = v;
    return 0;
}

/* A1111 multiply_range: every segment from start on gets its weight multiplied by m (and its
 * float32 twin by mf). */
static void multiply_range(struct parser *p, int64_t start, double m, float mf) {
    for (int64_t i = start; i < p->n; i++) {
        p->res[i].weight *= m;
        p->res[i].wf *= mf;
    }
}

/* Finds the next match of A1111's re_break (\s*\bBREAK\b\s*) in s[0..len) at or after from.
 * Word boundaries look at the whole of s, as Python's re.split does on the run. Returns true
 * with the match in [*ms, *me). */
static bool find_break(const char *s, size_t len, size_t from, size_t *ms, size_t *me) {
    for (size_t q = from; q + 5 <= len; q++) {
        if (memcmp(s + q, "BREAK", 5) != 0)
            continue;
        if (q > 0 && is_word((unsigned char)s[q - 1]))
            continue;
        if (q + 5 < len && is_word((unsigned char)s[q + 5]))
            continue;
        size_t a = q;
        while (a > from && is_space((unsigned char)s[a - 1]))
            a--;
        size_t b = q + 5;
        while (b < len && is_space((unsigned char)s[b]))
            b++;
        *ms = a;
        *me = b;
        return true;
    }
    return false;
}

/* A1111's text branch: the run split at BREAK words, a ["BREAK", -1] between the parts. */
static int push_text(struct parser *p, const char *s, size_t len) {
    size_t prev = 0, ms, me;
    int rc;
    while (find_break(s, len, prev, &ms, &me)) {
        if ((rc = push_seg(p, s + prev, ms - prev, 1.0)) < 0 ||
            (rc = push_seg(p, "BREAK", 5, -1.0)) < 0)
            return rc;
        prev = me;
    }
    return push_seg(p, s + prev, len - prev, 1.0);
}

/* Python float() of the weight text s[0..len) ([+-]?[.\d]+). A malformed number (A1111 raises)
 * gives its longest valid prefix, as std::stod in stable-diffusion.cpp; no digit at all gives
 * 1. The digits are handed to strtod as "DIGITSe-N" (no decimal point, so the locale cannot
 * interfere), which rounds correctly like Python does. */
static double parse_weight(const char *s, size_t len, float *f) {
    char buf[400];
    size_t i = 0, k = 0;
    int exp10 = 0, n_digits = 0;
    bool dot = false;
    if (i < len && (s[i] == '+' || s[i] == '-'))
        buf[k++] = s[i++];
    for (; i < len; i++) {
        if (s[i] == '.') {
            if (dot)
                break;
            dot = true;
            continue;
        }
        if (!is_digit((unsigned char)s[i]))
            break;
        n_digits++;
        if (k < sizeof buf - 32) {
            buf[k++] = s[i];
            exp10 -= dot;
        } else if (!dot) {
            exp10++; /* a digit beyond what the buffer keeps: only its place value counts */
        }
    }
    *f = 1.0f;
    if (n_digits == 0)
        return 1.0;
    snprintf(buf + k, sizeof buf - k, "e%d", exp10);
    *f = strtof(buf, NULL); /* std::stof, rounded once (not via double) */
    return strtod(buf, NULL);
}

/* Matches ":\s*([+-]?[.\d]+)\s*\)" at s[i] (s[i] == ':'). Returns the end of the match (after
 * the ')') and the number's span in [*ws, *we), or 0 when it does not match. */
static size_t match_weight(const char *s, size_t n, size_t i, size_t *ws, size_t *we) {
    size_t k = i + 1;
    while (k < n && is_space((unsigned char)s[k]))
        k++;
    *ws = k;
    if (k < n && (s[k] == '+' || s[k] == '-'))
        k++;
    size_t d0 = k;
    while (k < n && (is_digit((unsigned char)s[k]) || s[k] == '.'))
        k++;
    if (k == d0)
        return 0;
    *we = k;
    while (k < n && is_space((unsigned char)s[k]))
        k++;
    if (k >= n || s[k] != ')')
        return 0;
    return k + 1;
}

static void parser_free(struct parser *p) {
    for (int64_t i = 0; i < p->n; i++)
        free(p->res[i].text);
    free(p->res);
    free(p->round);
    free(p->square);
}

/* A1111 parse_prompt_attention's main loop over the re_attention matches. */
static int scan(struct parser *p, const char *s, size_t n) {
    size_t i = 0;
    int rc = 0;
    while (i < n && rc == 0) {
        char c = s[i];
        if (c == '\\') {
            /* \( \) \[ \] \\ give the character; a lone backslash matches "\\" alone and
             * appends text[1:], the empty string */
            if (i + 1 < n && strchr("()[]\\", s[i + 1])) {
                rc = push_seg(p, s + i + 1, 1, 1.0);
                i += 2;
            } else {
                rc = push_seg(p, "", 0, 1.0);
                i += 1;
            }
        } else if (c == '(') {
            rc = push_pos(&p->round, &p->n_round, &p->cap_round, p->n);
            i++;
        } else if (c == '[') {
            rc = push_pos(&p->square, &p->n_square, &p->cap_square, p->n);
            i++;
        } else if (c == ':') {
            size_t ws, we, end = match_weight(s, n, i, &ws, &we);
            if (end && p->n_round > 0) {
                float f;
                double d = parse_weight(s + ws, we - ws, &f);
                multiply_range(p, p->round[--p->n_round], d, f);
            } else if (end) {
                rc = push_text(p, s + i, end - i);
            } else {
                rc = push_text(p, ":", 1);
                end = i + 1;
            }
            i = end;
        } else if (c == ')' || c == ']') {
            if (c == ')' && p->n_round > 0)
                multiply_range(p, p->round[--p->n_round], 1.1, 1.1f);
            else if (c == ']' && p->n_square > 0)
                multiply_range(p, p->square[--p->n_square], 1 / 1.1, 1.0f / 1.1f);
            else
                rc = push_text(p, s + i, 1);
            i++;
        } else {
            size_t j = i;
            while (j < n && !strchr("\\()[]:", s[j]))
                j++;
            rc = push_text(p, s + i, j - i);
            i = j;
        }
    }
    return rc;
}

int mx_sd_prompt_parse(const char *text, struct mx_sd_prompt *out, struct mx_err *err) {
    memset(out, 0, sizeof *out);
    struct parser p = {0};
    int rc = scan(&p, text, strlen(text));
    if (rc < 0)
        goto fail;
    /* unclosed brackets apply to everything after them, innermost last, as A1111 does */
    for (int64_t k = 0; k < p.n_round; k++)
        multiply_range(&p, p.round[k], 1.1, 1.1f);
    for (int64_t k = 0; k < p.n_square; k++)
        multiply_range(&p, p.square[k], 1 / 1.1, 1.0f / 1.1f);
    if (p.n == 0 && (rc = push_seg(&p, "", 0, 1.0)) < 0)
        goto fail;
    /* merge runs of identical weights (the group's weights all equal its first's) */
    int64_t w = 0;
    for (int64_t i = 0; i < p.n;) {
        int64_t j = i + 1;
        size_t len = p.res[i].len;
        while (j < p.n && p.res[j].weight == p.res[i].weight)
            len += p.res[j++].len;
        struct seg g = p.res[i];
        if (j > i + 1) {
            char *t = malloc(len + 1);
            if (!t) {
                for (int64_t k = i; k < p.n; k++)
                    free(p.res[k].text);
                p.n = w;
                rc = MX_ENOMEM;
                goto fail;
            }
            size_t at = 0;
            for (int64_t k = i; k < j; k++) {
                memcpy(t + at, p.res[k].text, p.res[k].len);
                at += p.res[k].len;
                free(p.res[k].text);
            }
            t[len] = 0;
            g.text = t;
            g.len = len;
        }
        p.res[w++] = g;
        i = j;
    }
    p.n = w;
    out->segs = calloc((size_t)p.n, sizeof *out->segs);
    if (!out->segs) {
        rc = MX_ENOMEM;
        goto fail;
    }
    for (int64_t i = 0; i < p.n; i++) {
        out->segs[i].text = p.res[i].text;
        out->segs[i].weight = p.res[i].weight;
        out->segs[i].weight_f = p.res[i].wf;
        out->segs[i].is_break = p.res[i].weight == -1.0 && !strcmp(p.res[i].text, "BREAK");
        p.res[i].text = NULL;
    }
    out->n = p.n;
    parser_free(&p);
    return 0;
fail:
    parser_free(&p);
    return mx_err_set(err, rc, "prompt: out of memory while parsing");
}

void mx_sd_prompt_deinit(struct mx_sd_prompt *p) {
    if (!p)
        return;
    for (int64_t i = 0; i < p->n; i++)
        free(p->segs[i].text);
    free(p->segs);
    p->segs = NULL;
    p->n = 0;
}

/* ---- chunks ----------------------------------------------------------------------------- */

/* A1111 tokenize_line's state: finished chunks and the one being filled. */
struct chunker {
    struct mx_sd_prompt_tokens *out;
    int64_t cap_chunks;              /* chunks out->ids/w have room for */
    int max_chunks;
    int32_t bos, eos, pad;
    int32_t tok[MX_SD_CHUNK_CONTENT]; /* the chunk being filled */
    float w[MX_SD_CHUNK_CONTENT];
    int n;                           /* tokens in it */
    int last_comma;                  /* index of the last comma in it, -1 none */
};

/* A1111 next_chunk(): closes the current chunk as BOS + tokens + EOS + pads. Returns 0,
 * MX_ERANGE past max_chunks, MX_ENOMEM. */
static int next_chunk(struct chunker *c, bool is_last, struct mx_err *err) {
    struct mx_sd_prompt_tokens *o = c->out;
    o->n_tokens += is_last ? c->n : MX_SD_CHUNK_CONTENT;
    if (o->n_chunks >= c->max_chunks)
        return mx_err_set(err, MX_ERANGE, "prompt: more than %d chunks of %d tokens (%d tokens)",
                          c->max_chunks, MX_SD_CHUNK_CONTENT,
                          c->max_chunks * MX_SD_CHUNK_CONTENT);
    if (o->n_chunks == c->cap_chunks) {
        int64_t cap = c->cap_chunks ? c->cap_chunks * 2 : 2;
        int32_t *ids = realloc(o->ids, (size_t)cap * MX_SD_CHUNK_LEN * sizeof *ids);
        if (ids)
            o->ids = ids;
        float *w = ids ? realloc(o->w, (size_t)cap * MX_SD_CHUNK_LEN * sizeof *w) : NULL;
        if (!ids || !w)
            return mx_err_set(err, MX_ENOMEM, "prompt: out of memory (%lld chunks)",
                              (long long)cap);
        o->w = w;
        c->cap_chunks = cap;
    }
    int32_t *ids = o->ids + o->n_chunks * MX_SD_CHUNK_LEN;
    float *w = o->w + o->n_chunks * MX_SD_CHUNK_LEN;
    ids[0] = c->bos;
    w[0] = 1.0f;
    for (int i = 0; i < c->n; i++) {
        ids[1 + i] = c->tok[i];
        w[1 + i] = c->w[i];
    }
    /* A1111 pads with EOS and then, where the pad id differs (OpenCLIP: 0), overwrites
     * everything after the first EOS with it; stable-diffusion.cpp does the same */
    ids[1 + c->n] = c->eos;
    w[1 + c->n] = 1.0f;
    for (int i = 2 + c->n; i < MX_SD_CHUNK_LEN; i++) {
        ids[i] = c->pad;
        w[i] = 1.0f;
    }
    o->n_chunks++;
    c->n = 0;
    c->last_comma = -1;
    return 0;
}

/* An embedding in a segment's item list: the item -(1 + j) is match j. */
struct emb_match {
    int64_t ref0;  /* its first vector in out->emb */
    int n_vec;
};

/* Adds one segment's tokens with their weight (the body of A1111's per-token loop). An id
 * -(1 + j) < 0 is embedding match m[j]: its vectors go in whole, in the next chunk when they
 * would not fit in this one (A1111). */
static int add_tokens(struct chunker *c, const int32_t *ids, size_t n, float weight,
                      int32_t comma, const struct emb_match *m, struct mx_err *err) {
    int rc;
    for (size_t k = 0; k < n; k++) {
        if (ids[k] == comma) {
            c->last_comma = c->n;
        } else if (c->n == MX_SD_CHUNK_CONTENT && c->last_comma != -1 &&
                   c->n - c->last_comma <= MX_SD_COMMA_BACKTRACK) {
            /* full, and a comma is near: the words after it move to the next chunk */
            int from = c->last_comma + 1, n_move = c->n - from;
            int32_t mt[MX_SD_CHUNK_CONTENT];
            float mw[MX_SD_CHUNK_CONTENT];
            memcpy(mt, c->tok + from, (size_t)n_move * sizeof *mt);
            memcpy(mw, c->w + from, (size_t)n_move * sizeof *mw);
            c->n = from;
            if ((rc = next_chunk(c, false, err)) < 0)
                return rc;
            memcpy(c->tok, mt, (size_t)n_move * sizeof *mt);
            memcpy(c->w, mw, (size_t)n_move * sizeof *mw);
            c->n = n_move;
        }
        if (c->n == MX_SD_CHUNK_CONTENT && (rc = next_chunk(c, false, err)) < 0)
            return rc;
        if (ids[k] < 0) {
            const struct emb_match *e = &m[-(ids[k] + 1)];
            if (c->n + e->n_vec > MX_SD_CHUNK_CONTENT && (rc = next_chunk(c, false, err)) < 0)
                return rc;
            for (int r = 0; r < e->n_vec; r++) {
                c->tok[c->n] = -(int32_t)(e->ref0 + r) - 1;
                c->w[c->n++] = weight;
            }
            continue;
        }
        c->tok[c->n] = ids[k];
        c->w[c->n++] = weight;
    }
    return 0;
}

/* ---- textual-inversion embeddings in a segment ------------------------------------------ */

/* The names of an embedding set, tokenized (A1111 matches them token by token). */
struct emb_names {
    int32_t **ids;   /* [n] each name's tokens (owned) */
    size_t *len;     /* [n] */
    int n;
};

/* Frees the tokenized names; nm may be zeroed. */
static void emb_names_free(struct emb_names *nm) {
    for (int i = 0; i < nm->n; i++)
        free(nm->ids[i]);
    free(nm->ids);
    free(nm->len);
    memset(nm, 0, sizeof *nm);
}

/* Tokenizes every name of db (none: nm stays empty). Returns 0, MX_ENOMEM or the tokenizer's
 * error. */
static int emb_names_init(struct emb_names *nm, const struct mx_tokenizer *tok,
                          const struct mx_sd_emb_db *db, struct mx_err *err) {
    memset(nm, 0, sizeof *nm);
    int n = mx_sd_emb_db_count(db);
    if (n == 0)
        return 0;
    nm->ids = calloc((size_t)n, sizeof *nm->ids);
    nm->len = calloc((size_t)n, sizeof *nm->len);
    if (!nm->ids || !nm->len) {
        emb_names_free(nm);
        return mx_err_set(err, MX_ENOMEM, "prompt: out of memory (embedding names)");
    }
    nm->n = n;
    for (int i = 0; i < n; i++) {
        const char *name = mx_sd_emb_db_name(db, i);
        int rc = mx_tokenizer_encode(tok, name, strlen(name), 0, &nm->ids[i], &nm->len[i], err);
        if (rc < 0) {
            emb_names_free(nm);
            return rc;
        }
    }
    return 0;
}

/* Items of one segment: token ids, and -(1 + j) for embedding match j (matches in *m). */
struct items {
    int32_t *v;
    size_t n, cap;
    struct emb_match *m;
    int n_m, cap_m;
};

/* Appends one item. Returns 0 or MX_ENOMEM. */
static int items_push(struct items *it, int32_t id) {
    if (it->n == it->cap) {
        size_t cap = it->cap ? it->cap * 2 : 64;
        int32_t *v = realloc(it->v, cap * sizeof *v);
        if (!v)
            return MX_ENOMEM;
        it->v = v;
        it->cap = cap;
    }
    it->v[it->n++] = id;
    return 0;
}

/* Appends embedding e as a match: its vectors become refs in out->emb. */
static int add_match(struct items *it, struct mx_sd_prompt_tokens *out,
                     const struct mx_sd_embedding *e, struct mx_err *err) {
    if (it->n_m == it->cap_m) {
        int cap = it->cap_m ? it->cap_m * 2 : 8;
        struct emb_match *m = realloc(it->m, (size_t)cap * sizeof *m);
        if (!m)
            return mx_err_set(err, MX_ENOMEM, "prompt: out of memory");
        it->m = m;
        it->cap_m = cap;
    }
    struct mx_sd_emb_ref *r = realloc(out->emb, (size_t)(out->n_emb + e->n_vec) * sizeof *r);
    if (!r)
        return mx_err_set(err, MX_ENOMEM, "prompt: out of memory");
    out->emb = r;
    for (int64_t k = 0; k < e->n_vec; k++)
        out->emb[out->n_emb + k] = (struct mx_sd_emb_ref){e, (int)k};
    it->m[it->n_m] = (struct emb_match){out->n_emb, (int)e->n_vec};
    out->n_emb += e->n_vec;
    if (items_push(it, -(it->n_m + 1)) < 0)
        return mx_err_set(err, MX_ENOMEM, "prompt: out of memory");
    it->n_m++;
    return 0;
}

/* Tokenizes text[0, len) into items, replacing runs of tokens equal to an embedding's name
 * (the longest that matches) with the embedding (A1111's find_embedding_at_position). */
static int add_text(struct items *it, const struct mx_tokenizer *tok, const char *text,
                    size_t len, struct mx_sd_emb_db *db, const struct emb_names *nm,
                    struct mx_sd_prompt_tokens *out, struct mx_err *err) {
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = mx_tokenizer_encode(tok, text, len, 0, &ids, &n, err);
    for (size_t p = 0; rc == 0 && p < n;) {
        int best = -1;
        for (int i = 0; i < nm->n; i++)
            if (nm->len[i] > 0 && nm->len[i] <= n - p &&
                (best < 0 || nm->len[i] > nm->len[best]) &&
                !memcmp(ids + p, nm->ids[i], nm->len[i] * sizeof *ids))
                best = i;
        if (best < 0) {
            if (items_push(it, ids[p++]) < 0)
                rc = mx_err_set(err, MX_ENOMEM, "prompt: out of memory");
            continue;
        }
        const char *name = mx_sd_emb_db_name(db, best);
        const struct mx_sd_embedding *e;
        if ((rc = mx_sd_emb_db_get(db, name, strlen(name), &e, err)) == 0)
            rc = add_match(it, out, e, err);
        p += nm->len[best];
    }
    free(ids);
    return rc;
}

/* True when "embedding:" starts a word at s (the start of the text or after a space). */
static bool comfy_at(const char *text, const char *s) {
    return !strncmp(s, "embedding:", 10) && (s == text || s[-1] == ' ' || s[-1] == '\t' ||
                                             s[-1] == '\n' || s[-1] == ',');
}

/* One segment's items: its text with ComfyUI's embedding:NAME words (NAME up to a space or a
 * comma) taken out as embeddings, the rest through add_text. */
static int segment_items(struct items *it, const struct mx_tokenizer *tok, const char *text,
                         struct mx_sd_emb_db *db, const struct emb_names *nm,
                         struct mx_sd_prompt_tokens *out, struct mx_err *err) {
    const char *s = text, *from = text;
    int rc = 0;
    for (; rc == 0 && *s; s++) {
        if (!comfy_at(text, s))
            continue;
        if (s > from && (rc = add_text(it, tok, from, (size_t)(s - from), db, nm, out, err)) < 0)
            break;
        const char *name = s + 10, *end = name;
        while (*end && *end != ' ' && *end != ',' && *end != '\t' && *end != '\n')
            end++;
        const struct mx_sd_embedding *e;
        if ((rc = mx_sd_emb_db_get(db, name, (size_t)(end - name), &e, err)) == 0)
            rc = add_match(it, out, e, err);
        from = end;
        s = end - 1;
    }
    if (rc == 0 && *from)
        rc = add_text(it, tok, from, strlen(from), db, nm, out, err);
    return rc;
}

int mx_sd_prompt_tokenize(const struct mx_tokenizer *tok, const char *prompt, int32_t pad_id,
                          int max_chunks, struct mx_sd_prompt_tokens *out, struct mx_err *err) {
    return mx_sd_prompt_tokenize_emb(tok, prompt, pad_id, max_chunks, NULL, out, err);
}

int mx_sd_prompt_tokenize_emb(const struct mx_tokenizer *tok, const char *prompt,
                              int32_t pad_id, int max_chunks, struct mx_sd_emb_db *db,
                              struct mx_sd_prompt_tokens *out, struct mx_err *err) {
    memset(out, 0, sizeof *out);
    struct chunker c = {.out = out, .max_chunks = max_chunks > 0 ? max_chunks : MX_SD_MAX_CHUNKS,
                        .bos = mx_tokenizer_bos(tok), .eos = mx_tokenizer_eos(tok),
                        .pad = pad_id, .last_comma = -1};
    if (c.bos == MX_TOK_NONE || c.eos == MX_TOK_NONE)
        return mx_err_set(err, MX_EINVAL, "prompt: the tokenizer has no BOS/EOS (not CLIP?)");
    size_t len = strlen(prompt);
    if (len > MX_SD_MAX_PROMPT_BYTES)
        return mx_err_set(err, MX_ERANGE, "prompt: %zu bytes, at most %d", len,
                          MX_SD_MAX_PROMPT_BYTES);
    int32_t comma = mx_tokenizer_find(tok, ",</w>", 5);
    if (comma == MX_TOK_NONE)
        comma = -2; /* no id equals it */
    struct mx_sd_prompt p;
    struct emb_names nm;
    int rc = emb_names_init(&nm, tok, db, err);
    if (rc < 0)
        return rc;
    if ((rc = mx_sd_prompt_parse(prompt, &p, err)) < 0) {
        emb_names_free(&nm);
        return rc;
    }
    for (int64_t i = 0; i < p.n && rc == 0; i++) {
        if (p.segs[i].is_break) {
            rc = next_chunk(&c, false, err);
            continue;
        }
        int32_t *ids = NULL;
        size_t n = 0;
        if (!db) {
            rc = mx_tokenizer_encode(tok, p.segs[i].text, strlen(p.segs[i].text), 0, &ids, &n,
                                     err);
            if (rc == 0)
                rc = add_tokens(&c, ids, n, p.segs[i].weight_f, comma, NULL, err);
            free(ids);
            continue;
        }
        struct items it = {0};
        rc = segment_items(&it, tok, p.segs[i].text, db, &nm, out, err);
        if (rc == 0)
            rc = add_tokens(&c, it.v, it.n, p.segs[i].weight_f, comma, it.m, err);
        free(it.v);
        free(it.m);
    }
    if (rc == 0 && (c.n > 0 || out->n_chunks == 0))
        rc = next_chunk(&c, true, err);
    mx_sd_prompt_deinit(&p);
    emb_names_free(&nm);
    if (rc < 0)
        mx_sd_prompt_tokens_deinit(out);
    return rc;
}

void mx_sd_prompt_tokens_deinit(struct mx_sd_prompt_tokens *t) {
    if (!t)
        return;
    free(t->ids);
    free(t->w);
    free(t->emb);
    memset(t, 0, sizeof *t);
}

/* ---- extra networks: <lora:NAME:W> ---------------------------------------------------------- */

void mx_sd_lora_tags_free(struct mx_sd_lora_tag *tags, int n) {
    for (int i = 0; tags && i < n; i++)
        free(tags[i].name);
    free(tags);
}

/* A weight argument: a whole number in float (strtof, as the peer reads it); false if not. */
static bool tag_weight(const char *s, size_t n, float *out) {
    char buf[64];
    if (n == 0 || n >= sizeof buf)
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    float v = strtof(buf, &end);
    while (*end == ' ')
        end++;
    if (end == buf || *end != '\0' || !isfinite(v))
        return false;
    *out = v;
    return true;
}

/* Parses the arguments of one tag body "NAME[:A[:B]]" (len n) into t. */
static int parse_tag(const char *body, size_t n, const char *tag, size_t tag_len,
                     struct mx_sd_lora_tag *t, struct mx_err *err) {
    const char *args[4];
    size_t lens[4];
    int na = 0;
    const char *s = body, *end = body + n;
    while (na < 4) {
        const char *c = memchr(s, ':', (size_t)(end - s));
        args[na] = s;
        lens[na++] = (size_t)((c ? c : end) - s);
        if (!c)
            break;
        s = c + 1;
    }
    if (na == 4 || lens[0] == 0)
        return mx_err_set(err, MX_EINVAL, "prompt: %.*s: expected <lora:NAME[:WEIGHT[:UNET "
                          "WEIGHT]]>", (int)tag_len, tag);
    bool have_te = false, have_unet = false;
    t->w_te = t->w_unet = 1.0f;
    int pos = 0;
    for (int i = 1; i < na; i++) {
        const char *a = args[i];
        size_t l = lens[i];
        float *dst;
        if (l > 3 && !strncmp(a, "te=", 3)) {
            dst = &t->w_te, a += 3, l -= 3, have_te = true;
        } else if (l > 5 && !strncmp(a, "unet=", 5)) {
            dst = &t->w_unet, a += 5, l -= 5, have_unet = true;
        } else if (pos == 0) {
            dst = &t->w_te, have_te = true, pos++;
        } else {
            dst = &t->w_unet, have_unet = true, pos++;
        }
        if (!tag_weight(a, l, dst))
            return mx_err_set(err, MX_EINVAL, "prompt: %.*s: bad weight \"%.*s\"",
                              (int)tag_len, tag, (int)l, a);
    }
    if (have_te && !have_unet)
        t->w_unet = t->w_te;
    if (!(t->name = strndup(args[0], lens[0])))
        return mx_err_set(err, MX_ENOMEM, "prompt: out of memory");
    return 0;
}

int mx_sd_prompt_loras(const char *text, char **stripped, struct mx_sd_lora_tag **tags, int *n,
                       struct mx_err *err) {
    *stripped = NULL;
    *tags = NULL;
    *n = 0;
    size_t len = strlen(text);
    char *out = malloc(len + 1);
    if (!out)
        return mx_err_set(err, MX_ENOMEM, "prompt: out of memory");
    size_t o = 0;
    int rc = 0, cap = 0;
    for (size_t i = 0; i < len;) {
        size_t kw = !strncmp(text + i, "<lora:", 6) ? 6 : !strncmp(text + i, "<lyco:", 6) ? 6 : 0;
        const char *close = kw ? strchr(text + i + kw, '>') : NULL;
        /* A1111's [^>]+ : a body of at least one character */
        if (!close || close == text + i + kw) {
            out[o++] = text[i++];
            continue;
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 4;
            struct mx_sd_lora_tag *t = realloc(*tags, (size_t)cap * sizeof *t);
            if (!t) {
                rc = mx_err_set(err, MX_ENOMEM, "prompt: out of memory");
                break;
            }
            *tags = t;
        }
        size_t tag_len = (size_t)(close - (text + i)) + 1;
        (*tags)[*n].name = NULL;
        if ((rc = parse_tag(text + i + kw, (size_t)(close - (text + i + kw)), text + i, tag_len,
                            &(*tags)[*n], err)) < 0)
            break;
        (*n)++;
        i += tag_len;
    }
    out[o] = '\0';
    if (rc < 0) {
        free(out);
        mx_sd_lora_tags_free(*tags, *n);
        *tags = NULL;
        *n = 0;
        return rc;
    }
    *stripped = out;
    return 0;
}
