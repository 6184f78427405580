/* test_sd_unet.c - the Stable Diffusion UNet (core/diffusion/unet.c).
 *
 *   refs_*: the random-weight SD 1.5 checkpoint against stable-diffusion.cpp's dumped eps
 *           (../shared/refs/sd/sd-s01, s06, s08: step-0 input, context and timestep in, eps out,
 *           relative RMS <= 1e-3), cond and uncond in one batch of 2 as the pipeline runs them.
 *   tiny_*: small random UNets written by the test (SD 1.x-shaped: 1x1-conv proj, 8 heads;
 *           SD 2.x-shaped: linear proj, heads of 64, context 1024) against a float64 scalar
 *           recomputation of every block, and a wrong-shaped checkpoint that must be refused.
 *   block_*: one ResBlock or SpatialTransformer of a tiny F16 UNet run alone (unet_impl.h's
 *           mx_sd_unet_block, exact-f32 mode) against the float64 recomputation of that block.
 * MX_UNET_BENCH=WxH (latent size) runs one timed batch-2 eval on the SD 1.5 checkpoint and
 * prints the per-op-class profile instead of the tests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/base/util.h"
#include "core/diffusion/sd_model.h"
#include "core/diffusion/unet.h"
#include "core/diffusion/unet_impl.h"
#include "core/format/safetensors.h"
#include "kernels/backend.h"
#include "tests/mx_test.h"

/* ---- helpers ------------------------------------------------------------------------------ */

/* The SD 1.5 checkpoint's path (tests/sd_ckpt.sh), or NULL with the reason in why. */
static char *ckpt_path(char *why, size_t why_n) {
    const char *src = getenv("MX_SRCDIR");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s/tests/sd_ckpt.sh", src ? src : ".");
    FILE *p = popen(cmd, "r");
    if (!p) {
        snprintf(why, why_n, "cannot run %s", cmd);
        return NULL;
    }
    static char path[1024];
    path[0] = 0;
    if (!fgets(path, sizeof path, p))
        path[0] = 0;
    int st = pclose(p);
    path[strcspn(path, "\n")] = 0;
    if (st != 0 || !path[0]) {
        snprintf(why, why_n, "%s gave no checkpoint (status %d)", cmd, st);
        return NULL;
    }
    return path;
}

/* Reads n floats of a raw little-endian f32 file; NULL on a size mismatch. Caller frees. */
static float *read_f32(const char *dir, const char *name, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    float *v = malloc(n * sizeof *v + 1);
    size_t got = v ? fread(v, sizeof *v, n + 1, fp) : 0;
    fclose(fp);
    if (got != n) {
        free(v);
        return NULL;
    }
    return v;
}

/* Relative RMS error ||a - b|| / ||b||. */
static double rel_rms(const float *a, const float *b, size_t n) {
    double e = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        e += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return sqrt(e / (r > 0 ? r : 1));
}

/* ---- against stable-diffusion.cpp -------------------------------------------------------- */

struct sd_fixture {
    struct mx_backend *be;
    struct mx_sd_model *m;
};

static struct sd_fixture g_sd; /* opened once for the refs tests */

static int sd_setup(void **state) {
    (void)state;
    return 0;
}

/* Opens the SD 1.5 checkpoint once, or skips. */
static bool sd_open(void) {
    if (g_sd.m)
        return true;
    char why[1200];
    const char *path = ckpt_path(why, sizeof why);
    if (!path) {
        printf("SKIP: %s\n", why);
        return false;
    }
    struct mx_err err = {0};
    g_sd.be = mx_backend_cpu_new(2, &err);
    assert_non_null(g_sd.be);
    int rc = mx_sd_model_open(g_sd.be, path, NULL, &g_sd.m, &err);
    if (rc < 0)
        fail_msg("%s", err.msg);
    return true;
}

static int sd_teardown(void **state) {
    (void)state;
    mx_sd_model_close(g_sd.m);
    mx_backend_free(g_sd.be);
    memset(&g_sd, 0, sizeof g_sd);
    return 0;
}

/* One refs case: step `step` of case `id` (latent lw x lh), cond + uncond as a batch of 2. */
static void check_ref(const char *id, int step, int lw, int lh, const char *ctx_cond,
                      float t) {
    const char *shared = mx_test_shared_dir();
    if (!shared)
        mx_test_skip("%s needs ../shared", id);
    if (!sd_open())
        mx_test_skip("%s: no SD 1.5 checkpoint", id);
    char dir[1024], name[128];
    snprintf(dir, sizeof dir, "%s/refs/sd/%s_tensors", shared, id);
    size_t nl = (size_t)4 * lw * lh, nc = (size_t)77 * 768;
    float *x = malloc(2 * nl * sizeof *x), *ctx = malloc(2 * nc * sizeof *ctx);
    float *out = malloc(2 * nl * sizeof *out);
    assert_true(x && ctx && out);
    const char *half[2] = {"cond", "uncond"};
    float *ref[2];
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof name, "unet_in_step%d_%s.f32", step, half[i]);
        float *v = read_f32(dir, name, nl);
        assert_non_null(v);
        memcpy(x + i * nl, v, nl * sizeof *v);
        free(v);
        snprintf(name, sizeof name, "unet_eps_step%d_%s.f32", step, half[i]);
        ref[i] = read_f32(dir, name, nl);
        assert_non_null(ref[i]);
        v = read_f32(dir, i == 0 ? ctx_cond : "clip_hidden_uncond.f32", nc);
        assert_non_null(v);
        memcpy(ctx + i * nc, v, nc * sizeof *v);
        free(v);
    }
    struct mx_err err = {0};
    struct mx_sd_unet *u = NULL;
    int rc = mx_sd_unet_new(g_sd.m, 2, lw, lh, &u, &err);
    if (rc < 0)
        fail_msg("%s", err.msg);
    float ts[2] = {t, t};
    double t0 = mx_time_s();
    rc = mx_sd_unet_eval(u, 2, lw, lh, x, ts, ctx, 77, out, NULL, &err);
    if (rc < 0)
        fail_msg("%s", err.msg);
    double dt = mx_time_s() - t0;
    for (int i = 0; i < 2; i++) {
        double e = rel_rms(out + i * nl, ref[i], nl);
        printf("%s step %d %s (t %.1f, %dx%d latent): rel RMS %.3g (%.2f s for the batch)\n", id,
               step, half[i], t, lw, lh, e, dt);
        assert_true(e <= 1e-3);
        free(ref[i]);
    }
    /* the cancel flag stops it */
    volatile int stop = 1;
    struct mx_err e2 = {0};
    assert_int_equal(mx_sd_unet_eval(u, 2, lw, lh, x, ts, ctx, 77, out, &stop, &e2),
                     MX_ECANCELED);
    mx_sd_unet_free(u);
    free(x);
    free(ctx);
    free(out);
}

