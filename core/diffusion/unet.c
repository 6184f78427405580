/* unet.c - the Stable Diffusion UNet (LDM openaimodel.py UNetModel) as eager backend ops.
 *
 * The network reads top to bottom in chapters: the architecture as found in the checkpoint
 * (parse), the scratch stack, the blocks (ResBlock, SpatialTransformer, down/upsample) and the
 * forward pass. Tuned for the CPU at 512x512 (a 64x64 latent) with the CFG batch of 2: nearly
 * all time goes to the 3x3 convolutions (im2col + sgemm), the linear layers over 8192 tokens
 * (F16 weight tiles widened into sgemm) and self-attention over 4096 tokens (the backend's
 * flash-style attention, which never holds a 4096x4096 score matrix).
 *
 * Layouts: images are [W, H, C, N] (ggml order of NCHW), tokens [C, W*H*N] (one column per
 * pixel, images one after the other), so a transformer's proj_in is one transpose plus one
 * matmul whether the checkpoint stores it as a 1x1 conv (SD 1.x) or a linear (SD 2.x).
 *
 * Memory: one scratch buffer used as a stack. Each input block's output stays on it as the skip
 * its output block will concatenate (LIFO, like the skips themselves); every block allocates
 * its output before its temporaries and pops the temporaries when done. Middle and output
 * blocks write their result into one of two carry tensors, alternately. The same code runs in
 * a measuring mode (no data, no ops) that sizes the stack for a batch and latent size.
 */
#include "core/diffusion/unet.h"
#include "core/diffusion/unet_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/base/util.h"
#include "kernels/backend.h"

#define UNET_PREFIX "model.diffusion_model."
#define UNET_GROUPS 32          /* GroupNorm groups everywhere in the UNet */
#define UNET_RES_EPS 1e-5f      /* ResBlock / out GroupNorm eps */
#define UNET_ST_EPS 1e-6f       /* SpatialTransformer GroupNorm eps */
#define UNET_LN_EPS 1e-5f       /* LayerNorm eps in the transformer blocks */
#define UNET_MAX_LEVELS 8       /* channel multipliers (SD: 4) */
#define UNET_DEFAULT_CTX 77     /* context tokens the scratch is sized for at new */

/* ---- architecture ------------------------------------------------------------------------- */

/* A ResBlock: GN-SiLU-conv, + linear(SiLU(emb)), GN-SiLU-conv, + skip(x). */
struct unet_res {
    int64_t c_in, c_out;                /* channels in and out */
    const struct mx_tensor *in_w;       /* in_layers.2: [3, 3, c_in, c_out] */
    const struct mx_tensor *emb_w;      /* emb_layers.1: [emb_dim, c_out] */
    const struct mx_tensor *out_w;      /* out_layers.3: [3, 3, c_out, c_out] */
    const struct mx_tensor *skip_w;     /* skip_connection: [1, 1, c_in, c_out]; NULL: identity */
    struct mx_tensor in_gn_w, in_gn_b;  /* in_layers.0 GroupNorm, F32 [c_in] */
    struct mx_tensor in_b;              /* F32 [c_out] */
    struct mx_tensor emb_b;             /* F32 [c_out] */
    struct mx_tensor out_gn_w, out_gn_b; /* out_layers.0 GroupNorm, F32 [c_out] */
    struct mx_tensor out_b;             /* F32 [c_out] */
    struct mx_tensor skip_b;            /* F32 [c_out] (with skip_w) */
};

/* One attention of a BasicTransformerBlock (attn1: self, attn2: cross). */
struct unet_attn {
    const struct mx_tensor *q, *k, *v; /* [C, C] / [kv_dim, C] (kv_dim: C or the context) */
    struct mx_tensor out_w;            /* to_out.0: [C, C] (a plain view of the weight) */
    struct mx_tensor out_b;            /* F32 [C] */
};

/* BasicTransformerBlock: LN-self-attn, LN-cross-attn, LN-GEGLU feed-forward, each residual. */
struct unet_tb {
    struct mx_tensor ln_w[3], ln_b[3]; /* norm1..3, F32 [C] */
    struct unet_attn a1, a2;           /* self, cross */
    struct mx_tensor ffx_w, ffg_w;     /* ff.net.0.proj rows [0, inner) (value), [inner, 2inner)
                                          (gate): [C, inner] each */
    struct mx_tensor ffx_b, ffg_b;     /* F32 [inner] each (views of one widened vector) */
    struct mx_tensor ff_b_all;         /* F32 [2 * inner]: ff.net.0.proj.bias widened */
    const struct mx_tensor *ff2_w;     /* ff.net.2: [inner, C] */
    struct mx_tensor ff2_b;            /* F32 [C] */
    int64_t inner;                     /* feed-forward width (4 C) */
};

/* SpatialTransformer: GN, proj_in, depth blocks, proj_out, + x. */
struct unet_st {
    int64_t c;                         /* channels = heads * head_dim */
    int n_head, head_dim;
    struct mx_tensor gn_w, gn_b;       /* F32 [C] */
    struct mx_tensor pin_w, pout_w;    /* [C, C] matmul views (1x1 conv kernels reshaped) */
    struct mx_tensor pin_b, pout_b;    /* F32 [C] */
    int depth;                         /* transformer blocks */
    struct unet_tb *tb;                /* [depth] */
};

enum unet_kind {
    UNET_CONV_IN = 0, /* input_blocks.0: conv 3x3 C_in -> ch */
    UNET_RES,         /* ResBlock [+ SpatialTransformer] [+ Upsample] */
    UNET_DOWN,        /* Downsample: conv 3x3 stride 2 */
};

/* One entry of input_blocks / middle_block / output_blocks. */
struct unet_block {
    enum unet_kind kind;
    struct unet_res res;               /* UNET_RES */
    struct unet_st *st;                /* transformer after the ResBlock, or NULL */
    const struct mx_tensor *conv_w;    /* conv_in / Downsample op / Upsample conv, or NULL */
    struct mx_tensor conv_b;           /* F32 [c_out] */
    bool up;                           /* output blocks: ends with nearest x2 + conv */
    int64_t c_out;                     /* channels out */
    int level;                         /* resolution level of its input (0 = full) */
};

/* A widened vector: the checkpoint's tensor and the F32 tensor it becomes. */
struct unet_vec {
    const struct mx_tensor *src; /* borrowed from the model */
    struct mx_tensor *dst;       /* a field of a block (stable address) */
};

struct mx_sd_unet {
    const struct mx_sd_model *m; /* borrowed */
    struct mx_backend *be;       /* borrowed (the model's) */
    int64_t ch;                  /* model_channels */
    int64_t in_ch, out_ch;       /* latent channels in (4 or 9) and out (4) */
    int64_t emb_dim;             /* time embedding width (4 ch) */
    int64_t ctx_dim;             /* cross-attention context width */
    int levels;                  /* resolution levels (downsamples + 1) */
    const struct mx_tensor *te0_w, *te2_w; /* time_embed.0 [ch, emb], .2 [emb, emb] */
    struct mx_tensor te0_b, te2_b;         /* F32 [emb] */
    /* SDXL's label embedding: emb += label_emb.0.2(SiLU(label_emb.0.0(y))) for the vector y of
     * the pooled text and the size conditioning (mx_sd_unet_eval_y) */
    int64_t adm_dim;                       /* width of y (2816), 0: no label embedding */
    const struct mx_tensor *le0_w, *le2_w; /* label_emb.0.0 [adm, emb], .0.2 [emb, emb] */
    struct mx_tensor le0_b, le2_b;         /* F32 [emb] */
    int n_in, n_out;             /* input / output blocks */
    struct unet_block *in;       /* [n_in] */
    struct unet_block mid[2];    /* middle_block: ResBlock + ST (mid[0]), ResBlock (mid[1]) */
    struct unet_block *out;      /* [n_out] */
    struct mx_tensor out_gn_w, out_gn_b; /* out.0 GroupNorm, F32 [ch] */
    const struct mx_tensor *out_w;       /* out.2: [3, 3, ch, out_ch] */
    struct mx_tensor out_b;              /* F32 [out_ch] */
    /* widened vectors: collected by parse, copied by widen into vbuf */
    struct unet_vec *vecs;
    int n_vecs, cap_vecs;
    struct mx_buf *vbuf;         /* owned: every F32 vector */
    size_t vbytes;               /* bytes of vbuf */
    int tb_per_st;               /* depth of the first transformer (for describe) */
    int n_st;                    /* transformers in all */
    bool linear_proj;            /* SD 2.x: proj_in/out stored as linears */
    int64_t max_w_f32;           /* elements of the largest F16 conv kernel (CPU widens it) */
    int64_t max_k;               /* largest conv K = kw * kh * c_in (CPU im2col rows) */
    int max_batch;
    struct mx_tensor *skips;     /* [n_in]: the input blocks' outputs during a pass */
    float *te_host;              /* [max_batch][ch]: the sinusoidal embeddings being uploaded */
    /* scratch: one stack buffer (see the file comment) */
    struct mx_buf *sbuf;         /* owned */
    size_t scap;                 /* bytes of sbuf */
    struct mx_buf *pbuf;         /* owned: I32 zeros, the attention's positions */
    int64_t pcap;                /* elements of pbuf */
    int profile;                 /* time op classes */
    struct mx_sd_unet_profile prof;
    char desc[160];
};

