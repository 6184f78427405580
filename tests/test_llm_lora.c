/* test_llm_lora.c - LoRA adapters on the LLM engine (core/llm/lora.h), on
 * ../shared/models/tiny-mixtral-f32.gguf with adapters this test writes (the project's GGUF
 * writer, llama.cpp's adapter layout).
 *
 * Oracles:
 *   - applied on the fly == merged offline: a model file where every adapted W became
 *     W + s * (alpha / rank) * B A (computed here in double, written as F32) gives the same
 *     logits at every prompt row as the base model with the adapter(s) at scale s, within 1e-4
 *     relative to the largest logit. The only difference is float summation order (W x + (s B A)
 *     x against (W + s B A) x, ~1e-6 here); a wrong scale, a transposed A or B, a missed weight
 *     or a wrong expert moves logits by far more than 1e-3. Covered: attention q/k/v/output of
 *     every layer, the router, 3-D expert adapters (gate, up, down), the output matrix, two
 *     adapters at once (one without alpha: the scale alone), and small ubatches (scratch reuse);
 *   - llama.cpp with the same adapter (tests/golden/llm_lora/logits-lora.json, made by
 *     make_goldens.sh there): every row within 1e-4, the F32 bound of ../shared/refs/llm
 *     (measured 8.4e-6; the adapter itself moves the logits by 3);
 *   - scale 0 == no adapter, bit for bit;
 *   - refusals name the problem and leave the model without adapters: another architecture, a
 *     file that is not an adapter, a shape that does not fit (naming the tensor), a base tensor
 *     the model lacks, a lora_a without its lora_b, the token embedding.
 * `test_llm_lora write-adapter OUT.gguf` writes the first adapter only (for make_goldens.sh).
 * Skips (77) when ../shared is absent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/base/quant.h"
#include "core/base/util.h"
#include "core/format/gguf.h"
#include "core/llm/llama.h"
#include "core/llm/lora.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"
#include "tests/mx_test.h"

static const char *g_shared;
static char g_base[1024];

/* One adapted weight in an adapter this test writes. */
struct pair_spec {
    const char *base;   /* the model's tensor name */
    int rank;
};

struct adapter_spec {
    const char *arch;             /* general.architecture */
    const char *type;             /* general.type */
    float alpha;                  /* < 0: no adapter.lora.alpha key */
    uint64_t seed;
    const struct pair_spec *pairs;
    int n_pairs;
};

/* Every attention matrix of every layer, the router and the experts of layer 0, the output. */
static const struct pair_spec k_pairs1[] = {
    {"blk.0.attn_q.weight", 4},     {"blk.0.attn_k.weight", 4},
    {"blk.0.attn_v.weight", 4},     {"blk.0.attn_output.weight", 4},
    {"blk.1.attn_q.weight", 4},     {"blk.1.attn_k.weight", 4},
    {"blk.1.attn_v.weight", 4},     {"blk.1.attn_output.weight", 4},
    {"blk.0.ffn_gate_inp.weight", 3}, {"blk.0.ffn_gate_exps.weight", 2},
    {"blk.0.ffn_up_exps.weight", 2},  {"blk.0.ffn_down_exps.weight", 2},
    {"output.weight", 4},
};
/* A second adapter over some of the same weights and others (rank 2, no alpha). */
static const struct pair_spec k_pairs2[] = {
    {"blk.0.attn_q.weight", 2}, {"blk.1.ffn_up_exps.weight", 2}, {"blk.1.attn_v.weight", 2},
};

static const struct adapter_spec k_ad1 = {"llama", "adapter", 8.0f, 11, k_pairs1,
                                           (int)MX_ARRAY_LEN(k_pairs1)};
static const struct adapter_spec k_ad2 = {"llama", "adapter", -1.0f, 12, k_pairs2,
                                           (int)MX_ARRAY_LEN(k_pairs2)};

