/* test_sdxl.c - SDXL in the diffusion engine on the reduced-width random SDXL checkpoint
 * (tests/sdxl_ckpt.sh small: sd_xl_base_1.0's exact key names, widths read from the shapes):
 * - loading: the family, the context (CLIP-L + bigG widths), label_emb's width, every float
 *   tensor of the file in the table (only logit_scale and position_ids left out), the bigG
 *   in_proj split into q/k/v, text_projection kept;
 * - the size embedding and the label vector's layout against closed forms;
 * - the two encoders: output shapes, the joined context equal to each tower's own output side
 *   by side, SDXL's defaults (penultimate layer, pad ids), and the pooled vector against a
 *   host recomputation (all layers, final_layer_norm at the first EOS, @ text_projection);
 * - one UNet step at 8x8 latents: finite, deterministic bit for bit, the label vector read
 *   (another size conditioning changes eps), refused without it;
 * - whole 64x64 images through the pipeline: the 1024x1024 default, deterministic, the
 *   negative prompt used; SDXL-Turbo known by its file name, with its own defaults;
 * - an SDXL refiner and a half text encoder refused with a message;
 * - with MX_SD_CLI, stable-diffusion.cpp's GGUF conversion of the checkpoint: the same table.
 * The full-size checkpoint and the peer comparison are in tests/sdxl_peer.sh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/base/quant.h"
#include "core/diffusion/clip_text.h"
#include "core/diffusion/pipeline.h"
#include "core/diffusion/prompt.h"
#include "core/diffusion/sampler.h"
#include "core/diffusion/sd_kind.h"
#include "core/diffusion/sd_model.h"
#include "core/diffusion/sdxl_cond.h"
#include "core/diffusion/unet.h"
#include "core/format/safetensors.h"
#include "core/text/tokenizer.h"
#include "kernels/backend.h"
#include "tests/mx_test.h"

#define TE2 "cond_stage_model.1.transformer.text_model."

static struct mx_backend *be;
static char *g_path;               /* the small checkpoint, or NULL (skipped: reason printed) */
static struct mx_sd_model *g_m;    /* opened on be */
static struct mx_tokenizer *g_tok; /* OpenAI's CLIP vocabulary, or NULL when not installed */

/* The path tests/sdxl_ckpt.sh prints for kind, or NULL (it skipped: reason on stderr). */
static char *ckpt_path(const char *kind) {
    const char *src = getenv("MX_SRCDIR");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s/tests/sdxl_ckpt.sh' %s", src ? src : ".", kind);
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

static void need_model(void) {
    if (!g_m)
        mx_test_skip("tests/sdxl_ckpt.sh gave no SDXL checkpoint (python3 + numpy needed)");
}

static void need_tok(void) {
    need_model();
    if (!g_tok)
        mx_test_skip("OpenAI's CLIP vocabulary is not installed (scripts/install-clip-vocab.sh)");
}

/* A weight as host F32 (caller frees). */
static float *host_f32(const char *name, int64_t *n) {
    const struct mx_tensor *t = mx_sd_weight(g_m, name);
    assert_non_null(t);
    *n = mx_tensor_nelements(t);
    float *f = malloc((size_t)*n * sizeof *f);
    assert_non_null(f);
    assert_int_equal(mx_dequantize_row(t->type, t->data, f, *n), 0);
    return f;
}

static bool all_finite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return false;
    return true;
}

