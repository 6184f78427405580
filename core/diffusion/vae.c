/* vae.c - the Stable Diffusion VAE (LDM AutoencoderKL) on the backend: decoder, encoder and the
 * tiled decode.
 *
 * Architecture (ch 128, ch_mult 1,2,4,4, 2 res blocks per level, z 4 channels):
 *   decoder: post_quant_conv 1x1 -> conv_in 3x3 (4->512) -> mid (res, attn, res) ->
 *            up.3 .. up.0 (3 res blocks each; up.3..up.1 end in nearest x2 + conv 3x3;
 *            channels 512, 512, 256, 128) -> GroupNorm, SiLU, conv_out 3x3 (128->3)
 *   encoder: conv_in 3x3 (3->128) -> down.0 .. down.3 (2 res blocks each; down.0..2 end in a
 *            (0,1,0,1)-padded stride-2 conv 3x3) -> mid -> GroupNorm, SiLU, conv_out (512->8)
 *            -> quant_conv 1x1
 *   res block: x + conv2(silu(gn2(conv1(silu(gn1(x)))))) (the skip through a 1x1 nin_shortcut
 *            when the channel count changes); GroupNorm 32 groups, eps 1e-6.
 *   attention: one head over the H*W pixels of the lowest level with C = 512 dims; q, k, v,
 *            proj_out are 1x1 convs; softmax(q k^T / sqrt(C)) v; plus the input.
 * Ref: auto_encoder_kl.hpp (src/model/vae/) of stable-diffusion.cpp at
 *      https://github.com/leejet/stable-diffusion.cpp/tree/97d2990807fe6d558e395f8764198d7c7e7b411c
 *
 * The workload: one decode per image, 512x512 typical, where ~2.5 TFLOP of 3x3 convs over
 * 128-512 channels at 64^2 .. 512^2 pixels dominate (the last two levels alone are ~60%); the
 * attention at 64x64 latent is 4096 tokens x 512 dims (~40 GFLOP). Everything runs through the
 * backend's ops, so the conv kernel decides the speed.
 *
 * MEMORY: activations live in three equal "slots" of one buffer (each sized for the largest
 * activation, 256 ch at full resolution for the decoder), rotated block by block: a res block
 * reads slot a and leaves its output in the next slot, using the third as scratch. The mid
 * attention puts its temporaries (q, k, v, their transposes and the N x N scores) in the
 * memory after slot 0, growing the buffer only when they do not fit in two slots.
 */
#include "core/diffusion/vae.h"
#include "core/diffusion/vae_impl.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/util.h"
#include "kernels/backend.h"

#define VAE_GROUPS 32         /* GroupNorm groups everywhere in the VAE */
#define VAE_EPS 1e-6f         /* GroupNorm epsilon */
#define VAE_CH 128            /* base channel count */
#define VAE_Z 4               /* latent channels */
#define VAE_CONV_SCRATCH ((size_t)32 << 20) /* CPU conv im2col + F32 weight copy, estimate */

static const int vae_mult[4] = {1, 2, 4, 4}; /* channels per level = VAE_CH * mult */

/* A convolution: weight from the checkpoint, bias converted to F32. */
struct vae_conv {
    const struct mx_tensor *w; /* F16/F32 [k, k, cin, cout], borrowed from the model */
    struct mx_tensor b;        /* F32 [cout], in the vae's parameter buffer */
};

/* A GroupNorm's affine parameters, F32. */
struct vae_norm {
    struct mx_tensor w, b; /* F32 [C] each */
};

/* One ResnetBlock (no time embedding). */
struct vae_res {
    struct vae_norm n1, n2;
    struct vae_conv c1, c2, nin; /* nin: 1x1 shortcut, used iff cin != cout */
    int64_t cin, cout;           /* channels in and out */
};

/* The single-head self-attention block of the mid level. */
struct vae_attn {
    struct vae_norm norm;
    struct vae_conv q, k, v, proj; /* 1x1 convs, [1, 1, c, c] */
    int64_t c;                     /* channels = the attention width */
};

struct vae_decoder {
    struct vae_conv post_quant, conv_in, conv_out;
    struct vae_res mid1, mid2;
    struct vae_attn attn;
    struct vae_res up[4][3];   /* up[i][j] = decoder.up.i.block.j */
    struct vae_conv upconv[4]; /* up.i.upsample.conv, i = 1..3 */
    struct vae_norm norm_out;
};

struct vae_encoder {
    struct vae_conv conv_in, conv_out, quant;
    struct vae_res down[4][2];   /* down[i][j] = encoder.down.i.block.j */
    struct vae_conv downconv[3]; /* down.i.downsample.conv, i = 0..2 */
    struct vae_res mid1, mid2;
    struct vae_attn attn;
    struct vae_norm norm_out;
};

struct mx_sd_vae {
    struct mx_backend *be;       /* the model's backend (borrowed) */
    const struct mx_sd_model *m; /* borrowed: owns the weights */
    struct mx_arena params;      /* F32 biases and norm parameters */
    struct vae_decoder dec;
    struct vae_encoder enc;
    bool has_encoder;            /* the checkpoint holds first_stage_model.encoder.* */
    int tile, overlap;           /* tiled decode: latent tile side and overlap */
};

/* ---- loading ----------------------------------------------------------------------------- */

/* State of one loading pass (measuring, then real: mx_arena's two-pass protocol). */
struct vae_loader {
    const struct mx_sd_model *m;
    struct mx_arena *a;    /* the parameter arena (measuring in the first pass) */
    bool real;             /* second pass: convert the vectors */
    struct mx_err *err;
};