/* The random A and B of pair i of spec, as written: a [n_in, r, X], b [r, n_out, X]. */
static void pair_values(const struct adapter_spec *sp, int i, const struct mx_gguf_tensor *w,
                        float **a, float **b, int64_t *n_in, int64_t *n_out, int64_t *X) {
    int64_t r = sp->pairs[i].rank;
    *n_in = w->ne[0];
    *n_out = w->ne[1];
    *X = w->n_dims == 3 ? w->ne[2] : 1;
    *a = malloc((size_t)(*n_in * r * *X) * sizeof **a);
    *b = malloc((size_t)(r * *n_out * *X) * sizeof **b);
    uint64_t seed = sp->seed * 1000 + (uint64_t)i;
    /* B A x of the size of W x: A ~ 1/sqrt(n_in), B ~ 1/sqrt(r), times 0.3 */
    for (int64_t j = 0; j < *n_in * r * *X; j++)
        (*a)[j] = 0.3f * mx_test_randf(&seed) / sqrtf((float)*n_in);
    for (int64_t j = 0; j < r * *n_out * *X; j++)
        (*b)[j] = 0.3f * mx_test_randf(&seed) / sqrtf((float)r);
}

/* Writes adapter sp for the base model g to path; extra_a/extra_ne: an extra lora_a tensor
 * without its b (NULL: none); bad_pair >= 0: that pair's lora_a gets one column too many. */
static void write_adapter(const struct mx_gguf *g, const struct adapter_spec *sp,
                          const char *path, const char *odd_base, int bad_pair) {
    struct mx_gguf_writer *w = mx_gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(mx_gguf_writer_set_str(w, "general.architecture", sp->arch), 0);
    assert_int_equal(mx_gguf_writer_set_str(w, "general.type", sp->type), 0);
    assert_int_equal(mx_gguf_writer_set_str(w, "adapter.type", "lora"), 0);
    if (sp->alpha >= 0)
        assert_int_equal(mx_gguf_writer_set_f32(w, "adapter.lora.alpha", sp->alpha), 0);
    for (int i = 0; i < sp->n_pairs; i++) {
        const struct mx_gguf_tensor *t = mx_gguf_find_tensor(g, sp->pairs[i].base);
        assert_non_null(t);
        float *a, *b;
        int64_t n_in, n_out, X, r = sp->pairs[i].rank;
        pair_values(sp, i, t, &a, &b, &n_in, &n_out, &X);
        int nd = X > 1 ? 3 : 2;
        int64_t ne_a[3] = {n_in + (i == bad_pair), r, X}, ne_b[3] = {r, n_out, X};
        if (i == bad_pair) {
            float *a2 = calloc((size_t)((n_in + 1) * r * X), sizeof *a2);
            free(a);
            a = a2;
        }
        char na[300], nb[300];
        snprintf(na, sizeof na, "%s.lora_a", sp->pairs[i].base);
        snprintf(nb, sizeof nb, "%s.lora_b", sp->pairs[i].base);
        assert_int_equal(mx_gguf_writer_add_tensor(w, na, MX_TYPE_F32, nd, ne_a, a), 0);
        assert_int_equal(mx_gguf_writer_add_tensor(w, nb, MX_TYPE_F32, nd, ne_b, b), 0);
        free(a);
        free(b);
    }
    if (odd_base) { /* a pair for a weight given by name (of any shape [8, 2] / [2, 8]) */
        static float z[16];
        int64_t ne_a[2] = {8, 2}, ne_b[2] = {2, 8};
        char na[300], nb[300];
        snprintf(na, sizeof na, "%s.lora_a", odd_base);
        snprintf(nb, sizeof nb, "%s.lora_b", odd_base);
        assert_int_equal(mx_gguf_writer_add_tensor(w, na, MX_TYPE_F32, 2, ne_a, z), 0);
        if (strcmp(odd_base, "blk.0.attn_k.weight")) /* that one: lora_a alone */
            assert_int_equal(mx_gguf_writer_add_tensor(w, nb, MX_TYPE_F32, 2, ne_b, z), 0);
    }
    struct mx_err err = {0};
    int rc = mx_gguf_writer_write(w, path, 3, &err);
    if (rc < 0)
        fail_msg("write %s: %s", path, err.msg);
    mx_gguf_writer_free(w);
}