static void refs_s01(void **state) {
    (void)state;
    check_ref("sd-s01", 0, 8, 8, "clip_hidden_cond.f32", 999.0f);
}

static void refs_s06(void **state) {
    (void)state;
    check_ref("sd-s06", 0, 16, 16, "unet_context_cond.f32", 999.0f);
}

static void refs_s08(void **state) {
    (void)state;
    check_ref("sd-s08", 0, 8, 8, "clip_hidden_cond.f32", 666.0f);
}

/* CPU seconds of the whole process (all threads). */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}


/* ---- tiny random UNets against a float64 recomputation ------------------------------------ */

/* The architecture a tiny checkpoint is written with. */
struct tiny_cfg {
    int ch, n_lev, mult[4], n_res; /* model channels, levels, multipliers, ResBlocks per level */
    unsigned attn_lev;             /* bit l: transformers at level l */
    bool linear;                   /* SD 2.x: linear proj_in/out, heads of 64 */
    int ctx, in_ch, depth;         /* context width, input channels, transformer depth */
};

/* One weight of a tiny checkpoint: torch shape (outermost first) and values. */
struct tiny_w {
    char name[128];
    int nd;
    int64_t shape[4];
    float *v;
    int64_t n;
};

struct tiny {
    struct tiny_cfg cfg;
    struct tiny_w *w;
    int n, cap;
    uint64_t rng;
    bool f16; /* tiny_write writes F16 (tiny_to_f16 rounded the values) */
};

/* Adds weight NAME (printf) of shape dims with values scale * U(-1, 1) + offset. */
static void tw_add(struct tiny *t, double scale, double offset, int nd, const int64_t *shape,
                   const char *fmt, ...) {
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 256;
        t->w = realloc(t->w, (size_t)t->cap * sizeof *t->w);
        assert_non_null(t->w);
    }
    struct tiny_w *w = &t->w[t->n++];
    va_list ap;
    va_start(ap, fmt);
    int k = snprintf(w->name, sizeof w->name, "model.diffusion_model.");
    vsnprintf(w->name + k, sizeof w->name - (size_t)k, fmt, ap);
    va_end(ap);
    w->nd = nd;
    w->n = 1;
    for (int i = 0; i < nd; i++) {
        w->shape[i] = shape[i];
        w->n *= shape[i];
    }
    w->v = malloc((size_t)w->n * sizeof *w->v);
    assert_non_null(w->v);
    for (int64_t i = 0; i < w->n; i++)
        w->v[i] = (float)(offset + scale * mx_test_randf(&t->rng));
}

/* The values of weight NAME (printf). */
static const float *tw(const struct tiny *t, const char *fmt, ...) {
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    int k = snprintf(name, sizeof name, "model.diffusion_model.");
    vsnprintf(name + k, sizeof name - (size_t)k, fmt, ap);
    va_end(ap);
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->w[i].name, name))
            return t->w[i].v;
    fail_msg("tiny: no weight %s", name);
    return NULL;
}

static bool tw_has(const struct tiny *t, const char *fmt, ...) {
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    int k = snprintf(name, sizeof name, "model.diffusion_model.");
    vsnprintf(name + k, sizeof name - (size_t)k, fmt, ap);
    va_end(ap);
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->w[i].name, name))
            return true;
    return false;
}

#define SH(...) (const int64_t[]){__VA_ARGS__}

static void tw_vec(struct tiny *t, int64_t n, double off, const char *p, const char *what) {
    tw_add(t, 0.1, off, 1, SH(n), "%s.%s", p, what);
}

static void tw_conv(struct tiny *t, int64_t co, int64_t ci, int k, const char *p) {
    tw_add(t, 1.0 / sqrt((double)ci * k * k), 0, 4, SH(co, ci, k, k), "%s.weight", p);
    tw_vec(t, co, 0, p, "bias");
}

static void tw_lin(struct tiny *t, int64_t o, int64_t i, bool bias, const char *p) {
    tw_add(t, 1.0 / sqrt((double)i), 0, 2, SH(o, i), "%s.weight", p);
    if (bias)
        tw_vec(t, o, 0, p, "bias");
}

static void tw_res(struct tiny *t, const char *p, int64_t ci, int64_t co) {
    char q[160];
    snprintf(q, sizeof q, "%s.in_layers.0", p);
    tw_vec(t, ci, 1, q, "weight");
    tw_vec(t, ci, 0, q, "bias");
    snprintf(q, sizeof q, "%s.in_layers.2", p);
    tw_conv(t, co, ci, 3, q);
    snprintf(q, sizeof q, "%s.emb_layers.1", p);
    tw_lin(t, co, 4 * t->cfg.ch, true, q);
    snprintf(q, sizeof q, "%s.out_layers.0", p);
    tw_vec(t, co, 1, q, "weight");
    tw_vec(t, co, 0, q, "bias");
    snprintf(q, sizeof q, "%s.out_layers.3", p);
    tw_conv(t, co, co, 3, q);
    if (ci != co) {
        snprintf(q, sizeof q, "%s.skip_connection", p);
        tw_conv(t, co, ci, 1, q);
    }
}

static void tw_st(struct tiny *t, const char *p, int64_t c) {
    char q[200];
    snprintf(q, sizeof q, "%s.norm", p);
    tw_vec(t, c, 1, q, "weight");
    tw_vec(t, c, 0, q, "bias");
    for (int io = 0; io < 2; io++) {
        snprintf(q, sizeof q, "%s.%s", p, io ? "proj_out" : "proj_in");
        if (t->cfg.linear)
            tw_lin(t, c, c, true, q);
        else
            tw_conv(t, c, c, 1, q);
    }
    for (int d = 0; d < t->cfg.depth; d++) {
        for (int i = 1; i <= 3; i++) {
            snprintf(q, sizeof q, "%s.transformer_blocks.%d.norm%d", p, d, i);
            tw_vec(t, c, 1, q, "weight");
            tw_vec(t, c, 0, q, "bias");
        }
        for (int a = 1; a <= 2; a++) {
            int64_t kv = a == 1 ? c : t->cfg.ctx;
            snprintf(q, sizeof q, "%s.transformer_blocks.%d.attn%d.to_q", p, d, a);
            tw_lin(t, c, c, false, q);
            snprintf(q, sizeof q, "%s.transformer_blocks.%d.attn%d.to_k", p, d, a);
            tw_lin(t, c, kv, false, q);
            snprintf(q, sizeof q, "%s.transformer_blocks.%d.attn%d.to_v", p, d, a);
            tw_lin(t, c, kv, false, q);
            snprintf(q, sizeof q, "%s.transformer_blocks.%d.attn%d.to_out.0", p, d, a);
            tw_lin(t, c, c, true, q);
        }
        snprintf(q, sizeof q, "%s.transformer_blocks.%d.ff.net.0.proj", p, d);
        tw_lin(t, 8 * c, c, true, q);
        snprintf(q, sizeof q, "%s.transformer_blocks.%d.ff.net.2", p, d);
        tw_lin(t, c, 4 * c, true, q);
    }
}