static void test_load(void **state) {
    (void)state;
    need_model();
    assert_int_equal(g_m->family, MX_SD_FAMILY_SDXL);
    assert_string_equal(mx_sd_family_name(g_m->family), "SDXL");
    assert_int_equal(g_m->context_dim, 64 + 128);
    assert_int_equal(g_m->adm_dim, 128 + 6 * 256);
    assert_true(g_m->has_vae && g_m->has_text_encoder);
    assert_int_equal(g_m->unet_in_channels, 4);
    assert_int_equal(mx_sd_require(g_m, MX_SD_PART_UNET | MX_SD_PART_VAE | MX_SD_PART_TEXT, NULL),
                     0);
    const struct mx_tensor *p = mx_sd_weight(g_m, TE2 "text_projection");
    assert_non_null(p);
    assert_int_equal(p->ne[0], 128);
    assert_int_equal(p->ne[1], 128);
    const struct mx_tensor *q = mx_sd_weight(g_m, TE2 "encoder.layers.31.self_attn.q_proj.weight");
    const struct mx_tensor *vb = mx_sd_weight(g_m, TE2 "encoder.layers.31.self_attn.v_proj.bias");
    assert_non_null(q);
    assert_non_null(vb);
    assert_int_equal(q->ne[0], 128);
    assert_int_equal(q->ne[1], 128);
    assert_int_equal(vb->ne[0], 128);
    assert_non_null(mx_sd_weight(g_m, "cond_stage_model.transformer.text_model.encoder.layers.11."
                                      "mlp.fc2.weight"));
    /* every float weight of the file is in the table but logit_scale (1 value) */
    struct mx_st *st = NULL;
    struct mx_err e = {0};
    assert_int_equal(mx_st_open(g_path, &st, &e), 0);
    int64_t file_params = 0;
    for (int64_t i = 0; i < mx_st_n_tensors(st); i++)
        if (mx_st_dtype_is_float(mx_st_tensor(st, i)->dtype))
            file_params += mx_st_tensor(st, i)->n_elements;
    char kind[256];
    mx_st_guess_kind(st, kind, sizeof kind);
    assert_non_null(strstr(kind, "SDXL checkpoint"));
    mx_st_close(st);
    assert_int_equal(g_m->n_params, file_params - 1);
    printf("small SDXL: %lld weights (UNet %lld, VAE %lld, text %lld); %s\n",
           (long long)g_m->n_params, (long long)g_m->n_params_unet, (long long)g_m->n_params_vae,
           (long long)g_m->n_params_text, kind);
}

static void test_adm(void **state) {
    (void)state;
    float e[256];
    mx_sdxl_sin_embed(1024.0f, 256, e);
    assert_float_equal(e[0], cosf(1024.0f), 1e-6);
    assert_float_equal(e[128], sinf(1024.0f), 1e-6);
    float f5 = (float)exp(-log(10000.0) * 5 / 128);
    assert_float_equal(e[5], cosf(1024.0f * f5), 1e-6);
    assert_float_equal(e[128 + 127], sinf(1024.0f * (float)exp(-log(10000.0) * 127 / 128)),
                       1e-6);
    float pooled[8], y[8 + 6 * 256];
    for (int i = 0; i < 8; i++)
        pooled[i] = (float)i + 0.5f;
    struct mx_sdxl_sizes s = {832, 1216, 16, 32, 768, 1344};
    struct mx_err err = {0};
    assert_int_equal(mx_sdxl_adm(pooled, 8, &s, y, 8 + 6 * 256, &err), 0);
    assert_memory_equal(y, pooled, sizeof pooled);
    const float v[6] = {832, 1216, 16, 32, 768, 1344};
    for (int k = 0; k < 6; k++) {
        mx_sdxl_sin_embed(v[k], 256, e);
        assert_memory_equal(y + 8 + 256 * k, e, sizeof e);
    }
    assert_int_equal(mx_sdxl_adm(NULL, 8, &s, y, 8 + 6 * 256, &err), 0);
    for (int i = 0; i < 8; i++)
        assert_true(y[i] == 0.0f);
    assert_int_equal(mx_sdxl_adm(pooled, 8, &s, y, 2816, &err), MX_EINVAL);
    assert_non_null(strstr(err.msg, "label vector of 2816"));
}

/* Host LayerNorm of one row (eps 1e-5) with the model's final_layer_norm of tower TE2. */
static void host_ln(const float *x, int64_t n, float *out) {
    int64_t nw, nb;
    float *w = host_f32(TE2 "final_layer_norm.weight", &nw);
    float *b = host_f32(TE2 "final_layer_norm.bias", &nb);
    double mean = 0, var = 0;
    for (int64_t i = 0; i < n; i++)
        mean += x[i];
    mean /= (double)n;
    for (int64_t i = 0; i < n; i++)
        var += (x[i] - mean) * (x[i] - mean);
    var /= (double)n;
    for (int64_t i = 0; i < n; i++)
        out[i] = (float)((x[i] - mean) / sqrt(var + 1e-5) * w[i] + b[i]);
    free(w);
    free(b);
}

