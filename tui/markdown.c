/* markdown.c - Markdown essentials to styled screen lines (see markdown.h). */
#include "tui/markdown.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/err.h"
#include "core/base/text.h"

/* An attributed string being built: bytes plus a role and attrs per byte. */
struct astr {
    char *t;
    unsigned char *r, *a;
    size_t len, cap;
};

static int astr_put(struct astr *s, const char *p, size_t n, int role, unsigned attrs) {
    if (s->len + n + 1 > s->cap) {
        size_t cap = (s->len + n + 1) * 2;
        char *t = realloc(s->t, cap);
        if (!t)
            return MX_ENOMEM;
        s->t = t;
        unsigned char *r = realloc(s->r, cap);
        if (!r)
            return MX_ENOMEM;
        s->r = r;
        unsigned char *a = realloc(s->a, cap);
        if (!a)
            return MX_ENOMEM;
        s->a = a;
        s->cap = cap;
    }
    memcpy(s->t + s->len, p, n);
    memset(s->r + s->len, role, n);
    memset(s->a + s->len, (int)attrs, n);
    s->len += n;
    s->t[s->len] = '\0';
    return 0;
}

static void astr_free(struct astr *s) {
    free(s->t);
    free(s->r);
    free(s->a);
    memset(s, 0, sizeof *s);
}

/* Appends a screen line made of prefix (one role) + s[from..from+n). */
static int emit(struct mx_rtext *out, const char *prefix, int prefix_role, const struct astr *s,
                size_t from, size_t n) {
    if (out->n_lines == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 16;
        struct mx_rline *l = realloc(out->lines, cap * sizeof *l);
        if (!l)
            return MX_ENOMEM;
        out->lines = l;
        out->cap = cap;
    }
    size_t pl = strlen(prefix), len = pl + n;
    struct mx_rline *l = &out->lines[out->n_lines];
    l->text = malloc(len + 1);
    l->role = malloc(len + 1);
    l->attrs = malloc(len + 1);
    if (!l->text || !l->role || !l->attrs) {
        free(l->text);
        free(l->role);
        free(l->attrs);
        return MX_ENOMEM;
    }
    memcpy(l->text, prefix, pl);
    memset(l->role, prefix_role, pl);
    memset(l->attrs, 0, pl);
    if (n) {
        memcpy(l->text + pl, s->t + from, n);
        memcpy(l->role + pl, s->r + from, n);
        memcpy(l->attrs + pl, s->a + from, n);
    }
    l->text[len] = '\0';
    l->len = len;
    out->n_lines++;
    return 0;
}

/* Wraps s at width - width(prefix); the first line gets `first`, the rest `rest` (same width). */
static int emit_wrapped(struct mx_rtext *out, const char *first, const char *rest, int prefix_role,
                        const struct astr *s, int width) {
    int avail = width - mx_text_width(first, strlen(first));
    if (avail < 1)
        avail = 1;
    size_t pos = 0;
    bool is_first = true;
    do {
        size_t next, n = mx_text_wrap(s->t + pos, s->len - pos, avail, &next);
        int rc = emit(out, is_first ? first : rest, prefix_role, s, pos, n);
        if (rc)
            return rc;
        is_first = false;
        pos += next ? next : 1;
    } while (pos < s->len);
    return 0;
}

/* Inline markup of one source line: **bold**, *italic* / _italic_, `code`, [text](url). A marker
 * without its closing partner is kept as text, so a lone '*' in prose stays visible. */
