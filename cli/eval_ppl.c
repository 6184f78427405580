/* eval_ppl.c - `mixel eval ppl`: perplexity of a text file the way llama.cpp's llama-perplexity
 * computes it (the method is in app/eval.h), with the running value after each chunk on stderr (a
 * bar with ETA on a terminal, plain lines otherwise) and tokens/s; --save-logits writes the
 * scored positions' log-probabilities, --kl-base compares this model with such a file (KL
 * divergence, top-1 agreement, PPL(Q) vs PPL(base), their percentiles), as
 * llama-perplexity --kl-divergence does. This file parses flags and prints; app/eval.c scores. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/eval.h"
#include "app/llm.h"
#include "cli/cmd.h"
#include "cli/opts.h"
#include "core/base/util.h"

#define CMD "eval ppl"

static void usage(FILE *f) {
    fprintf(f,
            "usage: mixel eval ppl -m MODEL -f TEXT [-c 512] [--chunks N] [--json] [options]\n"
            "       mixel eval ppl -m MODEL -f TEXT --save-logits BASE.mxlp   (the reference)\n"
            "       mixel eval ppl -m MODEL2 --kl-base BASE.mxlp [-f TEXT]    (compare with it)\n"
            "Perplexity as llama-perplexity computes it: the whole text tokenized with BOS, cut\n"
            "into chunks of -c tokens (the first set to BOS), the second half of each chunk\n"
            "scored; PPL = exp(mean negative log-likelihood) +/- its standard error. The text\n"
            "must give at least 2 x -c tokens. Progress goes to stderr, results to stdout.\n"
            "  -f, --file FILE       the text (UTF-8)\n"
            "  -c, --ctx-size N      tokens per chunk, also the context: default 512 here (not\n"
            "                        the model's, as below), with --kl-base the base's\n"
            "  --chunks N            at most N chunks (default: all the text gives)\n"
            "  -b, --batch-size N    tokens per forward pass (the same as --ubatch; default 512)\n"
            "  --json                end with one JSON line: {\"ppl\":..,\"ppl_stderr\":..,\n"
            "                        \"scored_tokens\":..,\"chunks\":..,\"n_ctx\":..,\"tok_s\":..,\n"
            "                        \"model\":..} (and the KL numbers with --kl-base)\n"
            "  --save-logits FILE    save the scored positions' log-probabilities (16 bits per\n"
            "                        token and position, ~2 x n_vocab bytes per position)\n"
            "  --kl-base FILE        compare with a saved base: KL divergence, top-1 agreement,\n"
            "                        PPL(Q) - PPL(base); the tokens come from FILE (-f, when\n"
            "                        given, must tokenize to the same ones)\n"
            "  -q, --quiet           no progress lines\n");
    mx_cli_common_help(f, MX_CLI_LOGITS);
}

/* The progress display's state. */
struct bar {
    bool show;      /* not -q */
    bool tty;       /* stderr is a terminal: one line redrawn in place */
};

