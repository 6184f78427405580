/* test_sd_lora.c - LoRA for Stable Diffusion (core/diffusion/sd_lora.h) and the prompt's
 * <lora:NAME:W> tags (prompt.h), on tiny checkpoints written here.
 *
 * Oracles: the merged values are recomputed here in double from the LoRA's own up/down/alpha
 * (W + w * alpha / rank * up * down, rounded once to the weight's type) and the names the LoRA
 * must land on are written out by hand (kohya diffusers-style, kohya LDM-style, PEFT, LoCon conv);
 * undo must give back the stored tensor (same bytes, same pointer). The end-to-end picture checks
 * (against an offline-merged checkpoint) are tests/sd_lora.sh.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/base/quant.h"
#include "core/diffusion/prompt.h"
#include "core/diffusion/sd_lora.h"
#include "core/diffusion/sd_model.h"
#include "core/format/safetensors.h"
#include "tests/mx_test.h"

#define U "model.diffusion_model."
#define TE "cond_stage_model.transformer.text_model."
#define TO_K U "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
#define CONV_IN U "input_blocks.0.0.weight"
#define Q_PROJ TE "encoder.layers.0.self_attn.q_proj.weight"
#define TO_Q U "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"

/* ---- tags ------------------------------------------------------------------------------------ */

static void test_tags(void **state) {
    (void)state;
    char *s;
    struct mx_sd_lora_tag *t;
    int n;
    struct mx_err err = {0};
    assert_int_equal(mx_sd_prompt_loras("a <lora:x:0.7> cat<lora:y>, <lyco:z:0.5:-0.25> "
                                        "<lora:w:unet=0.3> <hypernet:h:1> <lora:> <lora:open",
                                        &s, &t, &n, &err), 0);
    assert_string_equal(s, "a  cat,   <hypernet:h:1> <lora:> <lora:open");
    assert_int_equal(n, 4);
    assert_string_equal(t[0].name, "x");
    assert_true(t[0].w_te == 0.7f && t[0].w_unet == 0.7f);
    assert_string_equal(t[1].name, "y");
    assert_true(t[1].w_te == 1.0f && t[1].w_unet == 1.0f);
    assert_string_equal(t[2].name, "z");
    assert_true(t[2].w_te == 0.5f && t[2].w_unet == -0.25f);
    assert_string_equal(t[3].name, "w");
    assert_true(t[3].w_te == 1.0f && t[3].w_unet == 0.3f);
    mx_sd_lora_tags_free(t, n);
    free(s);

    const char *bad[][2] = {
        {"cat <lora:x:abc>", "bad weight \"abc\""},
        {"<lora::1>", "expected <lora:NAME"},
        {"<lora:x:1:2:3>", "expected <lora:NAME"},
        {"<lora:x:1e999>", "bad weight"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mx_err_clear(&err);
        assert_int_equal(mx_sd_prompt_loras(bad[i][0], &s, &t, &n, &err), MX_EINVAL);
        assert_null(s);
        assert_int_equal(n, 0);
        if (!strstr(err.msg, bad[i][1]))
            fail_msg("%s: message '%s' lacks '%s'", bad[i][0], err.msg, bad[i][1]);
    }
}

/* ---- tiny checkpoint and LoRA files ---------------------------------------------------------- */

static float *randv(uint64_t *seed, int64_t n, float sd) {
    float *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++)
        v[i] = sd * mx_test_randf(seed);
    return v;
}

/* Adds an F16 (or F32) tensor of random values with shape (outermost first, up to 4 dims). */
static void add(struct mx_st_writer *w, uint64_t *seed, const char *name, int dtype, int nd,
                int64_t a, int64_t b, int64_t c, int64_t d) {
    int64_t shape[4] = {a, b, c, d}, n = 1;
    for (int i = 0; i < nd; i++)
        n *= shape[i];
    float *v = randv(seed, n, 1.0f);
    if (dtype == MX_ST_F32) {
        assert_int_equal(mx_st_writer_add_tensor(w, name, MX_ST_F32, nd, shape, v), 0);
    } else {
        uint16_t *h = malloc((size_t)n * 2);
        mx_type_traits(dtype == MX_ST_F16 ? MX_TYPE_F16 : MX_TYPE_BF16)->from_float(v, h, n);
        assert_int_equal(mx_st_writer_add_tensor(w, name, dtype, nd, shape, h), 0);
        free(h);
    }
    free(v);
}