static int inline_md(struct astr *dst, const char *p, size_t n, int role, unsigned base_attrs) {
    for (size_t i = 0; i < n;) {
        int rc;
        if (p[i] == '`') {
            const char *close = memchr(p + i + 1, '`', n - i - 1);
            if (close) {
                size_t cl = (size_t)(close - (p + i + 1));
                if ((rc = astr_put(dst, p + i + 1, cl, MX_ROLE_code, base_attrs)))
                    return rc;
                i += cl + 2;
                continue;
            }
        } else if (p[i] == '[') {
            /* [text](url): the text as text, underlined, then the URL dimmed in parentheses
             * (its bytes are the sanitised source: nothing in it reaches the terminal raw) */
            const char *mid = memchr(p + i + 1, ']', n - i - 1);
            size_t m = mid ? (size_t)(mid - p) : n;
            const char *close = m + 1 < n && p[m + 1] == '(' ? memchr(p + m + 2, ')', n - m - 2)
                                                             : NULL;
            if (mid && close && m > i + 1 && close > p + m + 2) {
                size_t c = (size_t)(close - p);
                if ((rc = inline_md(dst, p + i + 1, m - i - 1, role,
                                    base_attrs | MX_ATTR_UNDERLINE)) ||
                    (rc = astr_put(dst, " (", 2, MX_ROLE_muted, 0)) ||
                    (rc = astr_put(dst, p + m + 2, c - m - 2, MX_ROLE_muted, 0)) ||
                    (rc = astr_put(dst, ")", 1, MX_ROLE_muted, 0)))
                    return rc;
                i = c + 1;
                continue;
            }
        } else if (p[i] == '*' && i + 1 < n && p[i + 1] == '*') {
            for (size_t j = i + 2; j + 1 < n; j++)
                if (p[j] == '*' && p[j + 1] == '*' && j > i + 2) {
                    if ((rc = inline_md(dst, p + i + 2, j - i - 2, role, base_attrs | MX_ATTR_BOLD)))
                        return rc;
                    i = j + 2;
                    goto next;
                }
        } else if ((p[i] == '*' || p[i] == '_') && i + 1 < n && !isspace((unsigned char)p[i + 1]) &&
                   (i == 0 || !isalnum((unsigned char)p[i - 1]))) {
            char m = p[i];
            for (size_t j = i + 1; j < n; j++)
                if (p[j] == m && !isspace((unsigned char)p[j - 1]) &&
                    (j + 1 == n || !isalnum((unsigned char)p[j + 1]))) {
                    if ((rc = inline_md(dst, p + i + 1, j - i - 1, role,
                                        base_attrs | MX_ATTR_ITALIC)))
                        return rc;
                    i = j + 1;
                    goto next;
                }
        }
        if ((rc = astr_put(dst, p + i, 1, role, base_attrs)))
            return rc;
        i++;
    next:;
    }
    return 0;
}

/* Keywords of the languages models write most; one flat list is enough for highlighting. */
static bool is_keyword(const char *w, size_t n) {
    static const char *const kw[] = {
        "auto", "bool", "break", "case", "catch", "char", "class", "const", "continue", "def",
        "default", "defer", "delete", "do", "double", "elif", "else", "enum", "except", "export",
        "extern", "false", "False", "fi", "finally", "float", "fn", "for", "from", "func", "function",
        "go", "if", "impl", "import", "in", "int", "interface", "is", "lambda", "let", "long",
        "loop", "match", "mod", "mut", "namespace", "new", "nil", "None", "not", "null", "or",
        "and", "package", "pass", "pub", "raise", "return", "self", "short", "signed", "sizeof",
        "static", "struct", "switch", "then", "this", "throw", "true", "True", "try", "type",
        "typedef", "union", "unsigned", "use", "var", "void", "volatile", "while", "with",
        "yield", "async", "await", "done", "esac", "local", "echo", "select", "where",
    };
    for (size_t i = 0; i < sizeof kw / sizeof kw[0]; i++)
        if (strlen(kw[i]) == n && !memcmp(kw[i], w, n))
            return true;
    return false;
}

static int code_line(struct astr *dst, const char *p, size_t n) {
    for (size_t i = 0; i < n;) {
        int rc;
        if (isalpha((unsigned char)p[i]) || p[i] == '_') {
            size_t j = i;
            while (j < n && (isalnum((unsigned char)p[j]) || p[j] == '_'))
                j++;
            int role = is_keyword(p + i, j - i) ? MX_ROLE_keyword : MX_ROLE_code;
            if ((rc = astr_put(dst, p + i, j - i, role, 0)))
                return rc;
            i = j;
        } else {
            if ((rc = astr_put(dst, p + i, 1, MX_ROLE_code, 0)))
                return rc;
            i++;
        }
    }
    return 0;
}

/* A horizontal rule of box-drawing characters of `cols` columns, after `head`. */
static int box_edge(struct mx_rtext *out, const char *head, const char *label, int cols) {
    struct astr s = {0};
    int rc = astr_put(&s, head, strlen(head), MX_ROLE_border, 0);
    int used = mx_text_width(head, strlen(head));
    if (!rc && label && label[0]) {
        rc = astr_put(&s, " ", 1, MX_ROLE_border, 0);
        if (!rc)
            rc = astr_put(&s, label, strlen(label), MX_ROLE_muted, 0);
        if (!rc)
            rc = astr_put(&s, " ", 1, MX_ROLE_border, 0);
        used += 2 + mx_text_width(label, strlen(label));
    }
    for (int i = used; !rc && i < cols; i++)
        rc = astr_put(&s, "\xe2\x94\x80", 3, MX_ROLE_border, 0); /* ─ */
    if (!rc)
        rc = emit(out, "", MX_ROLE_border, &s, 0, s.len);
    astr_free(&s);
    return rc;
}

