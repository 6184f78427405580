/* cmd_tokenize.c - `mixel tokenize` and `mixel detokenize`: the developer's window into a model's
 * tokenizer (like llama.cpp's llama-tokenize), and the interface scripts and checks use.
 *
 *   mixel tokenize -m MODEL [--no-bos] [--parse-special] [--pieces] (TEXT... | -f FILE)
 *       prints the ids as a JSON array on one line; --pieces prints "id<TAB>piece" per line
 *       (the vocabulary text, escaped so it is inert in a terminal).
 *   mixel detokenize -m MODEL [--special] (IDS... | -f FILE)
 *       ids as separate arguments, comma-separated, or a JSON array ("[1, 2, 3]"), or read in
 *       those forms from FILE ('-' = stdin, for long lists); prints the
 *       text: raw bytes into a pipe or file, made inert (and newline-terminated) on a terminal.
 *
 * MODEL is a GGUF file (its tokenizer.ggml.* metadata) or, for Stable Diffusion's CLIP, a
 * diffusers tokenizer/ folder, a bpe_simple_vocab_16e6.txt, or the word "clip" for the installed
 * default. Exit status: 0 ok, 1 runtime error (unreadable model, bad id), 2 usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/format/gguf.h"
#include "core/text/tokenizer.h"
#include "core/base/util.h"
#include "cli/cmd.h"
#include "cli/opts.h"
#include "core/base/text.h"

#define MAX_INPUT (256u << 20) /* bytes of text read from a file or stdin */

static void tok_usage(FILE *f) {
    fprintf(f,
            "usage: mixel tokenize -m MODEL [--no-bos] [--parse-special] [--pieces] "
            "(TEXT... | -f FILE)\n"
            "  -m, --model MODEL    GGUF model, or CLIP vocabulary: a diffusers tokenizer/\n"
            "                       folder, bpe_simple_vocab_16e6.txt, or 'clip' (installed)\n"
            "  --no-bos             do not add BOS/EOS (llama add_special = false)\n"
            "  --parse-special      text like <s> becomes its control token\n"
            "  --pieces             one 'id<TAB>piece' line per token instead of a JSON array\n"
            "  -f, --file FILE      read the text from FILE ('-' = stdin)\n");
}

static void detok_usage(FILE *f) {
    fprintf(f,
            "usage: mixel detokenize -m MODEL [--special] (IDS... | -f FILE)\n"
            "  -m, --model MODEL    GGUF model or CLIP vocabulary (as for tokenize)\n"
            "  --special            show control tokens (<s>, </s>) as text\n"
            "  IDS                  separate arguments, comma-separated, or a JSON array\n"
            "  -f, --file FILE      read the ids from FILE ('-' = stdin)\n");
}

/* Loads the tokenizer of model (GGUF, or a CLIP vocabulary). Prints the error; NULL on failure. */
static struct mx_tokenizer *load_tokenizer(const char *model) {
    struct mx_err err = {0};
    struct mx_tokenizer *t = NULL;
    struct stat st;
    if (strcmp(model, "clip") != 0 && !(model = mx_cli_model_path("tokenize", model)))
        return NULL; /* -m takes the names `mixel list` shows too */
    size_t len = strlen(model);
    int rc;
    if (strcmp(model, "clip") == 0) {
        rc = mx_clip_tokenizer_load(NULL, &t, &err);
    } else if ((stat(model, &st) == 0 && S_ISDIR(st.st_mode)) ||
               (len >= 4 && strcmp(model + len - 4, ".txt") == 0)) {
        rc = mx_clip_tokenizer_load(model, &t, &err);
    } else {
        struct mx_gguf *g = NULL;
        rc = mx_gguf_open(model, &g, &err);
        if (rc == 0)
            rc = mx_tokenizer_from_gguf(g, &t, &err);
        mx_gguf_close(g);
    }
    if (rc < 0) {
        fprintf(stderr, "mixel: %s\n", mx_safe(mx_err_msg(&err, rc)));
        return NULL;
    }
    return t;
}

