/* arch_drv.c - mixel's engine against llama.cpp's output for one model, for tests/arch_peer.sh.
 *
 * usage: arch_drv MODEL GOLDEN TOL [strict|forced]
 *   GOLDEN is what the peer driver printed (`llref MODEL eval -n N`, see
 *   ../shared/tools/peer-llama/llref.c): per prompt a "TOK ids" line, "LOGITS <pos> v..." for every
 *   prompt position, then "GEN <id> <top1> <top2>" and "TOP id:logit x5" per greedy step, and
 *   "TEXT <hex>" (the generated text). The prompt ids are taken from TOK (so this checks the
 *   network, not the tokenizer; the model's SentencePiece vocabulary is checked elsewhere).
 *
 * Checks, with an F32 KV cache like the goldens: every prompt row's logits within TOL of the
 * peer's (max |diff| over the vocabulary); then the greedy steps one token at a time:
 *   strict  our argmax is fed back; it must equal the peer's id at every step, the TOP logits
 *           must be within TOL, and our detokenized text must equal TEXT byte for byte;
 *   forced  the peer's id is fed back (teacher forcing, for quantized weights, whose greedy
 *           paths may part where the peer's top-2 margin is inside rounding noise): the TOP
 *           logits within TOL, and our argmax equal to the peer's wherever its margin > TOL.
 * Prints one line per prompt with the worst differences. Exit 0 pass, 1 fail, 2 usage/IO.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/format/gguf.h"
#include "core/llm/llama.h"
#include "core/text/tokenizer.h"
#include "kernels/backend.h"

/* One prompt of the golden. */
struct rec {
    int32_t *ids;      /* TOK */
    int n_ids;
    float *logits;     /* n_ids * n_vocab */
    int n_rows;
    int32_t *gen;      /* GEN ids */
    float *top1, *top2;/* GEN top-1 / top-2 logits */
    int32_t *top_id;   /* TOP: 5 ids per step */
    float *top_v;      /* TOP: their logits */
    int n_gen, n_top;
    char *text;        /* TEXT decoded from hex */
    size_t text_len;
};

/* Grows *p to hold n elements of size sz (doubling); exits on OOM (a test driver). */
static void *grow(void *p, size_t n, size_t sz) {
    void *q = realloc(p, n * sz);
    if (!q) {
        fprintf(stderr, "arch_drv: out of memory\n");
        exit(2);
    }
    return q;
}

