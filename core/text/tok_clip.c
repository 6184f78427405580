/* tok_clip.c - the CLIP tokenizer of Stable Diffusion's text encoder: building its vocabulary
 * from OpenAI's bpe_simple_vocab_16e6.txt (256 byte chars, the same with "</w>", one token per
 * merge, <|startoftext|>, <|endoftext|>: 49 408 ids) or from a diffusers tokenizer/ folder
 * (vocab.json + merges.txt), and the 77-token windows the encoder takes. The text side
 * (cleaning, lower-casing, split, merge) is mx_tok_clip_text() in tok_bpe.c.
 * Ref: stable-diffusion.cpp clip.hpp (CLIPTokenizer), openai/CLIP simple_tokenizer.py
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/text/tok_internal.h"
#include "core/base/util.h"

#define CLIP_N_MERGES (49152 - 256 - 2) /* merges CLIP uses, as simple_tokenizer.py */
#define CLIP_MAX_FILE (64u << 20)

static const char clip_hint[] =
    "run scripts/install-clip-vocab.sh (installs OpenAI's bpe_simple_vocab_16e6.txt into "
    "$XDG_DATA_HOME/mixel/), or give a diffusers tokenizer/ folder";

int mx_clip_vocab_default_path(char *buf, size_t size, struct mx_err *err) {
    const char *x = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");
    int n;
    if (x && *x)
        n = snprintf(buf, size, "%s/mixel/%s", x, MX_CLIP_VOCAB_FILE);
    else if (home && *home)
        n = snprintf(buf, size, "%s/.local/share/mixel/%s", home, MX_CLIP_VOCAB_FILE);
    else
        return mx_err_set(err, MX_ENOENT, "CLIP vocabulary: neither XDG_DATA_HOME nor HOME is "
                          "set; %s", clip_hint);
    if (n < 0 || (size_t)n >= size)
        return mx_err_set(err, MX_ERANGE, "CLIP vocabulary: path too long");
    return 0;
}

/* buf = dir + "/" + name; false when it does not fit. */
static bool join(char *buf, size_t size, const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    if (a + b + 2 > size)
        return false;
    memcpy(buf, dir, a);
    buf[a] = '/';
    memcpy(buf + a + 1, name, b + 1);
    return true;
}

/* Reads a whole file (at most CLIP_MAX_FILE) into a NUL-terminated malloc'd buffer. */
static int read_file(const char *path, char **out, size_t *len, struct mx_err *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT)
            return mx_err_set(err, MX_ENOENT, "%s: CLIP vocabulary not found; %s", path,
                              clip_hint);
        return mx_err_set(err, MX_EIO, "%s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 0 ||
        (uint64_t)st.st_size > CLIP_MAX_FILE) {
        fclose(f);
        return mx_err_set(err, MX_EFORMAT, "%s: not a regular file of at most %u bytes", path,
                          CLIP_MAX_FILE);
    }
    size_t n = (size_t)st.st_size;
    char *b = malloc(n + 1);
    if (!b) {
        fclose(f);
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
    }
    if (fread(b, 1, n, f) != n) {
        free(b);
        fclose(f);
        return mx_err_set(err, MX_EIO, "%s: read error", path);
    }
    fclose(f);
    b[n] = 0;
    *out = b;
    *len = n;
    return 0;
}

/* Splits text into lines in place (NUL at each '\n', '\r' dropped); lines[] gets at most max
 * merges after the "#version" header. Returns the count. */
static int32_t merge_lines(char *text, size_t len, const char **lines, int32_t max) {
    int32_t n = 0;
    size_t i = 0;
    bool header = true;
    while (i < len && n < max) {
        char *line = text + i;
        char *nl = memchr(line, '\n', len - i);
        size_t l = nl ? (size_t)(nl - line) : len - i;
        i += l + 1;
        line[l] = 0;
        if (l && line[l - 1] == '\r')
            line[--l] = 0;
        if (header) { /* the first line is "#version: 0.2" in both formats */
            header = false;
            if (line[0] == '#')
                continue;
        }
        if (l == 0)
            continue;
        lines[n++] = line;
    }
    return n;
}

/* Marks <|startoftext|> / <|endoftext|> as control tokens and takes their ids as BOS/EOS. */
static void clip_specials(struct mx_tok_desc *d, int32_t *types, const char *const *toks,
                          const size_t *lens) {
    for (int32_t i = 0; i < d->n_tokens; i++) {
        types[i] = MX_TOKT_NORMAL;
        if (lens[i] == 15 && memcmp(toks[i], "<|startoftext|>", 15) == 0) {
            types[i] = MX_TOKT_CONTROL;
            d->bos_id = i;
        } else if (lens[i] == 13 && memcmp(toks[i], "<|endoftext|>", 13) == 0) {
            types[i] = MX_TOKT_CONTROL;
            d->eos_id = d->pad_id = i;
        }
    }
}

