/* taesd.c - the TAESD decoder on the CPU backend (see taesd.h). */
#include "core/diffusion/taesd.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/quant.h"
#include "core/format/safetensors.h"

#define TAESD_CH 64  /* channels of every inner layer */
#define TAESD_Z 4    /* latent channels (SD 1.x/2.x and SDXL) */
#define TAESD_LAYERS 19 /* the Sequential's layers after the clamp: diffusers' indices 0..18 */

/* One 3x3 convolution: weight [3, 3, cin, cout] and bias [cout] (or none), F32 host memory. */
struct taesd_conv {
    struct mx_tensor w, b;
    bool has_b;
};

struct mx_sd_taesd {
    struct mx_backend *be;          /* borrowed: the CPU backend */
    struct taesd_conv conv_in, conv_out;
    struct taesd_conv up[3];        /* the bias-free convs after each upsample */
    struct taesd_conv blk[10][3];   /* the 10 Blocks' conv.0, conv.2, conv.4 */
    float *params;                  /* every weight and bias, owned */
};

/* The decoder's layout in diffusers indices: conv_in 0, blocks 2-4, up 6, blocks 7-9, up 11,
 * blocks 12-14, up 16, block 17, conv_out 18 (1, 5, 10, 15 are ReLU and upsamples). */
static const int blk_idx[10] = {2, 3, 4, 7, 8, 9, 12, 13, 14, 17};
static const int up_idx[3] = {6, 11, 16};

/* Reading state: the file, the name prefix and index offset of its layout, the next float. */
struct taesd_load {
    struct mx_st *st;
    const char *prefix;   /* "decoder.layers." or "" */
    int offset;           /* 0 (diffusers) or 1 (madebyollin's, clamp at index 0) */
    float *next;          /* where the next tensor's floats go (NULL: only counting) */
    size_t floats;        /* counted */
    struct mx_err *err;
};

/* Tensor prefix+(idx+offset)+suffix with PyTorch shape shape[0..n) into t (F32 host). */
static int load_t(struct taesd_load *l, struct mx_tensor *t, int idx, const char *suffix,
                  const int64_t *shape, int n) {
    char name[96];
    snprintf(name, sizeof name, "%s%d%s", l->prefix, idx + l->offset, suffix);
    const struct mx_st_tensor *st = mx_st_find_tensor(l->st, name);
    if (!st)
        return mx_err_set(l->err, MX_EFORMAT, "%s: tensor %s missing", mx_st_path(l->st), name);
    bool ok = st->n_dims == n;
    int64_t count = 1;
    for (int i = 0; i < n; i++) {
        ok = ok && st->shape[i] == shape[i];
        count *= shape[i];
    }
    if (!ok) {
        char got[96] = "", want[96] = "";
        size_t o = 0, w = 0;
        for (int i = 0; i < st->n_dims && o < sizeof got; i++)
            o += (size_t)snprintf(got + o, sizeof got - o, "%s%lld", i ? ", " : "",
                                  (long long)st->shape[i]);
        for (int i = 0; i < n && w < sizeof want; i++)
            w += (size_t)snprintf(want + w, sizeof want - w, "%s%lld", i ? ", " : "",
                                  (long long)shape[i]);
        return mx_err_set(l->err, MX_EFORMAT, "%s: tensor %s has shape [%s], expected [%s]",
                          mx_st_path(l->st), name, got, want);
    }
    int type = mx_st_dtype_to_type(st->dtype);
    if (type != MX_TYPE_F32 && type != MX_TYPE_F16 && type != MX_TYPE_BF16)
        return mx_err_set(l->err, MX_EFORMAT, "%s: tensor %s is %s, not F32, F16 or BF16",
                          mx_st_path(l->st), name, mx_st_dtype_name(st->dtype));
    int64_t ne[4] = {1, 1, 1, 1};
    for (int i = 0; i < n; i++)
        ne[i] = shape[n - 1 - i];
    if (l->next) {
        mx_tensor_init(t, MX_TYPE_F32, ne[0], ne[1], ne[2], ne[3]);
        t->data = l->next;
        t->name = st->name;
        if (mx_dequantize_row(type, st->data, l->next, count) != 0)
            return mx_err_set(l->err, MX_EFORMAT, "%s: tensor %s: cannot convert",
                              mx_st_path(l->st), name);
        l->next += count;
    }
    l->floats += (size_t)count;
    return 0;
}

