/* test_quantize.c - `mixel quantize`'s library part (core/format/quantize_model.h).
 *
 * Random llama-architecture models are written with the project's GGUF writer: a dense one with
 * 12 layers (so blk.10/blk.11 exist) and an FFN of 288 (not a multiple of 256: ffn_down needs
 * the fallback types), and an 8-expert MoE with 4 layers. Checked:
 *   - the type of every tensor for Q4_K_M, Q4_K_S, Q5_K_M, Q4_0, Q8_0, Q6_K and F16 against tables
 *     written out by hand from llama.cpp's rules (use_more_bits layers of 12 are 0,3,6,9,10,11;
 *     of 4 they are 2,3), not recomputed with the code under test;
 *   - every converted tensor equals mx_quantize_row of the (dequantized) source values byte for
 *     byte, unchanged tensors equal the source bytes, from F32, F16 and Q8_0 sources;
 *   - metadata copied (every key, same value), general.file_type and quantization_version set,
 *     alignment kept, tensor order kept; the streamed file equals what the project's GGUF
 *     writer (core/format/gguf.h) makes of the same metadata and tensors, byte for byte;
 *   - the results load in the LLM engine and give finite logits;
 *   - errors: missing / foreign input, unsupported type, output = input (also through another
 *     path spelling), output folder missing, non-finite weights, cancel from the callback; the
 *     output path stays absent after each failure.
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
#include <unistd.h>

#include "core/format/gguf.h"
#include "core/llm/llama.h"
#include "core/base/quant.h"
#include "core/format/quantize_model.h"
#include "kernels/backend.h"
#include "tests/mx_test.h"

enum { D = 256, V = 300, KV = 128 };

static char g_dir[256];

static const char *path_in(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* ---- model writer ------------------------------------------------------------------------ */

struct spec {
    int n_layer, n_ff, n_expert; /* n_expert 0: dense */
    int type;                    /* type of the 2-D/3-D weights in the source file */
    bool nan;                    /* put a NaN into blk.0.attn_q */
    int n_head;                  /* query heads over 2 KV heads (0: 4, a GQA factor of 2) */
};

static void add(struct mx_gguf_writer *w, const char *name, int nd, int64_t a, int64_t b,
                int64_t c, int type, uint64_t *seed, bool nan) {
    int64_t ne[3] = {a, b, c};
    int64_t n = a * b * c;
    float *f = malloc((size_t)n * sizeof *f);
    assert_non_null(f);
    float scale = 1.0f / sqrtf((float)a);
    for (int64_t i = 0; i < n; i++)
        f[i] = mx_test_randf(seed) * scale;
    if (nd == 1)
        for (int64_t i = 0; i < n; i++)
            f[i] = 1.0f + 0.1f * f[i];
    if (nan)
        f[n / 2] = NAN;
    if (nd == 1 || strstr(name, "ffn_gate_inp") || type == MX_TYPE_F32) {
        assert_int_equal(mx_gguf_writer_add_tensor(w, name, MX_TYPE_F32, nd, ne, f), 0);
    } else {
        size_t bytes;
        assert_true(mx_row_size(type, n, &bytes));
        void *q = malloc(bytes);
        assert_non_null(q);
        assert_int_equal(mx_quantize_row(type, f, q, n), 0);
        assert_int_equal(mx_gguf_writer_add_tensor(w, name, type, nd, ne, q), 0);
        free(q);
    }
    free(f);
}