int mx_clip_tokenizer_from_merges(const char *text, size_t len, struct mx_tokenizer **out,
                                  struct mx_err *err) {
    *out = NULL;
    int rc = MX_ENOMEM;
    char *copy = malloc(len + 1);
    const char **merges = malloc(CLIP_N_MERGES * sizeof(*merges));
    int32_t n_tok_max = 512 + CLIP_N_MERGES + 2;
    const char **toks = calloc((size_t)n_tok_max, sizeof(*toks));
    size_t *lens = calloc((size_t)n_tok_max, sizeof(*lens));
    int32_t *types = calloc((size_t)n_tok_max, sizeof(*types));
    char *pool = NULL;
    if (!copy || !merges || !toks || !lens || !types)
        goto fail;
    memcpy(copy, text, len);
    copy[len] = 0;
    int32_t n_merges = merge_lines(copy, len, merges, CLIP_N_MERGES);
    if (n_merges == 0) {
        rc = mx_err_set(err, MX_EFORMAT, "CLIP vocabulary: no merges in %zu bytes", len);
        goto fail;
    }
    /* byte chars (2 bytes of UTF-8 at most) twice, merges without their space, 2 specials */
    size_t pool_n = 256 * 3 + 256 * 7 + len + 64;
    if (!(pool = malloc(pool_n)))
        goto fail;
    char *p = pool;
    int32_t n = 0;
    /* bytes_to_unicode() order: printable bytes first, then the rest */
    for (int pass = 0; pass < 2; pass++) {
        for (int b = 0; b < 256; b++) {
            bool printable = mx_byte_to_cp((unsigned char)b) < 256;
            if (printable != (pass == 0))
                continue;
            toks[n] = p;
            lens[n] = mx_utf8_put(mx_byte_to_cp((unsigned char)b), p);
            p += lens[n++];
        }
    }
    for (int32_t i = 0; i < 256; i++) {
        memcpy(p, toks[i], lens[i]);
        memcpy(p + lens[i], "</w>", 4);
        toks[n] = p;
        lens[n++] = lens[i] + 4;
        p += lens[i] + 4;
    }
    for (int32_t i = 0; i < n_merges; i++) {
        const char *m = merges[i];
        const char *sp = strchr(m + 1, ' ');
        if (!sp || strchr(sp + 1, ' ')) {
            rc = mx_err_set(err, MX_EFORMAT, "CLIP vocabulary: merge line %d is not 'a b'",
                            i + 2);
            goto fail;
        }
        size_t l1 = (size_t)(sp - m), l2 = strlen(sp + 1);
        toks[n] = p;
        memcpy(p, m, l1);
        memcpy(p + l1, sp + 1, l2);
        lens[n++] = l1 + l2;
        p += l1 + l2;
    }
    toks[n] = "<|startoftext|>";
    lens[n++] = 15;
    toks[n] = "<|endoftext|>";
    lens[n++] = 13;

    struct mx_tok_desc d;
    mx_tok_desc_init(&d, MX_TOK_CLIP);
    d.n_tokens = n;
    d.tokens = toks;
    d.token_lens = lens;
    d.types = types;
    d.n_merges = n_merges;
    d.merges = merges;
    clip_specials(&d, types, toks, lens);
    rc = mx_tokenizer_new(&d, out, err);
fail:
    if (rc == MX_ENOMEM)
        mx_err_set(err, rc, "CLIP vocabulary: out of memory");
    free(pool);
    free(types);
    free(lens);
    free(toks);
    free(merges);
    free(copy);
    return rc;
}

/* A diffusers tokenizer/ folder: vocab.json {token: id} and merges.txt. */
static int load_diffusers(const char *dir, struct mx_tokenizer **out, struct mx_err *err) {
    char path[4096];
    char *mtext = NULL;
    size_t mlen = 0;
    const char **toks = NULL, **merges = NULL;
    size_t *lens = NULL;
    int32_t *types = NULL;
    json_t *root = NULL;
    int rc;

    if (!join(path, sizeof(path), dir, "vocab.json"))
        return mx_err_set(err, MX_ERANGE, "CLIP vocabulary: path too long");
    json_error_t je;
    root = json_load_file(path, 0, &je);
    if (!root)
        return mx_err_set(err, MX_EFORMAT, "%s: %s (line %d)", path, je.text, je.line);
    if (!json_is_object(root) || json_object_size(root) == 0 ||
        json_object_size(root) > (1u << 24)) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: not an object of token -> id", path);
        goto fail;
    }
    int32_t n = (int32_t)json_object_size(root);
    rc = MX_ENOMEM;
    toks = calloc((size_t)n, sizeof(*toks));
    lens = calloc((size_t)n, sizeof(*lens));
    types = calloc((size_t)n, sizeof(*types));
    if (!toks || !lens || !types)
        goto fail;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        json_int_t id = json_is_integer(val) ? json_integer_value(val) : -1;
        if (id < 0 || id >= n || toks[id]) {
            rc = mx_err_set(err, MX_EFORMAT, "%s: token '%.40s' has a bad or duplicate id "
                            "(%lld of %d)", path, key, (long long)id, n);
            goto fail;
        }
        toks[id] = key;
        lens[id] = strlen(key);
    }
    join(path, sizeof(path), dir, "merges.txt"); /* fits: vocab.json did */
    if ((rc = read_file(path, &mtext, &mlen, err)) < 0)
        goto fail;
    rc = MX_ENOMEM;
    if (!(merges = malloc(CLIP_N_MERGES * sizeof(*merges))))
        goto fail;
    int32_t n_merges = merge_lines(mtext, mlen, merges, CLIP_N_MERGES);

    struct mx_tok_desc d;
    mx_tok_desc_init(&d, MX_TOK_CLIP);
    d.n_tokens = n;
    d.tokens = toks;
    d.token_lens = lens;
    d.types = types;
    d.n_merges = n_merges;
    d.merges = merges;
    d.bos_id = d.eos_id = d.pad_id = MX_TOK_NONE;
    clip_specials(&d, types, toks, lens);
    rc = mx_tokenizer_new(&d, out, err);
