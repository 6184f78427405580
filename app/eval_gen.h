/* eval_gen.h - exact-match benchmarks (`mixel eval gen`, GSM8K style): each question is asked as
 * a chat turn through the chat engine (app/engine_llm.c: the model's chat template, the generate
 * loop with the template's stop strings, the same path the TUI and `run --session` use), the
 * answer is generated greedily, and the final number of the answer is compared with the
 * reference's (its `#### N` line when it has one).
 */
#ifndef MX_EVAL_GEN_H
#define MX_EVAL_GEN_H

#include <stdbool.h>
#include <stddef.h>

#include "core/base/err.h"
#include "app/engine.h"
#include "app/eval_data.h"

/* GSM8K's final-number extraction: the number after the last "####" when the text has one, else
 * the last number in the text. A number is digits with optional thousands commas and decimals,
 * a '-' right before it counts when it does not follow a letter or digit ("3-4" gives 4).
 * The result is normalised so equal values compare equal as strings: commas dropped, leading
 * zeros and trailing decimal zeros removed ("1,000.50" -> "1000.5", "-0" -> "0"). Writes it to
 * out[0..cap) and returns true; false (out = "") when there is no number or it does not fit. */
bool mx_qa_extract(const char *text, char *out, size_t cap);

/* One answered question, for the progress callback (borrowed for the call). */
struct mx_qa_task {
    size_t index;          /* position in the file */
    const char *question;
    const char *reply;     /* the model's answer text */
    const char *got;       /* the number extracted from the reply ("" when none) */
    const char *want;      /* the number extracted from the reference answer */
    bool correct;
    size_t n_generated;    /* tokens of the reply */
    double seconds;        /* prefill + generation of this question */
};

/* Running totals (also the final result). */
struct mx_qa_totals {
    size_t n_done, n_total, n_correct;
    size_t n_no_number;    /* replies without a number */
    size_t n_prompt;       /* prompt tokens evaluated (prefilled) */
    size_t n_generated;    /* tokens generated */
    double gen_s;          /* seconds spent generating (for tokens/s) */
    double seconds;        /* wall time of the whole run */
};

struct mx_qa_opts {
    size_t n;              /* the first n questions; 0: all */
    const char *system;    /* a system message before each question; NULL: none */
    /* after each question; may be NULL */
    void (*progress)(void *ud, const struct mx_qa_task *t, const struct mx_qa_totals *tot);
    bool (*canceled)(void *ud); /* polled while generating; true stops the run */
    void *ud;
};

/* Asks the questions of set through the chat engine e (an LLM engine, e.g. from
 * mx_engine_llm_new) with settings s (the caller makes them greedy and sets n_predict), one
 * fresh conversation per question, and compares the final numbers. A reference answer without
 * a number is an MX_EFORMAT error naming its line. Returns 0, MX_ECANCELED (tot holds the
 * questions done), or the engine's error for the question it failed on. */
int mx_qa_run(struct mx_engine *e, const struct mx_qa_set *set, const struct mx_gen_settings *s,
              const struct mx_qa_opts *o, struct mx_qa_totals *tot, struct mx_err *err);

#endif