/* ---- parse: the architecture from the tensor shapes --------------------------------------- */

/* Whether the model has UNet tensor "model.diffusion_model." + name. */
static const struct mx_tensor *has(const struct mx_sd_unet *u, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static const struct mx_tensor *has(const struct mx_sd_unet *u, const char *fmt, ...) {
    char name[256];
    int n = snprintf(name, sizeof name, "%s", UNET_PREFIX);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name + n, sizeof name - (size_t)n, fmt, ap);
    va_end(ap);
    return mx_sd_weight(u->m, name);
}

/* Remembers that dst must become the F32 copy of src (shape [n]). Returns 0 or MX_ENOMEM. */
static int add_vec(struct mx_sd_unet *u, const struct mx_tensor *src, struct mx_tensor *dst) {
    if (u->n_vecs == u->cap_vecs) {
        int cap = u->cap_vecs ? 2 * u->cap_vecs : 256;
        struct unet_vec *v = realloc(u->vecs, (size_t)cap * sizeof *v);
        if (!v)
            return MX_ENOMEM;
        u->vecs = v;
        u->cap_vecs = cap;
    }
    u->vecs[u->n_vecs++] = (struct unet_vec){src, dst};
    return 0;
}

/* A required tensor NAME (printf) of shape ne (-1: any) with, for vectors, its F32 copy
 * scheduled into dst (dst NULL: a weight used as stored, returned in *w). */
#define NEED(w, dst, n0, n1, n2, n3, ...)                                                     \
    do {                                                                                      \
        const struct mx_tensor *need_t_;                                                      \
        rc = mx_sd_need(u->m, &need_t_, (int64_t[4]){n0, n1, n2, n3}, err,                    \
                        UNET_PREFIX __VA_ARGS__);                                             \
        if (rc < 0)                                                                           \
            return rc;                                                                        \
        if (dst) {                                                                            \
            if (add_vec(u, need_t_, (dst)) < 0)                                               \
                return mx_err_set(err, MX_ENOMEM, "unet: out of memory");                     \
        }                                                                                     \
        *(w) = need_t_;                                                                       \
    } while (0)

/* A ResBlock at prefix `p` (e.g. "input_blocks.4.0") from c_in to c_out channels. */
static int parse_res(struct mx_sd_unet *u, const char *p, int64_t c_in, int64_t c_out,
                     struct unet_res *r, struct mx_err *err) {
    int rc;
    const struct mx_tensor *w;
    r->c_in = c_in;
    r->c_out = c_out;
    if (c_in % UNET_GROUPS || c_out % UNET_GROUPS)
        return mx_err_set(err, MX_EFORMAT, "%s: %s has %lld -> %lld channels, not multiples of "
                          "%d groups", u->m->path, p, (long long)c_in, (long long)c_out,
                          UNET_GROUPS);
    NEED(&w, &r->in_gn_w, c_in, 1, 1, 1, "%s.in_layers.0.weight", p);
    NEED(&w, &r->in_gn_b, c_in, 1, 1, 1, "%s.in_layers.0.bias", p);
    NEED(&r->in_w, (struct mx_tensor *)NULL, 3, 3, c_in, c_out, "%s.in_layers.2.weight", p);
    NEED(&w, &r->in_b, c_out, 1, 1, 1, "%s.in_layers.2.bias", p);
    NEED(&r->emb_w, (struct mx_tensor *)NULL, u->emb_dim, c_out, 1, 1, "%s.emb_layers.1.weight",
         p);
    NEED(&w, &r->emb_b, c_out, 1, 1, 1, "%s.emb_layers.1.bias", p);
    NEED(&w, &r->out_gn_w, c_out, 1, 1, 1, "%s.out_layers.0.weight", p);
    NEED(&w, &r->out_gn_b, c_out, 1, 1, 1, "%s.out_layers.0.bias", p);
    NEED(&r->out_w, (struct mx_tensor *)NULL, 3, 3, c_out, c_out, "%s.out_layers.3.weight", p);
    NEED(&w, &r->out_b, c_out, 1, 1, 1, "%s.out_layers.3.bias", p);
    r->skip_w = NULL;
    if (c_in != c_out) {
        NEED(&r->skip_w, (struct mx_tensor *)NULL, 1, 1, c_in, c_out,
             "%s.skip_connection.weight", p);
        NEED(&w, &r->skip_b, c_out, 1, 1, 1, "%s.skip_connection.bias", p);
    }
    return 0;
}

/* A [C, C]-shaped projection (1x1 conv [1, 1, C, C] or linear [C, C]) as a 2-D matmul view. */
static int parse_proj(struct mx_sd_unet *u, const char *p, const char *what, int64_t c,
                      struct mx_tensor *w2, struct mx_tensor *b, struct mx_err *err) {
    int rc;
    const struct mx_tensor *w;
    if (u->linear_proj)
        NEED(&w, (struct mx_tensor *)NULL, c, c, 1, 1, "%s.%s.weight", p, what);
    else
        NEED(&w, (struct mx_tensor *)NULL, 1, 1, c, c, "%s.%s.weight", p, what);
    *w2 = *w;
    if (mx_tensor_reshape(w, c, c, 1, 1, w2) < 0)
        return mx_err_set(err, MX_EFORMAT, "%s: %s.%s.weight is not contiguous", u->m->path, p,
                          what);
    NEED(&w, b, c, 1, 1, 1, "%s.%s.bias", p, what);
    return 0;
}

/* An attention (attn1/attn2) of transformer block prefix p. */
static int parse_attn(struct mx_sd_unet *u, const char *p, const char *which, int64_t c,
                      int64_t kv_dim, struct unet_attn *a, struct mx_err *err) {
    int rc;
    const struct mx_tensor *w;
    NEED(&a->q, (struct mx_tensor *)NULL, c, c, 1, 1, "%s.%s.to_q.weight", p, which);
    NEED(&a->k, (struct mx_tensor *)NULL, kv_dim, c, 1, 1, "%s.%s.to_k.weight", p, which);
    NEED(&a->v, (struct mx_tensor *)NULL, kv_dim, c, 1, 1, "%s.%s.to_v.weight", p, which);
    NEED(&w, (struct mx_tensor *)NULL, c, c, 1, 1, "%s.%s.to_out.0.weight", p, which);
    a->out_w = *w;
    NEED(&w, &a->out_b, c, 1, 1, 1, "%s.%s.to_out.0.bias", p, which);
    return 0;
}

/* A SpatialTransformer at prefix p over c channels. */
static int parse_st(struct mx_sd_unet *u, const char *p, int64_t c, struct unet_st **out,
                    struct mx_err *err) {
    int rc;
    const struct mx_tensor *w;
    struct unet_st *s = calloc(1, sizeof *s);
    if (!s)
        return mx_err_set(err, MX_ENOMEM, "unet: out of memory");
    *out = s; /* freed with the unet, even on failure below */
    s->c = c;
    /* SD 1.x: 8 heads; SD 2.x (linear proj): heads of 64 channels */
    s->head_dim = u->linear_proj ? 64 : (int)(c / 8);
    s->n_head = (int)(c / s->head_dim);
    if (s->head_dim <= 0 || c % s->head_dim)
        return mx_err_set(err, MX_EFORMAT, "%s: %s has %lld channels, not a whole number of "
                          "%d-wide heads", u->m->path, p, (long long)c, s->head_dim);
    NEED(&w, &s->gn_w, c, 1, 1, 1, "%s.norm.weight", p);
    NEED(&w, &s->gn_b, c, 1, 1, 1, "%s.norm.bias", p);
    rc = parse_proj(u, p, "proj_in", c, &s->pin_w, &s->pin_b, err);
    if (rc == 0)
        rc = parse_proj(u, p, "proj_out", c, &s->pout_w, &s->pout_b, err);
    if (rc < 0)
        return rc;
    while (has(u, "%s.transformer_blocks.%d.norm1.weight", p, s->depth))
        s->depth++;
    if (s->depth == 0)
        return mx_err_set(err, MX_EFORMAT, "%s: %s has no transformer_blocks", u->m->path, p);
    s->tb = calloc((size_t)s->depth, sizeof *s->tb);
    if (!s->tb)
        return mx_err_set(err, MX_ENOMEM, "unet: out of memory");
    for (int d = 0; d < s->depth; d++) {
        struct unet_tb *tb = &s->tb[d];
        char q[200];
        snprintf(q, sizeof q, "%s.transformer_blocks.%d", p, d);
        for (int i = 0; i < 3; i++) {
            NEED(&w, &tb->ln_w[i], c, 1, 1, 1, "%s.norm%d.weight", q, i + 1);
            NEED(&w, &tb->ln_b[i], c, 1, 1, 1, "%s.norm%d.bias", q, i + 1);
        }
        rc = parse_attn(u, q, "attn1", c, c, &tb->a1, err);
        if (rc == 0)
            rc = parse_attn(u, q, "attn2", c, u->ctx_dim, &tb->a2, err);
        if (rc < 0)
            return rc;
        NEED(&w, (struct mx_tensor *)NULL, c, -1, 1, 1, "%s.ff.net.0.proj.weight", q);
        tb->inner = w->ne[1] / 2;
        if (w->ne[1] % 2 || tb->inner == 0)
            return mx_err_set(err, MX_EFORMAT, "%s: %s.ff.net.0.proj.weight has %lld outputs, "
                              "not 2 x inner (GEGLU)", u->m->path, q, (long long)w->ne[1]);
        if (mx_tensor_view_rows(w, 0, tb->inner, &tb->ffx_w) < 0 ||
            mx_tensor_view_rows(w, tb->inner, tb->inner, &tb->ffg_w) < 0)
            return mx_err_set(err, MX_EFORMAT, "%s: %s.ff.net.0.proj.weight is not contiguous",
                              u->m->path, q);
        NEED(&w, &tb->ff_b_all, 2 * tb->inner, 1, 1, 1, "%s.ff.net.0.proj.bias", q);
        NEED(&tb->ff2_w, (struct mx_tensor *)NULL, tb->inner, c, 1, 1, "%s.ff.net.2.weight", q);
        NEED(&w, &tb->ff2_b, c, 1, 1, 1, "%s.ff.net.2.bias", q);
    }
    if (!u->tb_per_st)
        u->tb_per_st = s->depth;
    u->n_st++;
    return 0;
}

