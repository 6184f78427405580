/* eval_data.h - the benchmark files `mixel eval mc` and `mixel eval gen` read, parsed into plain
 * items with no model involved (so the readers are unit-tested and fuzzed on their own).
 *
 * Multiple choice (the files llama.cpp's llama-perplexity reads, plus two common plain ones):
 *   hellaswag   6 lines per task: context, label (0-3), 4 endings (llama.cpp --hellaswag)
 *   winogrande  CSV: index,sentence with one '_',choice1,choice2,answer (1|2); a header line
 *               is skipped (llama.cpp --winogrande)
 *   llama.cpp   binary (--multiple-choice: ARC, MMLU, TruthfulQA): u32 n_task, u32 offsets
 *               [n_task], then per task a string question, mc1 and mc2 answer sets (u32 n <= 100,
 *               n strings, n i32 labels); a string is u32 length + bytes; little endian
 *   JSONL       one {"question": "...", "choices": ["...", ...], "answer": 0 | "A"} per line
 *   MMLU CSV    question,A,B,C,D,answer (a letter), as in Hendrycks' MMLU dev and test CSVs
 * Exact match (GSM8K): JSONL {"question": "...", "answer": "... #### 42"} (answer may be a number).
 *
 * Everything is untrusted: every length and offset is checked, and a malformed file is an
 * MX_EFORMAT error naming the file, the line or task and what is wrong.
 */
#ifndef MX_EVAL_DATA_H
#define MX_EVAL_DATA_H

#include <stddef.h>

#include "core/base/err.h"

/* How the choices of a multiple-choice task are scored (the --format names). */
enum mx_mc_format {
    MX_MC_AUTO,        /* "auto": told from the file */
    MX_MC_HELLASWAG,   /* "hellaswag": context + " " + ending, mean log-prob of the ending */
    MX_MC_WINOGRANDE,  /* "winogrande": the choice in the blank, mean log-prob of what follows */
    MX_MC_ARC,         /* "arc": question + " " + answer, mean log-prob of the answer */
    MX_MC_MMLU,        /* "mmlu": the MMLU prompt (k-shot), log-prob of the answer's letter */
};

/* The format's name ("hellaswag", ...); "auto" for MX_MC_AUTO. */
const char *mx_mc_format_name(enum mx_mc_format f);

/* Parses a --format name ("auto", "hellaswag", "winogrande", "arc", "mmlu"). Returns 0 or
 * MX_EINVAL with the accepted names in err. */
int mx_mc_format_parse(const char *name, enum mx_mc_format *out, struct mx_err *err);

/* One multiple-choice task. Strings are owned by the set (NUL-terminated UTF-8). */
struct mx_mc_item {
    char *context;        /* hellaswag context, question, or winogrande text before the '_' */
    char *tail;           /* winogrande: text after the '_'; NULL for the other formats */
    char **choices;       /* [n_choices] endings / answers / options */
    size_t n_choices;     /* >= 2 */
    int answer;           /* index of the right choice, 0-based */
    size_t index;         /* the task's position in the file (0-based), for reports */
};

/* A parsed multiple-choice file. */
struct mx_mc_set {
    enum mx_mc_format format;  /* the scoring the file asks for (never MX_MC_AUTO) */
    const char *syntax;        /* static: "hellaswag text", "winogrande csv", "llama.cpp binary",
                                * "jsonl", "mmlu csv" */
    struct mx_mc_item *items;  /* [n] */
    size_t n;
};

/* Parses data[0..len) (a whole file; name is for messages). fmt MX_MC_AUTO tells the syntax
 * and the format from the content: binary (a NUL byte in the first 4), JSONL (starts with '{':
 * arc), a CSV row of 6 fields ending in a letter (mmlu) or of 5 fields ending in 1|2 with a '_'
 * (winogrande), else 6-line records (hellaswag). A forced fmt picks the syntax the same way
 * but keeps the format; "arc" and "mmlu" accept the binary, JSONL and MMLU CSV syntaxes.
 * Returns 0 with *out (mx_mc_set_free), or MX_EFORMAT (err: file, line or task, problem),
 * MX_ENOMEM; *out is then empty. */
int mx_mc_read(const char *data, size_t len, const char *name, enum mx_mc_format fmt,
               struct mx_mc_set *out, struct mx_err *err);

/* Frees the items and zeroes *s; NULL ok. */
void mx_mc_set_free(struct mx_mc_set *s);

/* One exact-match question. */
struct mx_qa_item {
    char *question;   /* the prompt text (owned) */
    char *answer;     /* the reference answer text (owned; a JSON number becomes its text) */
};

/* A parsed exact-match file. */
struct mx_qa_set {
    struct mx_qa_item *items; /* [n] */
    size_t n;
};

/* Parses JSONL data[0..len): one object per non-blank line with a string "question" and a
 * string or number "answer". Returns 0 with *out (mx_qa_set_free), MX_EFORMAT (err names the
 * file and line) or MX_ENOMEM. */
int mx_qa_read(const char *data, size_t len, const char *name, struct mx_qa_set *out,
               struct mx_err *err);

/* Frees the items and zeroes *s; NULL ok. */
void mx_qa_set_free(struct mx_qa_set *s);

#endif