/* An F32 copy of the vector prefix.name of n elements. */
static int load_vec(struct vae_loader *l, struct mx_tensor *out, const char *prefix,
                    const char *name, int64_t n) {
    const struct mx_tensor *w;
    int rc = mx_sd_need(l->m, &w, (int64_t[4]){n, 1, 1, 1}, l->err, "%s.%s", prefix, name);
    if (rc < 0)
        return rc;
    if ((rc = mx_arena_tensor(l->a, out, MX_TYPE_F32, n, 1, 1, 1, w->name, l->err)) < 0)
        return rc;
    if (l->real && (rc = mx_op_cpy(l->m->be, out, w)) < 0)
        return mx_err_set(l->err, rc, "%s: %s", w->name, mx_backend_last_error(l->m->be));
    return 0;
}

/* A conv prefix.weight of shape [k, k, cin, cout] (F16 or F32) and its F32 bias. */
static int load_conv(struct vae_loader *l, struct vae_conv *c, const char *prefix, int64_t k,
                     int64_t cin, int64_t cout) {
    int rc = mx_sd_need(l->m, &c->w, (int64_t[4]){k, k, cin, cout}, l->err, "%s.weight", prefix);
    if (rc < 0)
        return rc;
    if (c->w->type != MX_TYPE_F16 && c->w->type != MX_TYPE_F32)
        return mx_err_set(l->err, MX_EUNSUP, "%s: conv weight type %d is not F16 or F32",
                          c->w->name, (int)c->w->type);
    return load_vec(l, &c->b, prefix, "bias", cout);
}

/* A GroupNorm's prefix.weight and prefix.bias over c channels, as F32. */
static int load_norm(struct vae_loader *l, struct vae_norm *n, const char *prefix, int64_t c) {
    int rc = load_vec(l, &n->w, prefix, "weight", c);
    return rc < 0 ? rc : load_vec(l, &n->b, prefix, "bias", c);
}

/* A ResnetBlock under prefix (nin_shortcut only when cin != cout). */
static int load_res(struct vae_loader *l, struct vae_res *r, const char *prefix, int64_t cin,
                    int64_t cout) {
    char p[160];
    int rc;
    r->cin = cin;
    r->cout = cout;
    snprintf(p, sizeof p, "%s.norm1", prefix);
    if ((rc = load_norm(l, &r->n1, p, cin)) < 0)
        return rc;
    snprintf(p, sizeof p, "%s.conv1", prefix);
    if ((rc = load_conv(l, &r->c1, p, 3, cin, cout)) < 0)
        return rc;
    snprintf(p, sizeof p, "%s.norm2", prefix);
    if ((rc = load_norm(l, &r->n2, p, cout)) < 0)
        return rc;
    snprintf(p, sizeof p, "%s.conv2", prefix);
    if ((rc = load_conv(l, &r->c2, p, 3, cout, cout)) < 0)
        return rc;
    if (cin != cout) {
        snprintf(p, sizeof p, "%s.nin_shortcut", prefix);
        if ((rc = load_conv(l, &r->nin, p, 1, cin, cout)) < 0)
            return rc;
    }
    return 0;
}

/* The attention block under prefix: norm, q, k, v, proj_out over c channels. */
static int load_attn(struct vae_loader *l, struct vae_attn *a, const char *prefix, int64_t c) {
    static const char *names[4] = {"q", "k", "v", "proj_out"};
    struct vae_conv *convs[4] = {&a->q, &a->k, &a->v, &a->proj};
    char p[160];
    a->c = c;
    snprintf(p, sizeof p, "%s.norm", prefix);
    int rc = load_norm(l, &a->norm, p, c);
    for (int i = 0; i < 4 && rc == 0; i++) {
        snprintf(p, sizeof p, "%s.%s", prefix, names[i]);
        rc = load_conv(l, convs[i], p, 1, c, c);
    }
    return rc;
}

/* A decoder up block under prefix (e.g. "first_stage_model.decoder.up.1"): block.0..2 from cin
 * to cout channels and, when up is not NULL, upsample.conv over cout. */
static int load_up(struct vae_loader *l, struct vae_res res[3], struct vae_conv *up,
                   const char *prefix, int64_t cin, int64_t cout) {
    char p[160];
    int rc = 0;
    for (int j = 0; j < 3 && rc == 0; j++) {
        snprintf(p, sizeof p, "%s.block.%d", prefix, j);
        rc = load_res(l, &res[j], p, j ? cout : cin, cout);
    }
    if (up && rc == 0) {
        snprintf(p, sizeof p, "%s.upsample.conv", prefix);
        rc = load_conv(l, up, p, 3, cout, cout);
    }
    return rc;
}

/* post_quant_conv and the whole decoder, in checkpoint order (the first problem is reported). */
static int load_decoder(struct vae_loader *l, struct vae_decoder *d) {
    const char *P = "first_stage_model.decoder";
    char p[160];
    int64_t top = VAE_CH * vae_mult[3];
    int rc = load_conv(l, &d->post_quant, "first_stage_model.post_quant_conv", 1, VAE_Z, VAE_Z);
    snprintf(p, sizeof p, "%s.conv_in", P);
    if (rc == 0)
        rc = load_conv(l, &d->conv_in, p, 3, VAE_Z, top);
    snprintf(p, sizeof p, "%s.mid.block_1", P);
    if (rc == 0)
        rc = load_res(l, &d->mid1, p, top, top);
    snprintf(p, sizeof p, "%s.mid.attn_1", P);
    if (rc == 0)
        rc = load_attn(l, &d->attn, p, top);
    snprintf(p, sizeof p, "%s.mid.block_2", P);
    if (rc == 0)
        rc = load_res(l, &d->mid2, p, top, top);
    int64_t cin = top;
    for (int i = 3; i >= 0 && rc == 0; i--) {
        int64_t cout = VAE_CH * vae_mult[i];
        snprintf(p, sizeof p, "%s.up.%d", P, i);
        rc = load_up(l, d->up[i], i > 0 ? &d->upconv[i] : NULL, p, cin, cout);
        cin = cout;
    }
    snprintf(p, sizeof p, "%s.norm_out", P);
    if (rc == 0)
        rc = load_norm(l, &d->norm_out, p, VAE_CH);
    snprintf(p, sizeof p, "%s.conv_out", P);
    if (rc == 0)
        rc = load_conv(l, &d->conv_out, p, 3, VAE_CH, 3);
    return rc;
}