/* Builds every weight of the tiny UNet described by cfg (LDM names and order). */
static void tiny_build(struct tiny *t, const struct tiny_cfg *cfg, uint64_t seed) {
    memset(t, 0, sizeof *t);
    t->cfg = *cfg;
    t->rng = seed;
    int ch = cfg->ch, emb = 4 * ch;
    char p[96];
    tw_lin(t, emb, ch, true, "time_embed.0");
    tw_lin(t, emb, emb, true, "time_embed.2");
    tw_conv(t, ch, cfg->in_ch, 3, "input_blocks.0.0");
    int64_t skip_c[32];
    int ns = 0, ib = 1;
    skip_c[ns++] = ch;
    int64_t c = ch;
    for (int l = 0; l < cfg->n_lev; l++) {
        for (int r = 0; r < cfg->n_res; r++, ib++) {
            snprintf(p, sizeof p, "input_blocks.%d.0", ib);
            tw_res(t, p, c, (int64_t)ch * cfg->mult[l]);
            c = (int64_t)ch * cfg->mult[l];
            if (cfg->attn_lev >> l & 1) {
                snprintf(p, sizeof p, "input_blocks.%d.1", ib);
                tw_st(t, p, c);
            }
            skip_c[ns++] = c;
        }
        if (l + 1 < cfg->n_lev) {
            snprintf(p, sizeof p, "input_blocks.%d.0.op", ib++);
            tw_conv(t, c, c, 3, p);
            skip_c[ns++] = c;
        }
    }
    tw_res(t, "middle_block.0", c, c);
    tw_st(t, "middle_block.1", c);
    tw_res(t, "middle_block.2", c, c);
    int ob = 0;
    for (int l = cfg->n_lev - 1; l >= 0; l--)
        for (int r = 0; r <= cfg->n_res; r++, ob++) {
            int64_t co = (int64_t)ch * cfg->mult[l];
            snprintf(p, sizeof p, "output_blocks.%d.0", ob);
            tw_res(t, p, c + skip_c[--ns], co);
            c = co;
            int sub = 1;
            if (cfg->attn_lev >> l & 1) {
                snprintf(p, sizeof p, "output_blocks.%d.1", ob);
                tw_st(t, p, c);
                sub = 2;
            }
            if (l > 0 && r == cfg->n_res) {
                snprintf(p, sizeof p, "output_blocks.%d.%d.conv", ob, sub);
                tw_conv(t, c, c, 3, p);
            }
        }
    tw_vec(t, ch, 1, "out.0", "weight");
    tw_vec(t, ch, 0, "out.0", "bias");
    tw_conv(t, 4, ch, 3, "out.2");
}

static void tiny_free(struct tiny *t) {
    for (int i = 0; i < t->n; i++)
        free(t->w[i].v);
    free(t->w);
}

/* Rounds every weight to F16 in place (the oracle then sees what the file holds) and makes
 * tiny_write store F16, like real checkpoints. */
static void tiny_to_f16(struct tiny *t) {
    for (int i = 0; i < t->n; i++)
        for (int64_t j = 0; j < t->w[i].n; j++)
            t->w[i].v[j] = mx_fp16_to_fp32(mx_fp32_to_fp16(t->w[i].v[j]));
    t->f16 = true;
}

/* Writes the tiny checkpoint (F32, or F16 after tiny_to_f16) to path. */
static void tiny_write(const struct tiny *t, const char *path) {
    struct mx_st_writer *w = mx_st_writer_new();
    assert_non_null(w);
    for (int i = 0; i < t->n; i++) {
        uint16_t *h = NULL;
        if (t->f16) {
            h = malloc((size_t)t->w[i].n * sizeof *h);
            assert_non_null(h);
            for (int64_t j = 0; j < t->w[i].n; j++)
                h[j] = mx_fp32_to_fp16(t->w[i].v[j]);
        }
        assert_int_equal(mx_st_writer_add_tensor(w, t->w[i].name, t->f16 ? MX_ST_F16 : MX_ST_F32,
                                                 t->w[i].nd, t->w[i].shape,
                                                 h ? (const void *)h : (const void *)t->w[i].v),
                         0);
        free(h);
    }
    struct mx_err err = {0};
    if (mx_st_writer_write(w, path, &err) < 0)
        fail_msg("%s", err.msg);
    mx_st_writer_free(w);
}

/* -- float64 blocks: images [C][H][W] of one batch entry, tokens [T][C] -- */

static double *dalloc(int64_t n) {
    double *p = calloc((size_t)n, sizeof *p);
    assert_non_null(p);
    return p;
}

/* y[co][oy][ox] = b + sum w * x over a k x k window (pad k/2), stride s. */
static double *d_conv(const double *x, int64_t ci, int64_t h, int64_t w, const float *wt,
                      const float *b, int64_t co, int k, int s, int64_t *oh, int64_t *ow) {
    int pad = k / 2;
    *oh = (h + 2 * pad - k) / s + 1;
    *ow = (w + 2 * pad - k) / s + 1;
    double *y = dalloc(co * *oh * *ow);
    for (int64_t o = 0; o < co; o++)
        for (int64_t oy = 0; oy < *oh; oy++)
            for (int64_t ox = 0; ox < *ow; ox++) {
                double acc = b[o];
                for (int64_t i = 0; i < ci; i++)
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            int64_t iy = oy * s - pad + ky, ix = ox * s - pad + kx;
                            if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                                continue;
                            acc += (double)wt[((o * ci + i) * k + ky) * k + kx] *
                                   x[(i * h + iy) * w + ix];
                        }
                y[(o * *oh + oy) * *ow + ox] = acc;
            }
    return y;
}

