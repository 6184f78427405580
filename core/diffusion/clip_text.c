/* clip_text.c - CLIP / OpenCLIP text encoders on the backend and A1111 prompt weighting (see
 * clip_text.h).
 *
 * The workload is small: one chunk is 77 tokens through 12 (SD 1.x) or 23 of 24 (SD 2.x)
 * pre-LN transformer layers, about 6 GFLOP for ViT-L, run once per prompt. Weights stay as the
 * checkpoint stores them (F16 views into the mapped file); only the vectors the elementwise ops
 * read (norms, biases, position embeddings) are copied to F32 once, at creation. Activations for
 * one chunk live in a scratch arena sized at creation; chunks are encoded one after the other.
 * Ref: https://github.com/leejet/stable-diffusion.cpp/blob/97d2990807fe6d558e395f8764198d7c7e7b411c/clip.hpp
 * Ref: https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/v1.10.1/modules/sd_hijack_clip.py
 */
#include "core/diffusion/clip_text.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/diffusion/embedding.h"
#include "core/diffusion/prompt.h"

#define PFX "cond_stage_model.transformer.text_model."    /* SD 1.x/2.x, SDXL's CLIP-L */
#define PFX_BIGG "cond_stage_model.1.transformer.text_model." /* SDXL's OpenCLIP bigG */
#define HEAD_DIM 64      /* every CLIP text tower uses 64-wide heads (ViT-L 12, ViT-H 16) */
#define LN_EPS 1e-5f     /* nn.LayerNorm default, CLIP and OpenCLIP alike */
#define MAX_LAYERS 64    /* sanity bound on the layer count read from the names */
#define OPENCLIP_H_LAYERS 24 /* OpenCLIP ViT-H/14's text tower (SD 2.x) */

/* One transformer layer's weights. Matrices are borrowed views into the checkpoint (ne =
 * [n_in, n_out]); vectors are F32 copies in the encoder's weight arena. */
struct clip_layer {
    const struct mx_tensor *q_w, *k_w, *v_w; /* [dim, dim] attention projections */
    const struct mx_tensor *o_w;             /* [dim, dim] out_proj */
    const struct mx_tensor *fc1_w;           /* [dim, n_ff] */
    const struct mx_tensor *fc2_w;           /* [n_ff, dim] */
    struct mx_tensor ln1_w, ln1_b;           /* F32 [dim] layer_norm1 (before attention) */
    struct mx_tensor ln2_w, ln2_b;           /* F32 [dim] layer_norm2 (before the MLP) */
    struct mx_tensor q_b, k_b, v_b, o_b;     /* F32 [dim] */
    struct mx_tensor fc1_b;                  /* F32 [n_ff] */
    struct mx_tensor fc2_b;                  /* F32 [dim] */
};

struct mx_sd_clip {
    const struct mx_sd_model *m;     /* borrowed */
    const struct mx_tokenizer *tok;  /* borrowed */
    struct mx_backend *be;           /* m->be, borrowed */
    int64_t dim;                     /* hidden width: 768 / 1024 */
    int64_t n_ff;                    /* MLP width: 3072 / 4096 */
    int64_t n_vocab;                 /* token embedding rows: 49408 */
    int n_layer;                     /* layers in the checkpoint */
    int n_full;                      /* layers clip_skip counts from: n_layer, or 24 for an SD
                                        2.x encoder stored with 23 (diffusers drops OpenCLIP's
                                        last layer, which SD 2.x never uses) */
    int n_head;                      /* dim / 64 */
    bool quick_gelu;                 /* SD 1.x quick_gelu, else gelu (OpenCLIP) */
    int default_skip;                /* clip_skip used for 0: 1 (SD 1.x), 2 (SD 2.x) */
    int32_t pad_id;                  /* id after the EOS in a chunk: EOS (SD 1.x), 0 (SD 2.x) */
    const char *pfx;                 /* the tower's weight names: PFX or PFX_BIGG */
    bool final_ln;                   /* final_layer_norm on the hidden states (SDXL: not) */
    float *proj;                     /* SDXL bigG: text_projection as host F32 [dim][proj_dim]
                                        (pooled = x @ P), or NULL */
    int64_t proj_dim;                /* its output width (1280), 0 without */
    const struct mx_tensor *tok_emb; /* [dim, n_vocab] token_embedding, borrowed */
    struct mx_tensor pos_emb;        /* F32 [dim, 77] position_embedding */
    struct mx_tensor fin_w, fin_b;   /* F32 [dim] final_layer_norm */
    struct clip_layer *layers;       /* [n_layer] */
    struct mx_arena wts;             /* the F32 vector copies */
    struct mx_arena act;             /* scratch for one chunk */
    struct mx_tensor ids;            /* I32 [77] the chunk's ids */
    struct mx_tensor pos;            /* I32 [77] 0..76: query and key positions (causal mask) */
    struct mx_tensor x;              /* [dim, 77] residual stream */
    struct mx_tensor xn;             /* [dim, 77] normed input of a block; the final output */
    struct mx_tensor q, k, v;        /* [dim, 77] */
    struct mx_tensor att;            /* [dim, 77] attention output before out_proj */
    struct mx_tensor o;              /* [dim, 77] a block's output before the residual add */
    struct mx_tensor ff;             /* [n_ff, 77] MLP hidden */
    int32_t empty_ids[MX_SD_CHUNK_LEN]; /* the empty-prompt chunk: BOS, EOS, pads */
    float *empty_h;                  /* [77][dim] its hidden states, or NULL */
    int empty_layers;                /* the layers empty_h was computed with; 0 = none */
    struct mx_sd_emb_db *emb;        /* textual-inversion embeddings prompts may call
                                        (borrowed; NULL: none) */
};

