/* test_sd_clip.c - the CLIP text encoders (core/diffusion/clip_text.c) against their oracles.
 *
 * - Tiny random CLIP text models (width 128, 2 heads, 3 layers, F32 weights) written with the
 *   safetensors writer under the canonical HF names, next to stub UNet tensors that make the
 *   loader see SD 1.x (context 768) or SD 2.x (context 1024). Their output is checked against a
 *   float64 recomputation of the network written out here in plain loops: one layer
 *   (clip_skip 3), two (clip_skip 2) and all three, quick_gelu for SD 1.x, gelu for SD 2.x,
 *   SD 2.x's defaults (penultimate layer, pad id 0), a 23-layer SD 2.x encoder as diffusers
 *   stores it, A1111 weighting, BREAK and padding chunks, the error cases.
 * - With ../shared, the SD 1.5 reference checkpoint (tests/sd_ckpt.sh) and OpenAI's vocabulary:
 *   clip_hidden_{cond,uncond} of sd-s01 and sd-s06 (relative RMS <= 2e-3, the README's bar),
 *   sd-s06's weighted context, clip_skip 2 against 1, and the encoder's time for one chunk.
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/diffusion/clip_text.h"
#include "core/diffusion/prompt.h"
#include "core/diffusion/sd_model.h"
#include "core/format/safetensors.h"
#include "core/text/tokenizer.h"
#include "kernels/backend.h"
#include "tests/mx_test.h"

#define T77 MX_SD_CHUNK_LEN
#define PFX "cond_stage_model.transformer.text_model."

static struct mx_backend *be;

/* ---- a tiny random model and its float64 twin ---------------------------------------------- */

#define TD 128   /* width */
#define TF 256   /* MLP width */
#define TL 3     /* layers */
#define TV 518   /* vocabulary: the hand-made tokenizer's */

struct tiny_layer {
    float ln1w[TD], ln1b[TD], ln2w[TD], ln2b[TD];
    float qw[TD * TD], kw[TD * TD], vw[TD * TD], ow[TD * TD]; /* [out][in] */
    float qb[TD], kb[TD], vb[TD], ob[TD];
    float f1w[TF * TD], f1b[TF], f2w[TD * TF], f2b[TD];
};

struct tiny {
    float emb[TV * TD]; /* [vocab][dim] */
    float pos[T77 * TD]; /* [77][dim] */
    int n_layer;
    struct tiny_layer *l; /* [n_layer] */
    float fw[TD], fb[TD];
};

static void fill(float *a, size_t n, float scale, float offset, uint64_t *s) {
    for (size_t i = 0; i < n; i++)
        a[i] = offset + scale * mx_test_randf(s);
}

static void tiny_init(struct tiny *m, uint64_t seed, int n_layer) {
    uint64_t s = seed;
    m->n_layer = n_layer;
    m->l = malloc((size_t)n_layer * sizeof *m->l);
    assert_non_null(m->l);
    fill(m->emb, TV * TD, 1.0f, 0, &s);
    fill(m->pos, T77 * TD, 0.5f, 0, &s);
    for (int il = 0; il < n_layer; il++) {
        struct tiny_layer *l = &m->l[il];
        fill(l->ln1w, TD, 0.2f, 1, &s);
        fill(l->ln1b, TD, 0.1f, 0, &s);
        fill(l->ln2w, TD, 0.2f, 1, &s);
        fill(l->ln2b, TD, 0.1f, 0, &s);
        float a = 1.7f / sqrtf(TD);
        fill(l->qw, TD * TD, 2 * a, 0, &s); /* sharper attention than uniform */
        fill(l->kw, TD * TD, 2 * a, 0, &s);
        fill(l->vw, TD * TD, a, 0, &s);
        fill(l->ow, TD * TD, a, 0, &s);
        fill(l->qb, TD, 0.1f, 0, &s);
        fill(l->kb, TD, 0.1f, 0, &s);
        fill(l->vb, TD, 0.1f, 0, &s);
        fill(l->ob, TD, 0.1f, 0, &s);
        fill(l->f1w, TF * TD, a, 0, &s);
        fill(l->f1b, TF, 0.1f, 0, &s);
        fill(l->f2w, TD * TF, 1.7f / sqrtf(TF), 0, &s);
        fill(l->f2b, TD, 0.1f, 0, &s);
    }
    fill(m->fw, TD, 0.2f, 1, &s);
    fill(m->fb, TD, 0.1f, 0, &s);
}