/* GroupNorm(32) over [C][HW], optionally SiLU, in place. */
static void d_gn(double *x, int64_t c, int64_t hw, const float *g, const float *b, double eps,
                 bool silu) {
    int64_t cg = c / 32;
    for (int64_t gi = 0; gi < 32; gi++) {
        double m = 0, v = 0;
        for (int64_t i = 0; i < cg * hw; i++)
            m += x[gi * cg * hw + i];
        m /= (double)(cg * hw);
        for (int64_t i = 0; i < cg * hw; i++)
            v += (x[gi * cg * hw + i] - m) * (x[gi * cg * hw + i] - m);
        v /= (double)(cg * hw);
        for (int64_t i = 0; i < cg * hw; i++) {
            int64_t ch = gi * cg + i / hw;
            double y = (x[gi * cg * hw + i] - m) / sqrt(v + eps) * g[ch] + b[ch];
            x[gi * cg * hw + i] = silu ? y / (1 + exp(-y)) : y;
        }
    }
}

/* y[t][o] = b + W x[t] over T tokens (W torch [o][i]). */
static double *d_lin(const double *x, int64_t T, int64_t in, const float *wt, const float *b,
                     int64_t out) {
    double *y = dalloc(T * out);
    for (int64_t t = 0; t < T; t++)
        for (int64_t o = 0; o < out; o++) {
            double acc = b ? b[o] : 0;
            for (int64_t i = 0; i < in; i++)
                acc += (double)wt[o * in + i] * x[t * in + i];
            y[t * out + o] = acc;
        }
    return y;
}

static double *d_ln(const double *x, int64_t T, int64_t c, const float *g, const float *b) {
    double *y = dalloc(T * c);
    for (int64_t t = 0; t < T; t++) {
        double m = 0, v = 0;
        for (int64_t i = 0; i < c; i++)
            m += x[t * c + i];
        m /= (double)c;
        for (int64_t i = 0; i < c; i++)
            v += (x[t * c + i] - m) * (x[t * c + i] - m);
        v /= (double)c;
        for (int64_t i = 0; i < c; i++)
            y[t * c + i] = (x[t * c + i] - m) / sqrt(v + 1e-5) * g[i] + b[i];
    }
    return y;
}

/* x += attn_a(norm(x), kv) for tokens x [T][c], kv [n_kv][kvd] (NULL: self). */
static void d_attn(const struct tiny *t, const char *p, double *x, int64_t T, int64_t c,
                   const double *kv, int64_t n_kv, int64_t kvd, int a, int nh) {
    char q[200];
    snprintf(q, sizeof q, "%s.norm%d.weight", p, a);
    const float *g = tw(t, "%s", q);
    snprintf(q, sizeof q, "%s.norm%d.bias", p, a);
    double *n = d_ln(x, T, c, g, tw(t, "%s", q));
    if (!kv) {
        kv = n;
        n_kv = T;
        kvd = c;
    }
    double *Q = d_lin(n, T, c, tw(t, "%s.attn%d.to_q.weight", p, a), NULL, c);
    double *K = d_lin(kv, n_kv, kvd, tw(t, "%s.attn%d.to_k.weight", p, a), NULL, c);
    double *V = d_lin(kv, n_kv, kvd, tw(t, "%s.attn%d.to_v.weight", p, a), NULL, c);
    double *O = dalloc(T * c), *s = dalloc(n_kv);
    int64_t hd = c / nh;
    for (int h = 0; h < nh; h++)
        for (int64_t i = 0; i < T; i++) {
            double m = -INFINITY, l = 0;
            for (int64_t j = 0; j < n_kv; j++) {
                double d = 0;
                for (int64_t e = 0; e < hd; e++)
                    d += Q[i * c + h * hd + e] * K[j * c + h * hd + e];
                s[j] = d / sqrt((double)hd);
                m = fmax(m, s[j]);
            }
            for (int64_t j = 0; j < n_kv; j++)
                l += (s[j] = exp(s[j] - m));
            for (int64_t e = 0; e < hd; e++) {
                double acc = 0;
                for (int64_t j = 0; j < n_kv; j++)
                    acc += s[j] * V[j * c + h * hd + e];
                O[i * c + h * hd + e] = acc / l;
            }
        }
    double *y = d_lin(O, T, c, tw(t, "%s.attn%d.to_out.0.weight", p, a),
                      tw(t, "%s.attn%d.to_out.0.bias", p, a), c);
    for (int64_t i = 0; i < T * c; i++)
        x[i] += y[i];
    free(n), free(Q), free(K), free(V), free(O), free(s), free(y);
}

/* ResBlock on x [ci][h][w] with emb [4 ch]; returns [co][h][w]. */
static double *d_res(const struct tiny *t, const char *p, const double *x, int64_t ci,
                     int64_t h, int64_t w, const double *emb, int64_t *co_out) {
    const float *w2 = tw(t, "%s.in_layers.2.weight", p);
    int64_t co = 0, oh, ow, E = 4 * t->cfg.ch;
    for (int i = 0; i < t->n; i++)
        if (t->w[i].v == w2)
            co = t->w[i].shape[0];
    double *a = dalloc(ci * h * w);
    memcpy(a, x, (size_t)(ci * h * w) * sizeof *a);
    d_gn(a, ci, h * w, tw(t, "%s.in_layers.0.weight", p), tw(t, "%s.in_layers.0.bias", p), 1e-5,
         true);
    double *hh = d_conv(a, ci, h, w, w2, tw(t, "%s.in_layers.2.bias", p), co, 3, 1, &oh, &ow);
    double *se = dalloc(E);
    for (int64_t i = 0; i < E; i++)
        se[i] = emb[i] / (1 + exp(-emb[i]));
    double *e = d_lin(se, 1, E, tw(t, "%s.emb_layers.1.weight", p),
                      tw(t, "%s.emb_layers.1.bias", p), co);
    for (int64_t o = 0; o < co; o++)
        for (int64_t i = 0; i < h * w; i++)
            hh[o * h * w + i] += e[o];
    d_gn(hh, co, h * w, tw(t, "%s.out_layers.0.weight", p), tw(t, "%s.out_layers.0.bias", p),
         1e-5, true);
    double *y = d_conv(hh, co, h, w, tw(t, "%s.out_layers.3.weight", p),
                       tw(t, "%s.out_layers.3.bias", p), co, 3, 1, &oh, &ow);
    double *sk = NULL;
    if (ci != co)
        sk = d_conv(x, ci, h, w, tw(t, "%s.skip_connection.weight", p),
                    tw(t, "%s.skip_connection.bias", p), co, 1, 1, &oh, &ow);
    for (int64_t i = 0; i < co * h * w; i++)
        y[i] += sk ? sk[i] : x[i];
    free(a), free(hh), free(se), free(e), free(sk);
    *co_out = co;
    return y;
}

