/* test_sd_embedding.c - textual-inversion embeddings (core/diffusion/embedding.h) in the CLIP
 * text encoder.
 *
 * - Files: every layout A1111, diffusers and SDXL write (string_to_param.*, emb_params, a single
 *   "<token>" vector, clip_l + clip_g) in F32/F16/BF16 read to the same values; malformed ones
 *   (no tensor, several unrelated ones, 3-D, integers, 76 vectors, clip_l/clip_g counts that
 *   differ) and pickles (.pt/.bin, never opened) refused with a message naming the file.
 * - The oracle: a tiny random CLIP (F32, the layout test_sd_clip.c uses) encodes a prompt that
 *   calls an embedding exactly as a copy of the checkpoint whose token-embedding rows for two
 *   ordinary tokens were overwritten with the embedding's vectors encodes the prompt with those
 *   tokens: bit for bit, for the A1111 word, ComfyUI's embedding:NAME (with and without the
 *   extension), inside (NAME:1.3) and [NAME] weighting, and in two places at once.
 * - An embedding that does not fit in the rest of a chunk starts the next one (A1111).
 * `test_sd_embedding make CKPT OUT.safetensors WORD...` writes an embedding whose vectors are
 * the checkpoint's token-embedding rows of the words' tokens (for tests/sd_embedding.sh).
 * - Missing: embedding:NAME without a file is refused naming the folders; a plain word with no
 *   file is text. Refused when called: a pickle, a width that is not the encoder's (naming the
 *   file). "TI hashes" lists what was called, with the file's SHA-256 prefix.
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

#include "core/base/quant.h"
#include "core/base/sha256.h"
#include "core/base/util.h"
#include "core/diffusion/clip_text.h"
#include "core/diffusion/embedding.h"
#include "core/diffusion/prompt.h"
#include "core/diffusion/sd_model.h"
#include "core/format/safetensors.h"
#include "core/text/tokenizer.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"
#include "tests/mx_test.h"

#define PFX "cond_stage_model.transformer.text_model."
#define TD 128 /* width */
#define TF 256 /* MLP width */
#define TV 518 /* vocabulary: the hand-made tokenizer's */

static struct mx_backend *be;
static char g_dir[256];

/* ---- files ------------------------------------------------------------------------------- */

/* A safetensors file in memory with tensors (name, dtype, dims, shape, values as F32 converted
 * to dtype). */
struct tdesc {
    const char *name;
    int dtype;
    int nd;
    int64_t shape[3];
};

static void *st_mem(const struct tdesc *t, int n, size_t *size, uint64_t seed) {
    struct mx_st_writer *w = mx_st_writer_new();
    assert_non_null(w);
    for (int i = 0; i < n; i++) {
        int64_t ne = 1;
        for (int d = 0; d < t[i].nd; d++)
            ne *= t[i].shape[d];
        float *v = malloc((size_t)ne * 4);
        uint16_t *h = malloc((size_t)ne * 2);
        for (int64_t k = 0; k < ne; k++) {
            v[k] = mx_test_randf(&seed);
            h[k] = t[i].dtype == MX_ST_BF16 ? mx_fp32_to_bf16(v[k]) : mx_fp32_to_fp16(v[k]);
        }
        const void *data = t[i].dtype == MX_ST_F32 || t[i].dtype == MX_ST_I32 ? (void *)v
                                                                               : (void *)h;
        assert_int_equal(mx_st_writer_add_tensor(w, t[i].name, t[i].dtype, t[i].nd, t[i].shape,
                                                 data), 0);
        free(v);
        free(h);
    }
    void *buf;
    struct mx_err e = {0};
    assert_int_equal(mx_st_writer_write_mem(w, &buf, size, &e), 0);
    mx_st_writer_free(w);
    return buf;
}

static struct mx_sd_embedding *load_desc(const struct tdesc *t, int n, const char *label,
                                         struct mx_err *e, int *rc) {
    mx_err_clear(e); /* the first error stays: each case starts clean */
    size_t size;
    void *buf = st_mem(t, n, &size, 3);
    struct mx_sd_embedding *emb = NULL;
    *rc = mx_sd_embedding_load_mem(buf, size, label, &emb, e);
    free(buf);
    return emb;
}