static void test_encoders(void **state) {
    (void)state;
    need_tok();
    struct mx_err e = {0};
    struct mx_sd_clip *cl = NULL, *cg = NULL;
    if (mx_sd_clip_new_tower(g_m, g_tok, MX_SD_CLIP_MAIN, &cl, &e) < 0 ||
        mx_sd_clip_new_tower(g_m, g_tok, MX_SD_CLIP_BIGG, &cg, &e) < 0)
        fail_msg("%s", e.msg);
    assert_int_equal(mx_sd_clip_dim(cl), 64);
    assert_int_equal(mx_sd_clip_dim(cg), 128);
    assert_int_equal(mx_sd_clip_n_layers(cl), 12);
    assert_int_equal(mx_sd_clip_n_layers(cg), 32);
    assert_int_equal(mx_sd_clip_proj_dim(cl), 0);
    assert_int_equal(mx_sd_clip_proj_dim(cg), 128);
    assert_int_equal(mx_sd_clip_default_skip(cl), 2);
    assert_int_equal(mx_sd_clip_default_skip(cg), 2);
    assert_int_equal(mx_sd_clip_pad_id(cl), mx_tokenizer_eos(g_tok));
    assert_int_equal(mx_sd_clip_pad_id(cg), 0);

    const char *prompt = "a (photo:1.2) of a cat";
    float *ctx = NULL, *hl = NULL, *hg = NULL, pooled[128], pooled2[128];
    int64_t n = 0, nl = 0, ng = 0;
    if (mx_sdxl_encode(cl, cg, prompt, 0, 1, &ctx, &n, pooled, &e) < 0 ||
        mx_sd_clip_encode(cl, prompt, 0, 1, &hl, &nl, &e) < 0 ||
        mx_sd_clip_encode_pooled(cg, prompt, 0, 1, &hg, &ng, pooled2, &e) < 0)
        fail_msg("%s", e.msg);
    assert_int_equal(n, 77);
    assert_int_equal(nl, 77);
    assert_int_equal(ng, 77);
    assert_true(all_finite(ctx, 77 * 192));
    for (int t = 0; t < 77; t++) {
        assert_memory_equal(ctx + t * 192, hl + t * 64, 64 * sizeof(float));
        assert_memory_equal(ctx + t * 192 + 64, hg + t * 128, 128 * sizeof(float));
    }
    assert_memory_equal(pooled, pooled2, sizeof pooled);
    /* a longer prompt: two chunks each, still one pooled vector (the first chunk's) */
    char longp[2048] = "";
    for (int i = 0; i < 40; i++)
        strcat(longp, "red cube, ");
    free(ctx);
    assert_int_equal(mx_sdxl_encode(cl, cg, longp, 0, 1, &ctx, &n, pooled2, &e), 0);
    assert_int_equal(n, 154);

    /* the pooled output against the host: every layer (clip_skip 1, no final norm in SDXL),
     * then final_layer_norm at the first EOS, then x @ text_projection */
    struct mx_sd_prompt_tokens t;
    assert_int_equal(mx_sd_prompt_tokenize(g_tok, prompt, mx_sd_clip_pad_id(cg), 0, &t, &e), 0);
    int eos = 0;
    while (t.ids[eos] != mx_tokenizer_eos(g_tok))
        eos++;
    assert_true(eos > 1 && eos < 76);
    assert_int_equal(t.ids[eos + 1], 0);
    float *all = malloc(77 * 128 * sizeof *all), *pen = malloc(77 * 128 * sizeof *pen);
    assert_non_null(all);
    assert_non_null(pen);
    float pooled3[128];
    assert_int_equal(mx_sd_clip_encode_ids(cg, t.ids, 1, all, &e), 0);
    assert_int_equal(mx_sd_clip_encode_ids_pooled(cg, t.ids, 0, pen, pooled3, &e), 0);
    assert_memory_equal(pooled3, pooled, sizeof pooled); /* weighting leaves pooled alone */
    double d = 0;
    for (int i = 0; i < 77 * 128; i++)
        d = fmax(d, fabs(all[i] - pen[i]));
    assert_true(d > 1e-3); /* the default is the penultimate layer, not the last */
    float row[128];
    host_ln(all + eos * 128, 128, row);
    int64_t np;
    float *P = host_f32(TE2 "text_projection", &np);
    double num = 0, den = 0;
    for (int j = 0; j < 128; j++) {
        double acc = 0;
        for (int i = 0; i < 128; i++)
            acc += (double)row[i] * P[i * 128 + j];
        num += (acc - pooled[j]) * (acc - pooled[j]);
        den += acc * acc;
    }
    printf("pooled vs host recomputation: rel RMS %.2e, |pooled| %.3f\n", sqrt(num / den),
           sqrt(den));
    assert_true(den > 1e-6 && sqrt(num / den) < 1e-4);
    /* the BIGG tower of an SD 1.x-style request: no projection, a clear error */
    assert_int_equal(mx_sd_clip_encode_ids_pooled(cl, t.ids, 0, pen, pooled3, &e), MX_EINVAL);
    mx_sd_prompt_tokens_deinit(&t);
    free(P);
    free(all);
    free(pen);
    free(ctx);
    free(hl);
    free(hg);
    mx_sd_clip_free(cl);
    mx_sd_clip_free(cg);
}