/* SpatialTransformer on x [c][h][w] in place; ctx [n_ctx][ctx_dim]. */
static void d_st(const struct tiny *t, const char *p, double *x, int64_t c, int64_t h, int64_t w,
                 const double *ctx, int64_t n_ctx) {
    int64_t T = h * w;
    int nh = t->cfg.linear ? (int)(c / 64) : 8;
    double *g = dalloc(c * T);
    memcpy(g, x, (size_t)(c * T) * sizeof *g);
    d_gn(g, c, T, tw(t, "%s.norm.weight", p), tw(t, "%s.norm.bias", p), 1e-6, false);
    double *tok = dalloc(T * c);
    for (int64_t i = 0; i < c; i++)
        for (int64_t j = 0; j < T; j++)
            tok[j * c + i] = g[i * T + j];
    /* a 1x1 conv [c][c][1][1] and a linear [c][c] hold the same numbers */
    double *hs = d_lin(tok, T, c, tw(t, "%s.proj_in.weight", p), tw(t, "%s.proj_in.bias", p), c);
    for (int d = 0; d < t->cfg.depth; d++) {
        char q[160];
        snprintf(q, sizeof q, "%s.transformer_blocks.%d", p, d);
        d_attn(t, q, hs, T, c, NULL, 0, 0, 1, nh);
        d_attn(t, q, hs, T, c, ctx, n_ctx, t->cfg.ctx, 2, nh);
        double *n = d_ln(hs, T, c, tw(t, "%s.norm3.weight", q), tw(t, "%s.norm3.bias", q));
        double *gg = d_lin(n, T, c, tw(t, "%s.ff.net.0.proj.weight", q),
                           tw(t, "%s.ff.net.0.proj.bias", q), 8 * c);
        int64_t in = 4 * c;
        double *m = dalloc(T * in);
        for (int64_t j = 0; j < T; j++)
            for (int64_t i = 0; i < in; i++) {
                double z = gg[j * 2 * in + in + i]; /* the gate half; tanh GELU like ggml */
                double ge = 0.5 * z * (1 + tanh(sqrt(2 / M_PI) * (z + 0.044715 * z * z * z)));
                m[j * in + i] = gg[j * 2 * in + i] * ge;
            }
        double *y = d_lin(m, T, in, tw(t, "%s.ff.net.2.weight", q), tw(t, "%s.ff.net.2.bias", q),
                          c);
        for (int64_t i = 0; i < T * c; i++)
            hs[i] += y[i];
        free(n), free(gg), free(m), free(y);
    }
    double *o = d_lin(hs, T, c, tw(t, "%s.proj_out.weight", p), tw(t, "%s.proj_out.bias", p), c);
    for (int64_t i = 0; i < c; i++)
        for (int64_t j = 0; j < T; j++)
            x[i * T + j] += o[j * c + i];
    free(g), free(tok), free(hs), free(o);
}

/* The whole tiny UNet for one batch entry: x [in_ch][h][w] -> eps [4][h][w]. */
static double *d_unet(const struct tiny *t, const float *xin, int64_t H, int64_t W, double ts,
                      const float *ctxf, int64_t n_ctx) {
    const struct tiny_cfg *cf = &t->cfg;
    int64_t ch = cf->ch, E = 4 * ch, half = ch / 2;
    double *te = dalloc(ch), *ctx = dalloc(n_ctx * cf->ctx);
    for (int64_t i = 0; i < n_ctx * cf->ctx; i++)
        ctx[i] = ctxf[i];
    for (int64_t j = 0; j < half; j++) {
        double f = exp(-log(10000.0) * (double)j / (double)half);
        te[j] = cos(ts * f);
        te[half + j] = sin(ts * f);
    }
    double *e1 = d_lin(te, 1, ch, tw(t, "time_embed.0.weight"), tw(t, "time_embed.0.bias"), E);
    for (int64_t i = 0; i < E; i++)
        e1[i] = e1[i] / (1 + exp(-e1[i]));
    double *emb = d_lin(e1, 1, E, tw(t, "time_embed.2.weight"), tw(t, "time_embed.2.bias"), E);
    double *x = dalloc(cf->in_ch * H * W);
    for (int64_t i = 0; i < cf->in_ch * H * W; i++)
        x[i] = xin[i];
    double *skip[32];
    int64_t sc[32], ns = 0, c = ch, h = H, w = W, oh, ow;
    double *cur = d_conv(x, cf->in_ch, H, W, tw(t, "input_blocks.0.0.weight"),
                         tw(t, "input_blocks.0.0.bias"), ch, 3, 1, &oh, &ow);
    skip[ns] = cur, sc[ns++] = c;
    for (int ib = 1; tw_has(t, "input_blocks.%d.0.op.weight", ib) ||
                     tw_has(t, "input_blocks.%d.0.in_layers.2.weight", ib);
         ib++) {
        char p[64];
        if (tw_has(t, "input_blocks.%d.0.op.weight", ib)) {
            cur = d_conv(cur, c, h, w, tw(t, "input_blocks.%d.0.op.weight", ib),
                         tw(t, "input_blocks.%d.0.op.bias", ib), c, 3, 2, &oh, &ow);
            h = oh, w = ow;
        } else {
            snprintf(p, sizeof p, "input_blocks.%d.0", ib);
            cur = d_res(t, p, cur, c, h, w, emb, &c);
            if (tw_has(t, "input_blocks.%d.1.norm.weight", ib)) {
                snprintf(p, sizeof p, "input_blocks.%d.1", ib);
                d_st(t, p, cur, c, h, w, ctx, n_ctx);
            }
        }
        skip[ns] = cur, sc[ns++] = c;
    }
    int n_skips = (int)ns;
    double *m = d_res(t, "middle_block.0", cur, c, h, w, emb, &c);
    d_st(t, "middle_block.1", m, c, h, w, ctx, n_ctx);
    cur = d_res(t, "middle_block.2", m, c, h, w, emb, &c);
    free(m);
    for (int ob = 0; tw_has(t, "output_blocks.%d.0.in_layers.2.weight", ob); ob++) {
        ns--;
        double *cat = dalloc((c + sc[ns]) * h * w);
        memcpy(cat, cur, (size_t)(c * h * w) * sizeof *cat);
        memcpy(cat + c * h * w, skip[ns], (size_t)(sc[ns] * h * w) * sizeof *cat);
        free(cur);
        char p[64];
        snprintf(p, sizeof p, "output_blocks.%d.0", ob);
        int64_t cin = c + sc[ns];
        cur = d_res(t, p, cat, cin, h, w, emb, &c);
        free(cat);
        int sub = 1;
        if (tw_has(t, "output_blocks.%d.1.norm.weight", ob)) {
            snprintf(p, sizeof p, "output_blocks.%d.1", ob);
            d_st(t, p, cur, c, h, w, ctx, n_ctx);
            sub = 2;
        }
        if (tw_has(t, "output_blocks.%d.%d.conv.weight", ob, sub)) {
            double *up = dalloc(c * 4 * h * w);
            for (int64_t i = 0; i < c; i++)
                for (int64_t y = 0; y < 2 * h; y++)
                    for (int64_t xx = 0; xx < 2 * w; xx++)
                        up[(i * 2 * h + y) * 2 * w + xx] = cur[(i * h + y / 2) * w + xx / 2];
            free(cur);
            cur = d_conv(up, c, 2 * h, 2 * w, tw(t, "output_blocks.%d.%d.conv.weight", ob, sub),
                         tw(t, "output_blocks.%d.%d.conv.bias", ob, sub), c, 3, 1, &oh, &ow);
            free(up);
            h *= 2, w *= 2;
        }
    }
    d_gn(cur, c, h * w, tw(t, "out.0.weight"), tw(t, "out.0.bias"), 1e-5, true);
    double *eps = d_conv(cur, c, h, w, tw(t, "out.2.weight"), tw(t, "out.2.bias"), 4, 3, 1, &oh,
                         &ow);
    free(cur), free(te), free(ctx), free(e1), free(emb), free(x);
    for (int i = 0; i < n_skips; i++)
        free(skip[i]);
    return eps;
}