/* Writes the base model with adapters ads[0..n) at scales s merged into its weights. */
static void write_merged(const struct mx_gguf *g, const struct adapter_spec *const *ads,
                         const float *s, int n, const char *path) {
    struct mx_gguf_writer *w = mx_gguf_writer_new();
    assert_non_null(w);
    for (int64_t i = 0; i < mx_gguf_n_kv(g); i++)
        assert_int_equal(mx_gguf_writer_set_value(w, mx_gguf_kv_key(g, i), mx_gguf_kv_value(g, i)),
                         0);
    for (int64_t ti = 0; ti < mx_gguf_n_tensors(g); ti++) {
        const struct mx_gguf_tensor *t = mx_gguf_tensor(g, ti);
        assert_int_equal(t->type, MX_TYPE_F32);
        size_t n_el = t->nbytes / 4;
        float *v = malloc(t->nbytes);
        memcpy(v, t->data, t->nbytes);
        for (int k = 0; k < n; k++)
            for (int i = 0; i < ads[k]->n_pairs; i++) {
                if (strcmp(ads[k]->pairs[i].base, t->name))
                    continue;
                float *a, *b;
                int64_t n_in, n_out, X, r = ads[k]->pairs[i].rank;
                pair_values(ads[k], i, t, &a, &b, &n_in, &n_out, &X);
                double mul = s[k] * (ads[k]->alpha > 0 ? ads[k]->alpha / (double)r : 1.0);
                /* W[i, o, e] += mul * sum_r B[r, o, e] A[i, r, e] */
                for (int64_t e = 0; e < X; e++)
                    for (int64_t o = 0; o < n_out; o++)
                        for (int64_t ii = 0; ii < n_in; ii++) {
                            double acc = 0;
                            for (int64_t q = 0; q < r; q++)
                                acc += (double)b[(e * n_out + o) * r + q] *
                                       a[(e * r + q) * n_in + ii];
                            v[(e * n_out + o) * n_in + ii] += (float)(mul * acc);
                        }
                free(a);
                free(b);
            }
        assert_int_equal(mx_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, v), 0);
        (void)n_el;
        free(v);
    }
    struct mx_err err = {0};
    if (mx_gguf_writer_write(w, path, 3, &err) < 0)
        fail_msg("write %s: %s", path, err.msg);
    mx_gguf_writer_free(w);
}

/* Loads model (with adapters paths[0..n) at scales s), decodes ids one token per call (the
 * generate path) and returns every step's logits (caller frees; *nv the vocabulary). */
static float *run(const char *model, const char *const *paths, const float *s, int n,
                  const int32_t *ids, int64_t nt, int ub, int32_t *nv) {
    struct mx_err err = {0};
    struct mx_backend *be = mx_backend_cpu_new(2, &err);
    assert_non_null(be);
    struct mx_llama_model *m;
    int rc = mx_llama_model_load(model, be, &m, &err);
    if (rc < 0)
        fail_msg("load %s: %s", model, err.msg);
    for (int k = 0; k < n; k++)
        if ((rc = mx_llama_lora_add(m, paths[k], s[k], &err)) < 0)
            fail_msg("lora %s: %s", paths[k], err.msg);
    assert_int_equal(mx_llama_lora_count(m), n);
    struct mx_llama_ctx_params p;
    mx_llama_ctx_params_default(&p);
    p.n_ctx = 128;
    p.kv_type = MX_TYPE_F32;
    p.n_ubatch = ub;
    struct mx_llama_ctx *c;
    if ((rc = mx_llama_ctx_new(m, &p, &c, &err)) < 0)
        fail_msg("context: %s", err.msg);
    *nv = mx_llama_model_hparams(m)->n_vocab;
    float *out = malloc((size_t)(nt * *nv) * sizeof *out);
    for (int64_t i = 0; i < nt; i++) { /* one token per call: the last row each time */
        if ((rc = mx_llama_decode(c, &ids[i], 1, false, NULL, NULL, &err)) < 0)
            fail_msg("decode: %s", err.msg);
        memcpy(out + i * *nv, mx_llama_logits(c), (size_t)*nv * sizeof *out);
    }
    mx_llama_ctx_free(c);
    mx_llama_model_free(m);
    mx_backend_free(be);
    return out;
}