static void add(struct mx_st_writer *w, const char *name, const float *data, int64_t d0,
                int64_t d1) {
    int64_t shape[2] = {d0, d1};
    assert_int_equal(mx_st_writer_add_tensor(w, name, MX_ST_F32, d1 ? 2 : 1, shape, data), 0);
}

/* Writes m as a checkpoint whose stub UNet says SD 2.x (sd2) or SD 1.x; returns the path. */
static void tiny_write(const struct tiny *m, bool sd2, char *path, size_t size) {
    struct mx_st_writer *w = mx_st_writer_new();
    assert_non_null(w);
    char n[256];
    add(w, PFX "embeddings.token_embedding.weight", m->emb, TV, TD);
    add(w, PFX "embeddings.position_embedding.weight", m->pos, T77, TD);
    add(w, PFX "final_layer_norm.weight", m->fw, TD, 0);
    add(w, PFX "final_layer_norm.bias", m->fb, TD, 0);
    for (int il = 0; il < m->n_layer; il++) {
        const struct tiny_layer *l = &m->l[il];
        struct {
            const char *what;
            const float *d;
            int64_t d0, d1;
        } t[] = {
            {"layer_norm1.weight", l->ln1w, TD, 0}, {"layer_norm1.bias", l->ln1b, TD, 0},
            {"layer_norm2.weight", l->ln2w, TD, 0}, {"layer_norm2.bias", l->ln2b, TD, 0},
            {"self_attn.q_proj.weight", l->qw, TD, TD}, {"self_attn.q_proj.bias", l->qb, TD, 0},
            {"self_attn.k_proj.weight", l->kw, TD, TD}, {"self_attn.k_proj.bias", l->kb, TD, 0},
            {"self_attn.v_proj.weight", l->vw, TD, TD}, {"self_attn.v_proj.bias", l->vb, TD, 0},
            {"self_attn.out_proj.weight", l->ow, TD, TD},
            {"self_attn.out_proj.bias", l->ob, TD, 0},
            {"mlp.fc1.weight", l->f1w, TF, TD}, {"mlp.fc1.bias", l->f1b, TF, 0},
            {"mlp.fc2.weight", l->f2w, TD, TF}, {"mlp.fc2.bias", l->f2b, TD, 0},
        };
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
            snprintf(n, sizeof n, PFX "encoder.layers.%d.%s", il, t[i].what);
            add(w, n, t[i].d, t[i].d0, t[i].d1);
        }
    }
    /* the UNet tensors the loader reads the family from: cross-attention width, in channels */
    /* (the width is the encoder's; SD 2.x projects into its transformers with a linear, SD 1.x
     * with a 1x1 conv) */
    int64_t ctx = TD;
    float *k = calloc((size_t)(8 * ctx), sizeof *k), conv[8 * 4] = {0}, proj[8 * 8] = {0};
    assert_non_null(k);
    add(w, "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", k, 8,
        ctx);
    int64_t pshape[4] = {8, 8, 1, 1};
    assert_int_equal(mx_st_writer_add_tensor(w, "model.diffusion_model.input_blocks.1.1.proj_in"
                                             ".weight", MX_ST_F32, sd2 ? 2 : 4, pshape, proj), 0);
    int64_t cshape[4] = {8, 4, 1, 1};
    assert_int_equal(mx_st_writer_add_tensor(w, "model.diffusion_model.input_blocks.0.0.weight",
                                             MX_ST_F32, 4, cshape, conv), 0);
    free(k);
    snprintf(path, size, "/tmp/mx-test-sd-clip-%d-%s.safetensors", (int)getpid(),
             sd2 ? "sd2" : "sd1");
    struct mx_err e = {0};
    int rc = mx_st_writer_write(w, path, &e);
    if (rc < 0)
        fail_msg("%s", mx_err_msg(&e, rc));
    mx_st_writer_free(w);
}

static void ln64(double *y, const double *x, const float *w, const float *b) {
    double mean = 0, var = 0;
    for (int j = 0; j < TD; j++)
        mean += x[j];
    mean /= TD;
    for (int j = 0; j < TD; j++)
        var += (x[j] - mean) * (x[j] - mean);
    var /= TD;
    for (int j = 0; j < TD; j++)
        y[j] = (x[j] - mean) / sqrt(var + 1e-5) * w[j] + b[j];
}