/* An SD 1.x checkpoint small enough to check by hand: conv_in [8, 4, 3, 3], one cross
 * attention to_k [8, 768] (F16), a self-attention to_q [8, 8] in BF16 (a type the copy widens
 * to F32, as it does quantized weights), a text encoder whose q_proj [768, 768] is F32. */
static struct mx_sd_model *tiny_model(void **buf) {
    uint64_t seed = 7;
    struct mx_st_writer *w = mx_st_writer_new();
    add(w, &seed, CONV_IN, MX_ST_F16, 4, 8, 4, 3, 3);
    add(w, &seed, U "input_blocks.0.0.bias", MX_ST_F16, 1, 8, 1, 1, 1);
    add(w, &seed, TO_K, MX_ST_F16, 2, 8, 768, 1, 1);
    add(w, &seed, TO_Q, MX_ST_BF16, 2, 8, 8, 1, 1);
    add(w, &seed, U "input_blocks.1.0.in_layers.0.weight", MX_ST_F16, 1, 8, 1, 1, 1);
    add(w, &seed, U "out.2.weight", MX_ST_F16, 4, 4, 8, 3, 3);
    add(w, &seed, TE "embeddings.token_embedding.weight", MX_ST_F16, 2, 10, 768, 1, 1);
    add(w, &seed, Q_PROJ, MX_ST_F32, 2, 768, 768, 1, 1);
    size_t size;
    assert_int_equal(mx_st_writer_write_mem(w, buf, &size, NULL), 0);
    mx_st_writer_free(w);
    struct mx_sd_model *m;
    struct mx_err err = {0};
    if (mx_sd_model_open_mem(NULL, *buf, size, "tiny.safetensors", NULL, &m, &err) != 0)
        fail_msg("%s", err.msg);
    return m;
}

/* One module to write: key prefix, suffixes for down/up, shapes, alpha (0: none). */
struct wmod {
    const char *key, *down_sfx, *up_sfx;
    int64_t down[4], up[4];
    int nd;
    float alpha;
};

static char *write_lora(const struct wmod *mods, int n, const char *tag) {
    struct mx_st_writer *w = mx_st_writer_new();
    uint64_t seed = 99;
    char name[256];
    for (int i = 0; i < n; i++) {
        const struct wmod *m = &mods[i];
        int64_t nu = 1, ndn = 1;
        for (int k = 0; k < m->nd; k++)
            nu *= m->up[k], ndn *= m->down[k];
        float *u = randv(&seed, nu, 0.5f), *d = randv(&seed, ndn, 0.5f);
        snprintf(name, sizeof name, "%s%s", m->key, m->up_sfx);
        assert_int_equal(mx_st_writer_add_tensor(w, name, MX_ST_F32, m->nd, m->up, u), 0);
        snprintf(name, sizeof name, "%s%s", m->key, m->down_sfx);
        assert_int_equal(mx_st_writer_add_tensor(w, name, MX_ST_F32, m->nd, m->down, d), 0);
        if (m->alpha > 0) {
            snprintf(name, sizeof name, "%s.alpha", m->key);
            assert_int_equal(mx_st_writer_add_tensor(w, name, MX_ST_F32, 0, NULL, &m->alpha), 0);
        }
        free(u);
        free(d);
    }
    char *path = malloc(256);
    snprintf(path, 256, "/tmp/test_sd_lora_%d_%s.safetensors", (int)getpid(), tag);
    struct mx_err err = {0};
    if (mx_st_writer_write(w, path, &err) < 0)
        fail_msg("%s", err.msg);
    mx_st_writer_free(w);
    return path;
}

