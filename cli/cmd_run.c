/* cmd_run.c - `mixel run`: one completion to stdout, for pipes and scripts.
 *
 * The prompt (-p or -f) goes through the batched path, then tokens are sampled one at a time
 * (core/sampler) and streamed through the tokenizer's streaming detokenizer, so stdout only ever
 * gets whole UTF-8 characters. Stops at -n tokens, an end-of-generation token (unless
 * --ignore-eos) or a --stop string (not printed); a full context shifts (the older half after
 * --keep tokens is dropped) unless --no-context-shift. Load time and prompt / generation speed
 * go to stderr at the end. Exit status: 0 ok, 1 runtime error, 2 usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/llm/llama.h"
#include "core/llm/sampler.h"
#include "core/text/tokenizer.h"
#include "core/base/util.h"
#include "kernels/backend.h"
#include "cli/cmd.h"
#include "app/llm_cli.h"
#include "app/run_session.h"

#define MAX_STOPS 8

static void usage(FILE *f) {
    fprintf(f,
            "usage: mixel run -m MODEL (-p TEXT | -f FILE) [options]\n"
            "Streams one completion of the prompt to stdout.\n"
            "  -p, --prompt TEXT        the prompt\n"
            "  -f, --file FILE          the prompt from a file\n"
            "  -n, --n-predict N        tokens to generate (default 256; -1: until the end or a\n"
            "                           full context)\n"
            "  --temp T                 temperature (default 0.8; 0 = greedy)\n"
            "  --top-k K                (default 40; 0 = off)\n"
            "  --top-p P                (default 0.95; 1 = off)\n"
            "  --min-p P                (default 0.05; 0 = off)\n"
            "  --typical P              locally typical sampling (default 1 = off)\n"
            "  --repeat-penalty R       (default 1 = off)\n"
            "  --repeat-last-n N        window of the penalties (default 64)\n"
            "  --presence-penalty P     (default 0)\n"
            "  --frequency-penalty F    (default 0)\n"
            "  -s, --seed S             RNG seed (default: from the clock; printed with -v)\n"
            "  --stop STR               stop before this text (up to %d times)\n"
            "  --ignore-eos             do not stop at end-of-generation tokens\n"
            "  --echo                   print the prompt before the completion\n"
            "  --keep N                 tokens kept at the start when a full context shifts\n"
            "                           (default 1: BOS); the older half of the rest is dropped\n"
            "  --no-context-shift       stop when the context is full instead\n"
            "  --session NAME           one chat turn of the saved session NAME (id or title;\n"
            "                           created when new): the prompt goes through the chat\n"
            "                           template with the session's history, the answer is stored\n"
            "  --chat-template NAME     with --session: override the model's template\n"
            "  --db PATH                with --session: the history database\n"
            "%s",
            MAX_STOPS, mx_llm_common_help);
}

static int parse_f(const char *s, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end)
        return -1;
    *out = v;
    return 0;
}

static int parse_ll(const char *s, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    if (errno || end == s || *end)
        return -1;
    *out = v;
    return 0;
}

/* Output with --stop handling: text is held back while it could still become a stop string. */
struct out {
    char *pend;              /* text not yet written */
    size_t n, cap;
    const char *stops[MAX_STOPS];
    int n_stops;
    size_t max_stop;         /* longest stop string */
    bool stopped;            /* a stop string was found */
};