static void on_progress(void *ud, const struct mx_ppl_progress *p) {
    struct bar *b = ud;
    if (!b->show)
        return;
    double eta = p->chunk ? p->elapsed_s / (double)p->chunk * (double)(p->n_chunks - p->chunk)
                          : 0;
    if (b->tty) {
        enum { W = 24 };
        char bar[W + 1];
        size_t fill = p->n_chunks ? W * p->chunk / p->n_chunks : W;
        for (size_t i = 0; i < W; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[W] = '\0';
        fprintf(stderr, "\r[%zu/%zu] [%s] PPL %.4f +/- %.5f, %.1f tok/s, ETA %.0f s\033[K%s",
                p->chunk, p->n_chunks, bar, p->ppl, p->ppl_err, p->tok_s, eta,
                p->chunk == p->n_chunks ? "\n" : "");
    } else {
        fprintf(stderr, "[%zu/%zu] PPL %.4f +/- %.5f, %.1f tok/s, ETA %.0f s\n", p->chunk,
                p->n_chunks, p->ppl, p->ppl_err, p->tok_s, eta);
    }
    fflush(stderr);
}

/* Sets key to a finite number (JSON has no NaN: null then). */
static void jnum(json_t *o, const char *key, double v) {
    json_object_set_new(o, key, isfinite(v) ? json_real(v) : json_null());
}

static void print_kl(const struct mx_kl_stats *s, const char *base_name) {
    printf("\nKL divergence against %s (%zu positions)\n", mx_safe(base_name), s->count);
    printf("Mean PPL(Q)                   : %10.6f +/- %10.6f\n", s->ppl, s->ppl_err);
    printf("Mean PPL(base)                : %10.6f +/- %10.6f\n", s->ppl_base, s->ppl_base_err);
    printf("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%\n", 100.0 * s->cor);
    printf("Mean ln(PPL(Q)/PPL(base))     : %10.6f +/- %10.6f\n", s->ln_ratio, s->ln_ratio_err);
    printf("Mean PPL(Q)-PPL(base)         : %10.6f +/- %10.6f\n", s->dppl, s->dppl_err);
    printf("Mean    KLD: %10.6f +/- %10.6f\n", s->kld, s->kld_err);
    printf("Maximum KLD: %10.6f\n", s->kld_max);
    printf("99.9%%   KLD: %10.6f\n", s->kld_p99_9);
    printf("99.0%%   KLD: %10.6f\n", s->kld_p99);
    printf("95.0%%   KLD: %10.6f\n", s->kld_p95);
    printf("90.0%%   KLD: %10.6f\n", s->kld_p90);
    printf("Median  KLD: %10.6f\n", s->kld_median);
    printf("10.0%%   KLD: %10.6f\n", s->kld_p10);
    printf(" 5.0%%   KLD: %10.6f\n", s->kld_p5);
    printf(" 1.0%%   KLD: %10.6f\n", s->kld_p1);
    printf(" 0.1%%   KLD: %10.6f\n", s->kld_p0_1);
    printf("Minimum KLD: %10.6f\n", s->kld_min);
    printf("Mean    dp: %7.3f +/- %6.3f %%  (p(token) of Q minus base's)\n", 100 * s->dp,
           100 * s->dp_err);
    printf("Maximum dp: %7.3f%%\n", 100 * s->dp_max);
    printf("99.0%%   dp: %7.3f%%\n", 100 * s->dp_p99);
    printf("95.0%%   dp: %7.3f%%\n", 100 * s->dp_p95);
    printf("Median  dp: %7.3f%%\n", 100 * s->dp_median);
    printf(" 5.0%%   dp: %7.3f%%\n", 100 * s->dp_p5);
    printf(" 1.0%%   dp: %7.3f%%\n", 100 * s->dp_p1);
    printf("Minimum dp: %7.3f%%\n", 100 * s->dp_min);
    printf("RMS dp    : %7.3f +/- %6.3f %%\n", 100 * s->dp_rms, 100 * s->dp_rms_err);
    printf("Same top p: %7.3f +/- %6.3f %%\n", 100 * s->top1, 100 * s->top1_err);
}

static void json_kl(json_t *o, const struct mx_kl_stats *s, const char *base_name) {
    json_object_set_new(o, "kl_base", json_string(base_name));
    jnum(o, "kld", s->kld);
    jnum(o, "kld_stderr", s->kld_err);
    jnum(o, "kld_max", s->kld_max);
    jnum(o, "kld_p99", s->kld_p99);
    jnum(o, "kld_p95", s->kld_p95);
    jnum(o, "kld_median", s->kld_median);
    jnum(o, "kld_p5", s->kld_p5);
    jnum(o, "kld_min", s->kld_min);
    jnum(o, "top1_pct", 100 * s->top1);
    jnum(o, "top1_pct_stderr", 100 * s->top1_err);
    jnum(o, "ppl_base", s->ppl_base);
    jnum(o, "ppl_base_stderr", s->ppl_base_err);
    jnum(o, "dppl", s->dppl);
    jnum(o, "dppl_stderr", s->dppl_err);
    jnum(o, "ln_ppl_ratio", s->ln_ratio);
    jnum(o, "ln_ppl_ratio_stderr", s->ln_ratio_err);
    jnum(o, "dp_rms_pct", 100 * s->dp_rms);
    jnum(o, "dp_p1_pct", 100 * s->dp_p1);
    jnum(o, "dp_median_pct", 100 * s->dp_median);
    jnum(o, "dp_p99_pct", 100 * s->dp_p99);
}

int mx_cmd_eval_ppl(int argc, char **argv) {
    struct mx_cli_opts o;
    mx_cli_opts_init(&o);
    o.s.n_ctx = 0; /* 0: not given (512, or the base's) */
    const char *file = NULL, *save = NULL, *kl_base = NULL;
    long long chunks = 0, batch = 0;
    bool json = false;
    const struct mx_cli_extra extra[] = {
        {"-f", "--file", MX_X_STR, &file, 0, 0},
        {NULL, "--chunks", MX_X_INT, &chunks, 1, 1 << 30},
        {"-b", "--batch-size", MX_X_INT, &batch, 1, 8192},
        {NULL, "--json", MX_X_FLAG, &json, 0, 0},
        {NULL, "--save-logits", MX_X_STR, &save, 0, 0},
        {NULL, "--kl-base", MX_X_STR, &kl_base, 0, 0},
    };
    int pr = mx_cli_parse(CMD, MX_CLI_LOGITS, argc, argv, &o, extra,
                          sizeof extra / sizeof extra[0], usage);
    if (pr != 0)
        return pr > 0 ? 0 : 2;
    if (!o.model || (!file && !kl_base)) {
        mx_cli_err(CMD, "need -m MODEL and -f TEXT (or --kl-base FILE; see mixel eval ppl --help)");
        return 2;
    }
    if (save && kl_base && !strcmp(save, kl_base)) {
        mx_cli_err(CMD, "--save-logits and --kl-base name the same file");
        return 2;
    }
    if (batch)
        o.s.ubatch = (int)batch;
    struct bar bar = {.show = !o.quiet, .tty = isatty(2)};
    o.quiet = !o.verbose; /* the logger: load messages only with -v */

    int status = 1, rc;
    struct mx_err err = {0};
    struct mx_kl_file *base = NULL, *out = NULL;
    struct mx_llm *L = NULL;
    char *text = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0, tlen = 0;
    struct mx_ppl_result res = {0};
    json_t *jo = NULL;

    int32_t n_ctx = o.s.n_ctx ? o.s.n_ctx : 512;
    if (kl_base) {
        if ((rc = mx_kl_file_open(&base, kl_base, &err)) < 0) {
            mx_cli_err(CMD, "--kl-base: %s", mx_err_msg(&err, rc));
            goto done;
        }
        if (o.s.n_ctx && o.s.n_ctx != mx_kl_file_n_ctx(base)) {
            mx_cli_err(CMD, "--kl-base: %s was made with -c %d, not %d (leave -c out)", kl_base,
                       (int)mx_kl_file_n_ctx(base), o.s.n_ctx);
            status = 2;
            goto done;
        }
        n_ctx = mx_kl_file_n_ctx(base);
    }
    if (file && mx_cli_read_file(file, CMD, &text, &tlen))
        goto done;
    if (mx_cli_resolve_model(CMD, &o))
        goto done;
    mx_cli_log_init(&o);
    o.s.n_ctx = n_ctx; /* the cache holds one chunk */
    if ((rc = mx_llm_open(&L, o.model, &o.s, &err)) < 0) {
        mx_cli_err(CMD, "%s", mx_err_msg(&err, rc));
        goto done;
    }
    int32_t n_vocab = mx_llm_n_vocab(L);
    if (base && mx_kl_file_n_vocab(base) != n_vocab) {
        mx_cli_err(CMD, "--kl-base: %s comes from a model with %d tokens in its vocabulary, %s "
                   "has %d: KL divergence needs the same vocabulary", kl_base,
                   (int)mx_kl_file_n_vocab(base), mx_llm_name(L), (int)n_vocab);
        goto done;
    }
    if (text) {
        if ((rc = mx_llm_tokenize(L, text, tlen, &ids, &n_ids, &err)) < 0) {
            mx_cli_err(CMD, "%s: tokenizer: %s", file, mx_err_msg(&err, rc));
            goto done;
        }
        if (n_ids < 2 * (size_t)n_ctx) {
            mx_cli_err(CMD, "%s gives %zu tokens; perplexity with chunks of %d needs at least %d "
                       "(a longer text or a smaller -c)", file, n_ids, (int)n_ctx,
                       2 * (int)n_ctx);
            goto done;
        }
    }
    if (base) {
        size_t n_base = (size_t)mx_kl_file_n_chunk(base) * (size_t)n_ctx;
        const int32_t *bt = mx_kl_file_tokens(base);
        if (ids) {
            size_t n_cmp = MX_MIN(n_base, n_ids), i = 0;
            while (i < n_cmp && ids[i] == bt[i])
                i++;
            if (i < n_cmp || n_ids < n_base) {
                mx_cli_err(CMD, "--kl-base: %s was made from other tokens than %s gives (first "
                           "difference at token %zu of %zu)", kl_base, file, i, n_base);
                goto done;
            }
        }
        /* the file's tokens were checked against its n_vocab when it was opened: ours */
        free(ids);
        ids = malloc(n_base * sizeof *ids);
        if (!ids) {
            mx_cli_err(CMD, "out of memory for %zu tokens", n_base);
            goto done;
        }
        memcpy(ids, bt, n_base * sizeof *ids);
        n_ids = n_base;
    }
    size_t n_chunks = mx_ppl_n_chunks(n_ids, n_ctx, chunks);
    if (save && (rc = mx_kl_file_create(&out, save, mx_llm_name(L), n_vocab, n_ctx,
                                        (int32_t)n_chunks, ids, &err)) < 0) {
        mx_cli_err(CMD, "--save-logits: %s", mx_err_msg(&err, rc));
        goto done;
    }
    if (bar.show)
        fprintf(stderr, "%s: %zu tokens, %zu chunks of %d, %s on %s\n", mx_safe(mx_llm_name(L)),
                n_ids, n_chunks, (int)n_ctx, base ? "KL divergence" : "perplexity",
                mx_llm_device(L));
    struct mx_ppl_opts po = {
        .n_ctx = n_ctx, .n_chunks = (int64_t)n_chunks, .save = out, .base = base,
        .progress = on_progress, .ud = &bar,
    };
    if ((rc = mx_eval_ppl(L, ids, n_ids, &po, &res, &err)) < 0) {
        if (bar.show && bar.tty)
            fputc('\n', stderr);
        mx_cli_err(CMD, "%s", mx_err_msg(&err, rc));
        goto done;
    }
    if (out) {
        rc = mx_kl_file_close(out, &err);
        out = NULL;
        if (rc < 0) {
            mx_cli_err(CMD, "--save-logits: %s", mx_err_msg(&err, rc));
            goto done;
        }
    }
    struct mx_kl_stats ks;
    if (base && (rc = mx_kl_acc_stats(&res.kl, &ks, &err)) < 0) {
        mx_cli_err(CMD, "%s", mx_err_msg(&err, rc));
        goto done;
    }
    if (json) {
        jo = json_object();
        jnum(jo, "ppl", res.ppl);
        jnum(jo, "ppl_stderr", res.ppl_err);
        json_object_set_new(jo, "scored_tokens", json_integer((json_int_t)res.acc.count));
        json_object_set_new(jo, "chunks", json_integer((json_int_t)res.n_chunks));
        json_object_set_new(jo, "n_ctx", json_integer(n_ctx));
        jnum(jo, "tok_s", res.tok_s);
        json_object_set_new(jo, "model", json_string(mx_llm_name(L)));
        if (base)
            json_kl(jo, &ks, mx_kl_file_model(base));
        char *s = json_dumps(jo, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
        if (!s) {
            mx_cli_err(CMD, "out of memory for the JSON line");
            goto done;
        }
        puts(s);
        free(s);
    } else {
        printf("Final estimate: PPL = %.4f +/- %.5f\n", res.ppl, res.ppl_err);
        printf("%zu tokens scored in %zu chunks of %d, %.1f tokens/s (%s, %s)\n", res.acc.count,
               res.n_chunks, (int)n_ctx, res.tok_s, mx_safe(mx_llm_name(L)), mx_llm_device(L));
        if (base)
            print_kl(&ks, mx_kl_file_model(base));
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        mx_cli_err(CMD, "write error on stdout");
        goto done;
    }
    status = 0;
done:
    json_decref(jo);
    mx_kl_acc_deinit(&res.kl);
    mx_kl_file_close(out, NULL);
    mx_kl_file_close(base, NULL);
    mx_llm_close(L);
    free(ids);
    free(text);
    return status;
}