/* The whole encoder and quant_conv. */
static int load_encoder(struct vae_loader *l, struct vae_encoder *e) {
    const char *P = "first_stage_model.encoder";
    char p[160];
    int64_t top = VAE_CH * vae_mult[3];
    snprintf(p, sizeof p, "%s.conv_in", P);
    int rc = load_conv(l, &e->conv_in, p, 3, 3, VAE_CH);
    int64_t cin = VAE_CH;
    for (int i = 0; i < 4 && rc == 0; i++) {
        int64_t cout = VAE_CH * vae_mult[i];
        for (int j = 0; j < 2 && rc == 0; j++) {
            snprintf(p, sizeof p, "%s.down.%d.block.%d", P, i, j);
            rc = load_res(l, &e->down[i][j], p, cin, cout);
            cin = cout;
        }
        if (i < 3 && rc == 0) {
            snprintf(p, sizeof p, "%s.down.%d.downsample.conv", P, i);
            rc = load_conv(l, &e->downconv[i], p, 3, cout, cout);
        }
    }
    snprintf(p, sizeof p, "%s.mid.block_1", P);
    if (rc == 0)
        rc = load_res(l, &e->mid1, p, top, top);
    snprintf(p, sizeof p, "%s.mid.attn_1", P);
    if (rc == 0)
        rc = load_attn(l, &e->attn, p, top);
    snprintf(p, sizeof p, "%s.mid.block_2", P);
    if (rc == 0)
        rc = load_res(l, &e->mid2, p, top, top);
    snprintf(p, sizeof p, "%s.norm_out", P);
    if (rc == 0)
        rc = load_norm(l, &e->norm_out, p, top);
    snprintf(p, sizeof p, "%s.conv_out", P);
    if (rc == 0)
        rc = load_conv(l, &e->conv_out, p, 3, top, 2 * VAE_Z);
    if (rc == 0)
        rc = load_conv(l, &e->quant, "first_stage_model.quant_conv", 1, 2 * VAE_Z, 2 * VAE_Z);
    return rc;
}

/* One loading pass over everything the vae uses. */
static int load_all(struct mx_sd_vae *v, struct vae_loader *l) {
    int rc = load_decoder(l, &v->dec);
    if (rc == 0 && v->has_encoder)
        rc = load_encoder(l, &v->enc);
    return rc;
}

int mx_sd_vae_new(const struct mx_sd_model *m, struct mx_sd_vae **out, struct mx_err *err) {
    *out = NULL;
    static const enum mx_op ops[] = {MX_OP_CONV2D, MX_OP_GROUP_NORM, MX_OP_SILU, MX_OP_ADD,
                                     MX_OP_UPSAMPLE, MX_OP_MATMUL, MX_OP_SOFTMAX,
                                     MX_OP_TRANSPOSE, MX_OP_CONCAT, MX_OP_CPY};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (!mx_backend_supports(m->be, ops[i], MX_TYPE_F32))
            return mx_err_set(err, MX_EUNSUP, "vae: backend %s lacks op %s",
                              mx_backend_name(m->be), mx_op_name(ops[i]));
    struct mx_sd_vae *v = calloc(1, sizeof *v);
    if (!v)
        return mx_err_set(err, MX_ENOMEM, "vae: out of memory");
    v->be = m->be;
    v->m = m;
    v->tile = MX_SD_VAE_TILE;
    v->overlap = MX_SD_VAE_OVERLAP;
    v->has_encoder = mx_sd_weight(m, "first_stage_model.encoder.conv_in.weight") != NULL;
    struct vae_loader l = {.m = m, .a = &v->params, .real = false, .err = err};
    mx_arena_init_measure(&v->params);
    int rc = load_all(v, &l);
    if (rc < 0)
        goto fail;
    size_t size = v->params.used;
    if ((rc = mx_arena_init(&v->params, v->be, size, err)) < 0)
        goto fail;
    l.real = true;
    if ((rc = load_all(v, &l)) < 0)
        goto fail;
    *out = v;
    return 0;
fail:
    mx_sd_vae_free(v);
    return rc;
}

void mx_sd_vae_free(struct mx_sd_vae *v) {
    if (!v)
        return;
    mx_arena_deinit(&v->params);
    free(v);
}

int mx_sd_vae_set_tiling(struct mx_sd_vae *v, int tile, int overlap) {
    if (tile < 4 || overlap < 0 || overlap > tile / 2)
        return MX_EINVAL;
    v->tile = tile;
    v->overlap = overlap;
    return 0;
}

/* ---- scratch layout ---------------------------------------------------------------------- */

/* Floats of the attention temporaries over n pixels of c channels: h, q, k, v, q^T, k^T
 * (n c each) and the n x n scores. */
static bool attn_floats(int64_t n, int64_t c, size_t *out) {
    size_t nn, nc;
    return mx_mul_size((size_t)n, (size_t)n, &nn) && mx_mul_size((size_t)n, (size_t)c * 6, &nc) &&
           nn <= SIZE_MAX - nc && ((*out = nn + nc), true);
}

/* Slot size (floats) and total buffer floats for a decode of a w x h latent. */
static bool dec_layout(int64_t w, int64_t h, size_t *slot, size_t *total) {
    size_t wh, att;
    /* the largest activation: 256 channels after up.1's upsample, at 8w x 8h */
    if (!mx_mul_size((size_t)w, (size_t)h, &wh) || !mx_mul_size(wh, 16384, slot))
        return false;
    if (!attn_floats(w * h, VAE_CH * vae_mult[3], &att))
        return false;
    size_t two = *slot * 2, three = *slot * 3;
    *total = att > two ? *slot + att : three;
    return true;
}