static void test_unet_step(void **state) {
    (void)state;
    need_model();
    struct mx_err e = {0};
    struct mx_sd_unet *u = NULL;
    if (mx_sd_unet_new(g_m, 2, 8, 8, &u, &e) < 0)
        fail_msg("%s", e.msg);
    assert_int_equal(mx_sd_unet_adm_dim(u), 1664);
    const char *desc = mx_sd_unet_describe(u);
    printf("small SDXL UNet: %s\n", desc);
    assert_non_null(strstr(desc, "3 levels"));
    assert_non_null(strstr(desc, "attn at levels 1-2"));
    assert_non_null(strstr(desc, "ctx 192, linear proj"));
    const int64_t n = 2 * 4 * 8 * 8;
    float x[2 * 4 * 64], ctx[2 * 77 * 192], y[2 * 1664], o1[2 * 4 * 64], o2[2 * 4 * 64];
    uint64_t s = 7;
    for (int64_t i = 0; i < n; i++)
        x[i] = 1.7f * mx_test_randf(&s);
    for (int i = 0; i < 2 * 77 * 192; i++)
        ctx[i] = 0.5f * 1.7f * mx_test_randf(&s);
    float pooled[128];
    for (int i = 0; i < 128; i++)
        pooled[i] = 1.7f * mx_test_randf(&s);
    struct mx_sdxl_sizes sz = {64, 64, 0, 0, 64, 64};
    assert_int_equal(mx_sdxl_adm(pooled, 128, &sz, y, 1664, &e), 0);
    assert_int_equal(mx_sdxl_adm(pooled, 128, &sz, y + 1664, 1664, &e), 0);
    const float t[2] = {999.0f, 999.0f};
    assert_int_equal(mx_sd_unet_eval_y(u, 2, 8, 8, x, t, ctx, 77, y, o1, NULL, &e), 0);
    assert_true(all_finite(o1, n));
    assert_int_equal(mx_sd_unet_eval_y(u, 2, 8, 8, x, t, ctx, 77, y, o2, NULL, &e), 0);
    assert_memory_equal(o1, o2, sizeof o1);
    /* image 1 with another size conditioning: its eps moves, image 0's does not */
    struct mx_sdxl_sizes sz2 = {1024, 768, 0, 0, 1024, 768};
    assert_int_equal(mx_sdxl_adm(pooled, 128, &sz2, y + 1664, 1664, &e), 0);
    assert_int_equal(mx_sd_unet_eval_y(u, 2, 8, 8, x, t, ctx, 77, y, o2, NULL, &e), 0);
    assert_memory_equal(o1, o2, n / 2 * sizeof(float));
    double d = 0;
    for (int64_t i = n / 2; i < n; i++)
        d = fmax(d, fabs(o1[i] - o2[i]));
    printf("eps change from the size conditioning: max %.3g\n", d);
    assert_true(d > 1e-4);
    assert_int_equal(mx_sd_unet_eval(u, 2, 8, 8, x, t, ctx, 77, o2, NULL, &e), MX_EINVAL);
    assert_non_null(strstr(e.msg, "needs the pooled-text and size vector"));
    mx_sd_unet_free(u);
}