/* Collects rows in decode(all = true). */
struct rows_cb {
    float *out;
    int32_t nv;
};
static int keep_row(void *ud, int64_t i, const float *logits) {
    struct rows_cb *r = ud;
    memcpy(r->out + i * r->nv, logits, (size_t)r->nv * sizeof *logits);
    return 0;
}

/* Every row's logits of ids, fed in one decode with ubatch ub (caller frees). */
static float *run_rows(const char *model, const char *const *paths, const float *s, int n,
                       const int32_t *ids, int64_t nt, int ub, int32_t *nv) {
    struct mx_err err = {0};
    struct mx_backend *be = mx_backend_cpu_new(2, &err);
    assert_non_null(be);
    struct mx_llama_model *m;
    int rc = mx_llama_model_load(model, be, &m, &err);
    if (rc < 0)
        fail_msg("load %s: %s", model, err.msg);
    for (int k = 0; k < n; k++)
        if ((rc = mx_llama_lora_add(m, paths[k], s[k], &err)) < 0)
            fail_msg("lora %s: %s", paths[k], err.msg);
    assert_int_equal(mx_llama_lora_count(m), n);
    struct mx_llama_ctx_params p;
    mx_llama_ctx_params_default(&p);
    p.n_ctx = 128;
    p.kv_type = MX_TYPE_F32;
    p.n_ubatch = ub;
    struct mx_llama_ctx *c;
    if ((rc = mx_llama_ctx_new(m, &p, &c, &err)) < 0)
        fail_msg("context: %s", err.msg);
    *nv = mx_llama_model_hparams(m)->n_vocab;
    struct rows_cb r = {malloc((size_t)(nt * *nv) * sizeof(float)), *nv};
    if ((rc = mx_llama_decode(c, ids, nt, true, keep_row, &r, &err)) < 0)
        fail_msg("decode: %s", err.msg);
    mx_llama_ctx_free(c);
    mx_llama_model_free(m);
    mx_backend_free(be);
    return r.out;
}

/* max |a - b| over n values, and max |a| into *amax. */
static double max_diff(const float *a, const float *b, size_t n, double *amax) {
    double d = 0;
    *amax = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        *amax = fmax(*amax, fabs((double)a[i]));
    }
    return d;
}

#define NT 24

static void some_ids(int32_t *ids, int n, int32_t nv) {
    uint64_t seed = 5;
    ids[0] = 1;
    for (int i = 1; i < n; i++)
        ids[i] = 3 + (int32_t)(mx_test_rand(&seed) % (uint64_t)(nv - 3));
}

static void tmp_path(char *buf, size_t n, const char *what) {
    snprintf(buf, n, "/tmp/mx-test-lora-%s-%d.gguf", what, (int)getpid());
}

static struct mx_gguf *open_base(void) {
    struct mx_gguf *g;
    struct mx_err err = {0};
    if (mx_gguf_open(g_base, &g, &err) < 0)
        fail_msg("%s", err.msg);
    return g;
}

static int32_t base_vocab(const struct mx_gguf *g) {
    return (int32_t)mx_gguf_find_tensor(g, "token_embd.weight")->ne[1];
}