/* A conv at layer idx (".weight" [cout, cin, 3, 3] and, when bias, ".bias" [cout]). */
static int load_conv(struct taesd_load *l, struct taesd_conv *c, int idx, const char *sub,
                     int64_t cin, int64_t cout, bool bias) {
    char sw[32], sb[32];
    snprintf(sw, sizeof sw, "%s.weight", sub);
    snprintf(sb, sizeof sb, "%s.bias", sub);
    int rc = load_t(l, &c->w, idx, sw, (int64_t[]){cout, cin, 3, 3}, 4);
    c->has_b = bias;
    if (rc == 0 && bias)
        rc = load_t(l, &c->b, idx, sb, (int64_t[]){cout}, 1);
    return rc;
}

/* Every weight of the decoder, in order. */
static int load_all(struct mx_sd_taesd *t, struct taesd_load *l) {
    int rc = load_conv(l, &t->conv_in, 0, "", TAESD_Z, TAESD_CH, true);
    for (int b = 0; b < 10 && rc == 0; b++)
        for (int k = 0; k < 3 && rc == 0; k++) {
            char sub[16];
            snprintf(sub, sizeof sub, ".conv.%d", 2 * k);
            rc = load_conv(l, &t->blk[b][k], blk_idx[b], sub, TAESD_CH, TAESD_CH, true);
        }
    for (int u = 0; u < 3 && rc == 0; u++)
        rc = load_conv(l, &t->up[u], up_idx[u], "", TAESD_CH, TAESD_CH, false);
    if (rc == 0)
        rc = load_conv(l, &t->conv_out, TAESD_LAYERS - 1, "", TAESD_CH, 3, true);
    return rc;
}

/* Reads the decoder from the opened file st (closed here in every case). */
static int open_st(struct mx_backend *be, struct mx_st *st, struct mx_sd_taesd **out,
                   struct mx_err *err) {
    const char *path = mx_st_path(st);
    int rc = 0;
    struct taesd_load l = {.st = st, .err = err};
    if (mx_st_find_tensor(st, "decoder.layers.0.weight")) {
        l.prefix = "decoder.layers.";
    } else if (mx_st_find_tensor(st, "1.weight")) {
        l.prefix = "";
        l.offset = 1;
    } else {
        rc = mx_err_set(err, MX_EFORMAT, "%s: not a TAESD decoder (neither "
                        "decoder.layers.0.weight nor 1.weight is in it)", path);
        mx_st_close(st);
        return rc;
    }
    struct mx_sd_taesd *t = calloc(1, sizeof *t);
    if (!t) {
        rc = mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
        mx_st_close(st);
        return rc;
    }
    t->be = be;
    if ((rc = load_all(t, &l)) == 0) { /* counted: now read */
        if (!(t->params = malloc(l.floats * sizeof *t->params))) {
            rc = mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
        } else {
            l.next = t->params;
            l.floats = 0;
            rc = load_all(t, &l);
        }
    }
    mx_st_close(st); /* the tensors' names pointed into it: forget them */
    if (rc < 0) {
        mx_sd_taesd_free(t);
        return rc;
    }
    struct taesd_conv *all[] = {&t->conv_in, &t->conv_out, &t->up[0], &t->up[1], &t->up[2]};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        all[i]->w.name = all[i]->b.name = "taesd";
    for (int b = 0; b < 10; b++)
        for (int k = 0; k < 3; k++)
            t->blk[b][k].w.name = t->blk[b][k].b.name = "taesd";
    *out = t;
    return 0;
}

