/* fuzz_tokenizer.c - libFuzzer target for the tokenizers (core/text/tokenizer.c, tok_*.c).
 *
 * Input layout: byte 0 picks what is fuzzed, byte 1 the encode flags, the rest is the payload.
 *   mode 0-5: encode the payload as text with one of six fixed tokenizers built from hand-made
 *             vocabularies (SPM with byte fallback, SPM without, BPE with the gpt2 / llama3 /
 *             tekken splitters, CLIP), decode the ids, stream them, lay them out for CLIP;
 *   mode 6:   the payload as int32 ids (arbitrary, mostly out of range): decode and stream must
 *             reject bad ids cleanly;
 *   mode 7:   the payload as a GGUF file: mx_tokenizer_from_gguf on whatever metadata it has,
 *             then encode/decode a fixed text with the result.
 * Invariants checked (abort = crash report): ids inside the vocabulary, splitter pieces
 * contiguous and covering the text, stream output always valid UTF-8 and equal to the whole
 * decode (without clean-up) when that is valid UTF-8, no error but MX_EINVAL for bad ids.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/format/gguf.h"
#include "core/text/tok_internal.h"
#include "core/text/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define N_TOK 6
static struct mx_tokenizer *toks[N_TOK];

static void die(const char *what) {
    fprintf(stderr, "fuzz_tokenizer: invariant broken: %s\n", what);
    abort();
}

/* Byte-level vocabulary: 256 byte chars, a few merged tokens, two control tokens. */
static struct mx_tokenizer *make_bpe(enum mx_tok_pre pre) {
    static char chars[256][4];
    const char *t[300];
    int32_t types[300];
    int32_t n = 0;
    for (int b = 0; b < 256; b++) {
        size_t k = mx_utf8_put(mx_byte_to_cp((unsigned char)b), chars[b]);
        chars[b][k] = 0;
        t[n] = chars[b];
        types[n++] = MX_TOKT_NORMAL;
    }
    static const char *extra[] = {"he", "ll", "llo", "hello", "\xc4\xa0t", "\xc4\xa0th",
                                  "\xc4\xa0the", "in", "ing", "\xc4\x8a\xc4\x8a"};
    for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
        t[n] = extra[i];
        types[n++] = MX_TOKT_NORMAL;
    }
    t[n] = "<|begin|>";
    types[n++] = MX_TOKT_CONTROL;
    t[n] = "<|user|>";
    types[n++] = MX_TOKT_USER_DEFINED;
    static const char *merges[] = {"l l", "h e", "ll o", "he llo", "\xc4\xa0 t", "\xc4\xa0t h",
                                   "\xc4\xa0th e", "i n", "in g", "\xc4\x8a \xc4\x8a", "bad"};
    struct mx_tok_desc d;
    mx_tok_desc_init(&d, MX_TOK_BPE);
    d.n_tokens = n;
    d.tokens = t;
    d.types = types;
    d.merges = merges;
    d.n_merges = (int32_t)(sizeof(merges) / sizeof(merges[0]));
    d.pre = pre;
    d.bos_id = n - 2;
    d.add_bos = true;
    d.ignore_merges = pre == MX_PRE_LLAMA3;
    d.clean_spaces = pre == MX_PRE_GPT2;
    struct mx_tokenizer *tk = NULL;
    if (mx_tokenizer_new(&d, &tk, NULL) < 0)
        die("bpe vocabulary");
    return tk;
}