static void test_files(void **state) {
    (void)state;
    struct mx_err e = {0};
    int rc;
    static const struct {
        struct tdesc t[3];
        int n;
        int64_t n_vec, dim, dim_g;
    } ok[] = {
        {{{"string_to_param.*", MX_ST_F16, 2, {2, 768}}}, 1, 2, 768, 0},
        {{{"string_to_token.*", MX_ST_F32, 1, {1}}, {"string_to_param.*", MX_ST_F32, 2, {4, 1024}}},
         2, 4, 1024, 0},
        {{{"emb_params", MX_ST_F32, 2, {3, 768}}}, 1, 3, 768, 0},
        {{{"<cat-toy>", MX_ST_BF16, 1, {768}}}, 1, 1, 768, 0},
        {{{"clip_g", MX_ST_F16, 2, {2, 1280}}, {"clip_l", MX_ST_F16, 2, {2, 768}}}, 2, 2, 768,
         1280},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        struct mx_sd_embedding *emb = load_desc(ok[i].t, ok[i].n, "/x/good.safetensors", &e, &rc);
        if (rc < 0)
            fail_msg("case %zu: %s", i, e.msg);
        assert_string_equal(emb->name, "good");
        assert_int_equal(emb->n_vec, ok[i].n_vec);
        assert_int_equal(emb->dim, ok[i].dim);
        assert_int_equal(emb->dim_g, ok[i].dim_g);
        assert_int_equal(strlen(emb->hash), 12);
        assert_true(fabsf(emb->vec[0]) <= 1.0f && emb->vec[emb->n_vec * emb->dim - 1] != 0.0f);
        assert_non_null(mx_sd_embedding_vectors(emb, ok[i].dim, &e));
        assert_true(!ok[i].dim_g || mx_sd_embedding_vectors(emb, 1280, &e) == emb->vec_g);
        mx_err_clear(&e);
        assert_null(mx_sd_embedding_vectors(emb, 333, &e));
        assert_non_null(strstr(e.msg, "good.safetensors: an"));
        mx_sd_embedding_free(emb);
    }
    /* the first value of an F16 file: the writer's rounding of the first random number */
    static const struct {
        struct tdesc t[2];
        int n;
        const char *want;
    } bad[] = {
        {{{"a", MX_ST_F32, 2, {1, 8}}, {"b", MX_ST_F32, 2, {1, 8}}}, 2,
         "bad.safetensors: not a textual-inversion embedding (2 tensors"},
        {{{"emb_params", MX_ST_F32, 3, {1, 2, 8}}}, 1, "'emb_params' has shape [1, 2, 8]"},
        {{{"emb_params", MX_ST_I32, 2, {1, 8}}}, 1, "'emb_params' is I32, expected F32"},
        {{{"emb_params", MX_ST_F32, 2, {76, 8}}}, 1, "has shape [76, 8], expected [n, dim]"},
        {{{"clip_l", MX_ST_F32, 2, {2, 768}}, {"clip_g", MX_ST_F32, 2, {3, 1280}}}, 2,
         "clip_l has 2 vectors, clip_g 3"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct mx_sd_embedding *emb = load_desc(bad[i].t, bad[i].n, "bad.safetensors", &e, &rc);
        assert_null(emb);
        assert_true(rc < 0);
        if (!strstr(e.msg, bad[i].want))
            fail_msg("case %zu: '%s' does not say '%s'", i, e.msg, bad[i].want);
    }
    /* no tensor at all, and bytes that are no safetensors */
    struct mx_sd_embedding *emb = load_desc(NULL, 0, "empty.safetensors", &e, &rc);
    assert_true(rc < 0 && !emb);
    mx_err_clear(&e);
    assert_true(mx_sd_embedding_load_mem("junk", 4, "junk.safetensors", &emb, &e) < 0);
    assert_non_null(strstr(e.msg, "junk.safetensors"));
    /* pickles: refused by name, never opened (this one does not even exist) */
    static const char *const pickles[] = {"/nowhere/x.pt", "/nowhere/y.bin", "/nowhere/Z.PT"};
    for (size_t i = 0; i < 3; i++) {
        mx_err_clear(&e);
        rc = mx_sd_embedding_load(pickles[i], NULL, &emb, &e);
        assert_int_equal(rc, MX_EUNSUP);
        assert_non_null(strstr(e.msg, "a pickled embedding (.pt/.bin) is not read"));
        assert_non_null(strstr(e.msg, pickles[i]));
    }
}

/* ---- a tiny CLIP ------------------------------------------------------------------------- */

struct tiny {
    char names[64][128];
    float *data[64];
    int64_t shape[64][2];
    int n;
};

static void tiny_add(struct tiny *m, const char *name, int64_t d0, int64_t d1, float scale,
                     float offset, uint64_t *s) {
    snprintf(m->names[m->n], sizeof m->names[0], "%s", name);
    int64_t ne = d0 * (d1 ? d1 : 1);
    m->data[m->n] = malloc((size_t)ne * sizeof(float));
    for (int64_t i = 0; i < ne; i++)
        m->data[m->n][i] = offset + scale * mx_test_randf(s);
    m->shape[m->n][0] = d0;
    m->shape[m->n][1] = d1;
    m->n++;
}

/* Two layers of CLIP at width TD with random weights, plus the stub UNet tensors that make the
 * loader see SD 1.x (as test_sd_clip.c). */
static void tiny_init(struct tiny *m, uint64_t seed) {
    memset(m, 0, sizeof *m);
    uint64_t s = seed;
    float a = 1.7f / sqrtf(TD);
    tiny_add(m, PFX "embeddings.token_embedding.weight", TV, TD, 1.0f, 0, &s);
    tiny_add(m, PFX "embeddings.position_embedding.weight", 77, TD, 0.5f, 0, &s);
    tiny_add(m, PFX "final_layer_norm.weight", TD, 0, 0.2f, 1, &s);
    tiny_add(m, PFX "final_layer_norm.bias", TD, 0, 0.1f, 0, &s);
    for (int il = 0; il < 2; il++) {
        static const struct { const char *what; int64_t d0, d1; float sc, off; } t[] = {
            {"layer_norm1.weight", TD, 0, 0.2f, 1}, {"layer_norm1.bias", TD, 0, 0.1f, 0},
            {"layer_norm2.weight", TD, 0, 0.2f, 1}, {"layer_norm2.bias", TD, 0, 0.1f, 0},
            {"self_attn.q_proj.weight", TD, TD, 2, 0}, {"self_attn.q_proj.bias", TD, 0, 0.1f, 0},
            {"self_attn.k_proj.weight", TD, TD, 2, 0}, {"self_attn.k_proj.bias", TD, 0, 0.1f, 0},
            {"self_attn.v_proj.weight", TD, TD, 1, 0}, {"self_attn.v_proj.bias", TD, 0, 0.1f, 0},
            {"self_attn.out_proj.weight", TD, TD, 1, 0},
            {"self_attn.out_proj.bias", TD, 0, 0.1f, 0},
            {"mlp.fc1.weight", TF, TD, 1, 0}, {"mlp.fc1.bias", TF, 0, 0.1f, 0},
            {"mlp.fc2.weight", TD, TF, 1, 0}, {"mlp.fc2.bias", TD, 0, 0.1f, 0},
        };
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
            char n[128];
            snprintf(n, sizeof n, PFX "encoder.layers.%d.%s", il, t[i].what);
            tiny_add(m, n, t[i].d0, t[i].d1, t[i].d1 ? t[i].sc * a : t[i].sc, t[i].off, &s);
        }
    }
}