/* ---- creation ----------------------------------------------------------------------------- */

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int mx_sd_clip_tokenizer_open(const char *model_path, struct mx_tokenizer **out,
                              struct mx_err *err) {
    *out = NULL;
    char sub[4096];
    if (model_path && is_dir(model_path)) {
        int n = snprintf(sub, sizeof sub, "%s/tokenizer", model_path);
        if (n > 0 && (size_t)n < sizeof sub && is_dir(sub))
            return mx_clip_tokenizer_load(sub, out, err);
    }
    return mx_clip_tokenizer_load(NULL, out, err);
}

/* The arena tensors of one encoder; run once measuring and once for real (same calls). */
static int alloc_weights(struct mx_sd_clip *c, struct mx_arena *a, struct mx_err *err) {
    int rc = mx_arena_tensor(a, &c->pos_emb, MX_TYPE_F32, c->dim, MX_SD_CHUNK_LEN, 1, 1,
                             "clip.pos_emb", err);
    if (rc == 0)
        rc = mx_arena_tensor(a, &c->fin_w, MX_TYPE_F32, c->dim, 1, 1, 1, "clip.fin_w", err);
    if (rc == 0)
        rc = mx_arena_tensor(a, &c->fin_b, MX_TYPE_F32, c->dim, 1, 1, 1, "clip.fin_b", err);
    for (int il = 0; il < c->n_layer && rc == 0; il++) {
        struct clip_layer *l = &c->layers[il];
        struct mx_tensor *vd[] = {&l->ln1_w, &l->ln1_b, &l->ln2_w, &l->ln2_b, &l->q_b,
                                  &l->k_b,   &l->v_b,   &l->o_b,   &l->fc2_b};
        for (size_t i = 0; i < sizeof vd / sizeof vd[0] && rc == 0; i++)
            rc = mx_arena_tensor(a, vd[i], MX_TYPE_F32, c->dim, 1, 1, 1, "clip.vec", err);
        if (rc == 0)
            rc = mx_arena_tensor(a, &l->fc1_b, MX_TYPE_F32, c->n_ff, 1, 1, 1, "clip.fc1_b", err);
    }
    return rc;
}

static int alloc_acts(struct mx_sd_clip *c, struct mx_arena *a, struct mx_err *err) {
    const int64_t T = MX_SD_CHUNK_LEN;
    int rc = mx_arena_tensor(a, &c->ids, MX_TYPE_I32, T, 1, 1, 1, "clip.ids", err);
    if (rc == 0)
        rc = mx_arena_tensor(a, &c->pos, MX_TYPE_I32, T, 1, 1, 1, "clip.pos", err);
    struct mx_tensor *d[] = {&c->x, &c->xn, &c->q, &c->k, &c->v, &c->att, &c->o};
    for (size_t i = 0; i < sizeof d / sizeof d[0] && rc == 0; i++)
        rc = mx_arena_tensor(a, d[i], MX_TYPE_F32, c->dim, T, 1, 1, "clip.act", err);
    if (rc == 0)
        rc = mx_arena_tensor(a, &c->ff, MX_TYPE_F32, c->n_ff, T, 1, 1, "clip.ff", err);
    return rc;
}