/* Writes the tiny UNet of cfg, opens it, and compares a batch of 2 (different latents, contexts
 * and timesteps, one fractional) with the float64 recomputation. */
static void check_tiny(const struct tiny_cfg *cfg, const char *file, int lw, int lh) {
    struct tiny t;
    tiny_build(&t, cfg, 7);
    tiny_write(&t, file);
    struct mx_err err = {0};
    struct mx_backend *be = mx_backend_cpu_new(2, &err);
    assert_non_null(be);
    struct mx_sd_model *m = NULL;
    if (mx_sd_model_open(be, file, NULL, &m, &err) < 0)
        fail_msg("%s", err.msg);
    struct mx_sd_unet *u = NULL;
    if (mx_sd_unet_new(m, 2, lw, lh, &u, &err) < 0)
        fail_msg("%s", err.msg);
    printf("tiny: %s\n", mx_sd_unet_describe(u));
    int64_t n_ctx = 77, nx = (int64_t)cfg->in_ch * lw * lh, ne = 4 * lw * lh;
    float *x = malloc((size_t)(2 * nx) * sizeof *x), *ctx = malloc((size_t)(2 * n_ctx * cfg->ctx) *
                                                                     sizeof *ctx);
    float *out = malloc((size_t)(2 * ne) * sizeof *out);
    uint64_t r = 99;
    for (int64_t i = 0; i < 2 * nx; i++)
        x[i] = mx_test_randf(&r);
    for (int64_t i = 0; i < 2 * n_ctx * cfg->ctx; i++)
        ctx[i] = mx_test_randf(&r);
    float ts[2] = {999.0f, 499.5f};
    if (mx_sd_unet_eval(u, 2, lw, lh, x, ts, ctx, n_ctx, out, NULL, &err) < 0)
        fail_msg("%s", err.msg);
    for (int b = 0; b < 2; b++) {
        double *want = d_unet(&t, x + b * nx, lh, lw, ts[b], ctx + b * n_ctx * cfg->ctx, n_ctx);
        double e = 0, n = 0;
        for (int64_t i = 0; i < ne; i++) {
            double d = out[b * ne + i] - want[i];
            e += d * d;
            n += want[i] * want[i];
        }
        printf("tiny %s image %d (t %.1f): rel RMS %.3g against float64\n", file, b, ts[b],
               sqrt(e / n));
        assert_true(n > 0 && sqrt(e / n) < 1e-4);
        free(want);
    }
    mx_sd_unet_free(u);
    mx_sd_model_close(m);
    mx_backend_free(be);
    free(x), free(ctx), free(out);
    tiny_free(&t);
    unlink(file);
}

/* SD 1.x shape: 1x1-conv proj_in/out, 8 heads, context 768. */
static void tiny_sd1(void **state) {
    (void)state;
    struct tiny_cfg c = {.ch = 64, .n_lev = 2, .mult = {1, 2}, .n_res = 1, .attn_lev = 3,
                         .linear = false, .ctx = 768, .in_ch = 4, .depth = 1};
    check_tiny(&c, "test_sd_unet_tiny1.safetensors", 8, 8);
}

/* SD 2.x shape: linear proj_in/out, heads of 64, context 1024, depth 2, no attention at the
 * deepest level, and the 9 input channels of an inpainting UNet; a non-square latent. */
static void tiny_sd2(void **state) {
    (void)state;
    struct tiny_cfg c = {.ch = 64, .n_lev = 3, .mult = {1, 2, 2}, .n_res = 1, .attn_lev = 3,
                         .linear = true, .ctx = 1024, .in_ch = 9, .depth = 2};
    check_tiny(&c, "test_sd_unet_tiny2.safetensors", 8, 12);
}

