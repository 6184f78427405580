/* infotext.c - AUTOMATIC1111's generation-parameters text: format and parse (see infotext.h).
 *
 * Workload: a few hundred bytes per image, written once per generated image and parsed when a
 * PNG is opened or pasted. The parser is a hand-written equivalent of A1111's regex
 *     \s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)
 * applied with Python's re.findall, so that hostile text costs linear time (a failed key run is
 * skipped whole; a quoted value's scan always stops at the next value's opening quote).
 * Ref: https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/v1.10.1/modules/infotext_utils.py
 */
#include "core/diffusion/infotext.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/util.h"
#include "core/base/text.h"

/* ---- small string helpers ------------------------------------------------------------------- */

/* A growing NUL-terminated string; ok turns false on the first allocation failure. */
struct sbuf {
    char *s;     /* bytes, NUL-terminated when ok; owned */
    size_t n;    /* length */
    size_t cap;  /* allocated bytes */
    bool ok;     /* false after an allocation failed (later appends do nothing) */
};

/* Appends n bytes of p. */
static void sb_add(struct sbuf *b, const char *p, size_t n) {
    if (!b->ok)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) {
            if (cap > SIZE_MAX / 2) {
                b->ok = false;
                return;
            }
            cap *= 2;
        }
        char *s = realloc(b->s, cap);
        if (!s) {
            b->ok = false;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->n, p, n);
    b->n += n;
    b->s[b->n] = '\0';
}

/* Appends a C string. */
static void sb_str(struct sbuf *b, const char *s) {
    sb_add(b, s, strlen(s));
}

/* Appends printf output (short: numbers). */
static void sb_fmt(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_fmt(struct sbuf *b, const char *fmt, ...) {
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp)
        b->ok = false;
    else
        sb_add(b, tmp, (size_t)n);
}

/* Copy of p[0..n) as a C string, or NULL. */
static char *dup_n(const char *p, size_t n) {
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

/* Length of the Python-whitespace character at s[0..n) (str.isspace()), or 0. ASCII: \t \n \v \f
 * \r, \x1c-\x1f and space; beyond ASCII the Unicode spaces listed in infotext.h. */
static size_t py_space_at(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f))
        return 1;
    if (c < 0x80)
        return 0;
    unsigned int cp;
    size_t k = mx_utf8_decode((const char *)s, n, &cp);
    bool sp = cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) ||
              cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
    return sp && !(cp == 0xfffd && k == 1) ? k : 0;
}

/* Length of the Python-whitespace character ending at s[n-1] (s[0..n)), or 0. */
static size_t py_space_before(const unsigned char *s, size_t n) {
    if (n == 0)
        return 0;
    if (s[n - 1] < 0x80)
        return py_space_at(s + n - 1, 1);
    // Walk back over continuation bytes to the lead byte (at most 3 of them).
    size_t k = 1;
    while (k < 4 && k < n && (s[n - k] & 0xc0) == 0x80)
        k++;
    return py_space_at(s + n - k, k) == k ? k : 0;
}

/* Python's str.strip() on [*b, *e): moves both ends past whitespace. */
static void py_strip(const char *s, size_t *b, size_t *e) {
    const unsigned char *u = (const unsigned char *)s;
    size_t k;
    while (*b < *e && (k = py_space_at(u + *b, *e - *b)) > 0)
        *b += k;
    while (*e > *b && (k = py_space_before(u + *b, *e - *b)) > 0)
        *e -= k;
}

/* ---- the struct ----------------------------------------------------------------------------- */

void mx_sd_infotext_init(struct mx_sd_infotext *it) {
    memset(it, 0, sizeof *it);
    it->cfg = NAN;
    it->strength = -1.0f;
    it->clip_skip = 1;
}