static const struct wmod k_good[] = {
    /* kohya, diffusers-style name, rank 2, alpha 1 */
    {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k",
     ".lora_down.weight", ".lora_up.weight", {2, 768}, {8, 2}, 2, 1.0f},
    /* LoCon on conv_in: down 3x3 [rank 3, 4, 3, 3], up 1x1; no alpha (scale 1) */
    {"lora_unet_conv_in", ".lora_down.weight", ".lora_up.weight", {3, 4, 3, 3}, {8, 3, 1, 1},
     4, 0},
    /* PEFT text encoder */
    {"text_encoder.text_model.encoder.layers.0.self_attn.q_proj", ".lora_A.weight",
     ".lora_B.weight", {4, 768}, {768, 4}, 2, 0},
    /* a BF16 weight: the working copy is F32 */
    {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
     ".lora_down.weight", ".lora_up.weight", {2, 8}, {8, 2}, 2, 4.0f},
};

/* The stored weight + w * scale * up * down, from the LoRA file, in double. */
static void expect_merged(const struct mx_sd_model *m, const float *orig, const char *target,
                          const char *lora, const char *key, const char *dsfx, const char *usfx,
                          double w) {
    struct mx_st *st;
    struct mx_err err = {0};
    assert_int_equal(mx_st_open(lora, &st, &err), 0);
    char n1[256], n2[256], n3[256];
    snprintf(n1, sizeof n1, "%s%s", key, usfx);
    snprintf(n2, sizeof n2, "%s%s", key, dsfx);
    snprintf(n3, sizeof n3, "%s.alpha", key);
    const struct mx_st_tensor *up = mx_st_find_tensor(st, n1), *dn = mx_st_find_tensor(st, n2),
                              *al = mx_st_find_tensor(st, n3);
    const struct mx_tensor *t = mx_sd_weight(m, target);
    int64_t ne = mx_tensor_nelements(t), out = up->shape[0], r = up->shape[1], in = ne / out;
    double scale = al ? *(const float *)al->data / (double)r : 1.0;
    float *got = malloc((size_t)ne * sizeof *got);
    mx_type_traits(t->type)->to_float(t->data, got, ne);
    const float *u = up->data, *d = dn->data;
    for (int64_t o = 0; o < out; o++)
        for (int64_t i = 0; i < in; i++) {
            double s = 0;
            for (int64_t k = 0; k < r; k++)
                s += (double)u[o * r + k] * d[k * in + i];
            double want = orig[o * in + i] + w * scale * s;
            double tol = t->type == MX_TYPE_F16 ? 1e-3 * fabs(want) + 1e-3 : 1e-5 * (1 + fabs(want));
            if (fabs(got[o * in + i] - want) > tol)
                fail_msg("%s[%lld][%lld]: %g, expected %g", target, (long long)o, (long long)i,
                         got[o * in + i], want);
        }
    free(got);
    mx_st_close(st);
}

static float *values(const struct mx_sd_model *m, const char *name) {
    const struct mx_tensor *t = mx_sd_weight(m, name);
    int64_t n = mx_tensor_nelements(t);
    float *v = malloc((size_t)n * sizeof *v);
    mx_type_traits(t->type)->to_float(t->data, v, n);
    return v;
}