/* Copies a checkpoint vector (any float type) into its F32 arena tensor. */
static int copy_vec(struct mx_sd_clip *c, struct mx_tensor *dst, const char *name,
                    struct mx_err *err) {
    const struct mx_tensor *src;
    int rc = mx_sd_need(c->m, &src, dst->ne, err, "%s", name);
    if (rc < 0)
        return rc;
    if ((rc = mx_op_cpy(c->be, dst, src)) < 0)
        return mx_err_set(err, rc, "%s: %s: %s", c->m->path, name,
                          mx_backend_last_error(c->be));
    return 0;
}

/* Looks up every weight, checks shapes, fills the F32 vectors. */
static int bind_weights(struct mx_sd_clip *c, struct mx_err *err) {
    const int64_t D = c->dim, F = c->n_ff;
    char name[256], nb[256], nc[256];
    int rc;
    snprintf(name, sizeof name, "%sembeddings.position_embedding.weight", c->pfx);
    snprintf(nb, sizeof nb, "%sfinal_layer_norm.weight", c->pfx);
    snprintf(nc, sizeof nc, "%sfinal_layer_norm.bias", c->pfx);
    if ((rc = copy_vec(c, &c->pos_emb, name, err)) < 0 ||
        (rc = copy_vec(c, &c->fin_w, nb, err)) < 0 || (rc = copy_vec(c, &c->fin_b, nc, err)) < 0)
        return rc;
    for (int il = 0; il < c->n_layer; il++) {
        struct clip_layer *l = &c->layers[il];
        char lp[128];
        snprintf(lp, sizeof lp, "%sencoder.layers.", c->pfx);
        struct {
            const struct mx_tensor **w;
            const char *what;
            int64_t ne0, ne1;
        } mats[] = {
            {&l->q_w, "self_attn.q_proj", D, D},   {&l->k_w, "self_attn.k_proj", D, D},
            {&l->v_w, "self_attn.v_proj", D, D},   {&l->o_w, "self_attn.out_proj", D, D},
            {&l->fc1_w, "mlp.fc1", D, F},           {&l->fc2_w, "mlp.fc2", F, D},
        };
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) {
            if ((rc = mx_sd_need(c->m, mats[i].w, (int64_t[4]){mats[i].ne0, mats[i].ne1, 1, 1},
                                 err, "%s%d.%s.weight", lp, il, mats[i].what)) < 0)
                return rc;
            if (!mx_backend_supports(c->be, MX_OP_MATMUL, (*mats[i].w)->type))
                return mx_err_set(err, MX_EUNSUP, "%s: backend %s cannot multiply %s weights "
                                  "(%s%d.%s.weight)", c->m->path, mx_backend_name(c->be),
                                  mx_type_name((*mats[i].w)->type), lp, il, mats[i].what);
        }
        struct {
            struct mx_tensor *t;
            const char *what;
        } vecs[] = {
            {&l->ln1_w, "layer_norm1.weight"},    {&l->ln1_b, "layer_norm1.bias"},
            {&l->ln2_w, "layer_norm2.weight"},    {&l->ln2_b, "layer_norm2.bias"},
            {&l->q_b, "self_attn.q_proj.bias"},   {&l->k_b, "self_attn.k_proj.bias"},
            {&l->v_b, "self_attn.v_proj.bias"},   {&l->o_b, "self_attn.out_proj.bias"},
            {&l->fc1_b, "mlp.fc1.bias"},          {&l->fc2_b, "mlp.fc2.bias"},
        };
        for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++) {
            snprintf(name, sizeof name, "%s%d.%s", lp, il, vecs[i].what);
            if ((rc = copy_vec(c, vecs[i].t, name, err)) < 0)
                return rc;
        }
    }
    return 0;
}

int mx_sd_clip_new(const struct mx_sd_model *m, const struct mx_tokenizer *tok,
                   struct mx_sd_clip **out, struct mx_err *err) {
    return mx_sd_clip_new_tower(m, tok, MX_SD_CLIP_MAIN, out, err);
}