static void tiny_free(struct tiny *m) {
    for (int i = 0; i < m->n; i++)
        free(m->data[i]);
}

static void tiny_write(const struct tiny *m, const char *path) {
    struct mx_st_writer *w = mx_st_writer_new();
    assert_non_null(w);
    for (int i = 0; i < m->n; i++)
        assert_int_equal(mx_st_writer_add_tensor(w, m->names[i], MX_ST_F32,
                                                 m->shape[i][1] ? 2 : 1, m->shape[i],
                                                 m->data[i]), 0);
    static float k[8 * TD], conv[8 * 4];
    int64_t ks[2] = {8, TD}, cs[4] = {8, 4, 1, 1}, ps[4] = {8, 8, 1, 1};
    static float proj[64];
    assert_int_equal(mx_st_writer_add_tensor(w, "model.diffusion_model.input_blocks.1.1."
                                             "transformer_blocks.0.attn2.to_k.weight", MX_ST_F32,
                                             2, ks, k), 0);
    assert_int_equal(mx_st_writer_add_tensor(w, "model.diffusion_model.input_blocks.1.1.proj_in"
                                             ".weight", MX_ST_F32, 4, ps, proj), 0);
    assert_int_equal(mx_st_writer_add_tensor(w, "model.diffusion_model.input_blocks.0.0.weight",
                                             MX_ST_F32, 4, cs, conv), 0);
    struct mx_err e = {0};
    if (mx_st_writer_write(w, path, &e) < 0)
        fail_msg("%s", e.msg);
    mx_st_writer_free(w);
}