/* y[o] = W[o][:] . x + b[o] */
static void lin64(double *y, const float *W, const float *b, const double *x, int n_in,
                  int n_out) {
    for (int o = 0; o < n_out; o++) {
        double s = b[o];
        for (int i = 0; i < n_in; i++)
            s += (double)W[o * n_in + i] * x[i];
        y[o] = s;
    }
}

/* The network in float64: n_run layers (causal attention, 2 heads of 64), final LN. */
static void tiny_ref(const struct tiny *m, const int32_t *ids, int n_run, bool gelu, float *out) {
    static double x[T77][TD], xn[T77][TD], q[T77][TD], k[T77][TD], v[T77][TD], a[T77][TD];
    static double f[TF], o[TD];
    for (int t = 0; t < T77; t++)
        for (int j = 0; j < TD; j++)
            x[t][j] = (double)m->emb[ids[t] * TD + j] + m->pos[t * TD + j];
    for (int il = 0; il < n_run; il++) {
        const struct tiny_layer *l = &m->l[il];
        for (int t = 0; t < T77; t++) {
            ln64(xn[t], x[t], l->ln1w, l->ln1b);
            lin64(q[t], l->qw, l->qb, xn[t], TD, TD);
            lin64(k[t], l->kw, l->kb, xn[t], TD, TD);
            lin64(v[t], l->vw, l->vb, xn[t], TD, TD);
        }
        for (int h = 0; h < TD / 64; h++)
            for (int t = 0; t < T77; t++) {
                double sc[T77], mx = -1e300, sum = 0;
                for (int u = 0; u <= t; u++) {
                    double d = 0;
                    for (int j = 0; j < 64; j++)
                        d += q[t][h * 64 + j] * k[u][h * 64 + j];
                    sc[u] = d / 8.0;
                    mx = fmax(mx, sc[u]);
                }
                for (int u = 0; u <= t; u++)
                    sum += (sc[u] = exp(sc[u] - mx));
                for (int j = 0; j < 64; j++) {
                    double s = 0;
                    for (int u = 0; u <= t; u++)
                        s += sc[u] / sum * v[u][h * 64 + j];
                    a[t][h * 64 + j] = s;
                }
            }
        for (int t = 0; t < T77; t++) {
            lin64(o, l->ow, l->ob, a[t], TD, TD);
            for (int j = 0; j < TD; j++)
                x[t][j] += o[j];
            ln64(xn[t], x[t], l->ln2w, l->ln2b);
            lin64(f, l->f1w, l->f1b, xn[t], TD, TF);
            for (int j = 0; j < TF; j++) {
                double z = f[j];
                f[j] = gelu ? 0.5 * z * (1 + tanh(sqrt(2 / M_PI) * (z + 0.044715 * z * z * z)))
                            : z / (1 + exp(-1.702 * z));
            }
            lin64(o, l->f2w, l->f2b, f, TF, TD);
            for (int j = 0; j < TD; j++)
                x[t][j] += o[j];
        }
    }
    for (int t = 0; t < T77; t++) {
        double y[TD];
        ln64(y, x[t], m->fw, m->fb);
        for (int j = 0; j < TD; j++)
            out[t * TD + j] = (float)y[j];
    }
}

