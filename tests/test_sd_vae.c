/* test_sd_vae.c - the Stable Diffusion VAE (core/diffusion/vae.c).
 *
 * Oracles:
 *   - one ResnetBlock, the attention block and a decoder up block (3 ResnetBlocks, nearest x2,
 *     conv) on tiny random F16 weights against float64 scalar
 *     recomputations written here from the LDM definitions;
 *   - the decoder and the encoder against stable-diffusion.cpp's dumped tensors for the random
 *     SD 1.5 checkpoint (../shared/refs/sd: sd-s01 8x8 and sd-s06 16x16 latents, sd-s08's init
 *     image moments), within the README's bar (relative RMS <= 1e-2; the peer computes its convs
 *     with f16 activations, we keep f32, so ~1e-3 is the expected distance);
 *   - the tiled decode against the untiled one on the same latent;
 *   - missing / wrong-shape tensors give the message naming the tensor.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/base/util.h"
#include "core/diffusion/sd_model.h"
#include "core/diffusion/vae.h"
#include "core/diffusion/vae_impl.h"
#include "core/format/safetensors.h"
#include "core/image/image.h"
#include "kernels/backend.h"
#include "tests/mx_test.h"

static struct mx_backend *be;
static char tmpdir[256];

/* ---- tiny checkpoints -------------------------------------------------------------------- */

/* A tensor being written: values rounded to F16 (what the file holds) kept as doubles. */
struct tw {
    struct mx_st_writer *w;
    uint64_t seed;
};

/* Adds an F16 tensor of random values in [-scale, scale) (+ offset) with the given torch shape;
 * *out (if not NULL) receives the rounded values (caller frees). */
static void add_f16(struct tw *t, const char *name, int nd, const int64_t *shape, float scale,
                    float offset, double **out) {
    int64_t n = 1;
    for (int i = 0; i < nd; i++)
        n *= shape[i];
    uint16_t *h = malloc((size_t)n * sizeof *h);
    double *d = malloc((size_t)n * sizeof *d);
    assert_non_null(h);
    assert_non_null(d);
    for (int64_t i = 0; i < n; i++) {
        h[i] = mx_fp32_to_fp16(offset + scale * mx_test_randf(&t->seed));
        d[i] = mx_fp16_to_fp32(h[i]);
    }
    assert_int_equal(mx_st_writer_add_tensor(t->w, name, MX_ST_F16, nd, shape, h), 0);
    free(h);
    if (out)
        *out = d;
    else
        free(d);
}

/* The two tensors sd_model's family detection needs, tiny. */
static void add_unet_stub(struct tw *t) {
    add_f16(t, "model.diffusion_model.input_blocks.0.0.weight", 4, (int64_t[]){32, 4, 3, 3}, 0.1f,
            0, NULL);
    add_f16(t, "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", 2,
            (int64_t[]){32, 768}, 0.1f, 0, NULL);
}

static struct mx_sd_model *open_written(struct tw *t, const char *file) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, file);
    struct mx_err err = {0};
    assert_int_equal(mx_st_writer_write(t->w, path, &err), 0);
    mx_st_writer_free(t->w);
    struct mx_sd_model *m = NULL;
    int rc = mx_sd_model_open(be, path, NULL, &m, &err);
    if (rc < 0)
        fail_msg("%s", err.msg);
    return m;
}

/* ---- float64 oracles --------------------------------------------------------------------- */

/* GroupNorm (32 groups, eps 1e-6) of x [c][n] in place. */
static void ref_group_norm(double *x, int c, int n, const double *g, const double *b) {
    int cg = c / 32;
    for (int grp = 0; grp < 32; grp++) {
        double s = 0, s2 = 0, cnt = (double)cg * n;
        for (int i = grp * cg * n; i < (grp + 1) * cg * n; i++)
            s += x[i];
        double mean = s / cnt;
        for (int i = grp * cg * n; i < (grp + 1) * cg * n; i++)
            s2 += (x[i] - mean) * (x[i] - mean);
        double inv = 1.0 / sqrt(s2 / cnt + 1e-6);
        for (int ch = grp * cg; ch < (grp + 1) * cg; ch++)
            for (int i = 0; i < n; i++)
                x[ch * n + i] = (x[ch * n + i] - mean) * inv * g[ch] + b[ch];
    }
}

static void ref_silu(double *x, int n) {
    for (int i = 0; i < n; i++)
        x[i] = x[i] / (1.0 + exp(-x[i]));
}

/* y [co][h][w] = conv(x [ci][h][w]) with a k x k kernel (torch layout [co][ci][k][k]), pad k/2. */
static void ref_conv(double *y, const double *x, const double *wt, const double *bias, int ci,
                     int co, int k, int w, int h) {
    int p = k / 2;
    for (int o = 0; o < co; o++)
        for (int yy = 0; yy < h; yy++)
            for (int xx = 0; xx < w; xx++) {
                double s = bias[o];
                for (int i = 0; i < ci; i++)
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            int iy = yy + ky - p, ix = xx + kx - p;
                            if (iy >= 0 && iy < h && ix >= 0 && ix < w)
                                s += wt[((o * ci + i) * k + ky) * k + kx] *
                                     x[(i * h + iy) * w + ix];
                        }
                y[(o * h + yy) * w + xx] = s;
            }
}