static void write_model(const char *path, const struct spec *s, uint64_t seed) {
    struct mx_gguf_writer *w = mx_gguf_writer_new();
    assert_non_null(w);
    mx_gguf_writer_set_str(w, "general.architecture", "llama");
    mx_gguf_writer_set_str(w, "general.name", "quantize test");
    mx_gguf_writer_set_u32(w, "general.alignment", 64);
    mx_gguf_writer_set_u32(w, "general.file_type", 0);
    mx_gguf_writer_set_u32(w, "llama.context_length", 128);
    mx_gguf_writer_set_u32(w, "llama.embedding_length", D);
    mx_gguf_writer_set_u32(w, "llama.block_count", (uint32_t)s->n_layer);
    mx_gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)s->n_ff);
    mx_gguf_writer_set_u32(w, "llama.attention.head_count", s->n_head ? (uint32_t)s->n_head : 4);
    mx_gguf_writer_set_u32(w, "llama.attention.head_count_kv", 2);
    mx_gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f);
    mx_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    if (s->n_expert) {
        mx_gguf_writer_set_u32(w, "llama.expert_count", (uint32_t)s->n_expert);
        mx_gguf_writer_set_u32(w, "llama.expert_used_count", 2);
    }
    const char *strs[3] = {"a", "b", "c"};
    mx_gguf_writer_set_arr_str(w, "test.strings", strs, 3);
    const int32_t nums[4] = {1, -2, 3, -4};
    mx_gguf_writer_set_arr(w, "test.ints", MX_GGUF_INT32, nums, 4);
    mx_gguf_writer_set_u64(w, "test.u64", 0x123456789abcull);
    mx_gguf_writer_set_bool(w, "test.flag", true);

    int t = s->type, F = s->n_ff, X = s->n_expert;
    add(w, "token_embd.weight", 2, D, V, 1, t, &seed, false);
    for (int il = 0; il < s->n_layer; il++) {
        char nm[64];
#define L(sfx) (snprintf(nm, sizeof nm, "blk.%d." sfx ".weight", il), nm)
        add(w, L("attn_norm"), 1, D, 1, 1, t, &seed, false);
        add(w, L("attn_q"), 2, D, D, 1, t, &seed, s->nan && il == 0);
        add(w, L("attn_k"), 2, D, KV, 1, t, &seed, false);
        add(w, L("attn_v"), 2, D, KV, 1, t, &seed, false);
        add(w, L("attn_output"), 2, D, D, 1, t, &seed, false);
        add(w, L("ffn_norm"), 1, D, 1, 1, t, &seed, false);
        if (X) {
            add(w, L("ffn_gate_inp"), 2, D, X, 1, t, &seed, false);
            add(w, L("ffn_gate_exps"), 3, D, F, X, t, &seed, false);
            add(w, L("ffn_up_exps"), 3, D, F, X, t, &seed, false);
            add(w, L("ffn_down_exps"), 3, F, D, X, t, &seed, false);
        } else {
            add(w, L("ffn_gate"), 2, D, F, 1, t, &seed, false);
            add(w, L("ffn_up"), 2, D, F, 1, t, &seed, false);
            add(w, L("ffn_down"), 2, F, D, 1, t, &seed, false);
        }
#undef L
    }
    add(w, "output_norm.weight", 1, D, 1, 1, t, &seed, false);
    add(w, "output.weight", 2, D, V, 1, t, &seed, false);
    struct mx_err err = {0};
    int rc = mx_gguf_writer_write(w, path, 3, &err);
    if (rc < 0)
        fail_msg("%s", err.msg);
    mx_gguf_writer_free(w);
}

static const struct spec dense = {12, 288, 0, MX_TYPE_F32, false, 0};
static const struct spec moe = {4, 256, 8, MX_TYPE_F32, false, 0};
static const struct spec gqa8 = {4, 256, 0, MX_TYPE_F32, false, 8}; /* GQA factor 4 */