/* A checkpoint with a wrong-shaped UNet tensor is refused at new with its name in the message. */
static void tiny_wrong_shape(void **state) {
    (void)state;
    struct tiny_cfg c = {.ch = 64, .n_lev = 2, .mult = {1, 2}, .n_res = 1, .attn_lev = 3,
                         .linear = false, .ctx = 768, .in_ch = 4, .depth = 1};
    struct tiny t;
    tiny_build(&t, &c, 7);
    const char *bad = "model.diffusion_model.middle_block.0.emb_layers.1.weight";
    bool found = false;
    for (int i = 0; i < t.n; i++)
        if (!strcmp(t.w[i].name, bad)) {
            t.w[i].shape[1] /= 2; /* [128, 256] -> [128, 128] */
            found = true;
        }
    assert_true(found);
    const char *file = "test_sd_unet_bad.safetensors";
    tiny_write(&t, file);
    struct mx_err err = {0};
    struct mx_backend *be = mx_backend_cpu_new(1, &err);
    struct mx_sd_model *m = NULL;
    if (mx_sd_model_open(be, file, NULL, &m, &err) < 0)
        fail_msg("%s", err.msg);
    struct mx_sd_unet *u = NULL;
    assert_int_equal(mx_sd_unet_new(m, 1, 8, 8, &u, &err), MX_EFORMAT);
    assert_null(u);
    printf("refused: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "middle_block.0.emb_layers.1.weight"));
    assert_int_equal(mx_sd_unet_mem(m, 1, 8, 8), 0);
    mx_sd_model_close(m);
    mx_backend_free(be);
    tiny_free(&t);
    unlink(file);
}


/* ---- one block alone against float64 ------------------------------------------------------ */

/* The tiny UNet of cfg with F16 weights, written to file and opened on be (exact-f32 mode, so
 * float64 is the oracle: in the default mode conv inputs of F16 kernels are rounded to f16). */
static struct mx_sd_model *block_model(struct tiny *t, const struct tiny_cfg *cfg,
                                       const char *file, struct mx_backend **be) {
    tiny_build(t, cfg, 21);
    tiny_to_f16(t);
    tiny_write(t, file);
    struct mx_err err = {0};
    *be = mx_backend_cpu_new(2, &err);
    assert_non_null(*be);
    assert_int_equal(mx_backend_set_act_mode(*be, MX_ACT_F32), 0);
    struct mx_sd_model *m = NULL;
    if (mx_sd_model_open(*be, file, NULL, &m, &err) < 0)
        fail_msg("%s", err.msg);
    return m;
}

/* Relative RMS of the float32 result a against the float64 reference r. */
static double rel_rms_d(const float *a, const double *r, int64_t n) {
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        e += ((double)a[i] - r[i]) * ((double)a[i] - r[i]);
        s += r[i] * r[i];
    }
    return sqrt(e / (s > 0 ? s : 1));
}

static const struct tiny_cfg block_sd1 = {.ch = 64, .n_lev = 2, .mult = {1, 2}, .n_res = 1,
                                          .attn_lev = 3, .linear = false, .ctx = 768,
                                          .in_ch = 4, .depth = 1};
static const struct tiny_cfg block_sd2 = {.ch = 64, .n_lev = 3, .mult = {1, 2, 2}, .n_res = 1,
                                          .attn_lev = 3, .linear = true, .ctx = 1024,
                                          .in_ch = 4, .depth = 2};

/* The ResBlocks input_blocks.3.0 (64 -> 128: GN 32 + SiLU + conv, + the time embedding's
 * projection, GN + SiLU + conv, + the 1x1 skip_connection) and input_blocks.1.0 (64 -> 64,
 * identity skip) alone on a 5x3 batch of 2 with different time embeddings, against d_res.
 * Image 0 has a small variance, so that a wrong GroupNorm eps shows. */
static void block_res(void **state) {
    (void)state;
    const char *file = "test_sd_unet_block_res.safetensors";
    struct tiny t;
    struct mx_backend *be;
    struct mx_sd_model *m = block_model(&t, &block_sd1, file, &be);
    static const struct { const char *p; int64_t ci, co; } cs[] = {
        {"input_blocks.3.0", 64, 128}, {"input_blocks.1.0", 64, 64}};
    enum { W = 5, H = 3, N = 2 };
    int64_t E = 4 * block_sd1.ch;
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        int64_t ci = cs[c].ci, co = cs[c].co, nx = ci * H * W, ny = co * H * W;
        float *x = malloc((size_t)(N * nx) * sizeof *x), *y = malloc((size_t)(N * ny) * sizeof *y);
        float *emb = malloc((size_t)(N * E) * sizeof *emb);
        double *xd = dalloc(nx), *ed = dalloc(E);
        assert_true(x && y && emb);
        uint64_t r = 31 + c;
        for (int64_t i = 0; i < N * nx; i++) /* image 0 of small variance: eps matters */
            x[i] = (i < nx ? 0.03f : 1.5f) * (mx_test_randf(&r) + 0.2f);
        for (int64_t i = 0; i < N * E; i++)
            emb[i] = 2.0f * mx_test_randf(&r);
        struct mx_err err = {0};
        if (mx_sd_unet_block(m, cs[c].p, false, ci, co, W, H, N, x, emb, NULL, 0, y, &err) < 0)
            fail_msg("%s", err.msg);
        for (int b = 0; b < N; b++) {
            for (int64_t i = 0; i < nx; i++)
                xd[i] = x[b * nx + i];
            for (int64_t i = 0; i < E; i++)
                ed[i] = emb[b * E + i];
            int64_t co_ref;
            double *want = d_res(&t, cs[c].p, xd, ci, H, W, ed, &co_ref);
            assert_int_equal(co_ref, co);
            double e = rel_rms_d(y + b * ny, want, ny);
            printf("ResBlock %s %lld -> %lld image %d: rel RMS %.3g against float64\n", cs[c].p,
                   (long long)ci, (long long)co, b, e);
            assert_true(e < 1e-5); /* f32 sums of <= 1152 terms: ~1e-7 */
            free(want);
        }
        free(x), free(y), free(emb), free(xd), free(ed);
    }
    mx_sd_model_close(m);
    mx_backend_free(be);
    tiny_free(&t);
    unlink(file);
}

/* The SpatialTransformer at prefix (c channels) of the tiny UNet cfg alone on a 4x3 batch of 2
 * with different contexts of 5 tokens, against d_st (GN, proj_in, per block LN + self-attention,
 * LN + cross-attention, LN + GEGLU, then proj_out and the residual). Image 0 has a small
 * variance, so that a wrong GroupNorm eps shows. */