static void test_lora_equals_merged(void **state) {
    (void)state;
    struct mx_gguf *g = open_base();
    char pa[256], pb[256], pm[256];
    tmp_path(pa, sizeof pa, "a1");
    tmp_path(pb, sizeof pb, "a2");
    tmp_path(pm, sizeof pm, "merged");
    write_adapter(g, &k_ad1, pa, NULL, -1);
    write_adapter(g, &k_ad2, pb, NULL, -1);
    int32_t ids[NT], nv;
    some_ids(ids, NT, base_vocab(g));
    const char *paths[2] = {pa, pb};
    const struct adapter_spec *ads[2] = {&k_ad1, &k_ad2};
    static const struct { int n; float s[2]; int ub; } cases[] = {
        {1, {0.7f, 0}, 512}, {1, {-1.5f, 0}, 5}, {2, {0.7f, -1.3f}, 512}, {2, {1.0f, 2.0f}, 3},
    };
    for (size_t k = 0; k < MX_ARRAY_LEN(cases); k++) {
        write_merged(g, ads, cases[k].s, cases[k].n, pm);
        float *want = run_rows(pm, NULL, NULL, 0, ids, NT, 512, &nv);
        float *got = run_rows(g_base, paths, cases[k].s, cases[k].n, ids, NT, cases[k].ub, &nv);
        float *base = run_rows(g_base, NULL, NULL, 0, ids, NT, 512, &nv);
        double amax, d = max_diff(got, want, (size_t)NT * nv, &amax);
        double moved = max_diff(base, want, (size_t)NT * nv, &amax);
        printf("lora case %zu (%d adapters, ubatch %d): max |on the fly - merged| %.3g, the "
               "adapters move logits by %.3g (max |logit| %.3g)\n", k, cases[k].n, cases[k].ub,
               d, moved, amax);
        assert_true(moved > 0.05);              /* the adapter matters */
        assert_true(d <= 1e-4 * fmax(1.0, amax)); /* and it is the merged model */
        free(want);
        free(got);
        free(base);
    }
    /* one token at a time too (the generate path: T = 1) */
    float s1 = 0.7f;
    write_merged(g, ads, &s1, 1, pm);
    float *want = run(pm, NULL, NULL, 0, ids, NT, 1, &nv);
    float *got = run(g_base, paths, &s1, 1, ids, NT, 1, &nv);
    double amax, d = max_diff(got, want, (size_t)NT * nv, &amax);
    printf("lora one token per decode: max diff %.3g\n", d);
    assert_true(d <= 1e-4 * fmax(1.0, amax));
    free(want);
    free(got);
    unlink(pa);
    unlink(pb);
    unlink(pm);
    mx_gguf_close(g);
}

static void test_lora_scale_zero(void **state) {
    (void)state;
    struct mx_gguf *g = open_base();
    char pa[256];
    tmp_path(pa, sizeof pa, "z");
    write_adapter(g, &k_ad1, pa, NULL, -1);
    int32_t ids[NT], nv;
    some_ids(ids, NT, base_vocab(g));
    const char *paths[1] = {pa};
    float s0 = 0.0f;
    float *base = run_rows(g_base, NULL, NULL, 0, ids, NT, 512, &nv);
    float *zero = run_rows(g_base, paths, &s0, 1, ids, NT, 512, &nv);
    assert_memory_equal(base, zero, (size_t)NT * nv * sizeof(float));
    free(base);
    free(zero);
    unlink(pa);
    mx_gguf_close(g);
}

/* Adapter spec variant that the engine must refuse with a message containing want. */
static void expect_refused(const struct mx_gguf *g, const struct adapter_spec *sp,
                           const char *odd, int bad_pair, const char *want) {
    char pa[256];
    tmp_path(pa, sizeof pa, "bad");
    write_adapter(g, sp, pa, odd, bad_pair);
    struct mx_err err = {0};
    struct mx_backend *be = mx_backend_cpu_new(1, &err);
    struct mx_llama_model *m;
    assert_int_equal(mx_llama_model_load(g_base, be, &m, &err), 0);
    int rc = mx_llama_lora_add(m, pa, 1.0f, &err);
    printf("refused: %s\n", err.msg);
    assert_true(rc < 0);
    if (!strstr(err.msg, want))
        fail_msg("'%s' does not say '%s'", err.msg, want);
    assert_int_equal(mx_llama_lora_count(m), 0);
    mx_llama_model_free(m);
    mx_backend_free(be);
    unlink(pa);
}