static int setup(void **state) {
    (void)state;
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/mx_quantize.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir))
        return -1;
    write_model(path_in("dense.gguf"), &dense, 1);
    write_model(path_in("moe.gguf"), &moe, 2);
    write_model(path_in("gqa.gguf"), &gqa8, 3);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- expected types (by hand from llama.cpp's rules) --------------------------------------- */

/* Is il one of the listed layers (list ends with -1)? */
static bool in(int il, const int *list) {
    for (; *list >= 0; list++)
        if (*list == il)
            return true;
    return false;
}

/* use_more_bits layers: i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2, worked out by hand */
static const int more12[] = {0, 3, 6, 9, 10, 11, -1};
static const int more4[] = {2, 3, -1};

/* The expected type of `name` in the dense 12-layer model (ffn_down rows of 288) for ftype. */
static int expect_dense(const char *name, int ftype) {
    int il = -1;
    char kind[32] = "";
    if (strstr(name, "_norm."))
        return MX_TYPE_F32;
    sscanf(name, "blk.%d.%31[a-z_]", &il, kind);
    bool more = il >= 0 && in(il, more12);
    switch (ftype) {
    case MX_FTYPE_MOSTLY_Q4_K_M:
        if (strcmp(name, "output.weight") == 0)
            return MX_TYPE_Q6_K;
        if (strcmp(kind, "attn_v") == 0)
            return more ? MX_TYPE_Q6_K : MX_TYPE_Q4_K;
        if (strcmp(kind, "ffn_down") == 0) /* Q6_K -> Q8_0, Q4_K -> Q5_0 for rows of 288 */
            return more ? MX_TYPE_Q8_0 : MX_TYPE_Q5_0;
        return MX_TYPE_Q4_K;
    case MX_FTYPE_MOSTLY_Q5_K_M:
        if (strcmp(name, "output.weight") == 0)
            return MX_TYPE_Q6_K;
        if (strcmp(kind, "attn_v") == 0)
            return more ? MX_TYPE_Q6_K : MX_TYPE_Q5_K;
        if (strcmp(kind, "ffn_down") == 0) /* Q6_K -> Q8_0, Q5_K -> Q5_1 */
            return more ? MX_TYPE_Q8_0 : MX_TYPE_Q5_1;
        return MX_TYPE_Q5_K;
    case MX_FTYPE_MOSTLY_Q4_K_S:
        if (strcmp(name, "output.weight") == 0)
            return MX_TYPE_Q6_K;
        if (strcmp(kind, "attn_v") == 0)
            return il < 4 ? MX_TYPE_Q5_K : MX_TYPE_Q4_K;
        if (strcmp(kind, "ffn_down") == 0) /* layer 0 (< 12/8): Q5_K -> Q5_1 */
            return il < 1 ? MX_TYPE_Q5_1 : MX_TYPE_Q5_0;
        return MX_TYPE_Q4_K;
    case MX_FTYPE_MOSTLY_Q6_K:
        if (strcmp(kind, "ffn_down") == 0)
            return MX_TYPE_Q8_0;
        return MX_TYPE_Q6_K;
    case MX_FTYPE_MOSTLY_Q4_0:
        return strcmp(name, "output.weight") == 0 ? MX_TYPE_Q6_K : MX_TYPE_Q4_0;
    case MX_FTYPE_MOSTLY_Q8_0:
        return MX_TYPE_Q8_0;
    case MX_FTYPE_MOSTLY_F16:
        return MX_TYPE_F16;
    case MX_FTYPE_MOSTLY_IQ4_XS:
    case MX_FTYPE_MOSTLY_IQ4_NL:
        if (strcmp(name, "output.weight") == 0)
            return MX_TYPE_Q6_K;
        if (strcmp(kind, "ffn_down") == 0) /* layer 0: Q5_K -> Q5_1; IQ4_XS -> IQ4_NL (288) */
            return il < 1 ? MX_TYPE_Q5_1 : MX_TYPE_IQ4_NL;
        return ftype == MX_FTYPE_MOSTLY_IQ4_XS ? MX_TYPE_IQ4_XS : MX_TYPE_IQ4_NL;
    }
    fail_msg("no table for ftype %d", ftype);
    return -1;
}

/* The same for the 8-expert model (4 layers, expert FFN 256). */
static int expect_moe(const char *name, int ftype) {
    int il = -1;
    char kind[32] = "";
    if (strstr(name, "_norm.") || strstr(name, "ffn_gate_inp"))
        return MX_TYPE_F32;
    sscanf(name, "blk.%d.%31[a-z_]", &il, kind);
    bool more = il >= 0 && in(il, more4);
    bool k_mix = ftype == MX_FTYPE_MOSTLY_Q4_K_M || ftype == MX_FTYPE_MOSTLY_Q4_K_S ||
                 ftype == MX_FTYPE_MOSTLY_IQ4_XS || ftype == MX_FTYPE_MOSTLY_IQ4_NL;
    if (ftype == MX_FTYPE_MOSTLY_F16)
        return MX_TYPE_F16;
    if (strcmp(name, "output.weight") == 0)
        return ftype == MX_FTYPE_MOSTLY_Q8_0 ? MX_TYPE_Q8_0 : MX_TYPE_Q6_K;
    if (strcmp(kind, "attn_v") == 0 || strcmp(kind, "attn_k") == 0)
        return MX_TYPE_Q8_0;
    int base = ftype == MX_FTYPE_MOSTLY_Q4_0 ? MX_TYPE_Q4_0
             : ftype == MX_FTYPE_MOSTLY_Q8_0 ? MX_TYPE_Q8_0
             : ftype == MX_FTYPE_MOSTLY_IQ4_XS ? MX_TYPE_IQ4_XS
             : ftype == MX_FTYPE_MOSTLY_IQ4_NL ? MX_TYPE_IQ4_NL : MX_TYPE_Q4_K;
    if (strcmp(kind, "attn_output") == 0)
        return k_mix ? MX_TYPE_Q5_K : base;
    if (strcmp(kind, "ffn_down_exps") == 0 && ftype == MX_FTYPE_MOSTLY_Q4_K_M)
        return more ? MX_TYPE_Q6_K : MX_TYPE_Q4_K;
    if (strcmp(kind, "ffn_down_exps") == 0 && ftype == MX_FTYPE_MOSTLY_Q4_K_S)
        return il < 4 / 8 ? MX_TYPE_Q5_K : MX_TYPE_Q4_K;
    return base;
}

static void check_plan(const char *file, int ftype, int (*expect)(const char *, int)) {
    struct mx_gguf *g;
    struct mx_err err = {0};
    assert_int_equal(mx_gguf_open(path_in(file), &g, &err), 0);
    int64_t n = mx_gguf_n_tensors(g);
    struct mx_quantize_tensor *plan = calloc((size_t)n, sizeof *plan);
    assert_non_null(plan);
    int rc = mx_quantize_plan(g, ftype, plan, &err);
    if (rc < 0)
        fail_msg("%s", err.msg);
    for (int64_t i = 0; i < n; i++) {
        int want = expect(plan[i].name, ftype);
        if (plan[i].dst_type != want)
            fail_msg("%s as %s: %s is %s, expected %s", file, mx_ftype_name(ftype),
                     plan[i].name, mx_type_name(plan[i].dst_type), mx_type_name(want));
        assert_int_equal(plan[i].src_type, mx_gguf_tensor(g, i)->type);
        /* a fallback is only flagged where the mix's type did not tile the rows */
        if (plan[i].fallback)
            assert_int_not_equal(plan[i].ne[0] % 256, 0);
    }
    free(plan);
    mx_gguf_close(g);
}

static void test_plan_dense(void **state) {
    (void)state;
    const int fts[] = {MX_FTYPE_MOSTLY_Q4_K_M, MX_FTYPE_MOSTLY_Q4_K_S, MX_FTYPE_MOSTLY_Q5_K_M,
                       MX_FTYPE_MOSTLY_Q6_K, MX_FTYPE_MOSTLY_Q4_0, MX_FTYPE_MOSTLY_Q8_0,
                       MX_FTYPE_MOSTLY_F16, MX_FTYPE_MOSTLY_IQ4_XS, MX_FTYPE_MOSTLY_IQ4_NL};
    for (size_t i = 0; i < sizeof fts / sizeof fts[0]; i++)
        check_plan("dense.gguf", fts[i], expect_dense);
}

static void test_plan_moe(void **state) {
    (void)state;
    const int fts[] = {MX_FTYPE_MOSTLY_Q4_K_M, MX_FTYPE_MOSTLY_Q4_K_S, MX_FTYPE_MOSTLY_Q4_0,
                       MX_FTYPE_MOSTLY_Q8_0, MX_FTYPE_MOSTLY_F16, MX_FTYPE_MOSTLY_IQ4_XS,
                       MX_FTYPE_MOSTLY_IQ4_NL};
    for (size_t i = 0; i < sizeof fts / sizeof fts[0]; i++)
        check_plan("moe.gguf", fts[i], expect_moe);
}

/* IQ4 mixes on a dense model whose attn_v serves 4 query heads each: llama.cpp gives attn_v
 * Q5_K there (no ffn_down bump: 4 layers / 8 = 0). */
static int expect_gqa(const char *name, int ftype) {
    if (strstr(name, "_norm."))
        return MX_TYPE_F32;
    if (strcmp(name, "output.weight") == 0)
        return MX_TYPE_Q6_K;
    if (strstr(name, "attn_v."))
        return MX_TYPE_Q5_K;
    return ftype == MX_FTYPE_MOSTLY_IQ4_XS ? MX_TYPE_IQ4_XS : MX_TYPE_IQ4_NL;
}

static void test_plan_gqa_iq4(void **state) {
    (void)state;
    check_plan("gqa.gguf", MX_FTYPE_MOSTLY_IQ4_XS, expect_gqa);
    check_plan("gqa.gguf", MX_FTYPE_MOSTLY_IQ4_NL, expect_gqa);
}

static void test_ftype_names(void **state) {
    (void)state;
    assert_int_equal(mx_ftype_from_name("Q4_K_M"), 15);
    assert_int_equal(mx_ftype_from_name("q4_k_m"), 15);
    assert_int_equal(mx_ftype_from_name("Q4_K"), 15);
    assert_int_equal(mx_ftype_from_name("q5_k"), 17);
    assert_int_equal(mx_ftype_from_name("Q4_K_S"), 14);
    assert_int_equal(mx_ftype_from_name("q4_0"), 2);
    assert_int_equal(mx_ftype_from_name("Q8_0"), 7);
    assert_int_equal(mx_ftype_from_name("q6_k"), 18);
    assert_int_equal(mx_ftype_from_name("f16"), 1);
    assert_int_equal(mx_ftype_from_name("15"), 15);
    assert_int_equal(mx_ftype_from_name("Q2_K"), 10);
    assert_int_equal(mx_ftype_from_name("10"), 10);
    assert_int_equal(mx_ftype_from_name("IQ2_XXS"), 19); /* with --imatrix (test_imatrix) */
    assert_int_equal(mx_ftype_from_name("IQ2_S"), 28);   /* with --imatrix too */
    assert_int_equal(mx_ftype_from_name("iq1_m"), 31);
    assert_int_equal(mx_ftype_from_name("24"), 24);      /* IQ1_S */
    assert_int_equal(mx_ftype_from_name("IQ3_XXS"), 23);
    assert_int_equal(mx_ftype_from_name("q2_k_s"), 21);
    assert_int_equal(mx_ftype_from_name("iq3_xs"), 22);
    assert_int_equal(mx_ftype_from_name("q3_k"), 12); /* llama-quantize's alias of Q3_K_M */
    assert_int_equal(mx_ftype_from_name("22"), 22);
    assert_true(mx_ftype_needs_imatrix(22)); /* its IQ3_XXS tensors need one */
    assert_int_equal(mx_ftype_from_name("TQ1_0"), -1);
    assert_int_equal(mx_ftype_from_name("36"), -1);  /* llama.cpp's TQ1_0: not made */
    assert_true(mx_ftype_needs_imatrix(29));
    assert_false(mx_ftype_needs_imatrix(27));              /* IQ3_M */
    assert_int_equal(mx_ftype_from_name("q4_k_mm"), -1);
    assert_int_equal(mx_ftype_from_name(""), -1);
    assert_string_equal(mx_ftype_name(15), "Q4_K_M");
    assert_string_equal(mx_ftype_name(10), "Q2_K");
    assert_string_equal(mx_ftype_name(28), "IQ2_S");
    assert_string_equal(mx_ftype_name(29), "IQ2_M");
    assert_string_equal(mx_ftype_name(23), "IQ3_XXS");
    assert_string_equal(mx_ftype_name(22), "IQ3_XS");
    assert_null(mx_ftype_name(36));
}

/* ---- conversion ---------------------------------------------------------------------------- */

static int count_progress(void *ud, int64_t i, int64_t n, const struct mx_quantize_tensor *t,
                          double seconds) {
    int64_t *count = ud;
    assert_int_equal(i, *count);
    assert_true(i < n);
    assert_non_null(t->name);
    assert_true(seconds >= 0);
    (*count)++;
    return 0;
}

/* Two metadata values are equal (recursively for arrays). */
static bool value_equal(const struct mx_gguf_value *a, const struct mx_gguf_value *b) {
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case MX_GGUF_STRING:
        return a->v.str.len == b->v.str.len && memcmp(a->v.str.data, b->v.str.data,
                                                      a->v.str.len) == 0;
    case MX_GGUF_ARRAY:
        if (a->v.arr.elem_type != b->v.arr.elem_type || a->v.arr.n != b->v.arr.n)
            return false;
        if (a->v.arr.elem_type == MX_GGUF_STRING || a->v.arr.elem_type == MX_GGUF_ARRAY) {
            for (uint64_t i = 0; i < a->v.arr.n; i++)
                if (!value_equal(&a->v.arr.items[i], &b->v.arr.items[i]))
                    return false;
            return true;
        }
        for (uint64_t i = 0; i < a->v.arr.n; i++)
            if (mx_gguf_arr_float(a, i) != mx_gguf_arr_float(b, i))
                return false;
        return true;
    case MX_GGUF_FLOAT32:
    case MX_GGUF_FLOAT64:
        return a->v.f64 == b->v.f64;
    case MX_GGUF_BOOL:
        return a->v.b == b->v.b;
    case MX_GGUF_INT8:
    case MX_GGUF_INT16:
    case MX_GGUF_INT32:
    case MX_GGUF_INT64:
        return a->v.i64 == b->v.i64;
    default:
        return a->v.u64 == b->v.u64;
    }
}