static void test_image(void **state) {
    (void)state;
    need_tok();
    struct mx_err e = {0};
    struct mx_sd_pipeline *p = NULL;
    if (mx_sd_pipeline_open(be, g_path, NULL, &p, &e) < 0)
        fail_msg("%s", e.msg);
    struct mx_sd_params par;
    mx_sd_params_default(&par, p);
    assert_int_equal(par.width, 1024);
    assert_int_equal(par.height, 1024);
    par.width = par.height = 64;
    par.steps = 2;
    par.seed = 42;
    par.prompt = "a photo of a cat";
    struct mx_image a = {0}, b = {0}, c = {0};
    if (mx_sd_generate(p, &par, 0, &a, NULL, NULL, &e) < 0 ||
        mx_sd_generate(p, &par, 0, &b, NULL, NULL, &e) < 0)
        fail_msg("%s", e.msg);
    assert_int_equal(a.w, 64);
    assert_int_equal(a.h, 64);
    assert_memory_equal(a.rgb, b.rgb, 64 * 64 * 3);
    par.negative = "blurry";
    if (mx_sd_generate(p, &par, 0, &c, NULL, NULL, &e) < 0)
        fail_msg("%s", e.msg);
    int diff = 0;
    for (int i = 0; i < 64 * 64 * 3; i++)
        diff += a.rgb[i] != c.rgb[i];
    printf("64x64 SDXL image: %d of %d values change with a negative prompt\n", diff,
           64 * 64 * 3);
    assert_true(diff > 100);
    mx_image_free(&a);
    mx_image_free(&b);
    mx_image_free(&c);
    assert_false(mx_sd_pipeline_model(p)->turbo);
    mx_sd_pipeline_close(p);
}

/* SDXL-Turbo is known by its file name (or metadata) and gets its model card's defaults. */
static void test_turbo(void **state) {
    (void)state;
    need_tok();
    const char *bd = getenv("MX_BUILDDIR");
    char link[1024];
    snprintf(link, sizeof link, "%s/tests/sd_xl_Turbo_1.0_test.safetensors", bd ? bd : ".");
    unlink(link);
    assert_int_equal(symlink(g_path, link), 0);
    struct mx_err e = {0};
    struct mx_sd_pipeline *p = NULL;
    if (mx_sd_pipeline_open(be, link, NULL, &p, &e) < 0)
        fail_msg("%s", e.msg);
    assert_true(mx_sd_pipeline_model(p)->turbo);
    struct mx_sd_params par;
    mx_sd_params_default(&par, p);
    assert_int_equal(par.width, 512);
    assert_int_equal(par.height, 512);
    assert_int_equal(par.steps, 1);
    assert_true(par.cfg == 1.0f);
    assert_int_equal(par.sampler, MX_SD_SAMPLER_EULER_A);
    mx_sd_pipeline_close(p);
    unlink(link);
}

/* A minimal SDXL-style UNet (conv_in, one cross-attention key of width ctx, label_emb of adm)
 * plus, when te, SDXL text-encoder token embeddings of widths l and g, opened from memory. */
static int open_stub(int64_t ctx, int64_t adm, int64_t l, int64_t g, struct mx_err *err) {
    struct mx_st_writer *w = mx_st_writer_new();
    assert_non_null(w);
    static float z[4 * 64 * 9];
    const char *U = "model.diffusion_model.";
    char name[256];
    snprintf(name, sizeof name, "%sinput_blocks.0.0.weight", U);
    assert_int_equal(mx_st_writer_add_tensor(w, name, MX_ST_F32, 4, (int64_t[]){64, 4, 3, 3}, z),
                     0);
    float *k = calloc((size_t)(64 * ctx), sizeof *k), *lb = calloc((size_t)(8 * adm), sizeof *lb);
    assert_non_null(k);
    assert_non_null(lb);
    snprintf(name, sizeof name, "%sinput_blocks.4.1.transformer_blocks.0.attn2.to_k.weight", U);
    assert_int_equal(mx_st_writer_add_tensor(w, name, MX_ST_F32, 2, (int64_t[]){64, ctx}, k), 0);
    snprintf(name, sizeof name, "%slabel_emb.0.0.weight", U);
    assert_int_equal(mx_st_writer_add_tensor(w, name, MX_ST_F32, 2, (int64_t[]){8, adm}, lb), 0);
    float *te = calloc((size_t)(4 * (l > g ? l : g)), sizeof *te);
    assert_non_null(te);
    if (l)
        assert_int_equal(mx_st_writer_add_tensor(w, "conditioner.embedders.0.transformer."
                                                 "text_model.embeddings.token_embedding.weight",
                                                 MX_ST_F32, 2, (int64_t[]){4, l}, te), 0);
    if (g)
        assert_int_equal(mx_st_writer_add_tensor(w, "conditioner.embedders.1.model."
                                                 "token_embedding.weight", MX_ST_F32, 2,
                                                 (int64_t[]){4, g}, te), 0);
    void *buf;
    size_t size;
    assert_int_equal(mx_st_writer_write_mem(w, &buf, &size, NULL), 0);
    mx_st_writer_free(w);
    struct mx_sd_model *m = NULL;
    int rc = mx_sd_model_open_mem(NULL, buf, size, "x.safetensors", NULL, &m, err);
    mx_sd_model_close(m);
    free(buf);
    free(k);
    free(lb);
    free(te);
    return rc;
}

