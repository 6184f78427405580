/* test_imatrix.c - importance matrices (core/format/imatrix.c), the weighted quantizers
 * (mx_quantize_row_weighted in core/base/quant.c) and `mixel quantize --imatrix`'s conversion
 * (core/format/quantize_model.c).
 *
 * Oracles: (1) ggml's own quantize_<type>(x, 1, n, qw) bytes, committed as
 * tests/golden/quant/<type>_w.bin by make_goldens.py; (2) imatrix files written here byte by byte
 * (legacy) and with mixel's GGUF writer, with the normalised values worked out by hand; (3) a
 * small model converted with an imatrix whose every converted row must equal the weighted
 * quantizer fed with that tensor's (expert's) imatrix row, with llama.cpp's imatrix-only mix rules
 * (Q4_0's first ffn_down -> Q4_1). The llama.cpp end-to-end hashes are in
 * tests/imatrix_quantize.sh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "core/base/err.h"
#include "core/base/quant.h"
#include "core/base/util.h"
#include "core/format/gguf.h"
#include "core/format/imatrix.h"
#include "core/format/quantize_model.h"
#include "tests/mx_test.h"

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* ---- golden bytes of ggml's weighted quantizers ------------------------------------------- */

static uint8_t *read_golden(const char *file, size_t *size) {
    const char *src = getenv("MX_SRCDIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/golden/quant/%s", src ? src : ".", file);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("golden %s missing (MX_SRCDIR=%s)", path, src ? src : "(unset)");
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long sz = ftell(f);
    assert_true(sz >= 0);
    rewind(f);
    uint8_t *buf = xmalloc((size_t)sz);
    assert_int_equal(fread(buf, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *size = (size_t)sz;
    return buf;
}

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The golden rows (inputs.bin) and their imatrix-like weight rows (imatrix_rows.bin). */
struct cases {
    int n;
    uint32_t len[32];
    float *x[32], *act[32];
};

static void load_cases(struct cases *c) {
    size_t size, asize;
    uint8_t *buf = read_golden("inputs.bin", &size);
    uint8_t *act = read_golden("imatrix_rows.bin", &asize);
    assert_true(size >= 12 && memcmp(buf, "MXQG", 4) == 0 && rd32(buf + 4) == 1);
    c->n = (int)rd32(buf + 8);
    assert_true(c->n > 0 && c->n <= 32);
    size_t off = 12, aoff = 0;
    for (int i = 0; i < c->n; i++) {
        c->len[i] = rd32(buf + off);
        off += 4;
        assert_true(off + c->len[i] * 4 <= size && aoff + c->len[i] * 4 <= asize);
        c->x[i] = xmalloc(c->len[i] * sizeof(float));
        c->act[i] = xmalloc(c->len[i] * sizeof(float));
        memcpy(c->x[i], buf + off, c->len[i] * 4);
        memcpy(c->act[i], act + aoff, c->len[i] * 4);
        off += c->len[i] * 4;
        aoff += c->len[i] * 4;
    }
    assert_int_equal(off, size);
    assert_int_equal(aoff, asize);
    free(buf);
    free(act);
}

static void free_cases(struct cases *c) {
    for (int i = 0; i < c->n; i++) {
        free(c->x[i]);
        free(c->act[i]);
    }
}

/* Quantizes every whole-block case with weights rows[0], rows[1] (NULL: none) and compares with
 * the golden, byte for byte. */
static void check_weighted(int type, const char *file, bool first_unweighted) {
    const struct mx_type_traits *t = mx_type_traits(type);
    size_t size;
    uint8_t *want = read_golden(file, &size);
    struct cases c;
    load_cases(&c);
    size_t off = 0;
    for (int i = 0; i < c.n; i++) {
        uint32_t n = c.len[i];
        if (n % t->blck_size)
            continue;
        float *ramp = xmalloc(n * sizeof(float));
        for (uint32_t k = 0; k < n; k++)
            ramp[k] = (float)(0.25 + (k % 11) / 4.0);
        const float *rows[2] = {first_unweighted ? NULL : ramp, first_unweighted ? ramp : c.act[i]};
        size_t bytes;
        assert_true(mx_row_size(type, n, &bytes));
        uint8_t *got = xmalloc(bytes);
        for (int r = 0; r < 2; r++) {
            assert_true(off + bytes <= size);
            memset(got, 0xa5, bytes);
            assert_int_equal(mx_quantize_row_weighted(type, c.x[i], got, n, rows[r]), 0);
            for (size_t k = 0; k < bytes; k++)
                if (got[k] != want[off + k])
                    fail_msg("%s case %d (n %u) weights %d: byte %zu (block %zu) is 0x%02x, "
                             "ggml 0x%02x", t->name, i, n, r, k, k / t->type_size, got[k],
                             want[off + k]);
            off += bytes;
        }
        free(got);
        free(ramp);
    }
    assert_int_equal(off, size);
    free(want);
    free_cases(&c);
}

/* Types that also quantize without weights (IQ3_XXS, IQ3_S: x^2, ggml's _ref): every whole-256
 * case through mx_quantize_row_weighted(..., NULL) equals the golden <name>.bin. */
static void check_unweighted(int type, const char *file) {
    const struct mx_type_traits *t = mx_type_traits(type);
    size_t size, off = 0;
    uint8_t *want = read_golden(file, &size);
    struct cases c;
    load_cases(&c);
    for (int i = 0; i < c.n; i++) {
        size_t bytes;
        if (c.len[i] % t->blck_size)
            continue;
        assert_true(mx_row_size(type, c.len[i], &bytes));
        assert_true(off + bytes <= size);
        uint8_t *got = xmalloc(bytes);
        assert_int_equal(mx_quantize_row_weighted(type, c.x[i], got, c.len[i], NULL), 0);
        for (size_t k = 0; k < bytes; k++)
            if (got[k] != want[off + k])
                fail_msg("%s case %d unweighted: byte %zu (block %zu) is 0x%02x, ggml 0x%02x",
                         t->name, i, k, k / t->type_size, got[k], want[off + k]);
        off += bytes;
        free(got);
    }
    assert_int_equal(off, size);
    free(want);
    free_cases(&c);
}

static void test_weighted_golden(void **state) {
    (void)state;
    static const int types[] = {MX_TYPE_Q4_0, MX_TYPE_Q4_1, MX_TYPE_Q5_0, MX_TYPE_Q5_1,
                                MX_TYPE_Q2_K, MX_TYPE_Q3_K, MX_TYPE_Q4_K, MX_TYPE_Q5_K,
                                MX_TYPE_Q6_K};
    for (size_t i = 0; i < MX_ARRAY_LEN(types); i++) {
        char file[32];
        snprintf(file, sizeof file, "%s_w.bin", mx_type_name(types[i]));
        check_weighted(types[i], file, false);
    }
    /* the IQ4 goldens: no weights (quantize_iq4_*(..., NULL): 7 refinement tries), then ramp */
    check_weighted(MX_TYPE_IQ4_NL, "iq4_nl_w.bin", true);
    check_weighted(MX_TYPE_IQ4_XS, "iq4_xs_w.bin", true);
    check_weighted(MX_TYPE_IQ2_XXS, "iq2_xxs_w.bin", false);
    check_weighted(MX_TYPE_IQ2_XS, "iq2_xs_w.bin", false);
    check_weighted(MX_TYPE_IQ3_XXS, "iq3_xxs_w.bin", false);
    check_weighted(MX_TYPE_IQ3_S, "iq3_s_w.bin", false);
    check_unweighted(MX_TYPE_IQ3_XXS, "iq3_xxs.bin");
    check_unweighted(MX_TYPE_IQ3_S, "iq3_s.bin");
    check_weighted(MX_TYPE_IQ2_S, "iq2_s_w.bin", false);
    check_weighted(MX_TYPE_IQ1_S, "iq1_s_w.bin", false);
    check_weighted(MX_TYPE_IQ1_M, "iq1_m_w.bin", false);
    check_unweighted(MX_TYPE_IQ2_S, "iq2_s.bin");
    check_unweighted(MX_TYPE_IQ1_M, "iq1_m.bin");
}

/* Without weights the row call is the reference quantizer; types without a weighted search
 * ignore the weights; bad arguments are refused like mx_quantize_row. */
static void test_weighted_fallbacks(void **state) {
    (void)state;
    float x[256], qw[256];
    uint64_t seed = 7;
    for (int i = 0; i < 256; i++) {
        x[i] = mx_test_randf(&seed);
        qw[i] = 1.0f + (float)(i % 5);
    }
    uint8_t a[300], b[300];
    static const int plain[] = {MX_TYPE_Q4_0, MX_TYPE_Q2_K, MX_TYPE_Q6_K, MX_TYPE_Q8_0};
    for (size_t i = 0; i < MX_ARRAY_LEN(plain); i++) {
        assert_int_equal(mx_quantize_row(plain[i], x, a, 256), 0);
        assert_int_equal(mx_quantize_row_weighted(plain[i], x, b, 256, NULL), 0);
        size_t bytes;
        assert_true(mx_row_size(plain[i], 256, &bytes));
        assert_memory_equal(a, b, bytes);
    }
    assert_int_equal(mx_quantize_row_weighted(MX_TYPE_Q8_0, x, b, 256, qw), 0);
    assert_memory_equal(a, b, 34 * 8);
    /* weights change the result where a weighted search exists */
    assert_int_equal(mx_quantize_row(MX_TYPE_Q4_K, x, a, 256), 0);
    assert_int_equal(mx_quantize_row_weighted(MX_TYPE_Q4_K, x, b, 256, qw), 0);
    assert_true(memcmp(a, b, 144) != 0);
    assert_int_equal(mx_quantize_row_weighted(MX_TYPE_Q4_K, x, b, 100, qw), MX_EINVAL);
    assert_int_equal(mx_quantize_row_weighted(MX_TYPE_IQ2_XXS, x, b, 256, NULL), MX_EUNSUP);
    assert_int_equal(mx_quantize_row_weighted(MX_TYPE_IQ1_S, x, b, 256, NULL), MX_EUNSUP);
    assert_int_equal(mx_quantize_row_weighted(MX_TYPE_IQ1_S, x, b, 100, qw), MX_EINVAL);
    assert_int_equal(mx_quantize_row_weighted(MX_TYPE_IQ2_S, x, b, 128, NULL), MX_EINVAL);
    assert_int_equal(mx_quantize_row_weighted(MX_TYPE_IQ1_M, x, b, 0, NULL), 0);
    assert_int_equal(mx_quantize_row_weighted(12345, x, b, 256, qw), MX_EUNSUP);
}

/* ---- the reader ---------------------------------------------------------------------------- */

/* A growable byte buffer for writing legacy files. */
struct bb {
    uint8_t p[4096];
    size_t n;
};
static void put(struct bb *b, const void *s, size_t n) {
    assert_true(b->n + n <= sizeof b->p);
    memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void put_i32(struct bb *b, int32_t v) { put(b, &v, 4); }
static void put_entry(struct bb *b, const char *name, int32_t ncall, int32_t nval,
                      const float *v) {
    put_i32(b, (int32_t)strlen(name));
    put(b, name, strlen(name));
    put_i32(b, ncall);
    put_i32(b, nval);
    put(b, v, (size_t)nval * 4);
}

/* Two entries (written out of order), then the trailer: chunk count 5, dataset "wiki.txt". */
static void legacy_file(struct bb *b) {
    static const float vb[4] = {2, 4, 6, 8}, va[3] = {0.5f, 0, 3};
    b->n = 0;
    put_i32(b, 2);
    put_entry(b, "blk.0.ffn_up.weight", 2, 4, vb);
    put_entry(b, "blk.0.attn_q.weight", 0, 3, va);
    put_i32(b, 5);
    put_i32(b, 8);
    put(b, "wiki.txt", 8);
}

static void test_legacy(void **state) {
    (void)state;
    struct bb b;
    legacy_file(&b);
    struct mx_imatrix *m = NULL;
    struct mx_err err = {0};
    assert_int_equal(mx_imatrix_parse(b.p, b.n, "t.dat", &m, &err), 0);
    assert_true(m->legacy);
    assert_int_equal(m->n_entries, 2);
    assert_string_equal(m->entries[0].name, "blk.0.attn_q.weight"); /* sorted */
    assert_int_equal(m->chunk_count, 5);
    assert_string_equal(m->dataset, "wiki.txt");
    const struct mx_imatrix_entry *e = mx_imatrix_find(m, "blk.0.ffn_up.weight");
    assert_non_null(e);
    assert_int_equal(e->n_values, 4);
    assert_int_equal(e->n_mat, 1);
    for (int i = 0; i < 4; i++) /* divided by ncall 2 */
        assert_true(e->values[i] == (float)(i + 1));
    e = mx_imatrix_find(m, "blk.0.attn_q.weight");
    assert_true(e->values[0] == 0.5f && e->values[1] == 0 && e->values[2] == 3); /* ncall 0 */
    assert_null(mx_imatrix_find(m, "blk.0.ffn_up"));
    mx_imatrix_free(m);

    /* the trailer is optional: entries only, or entries + chunk count */
    size_t entries_end = b.n - 16;
    assert_int_equal(mx_imatrix_parse(b.p, entries_end, "t.dat", &m, &err), 0);
    assert_int_equal(m->chunk_count, 0);
    assert_null(m->dataset);
    mx_imatrix_free(m);
    assert_int_equal(mx_imatrix_parse(b.p, entries_end + 4, "t.dat", &m, &err), 0);
    assert_int_equal(m->chunk_count, 5);
    mx_imatrix_free(m);

    /* every other prefix is refused cleanly (ASan checks nothing is read past the end) */
    for (size_t n = 0; n < b.n; n++) {
        if (n == entries_end || n == entries_end + 4)
            continue;
        struct mx_err e2 = {0};
        m = (struct mx_imatrix *)1;
        assert_int_equal(mx_imatrix_parse(b.p, n, "t.dat", &m, &e2), MX_EFORMAT);
        assert_null(m);
        assert_true(strncmp(e2.msg, "t.dat: ", 7) == 0);
    }
}

/* A legacy file with one bad field: each must be refused with its own message. */
static void expect_bad_legacy(const struct bb *b, const char *needle) {
    struct mx_imatrix *m = NULL;
    struct mx_err err = {0};
    assert_int_equal(mx_imatrix_parse(b->p, b->n, "bad.dat", &m, &err), MX_EFORMAT);
    assert_null(m);
    if (!strstr(err.msg, needle))
        fail_msg("message '%s' lacks '%s'", err.msg, needle);
}

static void test_legacy_refusals(void **state) {
    (void)state;
    static const float v[2] = {1, 2};
    struct bb b = {.n = 0};
    put_i32(&b, 0);
    expect_bad_legacy(&b, "not an importance matrix");
    b.n = 0;
    put_i32(&b, 1000000);
    put_entry(&b, "w", 1, 2, v);
    expect_bad_legacy(&b, "1000000 entries cannot fit");
    b.n = 0;
    put_i32(&b, 1);
    put_entry(&b, "w", 1, 0, v);
    put(&b, v, 8);
    expect_bad_legacy(&b, "0 values");
    b.n = 0;
    put_i32(&b, 1);
    put_i32(&b, 70000);
    put(&b, "wwwwwwwwwwwwwwwwwwww", 20);
    expect_bad_legacy(&b, "name length 70000 outside 1..4096");
    b.n = 0;
    put_i32(&b, 1);
    put_i32(&b, 1);
    put(&b, "w", 1);
    put_i32(&b, 1);
    put_i32(&b, 100);
    put(&b, v, 8);
    expect_bad_legacy(&b, "100 values but only 8 bytes left");
    float bad[2] = {1, NAN};
    b.n = 0;
    put_i32(&b, 1);
    put_entry(&b, "w", 1, 2, bad);
    expect_bad_legacy(&b, "value 1 is nan");
    bad[1] = -INFINITY;
    b.n = 0;
    put_i32(&b, 1);
    put_entry(&b, "w", 1, 2, bad);
    expect_bad_legacy(&b, "value 1 is -inf");
    bad[1] = -0.5f;
    b.n = 0;
    put_i32(&b, 1);
    put_entry(&b, "w", 1, 2, bad);
    expect_bad_legacy(&b, "must be finite and >= 0");
    b.n = 0;
    put_i32(&b, 2);
    put_entry(&b, "w", 1, 2, v);
    put_entry(&b, "w", 1, 2, v);
    expect_bad_legacy(&b, "entry 'w' appears twice");
    b.n = 0;
    put_i32(&b, 1);
    put_entry(&b, "w", -3, 2, v);
    expect_bad_legacy(&b, "negative call count");
    b.n = 0;
    put_i32(&b, 1);
    put_i32(&b, 3);
    put(&b, "a\0b", 3);
    put_i32(&b, 1);
    put_i32(&b, 2);
    put(&b, v, 8);
    expect_bad_legacy(&b, "NUL byte inside the name");
    b.n = 0;
    put_i32(&b, 1);
    put_entry(&b, "w", 1, 2, v);
    put_i32(&b, 3);
    put_i32(&b, 50);
    put(&b, "short", 5);
    expect_bad_legacy(&b, "truncated dataset name");
    b.n = 0;
    put_i32(&b, 1);
    put_entry(&b, "w", 1, 2, v);
    put_i32(&b, 3);
    put_i32(&b, 2);
    put(&b, "dsXY", 4);
    expect_bad_legacy(&b, "2 unexpected bytes after the dataset name");
}

/* A GGUF imatrix with the given sums (ne0 x n_mat) and counts; meta false leaves out
 * imatrix.chunk_size. *buf caller frees. */
static void gguf_imatrix(void **buf, size_t *size, const char *name, int64_t ne0, int64_t n_mat,
                         const float *sums, const float *counts, int sums_type, bool meta,
                         int64_t counts_n) {
    struct mx_gguf_writer *w = mx_gguf_writer_new();
    assert_non_null(w);
    mx_gguf_writer_set_str(w, "general.type", "imatrix");
    const char *ds[1] = {"calib.txt"};
    mx_gguf_writer_set_arr_str(w, "imatrix.datasets", ds, 1);
    mx_gguf_writer_set_u32(w, "imatrix.chunk_count", 7);
    if (meta)
        mx_gguf_writer_set_u32(w, "imatrix.chunk_size", 512);
    char nm[128];
    int64_t ne[2] = {ne0, n_mat};
    snprintf(nm, sizeof nm, "%s.in_sum2", name);
    if (sums_type == MX_TYPE_F16) {
        uint16_t h[64];
        for (int64_t i = 0; i < ne0 * n_mat; i++)
            h[i] = mx_fp32_to_fp16(sums[i]);
        assert_int_equal(mx_gguf_writer_add_tensor(w, nm, MX_TYPE_F16, 2, ne, h), 0);
    } else {
        assert_int_equal(mx_gguf_writer_add_tensor(w, nm, MX_TYPE_F32, 2, ne, sums), 0);
    }
    if (counts) {
        int64_t nc[2] = {1, counts_n};
        snprintf(nm, sizeof nm, "%s.counts", name);
        assert_int_equal(mx_gguf_writer_add_tensor(w, nm, MX_TYPE_F32, 2, nc, counts), 0);
    }
    struct mx_err err = {0};
    assert_int_equal(mx_gguf_writer_write_mem(w, 3, buf, size, &err), 0);
    mx_gguf_writer_free(w);
}

static void test_gguf(void **state) {
    (void)state;
    /* 2 experts x 3 columns; expert 1 never routed (count 0 -> llama.cpp's 1.0) */
    const float sums[6] = {1, 2, 3, 4, 5, 6}, counts[2] = {2, 0};
    void *buf;
    size_t size;
    gguf_imatrix(&buf, &size, "blk.0.ffn_up_exps.weight", 3, 2, sums, counts, MX_TYPE_F32, true,
                 2);
    struct mx_imatrix *m = NULL;
    struct mx_err err = {0};
    assert_int_equal(mx_imatrix_parse(buf, size, "im.gguf", &m, &err), 0);
    assert_false(m->legacy);
    assert_int_equal(m->n_entries, 1);
    assert_int_equal(m->chunk_count, 7);
    assert_int_equal(m->chunk_size, 512);
    assert_string_equal(m->dataset, "calib.txt");
    const struct mx_imatrix_entry *e = mx_imatrix_find(m, "blk.0.ffn_up_exps.weight");
    assert_non_null(e);
    assert_int_equal(e->n_values, 6);
    assert_int_equal(e->n_mat, 2);
    const float want[6] = {0.5f, 1, 1.5f, 1, 1, 1};
    for (int i = 0; i < 6; i++)
        assert_true(e->values[i] == want[i]);
    mx_imatrix_free(m);

    /* the same through a file, and a legacy file through mx_imatrix_load */
    char path[] = "/tmp/mx_imatrix_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, size), (ssize_t)size);
    close(fd);
    assert_int_equal(mx_imatrix_load(path, &m, &err), 0);
    assert_int_equal(m->n_entries, 1);
    mx_imatrix_free(m);
    struct bb b;
    legacy_file(&b);
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b.p, b.n), (ssize_t)b.n);
    close(fd);
    assert_int_equal(mx_imatrix_load(path, &m, &err), 0);
    assert_true(m->legacy && m->n_entries == 2);
    mx_imatrix_free(m);
    unlink(path);
    struct mx_err e2 = {0};
    assert_int_equal(mx_imatrix_load(path, &m, &e2), MX_ENOENT);
    assert_null(m);
    free(buf);

    /* refusals */
    struct { int type; bool meta; bool counts; int64_t counts_n; float c0; float s0;
             const char *needle; } bad[] = {
        {MX_TYPE_F32, false, true, 2, 2, 1, "without the imatrix metadata"},
        {MX_TYPE_F32, true, false, 2, 2, 1, "has no matching .counts tensor"},
        {MX_TYPE_F32, true, true, 3, 2, 1, "3 counts for 2 rows of sums"},
        {MX_TYPE_F16, true, true, 2, 2, 1, "must be F32 (are f16 and f32)"},
        {MX_TYPE_F32, true, true, 2, -1, 1, "count 0 is -1"},
        {MX_TYPE_F32, true, true, 2, NAN, 1, "count 0 is nan"},
        {MX_TYPE_F32, true, true, 2, 2, NAN, "value 0 is nan"},
    };
    for (size_t i = 0; i < MX_ARRAY_LEN(bad); i++) {
        float s[6], c[3] = {bad[i].c0, 1, 1};
        memcpy(s, sums, sizeof s);
        s[0] = bad[i].s0;
        gguf_imatrix(&buf, &size, "w", 3, 2, s, bad[i].counts ? c : NULL, bad[i].type,
                     bad[i].meta, bad[i].counts_n);
        struct mx_err e3 = {0};
        m = (struct mx_imatrix *)1;
        assert_int_equal(mx_imatrix_parse(buf, size, "im.gguf", &m, &e3), MX_EFORMAT);
        assert_null(m);
        if (!strstr(e3.msg, bad[i].needle))
            fail_msg("case %zu: message '%s' lacks '%s'", i, e3.msg, bad[i].needle);
        free(buf);
    }
    /* a GGUF model is not an imatrix: no metadata */
    struct mx_gguf_writer *w = mx_gguf_writer_new();
    mx_gguf_writer_set_str(w, "general.architecture", "llama");
    assert_int_equal(mx_gguf_writer_write_mem(w, 3, &buf, &size, &err), 0);
    mx_gguf_writer_free(w);
    struct mx_err e4 = {0};
    assert_int_equal(mx_imatrix_parse(buf, size, "model.gguf", &m, &e4), MX_EFORMAT);
    assert_non_null(strstr(e4.msg, "not an importance matrix"));
    free(buf);
}

static void test_filter(void **state) {
    (void)state;
    static const float v[2] = {1, 2};
    static const char *const names[] = {"blk.0.attn_q.weight", "blk.0.ffn_up.weight",
                                        "blk.1.attn_q.weight", "output.weight"};
    struct bb b = {.n = 0};
    put_i32(&b, 4);
    for (int i = 0; i < 4; i++)
        put_entry(&b, names[i], 1, 2, v);
    struct mx_imatrix *m;
    struct mx_err err = {0};
    assert_int_equal(mx_imatrix_parse(b.p, b.n, "f.dat", &m, &err), 0);
    const char *exc[] = {"attn_q"};
    mx_imatrix_filter(m, NULL, 0, exc, 1);
    assert_int_equal(m->n_entries, 2);
    assert_string_equal(m->entries[0].name, "blk.0.ffn_up.weight");
    assert_string_equal(m->entries[1].name, "output.weight");
    assert_non_null(mx_imatrix_find(m, "output.weight"));
    mx_imatrix_free(m);
    assert_int_equal(mx_imatrix_parse(b.p, b.n, "f.dat", &m, &err), 0);
    const char *inc[] = {"blk.1.", "output"};
    mx_imatrix_filter(m, inc, 2, NULL, 0);
    assert_int_equal(m->n_entries, 2);
    assert_string_equal(m->entries[0].name, "blk.1.attn_q.weight");
    mx_imatrix_free(m);
    mx_imatrix_free(NULL);
}

/* ---- conversion with an imatrix ------------------------------------------------------------ */

#define W 256   /* row length of every weight */
#define NL 8    /* layers: llama.cpp's first-eighth rules touch layer 0 */

static void add_t(struct mx_gguf_writer *w, const char *name, int nd, int64_t a, int64_t b,
                  int64_t c, uint64_t *seed) {
    int64_t ne[3] = {a, b, c}, n = a * b * c;
    float *f = xmalloc((size_t)n * sizeof *f);
    for (int64_t i = 0; i < n; i++)
        f[i] = nd == 1 ? 1.0f : mx_test_randf(seed) * 0.05f;
    assert_int_equal(mx_gguf_writer_add_tensor(w, name, MX_TYPE_F32, nd, ne, f), 0);
    free(f);
}

/* An F32 llama model: NL layers of 4-row attention and FFN matrices, and in layer 1 a 3-expert
 * ffn_up_exps (2 rows each). */
static void write_model(const char *path) {
    struct mx_gguf_writer *w = mx_gguf_writer_new();
    assert_non_null(w);
    mx_gguf_writer_set_str(w, "general.architecture", "llama");
    mx_gguf_writer_set_u32(w, "llama.block_count", NL);
    mx_gguf_writer_set_u32(w, "llama.embedding_length", W);
    mx_gguf_writer_set_u32(w, "llama.attention.head_count", 4);
    mx_gguf_writer_set_u32(w, "llama.attention.head_count_kv", 4);
    uint64_t seed = 99;
    add_t(w, "token_embd.weight", 2, W, 4, 1, &seed);
    for (int il = 0; il < NL; il++) {
        char nm[64];
        static const char *const mats[] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                           "ffn_gate", "ffn_up", "ffn_down"};
        snprintf(nm, sizeof nm, "blk.%d.attn_norm.weight", il);
        add_t(w, nm, 1, W, 1, 1, &seed);
        for (size_t k = 0; k < MX_ARRAY_LEN(mats); k++) {
            snprintf(nm, sizeof nm, "blk.%d.%s.weight", il, mats[k]);
            add_t(w, nm, 2, W, 4, 1, &seed);
        }
    }
    add_t(w, "blk.1.ffn_up_exps.weight", 3, W, 2, 3, &seed);
    add_t(w, "output.weight", 2, W, 4, 1, &seed);
    struct mx_err err = {0};
    assert_int_equal(mx_gguf_writer_write(w, path, 3, &err), 0);
    mx_gguf_writer_free(w);
}