/* The same for an encode of a w x h image (multiples of 8). */
static bool enc_layout(int64_t w, int64_t h, size_t *slot, size_t *total) {
    size_t s = 0, t, att;
    /* every activation (the padded copies before each stride-2 conv included) */
    for (int i = 0; i < 4; i++) {
        int64_t c = VAE_CH * vae_mult[i], cp = VAE_CH * vae_mult[i > 0 ? i - 1 : 0];
        int64_t lw = w >> i, lh = h >> i;
        if (!mx_mul_size((size_t)(lw + 1) * (size_t)(lh + 1), (size_t)(c > cp ? c : cp), &t))
            return false;
        s = t > s ? t : s;
    }
    if (!attn_floats((w / 8) * (h / 8), VAE_CH * vae_mult[3], &att))
        return false;
    *slot = s;
    *total = att > 2 * s ? s + att : 3 * s;
    return true;
}

/* Bytes of n floats plus the conv scratch estimate; SIZE_MAX on overflow. */
static size_t floats_bytes(size_t n) {
    size_t b;
    return mx_mul_size(n, sizeof(float), &b) && b <= SIZE_MAX - VAE_CONV_SCRATCH
               ? b + VAE_CONV_SCRATCH
               : SIZE_MAX;
}

/* The scratch estimate of a layout: the slots, the conv scratch and, in MX_ACT_GGML mode, the
 * CPU conv's f16-rounded copy of its largest input (one slot: conv_gemm.c rounds the whole
 * input of an F16 kernel into shared scratch, which the backend keeps afterwards). */
static size_t layout_bytes(const struct mx_sd_vae *v, size_t slot, size_t total) {
    if (v->be->act_mode == MX_ACT_GGML)
        total = total <= SIZE_MAX - slot ? total + slot : SIZE_MAX;
    return total == SIZE_MAX ? SIZE_MAX : floats_bytes(total);
}

size_t mx_sd_vae_decode_mem(const struct mx_sd_vae *v, int lw, int lh, bool tiled) {
    size_t slot, total;
    if (tiled) {
        lw = lw < v->tile ? lw : v->tile;
        lh = lh < v->tile ? lh : v->tile;
    }
    if (lw < 1 || lh < 1 || !dec_layout(lw, lh, &slot, &total))
        return SIZE_MAX;
    return layout_bytes(v, slot, total);
}

size_t mx_sd_vae_encode_mem(const struct mx_sd_vae *v, int w, int h) {
    size_t slot, total;
    if (w < 8 || h < 8 || !enc_layout(w, h, &slot, &total))
        return SIZE_MAX;
    return layout_bytes(v, slot, total);
}

/* ---- forward ----------------------------------------------------------------------------- */

/* One decode or encode in progress: the scratch buffer and which slot holds the activation. */
struct vae_run {
    struct mx_backend *be;
    struct mx_buf *buf;           /* scratch, owned by the caller of run_open */
    size_t slot;                  /* floats per slot */
    int cur;                      /* slot holding the current activation */
    const volatile int *cancel;   /* polled between blocks (may be NULL) */
    struct mx_err *err;
};

/* t = an F32 [ne0, ne1, ne2] tensor at float offset off of the scratch buffer. */
static void at(struct vae_run *r, struct mx_tensor *t, size_t off, int64_t ne0, int64_t ne1,
               int64_t ne2) {
    mx_tensor_init(t, MX_TYPE_F32, ne0, ne1, ne2, 1);
    t->buf = r->buf;
    t->data = (char *)r->buf->base + off * sizeof(float);
}

/* t = slot s seen as [w, h, c]. */
static void slot_t(struct vae_run *r, struct mx_tensor *t, int s, int64_t w, int64_t h,
                   int64_t c) {
    at(r, t, (size_t)s * r->slot, w, h, c);
}

/* Turns an op's return code into err (with the backend's detail). */
static int op_fail(struct vae_run *r, int rc, const char *what) {
    return mx_err_set(r->err, rc, "vae: %s: %s", what, mx_backend_last_error(r->be));
}

#define OP(call, what)                                                                            \
    do {                                                                                          \
        int rc_ = (call);                                                                         \
        if (rc_ < 0)                                                                              \
            return op_fail(r, rc_, what);                                                         \
    } while (0)

/* MX_ECANCELED (err set) once the caller raised the cancel flag, else 0. */
static int poll_cancel(struct vae_run *r) {
    if (r->cancel && *r->cancel)
        return mx_err_set(r->err, MX_ECANCELED, "vae: canceled");
    return 0;
}

/* dst = conv(x) + bias with the given stride and symmetric padding. */
static int conv(struct vae_run *r, struct mx_tensor *dst, const struct mx_tensor *x,
                const struct vae_conv *c, int stride, int pad) {
    struct mx_conv2d_params p = {stride, stride, pad, pad, 1, 1};
    OP(mx_op_conv2d(r->be, dst, x, c->w, &c->b, &p), c->w->name);
    return 0;
}

/* GroupNorm then SiLU, dst may be x. */
static int norm_silu(struct vae_run *r, struct mx_tensor *dst, const struct mx_tensor *x,
                     const struct vae_norm *n) {
    OP(mx_op_group_norm(r->be, dst, x, &n->w, &n->b, VAE_GROUPS, VAE_EPS), n->w.name);
    OP(mx_op_silu(r->be, dst, dst), "silu");
    return 0;
}