/* Relative RMS of a against the reference r. */
static double rel_rms(const float *a, const double *r, size_t n) {
    double e = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        e += (a[i] - r[i]) * (a[i] - r[i]);
        s += r[i] * r[i];
    }
    return sqrt(e / (s > 0 ? s : 1));
}

static double rel_rms_f(const float *a, const float *r, size_t n) {
    double e = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        e += ((double)a[i] - r[i]) * ((double)a[i] - r[i]);
        s += (double)r[i] * r[i];
    }
    return sqrt(e / (s > 0 ? s : 1));
}

/* ---- the VAE's conv shapes on the CPU backend ------------------------------------------- */

/* mx_op_conv2d with stride 1 against float64 on the VAE's shapes and the gather's edge cases: a
 * 3x3 "same" conv over 512 channels whose second pixel tile starts inside an image row, a 3x3
 * "valid" conv (output narrower than the input) likewise, a 1x1 over several tiles, a padded
 * 1x1. Exact-f32 mode (no f16 rounding of the inputs), so float64 is the oracle. */
static void test_conv_s1_matches_scalar(void **state) {
    (void)state;
    mx_backend_set_act_mode(be, MX_ACT_F32);
    static const struct { int w, h, ci, co, k, pad, f16; } cs[] = {
        {37, 11, 512, 5, 3, 1, 1}, {20, 20, 512, 3, 3, 0, 0}, {70, 60, 64, 16, 1, 0, 1},
        {5, 4, 8, 6, 1, 1, 0}, {9, 7, 32, 4, 3, 1, 0},
    };
    uint64_t seed = 17;
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        int W = cs[c].w, H = cs[c].h, CI = cs[c].ci, CO = cs[c].co, K = cs[c].k, pd = cs[c].pad;
        int WO = W + 2 * pd - K + 1, HO = H + 2 * pd - K + 1;
        size_t nx = (size_t)W * H * CI, nw = (size_t)K * K * CI * CO, ny = (size_t)WO * HO * CO;
        float *x = malloc(nx * sizeof *x), *wf = malloc(nw * sizeof *wf), *y = malloc(ny * 4);
        float *bias = malloc((size_t)CO * sizeof *bias);
        uint16_t *wh = malloc(nw * sizeof *wh);
        double *yd = malloc(ny * sizeof *yd);
        for (size_t i = 0; i < nx; i++)
            x[i] = mx_test_randf(&seed);
        for (size_t i = 0; i < nw; i++) {
            wh[i] = mx_fp32_to_fp16(mx_test_randf(&seed));
            wf[i] = cs[c].f16 ? mx_fp16_to_fp32(wh[i]) : mx_test_randf(&seed);
        }
        for (int i = 0; i < CO; i++)
            bias[i] = mx_test_randf(&seed);
        struct mx_tensor xt, wt, bt, yt;
        mx_tensor_init(&xt, MX_TYPE_F32, W, H, CI, 1);
        mx_tensor_init(&wt, cs[c].f16 ? MX_TYPE_F16 : MX_TYPE_F32, K, K, CI, CO);
        mx_tensor_init(&bt, MX_TYPE_F32, CO, 1, 1, 1);
        mx_tensor_init(&yt, MX_TYPE_F32, WO, HO, CO, 1);
        xt.data = x, wt.data = cs[c].f16 ? (void *)wh : (void *)wf, bt.data = bias, yt.data = y;
        struct mx_conv2d_params p = {1, 1, pd, pd, 1, 1};
        assert_int_equal(mx_op_conv2d(be, &yt, &xt, &wt, &bt, &p), 0);
        for (int o = 0; o < CO; o++)
            for (int oy = 0; oy < HO; oy++)
                for (int ox = 0; ox < WO; ox++) {
                    double sum = bias[o];
                    for (int i = 0; i < CI; i++)
                        for (int ky = 0; ky < K; ky++)
                            for (int kx = 0; kx < K; kx++) {
                                int iy = oy + ky - pd, ix = ox + kx - pd;
                                if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                                    sum += (double)wf[((o * CI + i) * K + ky) * K + kx] *
                                           x[((size_t)i * H + iy) * W + ix];
                            }
                    yd[((size_t)o * HO + oy) * WO + ox] = sum;
                }
        double e = rel_rms(y, yd, ny);
        printf("conv %dx%d %d->%d k%d pad %d: rel RMS %.3g\n", W, H, CI, CO, K, pd, e);
        assert_true(e < 1e-5); /* f32 sums of <= 4608 terms */
        free(x), free(wf), free(y), free(bias), free(wh), free(yd);
    }
}