/* Converts src to ftype and checks the output against the source and the plan, byte for byte. */
static void convert_and_check(const char *src, const char *dst, int ftype, int n_threads,
                              int (*expect)(const char *, int)) {
    struct mx_err err = {0};
    int64_t count = 0;
    struct mx_quantize_params p = {.ftype = ftype, .n_threads = n_threads,
                                   .progress = count_progress, .progress_ud = &count};
    struct mx_quantize_stats st;
    int rc = mx_quantize_model(path_in(src), path_in(dst), &p, &st, &err);
    if (rc < 0)
        fail_msg("%s -> %s: %s", src, dst, err.msg);

    struct mx_gguf *gi, *go;
    assert_int_equal(mx_gguf_open(path_in(src), &gi, &err), 0);
    assert_int_equal(mx_gguf_open(path_in(dst), &go, &err), 0);
    int64_t n = mx_gguf_n_tensors(gi);
    assert_int_equal(mx_gguf_n_tensors(go), n);
    assert_int_equal(count, n);
    assert_int_equal(st.n_tensors, n);
    assert_int_equal(st.file_bytes, mx_gguf_file_size(go));
    assert_int_equal(mx_gguf_alignment(go), mx_gguf_alignment(gi));
    assert_int_equal(mx_gguf_alignment(go), 64);

    /* metadata: every source key with the same value, except the two set on purpose */
    for (int64_t i = 0; i < mx_gguf_n_kv(gi); i++) {
        const char *key = mx_gguf_kv_key(gi, i);
        const struct mx_gguf_value *vo = mx_gguf_get(go, key);
        if (!vo)
            fail_msg("key %s lost", key);
        if (strcmp(key, "general.file_type") != 0 && !value_equal(mx_gguf_kv_value(gi, i), vo))
            fail_msg("key %s changed", key);
    }
    int64_t v;
    assert_int_equal(mx_gguf_get_int(go, "general.file_type", &v, &err), 0);
    assert_int_equal(v, ftype);
    assert_int_equal(mx_gguf_get_int(go, "general.quantization_version", &v, &err), 0);
    assert_int_equal(v, 2);

    int64_t converted = 0;
    for (int64_t i = 0; i < n; i++) {
        const struct mx_gguf_tensor *ti = mx_gguf_tensor(gi, i), *to = mx_gguf_tensor(go, i);
        assert_string_equal(ti->name, to->name); /* order kept */
        assert_int_equal(ti->n_dims, to->n_dims);
        for (int d = 0; d < 4; d++)
            assert_int_equal(ti->ne[d], to->ne[d]);
        int want = expect ? expect(ti->name, ftype) : to->type;
        if (to->type != want)
            fail_msg("%s: %s, expected %s", to->name, mx_type_name(to->type), mx_type_name(want));
        if (to->type == ti->type) {
            assert_int_equal(to->nbytes, ti->nbytes);
            assert_memory_equal(to->data, ti->data, ti->nbytes);
            continue;
        }
        converted++;
        /* oracle: the whole tensor through the scalar reference, in one call */
        int64_t ne = ti->ne[0] * ti->ne[1] * ti->ne[2] * ti->ne[3];
        float *f = malloc((size_t)ne * sizeof *f);
        size_t bytes;
        assert_true(mx_row_size(to->type, ne, &bytes));
        void *q = malloc(bytes);
        assert_non_null(f);
        assert_non_null(q);
        assert_int_equal(mx_dequantize_row(ti->type, ti->data, f, ne), 0);
        assert_int_equal(mx_quantize_row(to->type, f, q, ne), 0);
        assert_int_equal(to->nbytes, bytes);
        if (memcmp(to->data, q, bytes) != 0)
            fail_msg("%s: %s bytes differ from mx_quantize_row", to->name,
                     mx_type_name(to->type));
        free(f);
        free(q);
    }
    assert_int_equal(st.n_converted, converted);

    /* the streamed file is byte for byte what the project's GGUF writer makes of its content */
    struct mx_gguf_writer *w = mx_gguf_writer_new();
    assert_non_null(w);
    for (int64_t i = 0; i < mx_gguf_n_kv(go); i++)
        assert_int_equal(mx_gguf_writer_set_value(w, mx_gguf_kv_key(go, i),
                                                  mx_gguf_kv_value(go, i)), 0);
    for (int64_t i = 0; i < n; i++) {
        const struct mx_gguf_tensor *to = mx_gguf_tensor(go, i);
        assert_int_equal(mx_gguf_writer_add_tensor(w, to->name, to->type, to->n_dims, to->ne,
                                                   to->data), 0);
    }
    void *mem;
    size_t size;
    assert_int_equal(mx_gguf_writer_write_mem(w, 3, &mem, &size, &err), 0);
    FILE *f = fopen(path_in(dst), "rb");
    assert_non_null(f);
    uint8_t *file = malloc(size + 1);
    assert_non_null(file);
    assert_int_equal(fread(file, 1, size + 1, f), size);
    fclose(f);
    assert_memory_equal(file, mem, size);
    free(file);
    free(mem);
    mx_gguf_writer_free(w);
    mx_gguf_close(gi);
    mx_gguf_close(go);
}