/* SDXL's text_projection [dim in, proj out] (OpenCLIP's orientation) as host F32. */
static int load_projection(struct mx_sd_clip *c, struct mx_err *err) {
    const struct mx_tensor *p;
    int rc = mx_sd_need(c->m, &p, (int64_t[4]){-1, c->dim, 1, 1}, err, "%stext_projection",
                        c->pfx);
    if (rc < 0)
        return rc;
    const struct mx_type_traits *tr = mx_type_traits(p->type);
    size_t bytes = mx_tensor_nbytes(p);
    void *raw = malloc(bytes);
    c->proj_dim = p->ne[0];
    c->proj = malloc((size_t)(c->proj_dim * c->dim) * sizeof *c->proj);
    if (!raw || !c->proj || !tr || !tr->to_float) {
        free(raw);
        return mx_err_set(err, raw && c->proj ? MX_EFORMAT : MX_ENOMEM, "%s: %stext_projection: "
                          "%s", c->m->path, c->pfx, raw && c->proj ? "unreadable type"
                                                                   : "out of memory");
    }
    if ((rc = mx_tensor_get(c->be, p, raw, 0, bytes)) < 0) {
        free(raw);
        return mx_err_set(err, rc, "%s: %stext_projection: %s", c->m->path, c->pfx,
                          mx_backend_last_error(c->be));
    }
    tr->to_float(raw, c->proj, c->proj_dim * c->dim);
    free(raw);
    return 0;
}

int mx_sd_clip_new_tower(const struct mx_sd_model *m, const struct mx_tokenizer *tok, int tower,
                         struct mx_sd_clip **out, struct mx_err *err) {
    *out = NULL;
    int rc;
    bool xl = m->family == MX_SD_FAMILY_SDXL, bigg = tower == MX_SD_CLIP_BIGG;
    const char *pfx = bigg ? PFX_BIGG : PFX;
    char name[256];
    snprintf(name, sizeof name, "%sembeddings.token_embedding.weight", pfx);
    const struct mx_tensor *te = mx_sd_weight(m, name);
    if (!te)
        return mx_err_set(err, MX_EFORMAT, "%s: no CLIP text encoder (expected %s* tensors)",
                          m->path, pfx);
    if (mx_tokenizer_kind(tok) != MX_TOK_CLIP || mx_tokenizer_bos(tok) == MX_TOK_NONE ||
        mx_tokenizer_eos(tok) == MX_TOK_NONE)
        return mx_err_set(err, MX_EINVAL, "%s: the text encoder needs a CLIP tokenizer",
                          m->path);
    struct mx_sd_clip *c = calloc(1, sizeof *c);
    if (!c)
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", m->path);
    c->m = m;
    c->tok = tok;
    c->be = m->be;
    c->pfx = pfx;
    c->final_ln = !xl; /* SDXL: the penultimate layer's hidden states as they are */
    c->tok_emb = te;
    c->dim = te->ne[0];
    c->n_vocab = te->ne[1];
    c->n_head = (int)(c->dim / HEAD_DIM);
    if (c->dim % HEAD_DIM != 0 || c->dim <= 0 || te->ne[2] != 1 || te->ne[3] != 1) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: token embedding width %lld is not a multiple of "
                        "%d", m->path, (long long)c->dim, HEAD_DIM);
        goto fail;
    }
    if (mx_tokenizer_n_vocab(tok) > c->n_vocab) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: the CLIP vocabulary has %d tokens but the token "
                        "embedding only %lld rows", m->path, (int)mx_tokenizer_n_vocab(tok),
                        (long long)c->n_vocab);
        goto fail;
    }
    while (c->n_layer < MAX_LAYERS) {
        snprintf(name, sizeof name, "%sencoder.layers.%d.self_attn.q_proj.weight", pfx,
                 c->n_layer);
        if (!mx_sd_weight(m, name))
            break;
        c->n_layer++;
    }
    snprintf(name, sizeof name, "%sencoder.layers.0.mlp.fc1.weight", pfx);
    const struct mx_tensor *fc1 = mx_sd_weight(m, name);
    if (c->n_layer == 0 || !fc1) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: CLIP text encoder has no layers (%sencoder."
                        "layers.0.* missing)", m->path, pfx);
        goto fail;
    }
    c->n_ff = fc1->ne[1];
    /* OpenCLIP towers (SD 2.x, SDXL's bigG) use gelu and pad with 0 after the EOS; both SDXL
     * towers give the penultimate layer by default (SGM: layer "hidden" index 11 / "penultimate"),
     * as stable-diffusion.cpp's clip_skip 2 for SDXL */
    bool sd2 = m->family == MX_SD_FAMILY_SD2, open_clip = sd2 || bigg;
    c->quick_gelu = !open_clip;
    c->n_full = sd2 && c->n_layer == OPENCLIP_H_LAYERS - 1 ? OPENCLIP_H_LAYERS : c->n_layer;
    c->default_skip = sd2 || xl ? 2 : 1;
    if (c->default_skip > c->n_full)
        c->default_skip = c->n_full;
    c->pad_id = open_clip ? 0 : mx_tokenizer_eos(tok);
    enum mx_op need[] = {MX_OP_LAYER_NORM, MX_OP_ATTN, MX_OP_ADD, MX_OP_CPY,
                         open_clip ? MX_OP_GELU : MX_OP_GELU_QUICK};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if (!mx_backend_supports(c->be, need[i], MX_TYPE_F32)) {
            rc = mx_err_set(err, MX_EUNSUP, "%s: backend %s lacks %s for the text encoder",
                            m->path, mx_backend_name(c->be), mx_op_name((int)need[i]));
            goto fail;
        }
    if (!mx_backend_supports(c->be, MX_OP_GET_ROWS, te->type)) {
        rc = mx_err_set(err, MX_EUNSUP, "%s: backend %s cannot read %s token embeddings",
                        m->path, mx_backend_name(c->be), mx_type_name(te->type));
        goto fail;
    }
    c->layers = calloc((size_t)c->n_layer, sizeof *c->layers);
    if (!c->layers) {
        rc = mx_err_set(err, MX_ENOMEM, "%s: out of memory", m->path);
        goto fail;
    }
    /* measure, then allocate, the two arenas */
    struct mx_arena meas;
    mx_arena_init_measure(&meas);
    if ((rc = alloc_weights(c, &meas, err)) < 0 ||
        (rc = mx_arena_init(&c->wts, c->be, meas.used, err)) < 0 ||
        (rc = alloc_weights(c, &c->wts, err)) < 0)
        goto fail;
    mx_arena_init_measure(&meas);
    if ((rc = alloc_acts(c, &meas, err)) < 0 ||
        (rc = mx_arena_init(&c->act, c->be, meas.used, err)) < 0 ||
        (rc = alloc_acts(c, &c->act, err)) < 0)
        goto fail;
    if ((rc = bind_weights(c, err)) < 0 || (bigg && (rc = load_projection(c, err)) < 0))
        goto fail;
    int32_t pos[MX_SD_CHUNK_LEN];
    for (int i = 0; i < MX_SD_CHUNK_LEN; i++)
        pos[i] = i;
    if ((rc = mx_tensor_set(c->be, &c->pos, pos, 0, sizeof pos)) < 0 ||
        (rc = mx_backend_sync(c->be)) < 0) {
        rc = mx_err_set(err, rc, "%s: text encoder setup: %s", m->path,
                        mx_backend_last_error(c->be));
        goto fail;
    }
    c->empty_ids[0] = mx_tokenizer_bos(tok);
    c->empty_ids[1] = mx_tokenizer_eos(tok);
    for (int i = 2; i < MX_SD_CHUNK_LEN; i++)
        c->empty_ids[i] = c->pad_id;
    *out = c;
    return 0;