/* SDXL's label_emb (a Linear-SiLU-Linear on the ADM vector), when the UNet has one. */
static int parse_label(struct mx_sd_unet *u, struct mx_err *err) {
    int rc;
    const struct mx_tensor *w, *l0 = has(u, "label_emb.0.0.weight");
    if (!l0)
        return 0;
    u->adm_dim = l0->ne[0];
    NEED(&u->le0_w, (struct mx_tensor *)NULL, u->adm_dim, u->emb_dim, 1, 1,
         "label_emb.0.0.weight");
    NEED(&w, &u->le0_b, u->emb_dim, 1, 1, 1, "label_emb.0.0.bias");
    NEED(&u->le2_w, (struct mx_tensor *)NULL, u->emb_dim, u->emb_dim, 1, 1,
         "label_emb.0.2.weight");
    NEED(&w, &u->le2_b, u->emb_dim, 1, 1, 1, "label_emb.0.2.bias");
    return 0;
}

/* Notes an F16 conv kernel's size (the CPU backend widens it to F32 per call). */
static void note_conv(struct mx_sd_unet *u, const struct mx_tensor *w) {
    if (w && w->type != MX_TYPE_F32)
        u->max_w_f32 = MX_MAX(u->max_w_f32, mx_tensor_nelements(w));
    if (w)
        u->max_k = MX_MAX(u->max_k, w->ne[0] * w->ne[1] * w->ne[2]);
}

static void free_block(struct unet_block *b) {
    if (b && b->st) {
        free(b->st->tb);
        free(b->st);
        b->st = NULL;
    }
}

/* Reads every block from the tensor names and checks the shapes. Leaves u partly filled on
 * failure (mx_sd_unet_free cleans up). */
static int parse(struct mx_sd_unet *u, struct mx_err *err) {
    int rc;
    const struct mx_tensor *w;
    const struct mx_tensor *cin = has(u, "input_blocks.0.0.weight");
    const struct mx_tensor *k = has(u, "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight");
    for (int i = 2; !k && i < 16; i++)
        k = has(u, "input_blocks.%d.1.transformer_blocks.0.attn2.to_k.weight", i);
    if (!cin)
        return mx_err_set(err, MX_EFORMAT, "%s: no UNet (tensor %sinput_blocks.0.0.weight "
                          "missing)", u->m->path, UNET_PREFIX);
    u->ch = cin->ne[3];
    u->in_ch = cin->ne[2];
    u->emb_dim = 4 * u->ch;
    u->ctx_dim = k ? k->ne[0] : u->m->context_dim;
    const struct mx_tensor *pin = has(u, "input_blocks.1.1.proj_in.weight");
    /* SDXL has no transformer at the first level: the first one found tells the projection */
    for (int i = 2; !pin && i < 16; i++)
        pin = has(u, "input_blocks.%d.1.proj_in.weight", i);
    u->linear_proj = pin && pin->ne[2] == 1 && pin->ne[1] > 1;
    if (cin->ne[0] != 3 || cin->ne[1] != 3 || u->ch % UNET_GROUPS)
        return mx_err_set(err, MX_EFORMAT, "%s: %sinput_blocks.0.0.weight has shape [%lld, %lld, "
                          "%lld, %lld], expected a 3x3 conv to a multiple of %d channels",
                          u->m->path, UNET_PREFIX, (long long)cin->ne[0], (long long)cin->ne[1],
                          (long long)cin->ne[2], (long long)cin->ne[3], UNET_GROUPS);
    NEED(&u->te0_w, (struct mx_tensor *)NULL, u->ch, u->emb_dim, 1, 1, "time_embed.0.weight");
    NEED(&w, &u->te0_b, u->emb_dim, 1, 1, 1, "time_embed.0.bias");
    NEED(&u->te2_w, (struct mx_tensor *)NULL, u->emb_dim, u->emb_dim, 1, 1,
         "time_embed.2.weight");
    NEED(&w, &u->te2_b, u->emb_dim, 1, 1, 1, "time_embed.2.bias");
    if ((rc = parse_label(u, err)) < 0)
        return rc;

    /* input blocks: conv_in, then per level ResBlocks [+ transformer], a Downsample between */
    while (has(u, "input_blocks.%d.0.op.weight", u->n_in) ||
           has(u, "input_blocks.%d.0.in_layers.2.weight", u->n_in) || u->n_in == 0)
        u->n_in++;
    while (has(u, "output_blocks.%d.0.in_layers.2.weight", u->n_out))
        u->n_out++;
    if (u->n_out != u->n_in)
        return mx_err_set(err, MX_EFORMAT, "%s: UNet has %d input blocks but %d output blocks",
                          u->m->path, u->n_in, u->n_out);
    u->in = calloc((size_t)u->n_in, sizeof *u->in);
    u->out = calloc((size_t)u->n_out, sizeof *u->out);
    u->skips = calloc((size_t)u->n_in, sizeof *u->skips);
    if (!u->in || !u->out || !u->skips)
        return mx_err_set(err, MX_ENOMEM, "unet: out of memory");
    int64_t *skip_c = calloc((size_t)u->n_in, sizeof *skip_c); /* channels of each skip */
    int *skip_l = calloc((size_t)u->n_in, sizeof *skip_l);     /* and its level */
    if (!skip_c || !skip_l) {
        free(skip_c);
        free(skip_l);
        return mx_err_set(err, MX_ENOMEM, "unet: out of memory");
    }
    int64_t c = u->ch;
    int level = 0;
    rc = 0;
    for (int i = 0; i < u->n_in && rc == 0; i++) {
        struct unet_block *b = &u->in[i];
        char p[64];
        snprintf(p, sizeof p, "input_blocks.%d", i);
        b->level = level;
        if (i == 0) {
            b->kind = UNET_CONV_IN;
            b->conv_w = cin;
            b->c_out = u->ch;
            const struct mx_tensor *bb;
            rc = mx_sd_need(u->m, &bb, (int64_t[4]){u->ch, 1, 1, 1}, err,
                            UNET_PREFIX "input_blocks.0.0.bias");
            if (rc == 0 && add_vec(u, bb, &b->conv_b) < 0)
                rc = mx_err_set(err, MX_ENOMEM, "unet: out of memory");
        } else if (has(u, "%s.0.op.weight", p)) {
            b->kind = UNET_DOWN;
            const struct mx_tensor *bb;
            rc = mx_sd_need(u->m, &b->conv_w, (int64_t[4]){3, 3, c, c}, err,
                            UNET_PREFIX "%s.0.op.weight", p);
            if (rc == 0)
                rc = mx_sd_need(u->m, &bb, (int64_t[4]){c, 1, 1, 1}, err,
                                UNET_PREFIX "%s.0.op.bias", p);
            if (rc == 0 && add_vec(u, bb, &b->conv_b) < 0)
                rc = mx_err_set(err, MX_ENOMEM, "unet: out of memory");
            b->c_out = c;
            level++;
            if (level >= UNET_MAX_LEVELS)
                rc = mx_err_set(err, MX_EFORMAT, "%s: UNet has more than %d levels", u->m->path,
                                UNET_MAX_LEVELS);
        } else {
            b->kind = UNET_RES;
            const struct mx_tensor *iw = has(u, "%s.0.in_layers.2.weight", p);
            int64_t co = iw->ne[3];
            char q[80];
            snprintf(q, sizeof q, "%s.0", p);
            rc = parse_res(u, q, c, co, &b->res, err);
            c = co;
            b->c_out = c;
            if (rc == 0 && has(u, "%s.1.norm.weight", p)) {
                snprintf(q, sizeof q, "%s.1", p);
                rc = parse_st(u, q, c, &b->st, err);
            }
        }
        note_conv(u, b->conv_w);
        skip_c[i] = b->c_out;
        skip_l[i] = level;
    }
    u->levels = level + 1;
    /* middle: ResBlock, SpatialTransformer, ResBlock */
    if (rc == 0) {
        u->mid[0].kind = u->mid[1].kind = UNET_RES;
        u->mid[0].level = u->mid[1].level = level;
        u->mid[0].c_out = u->mid[1].c_out = c;
        rc = parse_res(u, "middle_block.0", c, c, &u->mid[0].res, err);
        if (rc == 0)
            rc = parse_st(u, "middle_block.1", c, &u->mid[0].st, err);
        if (rc == 0)
            rc = parse_res(u, "middle_block.2", c, c, &u->mid[1].res, err);
    }
    /* output blocks: each concatenates the next skip, ResBlock [+ transformer] [+ Upsample] */
    for (int i = 0; i < u->n_out && rc == 0; i++) {
        struct unet_block *b = &u->out[i];
        int j = u->n_in - 1 - i; /* the skip it takes */
        char p[64], q[80];
        snprintf(p, sizeof p, "output_blocks.%d", i);
        snprintf(q, sizeof q, "%s.0", p);
        if (skip_l[j] != level) {
            rc = mx_err_set(err, MX_EFORMAT, "%s: %s takes a skip of level %d at level %d",
                            u->m->path, p, skip_l[j], level);
            break;
        }
        b->kind = UNET_RES;
        b->level = level;
        const struct mx_tensor *iw = has(u, "%s.0.in_layers.2.weight", p);
        int64_t co = iw->ne[3];
        rc = parse_res(u, q, c + skip_c[j], co, &b->res, err);
        c = co;
        b->c_out = c;
        int sub = 1;
        if (rc == 0 && has(u, "%s.1.norm.weight", p)) {
            snprintf(q, sizeof q, "%s.1", p);
            rc = parse_st(u, q, c, &b->st, err);
            sub = 2;
        }
        if (rc == 0 && has(u, "%s.%d.conv.weight", p, sub)) {
            const struct mx_tensor *bb;
            b->up = true;
            rc = mx_sd_need(u->m, &b->conv_w, (int64_t[4]){3, 3, c, c}, err,
                            UNET_PREFIX "%s.%d.conv.weight", p, sub);
            if (rc == 0)
                rc = mx_sd_need(u->m, &bb, (int64_t[4]){c, 1, 1, 1}, err,
                                UNET_PREFIX "%s.%d.conv.bias", p, sub);
            if (rc == 0 && add_vec(u, bb, &b->conv_b) < 0)
                rc = mx_err_set(err, MX_ENOMEM, "unet: out of memory");
            level--;
            if (level < 0)
                rc = mx_err_set(err, MX_EFORMAT, "%s: UNet upsamples more often than it "
                                "downsamples", u->m->path);
        }
        note_conv(u, b->conv_w);
    }
    free(skip_c);
    free(skip_l);
    if (rc < 0)
        return rc;
    if (level != 0 || c != u->ch)
        return mx_err_set(err, MX_EFORMAT, "%s: UNet output blocks end at level %d with %lld "
                          "channels, expected level 0 with %lld", u->m->path, level,
                          (long long)c, (long long)u->ch);
    NEED(&w, &u->out_gn_w, u->ch, 1, 1, 1, "out.0.weight");
    NEED(&w, &u->out_gn_b, u->ch, 1, 1, 1, "out.0.bias");
    NEED(&u->out_w, (struct mx_tensor *)NULL, 3, 3, u->ch, -1, "out.2.weight");
    u->out_ch = u->out_w->ne[3];
    NEED(&w, &u->out_b, u->out_ch, 1, 1, 1, "out.2.bias");
    note_conv(u, u->out_w);
    /* every ResBlock's kernels (the largest conv kernels of the network) */
    for (int i = 0; i < u->n_in + 2 + u->n_out; i++) {
        struct unet_block *b = i < u->n_in ? &u->in[i] : i < u->n_in + 2 ? &u->mid[i - u->n_in]
                                                                         : &u->out[i - u->n_in - 2];
        if (b->kind == UNET_RES) {
            note_conv(u, b->res.in_w);
            note_conv(u, b->res.out_w);
        }
    }
    int lo = -1, hi = -1;
    for (int i = 0; i < u->n_in; i++)
        if (u->in[i].st) {
            lo = lo < 0 ? u->in[i].level : lo;
            hi = u->in[i].level;
        }
    snprintf(u->desc, sizeof u->desc, "ch %lld, %d levels, %d blocks, attn at levels %d-%d "
             "depth %d, %s, ctx %lld, %s proj, in %lld", (long long)u->ch, u->levels, u->n_in,
             lo, hi, u->tb_per_st, u->linear_proj ? "heads of 64" : "8 heads",
             (long long)u->ctx_dim, u->linear_proj ? "linear" : "conv", (long long)u->in_ch);
    return 0;
}