/* The backend rule: the CPU one (host-memory activations), or none (load only). */
static int check_be(struct mx_backend *be, const char *name, struct mx_err *err) {
    if (be && strcmp(mx_backend_name(be), "cpu") != 0)
        return mx_err_set(err, MX_EUNSUP, "%s: the TAESD preview runs on the CPU backend, not %s",
                          name, mx_backend_name(be));
    return 0;
}

int mx_sd_taesd_open(struct mx_backend *be, const char *path, struct mx_sd_taesd **out,
                     struct mx_err *err) {
    *out = NULL;
    struct mx_st *st;
    int rc = check_be(be, path, err);
    if (rc == 0)
        rc = mx_st_open(path, &st, err);
    return rc < 0 ? rc : open_st(be, st, out, err);
}

int mx_sd_taesd_open_mem(struct mx_backend *be, const void *buf, size_t size, const char *name,
                         struct mx_sd_taesd **out, struct mx_err *err) {
    *out = NULL;
    struct mx_st *st;
    int rc = check_be(be, name, err);
    if (rc == 0)
        rc = mx_st_open_mem(buf, size, name, &st, err);
    return rc < 0 ? rc : open_st(be, st, out, err);
}

void mx_sd_taesd_free(struct mx_sd_taesd *t) {
    if (!t)
        return;
    free(t->params);
    free(t);
}

size_t mx_sd_taesd_decode_mem(int lw, int lh) {
    if (lw < 1 || lh < 1)
        return SIZE_MAX;
    double b = 3.0 * TAESD_CH * 64.0 * lw * lh * sizeof(float);
    return b < (double)SIZE_MAX / 2 ? (size_t)b : SIZE_MAX;
}

/* One decode: three host buffers of one 64-channel image at the output size. */
struct taesd_run {
    struct mx_sd_taesd *t;
    float *buf[3];
    struct mx_err *err;
};

/* A [w, h, c] F32 host tensor over buffer i. */
static struct mx_tensor act(struct taesd_run *r, int i, int64_t w, int64_t h, int64_t c) {
    struct mx_tensor x;
    mx_tensor_init(&x, MX_TYPE_F32, w, h, c, 1);
    x.data = r->buf[i];
    x.name = "taesd activation";
    return x;
}

/* dst = conv(x) (3x3, pad 1). */
static int conv(struct taesd_run *r, struct mx_tensor *dst, const struct mx_tensor *x,
                const struct taesd_conv *c) {
    struct mx_conv2d_params p = {1, 1, 1, 1, 1, 1};
    int rc = mx_op_conv2d(r->t->be, dst, x, &c->w, c->has_b ? &c->b : NULL, &p);
    if (rc < 0)
        return mx_err_set(r->err, rc, "taesd: conv: %s", mx_backend_last_error(r->t->be));
    return 0;
}

/* ReLU in place on host memory (after the queued ops are done). */
static int relu(struct taesd_run *r, struct mx_tensor *x) {
    int rc = mx_backend_sync(r->t->be);
    if (rc < 0)
        return mx_err_set(r->err, rc, "taesd: %s", mx_backend_last_error(r->t->be));
    float *v = x->data;
    int64_t n = mx_tensor_nelements(x);
    for (int64_t i = 0; i < n; i++)
        v[i] = v[i] > 0.0f ? v[i] : 0.0f;
    return 0;
}