/* ResnetBlock on the w x h activation in slot cur; the output goes to the next slot. */
static int res_fwd(struct vae_run *r, const struct vae_res *b, int64_t w, int64_t h) {
    int rc = poll_cancel(r);
    if (rc < 0)
        return rc;
    int a = r->cur, s1 = (a + 1) % 3, s2 = (a + 2) % 3;
    struct mx_tensor x, t1, t2, y;
    slot_t(r, &x, a, w, h, b->cin);
    slot_t(r, &t1, s1, w, h, b->cin);
    slot_t(r, &t2, s2, w, h, b->cout);
    slot_t(r, &y, s1, w, h, b->cout);
    // h = conv1(silu(norm1(x))): [w, h, cout]
    if ((rc = norm_silu(r, &t1, &x, &b->n1)) < 0 || (rc = conv(r, &t2, &t1, &b->c1, 1, 1)) < 0)
        return rc;
    // h = conv2(silu(norm2(h)))
    if ((rc = norm_silu(r, &t2, &t2, &b->n2)) < 0 || (rc = conv(r, &y, &t2, &b->c2, 1, 1)) < 0)
        return rc;
    // y = h + x, through the 1x1 shortcut when the width changes
    if (b->cin != b->cout) {
        if ((rc = conv(r, &t2, &x, &b->nin, 1, 0)) < 0)
            return rc;
        OP(mx_op_add(r->be, &y, &y, &t2), "res add");
    } else {
        OP(mx_op_add(r->be, &y, &y, &x), "res add");
    }
    r->cur = s1;
    return 0;
}

/* Self-attention on the w x h activation in slot cur (n = w h tokens of c dims); temporaries go
 * after slot 0, the output to slot 1. */
static int attn_fwd(struct vae_run *r, const struct vae_attn *b, int64_t w, int64_t h) {
    int rc = poll_cancel(r);
    if (rc < 0)
        return rc;
    int64_t n = w * h, c = b->c;
    struct mx_tensor x, hn, q, k, v, qt, kt, s, o, ot, y;
    if (r->cur != 0) { /* move x to slot 0: the region after it is the attention's */
        struct mx_tensor src;
        slot_t(r, &src, r->cur, w, h, c);
        slot_t(r, &x, 0, w, h, c);
        OP(mx_op_cpy(r->be, &x, &src), "attn input");
        r->cur = 0;
    }
    slot_t(r, &x, 0, w, h, c);
    size_t R = r->slot, nc = (size_t)n * (size_t)c;
    at(r, &hn, R, w, h, c);
    at(r, &q, R + nc, w, h, c);
    at(r, &k, R + 2 * nc, w, h, c);
    at(r, &v, R + 3 * nc, w, h, c);
    at(r, &qt, R + 4 * nc, c, n, 1);
    at(r, &kt, R + 5 * nc, c, n, 1);
    at(r, &s, R + 6 * nc, n, n, 1);
    at(r, &o, R + nc, c, n, 1);      /* over q, dead once q^T exists */
    at(r, &ot, R + 2 * nc, n, c, 1); /* over k */
    at(r, &y, R, w, h, c);           /* over hn */
    OP(mx_op_group_norm(r->be, &hn, &x, &b->norm.w, &b->norm.b, VAE_GROUPS, VAE_EPS), "attn norm");
    if ((rc = conv(r, &q, &hn, &b->q, 1, 0)) < 0 || (rc = conv(r, &k, &hn, &b->k, 1, 0)) < 0 ||
        (rc = conv(r, &v, &hn, &b->v, 1, 0)) < 0)
        return rc;
    // q, k: [n, c] pixel-major planes -> [c, n] token rows
    struct mx_tensor q2, k2, v2;
    mx_tensor_reshape(&q, n, c, 1, 1, &q2);
    mx_tensor_reshape(&k, n, c, 1, 1, &k2);
    mx_tensor_reshape(&v, n, c, 1, 1, &v2);
    OP(mx_op_transpose(r->be, &qt, &q2), "attn q^T");
    OP(mx_op_transpose(r->be, &kt, &k2), "attn k^T");
    // s[j, i] = k_j . q_i, softmax over the keys j with scale 1/sqrt(c)
    OP(mx_op_matmul(r->be, &s, &kt, &qt), "attn scores");
    OP(mx_op_softmax(r->be, &s, &s, 1.0f / sqrtf((float)c)), "attn softmax");
    // o[:, i] = sum_j v[j, :] s[j, i]: v as stored ([n, c]) is the matmul's [n_in, n_out]
    OP(mx_op_matmul(r->be, &o, &v2, &s), "attn values");
    OP(mx_op_transpose(r->be, &ot, &o), "attn o^T");
    struct mx_tensor ot4;
    mx_tensor_reshape(&ot, w, h, c, 1, &ot4);
    if ((rc = conv(r, &y, &ot4, &b->proj, 1, 0)) < 0)
        return rc;
    OP(mx_op_add(r->be, &y, &y, &x), "attn add");
    r->cur = 1;
    return 0;
}

/* Nearest x2 then a 3x3 conv: [w, h, c] in slot cur -> [2w, 2h, c]. */
static int upsample_fwd(struct vae_run *r, const struct vae_conv *cv, int64_t w, int64_t h,
                        int64_t c) {
    int rc = poll_cancel(r);
    if (rc < 0)
        return rc;
    int a = r->cur, s1 = (a + 1) % 3, s2 = (a + 2) % 3;
    struct mx_tensor x, u, y;
    slot_t(r, &x, a, w, h, c);
    slot_t(r, &u, s1, 2 * w, 2 * h, c);
    slot_t(r, &y, s2, 2 * w, 2 * h, c);
    OP(mx_op_upsample(r->be, &u, &x, 2), "upsample");
    if ((rc = conv(r, &y, &u, cv, 1, 1)) < 0)
        return rc;
    r->cur = s2;
    return 0;
}

/* A decoder up block on the w x h activation in slot cur: its three ResnetBlocks, then (up not
 * NULL) nearest x2 and up's conv; *w and *h become the output size. */
static int up_fwd(struct vae_run *r, const struct vae_res res[3], const struct vae_conv *up,
                  int64_t *w, int64_t *h) {
    int rc;
    for (int j = 0; j < 3; j++)
        if ((rc = res_fwd(r, &res[j], *w, *h)) < 0)
            return rc;
    if (up) {
        if ((rc = upsample_fwd(r, up, *w, *h, res[2].cout)) < 0)
            return rc;
        *w *= 2;
        *h *= 2;
    }
    return 0;
}