/* Allocates vbuf and fills every scheduled vector with its F32 copy (mx_op_cpy widens). */
static int widen(struct mx_sd_unet *u, struct mx_err *err) {
    size_t total = 0;
    for (int i = 0; i < u->n_vecs; i++)
        total += ((size_t)mx_tensor_nelements(u->vecs[i].src) * sizeof(float) + 63) / 64 * 64;
    int rc = mx_buf_alloc(u->be, total, &u->vbuf, err);
    if (rc < 0)
        return rc;
    u->vbytes = total;
    size_t off = 0;
    for (int i = 0; i < u->n_vecs; i++) {
        const struct mx_tensor *s = u->vecs[i].src;
        struct mx_tensor *d = u->vecs[i].dst;
        int64_t n = mx_tensor_nelements(s);
        mx_tensor_init(d, MX_TYPE_F32, n, 1, 1, 1);
        d->buf = u->vbuf;
        d->data = (char *)u->vbuf->base + off;
        d->name = s->name;
        off += ((size_t)n * sizeof(float) + 63) / 64 * 64;
        struct mx_tensor sv;
        if (mx_tensor_reshape(s, n, 1, 1, 1, &sv) < 0 || mx_op_cpy(u->be, d, &sv) < 0)
            return mx_err_set(err, MX_EFORMAT, "%s: tensor %s: %s", u->m->path,
                              s->name ? s->name : "?", mx_backend_last_error(u->be));
    }
    /* the GEGLU bias halves: value rows then gate rows */
    for (int i = 0; i < u->n_in + 2 + u->n_out; i++) {
        struct unet_block *b = i < u->n_in ? &u->in[i] : i < u->n_in + 2 ? &u->mid[i - u->n_in]
                                                                         : &u->out[i - u->n_in - 2];
        for (int d = 0; b->st && d < b->st->depth; d++) {
            struct unet_tb *tb = &b->st->tb[d];
            struct mx_tensor two;
            mx_tensor_reshape(&tb->ff_b_all, tb->inner, 2, 1, 1, &two);
            mx_tensor_view_rows(&two, 0, 1, &tb->ffx_b);
            mx_tensor_view_rows(&two, 1, 1, &tb->ffg_b);
            mx_tensor_reshape(&tb->ffx_b, tb->inner, 1, 1, 1, &tb->ffx_b);
            mx_tensor_reshape(&tb->ffg_b, tb->inner, 1, 1, 1, &tb->ffg_b);
        }
    }
    return mx_backend_sync(u->be);
}

/* ---- scratch stack -------------------------------------------------------------------------- */

/* One forward pass's state: the stack, the batch, and the profile clock. */
struct fwd {
    struct mx_sd_unet *u;
    struct mx_backend *be;
    bool measure;           /* sizes only: no data, no ops */
    size_t used, peak;      /* stack bytes in use, most ever */
    size_t big;             /* bytes of the largest single tensor pushed */
    int n;                  /* batch */
    int64_t n_ctx;          /* context tokens per image */
    struct mx_tensor emb_s; /* F32 [emb_dim, n]: SiLU(time embedding), read by every ResBlock */
    struct mx_tensor ctx;   /* F32 [ctx_dim, n_ctx * n] */
    const float *y;         /* SDXL: host [n][adm_dim], the label embedding's input; NULL */
    struct mx_tensor pos;   /* I32 [>= max(tokens, n_ctx)] zeros */
    struct mx_err *err;
    double c0;              /* profiling: CPU clock at the start of the current op */
};

/* A new F32 tensor on top of the stack (64-byte aligned). Returns 0 or MX_ENOMEM. */
static int push(struct fwd *f, struct mx_tensor *t, int64_t ne0, int64_t ne1, int64_t ne2,
                int64_t ne3) {
    if (mx_tensor_init(t, MX_TYPE_F32, ne0, ne1, ne2, ne3) < 0)
        return mx_err_set(f->err, MX_EINVAL, "unet: bad scratch shape");
    size_t bytes = (mx_tensor_nbytes(t) + 63) / 64 * 64;
    f->big = MX_MAX(f->big, bytes);
    if (f->measure) {
        f->used += bytes;
        f->peak = MX_MAX(f->peak, f->used);
        return 0;
    }
    if (f->used + bytes > f->u->scap)
        return mx_err_set(f->err, MX_ENOMEM, "unet: scratch full (%zu + %zu > %zu bytes)",
                          f->used, bytes, f->u->scap);
    t->buf = f->u->sbuf;
    t->data = (char *)f->u->sbuf->base + f->used;
    f->used += bytes;
    f->peak = MX_MAX(f->peak, f->used);
    return 0;
}