/* Importance values of one entry: expert e, column c. */
static float imp(int k, int64_t e, int64_t c) {
    return 0.1f + (float)((c * 13 + e * 5 + k) % 17);
}

/* A legacy imatrix for the model: every matrix but blk.2.attn_q (to be quantized unweighted);
 * ffn_up_exps with 3 experts; with bad_size, blk.3.ffn_down gets W + 1 values. */
static void write_imatrix(const char *path, bool bad_size) {
    static uint8_t buf[1 << 20];
    size_t n = 0;
    int32_t count = 0;
    n = 4;
    for (int il = -1; il < NL; il++) {
        static const char *const mats[] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                           "ffn_gate", "ffn_up", "ffn_down"};
        for (size_t k = 0; k < (il < 0 ? 2 : MX_ARRAY_LEN(mats)); k++) {
            char nm[64];
            int64_t n_exp = 1, nval;
            if (il < 0 && k == 0)
                snprintf(nm, sizeof nm, "output.weight");
            else if (il < 0) {
                snprintf(nm, sizeof nm, "blk.1.ffn_up_exps.weight");
                n_exp = 3;
            } else
                snprintf(nm, sizeof nm, "blk.%d.%s.weight", il, mats[k]);
            if (strcmp(nm, "blk.2.attn_q.weight") == 0)
                continue;
            nval = W * n_exp + (bad_size && strcmp(nm, "blk.3.ffn_down.weight") == 0);
            int32_t len = (int32_t)strlen(nm), ncall = 1, nv = (int32_t)nval;
            memcpy(buf + n, &len, 4);
            memcpy(buf + n + 4, nm, (size_t)len);
            n += 4 + (size_t)len;
            memcpy(buf + n, &ncall, 4);
            memcpy(buf + n + 4, &nv, 4);
            n += 8;
            for (int64_t i = 0; i < nval; i++) {
                float v = imp(len, i / W, i % W);
                memcpy(buf + n, &v, 4);
                n += 4;
            }
            count++;
        }
    }
    memcpy(buf, &count, 4);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, n, f), n);
    fclose(f);
}