/* ---- tables --------------------------------------------------------------------------------- */

#define TABLE_MAX_COLS 16

/* Appends src[from..from+n) with its roles and attributes. */
static int astr_cat(struct astr *dst, const struct astr *src, size_t from, size_t n) {
    size_t at = dst->len;
    int rc = astr_put(dst, src->t + from, n, 0, 0);
    if (!rc && n) {
        memcpy(dst->r + at, src->r + from, n);
        memcpy(dst->a + at, src->a + from, n);
    }
    return rc;
}

static int astr_pad(struct astr *dst, int cols) {
    int rc = 0;
    for (int i = 0; i < cols && !rc; i++)
        rc = astr_put(dst, " ", 1, MX_ROLE_normal, 0);
    return rc;
}

/* The line p[0..n) without up to 3 leading spaces starts with '|': a table row, maybe. */
static bool is_row(const char *p, size_t n) {
    size_t i = 0;
    while (i < n && i < 3 && p[i] == ' ')
        i++;
    return i < n && p[i] == '|';
}

/* Splits a row into cells (outer pipes dropped, spaces trimmed; a '|' inside `code` or after a
 * backslash is no separator): cell k is p[off[k]..off[k]+len[k]). Returns the count. */
static int split_row(const char *p, size_t n, size_t *off, size_t *len) {
    size_t i = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    if (i < n && p[i] == '|')
        i++;
    while (n > i && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    if (n > i && p[n - 1] == '|' && !(n >= 2 && p[n - 2] == '\\'))
        n--;
    int k = 0;
    bool code = false;
    size_t start = i;
    for (; i <= n && k < TABLE_MAX_COLS; i++) {
        if (i < n && p[i] == '`')
            code = !code;
        if (i < n && (p[i] != '|' || code || (i > 0 && p[i - 1] == '\\')))
            continue;
        size_t a = start, b = i;
        while (a < b && p[a] == ' ')
            a++;
        while (b > a && p[b - 1] == ' ')
            b--;
        off[k] = a;
        len[k++] = b - a;
        start = i + 1;
    }
    return k;
}

/* A delimiter row (| --- | :-: | --: |): the alignment of each column ('l', 'c', 'r'). Returns
 * the column count, 0 when the line is no delimiter row. */
static int delim_row(const char *p, size_t n, char *align) {
    if (!is_row(p, n))
        return 0;
    size_t off[TABLE_MAX_COLS], len[TABLE_MAX_COLS];
    int k = split_row(p, n, off, len);
    for (int c = 0; c < k; c++) {
        const char *q = p + off[c];
        size_t l = len[c], dashes = 0;
        for (size_t i = 0; i < l; i++) {
            if (q[i] == '-')
                dashes++;
            else if (q[i] != ':' || (i != 0 && i != l - 1))
                return 0;
        }
        if (dashes == 0)
            return 0;
        align[c] = l > 1 && q[0] == ':' && q[l - 1] == ':' ? 'c' : q[l - 1] == ':' ? 'r' : 'l';
    }
    return k;
}

/* The lines of text[pos..) that form a table: a header row, a delimiter row, then rows, all
 * starting with '|'. Renders them as aligned columns (cells wrap inside their column when the
 * table is wider than width) and returns the position after the table; returns pos when there
 * is no table there (or it cannot fit: the lines then render as text). */
static size_t table(const char *text, size_t len, size_t pos, int width, int base_role,
                    struct mx_rtext *out, int *rc) {
    const char *nl = memchr(text + pos, '\n', len - pos);
    if (!nl || !is_row(text + pos, (size_t)(nl - text) - pos))
        return pos;
    size_t dpos = (size_t)(nl - text) + 1;
    const char *dnl = memchr(text + dpos, '\n', len - dpos);
    size_t dend = dnl ? (size_t)(dnl - text) : len;
    char align[TABLE_MAX_COLS];
    int ncols = delim_row(text + dpos, dend - dpos, align);
    if (ncols == 0)
        return pos;
    /* the rows: the header, then every '|' line after the delimiter */
    size_t starts[256], ends[256];
    int nrows = 0;
    starts[nrows] = pos;
    ends[nrows++] = (size_t)(nl - text);
    size_t p = dnl ? dend + 1 : len, after = p;
    while (p < len && nrows < 256) {
        const char *e = memchr(text + p, '\n', len - p);
        size_t end = e ? (size_t)(e - text) : len;
        if (!is_row(text + p, end - p))
            break;
        starts[nrows] = p;
        ends[nrows++] = end;
        p = e ? end + 1 : len;
        after = p;
    }
    /* cells rendered (inline markup), and each column's natural width */
    struct astr *cell = calloc((size_t)nrows * ncols, sizeof *cell);
    int colw[TABLE_MAX_COLS] = {0};
    if (!cell) {
        *rc = MX_ENOMEM;
        return after;
    }
    for (int r = 0; r < nrows && !*rc; r++) {
        size_t off[TABLE_MAX_COLS], l[TABLE_MAX_COLS];
        int k = split_row(text + starts[r], ends[r] - starts[r], off, l);
        for (int c = 0; c < ncols && c < k && !*rc; c++) {
            struct astr *a = &cell[r * ncols + c];
            *rc = inline_md(a, text + starts[r] + off[c], l[c], base_role,
                            r == 0 ? MX_ATTR_BOLD : 0);
            int w = a->len ? mx_text_width(a->t, a->len) : 0;
            colw[c] = w > colw[c] ? w : colw[c];
        }
    }
    /* too wide: take columns from the widest until the table fits (3 columns at least each) */
    int sep = 3, total = sep * (ncols - 1);
    for (int c = 0; c < ncols; c++) {
        colw[c] = colw[c] < 1 ? 1 : colw[c];
        total += colw[c];
    }
    while (total > width) {
        int wide = 0;
        for (int c = 1; c < ncols; c++)
            wide = colw[c] > colw[wide] ? c : wide;
        if (colw[wide] <= 3)
            break;
        colw[wide]--;
        total--;
    }
    if (total > width) { /* cannot fit: the caller shows the source lines */
        for (int i = 0; i < nrows * ncols; i++)
            astr_free(&cell[i]);
        free(cell);
        return pos;
    }
    for (int r = 0; r < nrows && !*rc; r++) {
        size_t at[TABLE_MAX_COLS] = {0};
        bool more = true;
        while (more && !*rc) { /* one screen line of the row per pass: cells wrap */
            struct astr line = {0};
            more = false;
            for (int c = 0; c < ncols && !*rc; c++) {
                struct astr *a = &cell[r * ncols + c];
                size_t next = 0, n = 0;
                if (at[c] < a->len)
                    n = mx_text_wrap(a->t + at[c], a->len - at[c], colw[c], &next);
                int w = n ? mx_text_width(a->t + at[c], n) : 0, pad = colw[c] - w;
                int left = align[c] == 'r' ? pad : align[c] == 'c' ? pad / 2 : 0;
                if (c > 0)
                    *rc = astr_put(&line, " \xe2\x94\x82 ", 5, MX_ROLE_border, 0); /* │ */
                if (!*rc)
                    *rc = astr_pad(&line, left);
                if (!*rc)
                    *rc = astr_cat(&line, a, at[c], n);
                if (!*rc && c + 1 < ncols)
                    *rc = astr_pad(&line, pad - left);
                at[c] += next ? next : n;
                more |= at[c] < a->len;
            }
            if (!*rc)
                *rc = emit(out, "", base_role, &line, 0, line.len);
            astr_free(&line);
        }
        if (r == 0 && !*rc) { /* under the header: ───┼─── */
            struct astr line = {0};
            for (int c = 0; c < ncols && !*rc; c++) {
                if (c > 0)
                    *rc = astr_put(&line, "\xe2\x94\x80\xe2\x94\xbc\xe2\x94\x80", 9,
                                   MX_ROLE_border, 0);
                for (int i = 0; i < colw[c] && !*rc; i++)
                    *rc = astr_put(&line, "\xe2\x94\x80", 3, MX_ROLE_border, 0);
            }
            if (!*rc)
                *rc = emit(out, "", MX_ROLE_border, &line, 0, line.len);
            astr_free(&line);
        }
    }
    for (int i = 0; i < nrows * ncols; i++)
        astr_free(&cell[i]);
    free(cell);
    return after;
}

int mx_markdown_render(const char *text, size_t len, int width, int base_role,
                       struct mx_rtext *out) {
    memset(out, 0, sizeof *out);
    if (width < 4)
        width = 4;
    bool in_code = false;
    size_t code_start = 0;
    int rc = 0;
    for (size_t pos = 0; pos <= len && !rc;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        const char *p = text + pos;
        size_t n = end - pos;
        size_t lead = 0;
        while (lead < n && lead < 3 && p[lead] == ' ')
            lead++;
        struct astr s = {0};
        if (!in_code && lead < n && p[lead] == '|') {
            size_t after = table(text, len, pos, width, base_role, out, &rc);
            if (after != pos) {
                if (after >= len)
                    break;
                pos = after;
                continue;
            }
        }
        if (n - lead >= 3 && !memcmp(p + lead, "```", 3)) {
            if (!in_code) {
                char label[32] = "";
                size_t ll = n - lead - 3;
                if (ll >= sizeof label)
                    ll = sizeof label - 1;
                memcpy(label, p + lead + 3, ll);
                label[ll] = '\0';
                rc = box_edge(out, "\xe2\x94\x8c\xe2\x94\x80", label, width); /* ┌─ */
                in_code = true;
                code_start = nl ? end + 1 : len;
            } else {
                rc = box_edge(out, "\xe2\x94\x94", NULL, width); /* └ */
                in_code = false;
                free(out->last_code);
                out->last_code = strndup(text + code_start, pos > code_start ? pos - code_start - 1 : 0);
                if (!out->last_code)
                    rc = MX_ENOMEM;
            }
        } else if (in_code) {
            rc = code_line(&s, p, n);
            if (!rc)
                rc = emit_wrapped(out, "\xe2\x94\x82 ", "\xe2\x94\x82 ", MX_ROLE_border, &s, width);
        } else if (lead < n && p[lead] == '#') {
            size_t h = lead;
            while (h < n && p[h] == '#')
                h++;
            if (h < n && p[h] == ' ' && h - lead <= 6) {
                rc = inline_md(&s, p + h + 1, n - h - 1, MX_ROLE_heading, MX_ATTR_BOLD);
                if (!rc)
                    rc = emit_wrapped(out, "", "", MX_ROLE_heading, &s, width);
            } else {
                rc = inline_md(&s, p, n, base_role, 0);
                if (!rc)
                    rc = emit_wrapped(out, "", "", base_role, &s, width);
            }
        } else if (lead < n && p[lead] == '>') {
            size_t q = lead + 1 + (lead + 1 < n && p[lead + 1] == ' ');
            rc = inline_md(&s, p + q, n - q, MX_ROLE_quote, MX_ATTR_ITALIC);
            if (!rc)
                rc = emit_wrapped(out, "\xe2\x94\x82 ", "\xe2\x94\x82 ", MX_ROLE_quote, &s, width);
        } else if (n - lead >= 2 && (p[lead] == '-' || p[lead] == '*' || p[lead] == '+') &&
                   p[lead + 1] == ' ') {
            char first[16], rest[16];
            snprintf(first, sizeof first, "%*s\xe2\x80\xa2 ", (int)lead, ""); /* • */
            snprintf(rest, sizeof rest, "%*s  ", (int)lead, "");
            rc = inline_md(&s, p + lead + 2, n - lead - 2, base_role, 0);
            if (!rc)
                rc = emit_wrapped(out, first, rest, MX_ROLE_muted, &s, width);
        } else {
            size_t d = lead;
            while (d < n && d - lead < 4 && isdigit((unsigned char)p[d]))
                d++;
            if (d > lead && d + 1 < n && (p[d] == '.' || p[d] == ')') && p[d + 1] == ' ') {
                char first[16], rest[16];
                snprintf(first, sizeof first, "%.*s ", (int)(d + 1), p);
                snprintf(rest, sizeof rest, "%*s", (int)(d + 2), "");
                rc = inline_md(&s, p + d + 2, n - d - 2, base_role, 0);
                if (!rc)
                    rc = emit_wrapped(out, first, rest, MX_ROLE_muted, &s, width);
            } else {
                rc = inline_md(&s, p, n, base_role, 0);
                if (!rc)
                    rc = emit_wrapped(out, "", "", base_role, &s, width);
            }
        }
        astr_free(&s);
        if (!nl)
            break;
        pos = end + 1;
    }
    /* An unterminated fence while streaming: the code so far is still the last block. */
    if (!rc && in_code) {
        free(out->last_code);
        out->last_code = strndup(text + code_start, len > code_start ? len - code_start : 0);
    }
    if (rc)
        mx_rtext_free(out);
    return rc;
}

void mx_rtext_free(struct mx_rtext *r) {
    if (!r)
        return;
    for (size_t i = 0; i < r->n_lines; i++) {
        free(r->lines[i].text);
        free(r->lines[i].role);
        free(r->lines[i].attrs);
    }
    free(r->lines);
    free(r->last_code);
    memset(r, 0, sizeof *r);
}