/* ---- block tests ------------------------------------------------------------------------- */

/* A ResnetBlock 32 -> 64 channels (so with the 1x1 nin_shortcut) on a 5x4 input. */
static void test_resblock_matches_scalar(void **state) {
    (void)state;
    mx_backend_set_act_mode(be, MX_ACT_F32); /* exact f32 activations: compared with float64 */
    enum { CI = 32, CO = 64, W = 5, H = 4, N = W * H };
    const char *P = "first_stage_model.decoder.mid.block_1";
    struct tw t = {mx_st_writer_new(), 7};
    add_unet_stub(&t);
    double *n1g, *n1b, *c1w, *c1b, *n2g, *n2b, *c2w, *c2b, *nw, *nb;
    char name[160];
#define ADD(field, nd, shp, sc, off, out)                                                         \
    snprintf(name, sizeof name, "%s.%s", P, field);                                               \
    add_f16(&t, name, nd, (int64_t[])shp, sc, off, out)
#define SHP(...) {__VA_ARGS__}
    ADD("norm1.weight", 1, SHP(CI), 0.3f, 1.0f, &n1g);
    ADD("norm1.bias", 1, SHP(CI), 0.2f, 0, &n1b);
    ADD("conv1.weight", 4, SHP(CO, CI, 3, 3), 0.06f, 0, &c1w);
    ADD("conv1.bias", 1, SHP(CO), 0.1f, 0, &c1b);
    ADD("norm2.weight", 1, SHP(CO), 0.3f, 1.0f, &n2g);
    ADD("norm2.bias", 1, SHP(CO), 0.2f, 0, &n2b);
    ADD("conv2.weight", 4, SHP(CO, CO, 3, 3), 0.04f, 0, &c2w);
    ADD("conv2.bias", 1, SHP(CO), 0.1f, 0, &c2b);
    ADD("nin_shortcut.weight", 4, SHP(CO, CI, 1, 1), 0.2f, 0, &nw);
    ADD("nin_shortcut.bias", 1, SHP(CO), 0.1f, 0, &nb);
    struct mx_sd_model *m = open_written(&t, "res.safetensors");
    float x[CI * N], y[CO * N];
    double xd[CI * N], h1[CI * N], h2[CO * N], h3[CO * N], sk[CO * N];
    uint64_t s = 99;
    for (int i = 0; i < CI * N; i++)
        xd[i] = x[i] = 2.0f * mx_test_randf(&s) + 0.5f;
    struct mx_err err = {0};
    int rc = mx_sd_vae_block(m, P, false, CI, CO, W, H, x, y, &err);
    if (rc < 0)
        fail_msg("%s", err.msg);
    memcpy(h1, xd, sizeof h1);
    ref_group_norm(h1, CI, N, n1g, n1b);
    ref_silu(h1, CI * N);
    ref_conv(h2, h1, c1w, c1b, CI, CO, 3, W, H);
    ref_group_norm(h2, CO, N, n2g, n2b);
    ref_silu(h2, CO * N);
    ref_conv(h3, h2, c2w, c2b, CO, CO, 3, W, H);
    ref_conv(sk, xd, nw, nb, CI, CO, 1, W, H);
    for (int i = 0; i < CO * N; i++)
        h3[i] += sk[i];
    double e = rel_rms(y, h3, CO * N);
    printf("resblock rel RMS vs float64: %.3g\n", e);
    assert_true(e < 1e-5); /* f32 sums of <= 576 terms: ~1e-7 */
    free(n1g), free(n1b), free(c1w), free(c1b), free(n2g), free(n2b), free(c2w), free(c2b);
    free(nw), free(nb);
    mx_sd_model_close(m);
}