/* sqrt(sum (a-b)^2 / sum b^2) */
static double rel_rms(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

static struct mx_tokenizer *small_tok(void) {
    const char *text = "#version: 0.2\nc a\nca t</w>\nd o\ndo g</w>\n";
    struct mx_tokenizer *t = NULL;
    assert_int_equal(mx_clip_tokenizer_from_merges(text, strlen(text), &t, NULL), 0);
    return t;
}

struct tiny_env {
    struct tiny *m;
    char path[256];
    struct mx_sd_model *model;
    struct mx_tokenizer *tok;
    struct mx_sd_clip *clip;
};

static void tiny_open(struct tiny_env *env, bool sd2, uint64_t seed, int n_layer) {
    env->m = malloc(sizeof *env->m);
    assert_non_null(env->m);
    tiny_init(env->m, seed, n_layer);
    tiny_write(env->m, sd2, env->path, sizeof env->path);
    struct mx_err e = {0};
    int rc = mx_sd_model_open(be, env->path, NULL, &env->model, &e);
    if (rc < 0)
        fail_msg("%s", mx_err_msg(&e, rc));
    assert_int_equal(env->model->family, sd2 ? MX_SD_FAMILY_SD2 : MX_SD_FAMILY_SD1);
    env->tok = small_tok();
    rc = mx_sd_clip_new(env->model, env->tok, &env->clip, &e);
    if (rc < 0)
        fail_msg("%s", mx_err_msg(&e, rc));
}

static void tiny_close(struct tiny_env *env) {
    mx_sd_clip_free(env->clip);
    mx_tokenizer_free(env->tok);
    mx_sd_model_close(env->model);
    unlink(env->path);
    free(env->m->l);
    free(env->m);
}

/* BOS, the given ids, EOS, pads */
static void chunk_ids(int32_t *ids, const int32_t *content, int n, int32_t bos, int32_t eos,
                      int32_t pad) {
    ids[0] = bos;
    for (int i = 0; i < n; i++)
        ids[1 + i] = content[i];
    ids[1 + n] = eos;
    for (int i = 2 + n; i < T77; i++)
        ids[i] = pad;
}

/* f32 on the backend against f64: F32 weights and activations, sums over <= 256 terms and 3
 * layers of LayerNorm'd values; rounding alone stays near 1e-6, while any wrong weight, mask,
 * scale or activation moves the result by > 1e-2. */
#define TINY_TOL 1e-4

static void test_tiny_sd1(void **state) {
    (void)state;
    struct tiny_env env;
    tiny_open(&env, false, 11, TL);
    struct mx_sd_clip *c = env.clip;
    int32_t bos = mx_tokenizer_bos(env.tok), eos = mx_tokenizer_eos(env.tok);
    assert_int_equal(mx_sd_clip_dim(c), TD);
    assert_int_equal(mx_sd_clip_n_layers(c), TL);
    assert_int_equal(mx_sd_clip_default_skip(c), 1);
    assert_int_equal(mx_sd_clip_pad_id(c), eos);
    int32_t ids[T77];
    uint64_t s = 5;
    int32_t content[40];
    for (int i = 0; i < 40; i++)
        content[i] = (int32_t)(mx_test_rand(&s) % 512);
    chunk_ids(ids, content, 40, bos, eos, eos);
    float *h = malloc(T77 * TD * sizeof *h), *r = malloc(T77 * TD * sizeof *r);
    float *h1 = malloc(T77 * TD * sizeof *h1);
    assert_true(h && r && h1);
    struct mx_err e = {0};
    for (int skip = 1; skip <= TL; skip++) { /* skip 3: one layer + final LN */
        assert_int_equal(mx_sd_clip_encode_ids(c, ids, skip, h, &e), 0);
        tiny_ref(env.m, ids, TL - (skip - 1), false, r);
        double err = rel_rms(h, r, T77 * TD);
        printf("tiny SD1 clip_skip %d (%d layers): rel RMS vs float64 %.2e\n", skip,
               TL - (skip - 1), err);
        assert_true(err < TINY_TOL);
        if (skip == 1)
            memcpy(h1, h, T77 * TD * sizeof *h);
    }
    /* clip_skip 0 is the family default (1); 2 differs from it */
    assert_int_equal(mx_sd_clip_encode_ids(c, ids, 0, h, &e), 0);
    assert_memory_equal(h, h1, T77 * TD * sizeof *h);
    assert_int_equal(mx_sd_clip_encode_ids(c, ids, 2, h, &e), 0);
    assert_true(rel_rms(h, h1, T77 * TD) > 0.1);
    /* errors */
    assert_int_equal(mx_sd_clip_encode_ids(c, ids, TL + 1, h, &e), MX_EINVAL);
    assert_int_equal(mx_sd_clip_encode_ids(c, ids, -1, h, NULL), MX_EINVAL);
    ids[3] = TV;
    assert_int_equal(mx_sd_clip_encode_ids(c, ids, 1, h, NULL), MX_EINVAL);
    free(h);
    free(r);
    free(h1);
    tiny_close(&env);
}

static void test_tiny_sd2(void **state) {
    (void)state;
    struct tiny_env env;
    tiny_open(&env, true, 12, TL);
    struct mx_sd_clip *c = env.clip;
    int32_t bos = mx_tokenizer_bos(env.tok), eos = mx_tokenizer_eos(env.tok);
    int32_t cat = mx_tokenizer_find(env.tok, "cat</w>", 7);
    int32_t dog = mx_tokenizer_find(env.tok, "dog</w>", 7);
    assert_int_equal(mx_sd_clip_default_skip(c), 2); /* OpenCLIP: penultimate layer */
    assert_int_equal(mx_sd_clip_pad_id(c), 0);
    float *h = NULL, *r = malloc(4 * T77 * TD * sizeof *r);
    assert_non_null(r);
    int64_t n_ctx = 0;
    struct mx_err e = {0};

    /* the default: layer N-1 + final LN, gelu, ids padded with 0 */
    int32_t ids[T77];
    chunk_ids(ids, (int32_t[]){cat, dog}, 2, bos, eos, 0);
    assert_int_equal(mx_sd_clip_encode(c, "cat dog", 0, 1, &h, &n_ctx, &e), 0);
    assert_int_equal(n_ctx, T77);
    tiny_ref(env.m, ids, TL - 1, true, r);
    double err = rel_rms(h, r, T77 * TD);
    printf("tiny SD2 default (penultimate) vs float64: rel RMS %.2e\n", err);
    assert_true(err < TINY_TOL);
    free(h);
    /* clip_skip 1 = all layers; quick_gelu instead of gelu would not match */
    assert_int_equal(mx_sd_clip_encode(c, "cat dog", 1, 1, &h, &n_ctx, &e), 0);
    tiny_ref(env.m, ids, TL, true, r);
    assert_true(rel_rms(h, r, T77 * TD) < TINY_TOL);
    tiny_ref(env.m, ids, TL, false, r);
    assert_true(rel_rms(h, r, T77 * TD) > 1e-3);
    free(h);

    /* weights: (cat:1.5) -> the hidden states scaled per token, mean restored; then two
     * padding chunks equal to the empty prompt */
    assert_int_equal(mx_sd_clip_encode(c, "(cat:1.5) dog", 0, 3, &h, &n_ctx, &e), 0);
    assert_int_equal(n_ctx, 3 * T77);
    tiny_ref(env.m, ids, TL - 1, true, r);
    float w[T77];
    for (int i = 0; i < T77; i++)
        w[i] = i == 1 ? 1.5f : 1.0f;
    mx_sd_clip_apply_weights(r, w, T77, TD);
    assert_true(rel_rms(h, r, T77 * TD) < TINY_TOL);
    chunk_ids(ids, NULL, 0, bos, eos, 0);
    tiny_ref(env.m, ids, TL - 1, true, r);
    assert_true(rel_rms(h + T77 * TD, r, T77 * TD) < TINY_TOL);
    assert_memory_equal(h + T77 * TD, h + 2 * T77 * TD, T77 * TD * sizeof *h);
    free(h);

    /* BREAK: one chunk per side, each encoded alone */
    assert_int_equal(mx_sd_clip_n_chunks(c, "cat BREAK dog", &e), 2);
    assert_int_equal(mx_sd_clip_n_chunks(c, "", &e), 1);
    assert_int_equal(mx_sd_clip_encode(c, "cat BREAK dog", 0, 1, &h, &n_ctx, &e), 0);
    assert_int_equal(n_ctx, 2 * T77);
    chunk_ids(ids, (int32_t[]){cat}, 1, bos, eos, 0);
    tiny_ref(env.m, ids, TL - 1, true, r);
    assert_true(rel_rms(h, r, T77 * TD) < TINY_TOL);
    chunk_ids(ids, (int32_t[]){dog}, 1, bos, eos, 0);
    tiny_ref(env.m, ids, TL - 1, true, r);
    assert_true(rel_rms(h + T77 * TD, r, T77 * TD) < TINY_TOL);
    free(h);

    /* limits */
    size_t cap = 33 * 75 * 4 + 1;
    char *p = malloc(cap);
    assert_non_null(p);
    for (size_t i = 0; i < 33 * 75; i++)
        memcpy(p + 4 * i, "cat ", 4);
    p[cap - 1] = 0;
    assert_int_equal(mx_sd_clip_encode(c, p, 0, 1, &h, &n_ctx, &e), MX_ERANGE);
    assert_int_equal(mx_sd_clip_n_chunks(c, p, NULL), MX_ERANGE);
    assert_null(h);
    free(p);
    assert_int_equal(mx_sd_clip_encode(c, "", 0, 33, &h, &n_ctx, NULL), MX_ERANGE);
    assert_int_equal(mx_sd_clip_encode(c, "", 4, 1, &h, &n_ctx, NULL), MX_EINVAL);
    free(r);
    tiny_close(&env);
}

/* An SD 2.x encoder stored with 23 layers (diffusers): clip_skip counts OpenCLIP's 24, so the
 * default and 1 run all 23, 3 runs 22. */
static void test_tiny_sd2_23(void **state) {
    (void)state;
    struct tiny_env env;
    tiny_open(&env, true, 13, 23);
    struct mx_sd_clip *c = env.clip;
    assert_int_equal(mx_sd_clip_n_layers(c), 23);
    int32_t ids[T77], content[5] = {1, 100, 200, 300, 511};
    chunk_ids(ids, content, 5, mx_tokenizer_bos(env.tok), mx_tokenizer_eos(env.tok), 0);
    float *h = malloc(T77 * TD * sizeof *h), *r = malloc(T77 * TD * sizeof *r);
    assert_true(h && r);
    struct mx_err e = {0};
    tiny_ref(env.m, ids, 23, true, r);
    for (int skip = 0; skip <= 2; skip++) {
        assert_int_equal(mx_sd_clip_encode_ids(c, ids, skip, h, &e), 0);
        double err = rel_rms(h, r, T77 * TD);
        if (skip == 0)
            printf("tiny SD2 (23 layers, diffusers) default vs float64: rel RMS %.2e\n", err);
        assert_true(err < TINY_TOL);
    }
    assert_int_equal(mx_sd_clip_encode_ids(c, ids, 3, h, &e), 0);
    tiny_ref(env.m, ids, 22, true, r);
    assert_true(rel_rms(h, r, T77 * TD) < TINY_TOL);
    assert_int_equal(mx_sd_clip_encode_ids(c, ids, 24, h, &e), 0); /* one layer */
    assert_int_equal(mx_sd_clip_encode_ids(c, ids, 25, h, NULL), MX_EINVAL);
    free(h);
    free(r);
    tiny_close(&env);
}

/* A1111's emphasis formula by hand on a 2 x 2 block. */
static void test_apply_weights(void **state) {
    (void)state;
    float h[4] = {1, 2, 3, 4}, w[2] = {2, 1};
    mx_sd_clip_apply_weights(h, w, 2, 2);
    /* before mean 2.5; after weighting {2, 4, 3, 4}, mean 3.25; scale 2.5/3.25 */
    float s = 2.5f / 3.25f;
    float exp[4] = {2 * s, 4 * s, 3 * s, 4 * s};
    for (int i = 0; i < 4; i++)
        assert_true(fabsf(h[i] - exp[i]) < 1e-6f);
}

/* mx_sd_clip_tokenizer_open: a diffusers folder's tokenizer/ first, else the installed file. */
static void test_tokenizer_open(void **state) {
    (void)state;
    char dir[] = "/tmp/mx-test-sd-clip-XXXXXX", sub[300], path[400];
    assert_non_null(mkdtemp(dir));
    snprintf(sub, sizeof sub, "%s/tokenizer", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    /* the hand-made vocabulary as vocab.json + merges.txt */
    struct mx_tokenizer *small = small_tok();
    snprintf(path, sizeof path, "%s/vocab.json", sub);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{", f);
    for (int32_t i = 0; i < mx_tokenizer_n_vocab(small); i++) {
        size_t len;
        const char *t = mx_tokenizer_token_text(small, i, &len);
        fputs(i ? ", \"" : "\"", f);
        for (size_t k = 0; k < len; k++) {
            unsigned char ch = (unsigned char)t[k];
            if (ch == '"' || ch == '\\')
                fprintf(f, "\\%c", ch);
            else
                fputc(ch, f);
        }
        fprintf(f, "\": %d", (int)i);
    }
    fputs("}", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/merges.txt", sub);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("#version: 0.2\nc a\nca t</w>\nd o\ndo g</w>\n", f);
    fclose(f);
    struct mx_tokenizer *t = NULL;
    struct mx_err e = {0};
    int rc = mx_sd_clip_tokenizer_open(dir, &t, &e);
    if (rc < 0)
        fail_msg("%s", mx_err_msg(&e, rc));
    assert_int_equal(mx_tokenizer_n_vocab(t), mx_tokenizer_n_vocab(small));
    assert_int_equal(mx_tokenizer_find(t, "dog</w>", 7), mx_tokenizer_find(small, "dog</w>", 7));
    mx_tokenizer_free(t);
    mx_tokenizer_free(small);
    unlink(path);
    snprintf(path, sizeof path, "%s/vocab.json", sub);
    unlink(path);
    rmdir(sub);
    /* a folder without tokenizer/ (and a file) fall back to the installed vocabulary */
    t = NULL;
    rc = mx_sd_clip_tokenizer_open(dir, &t, &e);
    rmdir(dir);
    if (rc == 0)
        assert_int_equal(mx_tokenizer_n_vocab(t), 49408);
    else
        assert_int_equal(rc, MX_ENOENT);
    mx_tokenizer_free(t);
}

/* ---- the SD 1.5 reference checkpoint -------------------------------------------------------- */

static float *read_f32(const char *shared, const char *rel, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/refs/sd/%s", shared, rel);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("%s: cannot open", path);
    float *a = malloc(n * sizeof *a);
    assert_non_null(a);
    assert_int_equal(fread(a, sizeof *a, n, f), n);
    fclose(f);
    return a;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The path tests/sd_ckpt.sh prints (kind "" for the single file, "diffusers" for the folder),
 * or NULL (it skipped: reason on stderr). */
static char *ckpt_path(const char *kind) {
    const char *src = getenv("MX_SRCDIR");
    if (!src)
        return NULL;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s/tests/sd_ckpt.sh' %s", src, kind);
    FILE *p = popen(cmd, "r");
    if (!p)
        return NULL;
    char line[1024] = {0};
    char *ok = fgets(line, sizeof line, p);
    int st = pclose(p);
    if (!ok || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return NULL;
    line[strcspn(line, "\n")] = 0;
    return strdup(line);
}

#define CLIP_TOL 2e-3 /* refs/sd/README: CLIP hidden states, relative RMS */

static void test_ref_sd15(void **state) {
    (void)state;
    const char *shared = mx_test_shared_dir();
    if (!shared)
        mx_test_skip("the SD 1.5 references need ../shared (set MX_SHARED)");
    struct mx_tokenizer *tok = NULL;
    struct mx_err e = {0};
    int rc = mx_sd_clip_tokenizer_open(NULL, &tok, &e);
    if (rc == MX_ENOENT)
        mx_test_skip("OpenAI's CLIP vocabulary is not installed: %s", e.msg);
    assert_int_equal(rc, 0);
    char *path = ckpt_path("");
    if (!path) {
        mx_tokenizer_free(tok);
        mx_test_skip("tests/sd_ckpt.sh gave no SD 1.5 reference checkpoint (see its message)");
    }
    struct mx_sd_model *m = NULL;
    if ((rc = mx_sd_model_open(be, path, NULL, &m, &e)) < 0)
        fail_msg("%s", mx_err_msg(&e, rc));
    struct mx_sd_clip *c = NULL;
    double t0 = now_s();
    if ((rc = mx_sd_clip_new(m, tok, &c, &e)) < 0)
        fail_msg("%s", mx_err_msg(&e, rc));
    printf("SD 1.5 text encoder: %d layers, width %lld, set up in %.2f s\n",
           mx_sd_clip_n_layers(c), (long long)mx_sd_clip_dim(c), now_s() - t0);
    const size_t N = T77 * 768;
    struct {
        const char *id, *which, *prompt;
    } cases[] = {
        {"sd-s01", "cond", "a photo of a cat"},
        {"sd-s01", "uncond", ""},
        {"sd-s06", "cond", "a (red:1.3) cube, [blurry]"},
        {"sd-s06", "uncond", ""},
    };
    float *h1 = NULL;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "%s_tensors/clip_hidden_%s.f32", cases[i].id, cases[i].which);
        float *ref = read_f32(shared, rel, N);
        struct mx_sd_prompt_tokens t;
        assert_int_equal(mx_sd_prompt_tokenize(tok, cases[i].prompt, mx_sd_clip_pad_id(c), 0,
                                               &t, &e), 0);
        float *h = malloc(N * sizeof *h);
        assert_non_null(h);
        double t1 = now_s();
        assert_int_equal(mx_sd_clip_encode_ids(c, t.ids, 1, h, &e), 0);
        double dt = now_s() - t1;
        double err = rel_rms(h, ref, N);
        printf("%s clip_hidden_%s: rel RMS %.2e (bar %.0e), one chunk in %.2f s\n", cases[i].id,
               cases[i].which, err, CLIP_TOL, dt);
        assert_true(err <= CLIP_TOL);
        if (i == 0) {
            h1 = h;
            /* clip_skip 2 (sd-s10): penultimate layer + final LN, clearly not the last */
            float *h2 = malloc(N * sizeof *h2);
            assert_non_null(h2);
            assert_int_equal(mx_sd_clip_encode_ids(c, t.ids, 2, h2, &e), 0);
            double d = rel_rms(h2, h1, N);
            printf("sd-s01 cond clip_skip 2 vs 1: rel RMS difference %.2f\n", d);
            assert_true(d > 0.05);
            free(h2);
        } else {
            free(h);
        }
        mx_sd_prompt_tokens_deinit(&t);
        free(ref);
    }

    /* the same weights as a diffusers folder (no tokenizer/ in it: the installed vocabulary):
     * the same bits */
    char *dpath = ckpt_path("diffusers");
    if (dpath) {
        struct mx_tokenizer *dtok = NULL;
        assert_int_equal(mx_sd_clip_tokenizer_open(dpath, &dtok, &e), 0);
        assert_int_equal(mx_tokenizer_n_vocab(dtok), 49408);
        struct mx_sd_model *dm = NULL;
        struct mx_sd_clip *dc = NULL;
        if ((rc = mx_sd_model_open(be, dpath, NULL, &dm, &e)) < 0 ||
            (rc = mx_sd_clip_new(dm, dtok, &dc, &e)) < 0)
            fail_msg("%s", mx_err_msg(&e, rc));
        float *hd = NULL;
        int64_t nd = 0;
        assert_int_equal(mx_sd_clip_encode(dc, "a photo of a cat", 0, 1, &hd, &nd, &e), 0);
        assert_int_equal(nd, T77);
        assert_memory_equal(hd, h1, N * sizeof *hd);
        printf("diffusers folder: sd-s01 cond bit-identical to the single file\n");
        free(hd);
        mx_sd_clip_free(dc);
        mx_sd_model_close(dm);
        mx_tokenizer_free(dtok);
        free(dpath);
    } else {
        printf("(no diffusers copy of the reference checkpoint: that comparison not run)\n");
    }
    free(h1);

    /* sd-s06's weighted context: the formula on the peer's own hidden states (1e-5), and the
     * whole path from the prompt (the CLIP bar) */
    float *hid = read_f32(shared, "sd-s06_tensors/clip_hidden_cond.f32", N);
    float *ctx = read_f32(shared, "sd-s06_tensors/unet_context_cond.f32", N);
    struct mx_sd_prompt_tokens t;
    assert_int_equal(mx_sd_prompt_tokenize(tok, "a (red:1.3) cube, [blurry]", 49407, 0, &t, &e),
                     0);
    mx_sd_clip_apply_weights(hid, t.w, T77, 768);
    double err = rel_rms(hid, ctx, N), mx = 0;
    for (size_t i = 0; i < N; i++)
        mx = fmax(mx, fabs((double)hid[i] - ctx[i]));
    printf("sd-s06 weighting on the peer's hidden states: rel RMS %.2e, max abs %.2e\n", err, mx);
    assert_true(err <= 1e-5);
    mx_sd_prompt_tokens_deinit(&t);
    float *h = NULL;
    int64_t n_ctx = 0;
    double t1 = now_s();
    assert_int_equal(mx_sd_clip_encode(c, "a (red:1.3) cube, [blurry]", 0, 1, &h, &n_ctx, &e),
                     0);
    double dt = now_s() - t1;
    assert_int_equal(n_ctx, T77);
    err = rel_rms(h, ctx, N);
    printf("sd-s06 unet_context_cond from the prompt: rel RMS %.2e; mx_sd_clip_encode %.2f s\n",
           err, dt);
    assert_true(err <= CLIP_TOL);
    free(h);
    free(hid);
    free(ctx);

    mx_sd_clip_free(c);
    mx_sd_model_close(m);
    mx_tokenizer_free(tok);
    free(path);
}

static int setup(void **state) {
    (void)state;
    struct mx_err e = {0};
    be = mx_backend_cpu_new(0, &e);
    return be ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    mx_backend_free(be);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_weights),
        cmocka_unit_test(test_tiny_sd1),
        cmocka_unit_test(test_tiny_sd2),
        cmocka_unit_test(test_tiny_sd2_23),
        cmocka_unit_test(test_tokenizer_open),
        cmocka_unit_test(test_ref_sd15),
    };
    return mx_test_status(cmocka_run_group_tests(tests, setup, teardown));
}