void mx_sd_infotext_free(struct mx_sd_infotext *it) {
    if (!it)
        return;
    free(it->prompt);
    free(it->negative);
    free(it->sampler);
    free(it->schedule);
    free(it->model_hash);
    free(it->model);
    free(it->rng);
    free(it->version);
    for (size_t i = 0; i < it->n_extra; i++) {
        free(it->extra[i].key);
        free(it->extra[i].value);
    }
    free(it->extra);
    mx_sd_infotext_init(it);
}

/* set_extra with lengths; the key is not checked. */
static int set_extra_n(struct mx_sd_infotext *it, const char *k, size_t kn, const char *v,
                       size_t vn) {
    size_t i = 0;
    while (i < it->n_extra && !(strlen(it->extra[i].key) == kn && !memcmp(it->extra[i].key, k, kn)))
        i++;
    if (i == it->n_extra && it->n_extra >= MX_SD_INFOTEXT_MAX_EXTRA)
        return MX_ERANGE;
    char *val = dup_n(v, vn);
    if (!val)
        return MX_ENOMEM;
    if (i < it->n_extra) {
        free(it->extra[i].value);
        it->extra[i].value = val;
        return 0;
    }
    char *key = dup_n(k, kn);
    struct mx_sd_infotext_kv *x = realloc(it->extra, (it->n_extra + 1) * sizeof *x);
    if (!key || !x) {
        free(key);
        free(val);
        if (x)
            it->extra = x;
        return MX_ENOMEM;
    }
    it->extra = x;
    x[it->n_extra].key = key;
    x[it->n_extra].value = val;
    it->n_extra++;
    return 0;
}

int mx_sd_infotext_set_extra(struct mx_sd_infotext *it, const char *key, const char *value) {
    if (!it || !key || !key[0] || !value || strpbrk(key, ":,\n"))
        return MX_EINVAL;
    return set_extra_n(it, key, strlen(key), value, strlen(value));
}

const char *mx_sd_infotext_get_extra(const struct mx_sd_infotext *it, const char *key) {
    for (size_t i = 0; it && key && i < it->n_extra; i++)
        if (!strcmp(it->extra[i].key, key))
            return it->extra[i].value;
    return NULL;
}

/* ---- formatting ----------------------------------------------------------------------------- */

/* Appends s as json.dumps(s, ensure_ascii=False) writes it. */
static void sb_json(struct sbuf *b, const char *s) {
    sb_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':  sb_add(b, "\\\"", 2); break;
        case '\\': sb_add(b, "\\\\", 2); break;
        case '\n': sb_add(b, "\\n", 2); break;
        case '\r': sb_add(b, "\\r", 2); break;
        case '\t': sb_add(b, "\\t", 2); break;
        case '\b': sb_add(b, "\\b", 2); break;
        case '\f': sb_add(b, "\\f", 2); break;
        default:
            if (*p < 0x20)
                sb_fmt(b, "\\u%04x", *p);
            else
                sb_add(b, (const char *)p, 1);
        }
    }
    sb_add(b, "\"", 1);
}

/* Appends value through A1111's quote(). */
static void sb_quoted(struct sbuf *b, const char *v) {
    if (strpbrk(v, ",\n:"))
        sb_json(b, v);
    else
        sb_str(b, v);
}

char *mx_sd_infotext_quote(const char *value) {
    if (!value)
        return NULL;
    struct sbuf b = {NULL, 0, 0, true};
    sb_quoted(&b, value);
    sb_add(&b, "", 0);
    if (!b.ok) {
        free(b.s);
        return NULL;
    }
    if (!b.s)
        return dup_n("", 0);
    return b.s;
}

/* A float as the shortest "%g" text that reads back as the same float: "7", "7.5", "0.75". */
static void fmt_float(char *buf, size_t size, float v) {
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, size, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v)
            return;
    }
}

/* Appends ", " (unless first) and "key: quote(value)", or just key when key == value (A1111). */
static void sb_pair(struct sbuf *b, const char *key, const char *value) {
    if (b->n > 0)
        sb_add(b, ", ", 2);
    sb_str(b, key);
    if (!strcmp(key, value))
        return;
    sb_add(b, ": ", 2);
    sb_quoted(b, value);
}