/* The attention block over 64 channels on a 4x3 input (12 tokens). */
static void test_attention_matches_scalar(void **state) {
    (void)state;
    mx_backend_set_act_mode(be, MX_ACT_F32); /* exact f32 activations: compared with float64 */
    enum { C = 64, W = 4, H = 3, N = W * H };
    const char *P = "first_stage_model.decoder.mid.attn_1";
    struct tw t = {mx_st_writer_new(), 11};
    add_unet_stub(&t);
    double *g, *b, *wq, *bq, *wk, *bk, *wv, *bv, *wp, *bp;
    char name[160];
    ADD("norm.weight", 1, SHP(C), 0.3f, 1.0f, &g);
    ADD("norm.bias", 1, SHP(C), 0.2f, 0, &b);
    ADD("q.weight", 4, SHP(C, C, 1, 1), 0.3f, 0, &wq);
    ADD("q.bias", 1, SHP(C), 0.1f, 0, &bq);
    ADD("k.weight", 4, SHP(C, C, 1, 1), 0.3f, 0, &wk);
    ADD("k.bias", 1, SHP(C), 0.1f, 0, &bk);
    ADD("v.weight", 4, SHP(C, C, 1, 1), 0.2f, 0, &wv);
    ADD("v.bias", 1, SHP(C), 0.1f, 0, &bv);
    ADD("proj_out.weight", 4, SHP(C, C, 1, 1), 0.2f, 0, &wp);
    ADD("proj_out.bias", 1, SHP(C), 0.1f, 0, &bp);
    struct mx_sd_model *m = open_written(&t, "attn.safetensors");
    float x[C * N], y[C * N];
    double xd[C * N], hn[C * N], q[C * N], k[C * N], v[C * N], o[C * N], out[C * N];
    uint64_t s = 5;
    for (int i = 0; i < C * N; i++)
        xd[i] = x[i] = 1.5f * mx_test_randf(&s);
    struct mx_err err = {0};
    int rc = mx_sd_vae_block(m, P, true, C, C, W, H, x, y, &err);
    if (rc < 0)
        fail_msg("%s", err.msg);
    memcpy(hn, xd, sizeof hn);
    ref_group_norm(hn, C, N, g, b);
    ref_conv(q, hn, wq, bq, C, C, 1, W, H);
    ref_conv(k, hn, wk, bk, C, C, 1, W, H);
    ref_conv(v, hn, wv, bv, C, C, 1, W, H);
    for (int i = 0; i < N; i++) { /* token i attends every token j */
        double sc[N], mx = -1e300, sum = 0;
        for (int j = 0; j < N; j++) {
            sc[j] = 0;
            for (int c = 0; c < C; c++)
                sc[j] += q[c * N + i] * k[c * N + j];
            sc[j] /= sqrt((double)C);
            mx = sc[j] > mx ? sc[j] : mx;
        }
        for (int j = 0; j < N; j++)
            sum += (sc[j] = exp(sc[j] - mx));
        for (int c = 0; c < C; c++) {
            double a = 0;
            for (int j = 0; j < N; j++)
                a += sc[j] / sum * v[c * N + j];
            o[c * N + i] = a;
        }
    }
    ref_conv(out, o, wp, bp, C, C, 1, W, H);
    for (int i = 0; i < C * N; i++)
        out[i] += xd[i];
    double e = rel_rms(y, out, C * N);
    printf("attention rel RMS vs float64: %.3g\n", e);
    assert_true(e < 1e-5);
    free(g), free(b), free(wq), free(bq), free(wk), free(bk), free(wv), free(bv), free(wp);
    free(bp);
    mx_sd_model_close(m);
}

/* The float64 ResnetBlock under prefix P (weights from the tensors added with ADD, in the order
 * norm1 w b, conv1 w b, norm2 w b, conv2 w b, nin_shortcut w b): y [co][h][w] from x [ci][h][w]. */
static void ref_resnet(double *y, const double *x, double *const wt[10], int ci, int co, int w,
                       int h) {
    int n = w * h;
    double *h1 = malloc((size_t)(ci * n) * sizeof *h1), *h2 = malloc((size_t)(co * n) * sizeof *h2);
    assert_true(h1 && h2);
    memcpy(h1, x, (size_t)(ci * n) * sizeof *h1);
    ref_group_norm(h1, ci, n, wt[0], wt[1]);
    ref_silu(h1, ci * n);
    ref_conv(h2, h1, wt[2], wt[3], ci, co, 3, w, h);
    ref_group_norm(h2, co, n, wt[4], wt[5]);
    ref_silu(h2, co * n);
    ref_conv(y, h2, wt[6], wt[7], co, co, 3, w, h);
    if (ci != co)
        ref_conv(h2, x, wt[8], wt[9], ci, co, 1, w, h);
    for (int i = 0; i < co * n; i++)
        y[i] += ci != co ? h2[i] : x[i];
    free(h1), free(h2);
}

/* A decoder up block (up.1's layout: block.0 64 -> 32 with the nin_shortcut, block.1 and
 * block.2 32 -> 32, nearest x2, upsample.conv) on a 5x4 input against float64. */