/* What is not an SDXL base model mixel runs: one line each. */
static void test_refused(void **state) {
    (void)state;
    struct mx_err e = {0};
    assert_int_equal(open_stub(1280, 2560, 0, 0, &e), MX_EUNSUP);
    assert_non_null(strstr(e.msg, "x.safetensors: an SDXL refiner"));
    e = (struct mx_err){0};
    assert_int_equal(open_stub(2048, 2816, 768, 0, &e), MX_EFORMAT);
    assert_non_null(strstr(e.msg, "incomplete text encoder (CLIP-L present, OpenCLIP bigG "
                                  "missing"));
    e = (struct mx_err){0};
    assert_int_equal(open_stub(2048, 2816, 0, 0, &e), 0); /* a UNet-only file opens */
}

/* Opt-in (MX_SD_CLI = a stable-diffusion.cpp sd-cli): the small checkpoint converted by the
 * peer (`-M convert`, F16, names kept as in the source) loads as the same table: same names,
 * shapes and bytes. */
static void test_sdcpp_gguf(void **state) {
    (void)state;
    need_model();
    const char *cli = getenv("MX_SD_CLI"), *bd = getenv("MX_BUILDDIR");
    char out[1024], cmd[4096];
    snprintf(out, sizeof out, "%s/sdxl_small.sdcpp_f16.gguf", bd ? bd : ".");
    snprintf(cmd, sizeof cmd, "'%s' -M convert -m '%s' -o '%s' --type f16 -t 2 >/dev/null 2>&1",
             cli, g_path, out);
    assert_int_equal(system(cmd), 0);
    struct mx_sd_model *g = NULL;
    struct mx_err e = {0};
    if (mx_sd_model_open(NULL, out, NULL, &g, &e) < 0)
        fail_msg("%s", e.msg);
    assert_int_equal(g->source, MX_SD_SRC_GGUF);
    assert_int_equal(g->family, MX_SD_FAMILY_SDXL);
    assert_int_equal(mx_sd_n_weights(g), mx_sd_n_weights(g_m));
    for (int64_t i = 0; i < mx_sd_n_weights(g_m); i++) {
        const struct mx_tensor *x = mx_sd_weight_at(g_m, i), *y = mx_sd_weight_at(g, i);
        if (strcmp(x->name, y->name) || memcmp(x->ne, y->ne, sizeof x->ne) ||
            x->type != y->type || memcmp(x->data, y->data, mx_tensor_nbytes(x)))
            fail_msg("%s / %s differs", x->name, y->name);
    }
    printf("sd.cpp GGUF of the small SDXL: %lld tensors equal\n", (long long)mx_sd_n_weights(g));
    mx_sd_model_close(g);
    unlink(out);
}

static int setup(void **state) {
    (void)state;
    struct mx_err e = {0};
    be = mx_backend_cpu_new(2, &e);
    if (!be)
        return -1;
    g_path = ckpt_path("small");
    if (g_path && mx_sd_model_open(be, g_path, NULL, &g_m, &e) < 0) {
        printf("%s\n", e.msg);
        return -1;
    }
    if (mx_sd_clip_tokenizer_open(NULL, &g_tok, &e) < 0)
        g_tok = NULL;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    mx_tokenizer_free(g_tok);
    mx_sd_model_close(g_m);
    free(g_path);
    mx_backend_free(be);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adm),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_encoders),
        cmocka_unit_test(test_unet_step),
        cmocka_unit_test(test_image),
        cmocka_unit_test(test_turbo),
        cmocka_unit_test(test_refused),
    };
    if (getenv("MX_SD_CLI")) {
        const struct CMUnitTest peer[] = {cmocka_unit_test(test_sdcpp_gguf)};
        int failures = cmocka_run_group_tests(tests, setup, teardown);
        return mx_test_status(failures + cmocka_run_group_tests(peer, setup, teardown));
    }
    printf("note: MX_SD_CLI (stable-diffusion.cpp's sd-cli) unset: its GGUF of SDXL not checked\n");
    return mx_test_status(cmocka_run_group_tests(tests, setup, teardown));
}