/* Loads a model into the CPU engine and checks that 6 tokens give finite logits. */
static void check_loads(const char *file) {
    struct mx_err err = {0};
    struct mx_backend *be = mx_backend_cpu_new(2, &err);
    assert_non_null(be);
    struct mx_llama_model *m;
    int rc = mx_llama_model_load(path_in(file), be, &m, &err);
    if (rc < 0)
        fail_msg("%s: %s", file, err.msg);
    struct mx_llama_ctx_params cp;
    mx_llama_ctx_params_default(&cp);
    cp.n_ctx = 32;
    struct mx_llama_ctx *c;
    assert_int_equal(mx_llama_ctx_new(m, &cp, &c, &err), 0);
    const int32_t ids[6] = {1, 17, 42, 299, 5, 100};
    rc = mx_llama_decode(c, ids, 6, false, NULL, NULL, &err);
    if (rc < 0)
        fail_msg("%s: decode: %s", file, err.msg);
    const float *lg = mx_llama_logits(c);
    float amax = 0;
    for (int i = 0; i < V; i++) {
        assert_true(isfinite(lg[i]));
        amax = fmaxf(amax, fabsf(lg[i]));
    }
    assert_true(amax > 0);
    mx_llama_ctx_free(c);
    mx_llama_model_free(m);
    mx_backend_free(be);
}

