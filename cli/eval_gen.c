/* eval_gen.c - `mixel eval gen`: exact-match accuracy on generated answers (GSM8K style, see
 * app/eval_gen.h): each question goes through the model's chat template like a chat turn, the
 * answer is generated greedily, and its final number is compared with the reference's. Progress
 * on stderr, a summary on stdout (or one JSON line with --json), and one JSON line per question
 * (question, reply, both numbers) with --json-items FILE. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/cmd.h"
#include "cli/opts.h"
#include "app/engine_llm.h"
#include "app/eval_data.h"
#include "app/eval_gen.h"
#include "app/eval_mc.h"

static const char *const CMD = "eval gen";

static void usage(FILE *f) {
    fprintf(f,
            "usage: mixel eval gen -m MODEL -f FILE.jsonl [--n N] [-n TOKENS] [--json]\n"
            "Exact match on generated answers (GSM8K): each line of FILE is\n"
            "{\"question\": \"...\", \"answer\": \"... #### 42\"}; the question is asked through the\n"
            "model's chat template, the answer generated greedily, and its final number (after\n"
            "\"####\" when there is one, else the last number; commas dropped) must equal the\n"
            "reference's.\n"
            "  -f, --file FILE       the questions (JSONL; \"answer\" may also be a number)\n"
            "  --n N                 the first N questions (default: all)\n"
            "  -n, --n-predict N     longest answer in tokens (default 512)\n"
            "  --system TEXT         a system message before each question\n"
            "  --chat-template NAME  override the model's chat template\n"
            "  --json                print one JSON line with the results on stdout\n"
            "  --json-items FILE     write one JSON line per question (reply, numbers); - for\n"
            "                        stdout\n");
    mx_cli_common_help(f, MX_CLI_LOGITS);
}


/* What the progress callback needs. */
struct run {
    FILE *items;        /* --json-items, or NULL */
    bool quiet;         /* -q */
    bool write_failed;
};

static void progress(void *ud, const struct mx_qa_task *t, const struct mx_qa_totals *tot) {
    struct run *r = ud;
    if (r->items) {
        json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:b, s:I, s:f}", "index",
                              (json_int_t)t->index, "question", t->question, "reply", t->reply,
                              "got", t->got, "want", t->want, "correct", t->correct, "tokens",
                              (json_int_t)t->n_generated, "seconds", t->seconds);
        /* a reply that is not valid UTF-8 (a cut byte sequence) cannot go into JSON as text */
        if (!o)
            o = json_pack("{s:I, s:s, s:s, s:s, s:b, s:I, s:f}", "index", (json_int_t)t->index,
                          "reply_error", "not valid UTF-8", "got", t->got, "want", t->want,
                          "correct", t->correct, "tokens", (json_int_t)t->n_generated, "seconds",
                          t->seconds);
        if (!o || json_dumpf(o, r->items, JSON_COMPACT) != 0 || fputc('\n', r->items) == EOF)
            r->write_failed = true;
        json_decref(o);
    }
    if (r->quiet)
        return;
    fprintf(stderr, "question %zu/%zu  exact match %.2f %%  (got %s, want %s)  %zu tokens, "
            "%.1f s\n", tot->n_done, tot->n_total,
            100.0 * (double)tot->n_correct / (double)tot->n_done, t->got[0] ? t->got : "none",
            t->want, t->n_generated, t->seconds);
}