static void check_block_st(const struct tiny_cfg *cfg, const char *prefix, int64_t c,
                           const char *file) {
    struct tiny t;
    struct mx_backend *be;
    struct mx_sd_model *m = block_model(&t, cfg, file, &be);
    enum { W = 4, H = 3, N = 2, NCTX = 5 };
    int64_t nx = c * H * W, nc = (int64_t)NCTX * cfg->ctx;
    float *x = malloc((size_t)(N * nx) * sizeof *x), *y = malloc((size_t)(N * nx) * sizeof *y);
    float *ctx = malloc((size_t)(N * nc) * sizeof *ctx);
    double *xd = dalloc(nx), *cd = dalloc(nc);
    assert_true(x && y && ctx);
    uint64_t r = 43;
    for (int64_t i = 0; i < N * nx; i++) /* image 0 of small variance: GroupNorm's eps matters */
        x[i] = (i < nx ? 0.02f : 1.5f) * (mx_test_randf(&r) - 0.2f);
    for (int64_t i = 0; i < N * nc; i++)
        ctx[i] = mx_test_randf(&r);
    struct mx_err err = {0};
    if (mx_sd_unet_block(m, prefix, true, c, c, W, H, N, x, NULL, ctx, NCTX, y, &err) < 0)
        fail_msg("%s", err.msg);
    for (int b = 0; b < N; b++) {
        for (int64_t i = 0; i < nx; i++)
            xd[i] = x[b * nx + i];
        for (int64_t i = 0; i < nc; i++)
            cd[i] = ctx[b * nc + i];
        d_st(&t, prefix, xd, c, H, W, cd, NCTX);
        double e = rel_rms_d(y + b * nx, xd, nx);
        /* the block's own contribution y - x (the residual x would hide errors in it) */
        double de = 0, dn = 0;
        for (int64_t i = 0; i < nx; i++) {
            double got = (double)y[b * nx + i] - x[b * nx + i], want = xd[i] - x[b * nx + i];
            de += (got - want) * (got - want);
            dn += want * want;
        }
        de = sqrt(de / dn);
        printf("SpatialTransformer %s (%s proj, depth %d) image %d: rel RMS %.3g (of y - x: "
               "%.3g) against float64\n", prefix, cfg->linear ? "linear" : "conv", cfg->depth,
               b, e, de);
        assert_true(e < 1e-5);
        assert_true(dn > 0 && de < 1e-5);
    }
    free(x), free(y), free(ctx), free(xd), free(cd);
    mx_sd_model_close(m);
    mx_backend_free(be);
    tiny_free(&t);
    unlink(file);
}

/* SD 1.x: 1x1-conv proj_in/out, 8 heads of 8, context 768, depth 1. */
static void block_st_sd1(void **state) {
    (void)state;
    check_block_st(&block_sd1, "input_blocks.1.1", 64, "test_sd_unet_block_st1.safetensors");
}

/* SD 2.x: linear proj_in/out, 2 heads of 64, context 1024, depth 2. */
static void block_st_sd2(void **state) {
    (void)state;
    check_block_st(&block_sd2, "input_blocks.3.1", 128, "test_sd_unet_block_st2.safetensors");
}

/* ---- bench -------------------------------------------------------------------------------- */

/* MX_UNET_BENCH=WxH: one batch-2 eval at that latent size on the SD 1.5 checkpoint, timed,
 * with the op-class profile of a second eval. */
static int bench(const char *spec) {
    int lw = 64, lh = 64, reps = 1;
    sscanf(spec, "%dx%d", &lw, &lh);
    const char *r = getenv("MX_UNET_BENCH_REPS");
    if (r)
        reps = atoi(r);
    if (!sd_open())
        return MX_TEST_SKIP;
    struct mx_err err = {0};
    struct mx_sd_unet *u = NULL;
    if (mx_sd_unet_new(g_sd.m, 2, lw, lh, &u, &err) < 0) {
        printf("unet: %s\n", err.msg);
        return 1;
    }
    size_t nl = (size_t)4 * lw * lh, nc = (size_t)77 * 768;
    float *x = malloc(2 * nl * sizeof *x), *ctx = malloc(2 * nc * sizeof *ctx);
    float *out = malloc(2 * nl * sizeof *out);
    uint64_t s = 1;
    for (size_t i = 0; i < 2 * nl; i++)
        x[i] = mx_test_randf(&s);
    for (size_t i = 0; i < 2 * nc; i++)
        ctx[i] = mx_test_randf(&s);
    float ts[2] = {999.0f, 999.0f};
    printf("unet: %s; scratch %.1f MiB at %dx%d batch 2; mem estimate %.1f MiB\n",
           mx_sd_unet_describe(u), mx_sd_unet_scratch_bytes(u) / 1048576.0, lw, lh,
           mx_sd_unet_mem(g_sd.m, 2, lw, lh) / 1048576.0);
    for (int k = 0; k < reps; k++) {
        double t0 = mx_time_s(), c0 = cpu_s();
        if (mx_sd_unet_eval(u, 2, lw, lh, x, ts, ctx, 77, out, NULL, &err) < 0) {
            printf("unet: %s\n", err.msg);
            return 1;
        }
        printf("eval %d: %.2f s wall, %.2f s CPU (batch 2, %dx%d latent)\n", k,
               mx_time_s() - t0, cpu_s() - c0, lw, lh);
    }
    if (getenv("MX_UNET_PROFILE")) {
        mx_sd_unet_set_profile(u, 1);
        double t0 = mx_time_s();
        mx_sd_unet_eval(u, 2, lw, lh, x, ts, ctx, 77, out, NULL, &err);
        double tot = mx_time_s() - t0;
        struct mx_sd_unet_profile p;
        mx_sd_unet_get_profile(u, &p);
        const char *nm[] = {"conv", "matmul", "attn", "norm", "eltwise"};
        printf("profiled eval: %.2f s\n", tot);
        for (int i = 0; i < MX_SD_UNET_PROF_COUNT; i++)
            printf("  %-8s %7.2f s wall %5.1f%%, %7.2f s CPU (%lld calls)\n", nm[i], p.s[i],
                   100 * p.s[i] / tot, p.cpu[i], (long long)p.n[i]);
    }
    mx_sd_unet_free(u);
    free(x);
    free(ctx);
    free(out);
    sd_teardown(NULL);
    return 0;
}

int main(void) {
    const char *b = getenv("MX_UNET_BENCH");
    if (b)
        return bench(b);
    const struct CMUnitTest refs[] = {
        cmocka_unit_test(refs_s01),
        cmocka_unit_test(refs_s06),
        cmocka_unit_test(refs_s08),
    };
    const struct CMUnitTest tiny[] = {
        cmocka_unit_test(tiny_sd1),
        cmocka_unit_test(tiny_sd2),
        cmocka_unit_test(tiny_wrong_shape),
        cmocka_unit_test(block_res),
        cmocka_unit_test(block_st_sd1),
        cmocka_unit_test(block_st_sd2),
    };
    int fails = cmocka_run_group_tests_name("sd_unet_tiny", tiny, NULL, NULL);
    fails += cmocka_run_group_tests_name("sd_unet_refs", refs, sd_setup, sd_teardown);
    return mx_test_status(fails);
}