/* Pads [w, h, c] with one zero column on the right and one zero row at the bottom (torch's
 * F.pad(x, (0, 1, 0, 1))), then a stride-2 3x3 conv: -> [w/2, h/2, c]. */
static int downsample_fwd(struct vae_run *r, const struct vae_conv *cv, int64_t w, int64_t h,
                          int64_t c) {
    int rc = poll_cancel(r);
    if (rc < 0)
        return rc;
    int a = r->cur, s1 = (a + 1) % 3, s2 = (a + 2) % 3;
    struct mx_tensor x, zc, zr, p1, p2, y;
    slot_t(r, &x, a, w, h, c);
    at(r, &zc, (size_t)s2 * r->slot, 1, h, c);
    at(r, &zr, (size_t)s2 * r->slot + (size_t)(h * c), w + 1, 1, c);
    size_t nz = (size_t)(h + w + 1) * (size_t)c;
    float *zeros = calloc(nz, sizeof(float));
    if (!zeros)
        return mx_err_set(r->err, MX_ENOMEM, "vae: out of memory (%zu floats)", nz);
    struct mx_tensor zall; /* zc and zr back to back */
    at(r, &zall, (size_t)s2 * r->slot, (int64_t)nz, 1, 1);
    rc = mx_tensor_set(r->be, &zall, zeros, 0, nz * sizeof(float));
    free(zeros);
    if (rc < 0)
        return op_fail(r, rc, "downsample pad");
    slot_t(r, &p1, s1, w + 1, h, c);
    slot_t(r, &p2, a, w + 1, h + 1, c);
    slot_t(r, &y, s1, w / 2, h / 2, c);
    OP(mx_op_concat(r->be, &p1, &x, &zc, 0), "downsample pad");
    OP(mx_op_concat(r->be, &p2, &p1, &zr, 1), "downsample pad");
    if ((rc = conv(r, &y, &p2, cv, 2, 0)) < 0)
        return rc;
    r->cur = s1;
    return 0;
}

/* Allocates the scratch for total floats of slots of slot floats. */
static int run_open(struct vae_run *r, struct mx_backend *be, size_t slot, size_t total,
                    const volatile int *cancel, struct mx_err *err) {
    memset(r, 0, sizeof *r);
    r->be = be;
    r->slot = slot;
    r->cancel = cancel;
    r->err = err;
    size_t bytes;
    if (!mx_mul_size(total, sizeof(float), &bytes))
        return mx_err_set(err, MX_ENOMEM, "vae: scratch size overflows");
    return mx_buf_alloc(be, bytes, &r->buf, err);
}

/* The decoder on a w x h latent tile z (host [4][h][w]) -> rgb (host [3][8h][8w]); the scratch
 * of r must be sized for at least w x h (dec_layout). */
static int decode_one(struct mx_sd_vae *v, struct vae_run *r, int64_t w, int64_t h,
                      const float *z, float *rgb) {
    const struct vae_decoder *d = &v->dec;
    struct mx_tensor zt, t1, t2;
    int rc;
    slot_t(r, &zt, 0, w, h, VAE_Z);
    slot_t(r, &t1, 1, w, h, VAE_Z);
    slot_t(r, &t2, 2, w, h, d->conv_in.w->ne[3]);
    if ((rc = mx_tensor_set(v->be, &zt, z, 0, (size_t)(w * h * VAE_Z) * sizeof(float))) < 0)
        return op_fail(r, rc, "latent upload");
    if ((rc = conv(r, &t1, &zt, &d->post_quant, 1, 0)) < 0 ||
        (rc = conv(r, &t2, &t1, &d->conv_in, 1, 1)) < 0)
        return rc;
    r->cur = 2;
    if ((rc = res_fwd(r, &d->mid1, w, h)) < 0 || (rc = attn_fwd(r, &d->attn, w, h)) < 0 ||
        (rc = res_fwd(r, &d->mid2, w, h)) < 0)
        return rc;
    for (int i = 3; i >= 0; i--)
        if ((rc = up_fwd(r, d->up[i], i > 0 ? &d->upconv[i] : NULL, &w, &h)) < 0)
            return rc;
    if ((rc = poll_cancel(r)) < 0)
        return rc;
    int a = r->cur;
    slot_t(r, &t1, a, w, h, VAE_CH);
    slot_t(r, &t2, (a + 1) % 3, w, h, 3);
    if ((rc = norm_silu(r, &t1, &t1, &d->norm_out)) < 0 ||
        (rc = conv(r, &t2, &t1, &d->conv_out, 1, 1)) < 0)
        return rc;
    if ((rc = mx_tensor_get(v->be, &t2, rgb, 0, (size_t)(w * h * 3) * sizeof(float))) < 0)
        return op_fail(r, rc, "image download");
    return 0;
}

/* smootherstep on [0, 1]: the blend ramp of neighbouring tiles (as stable-diffusion.cpp). */
static float smoother(float t) {
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    return t * t * t * (t * (6.0f * t - 15.0f) + 10.0f);
}

/* Tile origins along a side of n latent pixels: tiles of side t stepping by t - ov, the last
 * one flush with the end. Returns the count (pos has room for n). */
static int tile_starts(int n, int t, int ov, int *pos) {
    if (n <= t) {
        pos[0] = 0;
        return 1;
    }
    int k = 0, step = t - ov;
    for (int p = 0; p + t < n; p += step)
        pos[k++] = p;
    pos[k++] = n - t;
    return k;
}

/* Weight of output pixel i of a tile of side len (pixels) whose left/right neighbours overlap
 * it by ramp pixels: a smootherstep rise over the ramp at each side that has a neighbour. */
static float tile_weight(int i, int len, int ramp, bool lo, bool hi) {
    float wgt = 1.0f;
    if (ramp <= 0)
        return wgt;
    if (lo)
        wgt *= smoother(((float)i + 0.5f) / (float)ramp);
    if (hi)
        wgt *= smoother(((float)(len - i) - 0.5f) / (float)ramp);
    return wgt;
}