static void test_dense_q4_k_m(void **state) {
    (void)state;
    convert_and_check("dense.gguf", "dense-q4_k_m.gguf", MX_FTYPE_MOSTLY_Q4_K_M, 3,
                      expect_dense);
    check_loads("dense-q4_k_m.gguf");
}

static void test_moe_q4_k_m_and_q4_0(void **state) {
    (void)state;
    convert_and_check("moe.gguf", "moe-q4_k_m.gguf", MX_FTYPE_MOSTLY_Q4_K_M, 2, expect_moe);
    check_loads("moe-q4_k_m.gguf");
    convert_and_check("moe.gguf", "moe-q4_0.gguf", MX_FTYPE_MOSTLY_Q4_0, 1, expect_moe);
    check_loads("moe-q4_0.gguf");
}

/* Sources of other types: F16 and Q8_0 rows are dequantized first; Q8_0 tensors that stay Q8_0
 * are copied, not requantized. The 2-layer models keep this quick. */
static void test_other_sources(void **state) {
    (void)state;
    struct spec s16 = {2, 256, 8, MX_TYPE_F16, false, 0};
    struct spec s8 = {2, 256, 0, MX_TYPE_Q8_0, false, 0};
    write_model(path_in("moe-f16.gguf"), &s16, 3);
    write_model(path_in("dense-q8_0.gguf"), &s8, 4);
    convert_and_check("moe-f16.gguf", "moe-f16-q4_k_m.gguf", MX_FTYPE_MOSTLY_Q4_K_M, 2, NULL);
    convert_and_check("moe-f16.gguf", "moe-f16-q8_0.gguf", MX_FTYPE_MOSTLY_Q8_0, 2, NULL);
    convert_and_check("dense-q8_0.gguf", "dense-q8_0-q4_k_m.gguf", MX_FTYPE_MOSTLY_Q4_K_M, 2,
                      NULL);
    convert_and_check("dense-q8_0.gguf", "dense-q8_0-f16.gguf", MX_FTYPE_MOSTLY_F16, 2, NULL);
    check_loads("moe-f16-q4_k_m.gguf");
    check_loads("dense-q8_0-q4_k_m.gguf");
    /* Q8_0 -> Q8_0: nothing converted, every tensor byte-identical (checked above) */
    struct mx_err err = {0};
    struct mx_quantize_params p = {.ftype = MX_FTYPE_MOSTLY_Q8_0, .n_threads = 2};
    struct mx_quantize_stats st;
    assert_int_equal(mx_quantize_model(path_in("dense-q8_0.gguf"), path_in("same.gguf"), &p,
                                       &st, &err), 0);
    assert_int_equal(st.n_converted, 0);
}