static struct mx_tokenizer *small_tok(void) {
    const char *text = "#version: 0.2\nc a\nca t</w>\nd o\ndo g</w>\n";
    struct mx_tokenizer *t = NULL;
    assert_int_equal(mx_clip_tokenizer_from_merges(text, strlen(text), &t, NULL), 0);
    return t;
}

struct enc {
    struct mx_sd_model *model;
    struct mx_sd_clip *clip;
};

static void enc_open(struct enc *x, const char *path, const struct mx_tokenizer *tok) {
    struct mx_err e = {0};
    if (mx_sd_model_open(be, path, NULL, &x->model, &e) < 0 ||
        mx_sd_clip_new(x->model, tok, &x->clip, &e) < 0)
        fail_msg("%s", e.msg);
}

static void enc_close(struct enc *x) {
    mx_sd_clip_free(x->clip);
    mx_sd_model_close(x->model);
}

static float *encode(struct enc *x, const char *prompt, int64_t *n_ctx) {
    float *h = NULL;
    struct mx_err e = {0};
    int rc = mx_sd_clip_encode(x->clip, prompt, 0, 1, &h, n_ctx, &e);
    if (rc < 0)
        fail_msg("'%s': %s", prompt, e.msg);
    return h;
}

/* One token's id (the word must be a single CLIP token). */
static int32_t one_id(const struct mx_tokenizer *tok, const char *word) {
    int32_t *ids;
    size_t n;
    assert_int_equal(mx_tokenizer_encode(tok, word, strlen(word), 0, &ids, &n, NULL), 0);
    assert_int_equal((int)n, 1);
    int32_t id = ids[0];
    free(ids);
    return id;
}

static void write_file(const char *path, const void *buf, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, n, f), n);
    fclose(f);
}

/* The embedding "emb" (2 vectors of TD, F32) in g_dir; its vectors into v (2 * TD). */
static void write_emb(float *v) {
    static const struct tdesc t[] = {{"emb_params", MX_ST_F32, 2, {2, TD}}};
    size_t size;
    void *buf = st_mem(t, 1, &size, 99);
    char path[512];
    snprintf(path, sizeof path, "%s/emb.safetensors", g_dir);
    write_file(path, buf, size);
    struct mx_sd_embedding *e;
    assert_int_equal(mx_sd_embedding_load_mem(buf, size, path, &e, NULL), 0);
    memcpy(v, e->vec, 2 * TD * sizeof *v);
    mx_sd_embedding_free(e);
    free(buf);
}