static void test_apply(void **state) {
    (void)state;
    void *buf;
    struct mx_sd_model *m = tiny_model(&buf);
    char *path = write_lora(k_good, 4, "good");
    struct mx_sd_lora *l;
    struct mx_err err = {0};
    if (mx_sd_lora_open(m, path, &l, &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(mx_sd_lora_n_modules(l), 4);
    assert_string_equal(mx_sd_lora_target(l, 0), TO_K);
    assert_string_equal(mx_sd_lora_target(l, 1), CONV_IN);
    assert_string_equal(mx_sd_lora_target(l, 2), Q_PROJ);
    assert_string_equal(mx_sd_lora_target(l, 3), TO_Q);

    const char *names[] = {TO_K, CONV_IN, Q_PROJ, TO_Q};
    struct mx_tensor before[4];
    float *orig[4];
    for (int i = 0; i < 4; i++) {
        before[i] = *mx_sd_weight(m, names[i]);
        orig[i] = values(m, names[i]);
    }
    struct mx_sd_lora_state *s = mx_sd_lora_state_new();
    /* different te and unet weights, applied, changed, undone, redone */
    for (int round = 0; round < 2; round++) {
        float wt = round ? -1.5f : 0.75f, wu = round ? 0.5f : -2.0f;
        struct mx_sd_lora_use u = {l, wt, wu};
        assert_int_equal(mx_sd_lora_apply(m, s, &u, 1, &err), 0);
        assert_int_equal(mx_sd_weight(m, TO_K)->type, MX_TYPE_F16);
        assert_int_equal(mx_sd_weight(m, Q_PROJ)->type, MX_TYPE_F32);
        assert_int_equal(mx_sd_weight(m, TO_Q)->type, MX_TYPE_F32);
        assert_ptr_not_equal(mx_sd_weight(m, TO_K)->data, before[0].data);
        assert_int_equal(mx_sd_lora_state_bytes(s),
                         8 * 768 * 2 + 8 * 4 * 9 * 2 + 768 * 768 * 4 + 8 * 8 * 4);
        expect_merged(m, orig[0], TO_K, path, k_good[0].key, k_good[0].down_sfx,
                      k_good[0].up_sfx, wu);
        expect_merged(m, orig[1], CONV_IN, path, k_good[1].key, k_good[1].down_sfx,
                      k_good[1].up_sfx, wu);
        expect_merged(m, orig[2], Q_PROJ, path, k_good[2].key, k_good[2].down_sfx,
                      k_good[2].up_sfx, wt);
        expect_merged(m, orig[3], TO_Q, path, k_good[3].key, k_good[3].down_sfx,
                      k_good[3].up_sfx, wu);
    }
    /* the same LoRA twice sums; a weight of 0 leaves a part untouched */
    struct mx_sd_lora_use two[2] = {{l, 0.0f, 0.25f}, {l, 0.0f, 0.5f}};
    assert_int_equal(mx_sd_lora_apply(m, s, two, 2, &err), 0);
    expect_merged(m, orig[0], TO_K, path, k_good[0].key, k_good[0].down_sfx, k_good[0].up_sfx,
                  0.75);
    assert_ptr_equal(mx_sd_weight(m, Q_PROJ)->data, before[2].data);
    /* undo: the stored tensors, same pointers and bytes */
    assert_int_equal(mx_sd_lora_apply(m, s, NULL, 0, &err), 0);
    assert_int_equal(mx_sd_lora_state_bytes(s), 0);
    for (int i = 0; i < 4; i++) {
        const struct mx_tensor *t = mx_sd_weight(m, names[i]);
        assert_memory_equal(t, &before[i], sizeof *t);
        float *v = values(m, names[i]);
        assert_memory_equal(v, orig[i], (size_t)mx_tensor_nelements(t) * sizeof *v);
        free(v);
        free(orig[i]);
    }
    /* weight 0: nothing copied */
    struct mx_sd_lora_use zero = {l, 0.0f, 0.0f};
    assert_int_equal(mx_sd_lora_apply(m, s, &zero, 1, &err), 0);
    assert_int_equal(mx_sd_lora_state_bytes(s), 0);
    struct mx_sd_lora_use u = {l, 1.0f, 1.0f};
    assert_int_equal(mx_sd_lora_apply(m, s, &u, 1, &err), 0);
    mx_sd_lora_state_free(m, s); /* restores before the model closes */
    assert_ptr_equal(mx_sd_weight(m, TO_K)->data, before[0].data);
    mx_sd_lora_close(l);
    unlink(path);
    free(path);
    mx_sd_model_close(m);
    free(buf);
}

static void test_names(void **state) {
    (void)state;
    void *buf;
    struct mx_sd_model *m = tiny_model(&buf);
    /* other spellings of the same weights: kohya LDM-style, diffusers lora.down, processors */
    const struct wmod alt[] = {
        {"lora_unet_input_blocks_1_1_transformer_blocks_0_attn2_to_k", ".lora_down.weight",
         ".lora_up.weight", {2, 768}, {8, 2}, 2, 2.0f},
        {"lora_te_text_model_encoder_layers_0_self_attn_q_proj", ".lora_down.weight",
         ".lora_up.weight", {2, 768}, {768, 2}, 2, 0},
    };
    const struct wmod alt2[] = {
        {"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_k",
         "_lora.down.weight", "_lora.up.weight", {2, 768}, {8, 2}, 2, 0},
        {"unet.conv_in", ".lora.down.weight", ".lora.up.weight", {1, 4, 3, 3}, {8, 1, 1, 1},
         4, 0},
    };
    const struct {
        const struct wmod *mods;
        int n;
        const char *t0, *t1;
    } cases[] = {{alt, 2, TO_K, Q_PROJ}, {alt2, 2, TO_K, CONV_IN}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char *path = write_lora(cases[c].mods, cases[c].n, "names");
        struct mx_sd_lora *l;
        struct mx_err err = {0};
        if (mx_sd_lora_open(m, path, &l, &err) < 0)
            fail_msg("%s", err.msg);
        assert_string_equal(mx_sd_lora_target(l, 0), cases[c].t0);
        assert_string_equal(mx_sd_lora_target(l, 1), cases[c].t1);
        float *orig = values(m, cases[c].t0);
        struct mx_sd_lora_state *s = mx_sd_lora_state_new();
        struct mx_sd_lora_use u = {l, 1.0f, 1.0f};
        assert_int_equal(mx_sd_lora_apply(m, s, &u, 1, &err), 0);
        expect_merged(m, orig, cases[c].t0, path, cases[c].mods[0].key,
                      cases[c].mods[0].down_sfx, cases[c].mods[0].up_sfx, 1.0);
        mx_sd_lora_state_free(m, s);
        free(orig);
        mx_sd_lora_close(l);
        unlink(path);
        free(path);
    }
    mx_sd_model_close(m);
    free(buf);
}

static void test_refused(void **state) {
    (void)state;
    void *buf;
    struct mx_sd_model *m = tiny_model(&buf);
    const struct {
        struct wmod mod;
        const char *msg;
    } cases[] = {
        {{"lora_te1_text_model_encoder_layers_0_self_attn_q_proj", ".lora_down.weight",
          ".lora_up.weight", {2, 768}, {768, 2}, 2, 0},
         "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight is an SDXL"},
        {{"text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj", ".lora_A.weight",
          ".lora_B.weight", {2, 768}, {768, 2}, 2, 0},
         "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight is an SDXL "
         "name (two text encoders): the LoRA was made for SDXL, the checkpoint is"},
        {{"lora_unet_down_blocks_3_attentions_0_proj_in", ".lora_down.weight",
          ".lora_up.weight", {2, 768}, {768, 2}, 2, 0},
         "lora_unet_down_blocks_3_attentions_0_proj_in.lora_up.weight matches no weight"},
        {{"lora_unet_conv_in", ".lora_down.weight", ".lora_up.weight", {3, 4, 1, 1},
          {8, 3, 1, 1}, 4, 0},
         "lora_unet_conv_in.lora_down.weight has shape [3, 4, 1, 1], which does not fit"},
        {{"lora_te_text_model_encoder_layers_0_self_attn_q_proj", ".lora_down.weight",
          ".lora_up.weight", {2, 768}, {767, 2}, 2, 0},
         "q_proj.lora_up.weight has shape [767, 2], expected [768, 2]"},
        {{"lora_unet_conv_in", ".lora_down.weight", ".bias", {3, 4, 3, 3}, {8}, 1, 0},
         "lora_unet_conv_in.bias is not a LoRA tensor"},
        {{"lora_unet_conv_in", ".lora_down.weight", ".alpha", {3, 4, 3, 3}, {1}, 1, 0},
         "module lora_unet_conv_in has no up weight"},
        {{"lora_unet_input_blocks_1_0_in_layers_0", ".lora_down.weight", ".lora_up.weight",
          {1, 1}, {8, 1}, 2, 0},
         "adapts model.diffusion_model.input_blocks.1.0.in_layers.0.weight, a vector"},
        {{"lora_unet_conv_in", ".lora_mid.weight", ".lora_up.weight", {3, 4, 3, 3},
          {8, 3, 1, 1}, 4, 0}, "Tucker"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char *path = write_lora(&cases[c].mod, 1, "bad");
        struct mx_sd_lora *l = (struct mx_sd_lora *)1;
        struct mx_err err = {0};
        int rc = mx_sd_lora_open(m, path, &l, &err);
        if (rc >= 0 || l || !strstr(err.msg, cases[c].msg))
            fail_msg("case %zu: rc %d, '%s' lacks '%s'", c, rc, err.msg, cases[c].msg);
        unlink(path);
        free(path);
    }
    mx_sd_model_close(m);
    free(buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tags),
        cmocka_unit_test(test_apply),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_refused),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