static int cancel_at_3(void *ud, int64_t i, int64_t n, const struct mx_quantize_tensor *t,
                       double seconds) {
    (void)ud;
    (void)n;
    (void)t;
    (void)seconds;
    return i == 3;
}

/* A failing call returns the code, says why, and leaves no output file behind. */
static void expect_fail(const char *in_path, const char *out_path, int ftype, int code,
                        const char *msg, mx_quantize_progress_fn fn) {
    struct mx_err err = {0};
    struct mx_quantize_params p = {.ftype = ftype, .n_threads = 2, .progress = fn};
    int rc = mx_quantize_model(in_path, out_path, &p, NULL, &err);
    if (rc != code)
        fail_msg("%s -> %s: rc %d (%s), expected %d", in_path, out_path, rc, err.msg, code);
    if (!strstr(err.msg, msg))
        fail_msg("message '%s' lacks '%s'", err.msg, msg);
}

static void test_errors(void **state) {
    (void)state;
    char out[600]; /* path_in's buffers rotate: keep a copy */
    snprintf(out, sizeof out, "%s", path_in("err-out.gguf"));
    expect_fail(path_in("absent.gguf"), out, 15, MX_ENOENT, "absent.gguf", NULL);
    FILE *f = fopen(path_in("text.gguf"), "w");
    assert_non_null(f);
    fputs("hello, not a model\n", f);
    fclose(f);
    expect_fail(path_in("text.gguf"), out, 15, MX_EFORMAT, "text.gguf", NULL);
    expect_fail(path_in("moe.gguf"), out, 22 /* IQ3_XS, no imatrix */, MX_EINVAL,
                "IQ3_XS needs an importance matrix", NULL);
    expect_fail(path_in("moe.gguf"), out, 28 /* IQ2_S, no imatrix */, MX_EINVAL,
                "IQ2_S needs an importance matrix", NULL);
    expect_fail(path_in("moe.gguf"), out, 24 /* IQ1_S, no imatrix */, MX_EINVAL,
                "IQ1_S needs an importance matrix", NULL);
    expect_fail(path_in("moe.gguf"), out, 19 /* IQ2_XXS, no imatrix */, MX_EINVAL,
                "IQ2_XXS needs an importance matrix", NULL);
    assert_false(file_exists(out));

    /* output = input, by the same name and by another spelling; the input is untouched */
    struct stat before, after;
    assert_int_equal(stat(path_in("moe.gguf"), &before), 0);
    expect_fail(path_in("moe.gguf"), path_in("moe.gguf"), 15, MX_EINVAL, "input", NULL);
    char other[600];
    snprintf(other, sizeof other, "%s/./moe.gguf", g_dir);
    expect_fail(path_in("moe.gguf"), other, 15, MX_EINVAL, "input", NULL);
    assert_int_equal(stat(path_in("moe.gguf"), &after), 0);
    assert_int_equal(before.st_size, after.st_size);
    assert_int_equal(before.st_mtime, after.st_mtime);

    expect_fail(path_in("moe.gguf"), path_in("no/such/dir/x.gguf"), 15, MX_EIO, "no/such/dir",
                NULL);
    expect_fail(path_in("moe.gguf"), g_dir, 15, MX_EINVAL, "folder", NULL);
    expect_fail(path_in("moe.gguf"), out, 15, MX_ECANCELED, "canceled", cancel_at_3);
    assert_false(file_exists(out));

    struct spec sn = moe;
    sn.n_layer = 1;
    sn.nan = true;
    write_model(path_in("nan.gguf"), &sn, 5);
    expect_fail(path_in("nan.gguf"), out, 15, MX_EFORMAT, "blk.0.attn_q.weight", NULL);
    assert_false(file_exists(out));
    /* nothing else (temp files) was left in the folder by the failures */
    char cmd[700];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q tmp", g_dir);
    assert_int_not_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ftype_names),
        cmocka_unit_test(test_plan_dense),
        cmocka_unit_test(test_plan_moe),
        cmocka_unit_test(test_plan_gqa_iq4),
        cmocka_unit_test(test_dense_q4_k_m),
        cmocka_unit_test(test_moe_q4_k_m_and_q4_0),
        cmocka_unit_test(test_other_sources),
        cmocka_unit_test(test_errors),
    };
    return mx_test_status(cmocka_run_group_tests(tests, setup, teardown));
}