/* Parses the llref lines of one golden file into recs; returns the count. */
static int parse(FILE *f, int32_t n_vocab, struct rec **out) {
    struct rec *r = NULL;
    int n = 0;
    size_t cap = 1 << 16;
    char *line = malloc(cap);
    while (line && fgets(line, (int)cap, f)) {
        while (!strchr(line, '\n') && !feof(f)) { /* long LOGITS lines */
            size_t l = strlen(line);
            line = grow(line, cap * 2, 1);
            cap *= 2;
            if (!fgets(line + l, (int)(cap - l), f))
                break;
        }
        char *p = line, *e;
        if (!strncmp(p, "TOK", 3)) {
            r = grow(r, (size_t)n + 1, sizeof *r);
            struct rec *c = &r[n++];
            memset(c, 0, sizeof *c);
            p += 3;
            for (long v; (v = strtol(p, &e, 10)), e != p; p = e) {
                c->ids = grow(c->ids, (size_t)c->n_ids + 1, sizeof *c->ids);
                c->ids[c->n_ids++] = (int32_t)v;
            }
            c->logits = grow(NULL, (size_t)c->n_ids * (size_t)n_vocab, sizeof(float));
        } else if (n && !strncmp(p, "LOGITS", 6)) {
            struct rec *c = &r[n - 1];
            long row = strtol(p + 6, &e, 10);
            if (row != c->n_rows || row >= c->n_ids)
                return -1;
            p = e;
            for (int32_t j = 0; j < n_vocab; j++, p = e) {
                c->logits[(size_t)row * (size_t)n_vocab + (size_t)j] = strtof(p, &e);
                if (e == p)
                    return -1;
            }
            c->n_rows++;
        } else if (n && !strncmp(p, "GEN", 3)) {
            struct rec *c = &r[n - 1];
            size_t k = (size_t)c->n_gen + 1;
            c->gen = grow(c->gen, k, sizeof *c->gen);
            c->top1 = grow(c->top1, k, sizeof *c->top1);
            c->top2 = grow(c->top2, k, sizeof *c->top2);
            c->gen[c->n_gen] = (int32_t)strtol(p + 3, &e, 10);
            c->top1[c->n_gen] = strtof(e, &e);
            c->top2[c->n_gen] = strtof(e, &e);
            c->n_gen++;
        } else if (n && !strncmp(p, "TOP", 3)) {
            struct rec *c = &r[n - 1];
            size_t k = ((size_t)c->n_top + 1) * 5;
            c->top_id = grow(c->top_id, k, sizeof *c->top_id);
            c->top_v = grow(c->top_v, k, sizeof *c->top_v);
            p += 3;
            for (int i = 0; i < 5; i++) {
                c->top_id[c->n_top * 5 + i] = (int32_t)strtol(p, &e, 10);
                c->top_v[c->n_top * 5 + i] = strtof(e + 1, &p);
            }
            c->n_top++;
        } else if (n && !strncmp(p, "TEXT", 4)) {
            struct rec *c = &r[n - 1];
            p += 4;
            while (*p == ' ')
                p++;
            size_t h = strcspn(p, "\n");
            c->text = grow(NULL, h / 2 + 1, 1);
            for (size_t i = 0; i + 1 < h; i += 2) {
                unsigned b;
                sscanf(p + i, "%2x", &b);
                c->text[c->text_len++] = (char)b;
            }
        }
    }
    free(line);
    *out = r;
    return n;
}

static int argmax(const float *l, int32_t n) {
    int b = 0;
    for (int j = 1; j < n; j++)
        if (l[j] > l[b])
            b = j;
    return b;
}

/* Where decode hands each prompt row: compared against the golden row as it comes. */
struct cmp {
    const struct rec *r;
    int32_t n_vocab;
    double worst;
};

