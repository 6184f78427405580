/* eval_mc.c - `mixel eval mc`: multiple-choice accuracy (HellaSwag, Winogrande, ARC, MMLU) of a
 * model, as llama-perplexity scores it (app/eval_mc.h), with the running accuracy and its 95 %
 * confidence interval on stderr, a summary on stdout (or one JSON line with --json) and, with
 * --json-items FILE, one JSON line per task (the log-likelihood of every choice). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cmd.h"
#include "cli/opts.h"
#include "app/eval_data.h"
#include "app/eval_mc.h"
#include "app/llm.h"

static const char *const CMD = "eval mc";

static void usage(FILE *f) {
    fprintf(f,
            "usage: mixel eval mc -m MODEL -f FILE [--format F] [--tasks N] [-k SHOTS] [--json]\n"
            "Multiple-choice accuracy: every choice is scored by the log-likelihood of its\n"
            "tokens after the context (mean per token, as llama-perplexity does); the best\n"
            "one is the model's answer. Accuracy with its 95 %% confidence interval (Wilson).\n"
            "  -f, --file FILE       the tasks: HellaSwag text (6 lines per task), Winogrande\n"
            "                        CSV, llama.cpp's multiple-choice binary (ARC, MMLU,\n"
            "                        TruthfulQA), JSONL {\"question\",\"choices\":[..],\"answer\":i}\n"
            "                        or MMLU CSV (question,A,B,C,D,answer)\n"
            "  --format F            auto (default: told from the file), hellaswag, winogrande,\n"
            "                        arc (question + answer text) or mmlu (k-shot prompt, the\n"
            "                        answer letter is scored)\n"
            "  --tasks N             score N tasks, picked as llama-perplexity picks them\n"
            "                        (default: all)\n"
            "  -k, --shots N         mmlu: N solved examples before each question (0-25, default\n"
            "                        0), from --dev or else the first N tasks of the file\n"
            "  --dev FILE            mmlu: the file the examples come from\n"
            "  --subject TEXT        mmlu: \"... questions (with answers) about TEXT.\" (default:\n"
            "                        from a file name like abstract_algebra_test.csv)\n"
            "  --json                print one JSON line with the results on stdout\n"
            "  --json-items FILE     write one JSON line per task (choices' log-likelihoods);\n"
            "                        - for stdout\n");
    mx_cli_common_help(f, MX_CLI_LOGITS);
}


/* What the progress callback needs. */
struct run {
    FILE *items;        /* --json-items, or NULL */
    bool tty, quiet;    /* stderr is a terminal; -q */
    size_t every;       /* non-terminal progress: a line every this many tasks */
    bool write_failed;
};

static void progress(void *ud, const struct mx_mc_task *t, const struct mx_mc_totals *tot) {
    struct run *r = ud;
    if (r->items) {
        fprintf(r->items, "{\"task\": %zu, \"answer\": %d, \"pred\": %d, \"pred_sum\": %d, "
                "\"correct\": %s, \"logprob_sum\": [", t->index, t->answer, t->pred, t->pred_sum,
                t->pred == t->answer ? "true" : "false");
        for (size_t k = 0; k < t->n_choices; k++)
            fprintf(r->items, k ? ", %.9g" : "%.9g", t->sum[k]);
        fputs("], \"tokens\": [", r->items);
        for (size_t k = 0; k < t->n_choices; k++)
            fprintf(r->items, k ? ", %zu" : "%zu", t->count[k]);
        fputs("]}\n", r->items);
        r->write_failed |= ferror(r->items) != 0;
    }
    if (r->quiet)
        return;
    bool last = tot->n_done == tot->n_total;
    if (!r->tty && tot->n_done % r->every != 0 && !last)
        return;
    double lo, hi;
    mx_eval_wilson(tot->n_correct, tot->n_done, &lo, &hi);
    double tps = tot->seconds > 0 ? (double)tot->n_tokens / tot->seconds : 0;
    fprintf(stderr, "%stask %zu/%zu  accuracy %.2f %%  [%.2f, %.2f]  %.0f tokens/s%s",
            r->tty ? "\r\033[K" : "", tot->n_done, tot->n_total,
            100.0 * (double)tot->n_correct / (double)tot->n_done, 100 * lo, 100 * hi, tps,
            r->tty && !last ? "" : "\n");
}