/* Appends s and writes what can no longer be part of a stop string. Returns -1 on error. */
static int out_push(struct out *o, const char *s, size_t n) {
    if (o->stopped)
        return 0;
    if (o->n_stops == 0) {
        if (fwrite(s, 1, n, stdout) != n)
            return -1;
        return fflush(stdout) == 0 ? 0 : -1;
    }
    if (o->n + n + 1 > o->cap) {
        size_t cap = (o->n + n + 1) * 2;
        char *p = realloc(o->pend, cap);
        if (!p)
            return -1;
        o->pend = p;
        o->cap = cap;
    }
    memcpy(o->pend + o->n, s, n);
    o->n += n;
    o->pend[o->n] = '\0';
    size_t cut = o->n;
    for (int i = 0; i < o->n_stops; i++) {
        const char *hit = memmem(o->pend, o->n, o->stops[i], strlen(o->stops[i]));
        if (hit && (size_t)(hit - o->pend) < cut) {
            cut = (size_t)(hit - o->pend);
            o->stopped = true;
        }
    }
    size_t keep = o->stopped ? 0 : MX_MIN(o->n, o->max_stop - 1);
    size_t emit = o->stopped ? cut : o->n - keep;
    if (emit && fwrite(o->pend, 1, emit, stdout) != emit)
        return -1;
    memmove(o->pend, o->pend + emit, o->n - emit);
    o->n -= emit;
    if (o->stopped)
        o->n = 0;
    return fflush(stdout) == 0 ? 0 : -1;
}

static int out_flush(struct out *o) {
    if (!o->stopped && o->n && fwrite(o->pend, 1, o->n, stdout) != o->n)
        return -1;
    o->n = 0;
    return fflush(stdout) == 0 ? 0 : -1;
}