/* The tiled decode: every tile decoded alone, accumulated with its weights, then normalised. */
static int decode_tiled(struct mx_sd_vae *v, struct vae_run *r, int lw, int lh, const float *z,
                        float *rgb) {
    int tw = lw < v->tile ? lw : v->tile, th = lh < v->tile ? lh : v->tile;
    int W = 8 * lw, H = 8 * lh, ow = 8 * tw, oh = 8 * th, ramp = 8 * v->overlap;
    int *xs = malloc((size_t)lw * sizeof *xs), *ys = malloc((size_t)lh * sizeof *ys);
    float *zt = malloc((size_t)(tw * th * VAE_Z) * sizeof(float));
    float *ot = malloc((size_t)(ow * oh * 3) * sizeof(float));
    float *wsum = calloc((size_t)W * (size_t)H, sizeof(float));
    float *wx = malloc((size_t)ow * sizeof(float)), *wy = malloc((size_t)oh * sizeof(float));
    int rc = 0;
    if (!xs || !ys || !zt || !ot || !wsum || !wx || !wy) {
        rc = mx_err_set(r->err, MX_ENOMEM, "vae: out of memory (tiled decode %dx%d)", W, H);
        goto done;
    }
    memset(rgb, 0, (size_t)W * (size_t)H * 3 * sizeof(float));
    int nx = tile_starts(lw, tw, v->overlap, xs), ny = tile_starts(lh, th, v->overlap, ys);
    for (int ty = 0; ty < ny; ty++) {
        for (int i = 0; i < oh; i++)
            wy[i] = tile_weight(i, oh, ramp, ys[ty] > 0, ys[ty] + th < lh);
        for (int tx = 0; tx < nx; tx++) {
            int x0 = xs[tx], y0 = ys[ty];
            for (int i = 0; i < ow; i++)
                wx[i] = tile_weight(i, ow, ramp, x0 > 0, x0 + tw < lw);
            // the tile's latent: [4][th][tw] cut from [4][lh][lw]
            for (int c = 0; c < VAE_Z; c++)
                for (int y = 0; y < th; y++)
                    memcpy(zt + ((size_t)c * th + y) * tw,
                           z + ((size_t)c * lh + y0 + y) * lw + x0, (size_t)tw * sizeof(float));
            if ((rc = decode_one(v, r, tw, th, zt, ot)) < 0)
                goto done;
            for (int y = 0; y < oh; y++) {
                size_t row = (size_t)(8 * y0 + y) * W + 8 * x0;
                for (int x = 0; x < ow; x++) {
                    float wgt = wy[y] * wx[x];
                    wsum[row + x] += wgt;
                    for (int c = 0; c < 3; c++)
                        rgb[(size_t)c * W * H + row + x] +=
                            wgt * ot[((size_t)c * oh + y) * ow + x];
                }
            }
        }
    }
    for (size_t i = 0; i < (size_t)W * H; i++)
        for (int c = 0; c < 3; c++)
            rgb[(size_t)c * W * H + i] /= wsum[i];
done:
    free(xs);
    free(ys);
    free(zt);
    free(ot);
    free(wsum);
    free(wx);
    free(wy);
    return rc;
}

int mx_sd_vae_decode(struct mx_sd_vae *v, int lw, int lh, const float *z, bool tiled,
                     float *rgb, const volatile int *cancel, struct mx_err *err) {
    if (lw < 1 || lh < 1 || lw > 4096 || lh > 4096)
        return mx_err_set(err, MX_EINVAL, "vae: latent size %dx%d out of range", lw, lh);
    int tw = lw, th = lh;
    if (tiled) {
        tw = lw < v->tile ? lw : v->tile;
        th = lh < v->tile ? lh : v->tile;
    }
    size_t slot, total;
    if (!dec_layout(tw, th, &slot, &total))
        return mx_err_set(err, MX_ENOMEM, "vae: decode %dx%d: scratch size overflows", lw, lh);
    struct vae_run r;
    int rc = run_open(&r, v->be, slot, total, cancel, err);
    if (rc < 0)
        return rc;
    rc = tiled ? decode_tiled(v, &r, lw, lh, z, rgb) : decode_one(v, &r, lw, lh, z, rgb);
    mx_buf_free(r.buf);
    return rc;
}

int mx_sd_vae_encode(struct mx_sd_vae *v, int w, int h, const float *rgb, float *moments,
                     const volatile int *cancel, struct mx_err *err) {
    if (!v->has_encoder)
        return mx_err_set(err, MX_EUNSUP, "%s: the checkpoint has no VAE encoder "
                          "(first_stage_model.encoder.*): img2img needs one", v->m->path);
    if (w < 8 || h < 8 || w % 8 || h % 8 || w > 32768 || h > 32768)
        return mx_err_set(err, MX_EINVAL, "vae: encode size %dx%d is not a positive multiple "
                          "of 8", w, h);
    const struct vae_encoder *e = &v->enc;
    size_t slot, total;
    if (!enc_layout(w, h, &slot, &total))
        return mx_err_set(err, MX_ENOMEM, "vae: encode %dx%d: scratch size overflows", w, h);
    struct vae_run rr, *r = &rr;
    int rc = run_open(r, v->be, slot, total, cancel, err);
    if (rc < 0)
        return rc;
    struct mx_tensor x, t1, t2;
    int64_t cw = w, ch = h;
    slot_t(r, &x, 0, w, h, 3);
    slot_t(r, &t1, 1, w, h, VAE_CH);
    if ((rc = mx_tensor_set(v->be, &x, rgb, 0, (size_t)w * h * 3 * sizeof(float))) < 0) {
        rc = op_fail(r, rc, "image upload");
        goto done;
    }
    if ((rc = conv(r, &t1, &x, &e->conv_in, 1, 1)) < 0)
        goto done;
    r->cur = 1;
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 2; j++)
            if ((rc = res_fwd(r, &e->down[i][j], cw, ch)) < 0)
                goto done;
        if (i < 3) {
            if ((rc = downsample_fwd(r, &e->downconv[i], cw, ch, e->down[i][1].cout)) < 0)
                goto done;
            cw /= 2;
            ch /= 2;
        }
    }
    if ((rc = res_fwd(r, &e->mid1, cw, ch)) < 0 || (rc = attn_fwd(r, &e->attn, cw, ch)) < 0 ||
        (rc = res_fwd(r, &e->mid2, cw, ch)) < 0 || (rc = poll_cancel(r)) < 0)
        goto done;
    int a = r->cur;
    int64_t top = e->mid2.cout;
    slot_t(r, &t1, a, cw, ch, top);
    slot_t(r, &t2, (a + 1) % 3, cw, ch, 2 * VAE_Z);
    slot_t(r, &x, (a + 2) % 3, cw, ch, 2 * VAE_Z);
    if ((rc = norm_silu(r, &t1, &t1, &e->norm_out)) < 0 ||
        (rc = conv(r, &t2, &t1, &e->conv_out, 1, 1)) < 0 ||
        (rc = conv(r, &x, &t2, &e->quant, 1, 0)) < 0)
        goto done;
    if ((rc = mx_tensor_get(v->be, &x, moments, 0, (size_t)(cw * ch * 2 * VAE_Z) *
                                                        sizeof(float))) < 0)
        rc = op_fail(r, rc, "moments download");