static void test_lora_refused(void **state) {
    (void)state;
    struct mx_gguf *g = open_base();
    struct adapter_spec sp = k_ad2;
    sp.arch = "qwen2";
    expect_refused(g, &sp, NULL, -1, "architecture 'qwen2', the model is 'llama'");
    sp = k_ad2;
    sp.type = "model";
    expect_refused(g, &sp, NULL, -1, "not a LoRA adapter (general.type is 'model'");
    expect_refused(g, &k_ad2, NULL, 2, "'blk.1.attn_v.weight': lora_a [129, 2] and lora_b "
                   "[2, 32] do not fit the model's weight [128, 32]");
    expect_refused(g, &k_ad2, "blk.7.attn_q.weight", -1, "no weight 'blk.7.attn_q.weight'");
    expect_refused(g, &k_ad2, "blk.0.attn_k.weight", -1,
                   "'blk.0.attn_k.weight.lora_a' has no 'blk.0.attn_k.weight.lora_b'");
    expect_refused(g, &k_ad2, "token_embd.weight", -1, "token embedding is not supported");
    /* a pair of the wrong shape for a weight the model has ([8, 2] for an attention matrix) */
    expect_refused(g, &k_ad2, "blk.1.attn_output.weight", -1, "'blk.1.attn_output.weight'");
    /* and not a GGUF at all */
    char pa[256];
    tmp_path(pa, sizeof pa, "junk");
    FILE *f = fopen(pa, "wb");
    fputs("not a gguf", f);
    fclose(f);
    struct mx_err err = {0};
    struct mx_backend *be = mx_backend_cpu_new(1, &err);
    struct mx_llama_model *m;
    assert_int_equal(mx_llama_model_load(g_base, be, &m, &err), 0);
    assert_true(mx_llama_lora_add(m, pa, 1.0f, &err) < 0);
    assert_non_null(strstr(err.msg, pa));
    assert_true(mx_llama_lora_add(m, "/nonexistent/x.gguf", 1.0f, &err) < 0);
    assert_int_equal(mx_llama_lora_count(m), 0);
    mx_llama_model_free(m);
    mx_backend_free(be);
    unlink(pa);
    mx_gguf_close(g);
}

static void test_lora_vs_llamacpp(void **state) {
    (void)state;
    char path[1024];
    const char *src = getenv("MX_SRCDIR");
    snprintf(path, sizeof path, "%s/tests/golden/llm_lora/logits-lora.json", src ? src : ".");
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j)
        fail_msg("%s: %s", path, je.text);
    json_t *jids = json_object_get(j, "ids"), *jl = json_object_get(j, "logits");
    float scale = (float)json_number_value(json_object_get(j, "scale"));
    int64_t nt = (int64_t)json_array_size(jids);
    assert_true(nt > 0 && nt <= 64 && (int64_t)json_array_size(jl) == nt);
    int32_t ids[64], nv;
    for (int64_t i = 0; i < nt; i++)
        ids[i] = (int32_t)json_integer_value(json_array_get(jids, (size_t)i));
    struct mx_gguf *g = open_base();
    char pa[256];
    tmp_path(pa, sizeof pa, "peer");
    write_adapter(g, &k_ad1, pa, NULL, -1);
    const char *paths[1] = {pa};
    float *got = run_rows(g_base, paths, &scale, 1, ids, nt, 512, &nv);
    double worst = 0;
    for (int64_t i = 0; i < nt; i++) {
        json_t *row = json_array_get(jl, (size_t)i);
        assert_int_equal((int)json_array_size(row), nv);
        for (int32_t k = 0; k < nv; k++)
            worst = fmax(worst, fabs(got[i * nv + k] -
                                     json_number_value(json_array_get(row, (size_t)k))));
    }
    printf("lora vs llama.cpp (scale %.2f, %d tokens): max |diff| %.3g\n", (double)scale,
           (int)nt, worst);
    assert_true(worst <= 1e-4);
    free(got);
    unlink(pa);
    mx_gguf_close(g);
    json_decref(j);
}

int main(int argc, char **argv) {
    g_shared = mx_test_require_shared("test_llm_lora");
    snprintf(g_base, sizeof g_base, "%s/models/tiny-mixtral-f32.gguf", g_shared);
    if (argc == 3 && !strcmp(argv[1], "write-adapter")) {
        struct mx_gguf *g;
        struct mx_err err = {0};
        if (mx_gguf_open(g_base, &g, &err) < 0) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        write_adapter(g, &k_ad1, argv[2], NULL, -1);
        mx_gguf_close(g);
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lora_equals_merged),
        cmocka_unit_test(test_lora_scale_zero),
        cmocka_unit_test(test_lora_vs_llamacpp),
        cmocka_unit_test(test_lora_refused),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