static void test_quantize_with_imatrix(void **state) {
    (void)state;
    char dir[] = "/tmp/mx_imq_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char model[128], im[128], out[128], out2[128];
    snprintf(model, sizeof model, "%s/m.gguf", dir);
    snprintf(im, sizeof im, "%s/im.dat", dir);
    snprintf(out, sizeof out, "%s/q.gguf", dir);
    snprintf(out2, sizeof out2, "%s/q2.gguf", dir);
    write_model(model);
    write_imatrix(im, false);
    struct mx_imatrix *m = NULL;
    struct mx_err err = {0};
    assert_int_equal(mx_imatrix_load(im, &m, &err), 0);

    struct mx_quantize_params p = {.ftype = MX_FTYPE_MOSTLY_Q4_0, .n_threads = 2, .imatrix = m,
                                   .imatrix_file = "im.dat"};
    struct mx_quantize_stats st;
    assert_int_equal(mx_quantize_model(model, out, &p, &st, &err), 0);
    /* converted: NL * 7 + exps + output (token_embd too, without an entry) */
    assert_int_equal(st.n_weighted, NL * 7 + 2 - 1);
    assert_int_equal(st.n_unweighted, 2); /* token_embd, blk.2.attn_q */

    struct mx_gguf *src = NULL, *g = NULL;
    assert_int_equal(mx_gguf_open(model, &src, &err), 0);
    assert_int_equal(mx_gguf_open(out, &g, &err), 0);
    const char *s;
    assert_int_equal(mx_gguf_get_str(g, "quantize.imatrix.file", &s, NULL), 0);
    assert_string_equal(s, "im.dat");
    int64_t v;
    assert_int_equal(mx_gguf_get_int(g, "quantize.imatrix.entries_count", &v, NULL), 0);
    assert_int_equal(v, m->n_entries);
    /* every converted row equals the weighted quantizer with its expert's imatrix row */
    int64_t n_checked = 0;
    for (int64_t i = 0; i < mx_gguf_n_tensors(g); i++) {
        const struct mx_gguf_tensor *t = mx_gguf_tensor(g, i);
        const struct mx_gguf_tensor *ts = mx_gguf_find_tensor(src, t->name);
        assert_non_null(ts);
        if (t->n_dims == 1)
            continue;
        int want_type = strcmp(t->name, "output.weight") == 0 ? MX_TYPE_Q6_K
                      : strcmp(t->name, "blk.0.ffn_down.weight") == 0 ? MX_TYPE_Q4_1
                      : MX_TYPE_Q4_0; /* llama.cpp: Q4_1 on the first eighth of ffn_down */
        if (t->type != want_type)
            fail_msg("%s: type %s, want %s", t->name, mx_type_name(t->type),
                     mx_type_name(want_type));
        const struct mx_imatrix_entry *e = mx_imatrix_find(m, t->name);
        size_t row;
        assert_true(mx_row_size(t->type, W, &row));
        uint8_t q[256];
        int64_t rows = t->ne[1] * t->ne[2];
        for (int64_t r = 0; r < rows; r++) {
            const float *x = (const float *)ts->data + r * W;
            const float *qw = e ? e->values + (r / t->ne[1]) * W : NULL;
            assert_int_equal(mx_quantize_row_weighted(t->type, x, q, W, qw), 0);
            if (memcmp(q, (const uint8_t *)t->data + r * row, row) != 0) {
                uint8_t u[256];
                mx_quantize_row_weighted(t->type, x, u, W, NULL);
                fail_msg("%s row %lld differs (unweighted %s)", t->name, (long long)r,
                         memcmp(u, (const uint8_t *)t->data + r * row, row) ? "differs too"
                                                                             : "matches");
            }
            n_checked++;
        }
    }
    assert_int_equal(n_checked, 4 * (NL * 7 + 2) + 6);
    mx_gguf_close(g);

    /* the experts' rows really use their own weights: expert 1 with expert 0's row differs */
    const struct mx_gguf_tensor *ts = mx_gguf_find_tensor(src, "blk.1.ffn_up_exps.weight");
    const struct mx_imatrix_entry *e = mx_imatrix_find(m, "blk.1.ffn_up_exps.weight");
    uint8_t q0[256], q1[256];
    const float *x2 = (const float *)ts->data + 2 * W; /* expert 1, row 0 */
    mx_quantize_row_weighted(MX_TYPE_Q4_0, x2, q0, W, e->values);
    mx_quantize_row_weighted(MX_TYPE_Q4_0, x2, q1, W, e->values + W);
    assert_true(memcmp(q0, q1, 144) != 0);
    mx_gguf_close(src);

    /* without the imatrix, ffn_down of layer 0 stays Q4_0 */
    p.imatrix = NULL;
    assert_int_equal(mx_quantize_model(model, out2, &p, &st, &err), 0);
    assert_int_equal(mx_gguf_open(out2, &g, &err), 0);
    assert_int_equal(mx_gguf_find_tensor(g, "blk.0.ffn_down.weight")->type, MX_TYPE_Q4_0);
    assert_null(mx_gguf_get(g, "quantize.imatrix.file"));
    mx_gguf_close(g);
    mx_imatrix_free(m);

    /* IQ4_XS: the first eighth of ffn_down goes to Q5_K only without an imatrix */
    assert_int_equal(mx_gguf_open(model, &src, &err), 0);
    int64_t nt = mx_gguf_n_tensors(src);
    struct mx_quantize_tensor *plan = xmalloc((size_t)nt * sizeof *plan);
    for (int with = 0; with < 2; with++) {
        assert_int_equal(mx_quantize_plan_imatrix(src, MX_FTYPE_MOSTLY_IQ4_XS, with, plan, &err),
                         0);
        for (int64_t i = 0; i < nt; i++)
            if (strcmp(plan[i].name, "blk.0.ffn_down.weight") == 0)
                assert_int_equal(plan[i].dst_type, with ? MX_TYPE_IQ4_XS : MX_TYPE_Q5_K);
    }
    free(plan);
    mx_gguf_close(src);

    /* an entry of the wrong size (another model's imatrix) is refused before anything is
     * written */
    write_imatrix(im, true);
    assert_int_equal(mx_imatrix_load(im, &m, &err), 0);
    p.imatrix = m;
    unlink(out);
    struct mx_err e5 = {0};
    assert_int_equal(mx_quantize_model(model, out, &p, &st, &e5), MX_EFORMAT);
    assert_non_null(strstr(e5.msg, "tensor 'blk.3.ffn_down.weight': the importance matrix has "
                                   "257 values for it, the tensor needs 256"));
    struct stat sb;
    assert_int_equal(stat(out, &sb), -1);
    mx_imatrix_free(m);
    unlink(model);
    unlink(im);
    unlink(out2);
    assert_int_equal(rmdir(dir), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_weighted_golden),
        cmocka_unit_test(test_weighted_fallbacks),
        cmocka_unit_test(test_legacy),
        cmocka_unit_test(test_legacy_refusals),
        cmocka_unit_test(test_gguf),
        cmocka_unit_test(test_filter),
        cmocka_unit_test(test_quantize_with_imatrix),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