done:
    mx_buf_free(r->buf);
    return rc;
}

/* ---- one block alone (tests) ------------------------------------------------------------- */

int mx_sd_vae_block(const struct mx_sd_model *m, const char *prefix, bool attn, int64_t cin,
                    int64_t cout, int w, int h, const float *x, float *y, struct mx_err *err) {
    struct vae_res res;
    struct vae_attn at_;
    struct mx_arena params;
    struct vae_loader l = {.m = m, .a = &params, .real = false, .err = err};
    if (attn && cin != cout)
        return mx_err_set(err, MX_EINVAL, "vae: attention block %s: cin %lld != cout %lld",
                          prefix, (long long)cin, (long long)cout);
    mx_arena_init_measure(&params);
    int rc = attn ? load_attn(&l, &at_, prefix, cin) : load_res(&l, &res, prefix, cin, cout);
    if (rc < 0)
        return rc;
    if ((rc = mx_arena_init(&params, m->be, params.used, err)) < 0)
        return rc;
    l.real = true;
    rc = attn ? load_attn(&l, &at_, prefix, cin) : load_res(&l, &res, prefix, cin, cout);
    size_t slot = (size_t)(cin > cout ? cin : cout) * (size_t)w * (size_t)h, att = 0;
    if (rc == 0 && !attn_floats((int64_t)w * h, cin, &att))
        rc = mx_err_set(err, MX_EINVAL, "vae: block size overflows");
    struct vae_run r = {0};
    if (rc == 0)
        rc = run_open(&r, m->be, slot, att > 2 * slot ? slot + att : 3 * slot, NULL, err);
    struct mx_tensor xt, yt;
    if (rc == 0) {
        at(&r, &xt, 0, w, h, cin);
        if ((rc = mx_tensor_set(m->be, &xt, x, 0, mx_tensor_nbytes(&xt))) < 0)
            rc = op_fail(&r, rc, "block input");
    }
    if (rc == 0)
        rc = attn ? attn_fwd(&r, &at_, w, h) : res_fwd(&r, &res, w, h);
    if (rc == 0) {
        slot_t(&r, &yt, r.cur, w, h, cout);
        if ((rc = mx_tensor_get(m->be, &yt, y, 0, mx_tensor_nbytes(&yt))) < 0)
            rc = op_fail(&r, rc, "block output");
    }
    mx_buf_free(r.buf);
    mx_arena_deinit(&params);
    return rc;
}

int mx_sd_vae_up_block(const struct mx_sd_model *m, const char *prefix, bool upsample,
                       int64_t cin, int64_t cout, int w, int h, const float *x, float *y,
                       struct mx_err *err) {
    struct vae_res res[3];
    struct vae_conv up;
    struct mx_arena params;
    struct vae_loader l = {.m = m, .a = &params, .real = false, .err = err};
    if (w <= 0 || h <= 0)
        return mx_err_set(err, MX_EINVAL, "vae: up block %s: bad size %dx%d", prefix, w, h);
    mx_arena_init_measure(&params);
    int rc = load_up(&l, res, upsample ? &up : NULL, prefix, cin, cout);
    if (rc < 0)
        return rc;
    if ((rc = mx_arena_init(&params, m->be, params.used, err)) < 0)
        return rc;
    l.real = true;
    rc = load_up(&l, res, upsample ? &up : NULL, prefix, cin, cout);
    int f = upsample ? 4 : 1; /* three slots of the widest activation */
    size_t slot = (size_t)(cin > cout ? cin : cout) * (size_t)w * (size_t)h * (size_t)f;
    struct vae_run r = {0};
    if (rc == 0)
        rc = run_open(&r, m->be, slot, 3 * slot, NULL, err);
    struct mx_tensor xt, yt;
    if (rc == 0) {
        at(&r, &xt, 0, w, h, cin);
        if ((rc = mx_tensor_set(m->be, &xt, x, 0, mx_tensor_nbytes(&xt))) < 0)
            rc = op_fail(&r, rc, "block input");
    }
    int64_t ow = w, oh = h;
    if (rc == 0)
        rc = up_fwd(&r, res, upsample ? &up : NULL, &ow, &oh);
    if (rc == 0) {
        slot_t(&r, &yt, r.cur, ow, oh, cout);
        if ((rc = mx_tensor_get(m->be, &yt, y, 0, mx_tensor_nbytes(&yt))) < 0)
            rc = op_fail(&r, rc, "block output");
    }
    mx_buf_free(r.buf);
    mx_arena_deinit(&params);
    return rc;
}