static void test_encode_equals_injected(void **state) {
    (void)state;
    struct mx_tokenizer *tok = small_tok();
    float vec[2 * TD];
    write_emb(vec);
    struct tiny m;
    tiny_init(&m, 7);
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/base.safetensors", g_dir);
    snprintf(pb, sizeof pb, "%s/injected.safetensors", g_dir);
    tiny_write(&m, pa);
    /* the copy: rows of "x" and "y" are the embedding's two vectors */
    int32_t ix = one_id(tok, "x"), iy = one_id(tok, "y");
    memcpy(m.data[0] + (int64_t)ix * TD, vec, TD * sizeof *vec);
    memcpy(m.data[0] + (int64_t)iy * TD, vec + TD, TD * sizeof *vec);
    tiny_write(&m, pb);
    tiny_free(&m);
    struct enc a, b;
    enc_open(&a, pa, tok);
    enc_open(&b, pb, tok);
    const char *dirs[] = {g_dir, NULL};
    struct mx_sd_emb_db *db;
    struct mx_err e = {0};
    assert_int_equal(mx_sd_emb_db_new(dirs, TD, &db, &e), 0);
    mx_sd_clip_set_embeddings(a.clip, db);
    static const struct { const char *with, *injected; } cases[] = {
        {"a cat emb, dog", "a cat x y, dog"},
        {"a cat embedding:emb dog", "a cat x y dog"},
        {"embedding:emb.safetensors,dog", "x y,dog"},
        {"a (emb:1.3) dog, [cat emb]", "a (x y:1.3) dog, [cat x y]"},
        {"((emb)) BREAK emb", "((x y)) BREAK x y"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t na, nb;
        float *ha = encode(&a, cases[i].with, &na), *hb = encode(&b, cases[i].injected, &nb);
        float *hp = encode(&a, cases[i].injected, &nb); /* the base model: different */
        assert_int_equal(na, nb);
        assert_memory_equal(ha, hb, (size_t)(na * TD) * sizeof *ha);
        double d = 0;
        for (int64_t k = 0; k < na * TD; k++)
            d = fmax(d, fabs((double)ha[k] - hp[k]));
        assert_true(d > 1e-2);
        printf("'%s' == '%s' with the rows injected (vs the plain tokens: %.3g)\n",
               cases[i].with, cases[i].injected, d);
        free(ha);
        free(hb);
        free(hp);
    }
    /* TI hashes: the file's SHA-256 prefix */
    char path[512], want[64], got[256];
    snprintf(path, sizeof path, "%s/emb.safetensors", g_dir);
    char *buf;
    size_t n;
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    n = (size_t)ftell(f);
    rewind(f);
    buf = malloc(n);
    assert_int_equal(fread(buf, 1, n, f), n);
    fclose(f);
    char hex[65];
    mx_sha256_hex(buf, n, hex);
    free(buf);
    snprintf(want, sizeof want, "emb: %.12s", hex);
    assert_string_equal(mx_sd_emb_db_hashes(db, got, sizeof got), want);
    mx_sd_emb_db_reset_used(db);
    assert_string_equal(mx_sd_emb_db_hashes(db, got, sizeof got), "");
    mx_sd_emb_db_free(db);
    enc_close(&a);
    enc_close(&b);
    unlink(pa);
    unlink(pb);
    mx_tokenizer_free(tok);
}

/* 74 words then the 2-vector embedding: it does not fit the 75th place, so chunk 2 starts
 * with it (A1111 moves it whole). */
static void test_chunk_boundary(void **state) {
    (void)state;
    struct mx_tokenizer *tok = small_tok();
    float vec[2 * TD];
    write_emb(vec);
    const char *dirs[] = {g_dir, NULL};
    struct mx_sd_emb_db *db;
    assert_int_equal(mx_sd_emb_db_new(dirs, TD, &db, NULL), 0);
    char prompt[512] = "";
    for (int i = 0; i < 74; i++)
        strcat(prompt, "a ");
    strcat(prompt, "emb dog");
    struct mx_sd_prompt_tokens t;
    struct mx_err e = {0};
    assert_int_equal(mx_sd_prompt_tokenize_emb(tok, prompt, 0, 0, db, &t, &e), 0);
    assert_int_equal(t.n_chunks, 2);
    assert_int_equal(t.n_emb, 2);
    assert_true(t.ids[75] >= 0);                 /* chunk 1: 74 words, then EOS */
    assert_int_equal(t.ids[75], mx_tokenizer_eos(tok));
    assert_int_equal(t.ids[77 + 1], -1);         /* chunk 2: the two vectors, then dog */
    assert_int_equal(t.ids[77 + 2], -2);
    assert_int_equal(t.emb[0].row, 0);
    assert_int_equal(t.emb[1].row, 1);
    assert_int_equal(t.ids[77 + 3], one_id(tok, "dog"));
    mx_sd_prompt_tokens_deinit(&t);
    mx_sd_emb_db_free(db);
    mx_tokenizer_free(tok);
}

static void test_missing_and_refused(void **state) {
    (void)state;
    struct mx_tokenizer *tok = small_tok();
    float vec[2 * TD];
    write_emb(vec);
    char path[512];
    snprintf(path, sizeof path, "%s/pick.pt", g_dir);
    write_file(path, "\x80\x02}q\x00.", 6); /* a pickle's first bytes: never read */
    static const struct tdesc wide[] = {{"emb_params", MX_ST_F32, 2, {1, 1024}}};
    size_t size;
    void *buf = st_mem(wide, 1, &size, 5);
    snprintf(path, sizeof path, "%s/wide.safetensors", g_dir);
    write_file(path, buf, size);
    free(buf);
    const char *dirs[] = {"/nonexistent-folder", g_dir, NULL};
    struct mx_sd_emb_db *db;
    assert_int_equal(mx_sd_emb_db_new(dirs, TD, &db, NULL), 0);
    assert_int_equal(mx_sd_emb_db_count(db), 3);
    static const struct { const char *prompt; int rc; const char *want; } cases[] = {
        {"a embedding:nothere dog", MX_ENOENT,
         "embedding:nothere: no nothere.safetensors in the embeddings folders "
         "(/nonexistent-folder, "},
        {"a pick", MX_EUNSUP, "pick.pt: a pickled embedding (.pt/.bin) is not read"},
        {"embedding:pick", MX_EUNSUP, "pick.pt: a pickled embedding"},
        {"(wide:1.2)", MX_EFORMAT, "wide.safetensors: an embedding of width 1024 (SD 2.x), the "
         "model's text encoder is 128"},
        {"a nothere dog", 0, NULL}, /* a plain word without a file is text */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct mx_sd_prompt_tokens t;
        struct mx_err e = {0};
        int rc = mx_sd_prompt_tokenize_emb(tok, cases[i].prompt, 0, 0, db, &t, &e);
        printf("'%s': %s\n", cases[i].prompt, rc ? e.msg : "ok");
        assert_int_equal(rc, cases[i].rc);
        if (cases[i].want && !strstr(e.msg, cases[i].want))
            fail_msg("'%s' does not say '%s'", e.msg, cases[i].want);
        if (rc == 0)
            assert_int_equal(t.n_emb, 0);
        mx_sd_prompt_tokens_deinit(&t);
    }
    mx_sd_emb_db_free(db);
    snprintf(path, sizeof path, "%s/pick.pt", g_dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/wide.safetensors", g_dir);
    unlink(path);
    mx_tokenizer_free(tok);
}

static int setup(void **state) {
    (void)state;
    struct mx_err e = {0};
    be = mx_backend_cpu_new(2, &e);
    snprintf(g_dir, sizeof g_dir, "/tmp/mx-test-sd-emb-%d", (int)getpid());
    mkdir(g_dir, 0700);
    return be ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/emb.safetensors", g_dir);
    unlink(path);
    rmdir(g_dir);
    mx_backend_free(be);
    return 0;
}

/* make CKPT OUT WORD...: the rows of the words' CLIP tokens as an A1111 emb_params file. */
static int make_from_rows(int argc, char **argv) {
    struct mx_err e = {0};
    struct mx_backend *cpu = mx_backend_cpu_new(1, &e);
    struct mx_sd_model *m = NULL;
    struct mx_tokenizer *tok = NULL;
    if (!cpu || mx_sd_model_open(cpu, argv[2], NULL, &m, &e) < 0 ||
        mx_sd_clip_tokenizer_open(argv[2], &tok, &e) < 0) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    const struct mx_tensor *te = mx_sd_weight(m, PFX "embeddings.token_embedding.weight");
    int64_t dim = te->ne[0];
    float *v = malloc((size_t)(dim * MX_SD_EMB_MAX_VECTORS) * sizeof *v);
    int64_t n = 0;
    for (int i = 4; i < argc; i++) {
        int32_t *ids;
        size_t k;
        if (mx_tokenizer_encode(tok, argv[i], strlen(argv[i]), 0, &ids, &k, &e) < 0)
            return 1;
        for (size_t j = 0; j < k && n < MX_SD_EMB_MAX_VECTORS; j++, n++) {
            size_t row;
            mx_row_size(te->type, dim, &row);
            mx_type_traits(te->type)->to_float((const char *)te->data + (size_t)ids[j] * row,
                                               v + n * dim, dim);
        }
        free(ids);
    }
    struct mx_st_writer *w = mx_st_writer_new();
    int64_t shape[2] = {n, dim};
    int rc = mx_st_writer_add_tensor(w, "emb_params", MX_ST_F32, 2, shape, v);
    if (rc == 0)
        rc = mx_st_writer_write(w, argv[3], &e);
    if (rc < 0)
        fprintf(stderr, "%s: %s\n", argv[3], e.msg);
    mx_st_writer_free(w);
    free(v);
    mx_tokenizer_free(tok);
    mx_sd_model_close(m);
    mx_backend_free(cpu);
    return rc < 0;
}

int main(int argc, char **argv) {
    if (argc >= 5 && !strcmp(argv[1], "make"))
        return make_from_rows(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_encode_equals_injected),
        cmocka_unit_test(test_chunk_boundary),
        cmocka_unit_test(test_missing_and_refused),
    };
    return mx_test_status(cmocka_run_group_tests(tests, setup, teardown));
}