fail:
    mx_sd_clip_free(c);
    return rc;
}

void mx_sd_clip_free(struct mx_sd_clip *c) {
    if (!c)
        return;
    mx_arena_deinit(&c->act);
    mx_arena_deinit(&c->wts);
    free(c->layers);
    free(c->empty_h);
    free(c->proj);
    free(c);
}

int64_t mx_sd_clip_dim(const struct mx_sd_clip *c) {
    return c->dim;
}

int mx_sd_clip_n_layers(const struct mx_sd_clip *c) {
    return c->n_layer;
}

int mx_sd_clip_default_skip(const struct mx_sd_clip *c) {
    return c->default_skip;
}

int32_t mx_sd_clip_pad_id(const struct mx_sd_clip *c) {
    return c->pad_id;
}

int64_t mx_sd_clip_proj_dim(const struct mx_sd_clip *c) {
    return c->proj_dim;
}

/* ---- forward ------------------------------------------------------------------------------ */

/* One pre-LN layer on c->x in place: x += attn(LN1(x)); x += mlp(LN2(x)). */
static int layer_forward(struct mx_sd_clip *c, const struct clip_layer *l) {
    struct mx_backend *be = c->be;
    const int T = MX_SD_CHUNK_LEN;
    struct mx_tensor qh, atth;
    int rc;
    /* attention: causal over the chunk, 64-wide heads, scale 1/8 */
    if ((rc = mx_op_layer_norm(be, &c->xn, &c->x, &l->ln1_w, &l->ln1_b, LN_EPS)) < 0 ||
        (rc = mx_op_matmul(be, &c->q, l->q_w, &c->xn)) < 0 ||
        (rc = mx_op_add(be, &c->q, &c->q, &l->q_b)) < 0 ||
        (rc = mx_op_matmul(be, &c->k, l->k_w, &c->xn)) < 0 ||
        (rc = mx_op_add(be, &c->k, &c->k, &l->k_b)) < 0 ||
        (rc = mx_op_matmul(be, &c->v, l->v_w, &c->xn)) < 0 ||
        (rc = mx_op_add(be, &c->v, &c->v, &l->v_b)) < 0)
        return rc;
    /* q, att: [dim, T] seen as [64, n_head, T]; k, v: the "cache" [dim, T], one row a token */
    if ((rc = mx_tensor_reshape(&c->q, HEAD_DIM, c->n_head, T, 1, &qh)) < 0 ||
        (rc = mx_tensor_reshape(&c->att, HEAD_DIM, c->n_head, T, 1, &atth)) < 0)
        return rc;
    struct mx_attn_params ap = {.n_head = c->n_head, .n_head_kv = c->n_head,
                                .head_dim = HEAD_DIM, .n_kv = T,
                                .scale = 1.0f / sqrtf((float)HEAD_DIM), .window = 0};
    if ((rc = mx_op_attn(be, &atth, &qh, &c->k, &c->v, &c->pos, &c->pos, &ap)) < 0 ||
        (rc = mx_op_matmul(be, &c->o, l->o_w, &c->att)) < 0 ||
        (rc = mx_op_add(be, &c->o, &c->o, &l->o_b)) < 0 ||
        (rc = mx_op_add(be, &c->x, &c->x, &c->o)) < 0)
        return rc;
    /* MLP: fc1 -> quick_gelu / gelu -> fc2 */
    if ((rc = mx_op_layer_norm(be, &c->xn, &c->x, &l->ln2_w, &l->ln2_b, LN_EPS)) < 0 ||
        (rc = mx_op_matmul(be, &c->ff, l->fc1_w, &c->xn)) < 0 ||
        (rc = mx_op_add(be, &c->ff, &c->ff, &l->fc1_b)) < 0)
        return rc;
    rc = c->quick_gelu ? mx_op_gelu_quick(be, &c->ff, &c->ff) : mx_op_gelu(be, &c->ff, &c->ff);
    if (rc < 0 || (rc = mx_op_matmul(be, &c->o, l->fc2_w, &c->ff)) < 0 ||
        (rc = mx_op_add(be, &c->o, &c->o, &l->fc2_b)) < 0 ||
        (rc = mx_op_add(be, &c->x, &c->x, &c->o)) < 0)
        return rc;
    return 0;
}