/* CPU seconds used by the process so far (profiling only). */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Op wrappers: nothing in measuring mode; the backend's message on failure; timing per class
 * when profiling (f->c0: the CPU clock when the op started). */
static int op_done(struct fwd *f, int rc, int cls, double t0, const char *what) {
    if (rc < 0)
        return mx_err_set(f->err, rc, "unet: %s: %s", what, mx_backend_last_error(f->be));
    if (f->u->profile) {
        rc = mx_backend_sync(f->be);
        f->u->prof.s[cls] += mx_time_s() - t0;
        f->u->prof.cpu[cls] += cpu_now() - f->c0;
        f->u->prof.n[cls]++;
        if (rc < 0)
            return mx_err_set(f->err, rc, "unet: %s: %s", what, mx_backend_last_error(f->be));
    }
    return 0;
}

#define OP(f, cls, what, call)                                                                \
    do {                                                                                      \
        if (!(f)->measure) {                                                                  \
            double t0_ = (f)->u->profile ? mx_time_s() : 0.0;                                 \
            (f)->c0 = (f)->u->profile ? cpu_now() : 0.0;                                      \
            int r_ = op_done((f), (call), (cls), t0_, (what));                                \
            if (r_ < 0)                                                                       \
                return r_;                                                                    \
        }                                                                                     \
    } while (0)

#define TRY(call)                                                                             \
    do {                                                                                      \
        int r_ = (call);                                                                      \
        if (r_ < 0)                                                                           \
            return r_;                                                                        \
    } while (0)

/* A 2-D view [ne0, ne1] of contiguous t (shapes only; fine in measuring mode). */
static struct mx_tensor as2d(const struct mx_tensor *t, int64_t ne0, int64_t ne1) {
    struct mx_tensor v = *t;
    mx_tensor_reshape(t, ne0, ne1, 1, 1, &v);
    return v;
}

/* Rows [r0, r0 + n) of 2-D contiguous t. */
static struct mx_tensor rows(const struct mx_tensor *t, int64_t r0, int64_t n) {
    struct mx_tensor v = *t;
    struct mx_tensor t2 = as2d(t, t->ne[0], mx_tensor_nrows(t));
    mx_tensor_view_rows(&t2, r0, n, &v);
    return v;
}

/* dst = W x (+ b). x: [n_in, T]; dst: [n_out, T]. */
static int linear(struct fwd *f, struct mx_tensor *dst, const struct mx_tensor *w,
                  const struct mx_tensor *b, const struct mx_tensor *x) {
    OP(f, MX_SD_UNET_PROF_MATMUL, "matmul", mx_op_matmul(f->be, dst, w, x));
    if (b)
        OP(f, MX_SD_UNET_PROF_ELTWISE, "add", mx_op_add(f->be, dst, dst, b));
    return 0;
}

/* dst = conv(x) with a 3x3 (pad 1) or 1x1 (pad 0) kernel at stride `stride`. */
static int conv(struct fwd *f, struct mx_tensor *dst, const struct mx_tensor *x,
                const struct mx_tensor *w, const struct mx_tensor *b, int stride) {
    int pad = (int)(w->ne[0] / 2);
    struct mx_conv2d_params p = {stride, stride, pad, pad, 1, 1};
    OP(f, MX_SD_UNET_PROF_CONV, "conv2d", mx_op_conv2d(f->be, dst, x, w, b, &p));
    return 0;
}

/* dst = SiLU(GroupNorm(x)) (dst may be x). */
static int gn_silu(struct fwd *f, struct mx_tensor *dst, const struct mx_tensor *x,
                   const struct mx_tensor *w, const struct mx_tensor *b, float eps) {
    OP(f, MX_SD_UNET_PROF_NORM, "group_norm",
       mx_op_group_norm(f->be, dst, x, w, b, UNET_GROUPS, eps));
    OP(f, MX_SD_UNET_PROF_ELTWISE, "silu", mx_op_silu(f->be, dst, dst));
    return 0;
}

/* ---- blocks ------------------------------------------------------------------------------- */

/* ResBlock: out = skip(x) + conv(SiLU(GN(conv(SiLU(GN(x))) + emb_proj)))
 * x: [W, H, c_in, N]; out: [W, H, c_out, N] (allocated by the caller, not x). */
static int res_block(struct fwd *f, const struct unet_res *r, const struct mx_tensor *x,
                     struct mx_tensor *out) {
    size_t mark = f->used;
    int64_t W = x->ne[0], H = x->ne[1], N = x->ne[3];
    struct mx_tensor t1, t2, e;
    TRY(push(f, &t1, W, H, r->c_in, N));
    TRY(gn_silu(f, &t1, x, &r->in_gn_w, &r->in_gn_b, UNET_RES_EPS));
    TRY(push(f, &t2, W, H, r->c_out, N));
    TRY(conv(f, &t2, &t1, r->in_w, &r->in_b, 1));
    /* + the timestep: emb_layers(SiLU(emb)) per image, over every pixel */
    TRY(push(f, &e, r->c_out, N, 1, 1));
    TRY(linear(f, &e, r->emb_w, &r->emb_b, &f->emb_s));
    struct mx_tensor e4 = e;
    mx_tensor_reshape(&e, 1, 1, r->c_out, N, &e4);
    OP(f, MX_SD_UNET_PROF_ELTWISE, "add", mx_op_add(f->be, &t2, &t2, &e4));
    TRY(gn_silu(f, &t2, &t2, &r->out_gn_w, &r->out_gn_b, UNET_RES_EPS));
    TRY(conv(f, out, &t2, r->out_w, &r->out_b, 1));
    if (r->skip_w) {
        struct mx_tensor s;
        TRY(push(f, &s, W, H, r->c_out, N));
        TRY(conv(f, &s, x, r->skip_w, &r->skip_b, 1));
        OP(f, MX_SD_UNET_PROF_ELTWISE, "add", mx_op_add(f->be, out, out, &s));
    } else {
        OP(f, MX_SD_UNET_PROF_ELTWISE, "add", mx_op_add(f->be, out, out, x));
    }
    f->used = mark;
    return 0;
}

/* Multi-head attention per image: o[:, image i] = softmax(q k^T / sqrt(hd)) v, no mask.
 * q, o: [C, T * N]; k, v: [C, n_kv * N]. */
static int attention(struct fwd *f, const struct unet_st *s, struct mx_tensor *o,
                     const struct mx_tensor *q, const struct mx_tensor *k,
                     const struct mx_tensor *v, int64_t T, int64_t n_kv) {
    struct mx_attn_params ap = {.n_head = s->n_head, .n_head_kv = s->n_head,
                                .head_dim = s->head_dim, .n_kv = n_kv,
                                .scale = 1.0f / sqrtf((float)s->head_dim), .window = 0};
    for (int i = 0; i < f->n && !f->measure; i++) {
        struct mx_tensor qi = rows(q, i * T, T), oi = rows(o, i * T, T);
        struct mx_tensor ki = rows(k, i * n_kv, n_kv), vi = rows(v, i * n_kv, n_kv);
        struct mx_tensor q3 = qi, o3 = oi, qpos = f->pos, kpos = f->pos;
        mx_tensor_reshape(&qi, s->head_dim, s->n_head, T, 1, &q3);
        mx_tensor_reshape(&oi, s->head_dim, s->n_head, T, 1, &o3);
        qpos.ne[0] = T;
        kpos.ne[0] = n_kv;
        OP(f, MX_SD_UNET_PROF_ATTN, "attn",
           mx_op_attn(f->be, &o3, &q3, &ki, &vi, &qpos, &kpos, &ap));
    }
    return 0;
}