/* The keys of A1111's generation_params dict in order (v1.10); "" marks where
 * **p.extra_generation_params goes: extras with one of these keys take that key's place, the
 * others go at the mark. */
static const char *const a1111_keys[] = {
    "Steps", "Sampler", "Schedule type", "CFG scale", "Image CFG scale", "Seed",
    "Face restoration", "Size", "Model hash", "Model", "FP8 weight",
    "Cache FP16 weight for LoRA", "VAE hash", "VAE", "Variation seed", "Variation seed strength",
    "Seed resize from", "Denoising strength", "Conditional mask weight", "Clip skip", "ENSD",
    "Token merging ratio", "Token merging ratio hr", "Init image hash", "RNG", "Tiling", "",
    "Version", "User",
};

/* True when key is one of a1111_keys (not the extras mark). */
static bool is_a1111_key(const char *key) {
    for (size_t i = 0; i < sizeof a1111_keys / sizeof a1111_keys[0]; i++)
        if (a1111_keys[i][0] && !strcmp(a1111_keys[i], key))
            return true;
    return false;
}

/* Appends the struct field named key when it is set; returns true when it appended. */
static bool sb_field(struct sbuf *b, const struct mx_sd_infotext *it, const char *key) {
    char num[48];
    const char *v = NULL;
    if (!strcmp(key, "Steps")) {
        if (it->steps > 0)
            snprintf(num, sizeof num, "%d", it->steps), v = num;
    } else if (!strcmp(key, "Sampler")) {
        v = it->sampler;
    } else if (!strcmp(key, "Schedule type")) {
        v = it->schedule;
    } else if (!strcmp(key, "CFG scale")) {
        if (!isnan(it->cfg))
            fmt_float(num, sizeof num, it->cfg), v = num;
    } else if (!strcmp(key, "Seed")) {
        if (it->has_seed)
            snprintf(num, sizeof num, "%llu", (unsigned long long)it->seed), v = num;
    } else if (!strcmp(key, "Size")) {
        if (it->w > 0 && it->h > 0)
            snprintf(num, sizeof num, "%dx%d", it->w, it->h), v = num;
    } else if (!strcmp(key, "Model hash")) {
        v = it->model_hash;
    } else if (!strcmp(key, "Model")) {
        v = it->model;
    } else if (!strcmp(key, "Denoising strength")) {
        if (it->strength >= 0)
            fmt_float(num, sizeof num, it->strength), v = num;
    } else if (!strcmp(key, "Clip skip")) {
        if (it->clip_skip > 1)
            snprintf(num, sizeof num, "%d", it->clip_skip), v = num;
    } else if (!strcmp(key, "RNG")) {
        v = it->rng;
    } else if (!strcmp(key, "Version")) {
        v = it->version;
    }
    if (v)
        sb_pair(b, key, v);
    return v != NULL;
}

int mx_sd_infotext_format(const struct mx_sd_infotext *it, char **out, struct mx_err *err) {
    if (!it || !out)
        return mx_err_set(err, MX_EINVAL, "infotext: NULL argument");
    *out = NULL;
    struct sbuf params = {NULL, 0, 0, true};
    for (size_t i = 0; i < sizeof a1111_keys / sizeof a1111_keys[0]; i++) {
        const char *key = a1111_keys[i];
        if (!key[0]) {
            for (size_t j = 0; j < it->n_extra; j++)
                if (!is_a1111_key(it->extra[j].key))
                    sb_pair(&params, it->extra[j].key, it->extra[j].value);
        } else if (!sb_field(&params, it, key)) {
            const char *v = mx_sd_infotext_get_extra(it, key);
            if (v)
                sb_pair(&params, key, v);
        }
    }
    // f"{prompt}{negative_prompt_text}\n{generation_params_text}".strip()
    struct sbuf b = {NULL, 0, 0, true};
    sb_str(&b, it->prompt ? it->prompt : "");
    if (it->negative && it->negative[0]) {
        sb_str(&b, "\nNegative prompt: ");
        sb_str(&b, it->negative);
    }
    sb_add(&b, "\n", 1);
    if (params.s)
        sb_add(&b, params.s, params.n);
    free(params.s);
    if (!params.ok || !b.ok) {
        free(b.s);
        return mx_err_set(err, MX_ENOMEM, "infotext: out of memory");
    }
    size_t s = 0, e = b.n;
    py_strip(b.s, &s, &e);
    memmove(b.s, b.s + s, e - s);
    b.s[e - s] = '\0';
    *out = b.s;
    return 0;
}