/* The number of layers to run for clip_skip (0: the default), or MX_EINVAL with err set. A
 * 23-layer SD 2.x encoder runs all its layers for clip_skip 1 and 2 (it has no 24th). */
static int layers_to_run(const struct mx_sd_clip *c, int clip_skip, struct mx_err *err) {
    int skip = clip_skip == 0 ? c->default_skip : clip_skip;
    if (clip_skip < 0 || skip > c->n_full)
        return mx_err_set(err, MX_EINVAL, "clip_skip %d: must be 0 (default) or 1..%d (the "
                          "text encoder's layers)", clip_skip, c->n_full);
    int n = c->n_full - (skip - 1);
    return n < c->n_layer ? n : c->n_layer;
}

/* The pooled output of a chunk whose first n_run layers c->x holds: the remaining layers,
 * final_layer_norm, the row of the first EOS (the last token when there is none, as
 * stable-diffusion.cpp), times text_projection. pooled: host [proj_dim]. */
static int pool(struct mx_sd_clip *c, const int32_t *ids, int n_run, float *pooled) {
    int rc;
    for (int il = n_run; il < c->n_layer; il++)
        if ((rc = layer_forward(c, &c->layers[il])) < 0)
            return rc;
    int eos = 0;
    while (eos < MX_SD_CHUNK_LEN - 1 && ids[eos] != mx_tokenizer_eos(c->tok))
        eos++;
    float *row = malloc((size_t)c->dim * sizeof *row);
    if (!row)
        return MX_ENOMEM;
    if ((rc = mx_op_layer_norm(c->be, &c->xn, &c->x, &c->fin_w, &c->fin_b, LN_EPS)) < 0 ||
        (rc = mx_tensor_get(c->be, &c->xn, row, (size_t)(eos * c->dim) * sizeof *row,
                            (size_t)c->dim * sizeof *row)) < 0) {
        free(row);
        return rc;
    }
    for (int64_t j = 0; j < c->proj_dim; j++) {
        double acc = 0; /* x @ P: OpenCLIP's text_projection is [width, embed_dim] */
        for (int64_t i = 0; i < c->dim; i++)
            acc += (double)row[i] * c->proj[i * c->proj_dim + j];
        pooled[j] = (float)acc;
    }
    free(row);
    return 0;
}