int mx_cmd_eval_gen(int argc, char **argv) {
    struct mx_cli_opts o;
    mx_cli_opts_init(&o);
    const char *file = NULL, *items = NULL, *system = NULL, *tmpl = NULL;
    long long n_q = 0, n_predict = 512;
    bool json = false;
    const struct mx_cli_extra extra[] = {
        {"-f", "--file", MX_X_STR, &file, 0, 0},
        {NULL, "--n", MX_X_INT, &n_q, 0, 1000000000},
        {"-n", "--n-predict", MX_X_INT, &n_predict, 1, 1 << 20},
        {NULL, "--system", MX_X_STR, &system, 0, 0},
        {NULL, "--chat-template", MX_X_STR, &tmpl, 0, 0},
        {NULL, "--json", MX_X_FLAG, &json, 0, 0},
        {NULL, "--json-items", MX_X_STR, &items, 0, 0},
    };
    int pr = mx_cli_parse(CMD, MX_CLI_LOGITS, argc, argv, &o, extra,
                          sizeof extra / sizeof extra[0], usage);
    if (pr != 0)
        return pr > 0 ? 0 : 2;
    if (!o.model || !file) {
        mx_cli_err(CMD, "need -m MODEL and -f FILE (see mixel eval gen --help)");
        return 2;
    }
    int status = 1, rc;
    struct mx_err err = {0};
    struct mx_qa_set set = {0};
    struct mx_engine *e = NULL;
    struct run r = {.quiet = o.quiet};
    char *buf = NULL;
    size_t len = 0;
    bool items_stdout = items && strcmp(items, "-") == 0;
    if (mx_cli_read_file(file, CMD, &buf, &len))
        goto done;
    if ((rc = mx_qa_read(buf, len, file, &set, &err)) < 0) {
        mx_cli_err(CMD, "%s", mx_err_msg(&err, rc));
        goto done;
    }
    if (items && !(r.items = items_stdout ? stdout : fopen(items, "w"))) {
        mx_cli_err(CMD, "%s: cannot write: %m", items);
        goto done;
    }
    if (mx_cli_resolve_model(CMD, &o))
        goto done;
    mx_cli_log_init(&o);
    o.s.sampling.temp = 0; /* greedy: the answer is the model's single best */
    o.s.n_predict = (int)n_predict;
    if (!(e = mx_engine_llm_new(o.model, &o.s, tmpl, &err))) {
        mx_cli_err(CMD, "%s", mx_err_msg(&err, err.code));
        goto done;
    }
    const char *warn = mx_engine_llm_warning(e);
    if (!o.quiet) {
        if (warn && warn[0])
            mx_cli_err(CMD, "%s", warn);
        fprintf(stderr, "mixel eval gen: %zu questions from %s on %s (template %s)\n", set.n,
                mx_safe(file), mx_safe(e->name), mx_engine_llm_template(e));
    }
    struct mx_qa_opts qo = {
        .n = (size_t)n_q, .system = system, .progress = progress, .canceled = mx_cli_interrupted,
        .ud = &r,
    };
    mx_cli_interrupt_catch(false);
    struct mx_qa_totals tot;
    rc = mx_qa_run(e, &set, &o.s, &qo, &tot, &err);
    mx_cli_interrupt_restore();
    if (r.items && ((items_stdout ? fflush(r.items) : fclose(r.items)) != 0 || r.write_failed)) {
        r.items = NULL;
        mx_cli_err(CMD, "%s: write error", items);
        goto done;
    }
    r.items = NULL;
    if (rc < 0 && rc != MX_ECANCELED) {
        mx_cli_err(CMD, "%s", mx_err_msg(&err, rc));
        goto done;
    }
    double acc = tot.n_done ? (double)tot.n_correct / (double)tot.n_done : 0;
    double lo, hi, se = mx_eval_stderr(tot.n_correct, tot.n_done);
    double tps = tot.gen_s > 0 ? (double)tot.n_generated / tot.gen_s : 0;
    mx_eval_wilson(tot.n_correct, tot.n_done, &lo, &hi);
    FILE *human = json ? stderr : stdout;
    fprintf(human, "exact match: %zu of %zu questions%s, %.2f %% +/- %.2f (95 %% CI %.2f-%.2f "
            "%%); %zu replies without a number\n", tot.n_correct, tot.n_done,
            rc == MX_ECANCELED ? " (interrupted)" : "", 100 * acc, 100 * se, 100 * lo, 100 * hi,
            tot.n_no_number);
    fprintf(human, "  %zu prompt + %zu generated tokens in %.1f s (%.1f tokens/s generating)\n",
            tot.n_prompt, tot.n_generated, tot.seconds, tps);
    if (json)
        printf("{\"questions\": %zu, \"correct\": %zu, \"accuracy\": %.6f, \"ci95\": [%.6f, "
               "%.6f], \"stderr\": %.6f, \"no_number\": %zu, \"prompt_tokens\": %zu, "
               "\"generated_tokens\": %zu, \"tokens_per_s\": %.1f, \"seconds\": %.3f, "
               "\"complete\": %s}\n", tot.n_done, tot.n_correct, acc, lo, hi, se,
               tot.n_no_number, tot.n_prompt, tot.n_generated, tps, tot.seconds,
               rc == 0 ? "true" : "false");
    if (fflush(stdout) != 0 || ferror(stdout)) {
        mx_cli_err(CMD, "write error on stdout");
        goto done;
    }
    status = rc == MX_ECANCELED ? 130 : 0;
done:
    if (r.items && r.items != stdout)
        fclose(r.items);
    if (e)
        e->free(e);
    mx_qa_set_free(&set);
    free(buf);
    return status;
}
