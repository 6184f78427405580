/* eval_mc.h - multiple-choice benchmarks (`mixel eval mc`): each choice of a task is scored by
 * the log-likelihood the model gives its tokens after the shared context, the best-scoring
 * choice is the model's answer, and accuracy is reported with a 95 % confidence interval. The
 * scoring of each format is llama-perplexity's (tools/perplexity/perplexity.cpp at ggml-org/
 * llama.cpp 050fc7f): HellaSwag and the binary multiple-choice files (ARC, MMLU, TruthfulQA) by
 * the mean log-probability of the tokens after the longest prefix all choices share, Winogrande
 * with its partial evaluation (only the words after the blank count when they are long enough);
 * MMLU CSV files get Hendrycks' k-shot prompt, scored on the answer letter.
 *
 * Each task's sequences are evaluated one after the other in the model's single KV cache; the
 * prefix a sequence shares with the previous one (BOS, the k-shot prompt, the question) stays
 * cached, so a task costs its context once plus each choice's own tokens.
 */
#ifndef MX_EVAL_MC_H
#define MX_EVAL_MC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"
#include "app/eval_data.h"

struct mx_llm;

/* One scored task, handed to the progress callback (borrowed for the call). */
struct mx_mc_task {
    size_t index;          /* the task's position in the file */
    size_t n_choices;
    int answer;            /* the right choice */
    int pred;              /* the choice with the highest mean log-prob (llama.cpp's pick) */
    int pred_sum;          /* the choice with the highest summed log-prob */
    const double *sum;     /* [n_choices] summed log-probs of the scored tokens */
    const size_t *count;   /* [n_choices] scored tokens per choice */
};

/* Running totals (also the final result). */
struct mx_mc_totals {
    size_t n_done;         /* tasks scored */
    size_t n_total;        /* tasks that will be scored */
    size_t n_correct;      /* pred == answer */
    size_t n_correct_sum;  /* pred_sum == answer */
    double chance;         /* sum of 1/n_choices: the expected correct count of a random pick */
    size_t n_tokens;       /* tokens evaluated (decoded), for tokens/s */
    double seconds;        /* time spent scoring */
};

/* What to score and where to report. */
struct mx_mc_opts {
    size_t n_tasks;        /* 0: all; else this many, picked as llama.cpp picks them (see
                            * mx_mc_pick) */
    int k_shot;            /* mmlu: solved examples before each question (0-25) */
    const struct mx_mc_set *shots; /* mmlu: where the examples come from (a dev file); NULL:
                            * the first k_shot tasks of the set, which are then not scored */
    const char *subject;   /* mmlu: "abstract algebra" in the prompt's first line; NULL: none */
    /* after each task; may be NULL */
    void (*progress)(void *ud, const struct mx_mc_task *t, const struct mx_mc_totals *tot);
    bool (*canceled)(void *ud); /* polled between tasks; may be NULL */
    void *ud;
};

/* Scores the tasks of set with L (its KV cache is used and left empty). Fills *tot. Returns 0,
 * MX_ECANCELED (tot holds the tasks done), MX_EINVAL (a task whose choices add no tokens, or too
 * few tasks for k_shot), MX_EFULL (a task does not fit the context: err says how many tokens),
 * or a tokenizer/backend error. */
int mx_mc_run(struct mx_llm *L, const struct mx_mc_set *set, const struct mx_mc_opts *o,
              struct mx_mc_totals *tot, struct mx_err *err);

/* The order in which llama-perplexity scores tasks, as indices into the n_total tasks (written to
 * idx[0..*n_out)): HellaSwag draws every task (or n_want of them) in a random order, removing
 * each from the pool (std::mt19937 seeded 1, std::uniform_int_distribution as libstdc++ 11+
 * draws it); the other formats keep the file order unless 0 < n_want < n_total, then n_want
 * tasks are drawn with mt19937(1) as llama.cpp's Winogrande and multiple-choice readers do. So
 * `--tasks 400` scores the same tasks llama.cpp's `--hellaswag-tasks 400` does. Returns 0 or
 * MX_ENOMEM. */
int mx_mc_pick(enum mx_mc_format f, size_t n_total, size_t n_want, size_t *idx, size_t *n_out);

/* The 95 % Wilson score interval of k successes in n trials, as llama.cpp prints for HellaSwag:
 * [*lo, *hi] in 0..1 (both 0 when n is 0). */
void mx_eval_wilson(size_t k, size_t n, double *lo, double *hi);

/* The standard error of a proportion k/n as llama.cpp's final lines give it:
 * sqrt(p (1 - p) / (n - 1)); 0 when n < 2. */
double mx_eval_stderr(size_t k, size_t n);

/* Hendrycks' MMLU prompt for task it, after the solved examples shots[0..n_shots) (NULL ok when
 * 0): "The following are multiple choice questions (with answers)[ about SUBJECT].\n\n", each
 * example as "Q\nA. a\nB. b\n...\nAnswer: X\n\n", then the question ending in "Answer:". The
 * choices are then the letters " A", " B", ... Returns the text (caller frees) or NULL when out
 * of memory. */
char *mx_mc_mmlu_prompt(const struct mx_mc_item *it, const struct mx_mc_item *const *shots,
                        size_t n_shots, const char *subject);

#endif