static struct mx_tokenizer *make_spm(bool bytes) {
    static char bufs[256][8];
    const char *t[400];
    float scores[400];
    int32_t types[400];
    int32_t n = 0;
    t[n] = "<unk>"; types[n] = MX_TOKT_UNKNOWN; scores[n++] = 0;
    t[n] = "<s>"; types[n] = MX_TOKT_CONTROL; scores[n++] = 0;
    t[n] = "</s>"; types[n] = MX_TOKT_CONTROL; scores[n++] = 0;
    for (int b = 0; bytes && b < 256; b++) {
        snprintf(bufs[b], sizeof(bufs[b]), "<0x%02X>", b);
        t[n] = bufs[b]; types[n] = MX_TOKT_BYTE; scores[n++] = 0;
    }
    static const char *pieces[] = {"\xe2\x96\x81", "a", "b", "e", "t", "h", "\xe2\x96\x81t",
                                   "\xe2\x96\x81th", "\xe2\x96\x81the", "he", "ab", "ba",
                                   "\xc3\xa9", "\xe2\x96\x81\xe2\x96\x81", "<s>a", "<0x41",
                                   "<user>", "", "x"};
    for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
        t[n] = pieces[i];
        types[n] = i == 16 ? MX_TOKT_USER_DEFINED : i == 15 ? MX_TOKT_BYTE
                 : i == 18 ? MX_TOKT_UNUSED : MX_TOKT_NORMAL;
        scores[n++] = -(float)(i % 7);
    }
    struct mx_tok_desc d;
    mx_tok_desc_init(&d, MX_TOK_SPM);
    d.n_tokens = n;
    d.tokens = t;
    d.scores = scores;
    d.types = types;
    d.add_eos = !bytes;
    struct mx_tokenizer *tk = NULL;
    if (mx_tokenizer_new(&d, &tk, NULL) < 0)
        die("spm vocabulary");
    return tk;
}

static struct mx_tokenizer *make_clip(void) {
    static const char text[] = "#version: 0.2\nc a\nca t</w>\nd o\ndo g</w>\np h\nph o\n"
                               "pho t\nphot o</w>\n, </w>\n";
    struct mx_tokenizer *tk = NULL;
    if (mx_clip_tokenizer_from_merges(text, sizeof(text) - 1, &tk, NULL) < 0)
        die("clip vocabulary");
    return tk;
}

static void init(void) {
    if (toks[0])
        return;
    toks[0] = make_spm(true);
    toks[1] = make_spm(false);
    toks[2] = make_bpe(MX_PRE_GPT2);
    toks[3] = make_bpe(MX_PRE_LLAMA3);
    toks[4] = make_bpe(MX_PRE_TEKKEN);
    toks[5] = make_clip();
}

static bool valid_utf8(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t k = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3
                 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        if (!k || i + k > n)
            return false;
        for (size_t j = 1; j < k; j++) {
            unsigned lo = 0x80, hi = 0xBF, d = s[i + j];
            if (j == 1 && c == 0xE0) lo = 0xA0;
            if (j == 1 && c == 0xED) hi = 0x9F;
            if (j == 1 && c == 0xF0) lo = 0x90;
            if (j == 1 && c == 0xF4) hi = 0x8F;
            if (d < lo || d > hi)
                return false;
        }
        i += k;
    }
    return true;
}

/* Streams ids; every chunk must be valid UTF-8. Returns the joined text (caller frees). */
static char *stream(const struct mx_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                    size_t *len, int *bad_ids) {
    struct mx_detok_stream s;
    mx_detok_stream_init(&s, t, flags);
    char *all = NULL;
    size_t w = 0;
    *bad_ids = 0;
    for (size_t i = 0; i <= n; i++) {
        const char *o;
        size_t k;
        int rc = i < n ? mx_detok_stream_push(&s, ids[i], &o, &k)
                       : mx_detok_stream_flush(&s, &o, &k);
        if (rc == MX_EINVAL && i < n) {
            (*bad_ids)++;
            continue;
        }
        if (rc < 0)
            die("stream error");
        if (!valid_utf8((const unsigned char *)o, k))
            die("stream chunk is not valid UTF-8");
        char *na = realloc(all, w + k + 1);
        if (!na)
            die("oom");
        all = na;
        memcpy(all + w, o, k);
        w += k;
    }
    mx_detok_stream_deinit(&s);
    *len = w;
    return all;
}

struct cover {
    size_t at;
};

static int check_piece(void *ud, size_t a, size_t b) {
    struct cover *c = ud;
    if (a != c->at || b <= a)
        die("splitter pieces are not contiguous");
    c->at = b;
    return 0;
}