/* "abstract algebra" from ".../abstract_algebra_test.csv"; "" when the name has no such part. */
static void subject_from(const char *path, char *out, size_t cap) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    out[0] = '\0';
    if (n < 5 || strcmp(b + n - 4, ".csv") != 0)
        return;
    n -= 4;
    static const char *const sfx[] = {"_test", "_dev", "_val"};
    bool cut = false;
    for (size_t i = 0; i < 3 && !cut; i++) {
        size_t k = strlen(sfx[i]);
        if (n > k && strncmp(b + n - k, sfx[i], k) == 0) {
            n -= k;
            cut = true;
        }
    }
    if (!cut || n + 1 > cap)
        return;
    for (size_t i = 0; i < n; i++)
        out[i] = b[i] == '_' ? ' ' : b[i];
    out[n] = '\0';
}

/* Reads and parses a task file. Returns 0, or 1 after printing why. */
static int load(const char *path, enum mx_mc_format fmt, struct mx_mc_set *set) {
    char *buf = NULL;
    size_t len = 0;
    struct mx_err err = {0};
    if (mx_cli_read_file(path, CMD, &buf, &len))
        return 1;
    int rc = mx_mc_read(buf, len, path, fmt, set, &err);
    free(buf);
    if (rc < 0) {
        mx_cli_err(CMD, "%s", mx_err_msg(&err, rc));
        return 1;
    }
    return 0;
}

