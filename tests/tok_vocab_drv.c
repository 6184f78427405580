/* tok_vocab_drv.c - test helper for tests/tok_vocab.sh and tests/tok_peer.sh: tokenizes with a
 * GGUF vocabulary the way llama.cpp's tests and the peer driver do.
 *
 *   tok_vocab_drv vectors VOCAB.gguf INP OUT   llama.cpp's test vectors (ggml-vocab-NAME.gguf.inp:
 *                                              "\n__ggml_vocab_test__\n" between strings, *.out
 *                                              one line of ids per string, no BOS, no special
 *                                              parsing); prints each mismatch, exit 1 if any
 *   tok_vocab_drv records VOCAB.gguf < RECORDS  "<byte length>\n<bytes>\n" records; prints
 *                                              "BOS ids", "NOBOS ids", "SPECIAL ids", "END" per
 *                                              record, the lines of the peer's tokenize mode
 *                                              (/work/shared/tools/peer-llama/llref.c) minus
 *                                              DETOK
 *   tok_vocab_drv repre VOCAB.gguf NAME OUT.gguf  a copy of VOCAB's metadata with
 *                                              tokenizer.ggml.pre set to NAME: one real
 *                                              vocabulary tried with every pre-tokenizer
 * Exit 2 for usage or unreadable files, with the reason on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/format/gguf.h"
#include "core/text/tokenizer.h"

/* The whole file, NUL-terminated (*n its length), or NULL. */
static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    char *b = NULL;
    size_t cap = 0;
    *n = 0;
    if (!f)
        return NULL;
    for (;;) {
        if (*n + 65536 > cap) {
            cap = (*n + 65536) * 2;
            char *nb = realloc(b, cap + 1);
            if (!nb) {
                free(b);
                fclose(f);
                return NULL;
            }
            b = nb;
        }
        size_t k = fread(b + *n, 1, 65536, f);
        *n += k;
        if (k == 0)
            break;
    }
    fclose(f);
    b[*n] = 0;
    return b;
}

/* "TAG id id ...", as the peer prints them. */
static void print_ids(const char *tag, const int32_t *ids, size_t n) {
    printf("%s", tag);
    for (size_t i = 0; i < n; i++)
        printf(" %d", ids[i]);
    printf("\n");
}

/* records mode: the peer's tokenize lines for each record on stdin. */
static int run_records(const struct mx_tokenizer *t) {
    long n;
    while (scanf("%ld", &n) == 1) {
        getchar();
        if (n < 0 || n > (1L << 26))
            return 2;
        char *s = malloc((size_t)n + 1);
        if (!s || fread(s, 1, (size_t)n, stdin) != (size_t)n) {
            free(s);
            return 2;
        }
        getchar();
        static const struct {
            const char *tag;
            unsigned flags;
        } modes[] = {{"BOS", MX_TOK_ADD_SPECIAL},
                     {"NOBOS", 0},
                     {"SPECIAL", MX_TOK_ADD_SPECIAL | MX_TOK_PARSE_SPECIAL}};
        for (size_t m = 0; m < 3; m++) {
            int32_t *ids;
            size_t k;
            struct mx_err err = {0};
            if (mx_tokenizer_encode(t, s, (size_t)n, modes[m].flags, &ids, &k, &err) < 0) {
                fprintf(stderr, "tokenize: %s\n", err.msg);
                free(s);
                return 1;
            }
            print_ids(modes[m].tag, ids, k);
            free(ids);
        }
        printf("END\n");
        free(s);
    }
    return 0;
}

/* vectors mode: each string of inp against its line of ids in outp. */
static int run_vectors(const struct mx_tokenizer *t, const char *inp, const char *outp) {
    static const char sep[] = "\n__ggml_vocab_test__\n";
    size_t ni, no;
    char *in = slurp(inp, &ni), *out = slurp(outp, &no);
    if (!in || !out) {
        fprintf(stderr, "cannot read %s or %s\n", inp, outp);
        free(in);
        free(out);
        return 2;
    }
    int bad = 0, count = 0;
    char *p = in, *line = out;
    while (p < in + ni && line < out + no) {
        char *e = strstr(p, sep);
        size_t len = e ? (size_t)(e - p) : (size_t)(in + ni - p);
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        int32_t *ids;
        size_t k;
        struct mx_err err = {0};
        if (mx_tokenizer_encode(t, p, len, 0, &ids, &k, &err) < 0) {
            fprintf(stderr, "tokenize: %s\n", err.msg);
            return 1;
        }
        char *q = line;
        size_t j = 0;
        bool same = true;
        for (;;) {
            char *qe;
            long v = strtol(q, &qe, 10);
            if (qe == q)
                break;
            q = qe;
            if (j >= k || ids[j] != v)
                same = false;
            j++;
        }
        if (j != k)
            same = false;
        if (!same) {
            bad++;
            printf("MISMATCH %d: \"%.*s\"\n  want %s\n  got ", count, (int)len, p, line);
            for (size_t i = 0; i < k; i++)
                printf(" %d", ids[i]);
            printf("\n");
        }
        free(ids);
        count++;
        line = nl ? nl + 1 : out + no;
        if (!e)
            break;
        p = e + sizeof(sep) - 1;
    }
    printf("%s: %d strings, %d mismatches\n", inp, count, bad);
    free(in);
    free(out);
    return bad ? 1 : (count ? 0 : 2);
}

/* VOCAB's key-value pairs with tokenizer.ggml.pre replaced, written to out. */
static int repre(const struct mx_gguf *g, const char *name, const char *out) {
    struct mx_gguf_writer *w = mx_gguf_writer_new();
    struct mx_err err = {0};
    int rc = w ? 0 : MX_ENOMEM;
    for (int64_t i = 0; rc == 0 && i < mx_gguf_n_kv(g); i++)
        rc = mx_gguf_writer_set_value(w, mx_gguf_kv_key(g, i), mx_gguf_kv_value(g, i));
    if (rc == 0)
        rc = mx_gguf_writer_set_str(w, "tokenizer.ggml.pre", name);
    if (rc == 0)
        rc = mx_gguf_writer_write(w, out, 3, &err);
    mx_gguf_writer_free(w);
    if (rc < 0)
        fprintf(stderr, "repre: %s\n", err.msg[0] ? err.msg : "out of memory");
    return rc < 0 ? 2 : 0;
}

int main(int argc, char **argv) {
    if (argc < 3 || (strcmp(argv[1], "vectors") == 0 && argc != 5) ||
        (strcmp(argv[1], "records") == 0 && argc != 3) ||
        (strcmp(argv[1], "repre") == 0 && argc != 5)) {
        fprintf(stderr, "usage: tok_vocab_drv vectors VOCAB INP OUT | records VOCAB < RECORDS |"
                " repre VOCAB NAME OUT\n");
        return 2;
    }
    struct mx_gguf *g;
    struct mx_tokenizer *t;
    struct mx_err err = {0};
    if (mx_gguf_open(argv[2], &g, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    if (strcmp(argv[1], "repre") == 0) {
        int r = repre(g, argv[3], argv[4]);
        mx_gguf_close(g);
        return r;
    }
    int rc = mx_tokenizer_from_gguf(g, &t, &err);
    mx_gguf_close(g);
    if (rc < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 3;
    }
    rc = strcmp(argv[1], "vectors") == 0 ? run_vectors(t, argv[3], argv[4]) : run_records(t);
    mx_tokenizer_free(t);
    return rc;
}