/* ---- parsing -------------------------------------------------------------------------------- */

/* \s for the regex: ASCII whitespace and \x1c-\x1f (Python's str.isspace for ASCII). */
static bool re_space(unsigned char c) {
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

/* \w: ASCII letters, digits, '_', and (approximation) every non-ASCII byte. */
static bool re_word(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c >= 0x80;
}

/* One regex match: key [k0, k1), value [v0, v1) (quotes included). */
struct re_match {
    size_t k0, k1, v0, v1;
};

/* Tries the regex at pos in s[0..e). Returns true with *m and *next (where findall goes on);
 * false with *next the next position worth trying (every start before it fails the same way). */
static bool re_param_at(const unsigned char *s, size_t e, size_t pos, struct re_match *m,
                        size_t *next) {
    size_t p = pos;
    while (p < e && re_space(s[p]))
        p++;
    if (p >= e || !re_word(s[p])) {
        *next = pos + 1;
        return false;
    }
    // \w[\w \-/]+ counts characters, not bytes: a key needs two, and "猫" is one.
    size_t k0 = p;
    if (s[p] >= 0x80) {
        unsigned int cp;
        p += mx_utf8_decode((const char *)s + p, e - p, &cp);
    } else {
        p++;
    }
    size_t q = p;
    while (q < e && (re_word(s[q]) || s[q] == ' ' || s[q] == '-' || s[q] == '/'))
        q++;
    if (q == p || q >= e || s[q] != ':') {
        // Any start inside this run reaches the same end q and fails there too.
        *next = q > pos + 1 ? q : pos + 1;
        return false;
    }
    m->k0 = k0;
    m->k1 = q;
    p = q + 1;
    while (p < e && re_space(s[p]))
        p++;
    m->v0 = p;
    // "(?:\\.|[^\\"])+" followed by ',' or the end
    if (p < e && s[p] == '"') {
        size_t r = p + 1, n_tok = 0;
        while (r < e) {
            if (s[r] == '\\') {
                if (r + 1 >= e || s[r + 1] == '\n')
                    break;
                r += 2;
            } else if (s[r] == '"') {
                break;
            } else {
                r++;
            }
            n_tok++;
        }
        if (r < e && s[r] == '"' && n_tok > 0 && (r + 1 == e || s[r + 1] == ',')) {
            m->v1 = r + 1;
            *next = r + 1 == e ? e : r + 2;
            return true;
        }
    }
    // [^,]* followed by ',' or the end
    size_t r = p;
    while (r < e && s[r] != ',')
        r++;
    m->v1 = r;
    *next = r < e ? r + 1 : e;
    return true;
}

/* re.findall over s[0..e): the matches in order (*out, caller frees), *n of them. Returns 0 or
 * MX_ENOMEM. */
static int re_findall(const unsigned char *s, size_t e, struct re_match **out, size_t *n) {
    struct re_match *ms = NULL, m;
    size_t cnt = 0, cap = 0, pos = 0, next;
    while (pos < e) {
        if (re_param_at(s, e, pos, &m, &next)) {
            if (cnt == cap) {
                size_t nc = cap ? cap * 2 : 16;
                struct re_match *x = realloc(ms, nc * sizeof *x);
                if (!x) {
                    free(ms);
                    return MX_ENOMEM;
                }
                ms = x;
                cap = nc;
            }
            ms[cnt++] = m;
        }
        pos = next;
    }
    *out = ms;
    *n = cnt;
    return 0;
}

/* Four hex digits at s (within e) as a number, or -1. */
static long hex4(const unsigned char *s, const unsigned char *e) {
    if (e - s < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = mx_hex_digit((unsigned char)s[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Appends code point cp (at most U+10FFFF) as UTF-8. */
static void sb_cp(struct sbuf *b, unsigned long cp) {
    char u[4];
    sb_add(b, u, mx_utf8_put((uint32_t)cp, u));
}

/* json.loads of the string literal s[0..n) (s[0] == s[n-1] == '"'): returns 1 with *out (caller
 * frees), 0 when it is not exactly one valid JSON string (A1111 then keeps the raw text), or
 * MX_ENOMEM. */
static int json_unquote(const char *str, size_t n, char **out) {
    const unsigned char *s = (const unsigned char *)str, *e = s + n - 1, *p = s + 1;
    struct sbuf b = {NULL, 0, 0, true};
    sb_add(&b, "", 0);
    while (p < e) {
        if (*p == '"' || *p < 0x20)
            goto invalid; /* the string ends early (extra data), or a raw control character */
        if (*p != '\\') {
            const unsigned char *q = p;
            while (q < e && *q != '"' && *q != '\\' && *q >= 0x20)
                q++;
            sb_add(&b, (const char *)p, (size_t)(q - p));
            p = q;
            continue;
        }
        if (e - p < 2)
            goto invalid;
        unsigned char c = p[1];
        p += 2;
        switch (c) {
        case '"': case '\\': case '/': sb_add(&b, (const char *)&c, 1); break;
        case 'b': sb_add(&b, "\b", 1); break;
        case 'f': sb_add(&b, "\f", 1); break;
        case 'n': sb_add(&b, "\n", 1); break;
        case 'r': sb_add(&b, "\r", 1); break;
        case 't': sb_add(&b, "\t", 1); break;
        case 'u': {
            long cp = hex4(p, e);
            if (cp < 0)
                goto invalid;
            p += 4;
            if (cp >= 0xd800 && cp <= 0xdbff && e - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                long lo = hex4(p + 2, e);
                if (lo >= 0xdc00 && lo <= 0xdfff) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    p += 6;
                }
            }
            if (cp >= 0xd800 && cp <= 0xdfff)
                cp = 0xfffd; /* a lone surrogate: Python keeps it, UTF-8 cannot */
            if (cp == 0)
                goto invalid; /* \u0000 would cut the C string: keep the raw text instead */
            sb_cp(&b, (unsigned long)cp);
            break;
        }
        default:
            goto invalid;
        }
    }
    if (!b.ok) {
        free(b.s);
        return MX_ENOMEM;
    }
    *out = b.s;
    return 1;
invalid:
    free(b.s);
    return b.ok ? 0 : MX_ENOMEM;
}

/* Reads s as a whole int (Python int(): surrounding whitespace allowed, nothing else); true
 * when it does and fits. */
static bool read_long(const char *s, long long lo, long long hi, long long *v) {
    errno = 0;
    char *end;
    long long x = strtoll(s, &end, 10);
    if (end == s || errno)
        return false;
    while (re_space((unsigned char)*end))
        end++;
    if (*end || x < lo || x > hi)
        return false;
    *v = x;
    return true;
}

/* Reads s as a whole unsigned 64-bit number (no sign). */
static bool read_u64(const char *s, uint64_t *v) {
    while (re_space((unsigned char)*s))
        s++;
    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno)
        return false;
    while (re_space((unsigned char)*end))
        end++;
    if (*end)
        return false;
    *v = x;
    return true;
}

/* Reads s as a whole finite float. */
static bool read_float(const char *s, float *v) {
    errno = 0;
    char *end;
    float x = strtof(s, &end);
    if (end == s || errno || !isfinite(x))
        return false;
    while (re_space((unsigned char)*end))
        end++;
    if (*end)
        return false;
    *v = x;
    return true;
}

/* re_imagesize "^(\d+)x(\d+)$" on v: true with the two numbers (each must fit an int). */
static bool read_size(const char *v, int *w, int *h) {
    const char *p = v;
    long long a = 0, b = 0;
    if (*p < '0' || *p > '9')
        return false;
    for (; *p >= '0' && *p <= '9'; p++)
        if ((a = a * 10 + (*p - '0')) > 0x7fffffff)
            return false;
    if (*p++ != 'x' || *p < '0' || *p > '9')
        return false;
    for (; *p >= '0' && *p <= '9'; p++)
        if ((b = b * 10 + (*p - '0')) > 0x7fffffff)
            return false;
    if (*p == '\n')
        p++; /* Python's $ also matches before a final newline */
    if (*p)
        return false;
    *w = (int)a;
    *h = (int)b;
    return true;
}

/* Replaces *field with a copy of v. */
static int set_str(char **field, const char *v) {
    char *c = dup_n(v, strlen(v));
    if (!c)
        return MX_ENOMEM;
    free(*field);
    *field = c;
    return 0;
}

/* Removes the extra named key, if there is one. */
static void drop_extra(struct mx_sd_infotext *it, const char *key) {
    for (size_t i = 0; i < it->n_extra; i++) {
        if (!strcmp(it->extra[i].key, key)) {
            free(it->extra[i].key);
            free(it->extra[i].value);
            memmove(&it->extra[i], &it->extra[i + 1], (it->n_extra - i - 1) * sizeof *it->extra);
            it->n_extra--;
            return;
        }
    }
}

/* Stores one parsed pair: a struct field when the key names one and the value reads as its
 * type, else an extra. A later pair of the same key replaces an earlier one (A1111's dict), so
 * a valid value drops an earlier invalid one kept as an extra, and an invalid value clears the
 * field an earlier valid one set. */
static int store_pair(struct mx_sd_infotext *it, const char *key, const char *v) {
    long long n;
    uint64_t u;
    float f;
    int w, h;
    bool typed = true, ok = false;
    if (!strcmp(key, "Steps")) {
        it->steps = (ok = read_long(v, 1, 0x7fffffff, &n)) ? (int)n : 0;
    } else if (!strcmp(key, "Seed")) {
        it->has_seed = ok = read_u64(v, &u);
        it->seed = ok ? u : 0;
    } else if (!strcmp(key, "CFG scale")) {
        it->cfg = (ok = read_float(v, &f)) ? f : NAN;
    } else if (!strcmp(key, "Size")) {
        ok = read_size(v, &w, &h);
        it->w = ok ? w : 0;
        it->h = ok ? h : 0;
    } else if (!strcmp(key, "Denoising strength")) {
        it->strength = (ok = read_float(v, &f) && f >= 0) ? f : -1.0f;
    } else if (!strcmp(key, "Clip skip")) {
        it->clip_skip = (ok = read_long(v, 1, 0x7fffffff, &n)) ? (int)n : 1;
    } else {
        typed = false;
    }
    if (typed) {
        if (!ok) {
            int rc = set_extra_n(it, key, strlen(key), v, strlen(v));
            return rc == MX_ERANGE ? 0 : rc;
        }
        drop_extra(it, key);
        return 0;
    }
    static const struct {
        const char *key;
        size_t off;
    } strs[] = {
        {"Sampler", offsetof(struct mx_sd_infotext, sampler)},
        {"Schedule type", offsetof(struct mx_sd_infotext, schedule)},
        {"Model hash", offsetof(struct mx_sd_infotext, model_hash)},
        {"Model", offsetof(struct mx_sd_infotext, model)},
        {"RNG", offsetof(struct mx_sd_infotext, rng)},
        {"Version", offsetof(struct mx_sd_infotext, version)},
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (!strcmp(key, strs[i].key))
            return set_str((char **)((char *)it + strs[i].off), v);
    int rc = set_extra_n(it, key, strlen(key), v, strlen(v));
    return rc == MX_ERANGE ? 0 : rc; /* past the cap: dropped (see MX_SD_INFOTEXT_MAX_EXTRA) */
}

/* Appends line [b, e) to *acc the way A1111 joins prompt lines: "\n" before it unless *acc is
 * still empty. */
static void join_line(struct sbuf *acc, const char *s, size_t b, size_t e) {
    if (acc->n > 0)
        sb_add(acc, "\n", 1);
    sb_add(acc, s + b, e - b);
}

int mx_sd_infotext_parse(const char *text, size_t len, struct mx_sd_infotext *it,
                         struct mx_err *err) {
    if (!it)
        return mx_err_set(err, MX_EINVAL, "infotext: NULL argument");
    mx_sd_infotext_init(it);
    if (!text)
        return mx_err_set(err, MX_EINVAL, "infotext: NULL argument");
    // A NUL ends the text, as it would end a C string.
    const char *nul = memchr(text, '\0', len);
    if (nul)
        len = (size_t)(nul - text);
    const unsigned char *u = (const unsigned char *)text;
    // *lines, lastline = x.strip().split("\n")
    size_t b = 0, e = len;
    py_strip(text, &b, &e);
    size_t last = e;
    while (last > b && text[last - 1] != '\n')
        last--;
    struct re_match *ms = NULL;
    size_t n_ms = 0;
    int rc = re_findall(u + last, e - last, &ms, &n_ms);
    if (rc < 0)
        return mx_err_set(err, rc, "infotext: out of memory");
    size_t lines_end = e; /* the prompt lines: [b, lines_end) */
    if (n_ms >= 3)
        lines_end = last;
    else
        n_ms = 0;

    struct sbuf prompt = {NULL, 0, 0, true}, neg = {NULL, 0, 0, true};
    sb_add(&prompt, "", 0);
    sb_add(&neg, "", 0);
    bool in_neg = false;
    static const char negkey[] = "Negative prompt:";
    for (size_t p = b; p < lines_end;) {
        size_t q = p;
        while (q < lines_end && text[q] != '\n')
            q++;
        size_t lb = p, le = q;
        py_strip(text, &lb, &le);
        if (le - lb >= sizeof negkey - 1 && !memcmp(text + lb, negkey, sizeof negkey - 1)) {
            in_neg = true;
            lb += sizeof negkey - 1;
            py_strip(text, &lb, &le);
        }
        join_line(in_neg ? &neg : &prompt, text, lb, le);
        if (q >= lines_end)
            break;
        p = q + 1;
    }

    for (size_t i = 0; rc == 0 && prompt.ok && i < n_ms; i++) {
        const unsigned char *s = u + last;
        struct re_match *m = &ms[i];
        if (m->v1 == m->v0)
            continue; /* v[0] raises IndexError in A1111: the pair is dropped */
        char *key = dup_n((const char *)s + m->k0, m->k1 - m->k0);
        char *val = NULL;
        size_t vn = m->v1 - m->v0;
        const char *vs = (const char *)s + m->v0;
        if (!key) {
            rc = MX_ENOMEM;
            break;
        }
        if (vs[0] == '"' && vs[vn - 1] == '"') {
            rc = vn >= 2 ? json_unquote(vs, vn, &val) : 0;
            rc = rc < 0 ? rc : 0;
        }
        if (rc == 0 && !val && !(val = dup_n(vs, vn)))
            rc = MX_ENOMEM;
        if (rc == 0)
            rc = store_pair(it, key, val);
        free(key);
        free(val);
    }
    free(ms);
    if (rc == 0 && prompt.ok && neg.ok) {
        it->prompt = prompt.s;
        it->negative = neg.s;
        return 0;
    }
    free(prompt.s);
    free(neg.s);
    return mx_err_set(err, MX_ENOMEM, "infotext: out of memory");
}