/* BasicTransformerBlock on tokens h [C, T * N] in place. */
static int tblock(struct fwd *f, const struct unet_st *s, const struct unet_tb *tb,
                  struct mx_tensor *h, int64_t T) {
    size_t mark = f->used;
    int64_t C = s->c, TN = T * f->n, CN = f->n_ctx * f->n;
    struct mx_tensor n, q, k, v, a;
    TRY(push(f, &n, C, TN, 1, 1));
    TRY(push(f, &q, C, TN, 1, 1));
    TRY(push(f, &a, C, TN, 1, 1));
    /* self-attention */
    OP(f, MX_SD_UNET_PROF_NORM, "layer_norm",
       mx_op_layer_norm(f->be, &n, h, &tb->ln_w[0], &tb->ln_b[0], UNET_LN_EPS));
    size_t kv_mark = f->used;
    TRY(push(f, &k, C, TN, 1, 1));
    TRY(push(f, &v, C, TN, 1, 1));
    TRY(linear(f, &q, tb->a1.q, NULL, &n));
    TRY(linear(f, &k, tb->a1.k, NULL, &n));
    TRY(linear(f, &v, tb->a1.v, NULL, &n));
    TRY(attention(f, s, &a, &q, &k, &v, T, T));
    f->used = kv_mark;
    TRY(linear(f, &n, &tb->a1.out_w, &tb->a1.out_b, &a));
    OP(f, MX_SD_UNET_PROF_ELTWISE, "add", mx_op_add(f->be, h, h, &n));
    /* cross-attention over the context */
    OP(f, MX_SD_UNET_PROF_NORM, "layer_norm",
       mx_op_layer_norm(f->be, &n, h, &tb->ln_w[1], &tb->ln_b[1], UNET_LN_EPS));
    TRY(push(f, &k, C, CN, 1, 1));
    TRY(push(f, &v, C, CN, 1, 1));
    TRY(linear(f, &q, tb->a2.q, NULL, &n));
    TRY(linear(f, &k, tb->a2.k, NULL, &f->ctx));
    TRY(linear(f, &v, tb->a2.v, NULL, &f->ctx));
    TRY(attention(f, s, &a, &q, &k, &v, T, f->n_ctx));
    f->used = kv_mark;
    TRY(linear(f, &n, &tb->a2.out_w, &tb->a2.out_b, &a));
    OP(f, MX_SD_UNET_PROF_ELTWISE, "add", mx_op_add(f->be, h, h, &n));
    /* GEGLU feed-forward: value * gelu(gate), then down to C */
    f->used = mark; /* q, a and the norm are dead: reuse their bytes */
    TRY(push(f, &n, C, TN, 1, 1));
    OP(f, MX_SD_UNET_PROF_NORM, "layer_norm",
       mx_op_layer_norm(f->be, &n, h, &tb->ln_w[2], &tb->ln_b[2], UNET_LN_EPS));
    struct mx_tensor gx, gg;
    TRY(push(f, &gx, tb->inner, TN, 1, 1));
    TRY(push(f, &gg, tb->inner, TN, 1, 1));
    TRY(linear(f, &gx, &tb->ffx_w, &tb->ffx_b, &n));
    TRY(linear(f, &gg, &tb->ffg_w, &tb->ffg_b, &n));
    OP(f, MX_SD_UNET_PROF_ELTWISE, "gelu_mul", mx_op_gelu_mul(f->be, &gx, &gg, &gx));
    TRY(linear(f, &n, tb->ff2_w, &tb->ff2_b, &gx));
    OP(f, MX_SD_UNET_PROF_ELTWISE, "add", mx_op_add(f->be, h, h, &n));
    f->used = mark;
    return 0;
}

/* SpatialTransformer: out = x + to_image(proj_out(blocks(proj_in(tokens(GN(x)))))).
 * x, out: [W, H, C, N], distinct. */
static int spatial(struct fwd *f, const struct unet_st *s, const struct mx_tensor *x,
                   struct mx_tensor *out) {
    size_t mark = f->used;
    int64_t W = x->ne[0], H = x->ne[1], C = s->c, N = x->ne[3], T = W * H;
    struct mx_tensor g, tok, h;
    TRY(push(f, &g, W, H, C, N));
    OP(f, MX_SD_UNET_PROF_NORM, "group_norm",
       mx_op_group_norm(f->be, &g, x, &s->gn_w, &s->gn_b, UNET_GROUPS, UNET_ST_EPS));
    TRY(push(f, &tok, C, T, 1, N));
    struct mx_tensor g3 = g;
    mx_tensor_reshape(&g, T, C, 1, N, &g3);
    OP(f, MX_SD_UNET_PROF_ELTWISE, "transpose", mx_op_transpose(f->be, &tok, &g3));
    TRY(push(f, &h, C, T * N, 1, 1));
    struct mx_tensor tok2 = as2d(&tok, C, T * N);
    TRY(linear(f, &h, &s->pin_w, &s->pin_b, &tok2));
    for (int d = 0; d < s->depth; d++)
        TRY(tblock(f, s, &s->tb[d], &h, T));
    TRY(linear(f, &tok2, &s->pout_w, &s->pout_b, &h));
    struct mx_tensor o3 = *out;
    mx_tensor_reshape(out, T, C, 1, N, &o3);
    OP(f, MX_SD_UNET_PROF_ELTWISE, "transpose", mx_op_transpose(f->be, &o3, &tok));
    OP(f, MX_SD_UNET_PROF_ELTWISE, "add", mx_op_add(f->be, out, out, x));
    f->used = mark;
    return 0;
}

/* A ResBlock [+ transformer] [+ nearest x2 + conv] from x into out (allocated by the caller
 * with the block's output shape). */
static int res_st_up(struct fwd *f, const struct unet_block *b, const struct mx_tensor *x,
                     struct mx_tensor *out) {
    size_t mark = f->used;
    int64_t W = x->ne[0], H = x->ne[1], N = x->ne[3];
    if (!b->st && !b->up)
        return res_block(f, &b->res, x, out);
    struct mx_tensor r;
    TRY(push(f, &r, W, H, b->c_out, N));
    TRY(res_block(f, &b->res, x, &r));
    if (b->st) {
        struct mx_tensor r2;
        if (b->up)
            TRY(push(f, &r2, W, H, b->c_out, N));
        else
            r2 = *out;
        TRY(spatial(f, b->st, &r, &r2));
        r = r2;
    }
    if (b->up) {
        struct mx_tensor u2;
        TRY(push(f, &u2, 2 * W, 2 * H, b->c_out, N));
        OP(f, MX_SD_UNET_PROF_ELTWISE, "upsample", mx_op_upsample(f->be, &u2, &r, 2));
        TRY(conv(f, out, &u2, b->conv_w, &b->conv_b, 1));
    }
    f->used = mark;
    return 0;
}

/* ---- forward ------------------------------------------------------------------------------ */

/* Whether the user asked to stop. */
static int check_cancel(struct fwd *f, const volatile int *cancel) {
    if (cancel && *cancel)
        return mx_err_set(f->err, MX_ECANCELED, "unet: canceled");
    return 0;
}

/* SDXL: emb_s += label_emb.0.2(SiLU(label_emb.0.0(y))) for the batch's vectors f->y. */
static int label_emb(struct fwd *f, int64_t N) {
    struct mx_sd_unet *u = f->u;
    size_t mark = f->used;
    struct mx_tensor y, l1, l2;
    TRY(push(f, &y, u->adm_dim, N, 1, 1));
    TRY(push(f, &l1, u->emb_dim, N, 1, 1));
    TRY(push(f, &l2, u->emb_dim, N, 1, 1));
    if (!f->measure) {
        int rc = mx_tensor_set(f->be, &y, f->y, 0, mx_tensor_nbytes(&y));
        if (rc < 0)
            return mx_err_set(f->err, rc, "unet: label vector upload failed");
    }
    TRY(linear(f, &l1, u->le0_w, &u->le0_b, &y));
    OP(f, MX_SD_UNET_PROF_ELTWISE, "silu", mx_op_silu(f->be, &l1, &l1));
    TRY(linear(f, &l2, u->le2_w, &u->le2_b, &l1));
    OP(f, MX_SD_UNET_PROF_ELTWISE, "add", mx_op_add(f->be, &f->emb_s, &f->emb_s, &l2));
    f->used = mark;
    return 0;
}

/* The whole network: x F32 [W, H, in_ch, N] (on the stack), t host [N], result into eps
 * [W, H, out_ch, N] (on the stack). In measuring mode only the stack is counted. */
static int forward(struct fwd *f, const struct mx_tensor *x, const float *t,
                   struct mx_tensor *eps, const volatile int *cancel) {
    struct mx_sd_unet *u = f->u;
    int64_t W = x->ne[0], H = x->ne[1], N = f->n;
    /* timestep embedding: sinusoids (cos first, max period 10000) -> linear -> SiLU -> linear,
     * then SiLU once for every ResBlock's emb_layers */
    struct mx_tensor te, e1;
    TRY(push(f, &te, u->ch, N, 1, 1));
    TRY(push(f, &e1, u->emb_dim, N, 1, 1));
    TRY(push(f, &f->emb_s, u->emb_dim, N, 1, 1));
    if (!f->measure) {
        int64_t half = u->ch / 2;
        float *s = u->te_host;
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < half; j++) {
                /* in float, as stable-diffusion.cpp (ggml_timestep_embedding) computes it:
                 * at t = 999 the rounding of the frequency moves the angle by up to 5e-4 */
                float freq = expf(-logf(10000.0f) * (float)j / (float)half);
                float arg = t[i] * freq;
                s[i * u->ch + j] = cosf(arg);
                s[i * u->ch + half + j] = sinf(arg);
            }
        int rc = mx_tensor_set(f->be, &te, s, 0, (size_t)(u->ch * N) * sizeof(float));
        if (rc < 0)
            return mx_err_set(f->err, rc, "unet: timestep upload failed");
    }
    TRY(linear(f, &e1, u->te0_w, &u->te0_b, &te));
    OP(f, MX_SD_UNET_PROF_ELTWISE, "silu", mx_op_silu(f->be, &e1, &e1));
    TRY(linear(f, &f->emb_s, u->te2_w, &u->te2_b, &e1));
    if (u->adm_dim)
        TRY(label_emb(f, N));
    OP(f, MX_SD_UNET_PROF_ELTWISE, "silu", mx_op_silu(f->be, &f->emb_s, &f->emb_s));

    /* input blocks: each output stays on the stack as its skip */
    struct mx_tensor *skips = u->skips;
    int rc = 0;
    const struct mx_tensor *h = x;
    int64_t w = W, hh = H;