/* Block b on buffer *cur (w x h): the result lands in another buffer, *cur updated. */
static int block(struct taesd_run *r, int b, int *cur, int64_t w, int64_t h) {
    int a = *cur, s1 = (a + 1) % 3, s2 = (a + 2) % 3;
    struct mx_tensor x = act(r, a, w, h, TAESD_CH), t1 = act(r, s1, w, h, TAESD_CH),
                     t2 = act(r, s2, w, h, TAESD_CH);
    const struct taesd_conv *c = r->t->blk[b];
    int rc;
    if ((rc = conv(r, &t1, &x, &c[0])) < 0 || (rc = relu(r, &t1)) < 0 ||
        (rc = conv(r, &t2, &t1, &c[1])) < 0 || (rc = relu(r, &t2)) < 0 ||
        (rc = conv(r, &t1, &t2, &c[2])) < 0)
        return rc;
    if ((rc = mx_op_add(r->t->be, &t1, &t1, &x)) < 0)
        return mx_err_set(r->err, rc, "taesd: add: %s", mx_backend_last_error(r->t->be));
    if ((rc = relu(r, &t1)) < 0)
        return rc;
    *cur = s1;
    return 0;
}

int mx_sd_taesd_decode(struct mx_sd_taesd *t, const float *latent, int lw, int lh, float *rgb,
                       struct mx_err *err) {
    if (lw < 1 || lh < 1)
        return mx_err_set(err, MX_EINVAL, "taesd: latent %dx%d is empty", lw, lh);
    if (!t->be)
        return mx_err_set(err, MX_EUNSUP, "taesd: opened without a backend (load only)");
    struct taesd_run r = {.t = t, .err = err};
    size_t n = (size_t)TAESD_CH * 64 * (size_t)lw * (size_t)lh;
    int rc = 0;
    for (int i = 0; i < 3; i++)
        if (!(r.buf[i] = malloc(n * sizeof(float))))
            rc = mx_err_set(err, MX_ENOMEM, "taesd: out of memory (%zu MB of activations)",
                            3 * n * sizeof(float) >> 20);
    if (rc < 0)
        goto done;
    /* the clamp: tanh(z / 3) * 3 */
    size_t nz = (size_t)TAESD_Z * (size_t)lw * (size_t)lh;
    for (size_t i = 0; i < nz; i++)
        r.buf[0][i] = tanhf(latent[i] / 3.0f) * 3.0f;
    int64_t w = lw, h = lh;
    int cur = 1;
    struct mx_tensor z = act(&r, 0, w, h, TAESD_Z), y = act(&r, 1, w, h, TAESD_CH);
    if ((rc = conv(&r, &y, &z, &t->conv_in)) < 0 || (rc = relu(&r, &y)) < 0)
        goto done;
    int b = 0;
    for (int stage = 0; stage < 4 && rc == 0; stage++) {
        int nb = stage < 3 ? 3 : 1;
        for (int k = 0; k < nb && rc == 0; k++)
            rc = block(&r, b++, &cur, w, h);
        if (rc < 0 || stage == 3)
            break;
        /* nearest x2, then the bias-free conv */
        int s1 = (cur + 1) % 3, s2 = (cur + 2) % 3;
        struct mx_tensor x = act(&r, cur, w, h, TAESD_CH),
                         u = act(&r, s1, 2 * w, 2 * h, TAESD_CH),
                         o = act(&r, s2, 2 * w, 2 * h, TAESD_CH);
        if ((rc = mx_op_upsample(t->be, &u, &x, 2)) < 0) {
            rc = mx_err_set(err, rc, "taesd: upsample: %s", mx_backend_last_error(t->be));
            break;
        }
        w *= 2;
        h *= 2;
        rc = conv(&r, &o, &u, &t->up[stage]);
        cur = s2;
    }
    if (rc < 0)
        goto done;
    struct mx_tensor x = act(&r, cur, w, h, TAESD_CH), o;
    mx_tensor_init(&o, MX_TYPE_F32, w, h, 3, 1);
    o.data = rgb;
    o.name = "taesd output";
    if ((rc = conv(&r, &o, &x, &t->conv_out)) == 0 && (rc = mx_backend_sync(t->be)) < 0)
        rc = mx_err_set(err, rc, "taesd: %s", mx_backend_last_error(t->be));
done:
    for (int i = 0; i < 3; i++)
        free(r.buf[i]);
    return rc;
}