int mx_cmd_run(int argc, char **argv) {
    struct mx_llm_opts o;
    mx_llm_opts_init(&o);
    struct mx_sampler_params sp;
    mx_sampler_params_default(&sp);
    bool seed_set = false, ignore_eos = false, echo = false, ctx_shift = true;
    long long n_keep = 1; /* tokens kept at the start when the context shifts (BOS) */
    const char *prompt = NULL, *pfile = NULL, *session = NULL, *db_path = NULL, *tmpl = NULL;
    long long n_predict = 256;
    struct out out = {0};
    for (int i = 1; i < argc;) {
        int r = mx_llm_parse_common(argc, argv, &i, &o, "run");
        if (r < 0)
            return 2;
        if (r > 0)
            continue;
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--ignore-eos") || !strcmp(a, "--echo")) {
            *(a[2] == 'i' ? &ignore_eos : &echo) = true;
            i++;
            continue;
        }
        if (!strcmp(a, "--no-context-shift")) {
            ctx_shift = false;
            i++;
            continue;
        }
        if (!val) {
            fprintf(stderr, "mixel run: %s needs a value (or is unknown; see --help)\n", a);
            return 2;
        }
        long long ll = 0;
        int bad = 0;
        if (!strcmp(a, "-p") || !strcmp(a, "--prompt"))
            prompt = val;
        else if (!strcmp(a, "--session"))
            session = val;
        else if (!strcmp(a, "--db"))
            db_path = val;
        else if (!strcmp(a, "--chat-template"))
            tmpl = val;
        else if (!strcmp(a, "-f") || !strcmp(a, "--file"))
            pfile = val;
        else if (!strcmp(a, "--keep"))
            bad = parse_ll(val, &n_keep) || n_keep < 0 || n_keep > INT32_MAX;
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict"))
            bad = parse_ll(val, &n_predict) || n_predict < -1;
        else if (!strcmp(a, "--temp"))
            bad = parse_f(val, &sp.temp);
        else if (!strcmp(a, "--top-k"))
            bad = parse_ll(val, &ll) || ll < 0 || ll > INT32_MAX, sp.top_k = (int)ll;
        else if (!strcmp(a, "--top-p"))
            bad = parse_f(val, &sp.top_p) || !(sp.top_p > 0.0f);
        else if (!strcmp(a, "--min-p"))
            bad = parse_f(val, &sp.min_p) || sp.min_p < 0.0f || sp.min_p > 1.0f;
        else if (!strcmp(a, "--typical"))
            bad = parse_f(val, &sp.typical_p) || !(sp.typical_p > 0.0f);
        else if (!strcmp(a, "--repeat-penalty"))
            bad = parse_f(val, &sp.repeat_penalty) || !(sp.repeat_penalty > 0.0f);
        else if (!strcmp(a, "--repeat-last-n"))
            bad = parse_ll(val, &ll) || ll < 0 || ll > 1 << 20, sp.penalty_last_n = (int)ll;
        else if (!strcmp(a, "--presence-penalty"))
            bad = parse_f(val, &sp.presence_penalty);
        else if (!strcmp(a, "--frequency-penalty"))
            bad = parse_f(val, &sp.freq_penalty);
        else if (!strcmp(a, "-s") || !strcmp(a, "--seed"))
            bad = parse_ll(val, &ll), sp.seed = (uint64_t)ll, seed_set = true;
        else if (!strcmp(a, "--stop")) {
            if (out.n_stops == MAX_STOPS || !*val) {
                fprintf(stderr, "mixel run: at most %d non-empty --stop strings\n", MAX_STOPS);
                return 2;
            }
            out.stops[out.n_stops++] = val;
            out.max_stop = MX_MAX(out.max_stop, strlen(val));
        } else {
            fprintf(stderr, "mixel run: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "mixel run: bad value for %s: '%s'\n", a, val);
            return 2;
        }
        i += 2;
    }
    if (!o.model || !!prompt + !!pfile != 1) {
        fprintf(stderr, "mixel run: need -m MODEL and one of -p TEXT, -f FILE\n");
        usage(stderr);
        return 2;
    }
    if (!seed_set)
        sp.seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    if (session) { /* one chat turn of a stored conversation, through the chat template */
        char *text = NULL;
        size_t tlen = 0;
        if (pfile && mx_llm_read_file(pfile, "run", &text, &tlen))
            return 1;
        struct mx_run_session_opts so = {
            .model = o.model, .session = session, .prompt = pfile ? text : prompt,
            .db_path = db_path, .tmpl = tmpl,
            .settings = {.temp = sp.temp, .top_p = sp.top_p, .min_p = sp.min_p,
                         .repeat_penalty = sp.repeat_penalty, .top_k = sp.top_k,
                         .n_predict = (int)n_predict, .n_ctx = (int)o.n_ctx, .seed = sp.seed}};
        int st = mx_run_session(&so);
        free(text);
        return st;
    }

    int status = 1;
    struct mx_backend *be = NULL;
    struct mx_llama_model *m = NULL;
    struct mx_llama_ctx *c = NULL;
    struct mx_tokenizer *tok = NULL;
    struct mx_sampler *smp = NULL;
    struct mx_detok_stream ds;
    bool ds_init = false;
    int32_t *ids = NULL;
    char *text = NULL;
    size_t tlen = 0;
    struct mx_err err = {0};
    if (pfile && mx_llm_read_file(pfile, "run", &text, &tlen))
        return 1;
    if (prompt) {
        text = strdup(prompt);
        tlen = strlen(prompt);
        if (!text) {
            fprintf(stderr, "mixel run: out of memory\n");
            return 1;
        }
    }
    double load_s = 0;
    if (mx_llm_open(&o, "run", &be, &m, &c, &load_s))
        goto done;
    int rc = mx_tokenizer_from_gguf(mx_llama_model_gguf(m), &tok, &err);
    if (rc < 0) {
        fprintf(stderr, "mixel run: tokenizer: %s\n", mx_err_msg(&err, rc));
        goto done;
    }
    size_t n_prompt = 0;
    rc = mx_tokenizer_encode(tok, text, tlen, MX_TOK_ADD_SPECIAL, &ids, &n_prompt, &err);
    if (rc < 0) {
        fprintf(stderr, "mixel run: tokenizer: %s\n", mx_err_msg(&err, rc));
        goto done;
    }
    int64_t n_ctx = mx_llama_ctx_n_ctx(c);
    if (n_prompt == 0) {
        fprintf(stderr, "mixel run: the prompt gives no tokens\n");
        goto done;
    }
    if ((int64_t)n_prompt >= n_ctx) {
        fprintf(stderr, "mixel run: the prompt is %zu tokens, the context holds %lld (a larger "
                "-c, or a shorter prompt)\n", n_prompt, (long long)n_ctx);
        goto done;
    }
    rc = mx_sampler_new_params(mx_llama_model_hparams(m)->n_vocab, &sp, &smp, &err);
    if (rc < 0) {
        fprintf(stderr, "mixel run: %s\n", mx_err_msg(&err, rc));
        goto done;
    }
    for (size_t i = 0; i < n_prompt; i++)
        mx_sampler_accept(smp, ids[i]);
    if (echo && out_push(&out, text, tlen) < 0)
        goto write_error;

    double t0 = mx_time_s();
    rc = mx_llama_decode(c, ids, (int64_t)n_prompt, false, NULL, NULL, &err);
    if (rc < 0) {
        fprintf(stderr, "mixel run: %s\n", mx_err_msg(&err, rc));
        goto done;
    }
    double t_prompt = mx_time_s() - t0;
    mx_detok_stream_init(&ds, tok, 0);
    ds_init = true;
    int64_t n_gen = 0, n_shifts = 0;
    const char *why = "length";
    double t1 = mx_time_s();
    while (n_predict < 0 || n_gen < n_predict) {
        int32_t t;
        rc = mx_sampler_sample(smp, mx_llama_logits(c), &t);
        if (rc < 0) {
            fprintf(stderr, "mixel run: sampling: every token was filtered out\n");
            goto done;
        }
        mx_sampler_accept(smp, t);
        if (!ignore_eos && mx_tokenizer_is_eog(tok, t)) {
            why = "end of text";
            break;
        }
        const char *piece;
        size_t plen;
        if (mx_detok_stream_push(&ds, t, &piece, &plen) < 0 ||
            out_push(&out, piece, plen) < 0)
            goto write_error;
        n_gen++;
        if (out.stopped) {
            why = "stop string";
            break;
        }
        if (n_predict >= 0 && n_gen >= n_predict)
            break;
        if (mx_llama_ctx_n_past(c) >= n_ctx) {
            /* context shift (llama.cpp's): keep the first n_keep tokens, drop half of the rest,
             * move the newer half down (keys re-rotated), go on */
            int64_t keep = MX_MIN((int64_t)n_keep, n_ctx - 2);
            int64_t discard = (mx_llama_ctx_n_past(c) - keep) / 2;
            if (!ctx_shift || discard < 1) {
                why = "context full";
                break;
            }
            rc = mx_llama_kv_discard(c, keep, discard, &err);
            if (rc < 0) {
                fprintf(stderr, "\nmixel run: context shift: %s\n", mx_err_msg(&err, rc));
                goto done;
            }
            n_shifts++;
        }
        rc = mx_llama_decode(c, &t, 1, false, NULL, NULL, &err);
        if (rc < 0) {
            fprintf(stderr, "\nmixel run: %s\n", mx_err_msg(&err, rc));
            goto done;
        }
    }
    double t_gen = mx_time_s() - t1;
    const char *piece;
    size_t plen;
    if (mx_detok_stream_flush(&ds, &piece, &plen) < 0 || out_push(&out, piece, plen) < 0 ||
        out_flush(&out) < 0)
        goto write_error;
    if (!o.quiet) {
        fprintf(stderr, "\nmixel run: load %.2f s; prompt %zu tokens in %.2f s (%.1f tokens/s); "
                "generated %lld tokens in %.2f s (%.1f tokens/s); stopped: %s\n", load_s,
                n_prompt, t_prompt, n_prompt / (t_prompt > 0 ? t_prompt : 1e-9),
                (long long)n_gen, t_gen, n_gen > 1 && t_gen > 0 ? (n_gen - 1) / t_gen : 0.0,
                why);
        if (n_shifts)
            fprintf(stderr, "mixel run: %lld context shifts (the context holds %lld tokens)\n",
                    (long long)n_shifts, (long long)n_ctx);
        if (o.verbose)
            fprintf(stderr, "mixel run: seed %llu\n", (unsigned long long)sp.seed);
    }
    status = 0;
    goto done;
write_error:
    fprintf(stderr, "mixel run: cannot write the output: %s\n", strerror(errno));
done:
    if (ds_init)
        mx_detok_stream_deinit(&ds);
    free(out.pend);
    mx_sampler_free(smp);
    mx_tokenizer_free(tok);
    free(ids);
    free(text);
    mx_llm_close(be, m, c);
    return status;
}