static void test_up_block_matches_scalar(void **state) {
    (void)state;
    mx_backend_set_act_mode(be, MX_ACT_F32); /* exact f32 activations: compared with float64 */
    enum { CI = 64, CO = 32, W = 5, H = 4, N = W * H, N2 = 4 * N };
    const char *P = "first_stage_model.decoder.up.1";
    struct tw t = {mx_st_writer_new(), 13};
    add_unet_stub(&t);
    double *wt[3][10], *uw, *ub;
    char name[160];
    for (int j = 0; j < 3; j++) {
        int ci = j ? CO : CI;
#define ADDJ(field, i, nd, shp, sc, off)                                                          \
    snprintf(name, sizeof name, "%s.block.%d.%s", P, j, field);                                   \
    add_f16(&t, name, nd, (int64_t[])shp, sc, off, &wt[j][i])
        ADDJ("norm1.weight", 0, 1, SHP(ci), 0.3f, 1.0f);
        ADDJ("norm1.bias", 1, 1, SHP(ci), 0.2f, 0);
        ADDJ("conv1.weight", 2, 4, SHP(CO, ci, 3, 3), 0.5f / sqrtf(9.0f * ci), 0);
        ADDJ("conv1.bias", 3, 1, SHP(CO), 0.1f, 0);
        ADDJ("norm2.weight", 4, 1, SHP(CO), 0.3f, 1.0f);
        ADDJ("norm2.bias", 5, 1, SHP(CO), 0.2f, 0);
        ADDJ("conv2.weight", 6, 4, SHP(CO, CO, 3, 3), 0.5f / sqrtf(9.0f * CO), 0);
        ADDJ("conv2.bias", 7, 1, SHP(CO), 0.1f, 0);
        wt[j][8] = wt[j][9] = NULL;
        if (ci != CO) {
            ADDJ("nin_shortcut.weight", 8, 4, SHP(CO, ci, 1, 1), 0.2f, 0);
            ADDJ("nin_shortcut.bias", 9, 1, SHP(CO), 0.1f, 0);
        }
#undef ADDJ
    }
    ADD("upsample.conv.weight", 4, SHP(CO, CO, 3, 3), 0.5f / sqrtf(9.0f * CO), 0, &uw);
    ADD("upsample.conv.bias", 1, SHP(CO), 0.1f, 0, &ub);
    struct mx_sd_model *m = open_written(&t, "up.safetensors");
    float x[CI * N], y[CO * N2];
    double xd[CI * N], a[CO * N], b2[CO * N], up[CO * N2], out[CO * N2];
    uint64_t s = 23;
    for (int i = 0; i < CI * N; i++)
        xd[i] = x[i] = 1.5f * mx_test_randf(&s) + 0.3f;
    struct mx_err err = {0};
    int rc = mx_sd_vae_up_block(m, P, true, CI, CO, W, H, x, y, &err);
    if (rc < 0)
        fail_msg("%s", err.msg);
    ref_resnet(a, xd, wt[0], CI, CO, W, H);
    ref_resnet(b2, a, wt[1], CO, CO, W, H);
    ref_resnet(a, b2, wt[2], CO, CO, W, H);
    for (int c = 0; c < CO; c++) /* nearest x2 */
        for (int yy = 0; yy < 2 * H; yy++)
            for (int xx = 0; xx < 2 * W; xx++)
                up[(c * 2 * H + yy) * 2 * W + xx] = a[(c * H + yy / 2) * W + xx / 2];
    ref_conv(out, up, uw, ub, CO, CO, 3, 2 * W, 2 * H);
    double e = rel_rms(y, out, CO * N2);
    printf("up block rel RMS vs float64: %.3g\n", e);
    assert_true(e < 1e-5); /* f32 sums of <= 576 terms, four blocks deep */
    for (int j = 0; j < 3; j++)
        for (int i = 0; i < 10; i++)
            free(wt[j][i]);
    free(uw), free(ub);
    mx_sd_model_close(m);
}

/* A checkpoint without a VAE, and one whose conv_in has the wrong width: the message names the
 * tensor and the shapes. */
