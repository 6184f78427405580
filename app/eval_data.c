/* eval_data.c - readers of the benchmark files (see eval_data.h).
 *
 * Files are read whole (the largest, HellaSwag's 10042 tasks, is 8 MB) and parsed in one pass;
 * every string is copied out, so the caller may free the buffer. The CSV reader follows RFC 4180
 * (quoted fields with "" escapes and line breaks inside quotes), which covers what llama.cpp's
 * Winogrande loader accepts (it only strips the quotes around the sentence) and Hendrycks' MMLU
 * files, whose questions contain commas, quotes and newlines.
 */
#include "app/eval_data.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define MC_MAX_CHOICES 100  /* llama.cpp's limit on a binary task's answers */
#define MAX_FIELD ((size_t)1 << 24) /* longest text field accepted (16 MiB) */

static const char *const k_format_names[] = {"auto", "hellaswag", "winogrande", "arc", "mmlu"};

const char *mx_mc_format_name(enum mx_mc_format f) {
    return (unsigned)f < sizeof k_format_names / sizeof k_format_names[0] ? k_format_names[f]
                                                                           : "unknown";
}

int mx_mc_format_parse(const char *name, enum mx_mc_format *out, struct mx_err *err) {
    for (size_t i = 0; name && i < sizeof k_format_names / sizeof k_format_names[0]; i++)
        if (strcmp(name, k_format_names[i]) == 0) {
            *out = (enum mx_mc_format)i;
            return 0;
        }
    return mx_err_set(err, MX_EINVAL, "--format: '%s' is not one of auto, hellaswag, "
                      "winogrande, arc, mmlu", name ? name : "(null)");
}

/* ---- small helpers -------------------------------------------------------------------------- */