static void run_text(const struct mx_tokenizer *t, const char *text, size_t len, unsigned flags) {
    int32_t *ids = NULL;
    size_t n = 0;
    if (mx_tokenizer_encode(t, text, len, flags & 3, &ids, &n, NULL) < 0)
        return; /* only out of memory */
    int32_t nv = mx_tokenizer_n_vocab(t);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= nv)
            die("id outside the vocabulary");
    char *d = NULL;
    size_t dl = 0, sl = 0;
    unsigned df = (flags & 4) ? MX_DETOK_SPECIAL : 0;
    if (mx_tokenizer_decode(t, ids, n, df, &d, &dl, NULL) < 0)
        die("decode of valid ids failed");
    free(d);
    if (mx_tokenizer_decode(t, ids, n, df | MX_DETOK_NO_CLEAN, &d, &dl, NULL) < 0)
        die("decode of valid ids failed");
    int bad;
    char *s = stream(t, ids, n, df | MX_DETOK_LSTRIP, &sl, &bad);
    if (valid_utf8((const unsigned char *)d, dl) && (sl != dl || memcmp(s, d, dl)))
        die("stream differs from whole decode");
    int32_t pad[160];
    if (mx_clip_pad(ids, n, 77, 49407, flags & 8, pad, sizeof(pad) / sizeof(pad[0])) < 0)
        die("clip_pad");
    free(s);
    free(d);
    free(ids);

    struct cover c = {0};
    enum mx_tok_pre pre = (enum mx_tok_pre)(flags >> 4) % 4;
    mx_tok_split(pre, text, len, check_piece, &c);
    if (c.at != len)
        die("splitter did not cover the text");
}

static void run_ids(const uint8_t *p, size_t size, unsigned flags) {
    size_t n = size / 4;
    int32_t *ids = malloc(n ? n * 4 : 1);
    if (!ids)
        return;
    memcpy(ids, p, n * 4);
    const struct mx_tokenizer *t = toks[flags % N_TOK];
    char *d = NULL;
    size_t dl = 0, sl = 0;
    int rc = mx_tokenizer_decode(t, ids, n, (flags >> 3) & 3, &d, &dl, NULL);
    int bad = 0, nv = mx_tokenizer_n_vocab(t), n_bad = 0;
    for (size_t i = 0; i < n; i++)
        n_bad += ids[i] < 0 || ids[i] >= nv;
    if ((rc == MX_EINVAL) != (n_bad > 0) || (rc < 0 && rc != MX_EINVAL))
        die("decode did not reject exactly the bad ids");
    char *s = stream(t, ids, n, (flags >> 3) & 1, &sl, &bad);
    if (bad != n_bad)
        die("stream did not reject exactly the bad ids");
    char buf[8];
    for (size_t i = 0; i < n; i++)
        if (mx_tokenizer_piece(t, ids[i], 0, buf, sizeof(buf)) == MX_EINVAL && ids[i] >= 0 &&
            ids[i] < nv)
            die("piece rejected a valid id");
    free(s);
    free(d);
    free(ids);
}

static void run_gguf(const uint8_t *p, size_t size, unsigned flags) {
    struct mx_gguf *g = NULL;
    struct mx_tokenizer *t = NULL;
    if (mx_gguf_open_mem(p, size, "fuzz.gguf", &g, NULL) < 0)
        return;
    if (mx_tokenizer_from_gguf(g, &t, NULL) == 0) {
        static const char text[] = "Hello world <s> caf\xc3\xa9 \xf0\x9f\x99\x82 12345\n\tok";
        run_text(t, text, sizeof(text) - 1, flags);
        mx_tokenizer_free(t);
    }
    mx_gguf_close(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init();
    if (size < 2)
        return 0;
    unsigned mode = data[0] % 8, flags = data[1];
    const uint8_t *p = data + 2;
    size -= 2;
    if (mode < N_TOK)
        run_text(toks[mode], (const char *)p, size, flags);
    else if (mode == 6)
        run_ids(p, size, flags);
    else
        run_gguf(p, size, flags);
    return 0;
}