static void test_missing_and_wrong_shape(void **state) {
    (void)state;
    mx_backend_set_act_mode(be, MX_ACT_GGML); /* the peer's numerics (f16 conv inputs) */
    struct tw t = {mx_st_writer_new(), 3};
    add_unet_stub(&t);
    struct mx_sd_model *m = open_written(&t, "novae.safetensors");
    struct mx_sd_vae *v = NULL;
    struct mx_err err = {0};
    assert_int_equal(mx_sd_vae_new(m, &v, &err), MX_EFORMAT);
    assert_null(v);
    printf("missing: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "first_stage_model.post_quant_conv.weight"));
    assert_non_null(strstr(err.msg, "missing"));
    mx_sd_model_close(m);

    t = (struct tw){mx_st_writer_new(), 4};
    add_unet_stub(&t);
    add_f16(&t, "first_stage_model.post_quant_conv.weight", 4, (int64_t[]){4, 4, 1, 1}, 0.1f, 0,
            NULL);
    add_f16(&t, "first_stage_model.post_quant_conv.bias", 1, (int64_t[]){4}, 0.1f, 0, NULL);
    add_f16(&t, "first_stage_model.decoder.conv_in.weight", 4, (int64_t[]){256, 4, 3, 3}, 0.1f,
            0, NULL);
    m = open_written(&t, "badvae.safetensors");
    memset(&err, 0, sizeof err);
    assert_int_equal(mx_sd_vae_new(m, &v, &err), MX_EFORMAT);
    printf("wrong shape: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "first_stage_model.decoder.conv_in.weight"));
    assert_non_null(strstr(err.msg, "shape"));
    mx_sd_model_close(m);
}

/* ---- against the peer -------------------------------------------------------------------- */

static struct mx_sd_model *ckpt;    /* the random SD 1.5 checkpoint, or NULL (tests skip) */
static struct mx_sd_vae *vae;
static const char *shared;

/* Reads n floats of shared/refs/sd/<rel>. */
static float *read_ref(const char *rel, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/refs/sd/%s", shared, rel);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    float *d = malloc(n * sizeof *d);
    assert_non_null(d);
    size_t got = fread(d, sizeof *d, n, f);
    char extra;
    assert_int_equal(got, n);
    assert_int_equal(fread(&extra, 1, 1, f), 0); /* exactly n floats */
    fclose(f);
    return d;
}

static void check_decode(const char *id, int lw, int lh) {
    if (!vae)
        mx_test_skip("no SD checkpoint (see tests/sd_ckpt.sh)");
    char rel[128];
    size_t nz = (size_t)4 * lw * lh, np = (size_t)3 * 64 * lw * lh;
    snprintf(rel, sizeof rel, "%s_tensors/vae_decoder_in.f32", id);
    float *z = read_ref(rel, nz);
    snprintf(rel, sizeof rel, "%s_tensors/vae_decoder_out.f32", id);
    float *want = read_ref(rel, np);
    float *got = malloc(np * sizeof *got);
    struct mx_err err = {0};
    int rc = mx_sd_vae_decode(vae, lw, lh, z, false, got, NULL, &err);
    if (rc < 0)
        fail_msg("%s", err.msg);
    double e = rel_rms_f(got, want, np);
    int maxd = 0;
    for (size_t i = 0; i < np; i++) { /* as 8-bit pixels */
        float a = got[i] < -1 ? -1 : got[i] > 1 ? 1 : got[i];
        float b = want[i] < -1 ? -1 : want[i] > 1 ? 1 : want[i];
        int d = abs((int)lroundf((a + 1) / 2 * 255) - (int)lroundf((b + 1) / 2 * 255));
        maxd = d > maxd ? d : maxd;
    }
    printf("%s decode %dx%d: rel RMS %.3g, max pixel diff %d\n", id, 8 * lw, 8 * lh, e, maxd);
    assert_true(e <= 1e-2); /* README bar; f16-vs-f32 activations give ~5e-3 */
    assert_true(maxd <= 4);
    free(z);
    free(want);
    free(got);
}

static void test_decode_s01(void **state) {
    (void)state;
    mx_backend_set_act_mode(be, MX_ACT_GGML); /* the peer's numerics (f16 conv inputs) */
    check_decode("sd-s01", 8, 8);
}

static void test_decode_s06(void **state) {
    (void)state;
    mx_backend_set_act_mode(be, MX_ACT_GGML); /* the peer's numerics (f16 conv inputs) */
    check_decode("sd-s06", 16, 16);
}

/* sd-s08's init image, scaled x / 127.5 - 1, encoded: the moments the peer dumped. */
static void test_encode_s08(void **state) {
    (void)state;
    mx_backend_set_act_mode(be, MX_ACT_GGML); /* the peer's numerics (f16 conv inputs) */
    if (!vae)
        mx_test_skip("no SD checkpoint (see tests/sd_ckpt.sh)");
    char path[512];
    snprintf(path, sizeof path, "%s/refs/sd/inputs/init_64.png", shared);
    struct mx_image img;
    struct mx_err err = {0};
    if (mx_image_load(path, &img, &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(img.w, 64);
    assert_int_equal(img.h, 64);
    float *x = malloc(3 * 64 * 64 * sizeof *x), mom[8 * 8 * 8];
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 64 * 64; i++)
            x[c * 64 * 64 + i] = img.rgb[i * 3 + c] / 127.5f - 1.0f;
    mx_image_free(&img);
    int rc = mx_sd_vae_encode(vae, 64, 64, x, mom, NULL, &err);
    if (rc < 0)
        fail_msg("%s", err.msg);
    float *want = read_ref("sd-s08_tensors/vae_encoder_moments.f32", 8 * 8 * 8);
    double e = rel_rms_f(mom, want, 8 * 8 * 8);
    double em = rel_rms_f(mom, want, 4 * 8 * 8); /* the mean alone */
    printf("sd-s08 encode: moments rel RMS %.3g (mean channels %.3g)\n", e, em);
    assert_true(e <= 1e-2);
    assert_true(em <= 1e-2);
    free(want);
    free(x);
}

/* A 16x16 latent decoded in 8x8 tiles overlapping by 4 against the whole: the blend seams and
 * the tiles' missing context (the mid attention sees only its tile) stay small; and the tiled
 * path's scratch does not grow with the image. */
static void test_tiled_matches_untiled(void **state) {
    (void)state;
    mx_backend_set_act_mode(be, MX_ACT_GGML); /* the peer's numerics (f16 conv inputs) */
    if (!vae)
        mx_test_skip("no SD checkpoint (see tests/sd_ckpt.sh)");
    enum { L = 16, NP = 3 * 128 * 128 };
    float *z = read_ref("sd-s06_tensors/vae_decoder_in.f32", 4 * L * L);
    float *full = malloc(NP * sizeof *full), *tiled = malloc(NP * sizeof *tiled);
    struct mx_err err = {0};
    assert_int_equal(mx_sd_vae_decode(vae, L, L, z, false, full, NULL, &err), 0);
    assert_int_equal(mx_sd_vae_set_tiling(vae, 8, 4), 0);
    int rc = mx_sd_vae_decode(vae, L, L, z, true, tiled, NULL, &err);
    if (rc < 0)
        fail_msg("%s", err.msg);
    double e = rel_rms_f(tiled, full, NP);
    double mean_abs = 0;
    for (int i = 0; i < NP; i++)
        mean_abs += fabs(tiled[i] - full[i]) * 127.5 / NP;
    printf("tiled (8, overlap 4) vs untiled 128x128: rel RMS %.3g, mean |diff| %.2f levels\n", e,
           mean_abs);
    /* Each tile normalises (GroupNorm) and attends over itself only, as in stable-diffusion.cpp's
     * --vae-tiling: on this random-weight VAE with 8-latent tiles that moves the image by about
     * 0.2 relative RMS (measured 0.199; 32-latent tiles on real images are far closer). */
    assert_true(e < 0.3);
    /* The blend: latent [0, 4) is covered by the first tile alone in each direction (the next
     * starts at 4), so output pixels [0, 32)^2 must be exactly that tile decoded by itself. */
    float zc[4 * 8 * 8], *corner = malloc(3 * 64 * 64 * sizeof *corner);
    for (int c = 0; c < 4; c++)
        for (int y = 0; y < 8; y++)
            memcpy(zc + (c * 8 + y) * 8, z + (c * L + y) * L, 8 * sizeof(float));
    assert_int_equal(mx_sd_vae_decode(vae, 8, 8, zc, false, corner, NULL, &err), 0);
    double de = 0;
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 32; y++)
            for (int x = 0; x < 32; x++) {
                double d = fabs(corner[(c * 64 + y) * 64 + x] - tiled[(c * 128 + y) * 128 + x]);
                de = d > de ? d : de;
            }
    printf("tiled: corner tile alone vs blended output max |diff| %.3g\n", de);
    assert_true(de < 1e-5);
    free(corner);
    size_t m_small = mx_sd_vae_decode_mem(vae, 8, 8, true);
    size_t m_big = mx_sd_vae_decode_mem(vae, 256, 256, true);
    size_t m_big_full = mx_sd_vae_decode_mem(vae, 256, 256, false);
    printf("scratch: tile 8 %zu MB; 2048x2048 tiled %zu MB, untiled %zu MB\n", m_small >> 20,
           m_big >> 20, m_big_full >> 20);
    assert_true(m_big == m_small);
    assert_true(m_big_full > 100 * m_big);
    /* a tile as large as the image is the untiled decode */
    assert_int_equal(mx_sd_vae_set_tiling(vae, 16, 4), 0);
    assert_int_equal(mx_sd_vae_decode(vae, L, L, z, true, tiled, NULL, &err), 0);
    assert_true(rel_rms_f(tiled, full, NP) < 1e-6);
    /* non-square, not a whole number of steps: 20x12 latent, tiles at x 0,4,8,12 and y 0,4;
     * latent x >= 16, y >= 8 is covered by the last tile alone (its right/bottom edges are the
     * image's, so they carry full weight): pixels [128, 160) x [64, 96) must equal it */
    assert_int_equal(mx_sd_vae_set_tiling(vae, 8, 4), 0);
    enum { LW = 20, LH = 12 };
    float zb[4 * LW * LH], zl[4 * 8 * 8];
    for (int c = 0; c < 4; c++)
        for (int y = 0; y < LH; y++)
            for (int x = 0; x < LW; x++)
                zb[(c * LH + y) * LW + x] = z[(c * L + y % L) * L + (x * 7) % L];
    for (int c = 0; c < 4; c++)
        for (int y = 0; y < 8; y++)
            memcpy(zl + (c * 8 + y) * 8, zb + (c * LH + 4 + y) * LW + 12, 8 * sizeof(float));
    float *big = malloc(3 * 64 * LW * LH * sizeof *big);
    assert_int_equal(mx_sd_vae_decode(vae, LW, LH, zb, true, big, NULL, &err), 0);
    assert_int_equal(mx_sd_vae_decode(vae, 8, 8, zl, false, tiled, NULL, &err), 0);
    de = 0;
    for (int c = 0; c < 3; c++)
        for (int y = 64; y < 96; y++)
            for (int x = 128; x < 160; x++) {
                double d = fabs(tiled[(c * 64 + y - 32) * 64 + x - 96] -
                                big[(c * 8 * LH + y) * 8 * LW + x]);
                de = d > de ? d : de;
            }
    printf("tiled 160x96: last tile alone vs blended max |diff| %.3g\n", de);
    assert_true(de < 1e-5);
    for (int i = 0; i < 3 * 64 * LW * LH; i++)
        assert_true(isfinite(big[i]));
    free(big);
    assert_int_equal(mx_sd_vae_set_tiling(vae, MX_SD_VAE_TILE, MX_SD_VAE_OVERLAP), 0);
    assert_int_equal(mx_sd_vae_set_tiling(vae, 8, 5), MX_EINVAL);
    free(z);
    free(full);
    free(tiled);
}

/* A raised cancel flag stops the decode with MX_ECANCELED. */
static void test_cancel(void **state) {
    (void)state;
    mx_backend_set_act_mode(be, MX_ACT_GGML); /* the peer's numerics (f16 conv inputs) */
    if (!vae)
        mx_test_skip("no SD checkpoint (see tests/sd_ckpt.sh)");
    float z[4 * 8 * 8] = {0}, *rgb = malloc(3 * 64 * 64 * sizeof *rgb);
    volatile int cancel = 1;
    struct mx_err err = {0};
    assert_int_equal(mx_sd_vae_decode(vae, 8, 8, z, false, rgb, &cancel, &err), MX_ECANCELED);
    free(rgb);
}

/* MX_VAE_BENCH=1 (by hand, not in make check): one 512x512 decode, timed. */
static void bench_decode_512(void) {
    if (!vae || !getenv("MX_VAE_BENCH"))
        return;
    int L = atoi(getenv("MX_VAE_BENCH"));
    L = L > 1 ? L : 64;
    float *z = malloc((size_t)4 * L * L * sizeof *z), *rgb = malloc((size_t)192 * L * L * 4);
    uint64_t s = 1;
    for (int i = 0; i < 4 * L * L; i++)
        z[i] = 4 * mx_test_randf(&s);
    struct mx_err err = {0};
    printf("decode %dx%d scratch %zu MB\n", 8 * L, 8 * L,
           mx_sd_vae_decode_mem(vae, L, L, getenv("MX_VAE_TILED") != NULL) >> 20);
    struct timespec t0, t1;
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = mx_sd_vae_decode(vae, L, L, z, getenv("MX_VAE_TILED") != NULL, rgb, NULL, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    getrusage(RUSAGE_SELF, &r1);
    double cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) +
                 1e-6 * (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) +
                 (double)(r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
                 1e-6 * (double)(r1.ru_stime.tv_usec - r0.ru_stime.tv_usec);
    printf("decode %dx%d: rc %d %s, %.2f s wall, %.2f s CPU (user+sys)\n", 8 * L, 8 * L, rc,
           err.msg, (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec),
           cpu);
    free(z);
    free(rgb);
}

/* Opens the checkpoint once (when ../shared and the generated checkpoint are there). */
static void open_ckpt(void) {
    shared = mx_test_shared_dir();
    const char *src = getenv("MX_SRCDIR");
    if (!shared || !src)
        return;
    char cmd[600], path[600] = "";
    snprintf(cmd, sizeof cmd, "%s/tests/sd_ckpt.sh", src);
    FILE *p = popen(cmd, "r");
    if (!p)
        return;
    if (!fgets(path, sizeof path, p))
        path[0] = 0;
    if (pclose(p) != 0)
        return;
    path[strcspn(path, "\n")] = 0;
    struct mx_err err = {0};
    if (mx_sd_model_open(be, path, NULL, &ckpt, &err) < 0) {
        printf("cannot open %s: %s\n", path, err.msg);
        return;
    }
    if (mx_sd_vae_new(ckpt, &vae, &err) < 0)
        printf("vae: %s\n", err.msg), exit(1);
}

int main(void) {
    struct mx_err err = {0};
    be = mx_backend_cpu_new(2, &err);
    if (!be) {
        fprintf(stderr, "backend: %s\n", err.msg);
        return 1;
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_sd_vae.XXXXXX");
    if (!mkdtemp(tmpdir))
        return 1;
    open_ckpt();
    if (!vae)
        printf("SKIP: the reference tests need ../shared and the SD checkpoint "
               "(tests/sd_ckpt.sh)\n");
    bench_decode_512();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_s1_matches_scalar),
        cmocka_unit_test(test_resblock_matches_scalar),
        cmocka_unit_test(test_attention_matches_scalar),
        cmocka_unit_test(test_up_block_matches_scalar),
        cmocka_unit_test(test_missing_and_wrong_shape),
        cmocka_unit_test(test_decode_s01),
        cmocka_unit_test(test_decode_s06),
        cmocka_unit_test(test_encode_s08),
        cmocka_unit_test(test_tiled_matches_untiled),
        cmocka_unit_test(test_cancel),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    mx_sd_vae_free(vae);
    mx_sd_model_close(ckpt);
    mx_backend_free(be);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        rc = rc ? rc : 1;
    return mx_test_status(rc);
}