/* A NUL-terminated copy of s[0..n), or NULL when out of memory. */
static char *dup_n(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static void item_free(struct mx_mc_item *it) {
    free(it->context);
    free(it->tail);
    for (size_t k = 0; it->choices && k < it->n_choices; k++)
        free(it->choices[k]);
    free(it->choices);
    memset(it, 0, sizeof *it);
}

void mx_mc_set_free(struct mx_mc_set *s) {
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        item_free(&s->items[i]);
    free(s->items);
    memset(s, 0, sizeof *s);
}

/* Appends a zeroed item to s (capacity doubling in *cap). Returns it, or NULL (out of memory). */
static struct mx_mc_item *push_item(struct mx_mc_set *s, size_t *cap) {
    if (s->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        struct mx_mc_item *p = realloc(s->items, nc * sizeof *p);
        if (!p)
            return NULL;
        s->items = p;
        *cap = nc;
    }
    struct mx_mc_item *it = &s->items[s->n++];
    memset(it, 0, sizeof *it);
    it->index = s->n - 1;
    return it;
}

/* Parses a whole decimal integer in s (spaces around allowed) into [lo, hi]. */
static bool parse_int(const char *s, long lo, long hi, long *out) {
    while (*s == ' ' || *s == '\t' || *s == '\r')
        s++;
    if (!isdigit((unsigned char)*s) && *s != '-' && *s != '+')
        return false;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || end == s)
        return false;
    while (*end == ' ' || *end == '\t' || *end == '\r')
        end++;
    if (*end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* An answer letter "A".."Z" (spaces around allowed) as an index below n, else -1. */
static int parse_letter(const char *s, size_t n) {
    while (*s == ' ' || *s == '\t')
        s++;
    char c = *s;
    if (c < 'A' || c > 'Z')
        return -1;
    s++;
    while (*s == ' ' || *s == '\t' || *s == '\r')
        s++;
    return *s || (size_t)(c - 'A') >= n ? -1 : c - 'A';
}

/* ---- CSV ------------------------------------------------------------------------------------ */

/* One CSV record's fields (owned copies). */
struct csv_rec {
    char **f;
    size_t n, cap;
};

static void csv_clear(struct csv_rec *r) {
    for (size_t i = 0; i < r->n; i++)
        free(r->f[i]);
    r->n = 0;
}

static void csv_free(struct csv_rec *r) {
    csv_clear(r);
    free(r->f);
    memset(r, 0, sizeof *r);
}

/* Reads the record starting at *p (before end) into r: fields split at unquoted commas, ending
 * at an unquoted line break (LF or CRLF) or the end of the data; "..." fields may hold commas,
 * line breaks and "" (a quote). *line counts the line breaks consumed. Returns 0 with *p after
 * the record, MX_EFORMAT (an unterminated quote, text after a closing quote, a field too long)
 * or MX_ENOMEM. */
static int csv_read(const char **p, const char *end, struct csv_rec *r, size_t *line,
                    const char *name, struct mx_err *err) {
    const char *s = *p;
    size_t line0 = *line;
    csv_clear(r);
    for (;;) {
        /* one field */
        char *buf = NULL;
        size_t n = 0, cap = 0;
        bool quoted = s < end && *s == '"';
        if (quoted)
            s++;
        for (;;) {
            if (s >= end) {
                if (quoted) {
                    free(buf);
                    return mx_err_set(err, MX_EFORMAT, "%s:%zu: a quoted field is not closed",
                                      name, line0 + 1);
                }
                break;
            }
            char c = *s;
            if (quoted && c == '"') {
                if (s + 1 < end && s[1] == '"') {
                    s += 2;
                } else {
                    s++;
                    if (s < end && *s != ',' && *s != '\n' && *s != '\r') {
                        free(buf);
                        return mx_err_set(err, MX_EFORMAT, "%s:%zu: text after a closing quote",
                                          name, *line + 1);
                    }
                    quoted = false;
                    continue;
                }
            } else if (!quoted && (c == ',' || c == '\n' || c == '\r')) {
                break;
            } else {
                if (c == '\n')
                    (*line)++;
                s++;
            }
            if (n + 1 >= cap) {
                if (cap >= MAX_FIELD) {
                    free(buf);
                    return mx_err_set(err, MX_EFORMAT, "%s:%zu: a field longer than %zu bytes",
                                      name, line0 + 1, MAX_FIELD);
                }
                size_t nc = cap ? cap * 2 : 64;
                char *nb = realloc(buf, nc);
                if (!nb) {
                    free(buf);
                    return mx_err_set(err, MX_ENOMEM, "%s: out of memory", name);
                }
                buf = nb;
                cap = nc;
            }
            buf[n++] = c;
        }
        if (!buf && !(buf = malloc(1)))
            return mx_err_set(err, MX_ENOMEM, "%s: out of memory", name);
        buf[n] = '\0';
        if (r->n == r->cap) {
            size_t nc = r->cap ? r->cap * 2 : 8;
            char **nf = realloc(r->f, nc * sizeof *nf);
            if (!nf) {
                free(buf);
                return mx_err_set(err, MX_ENOMEM, "%s: out of memory", name);
            }
            r->f = nf;
            r->cap = nc;
        }
        r->f[r->n++] = buf;
        if (s < end && *s == ',') {
            s++;
            continue;
        }
        break;
    }
    if (s < end && *s == '\r')
        s++;
    if (s < end && *s == '\n') {
        s++;
        (*line)++;
    }
    *p = s;
    return 0;
}

/* True when the record is one empty field (a blank line). */
static bool csv_blank(const struct csv_rec *r) {
    return r->n == 1 && r->f[0][strspn(r->f[0], " \t")] == '\0';
}

/* Takes field i of r (the caller owns it; r keeps an empty string in its place). */
static char *csv_take(struct csv_rec *r, size_t i) {
    char *s = r->f[i];
    r->f[i] = dup_n("", 0);
    if (!r->f[i]) { /* keep r freeable: put the original back and report OOM by NULL */
        r->f[i] = s;
        return NULL;
    }
    return s;
}

/* Winogrande: index,sentence,choice1,choice2,answer. */
static int read_winogrande(const char *data, size_t len, const char *name, struct mx_mc_set *out,
                           struct mx_err *err) {
    const char *p = data, *end = data + len;
    struct csv_rec r = {0};
    size_t line = 0, cap = 0;
    int rc = 0;
    bool first = true;
    while (p < end) {
        size_t at = line + 1;
        if ((rc = csv_read(&p, end, &r, &line, name, err)) < 0)
            goto done;
        if (csv_blank(&r))
            continue;
        long ans = 0;
        bool ok_ans = r.n == 5 && parse_int(r.f[4], 1, 2, &ans);
        if (first && r.n == 5 && !ok_ans) { /* the header line "index,sentence,...,answer" */
            first = false;
            continue;
        }
        first = false;
        if (r.n != 5) {
            rc = mx_err_set(err, MX_EFORMAT, "%s:%zu: %zu fields, Winogrande rows have 5 "
                            "(index,sentence,choice1,choice2,answer)", name, at, r.n);
            goto done;
        }
        if (!ok_ans) {
            rc = mx_err_set(err, MX_EFORMAT, "%s:%zu: answer '%.40s' is not 1 or 2", name, at,
                            r.f[4]);
            goto done;
        }
        char *blank = strchr(r.f[1], '_');
        if (!blank) {
            rc = mx_err_set(err, MX_EFORMAT, "%s:%zu: the sentence has no '_' blank", name, at);
            goto done;
        }
        struct mx_mc_item *it = push_item(out, &cap);
        if (!it || !(it->choices = calloc(2, sizeof *it->choices)))
            goto oom;
        it->n_choices = 2;
        it->answer = (int)ans - 1;
        it->index = out->n - 1;
        if (!(it->context = dup_n(r.f[1], (size_t)(blank - r.f[1]))) ||
            !(it->tail = dup_n(blank + 1, strlen(blank + 1))) ||
            !(it->choices[0] = csv_take(&r, 2)) || !(it->choices[1] = csv_take(&r, 3)))
            goto oom;
    }
    goto done;
oom:
    rc = mx_err_set(err, MX_ENOMEM, "%s: out of memory", name);
done:
    csv_free(&r);
    return rc;
}

/* MMLU CSV: question,A,B,C,D,answer (any number of options >= 2 before the letter). */
static int read_mmlu_csv(const char *data, size_t len, const char *name, struct mx_mc_set *out,
                         struct mx_err *err) {
    const char *p = data, *end = data + len;
    struct csv_rec r = {0};
    size_t line = 0, cap = 0;
    int rc = 0;
    while (p < end) {
        size_t at = line + 1;
        if ((rc = csv_read(&p, end, &r, &line, name, err)) < 0)
            goto done;
        if (csv_blank(&r))
            continue;
        if (r.n < 4 || r.n - 2 > 26) {
            rc = mx_err_set(err, MX_EFORMAT, "%s:%zu: %zu fields, MMLU rows are question,A,B,C,"
                            "D,answer", name, at, r.n);
            goto done;
        }
        size_t nc = r.n - 2;
        int ans = parse_letter(r.f[r.n - 1], nc);
        if (ans < 0) {
            rc = mx_err_set(err, MX_EFORMAT, "%s:%zu: answer '%.40s' is not a letter A-%c", name,
                            at, r.f[r.n - 1], 'A' + (int)nc - 1);
            goto done;
        }
        struct mx_mc_item *it = push_item(out, &cap);
        if (!it || !(it->choices = calloc(nc, sizeof *it->choices)))
            goto oom;
        it->n_choices = nc;
        it->answer = ans;
        if (!(it->context = csv_take(&r, 0)))
            goto oom;
        for (size_t k = 0; k < nc; k++)
            if (!(it->choices[k] = csv_take(&r, k + 1)))
                goto oom;
    }
    goto done;
oom:
    rc = mx_err_set(err, MX_ENOMEM, "%s: out of memory", name);
done:
    csv_free(&r);
    return rc;
}

/* ---- HellaSwag: 6 lines per task ------------------------------------------------------------ */

static int read_hellaswag(const char *data, size_t len, const char *name, struct mx_mc_set *out,
                          struct mx_err *err) {
    /* lines as llama.cpp's getline splits them: a last line without '\n' counts, a final '\n'
     * does not start another one */
    const char *lines[6];
    size_t lens[6], n_lines = 0, cap = 0;
    const char *p = data, *end = data + len;
    size_t line = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        size_t n = (size_t)(e - p);
        if (n && p[n - 1] == '\r')
            n--;
        lines[n_lines] = p;
        lens[n_lines++] = n;
        line++;
        p = nl ? nl + 1 : end;
        if (n_lines < 6)
            continue;
        n_lines = 0;
        char label[16];
        size_t ll = lens[1] < sizeof label ? lens[1] : sizeof label - 1;
        memcpy(label, lines[1], ll);
        label[ll] = '\0';
        long ans;
        if (!parse_int(label, 0, 3, &ans))
            return mx_err_set(err, MX_EFORMAT, "%s:%zu: label '%.15s' is not 0-3 (HellaSwag "
                              "records are 6 lines: context, label, 4 endings)", name, line - 4,
                              label);
        struct mx_mc_item *it = push_item(out, &cap);
        if (!it || !(it->choices = calloc(4, sizeof *it->choices)))
            return mx_err_set(err, MX_ENOMEM, "%s: out of memory", name);
        it->n_choices = 4;
        it->answer = (int)ans;
        if (!(it->context = dup_n(lines[0], lens[0])))
            return mx_err_set(err, MX_ENOMEM, "%s: out of memory", name);
        for (int k = 0; k < 4; k++)
            if (!(it->choices[k] = dup_n(lines[2 + k], lens[2 + k])))
                return mx_err_set(err, MX_ENOMEM, "%s: out of memory", name);
    }
    if (n_lines)
        return mx_err_set(err, MX_EFORMAT, "%s: %zu lines, not a multiple of 6 (HellaSwag "
                          "records are 6 lines: context, label, 4 endings)", name, line);
    return 0;
}

/* ---- llama.cpp's binary multiple-choice format --------------------------------------------- */

/* A cursor over the binary data. */
struct bin {
    const unsigned char *p, *end;
};

static bool bin_u32(struct bin *b, uint32_t *v) {
    if (b->end - b->p < 4)
        return false;
    *v = (uint32_t)b->p[0] | (uint32_t)b->p[1] << 8 | (uint32_t)b->p[2] << 16 |
         (uint32_t)b->p[3] << 24;
    b->p += 4;
    return true;
}

/* A length-prefixed string: *s points into the data (not terminated), *n its length. */
static bool bin_str(struct bin *b, const char **s, uint32_t *n) {
    if (!bin_u32(b, n) || (size_t)(b->end - b->p) < *n)
        return false;
    *s = (const char *)b->p;
    b->p += *n;
    return true;
}

static int read_binary(const char *data, size_t len, const char *name, struct mx_mc_set *out,
                       struct mx_err *err) {
    struct bin b = {(const unsigned char *)data, (const unsigned char *)data + len};
    uint32_t n_task;
    if (!bin_u32(&b, &n_task) || n_task == 0)
        return mx_err_set(err, MX_EFORMAT, "%s: no tasks (llama.cpp multiple-choice binary)",
                          name);
    if ((size_t)(b.end - b.p) / 4 < n_task)
        return mx_err_set(err, MX_EFORMAT, "%s: %u tasks but the offset table does not fit "
                          "the file (%zu bytes)", name, n_task, len);
    b.p += (size_t)n_task * 4; /* the offsets: tasks are read in order, as llama.cpp reads all */
    size_t cap = 0;
    for (uint32_t t = 0; t < n_task; t++) {
        const char *q, *s;
        uint32_t qn, sn, n;
        if (!bin_str(&b, &q, &qn))
            return mx_err_set(err, MX_EFORMAT, "%s: task %u of %u: the question is cut off",
                              name, t + 1, n_task);
        if (qn == 0)
            return mx_err_set(err, MX_EFORMAT, "%s: task %u: empty question", name, t + 1);
        struct mx_mc_item *it = push_item(out, &cap);
        if (!it || !(it->context = dup_n(q, qn)))
            return mx_err_set(err, MX_ENOMEM, "%s: out of memory", name);
        for (int set = 0; set < 2; set++) { /* mc1 (one right answer), then mc2 (skipped) */
            bool have_n = bin_u32(&b, &n);
            if (!have_n || n > MC_MAX_CHOICES)
                return mx_err_set(err, MX_EFORMAT, "%s: task %u: answer count %s (at most %d)",
                                  name, t + 1, have_n ? "too large" : "cut off", MC_MAX_CHOICES);
            if (set == 0) {
                if (n < 2)
                    return mx_err_set(err, MX_EFORMAT, "%s: task %u: %u answers, need 2 or "
                                      "more", name, t + 1, n);
                if (!(it->choices = calloc(n, sizeof *it->choices)))
                    return mx_err_set(err, MX_ENOMEM, "%s: out of memory", name);
                it->n_choices = n;
            }
            for (uint32_t k = 0; k < n; k++) {
                if (!bin_str(&b, &s, &sn))
                    return mx_err_set(err, MX_EFORMAT, "%s: task %u: answer %u is cut off",
                                      name, t + 1, k + 1);
                if (set > 0)
                    continue;
                if (sn == 0)
                    return mx_err_set(err, MX_EFORMAT, "%s: task %u: answer %u is empty", name,
                                      t + 1, k + 1);
                if (!(it->choices[k] = dup_n(s, sn)))
                    return mx_err_set(err, MX_ENOMEM, "%s: out of memory", name);
            }
            if ((size_t)(b.end - b.p) / 4 < n)
                return mx_err_set(err, MX_EFORMAT, "%s: task %u: the labels are cut off", name,
                                  t + 1);
            int n_right = 0;
            for (uint32_t k = 0; k < n; k++) {
                uint32_t lab = 0;
                bin_u32(&b, &lab);
                if (set == 0 && lab == 1 && n_right++ == 0)
                    it->answer = (int)k;
            }
            if (set == 0 && n_right != 1)
                return mx_err_set(err, MX_EFORMAT, "%s: task %u: %d answers labelled right, "
                                  "mc1 has exactly one", name, t + 1, n_right);
        }
    }
    return 0;
}

/* ---- JSONL ---------------------------------------------------------------------------------- */

/* Calls fn for each non-blank line of data as a parsed JSON object. */
typedef int (*jsonl_fn)(void *ud, json_t *obj, size_t line, struct mx_err *err);

static int jsonl_each(const char *data, size_t len, const char *name, jsonl_fn fn, void *ud,
                      struct mx_err *err) {
    const char *p = data, *end = data + len;
    size_t line = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        line++;
        size_t n = (size_t)(e - p);
        const char *s = p;
        p = nl ? nl + 1 : end;
        while (n && isspace((unsigned char)*s)) {
            s++;
            n--;
        }
        if (!n)
            continue;
        json_error_t je;
        json_t *o = json_loadb(s, n, JSON_REJECT_DUPLICATES, &je);
        if (!o)
            return mx_err_set(err, MX_EFORMAT, "%s:%zu: not JSON: %s", name, line, je.text);
        if (!json_is_object(o)) {
            json_decref(o);
            return mx_err_set(err, MX_EFORMAT, "%s:%zu: not a JSON object", name, line);
        }
        int rc = fn(ud, o, line, err);
        json_decref(o);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* The reader's state for JSONL multiple choice. */
struct mc_jsonl {
    struct mx_mc_set *out;
    size_t cap;
    const char *name;
};

static int mc_jsonl_line(void *ud, json_t *o, size_t line, struct mx_err *err) {
    struct mc_jsonl *J = ud;
    json_t *q = json_object_get(o, "question"), *c = json_object_get(o, "choices"),
           *a = json_object_get(o, "answer");
    if (!json_is_string(q) || json_string_length(q) == 0)
        return mx_err_set(err, MX_EFORMAT, "%s:%zu: \"question\" is missing or not a non-empty "
                          "string", J->name, line);
    size_t nc = json_array_size(c);
    if (!json_is_array(c) || nc < 2 || nc > MC_MAX_CHOICES)
        return mx_err_set(err, MX_EFORMAT, "%s:%zu: \"choices\" must be an array of 2 to %d "
                          "strings", J->name, line, MC_MAX_CHOICES);
    long ans = -1;
    if (json_is_integer(a) && json_integer_value(a) >= 0 && json_integer_value(a) < (long)nc)
        ans = (long)json_integer_value(a);
    else if (json_is_string(a))
        ans = parse_letter(json_string_value(a), nc);
    if (ans < 0)
        return mx_err_set(err, MX_EFORMAT, "%s:%zu: \"answer\" must be an index 0-%zu or a "
                          "letter A-%c", J->name, line, nc - 1, nc <= 26 ? 'A' + (int)nc - 1 : 'Z');
    struct mx_mc_item *it = push_item(J->out, &J->cap);
    if (!it || !(it->choices = calloc(nc, sizeof *it->choices)))
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", J->name);
    it->n_choices = nc;
    it->answer = (int)ans;
    if (!(it->context = dup_n(json_string_value(q), json_string_length(q))))
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", J->name);
    for (size_t k = 0; k < nc; k++) {
        json_t *s = json_array_get(c, k);
        if (!json_is_string(s) || json_string_length(s) == 0)
            return mx_err_set(err, MX_EFORMAT, "%s:%zu: choice %zu is not a non-empty string",
                              J->name, line, k);
        if (!(it->choices[k] = dup_n(json_string_value(s), json_string_length(s))))
            return mx_err_set(err, MX_ENOMEM, "%s: out of memory", J->name);
    }
    return 0;
}

/* ---- detection and the entry point ---------------------------------------------------------- */

enum syntax { SYN_BINARY, SYN_JSONL, SYN_MMLU_CSV, SYN_WINO_CSV, SYN_HELLASWAG };

static const char *const k_syntax_names[] = {"llama.cpp binary", "jsonl", "mmlu csv",
                                             "winogrande csv", "hellaswag text"};

/* Tells the syntax from the first bytes / first record. */
static enum syntax detect(const char *data, size_t len, const char *name) {
    if (len >= 4 && memchr(data, '\0', 4))
        return SYN_BINARY;
    size_t i = 0;
    while (i < len && isspace((unsigned char)data[i]))
        i++;
    if (i < len && data[i] == '{')
        return SYN_JSONL;
    /* the first two CSV records: an MMLU row ends in a letter; a Winogrande row (or its header)
     * has 5 fields and a 1|2 answer in the first data row */
    const char *p = data, *end = data + len;
    struct csv_rec r = {0};
    struct mx_err e = {0};
    size_t line = 0;
    enum syntax s = SYN_HELLASWAG;
    for (int k = 0; k < 2 && p < end; k++) {
        if (csv_read(&p, end, &r, &line, name, &e) < 0)
            break;
        long v;
        if (r.n >= 4 && r.n <= 28 && parse_letter(r.f[r.n - 1], r.n - 2) >= 0) {
            s = SYN_MMLU_CSV;
            break;
        }
        if (r.n == 5 && parse_int(r.f[4], 1, 2, &v) && strchr(r.f[1], '_')) {
            s = SYN_WINO_CSV;
            break;
        }
        if (r.n != 5) /* only a Winogrande header may come before the first row */
            break;
    }
    csv_free(&r);
    return s;
}

int mx_mc_read(const char *data, size_t len, const char *name, enum mx_mc_format fmt,
               struct mx_mc_set *out, struct mx_err *err) {
    memset(out, 0, sizeof *out);
    name = name ? name : "(input)";
    if (!data || len == 0)
        return mx_err_set(err, MX_EFORMAT, "%s: empty file", name);
    enum syntax syn;
    switch (fmt) {
    case MX_MC_HELLASWAG:
        syn = SYN_HELLASWAG;
        break;
    case MX_MC_WINOGRANDE:
        syn = SYN_WINO_CSV;
        break;
    default:
        syn = detect(data, len, name);
        if (fmt == MX_MC_ARC || fmt == MX_MC_MMLU) { /* the syntaxes that carry options */
            if (syn == SYN_HELLASWAG || syn == SYN_WINO_CSV)
                syn = SYN_MMLU_CSV;
        }
        break;
    }
    int rc;
    switch (syn) {
    case SYN_BINARY:
        rc = read_binary(data, len, name, out, err);
        break;
    case SYN_JSONL: {
        struct mc_jsonl J = {out, 0, name};
        rc = jsonl_each(data, len, name, mc_jsonl_line, &J, err);
        break;
    }
    case SYN_MMLU_CSV:
        rc = read_mmlu_csv(data, len, name, out, err);
        break;
    case SYN_WINO_CSV:
        rc = read_winogrande(data, len, name, out, err);
        break;
    default:
        rc = read_hellaswag(data, len, name, out, err);
        break;
    }
    if (rc == 0 && out->n == 0)
        rc = mx_err_set(err, MX_EFORMAT, "%s: no tasks", name);
    if (rc < 0) {
        mx_mc_set_free(out);
        return rc;
    }
    out->syntax = k_syntax_names[syn];
    if (fmt != MX_MC_AUTO)
        out->format = fmt;
    else if (syn == SYN_HELLASWAG)
        out->format = MX_MC_HELLASWAG;
    else if (syn == SYN_WINO_CSV)
        out->format = MX_MC_WINOGRANDE;
    else if (syn == SYN_MMLU_CSV)
        out->format = MX_MC_MMLU;
    else
        out->format = MX_MC_ARC;
    return 0;
}

/* ---- exact-match questions ------------------------------------------------------------------ */

void mx_qa_set_free(struct mx_qa_set *s) {
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->items[i].question);
        free(s->items[i].answer);
    }
    free(s->items);
    memset(s, 0, sizeof *s);
}