fail:
    if (rc == MX_ENOMEM)
        mx_err_set(err, rc, "%s: out of memory", dir);
    free(merges);
    free(mtext);
    free(types);
    free(lens);
    free(toks);
    json_decref(root);
    return rc;
}

static bool is_file(const char *dir, const char *name) {
    char path[4096];
    struct stat st;
    return join(path, sizeof(path), dir, name) && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int mx_clip_tokenizer_load(const char *path, struct mx_tokenizer **out, struct mx_err *err) {
    char def[4096], sub[4096];
    struct stat st;
    int rc;
    *out = NULL;
    if (!path) {
        if ((rc = mx_clip_vocab_default_path(def, sizeof(def), err)) < 0)
            return rc;
        path = def;
    }
    if (stat(path, &st) != 0)
        return mx_err_set(err, MX_ENOENT, "%s: CLIP vocabulary not found; %s", path, clip_hint);
    if (S_ISDIR(st.st_mode)) {
        if (is_file(path, "vocab.json") && is_file(path, "merges.txt"))
            return load_diffusers(path, out, err);
        if (join(sub, sizeof(sub), path, "tokenizer") && is_file(sub, "vocab.json") &&
            is_file(sub, "merges.txt"))
            return load_diffusers(sub, out, err);
        if (is_file(path, MX_CLIP_VOCAB_FILE) &&
            join(sub, sizeof(sub), path, MX_CLIP_VOCAB_FILE)) {
            path = sub;
        } else {
            return mx_err_set(err, MX_ENOENT, "%s: no CLIP vocabulary in this folder (looked for "
                              "vocab.json + merges.txt, tokenizer/, %s); %s", path,
                              MX_CLIP_VOCAB_FILE, clip_hint);
        }
    }
    size_t len = strlen(path);
    /* .../tokenizer/vocab.json or merges.txt given: the folder is meant */
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    if (strcmp(base, "vocab.json") == 0 || strcmp(base, "merges.txt") == 0) {
        size_t dl = (size_t)(base - path);
        if (dl == 0 || dl >= sizeof(sub))
            return load_diffusers(".", out, err);
        memcpy(sub, path, dl - 1);
        sub[dl - 1] = 0;
        return load_diffusers(sub, out, err);
    }
    if (len > 3 && strcmp(path + len - 3, ".gz") == 0)
        return mx_err_set(err, MX_EUNSUP, "%s: compressed; gunzip it first", path);
    char *text;
    size_t n;
    if ((rc = read_file(path, &text, &n, err)) < 0)
        return rc;
    rc = mx_clip_tokenizer_from_merges(text, n, out, err);
    free(text);
    return rc;
}

int64_t mx_clip_pad(const int32_t *ids, size_t n, int n_ctx, int32_t pad_id, bool truncate,
                    int32_t *out, size_t cap) {
    if (n_ctx < 3)
        return MX_EINVAL;
    size_t body = (size_t)n_ctx - 2;
    size_t windows = truncate ? 1 : MX_MAX((size_t)1, (n + body - 1) / body);
    if (truncate && n > body)
        n = body;
    size_t length;
    if (!mx_mul_size(windows, (size_t)n_ctx, &length) || length > INT64_MAX / 2)
        return MX_ERANGE;
    size_t w = 0, k = 0;
#define PUT(v) do { int32_t v_ = (v); if (w < cap) out[w] = v_; w++; } while (0)
    PUT(MX_CLIP_BOS);
    /* stable-diffusion.cpp pad_tokens(): BOS at each window start, EOS at each window end */
    for (size_t i = 1; i < length && k < n; i++) {
        if (i % (size_t)n_ctx == 0)
            PUT(MX_CLIP_BOS);
        else if (i % (size_t)n_ctx == (size_t)n_ctx - 1)
            PUT(MX_CLIP_EOS);
        else
            PUT(ids[k++]);
    }
    PUT(MX_CLIP_EOS);
    while (w < length)
        PUT(pad_id);
#undef PUT
    return (int64_t)w;
}
