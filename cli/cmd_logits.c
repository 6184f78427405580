/* cmd_logits.c - `mixel logits`: the model's logits as JSON, so any checkout can be compared with
 * a peer's numbers (the format of ../shared/refs/llm):
 *   {"ids": [...], "logits": [[...n_vocab...], ...]}
 * one row (after the last id) by default, every row with --all, or the rows at chosen positions
 * with --rows (then "rows": [positions] is printed too). Rows stream out as they are computed, so
 * a 60K-token input never holds all its logits in memory. Floats are printed with 9 significant
 * digits (enough to round-trip a float32). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/llm/llama.h"
#include "kernels/backend.h"
#include "cli/cmd.h"
#include "cli/opts.h"
#include "app/llm.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: mixel logits -m MODEL (--ids 1,2,3 | --ids-file FILE | -p TEXT | -f FILE)\n"
            "                    [--all | --rows P1,P2,...] [options]\n"
            "Prints {\"ids\": [...], \"logits\": [[...], ...]}: the logits after the last id,\n"
            "after every id (--all), or after the ids at positions P (--rows).\n"
            "  --ids LIST          token ids, comma separated\n"
            "  --ids-file FILE     token ids in a file (any separators; a JSON array works)\n"
            "  -p, --prompt TEXT   text, tokenized with the model's tokenizer (BOS added)\n"
            "  -f, --file FILE     the same from a file\n"
            "  --all               every row\n"
            "  --rows LIST         only these positions' rows\n");
    mx_cli_common_help(f, MX_CLI_LOGITS);
}

struct out_state {
    int32_t n_vocab;
    const int32_t *rows;  /* sorted wanted positions (NULL: every row) */
    int64_t n_rows, next; /* count, index of the next wanted one */
    bool first;
};

static void print_row(const float *l, int32_t n) {
    putchar('[');
    for (int32_t j = 0; j < n; j++) {
        if (isfinite(l[j]))
            printf(j ? ",%.9g" : "%.9g", (double)l[j]);
        else
            fputs(j ? ",null" : "null", stdout);
    }
    putchar(']');
}

static int on_row(void *ud, int64_t i, const float *logits) {
    struct out_state *s = ud;
    if (s->rows) {
        if (s->next >= s->n_rows || s->rows[s->next] != i)
            return 0;
        while (s->next < s->n_rows && s->rows[s->next] == i)
            s->next++;
    }
    fputs(s->first ? "\n  " : ",\n  ", stdout);
    s->first = false;
    print_row(logits, s->n_vocab);
    return ferror(stdout) ? MX_EIO : 0;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int mx_cmd_logits(int argc, char **argv) {
    struct mx_cli_opts o;
    mx_cli_opts_init(&o);
    o.quiet = true;
    const char *ids_s = NULL, *ids_file = NULL, *prompt = NULL, *pfile = NULL, *rows_s = NULL;
    bool all = false;
    const struct mx_cli_extra extra[] = {
        {NULL, "--ids", MX_X_STR, &ids_s, 0, 0},
        {NULL, "--ids-file", MX_X_STR, &ids_file, 0, 0},
        {"-p", "--prompt", MX_X_STR, &prompt, 0, 0},
        {"-f", "--file", MX_X_STR, &pfile, 0, 0},
        {NULL, "--rows", MX_X_STR, &rows_s, 0, 0},
        {NULL, "--all", MX_X_FLAG, &all, 0, 0},
    };
    int pr = mx_cli_parse("logits", MX_CLI_LOGITS, argc, argv, &o, extra,
                          sizeof extra / sizeof extra[0], usage);
    if (pr != 0)
        return pr > 0 ? 0 : 2;
    int n_inputs = !!ids_s + !!ids_file + !!prompt + !!pfile;
    if (n_inputs != 1 || !o.model || (all && rows_s)) {
        mx_cli_err("logits", "need -m and exactly one of --ids, --ids-file, -p, -f "
                        "(and not both --all and --rows; see mixel logits --help)");
        return 2;
    }

    int status = 1, rc;
    struct mx_llm *L = NULL;
    struct mx_llama_ctx *c = NULL;
    struct mx_err err = {0};
    int32_t *ids = NULL, *rows = NULL;
    int64_t n = 0, n_rows = 0;
    char *text = NULL;
    size_t tlen = 0;
    if (rows_s) {
        if (mx_cli_parse_ids(rows_s, "logits", &rows, &n_rows))
            return 2;
        qsort(rows, (size_t)n_rows, sizeof *rows, cmp_i32);
    }
    if (ids_s && mx_cli_parse_ids(ids_s, "logits", &ids, &n))
        goto done;
    if (ids_file) {
        if (mx_cli_read_file(ids_file, "logits", &text, &tlen) ||
            mx_cli_parse_ids(text, "logits", &ids, &n))
            goto done;
    }
    if (pfile && mx_cli_read_file(pfile, "logits", &text, &tlen))
        goto done;
    if (mx_cli_resolve_model("logits", &o))
        goto done;
    mx_cli_log_init(&o);
    if ((rc = mx_llm_open(&L, o.model, &o.s, &err)) < 0) {
        mx_cli_err("logits", "%s", mx_err_msg(&err, rc));
        goto done;
    }
    c = mx_llm_ctx(L);
    if (prompt || pfile) {
        if (prompt) {
            text = strdup(prompt);
            tlen = strlen(prompt);
        }
        size_t nt = 0;
        if (!text || (rc = mx_llm_tokenize(L, text, tlen, &ids, &nt, &err)) < 0) {
            mx_cli_err("logits", "tokenizer: %s", text ? mx_err_msg(&err, rc) : "out of memory");
            goto done;
        }
        n = (int64_t)nt;
        if (n == 0) {
            mx_cli_err("logits", "the text gives no tokens");
            goto done;
        }
    }
    const struct mx_llama_hparams *hp = mx_llama_model_hparams(mx_llm_model(L));
    if (n > mx_llama_ctx_n_ctx(c)) {
        mx_cli_err("logits", "%lld tokens do not fit the context of %lld (use -c)",
                (long long)n, (long long)mx_llama_ctx_n_ctx(c));
        goto done;
    }
    printf("{\"ids\": [");
    for (int64_t i = 0; i < n; i++)
        printf(i ? ",%d" : "%d", (int)ids[i]);
    printf("],");
    if (rows) {
        printf(" \"rows\": [");
        for (int64_t i = 0; i < n_rows; i++)
            printf(i ? ",%d" : "%d", (int)rows[i]);
        printf("],");
    }
    printf(" \"logits\": [");
    struct out_state st = {.n_vocab = hp->n_vocab, .rows = rows, .n_rows = n_rows, .first = true};
    rc = mx_llama_decode(c, ids, n, all || rows, on_row, &st, &err);
    if (rc < 0) {
        printf("]}\n");
        mx_cli_err("logits", "%s", mx_err_msg(&err, rc));
        goto done;
    }
    if (!all && !rows)
        on_row(&st, n - 1, mx_llama_logits(c));
    printf("\n]}\n");
    if (fflush(stdout) != 0 || ferror(stdout)) {
        mx_cli_err("logits", "write error on stdout");
        goto done;
    }
    status = 0;
done:
    free(ids);
    free(rows);
    free(text);
    mx_llm_close(L);
    return status;
}