/* The reader's state for exact-match JSONL. */
struct qa_jsonl {
    struct mx_qa_set *out;
    size_t cap;
    const char *name;
};

static int qa_line(void *ud, json_t *o, size_t line, struct mx_err *err) {
    struct qa_jsonl *J = ud;
    json_t *q = json_object_get(o, "question"), *a = json_object_get(o, "answer");
    if (!json_is_string(q) || json_string_length(q) == 0)
        return mx_err_set(err, MX_EFORMAT, "%s:%zu: \"question\" is missing or not a non-empty "
                          "string", J->name, line);
    char num[64];
    const char *as = NULL;
    size_t an = 0;
    if (json_is_string(a)) {
        as = json_string_value(a);
        an = json_string_length(a);
    } else if (json_is_integer(a)) {
        an = (size_t)snprintf(num, sizeof num, "%lld", (long long)json_integer_value(a));
        as = num;
    } else if (json_is_real(a)) {
        an = (size_t)snprintf(num, sizeof num, "%.17g", json_real_value(a));
        as = num;
    }
    if (!as)
        return mx_err_set(err, MX_EFORMAT, "%s:%zu: \"answer\" is missing or not a string or "
                          "number", J->name, line);
    if (J->out->n == J->cap) {
        size_t nc = J->cap ? J->cap * 2 : 64;
        struct mx_qa_item *p = realloc(J->out->items, nc * sizeof *p);
        if (!p)
            return mx_err_set(err, MX_ENOMEM, "%s: out of memory", J->name);
        J->out->items = p;
        J->cap = nc;
    }
    struct mx_qa_item *it = &J->out->items[J->out->n++];
    it->question = dup_n(json_string_value(q), json_string_length(q));
    it->answer = dup_n(as, an);
    if (!it->question || !it->answer)
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", J->name);
    return 0;
}

int mx_qa_read(const char *data, size_t len, const char *name, struct mx_qa_set *out,
               struct mx_err *err) {
    memset(out, 0, sizeof *out);
    name = name ? name : "(input)";
    struct qa_jsonl J = {out, 0, name};
    int rc = data ? jsonl_each(data, len, name, qa_line, &J, err) : 0;
    if (rc == 0 && out->n == 0)
        rc = mx_err_set(err, MX_EFORMAT, "%s: no questions (one JSON object per line with "
                        "\"question\" and \"answer\")", name);
    if (rc < 0)
        mx_qa_set_free(out);
    return rc;
}