static int on_row(void *ud, int64_t i, const float *l) {
    struct cmp *c = ud;
    const float *g = c->r->logits + (size_t)i * (size_t)c->n_vocab;
    for (int32_t j = 0; j < c->n_vocab; j++) {
        double d = fabs((double)l[j] - g[j]);
        if (!(d <= c->worst))
            c->worst = isnan(d) ? INFINITY : d;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: arch_drv MODEL GOLDEN TOL [strict|forced]\n");
        return 2;
    }
    double tol = atof(argv[3]);
    bool strict = argc < 5 || strcmp(argv[4], "forced") != 0;
    struct mx_err err = {0};
    struct mx_backend *be = mx_backend_cpu_new(2, &err);
    struct mx_llama_model *m = NULL;
    struct mx_llama_ctx *ctx = NULL;
    struct mx_tokenizer *tok = NULL;
    int rc = be ? mx_llama_model_load(argv[1], be, &m, &err) : -1;
    if (rc < 0) {
        fprintf(stderr, "arch_drv: %s\n", err.msg);
        mx_backend_free(be);
        return 1;
    }
    struct mx_llama_ctx_params cp;
    mx_llama_ctx_params_default(&cp);
    cp.n_ctx = 512;
    cp.kv_type = MX_TYPE_F32;
    if ((rc = mx_llama_ctx_new(m, &cp, &ctx, &err)) < 0 ||
        (rc = mx_tokenizer_from_gguf(mx_llama_model_gguf(m), &tok, &err)) < 0) {
        fprintf(stderr, "arch_drv: %s\n", err.msg);
        mx_llama_ctx_free(ctx);
        mx_llama_model_free(m);
        mx_backend_free(be);
        return 1;
    }
    int32_t nv = mx_llama_model_hparams(m)->n_vocab;
    FILE *f = fopen(argv[2], "r");
    if (!f) {
        perror(argv[2]);
        return 2;
    }
    struct rec *recs = NULL;
    int n = parse(f, nv, &recs);
    fclose(f);
    if (n <= 0) {
        fprintf(stderr, "arch_drv: %s: no records or a malformed LOGITS line\n", argv[2]);
        return 2;
    }
    int fails = 0;
    for (int ri = 0; ri < n; ri++) {
        const struct rec *r = &recs[ri];
        mx_llama_kv_clear(ctx);
        struct cmp c = {r, nv, 0.0};
        if (r->n_rows != r->n_ids) {
            fprintf(stderr, "arch_drv: prompt %d: %d logits rows for %d ids\n", ri, r->n_rows,
                    r->n_ids);
            return 2;
        }
        rc = mx_llama_decode(ctx, r->ids, r->n_ids, true, on_row, &c, &err);
        if (rc < 0) {
            fprintf(stderr, "arch_drv: decode: %s\n", err.msg);
            return 1;
        }
        double gworst = 0.0;
        int bad_ids = 0, first_bad = -1;
        int32_t *ours = calloc((size_t)r->n_gen + 1, sizeof *ours);
        for (int k = 0; k < r->n_gen; k++) {
            const float *l = mx_llama_logits(ctx);
            int a = argmax(l, nv);
            ours[k] = a;
            for (int i = 0; i < 5 && k < r->n_top; i++) {
                double d = fabs((double)l[r->top_id[k * 5 + i]] - r->top_v[k * 5 + i]);
                if (!(d <= gworst))
                    gworst = isnan(d) ? INFINITY : d;
            }
            bool must = strict || r->top1[k] - r->top2[k] > tol;
            if (a != r->gen[k] && must) {
                bad_ids++;
                if (first_bad < 0)
                    first_bad = k;
            }
            if (strict && a != r->gen[k])
                break; /* the paths parted: later steps compare different texts */
            int32_t next = strict ? a : r->gen[k];
            if ((rc = mx_llama_decode(ctx, &next, 1, false, NULL, NULL, &err)) < 0) {
                fprintf(stderr, "arch_drv: decode: %s\n", err.msg);
                return 1;
            }
        }
        bool text_ok = true;
        if (strict && !bad_ids && r->text) {
            char *txt = NULL;
            size_t len = 0;
            if (mx_tokenizer_decode(tok, ours, (size_t)r->n_gen, 0, &txt, &len, &err) < 0)
                text_ok = false;
            else
                text_ok = len == r->text_len && !memcmp(txt, r->text, len);
            free(txt);
        }
        bool ok = c.worst <= tol && gworst <= tol && !bad_ids && text_ok;
        printf("%s prompt %d (%d ids, %d steps %s): rows max |diff| %.3g, gen top-5 max |diff| "
               "%.3g, ids %s%s (tol %g)\n", ok ? "ok  " : "FAIL", ri, r->n_ids, r->n_gen,
               strict ? "greedy" : "teacher-forced", c.worst, gworst,
               bad_ids ? "differ" : "equal", text_ok ? "" : ", text differs", tol);
        if (first_bad >= 0)
            printf("     first differing step %d: ours %d, peer %d (peer margin %.3g)\n",
                   first_bad, ours[first_bad], r->gen[first_bad],
                   r->top1[first_bad] - r->top2[first_bad]);
        fails += !ok;
        free(ours);
    }
    for (int i = 0; i < n; i++) {
        free(recs[i].ids);
        free(recs[i].logits);
        free(recs[i].gen);
        free(recs[i].top1);
        free(recs[i].top2);
        free(recs[i].top_id);
        free(recs[i].top_v);
        free(recs[i].text);
    }
    free(recs);
    mx_tokenizer_free(tok);
    mx_llama_ctx_free(ctx);
    mx_llama_model_free(m);
    mx_backend_free(be);
    return fails ? 1 : 0;
}