#define STEP(call)                                                                            \
    do {                                                                                      \
        rc = (call);                                                                          \
        if (rc < 0)                                                                           \
            goto done;                                                                        \
    } while (0)
    for (int i = 0; i < u->n_in; i++) {
        const struct unet_block *b = &u->in[i];
        STEP(check_cancel(f, cancel));
        if (b->kind == UNET_DOWN) {
            w = (w + 1) / 2;
            hh = (hh + 1) / 2;
        }
        STEP(push(f, &skips[i], w, hh, b->c_out, N));
        if (b->kind == UNET_CONV_IN)
            STEP(conv(f, &skips[i], h, b->conv_w, &b->conv_b, 1));
        else if (b->kind == UNET_DOWN)
            STEP(conv(f, &skips[i], h, b->conv_w, &b->conv_b, 2));
        else
            STEP(res_st_up(f, b, h, &skips[i]));
        h = &skips[i];
    }
    /* middle and output blocks: results alternate between two carries, pushed above the
     * skips (a popped skip's bytes are reclaimed when the pass ends) */
    int64_t carry_n = w * hh * u->mid[0].c_out * N, cw = w, chh = hh;
    for (int i = 0; i < u->n_out; i++) {
        const struct unet_block *b = &u->out[i];
        cw = b->up ? 2 * cw : cw;
        chh = b->up ? 2 * chh : chh;
        carry_n = MX_MAX(carry_n, cw * chh * b->c_out * N);
    }
    struct mx_tensor carry[2], hb[2]; /* raw carries; the current shapes seen on them */
    STEP(push(f, &carry[0], carry_n, 1, 1, 1));
    STEP(push(f, &carry[1], carry_n, 1, 1, 1));
    int cur = 0;
    for (int i = 0; i < 2 + u->n_out; i++) {
        const struct unet_block *b = i < 2 ? &u->mid[i] : &u->out[i - 2];
        STEP(check_cancel(f, cancel));
        size_t mark = f->used;
        int64_t ow = b->up ? 2 * w : w, oh = b->up ? 2 * hh : hh;
        struct mx_tensor *o = &hb[cur];
        mx_tensor_init(o, MX_TYPE_F32, ow, oh, b->c_out, N);
        o->buf = carry[cur].buf;
        o->data = carry[cur].data;
        if (i < 2) { /* middle_block: ResBlock + transformer, ResBlock */
            STEP(res_st_up(f, b, h, o));
        } else {     /* output block: concat the skip of the same level first */
            const struct mx_tensor *s = &skips[u->n_in - 1 - (i - 2)];
            struct mx_tensor cat;
            STEP(push(f, &cat, w, hh, h->ne[2] + s->ne[2], N));
            OP(f, MX_SD_UNET_PROF_ELTWISE, "concat", mx_op_concat(f->be, &cat, h, s, 2));
            STEP(res_st_up(f, b, &cat, o));
        }
        f->used = mark;
        h = o;
        cur ^= 1;
        w = ow;
        hh = oh;
    }
    /* out: GN, SiLU, conv to the latent channels */
    {
        size_t mark = f->used;
        struct mx_tensor g;
        STEP(push(f, &g, w, hh, u->ch, N));
        STEP(gn_silu(f, &g, h, &u->out_gn_w, &u->out_gn_b, UNET_RES_EPS));
        STEP(conv(f, eps, &g, u->out_w, &u->out_b, 1));
        f->used = mark;
    }
#undef STEP
done:
    return rc;
}

/* Runs forward in measuring mode: the stack bytes for batch n of lw x lh and n_ctx tokens
 * (eps, inputs and positions included). */
static size_t measure(struct mx_sd_unet *u, int n, int lw, int lh, int64_t n_ctx,
                      size_t *big) {
    struct mx_err e = {0};
    struct fwd f = {.u = u, .be = u->be, .measure = true, .n = n, .n_ctx = n_ctx, .err = &e};
    struct mx_tensor x, eps;
    if (push(&f, &x, lw, lh, u->in_ch, n) < 0 || push(&f, &f.ctx, u->ctx_dim, n_ctx * n, 1, 1) < 0 ||
        push(&f, &eps, lw, lh, u->out_ch, n) < 0)
        return 0;
    if (forward(&f, &x, NULL, &eps, NULL) < 0)
        return 0;
    if (big)
        *big = f.big;
    return f.peak;
}

/* ---- public ------------------------------------------------------------------------------- */

void mx_sd_unet_free(struct mx_sd_unet *u) {
    if (!u)
        return;
    for (int i = 0; u->in && i < u->n_in; i++)
        free_block(&u->in[i]);
    for (int i = 0; u->out && i < u->n_out; i++)
        free_block(&u->out[i]);
    free_block(&u->mid[0]);
    free_block(&u->mid[1]);
    free(u->in);
    free(u->out);
    free(u->vecs);
    free(u->skips);
    free(u->te_host);
    mx_buf_free(u->sbuf);
    mx_buf_free(u->pbuf);
    mx_buf_free(u->vbuf);
    free(u);
}

/* Makes sure the scratch holds `bytes` and the positions `npos` zeros. */
static int ensure(struct mx_sd_unet *u, size_t bytes, int64_t npos, struct mx_err *err) {
    if (bytes > u->scap) {
        mx_buf_free(u->sbuf);
        u->sbuf = NULL;
        u->scap = 0;
        int rc = mx_buf_alloc(u->be, bytes, &u->sbuf, err);
        if (rc < 0)
            return rc;
        u->scap = bytes;
    }
    if (npos > u->pcap) {
        mx_buf_free(u->pbuf);
        u->pbuf = NULL;
        u->pcap = 0;
        int rc = mx_buf_alloc(u->be, (size_t)npos * sizeof(int32_t), &u->pbuf, err);
        if (rc < 0)
            return rc;
        int32_t *z = calloc((size_t)npos, sizeof *z);
        if (!z)
            return mx_err_set(err, MX_ENOMEM, "unet: out of memory");
        struct mx_tensor t;
        mx_tensor_init(&t, MX_TYPE_I32, npos, 1, 1, 1);
        t.buf = u->pbuf;
        t.data = u->pbuf->base;
        rc = mx_tensor_set(u->be, &t, z, 0, (size_t)npos * sizeof(int32_t));
        free(z);
        if (rc < 0)
            return mx_err_set(err, rc, "unet: cannot set positions");
        u->pcap = npos;
    }
    return 0;
}

/* A UNet with its architecture parsed (no buffers). */
static int make(const struct mx_sd_model *m, struct mx_sd_unet **out, struct mx_err *err) {
    *out = NULL;
    struct mx_sd_unet *u = calloc(1, sizeof *u);
    if (!u)
        return mx_err_set(err, MX_ENOMEM, "unet: out of memory");
    u->m = m;
    u->be = m->be;
    int rc = parse(u, err);
    if (rc < 0) {
        mx_sd_unet_free(u);
        return rc;
    }
    *out = u;
    return 0;
}

size_t mx_sd_unet_mem(const struct mx_sd_model *m, int batch, int lw, int lh) {
    struct mx_sd_unet *u;
    struct mx_err e = {0};
    if (batch <= 0 || lw <= 0 || lh <= 0 || make(m, &u, &e) < 0)
        return 0;
    size_t big = 0, s = measure(u, batch, lw, lh, UNET_DEFAULT_CTX, &big);
    size_t vec = 0;
    for (int i = 0; i < u->n_vecs; i++)
        vec += ((size_t)mx_tensor_nelements(u->vecs[i].src) * sizeof(float) + 63) / 64 * 64;
    /* the backend's scratch (CPU): a widened conv kernel or linear weight plus a rounded copy
     * of the op's input (at most the largest activation), and per thread an im2col tile */
    size_t be_scratch = (size_t)u->max_w_f32 * sizeof(float) + big +
                        (size_t)mx_backend_cpu_n_threads(m->be) * (size_t)u->max_k * 256 *
                            sizeof(float);
    size_t total = s ? s + vec + be_scratch : 0;
    mx_sd_unet_free(u);
    return total;
}

int mx_sd_unet_new(const struct mx_sd_model *m, int max_batch, int max_lw, int max_lh,
                   struct mx_sd_unet **out, struct mx_err *err) {
    *out = NULL;
    if (max_batch <= 0 || max_lw <= 0 || max_lh <= 0)
        return mx_err_set(err, MX_EINVAL, "unet: bad size (batch %d, latent %dx%d)", max_batch,
                          max_lw, max_lh);
    struct mx_sd_unet *u;
    int rc = make(m, &u, err);
    if (rc < 0)
        return rc;
    u->max_batch = max_batch;
    u->te_host = malloc((size_t)(u->ch * max_batch) * sizeof(float));
    if (!u->te_host) {
        rc = mx_err_set(err, MX_ENOMEM, "unet: out of memory");
        goto fail;
    }
    int64_t mult = (int64_t)1 << (u->levels - 1);
    if (max_lw % mult || max_lh % mult) {
        rc = mx_err_set(err, MX_EINVAL, "unet: latent %dx%d is not a multiple of %lld", max_lw,
                        max_lh, (long long)mult);
        goto fail;
    }
    rc = widen(u, err);
    if (rc < 0)
        goto fail;
    size_t need = measure(u, max_batch, max_lw, max_lh, UNET_DEFAULT_CTX, NULL);
    if (!need) {
        rc = mx_err_set(err, MX_EINVAL, "unet: cannot size scratch for %dx%d x %d", max_lw,
                        max_lh, max_batch);
        goto fail;
    }
    rc = ensure(u, need, MX_MAX((int64_t)max_lw * max_lh, 4 * UNET_DEFAULT_CTX), err);
    if (rc < 0)
        goto fail;
    *out = u;
    return 0;
fail:
    mx_sd_unet_free(u);
    return rc;
}