/* One chunk through the first n_run layers into h (final_layer_norm when the tower has it),
 * and, when pooled is not NULL, the pooled output (all layers) into it; ids < 0 are
 * textual-inversion vectors -(1 + k) of t->emb (t NULL: none allowed). */
static int encode_chunk(struct mx_sd_clip *c, const int32_t *ids,
                        const struct mx_sd_prompt_tokens *t, int n_run, float *h, float *pooled,
                        struct mx_err *err) {
    int32_t real[MX_SD_CHUNK_LEN];
    const float *vec[MX_SD_CHUNK_LEN] = {0};
    for (int i = 0; i < MX_SD_CHUNK_LEN; i++) {
        real[i] = ids[i];
        if (ids[i] < 0 && t && -(int64_t)ids[i] - 1 < t->n_emb) {
            const struct mx_sd_emb_ref *r = &t->emb[-(int64_t)ids[i] - 1];
            const float *v = mx_sd_embedding_vectors(r->e, c->dim, err);
            if (!v)
                return MX_EFORMAT;
            vec[i] = v + (int64_t)r->row * c->dim;
            real[i] = 0; /* a placeholder row, overwritten below (A1111 inserts id 0) */
        } else if (ids[i] < 0 || ids[i] >= c->n_vocab) {
            return mx_err_set(err, MX_EINVAL, "clip: token id %d at %d is outside the "
                              "vocabulary (%lld)", (int)ids[i], i, (long long)c->n_vocab);
        }
    }
    struct mx_backend *be = c->be;
    int rc;
    /* x = token_embedding[ids] (an embedding's vectors in their places) + position_embedding */
    if ((rc = mx_tensor_set(be, &c->ids, real, 0, MX_SD_CHUNK_LEN * sizeof *real)) < 0 ||
        (rc = mx_op_get_rows(be, &c->x, c->tok_emb, &c->ids)) < 0)
        goto fail;
    size_t row = (size_t)c->dim * sizeof(float);
    for (int i = 0; i < MX_SD_CHUNK_LEN; i++)
        if (vec[i] && (rc = mx_tensor_set(be, &c->x, vec[i], (size_t)i * row, row)) < 0)
            goto fail;
    if ((rc = mx_op_add(be, &c->x, &c->x, &c->pos_emb)) < 0)
        goto fail;
    /* layers up to the one clip_skip picks (hidden_states[-clip_skip] in HF terms) */
    for (int il = 0; il < n_run; il++)
        if ((rc = layer_forward(c, &c->layers[il])) < 0)
            goto fail;
    if (c->final_ln) {
        if ((rc = mx_op_layer_norm(be, &c->xn, &c->x, &c->fin_w, &c->fin_b, LN_EPS)) < 0 ||
            (rc = mx_tensor_get(be, &c->xn, h, 0, mx_tensor_nbytes(&c->xn))) < 0)
            goto fail;
    } else if ((rc = mx_tensor_get(be, &c->x, h, 0, mx_tensor_nbytes(&c->x))) < 0) {
        goto fail;
    }
    if (pooled && (rc = pool(c, ids, n_run, pooled)) < 0)
        goto fail;
    return 0;
fail:
    return mx_err_set(err, rc, "clip: text encoder: %s", rc == MX_ENOMEM ? "out of memory"
                      : mx_backend_last_error(be));
}

int mx_sd_clip_encode_ids(struct mx_sd_clip *c, const int32_t *ids, int clip_skip, float *h,
                          struct mx_err *err) {
    int n_run = layers_to_run(c, clip_skip, err);
    if (n_run < 0)
        return n_run;
    return encode_chunk(c, ids, NULL, n_run, h, NULL, err);
}

int mx_sd_clip_encode_ids_pooled(struct mx_sd_clip *c, const int32_t *ids, int clip_skip,
                                 float *h, float *pooled, struct mx_err *err) {
    int n_run = layers_to_run(c, clip_skip, err);
    if (n_run < 0)
        return n_run;
    if (!c->proj)
        return mx_err_set(err, MX_EINVAL, "clip: this text encoder has no text_projection (only "
                          "SDXL's OpenCLIP bigG gives a pooled output)");
    return encode_chunk(c, ids, NULL, n_run, h, pooled, err);
}

void mx_sd_clip_set_embeddings(struct mx_sd_clip *c, struct mx_sd_emb_db *db) {
    c->emb = db;
}