int mx_cmd_eval_mc(int argc, char **argv) {
    struct mx_cli_opts o;
    mx_cli_opts_init(&o);
    const char *file = NULL, *fmt_s = "auto", *dev = NULL, *subject = NULL, *items = NULL;
    long long n_tasks = 0, k_shot = 0;
    bool json = false;
    const struct mx_cli_extra extra[] = {
        {"-f", "--file", MX_X_STR, &file, 0, 0},
        {NULL, "--format", MX_X_STR, &fmt_s, 0, 0},
        {NULL, "--tasks", MX_X_INT, &n_tasks, 0, 1000000000},
        {"-k", "--shots", MX_X_INT, &k_shot, 0, 25},
        {NULL, "--dev", MX_X_STR, &dev, 0, 0},
        {NULL, "--subject", MX_X_STR, &subject, 0, 0},
        {NULL, "--json", MX_X_FLAG, &json, 0, 0},
        {NULL, "--json-items", MX_X_STR, &items, 0, 0},
    };
    int pr = mx_cli_parse(CMD, MX_CLI_LOGITS, argc, argv, &o, extra,
                          sizeof extra / sizeof extra[0], usage);
    if (pr != 0)
        return pr > 0 ? 0 : 2;
    struct mx_err err = {0};
    enum mx_mc_format fmt;
    if (!o.model || !file) {
        mx_cli_err(CMD, "need -m MODEL and -f FILE (see mixel eval mc --help)");
        return 2;
    }
    if (mx_mc_format_parse(fmt_s, &fmt, &err) < 0) {
        mx_cli_err(CMD, "%s", err.msg);
        return 2;
    }
    if ((k_shot > 0 || dev) && fmt != MX_MC_MMLU && fmt != MX_MC_AUTO) {
        mx_cli_err(CMD, "-k and --dev are for --format mmlu");
        return 2;
    }

    int status = 1, rc;
    struct mx_mc_set set = {0}, shots = {0};
    struct mx_llm *L = NULL;
    struct run r = {.tty = isatty(STDERR_FILENO), .quiet = o.quiet};
    char subj[256] = "";
    if (load(file, fmt, &set))
        goto done;
    if ((k_shot > 0 || dev) && set.format != MX_MC_MMLU) {
        mx_cli_err(CMD, "%s: -k and --dev are for MMLU files; this one is %s (use --format mmlu "
                   "to score it that way)", file, mx_mc_format_name(set.format));
        status = 2;
        goto done;
    }
    if (dev && load(dev, MX_MC_MMLU, &shots))
        goto done;
    if (set.format == MX_MC_MMLU && !subject) {
        subject_from(file, subj, sizeof subj);
        subject = subj;
    }
    bool items_stdout = items && strcmp(items, "-") == 0;
    if (items && !(r.items = items_stdout ? stdout : fopen(items, "w"))) {
        mx_cli_err(CMD, "%s: cannot write: %m", items);
        goto done;
    }
    if (mx_cli_resolve_model(CMD, &o))
        goto done;
    mx_cli_log_init(&o);
    if ((rc = mx_llm_open(&L, o.model, &o.s, &err)) < 0) {
        mx_cli_err(CMD, "%s", mx_err_msg(&err, rc));
        goto done;
    }
    if (!o.quiet)
        fprintf(stderr, "mixel eval mc: %zu %s tasks (%s) from %s on %s\n", set.n,
                mx_mc_format_name(set.format), set.syntax, mx_safe(file),
                mx_safe(mx_llm_name(L)));
    struct mx_mc_opts mo = {
        .n_tasks = (size_t)n_tasks, .k_shot = (int)k_shot, .shots = dev ? &shots : NULL,
        .subject = subject, .progress = progress, .canceled = mx_cli_interrupted, .ud = &r,
    };
    size_t n_will = n_tasks > 0 && (size_t)n_tasks < set.n ? (size_t)n_tasks : set.n;
    r.every = n_will / 20 ? n_will / 20 : 1;
    mx_cli_interrupt_catch(false);
    struct mx_mc_totals tot;
    rc = mx_mc_run(L, &set, &mo, &tot, &err);
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
    if (r.tty && !o.quiet && tot.n_done < tot.n_total && tot.n_done > 0)
        fputc('\n', stderr);
    double acc = tot.n_done ? (double)tot.n_correct / (double)tot.n_done : 0;
    double acc_sum = tot.n_done ? (double)tot.n_correct_sum / (double)tot.n_done : 0;
    double chance = tot.n_done ? tot.chance / (double)tot.n_done : 0;
    double lo, hi, se = mx_eval_stderr(tot.n_correct, tot.n_done);
    double tps = tot.seconds > 0 ? (double)tot.n_tokens / tot.seconds : 0;
    mx_eval_wilson(tot.n_correct, tot.n_done, &lo, &hi);
    FILE *human = json ? stderr : stdout;
    fprintf(human, "%s: %zu tasks%s, accuracy %.2f %% +/- %.2f (95 %% CI %.2f-%.2f %%), "
            "random chance %.2f %%\n", mx_mc_format_name(set.format), tot.n_done,
            rc == MX_ECANCELED ? " (interrupted)" : "", 100 * acc, 100 * se, 100 * lo, 100 * hi,
            100 * chance);
    fprintf(human, "  by summed log-likelihood: %.2f %%; %zu tokens in %.1f s (%.0f tokens/s)\n",
            100 * acc_sum, tot.n_tokens, tot.seconds, tps);
    if (json)
        printf("{\"format\": \"%s\", \"file_syntax\": \"%s\", \"tasks\": %zu, \"correct\": %zu, "
               "\"accuracy\": %.6f, \"ci95\": [%.6f, %.6f], \"stderr\": %.6f, "
               "\"accuracy_sum\": %.6f, \"chance\": %.6f, \"k_shot\": %d, \"tokens\": %zu, "
               "\"seconds\": %.3f, \"tokens_per_s\": %.1f, \"complete\": %s}\n",
               mx_mc_format_name(set.format), set.syntax, tot.n_done, tot.n_correct, acc, lo, hi,
               se, acc_sum, chance, set.format == MX_MC_MMLU ? (int)k_shot : 0, tot.n_tokens,
               tot.seconds, tps, rc == 0 ? "true" : "false");
    if (fflush(stdout) != 0 || ferror(stdout)) {
        mx_cli_err(CMD, "write error on stdout");
        goto done;
    }
    status = rc == MX_ECANCELED ? 130 : 0;
done:
    if (r.items && r.items != stdout)
        fclose(r.items);
    mx_llm_close(L);
    mx_mc_set_free(&set);
    mx_mc_set_free(&shots);
    return status;
}