int mx_sd_unet_eval(struct mx_sd_unet *u, int batch, int lw, int lh, const float *x,
                    const float *t, const float *ctx, int64_t n_ctx, float *out,
                    const volatile int *cancel, struct mx_err *err) {
    return mx_sd_unet_eval_y(u, batch, lw, lh, x, t, ctx, n_ctx, NULL, out, cancel, err);
}

int64_t mx_sd_unet_adm_dim(const struct mx_sd_unet *u) {
    return u->adm_dim;
}

int mx_sd_unet_eval_y(struct mx_sd_unet *u, int batch, int lw, int lh, const float *x,
                      const float *t, const float *ctx, int64_t n_ctx, const float *y,
                      float *out, const volatile int *cancel, struct mx_err *err) {
    if (u->adm_dim && !y)
        return mx_err_set(err, MX_EINVAL, "unet: this UNet (SDXL) needs the pooled-text and "
                          "size vector y (%lld wide)", (long long)u->adm_dim);
    int64_t mult = (int64_t)1 << (u->levels - 1);
    if (batch <= 0 || batch > u->max_batch || lw <= 0 || lh <= 0 || lw % mult || lh % mult ||
        n_ctx <= 0)
        return mx_err_set(err, MX_EINVAL, "unet: bad eval size (batch %d of at most %d, latent "
                          "%dx%d in multiples of %lld, %lld context tokens)", batch,
                          u->max_batch, lw, lh, (long long)mult, (long long)n_ctx);
    size_t need = measure(u, batch, lw, lh, n_ctx, NULL);
    if (!need)
        return mx_err_set(err, MX_EINVAL, "unet: cannot size scratch");
    int rc = ensure(u, need, MX_MAX((int64_t)lw * lh, n_ctx), err);
    if (rc < 0)
        return rc;
    struct fwd f = {.u = u, .be = u->be, .n = batch, .n_ctx = n_ctx, .err = err, .y = y};
    mx_tensor_init(&f.pos, MX_TYPE_I32, u->pcap, 1, 1, 1);
    f.pos.buf = u->pbuf;
    f.pos.data = u->pbuf->base;
    struct mx_tensor xt, eps;
    TRY(push(&f, &xt, lw, lh, u->in_ch, batch));
    TRY(push(&f, &f.ctx, u->ctx_dim, n_ctx * batch, 1, 1));
    TRY(push(&f, &eps, lw, lh, u->out_ch, batch));
    rc = mx_tensor_set(u->be, &xt, x, 0, mx_tensor_nbytes(&xt));
    if (rc == 0)
        rc = mx_tensor_set(u->be, &f.ctx, ctx, 0, mx_tensor_nbytes(&f.ctx));
    if (rc < 0)
        return mx_err_set(err, rc, "unet: input upload failed");
    rc = forward(&f, &xt, t, &eps, cancel);
    if (rc < 0)
        return rc;
    rc = mx_tensor_get(u->be, &eps, out, 0, mx_tensor_nbytes(&eps));
    if (rc < 0)
        return mx_err_set(err, rc, "unet: %s", mx_backend_last_error(u->be));
    return 0;
}

void mx_sd_unet_set_profile(struct mx_sd_unet *u, int on) {
    u->profile = on;
    memset(&u->prof, 0, sizeof u->prof);
}

void mx_sd_unet_get_profile(const struct mx_sd_unet *u, struct mx_sd_unet_profile *p) {
    *p = u->prof;
}

size_t mx_sd_unet_scratch_bytes(const struct mx_sd_unet *u) {
    return u->scap;
}

const char *mx_sd_unet_describe(const struct mx_sd_unet *u) {
    return u->desc;
}

/* ---- one block alone (tests) ---------------------------------------------------------------- */

/* The pass of mx_sd_unet_block over u->mid[0] (its ResBlock, or its transformer when st): in
 * measuring mode only the stack is counted; otherwise x, emb and ctx are uploaded and y
 * downloaded. */
static int block_pass(struct fwd *f, bool st, int64_t cin, int64_t cout, int w, int h,
                      const float *x, const float *emb, const float *ctx, float *y) {
    struct mx_sd_unet *u = f->u;
    const struct unet_block *b = &u->mid[0];
    struct mx_tensor xt, yt;
    TRY(push(f, &xt, w, h, cin, f->n));
    if (st)
        TRY(push(f, &f->ctx, u->ctx_dim, f->n_ctx * f->n, 1, 1));
    else
        TRY(push(f, &f->emb_s, u->emb_dim, f->n, 1, 1));
    TRY(push(f, &yt, w, h, cout, f->n));
    if (!f->measure) {
        int rc = mx_tensor_set(f->be, &xt, x, 0, mx_tensor_nbytes(&xt));
        if (rc == 0)
            rc = st ? mx_tensor_set(f->be, &f->ctx, ctx, 0, mx_tensor_nbytes(&f->ctx))
                    : mx_tensor_set(f->be, &f->emb_s, emb, 0, mx_tensor_nbytes(&f->emb_s));
        if (rc < 0)
            return mx_err_set(f->err, rc, "unet: block input upload failed");
    }
    if (st) {
        TRY(spatial(f, b->st, &xt, &yt));
    } else {
        /* SiLU(time embedding), as forward leaves it for every ResBlock */
        OP(f, MX_SD_UNET_PROF_ELTWISE, "silu", mx_op_silu(f->be, &f->emb_s, &f->emb_s));
        TRY(res_block(f, &b->res, &xt, &yt));
    }
    if (!f->measure) {
        int rc = mx_tensor_get(f->be, &yt, y, 0, mx_tensor_nbytes(&yt));
        if (rc < 0)
            return mx_err_set(f->err, rc, "unet: %s", mx_backend_last_error(f->be));
    }
    return 0;
}

int mx_sd_unet_block(const struct mx_sd_model *m, const char *prefix, bool st, int64_t cin,
                     int64_t cout, int w, int h, int n, const float *x, const float *emb,
                     const float *ctx, int64_t n_ctx, float *y, struct mx_err *err) {
    if (w <= 0 || h <= 0 || n <= 0 || (st && (cin != cout || n_ctx <= 0)))
        return mx_err_set(err, MX_EINVAL, "unet: bad block size (%dx%d x %d, %lld -> %lld "
                          "channels, %lld context tokens)", w, h, n, (long long)cin,
                          (long long)cout, (long long)n_ctx);
    struct mx_sd_unet *u = calloc(1, sizeof *u);
    if (!u)
        return mx_err_set(err, MX_ENOMEM, "unet: out of memory");
    u->m = m;
    u->be = m->be;
    u->max_batch = n;
    int rc;
    struct unet_block *b = &u->mid[0]; /* widen finds the GEGLU biases of mid[0] */
    b->kind = UNET_RES;
    b->c_out = cout;
    if (st) {
        /* the widths parse reads from input_blocks.1.1, here from the block itself */
        const struct mx_tensor *k = has(u, "%s.transformer_blocks.0.attn2.to_k.weight", prefix);
        const struct mx_tensor *pin = has(u, "%s.proj_in.weight", prefix);
        u->ctx_dim = k ? k->ne[0] : m->context_dim;
        u->linear_proj = pin && pin->ne[2] == 1 && pin->ne[1] > 1;
        rc = parse_st(u, prefix, cin, &b->st, err);
    } else {
        const struct mx_tensor *e = has(u, "%s.emb_layers.1.weight", prefix);
        u->emb_dim = e ? e->ne[0] : 0;
        rc = e ? parse_res(u, prefix, cin, cout, &b->res, err)
               : mx_err_set(err, MX_EFORMAT, "%s: no ResBlock %s%s (emb_layers.1.weight "
                            "missing)", m->path, UNET_PREFIX, prefix);
    }
    if (rc == 0)
        rc = widen(u, err);
    struct fwd f = {.u = u, .be = u->be, .measure = true, .n = n, .n_ctx = n_ctx, .err = err};
    if (rc == 0)
        rc = block_pass(&f, st, cin, cout, w, h, NULL, NULL, NULL, NULL);
    if (rc == 0)
        rc = ensure(u, f.peak, MX_MAX((int64_t)w * h, n_ctx), err);
    if (rc == 0) {
        f = (struct fwd){.u = u, .be = u->be, .n = n, .n_ctx = n_ctx, .err = err};
        mx_tensor_init(&f.pos, MX_TYPE_I32, u->pcap, 1, 1, 1);
        f.pos.buf = u->pbuf;
        f.pos.data = u->pbuf->base;
        rc = block_pass(&f, st, cin, cout, w, h, x, emb, ctx, y);
    }
    mx_sd_unet_free(u);
    return rc;
}