void mx_sd_clip_apply_weights(float *h, const float *w, int64_t n_tok, int64_t dim) {
    double before = 0, after = 0;
    for (int64_t i = 0; i < n_tok * dim; i++)
        before += h[i];
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t j = 0; j < dim; j++) {
            h[t * dim + j] *= w[t];
            after += h[t * dim + j];
        }
    if (after == 0)
        return;
    float s = (float)((before / (double)(n_tok * dim)) / (after / (double)(n_tok * dim)));
    for (int64_t i = 0; i < n_tok * dim; i++)
        h[i] *= s;
}

int mx_sd_clip_n_chunks(struct mx_sd_clip *c, const char *prompt, struct mx_err *err) {
    struct mx_sd_prompt_tokens t;
    int rc = mx_sd_prompt_tokenize_emb(c->tok, prompt, c->pad_id, MX_SD_MAX_CHUNKS, c->emb, &t,
                                       err);
    if (rc < 0)
        return rc;
    rc = (int)t.n_chunks;
    mx_sd_prompt_tokens_deinit(&t);
    return rc;
}

int mx_sd_clip_encode(struct mx_sd_clip *c, const char *prompt, int clip_skip, int min_chunks,
                      float **h, int64_t *n_ctx, struct mx_err *err) {
    return mx_sd_clip_encode_pooled(c, prompt, clip_skip, min_chunks, h, n_ctx, NULL, err);
}

int mx_sd_clip_encode_pooled(struct mx_sd_clip *c, const char *prompt, int clip_skip,
                             int min_chunks, float **h, int64_t *n_ctx, float *pooled,
                             struct mx_err *err) {
    *h = NULL;
    *n_ctx = 0;
    int n_run = layers_to_run(c, clip_skip, err);
    if (n_run < 0)
        return n_run;
    if (min_chunks > MX_SD_MAX_CHUNKS)
        return mx_err_set(err, MX_ERANGE, "clip: %d chunks asked for, at most %d", min_chunks,
                          MX_SD_MAX_CHUNKS);
    struct mx_sd_prompt_tokens t;
    int rc = mx_sd_prompt_tokenize_emb(c->tok, prompt, c->pad_id, MX_SD_MAX_CHUNKS, c->emb, &t,
                                       err);
    if (rc < 0)
        return rc;
    int64_t n = t.n_chunks > min_chunks ? t.n_chunks : min_chunks;
    const int64_t chunk = MX_SD_CHUNK_LEN * c->dim;
    float *out = malloc((size_t)(n * chunk) * sizeof *out);
    if (!out) {
        rc = mx_err_set(err, MX_ENOMEM, "clip: out of memory (%lld chunks)", (long long)n);
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        const int32_t *ids = i < t.n_chunks ? t.ids + i * MX_SD_CHUNK_LEN : c->empty_ids;
        float *hi = out + i * chunk;
        bool empty = !memcmp(ids, c->empty_ids, sizeof c->empty_ids);
        float *pool_out = i == 0 ? pooled : NULL; /* SDXL pools the first chunk (A1111, sd.cpp) */
        if (pool_out && !c->proj) {
            rc = mx_err_set(err, MX_EINVAL, "clip: this text encoder has no text_projection");
            goto done;
        }
        if (empty && c->empty_h && c->empty_layers == n_run && !pool_out) {
            memcpy(hi, c->empty_h, (size_t)chunk * sizeof *hi);
        } else {
            if ((rc = encode_chunk(c, ids, &t, n_run, hi, pool_out, err)) < 0)
                goto done;
            if (empty) {
                /* the unconditional prompt and every padding chunk: keep it */
                if (!c->empty_h)
                    c->empty_h = malloc((size_t)chunk * sizeof *c->empty_h);
                if (c->empty_h) {
                    memcpy(c->empty_h, hi, (size_t)chunk * sizeof *hi);
                    c->empty_layers = n_run;
                }
            }
        }
        if (i < t.n_chunks) {
            const float *w = t.w + i * MX_SD_CHUNK_LEN;
            bool weighted = false;
            for (int k = 0; k < MX_SD_CHUNK_LEN; k++)
                weighted |= w[k] != 1.0f;
            if (weighted)
                mx_sd_clip_apply_weights(hi, w, MX_SD_CHUNK_LEN, c->dim);
        }
    }
    *h = out;
    out = NULL;
    *n_ctx = n * MX_SD_CHUNK_LEN;
done:
    free(out);
    mx_sd_prompt_tokens_deinit(&t);
    return rc;
}