/* Reads path ('-' = stdin) into a malloc'd buffer. Prints the error; NULL on failure. */
static char *read_all(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "mixel: %s: %s\n", mx_safe(path), strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            if (cap >= MAX_INPUT) {
                fprintf(stderr, "mixel: %s: more than %u bytes of text\n", mx_safe(path),
                        MAX_INPUT);
                free(buf);
                buf = NULL;
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) {
            if (ferror(f)) {
                fprintf(stderr, "mixel: %s: read error\n", mx_safe(path));
                free(buf);
                buf = NULL;
            }
            break;
        }
    }
    if (f != stdin)
        fclose(f);
    *len = n;
    return buf;
}

/* Prints a vocabulary text so it is inert and unambiguous: \n \t \r \\ escaped, other control
 * characters, C1 controls, bidirectional controls and invalid UTF-8 as \xNN / \uXXXX. */
static void print_escaped(const char *s, size_t len) {
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        unsigned int cp;
        size_t k = mx_utf8_decode(s + i, len - i, &cp);
        if (c == '\\') {
            fputs("\\\\", stdout);
        } else if (c == '\n') {
            fputs("\\n", stdout);
        } else if (c == '\t') {
            fputs("\\t", stdout);
        } else if (c == '\r') {
            fputs("\\r", stdout);
        } else if (c < 0x20 || c == 0x7f || (cp == 0xFFFD && k == 1 && c >= 0x80)) {
            printf("\\x%02x", c);
            k = 1;
        } else if ((cp >= 0x80 && cp < 0xA0) || (cp >= 0x202A && cp <= 0x202E) ||
                   (cp >= 0x2066 && cp <= 0x2069) || cp == 0x200E || cp == 0x200F) {
            printf("\\u%04x", cp);
        } else {
            fwrite(s + i, 1, k, stdout);
        }
        i += k;
    }
}

int mx_cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *file = NULL;
    bool no_bos = false, parse_special = false, pieces = false;
    int first_text = argc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            tok_usage(stdout);
            return 0;
        } else if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) {
            if (++i >= argc)
                goto usage;
            model = argv[i];
        } else if (strcmp(a, "-f") == 0 || strcmp(a, "--file") == 0) {
            if (++i >= argc)
                goto usage;
            file = argv[i];
        } else if (strcmp(a, "--no-bos") == 0) {
            no_bos = true;
        } else if (strcmp(a, "--parse-special") == 0) {
            parse_special = true;
        } else if (strcmp(a, "--pieces") == 0) {
            pieces = true;
        } else if (strcmp(a, "--") == 0) {
            first_text = i + 1;
            break;
        } else if (a[0] == '-' && a[1] != 0) {
            mx_cli_err("tokenize", "unknown option '%s'", a);
            goto usage;
        } else {
            first_text = i;
            break;
        }
    }
    if (!model) {
        mx_cli_err("tokenize", "-m MODEL is required");
        goto usage;
    }
    if ((file != NULL) == (first_text < argc)) {
        mx_cli_err("tokenize", "give either TEXT or -f FILE");
        goto usage;
    }

    char *text = NULL;
    size_t len = 0;
    if (file) {
        if (!(text = read_all(file, &len)))
            return 1;
    } else {
        /* the remaining arguments, joined by single spaces */
        for (int i = first_text; i < argc; i++)
            len += strlen(argv[i]) + 1;
        if (!(text = malloc(len + 1)))
            return 1;
        len = 0;
        for (int i = first_text; i < argc; i++) {
            size_t k = strlen(argv[i]);
            if (i > first_text)
                text[len++] = ' ';
            memcpy(text + len, argv[i], k);
            len += k;
        }
    }

    struct mx_tokenizer *t = load_tokenizer(model);
    if (!t) {
        free(text);
        return 1;
    }
    unsigned flags = (no_bos ? 0 : MX_TOK_ADD_SPECIAL) | (parse_special ? MX_TOK_PARSE_SPECIAL : 0);
    int32_t *ids = NULL;
    size_t n = 0;
    struct mx_err err = {0};
    int rc = mx_tokenizer_encode(t, text, len, flags, &ids, &n, &err);
    free(text);
    if (rc < 0) {
        fprintf(stderr, "mixel: %s\n", mx_safe(mx_err_msg(&err, rc)));
        mx_tokenizer_free(t);
        return 1;
    }
    if (pieces) {
        for (size_t i = 0; i < n; i++) {
            size_t pl = 0;
            const char *p = mx_tokenizer_token_text(t, ids[i], &pl);
            printf("%d\t", ids[i]);
            print_escaped(p ? p : "", pl);
            putchar('\n');
        }
    } else {
        putchar('[');
        for (size_t i = 0; i < n; i++)
            printf(i ? ", %d" : "%d", ids[i]);
        puts("]");
    }
    free(ids);
    mx_tokenizer_free(t);
    return fflush(stdout) == 0 ? 0 : 1;
usage:
    tok_usage(stderr);
    return 2;
}

/* A growable list of ids. */
struct idlist {
    int32_t *v;
    size_t n, cap;
};

static int idlist_push(struct idlist *l, int32_t id) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        int32_t *v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = id;
    return 0;
}

/* Parses one argument of ids ("12", "1,2,3", "[1, 2]", "]") into iv. Returns 0 or -1 (message
 * printed). */
static int parse_ids(const char *a, struct idlist *iv) {
    const char *p = a;
    for (;;) {
        while (*p == ' ' || *p == ',' || *p == '[' || *p == ']' || *p == '\t' || *p == '\n')
            p++;
        if (!*p)
            return 0;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < INT32_MIN || v > INT32_MAX ||
            !(*end == 0 || *end == ',' || *end == ' ' || *end == ']' || *end == '\t' ||
              *end == '\n')) {
            mx_cli_err("detokenize", "'%s' is not a list of token ids", a);
            return -1;
        }
        if (idlist_push(iv, (int32_t)v) < 0) {
            mx_cli_err("detokenize", "out of memory");
            return -1;
        }
        p = end;
    }
}

int mx_cmd_detokenize(int argc, char **argv) {
    const char *model = NULL;
    bool special = false;
    struct idlist iv = {0};
    int i, rc_ids;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            detok_usage(stdout);
            free(iv.v);
            return 0;
        } else if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) {
            if (++i >= argc)
                goto usage;
            model = argv[i];
        } else if (strcmp(a, "--special") == 0) {
            special = true;
        } else if (strcmp(a, "-f") == 0 || strcmp(a, "--file") == 0) {
            if (++i >= argc)
                goto usage;
            size_t len;
            char *text = read_all(argv[i], &len);
            if (!text) {
                free(iv.v);
                return 1;
            }
            /* one string: NULs in the file end it, which parse_ids then rejects or ignores */
            char *z = realloc(text, len + 1);
            if (!z) {
                free(text);
                free(iv.v);
                return 1;
            }
            z[len] = 0;
            rc_ids = parse_ids(z, &iv);
            free(z);
            if (rc_ids < 0)
                goto usage;
        } else if (a[0] == '-' && !(a[1] >= '0' && a[1] <= '9')) {
            mx_cli_err("detokenize", "unknown option '%s'", a);
            goto usage;
        } else if (parse_ids(a, &iv) < 0) {
            goto usage;
        }
    }
    if (!model) {
        mx_cli_err("detokenize", "-m MODEL is required");
        goto usage;
    }
    struct mx_tokenizer *t = load_tokenizer(model);
    if (!t) {
        free(iv.v);
        return 1;
    }
    char *text = NULL;
    size_t len = 0;
    struct mx_err err = {0};
    int rc = mx_tokenizer_decode(t, iv.v, iv.n, special ? MX_DETOK_SPECIAL : 0, &text, &len,
                                 &err);
    mx_tokenizer_free(t);
    free(iv.v);
    if (rc < 0) {
        fprintf(stderr, "mixel: %s\n", mx_safe(mx_err_msg(&err, rc)));
        return 1;
    }
    if (isatty(STDOUT_FILENO)) {
        /* on a terminal the text is untrusted output: inert, and ends the line */
        char *safe = malloc(MX_SANITIZE_MAX(len));
        if (!safe) {
            free(text);
            return 1;
        }
        size_t k = mx_text_sanitize(text, len, safe, true);
        fwrite(safe, 1, k, stdout);
        if (k == 0 || safe[k - 1] != '\n')
            putchar('\n');
        free(safe);
    } else {
        fwrite(text, 1, len, stdout);
    }
    free(text);
    return fflush(stdout) == 0 ? 0 : 1;
usage:
    free(iv.v);
    detok_usage(stderr);
    return 2;
}
