/* sd_model.c - opening a Stable Diffusion checkpoint (see sd_model.h).
 *
 * Every source (one safetensors file, a diffusers folder, a GGUF file, a separate VAE) adds its
 * tensors to one table under canonical LDM names; the engine's blocks only ever look names up.
 * The table is sorted once and searched by bisection.
 */
#include "core/diffusion/sd_model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/util.h"
#include "core/diffusion/sd_kind.h"
#include "core/diffusion/sd_model_impl.h"
#include "core/format/safetensors.h"

struct sd_entry {
    char *name;             /* canonical name (owned) */
    int64_t seq;            /* insertion order: a later file's tensor replaces an earlier one */
    struct mx_tensor t;     /* t.name points at name */
};

struct mx_sd_model_priv {
    struct sd_entry *e;
    int64_t n, cap, next_seq;
    bool sorted;
    struct mx_st *files[4];      /* opened safetensors files (checkpoint, VAE, ...) */
    struct mx_buf *bufs[4];      /* their mappings wrapped for the backend */
    int n_files;
    void **owned;                /* widened copies (BF16 conv kernels) */
    struct mx_buf **owned_bufs;
    int n_owned;
};

const char *mx_sd_family_name(enum mx_sd_family f) {
    return f == MX_SD_FAMILY_SD1 ? "SD 1.x" : f == MX_SD_FAMILY_SD2 ? "SD 2.x" : "unknown";
}

const char *mx_sd_pred_name(enum mx_sd_pred p) {
    return p == MX_SD_PRED_V ? "v" : "eps";
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const struct sd_entry *)a)->name, ((const struct sd_entry *)b)->name);
}

static int cmp_entry_seq(const void *a, const void *b) {
    const struct sd_entry *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

/* Sorts by name and keeps only the last-added tensor of each name (a separate VAE file
 * overrides the checkpoint's own). */
static void sort_table(struct mx_sd_model_priv *p) {
    if (p->sorted)
        return;
    qsort(p->e, (size_t)p->n, sizeof *p->e, cmp_entry_seq);
    int64_t w = 0;
    for (int64_t i = 0; i < p->n; i++) {
        if (i + 1 < p->n && !strcmp(p->e[i].name, p->e[i + 1].name)) {
            free(p->e[i].name);
            continue;
        }
        p->e[w++] = p->e[i];
    }
    p->n = w;
    p->sorted = true;
}

static struct sd_entry *find_entry(struct mx_sd_model_priv *p, const char *name) {
    sort_table(p);
    struct sd_entry key = {.name = (char *)name};
    return bsearch(&key, p->e, (size_t)p->n, sizeof *p->e, cmp_entry);
}

const struct mx_tensor *mx_sd_weight(const struct mx_sd_model *m, const char *name) {
    struct sd_entry *e = find_entry(m->priv, name);
    return e ? &e->t : NULL;
}

static int fmt_shape(char *buf, size_t size, const int64_t ne[4]) {
    return snprintf(buf, size, "[%lld, %lld, %lld, %lld]", (long long)ne[0], (long long)ne[1],
                    (long long)ne[2], (long long)ne[3]);
}

int mx_sd_need(const struct mx_sd_model *m, const struct mx_tensor **out, const int64_t ne[4],
               struct mx_err *err, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    *out = NULL;
    const struct mx_tensor *t = mx_sd_weight(m, name);
    if (!t)
        return mx_err_set(err, MX_EFORMAT, "%s: tensor %s missing (not a complete %s "
                          "checkpoint?)", m->path, name, mx_sd_family_name(m->family));
    if (ne)
        for (int i = 0; i < 4; i++)
            if (ne[i] >= 0 && ne[i] != t->ne[i]) {
                char have[96], want[96];
                fmt_shape(have, sizeof have, t->ne);
                fmt_shape(want, sizeof want, ne);
                return mx_err_set(err, MX_EFORMAT, "%s: tensor %s has shape %s, expected %s",
                                  m->path, name, have, want);
            }
    *out = t;
    return 0;
}

/* Adds (or replaces: a separate VAE overrides the checkpoint's) a tensor under name. */
static int add_tensor(struct mx_sd_model *m, const char *name, const struct mx_tensor *t,
                      struct mx_err *err) {
    struct mx_sd_model_priv *p = m->priv;
    if (p->n == p->cap) {
        int64_t cap = p->cap ? p->cap * 2 : 1024;
        struct sd_entry *e = realloc(p->e, (size_t)cap * sizeof *e);
        if (!e)
            return mx_err_set(err, MX_ENOMEM, "%s: out of memory (tensor table)", m->path);
        p->e = e;
        p->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory (tensor table)", m->path);
    p->e[p->n].name = copy;
    p->e[p->n].seq = p->next_seq++;
    p->e[p->n].t = *t;
    p->e[p->n].t.name = copy;
    p->n++;
    p->sorted = false;
    return 0;
}

/* A widened F32 copy of a BF16 tensor (conv kernels: the conv op reads F32 or F16). */
static int widen_bf16(struct mx_sd_model *m, struct mx_tensor *t, struct mx_err *err) {
    struct mx_sd_model_priv *p = m->priv;
    int64_t n = mx_tensor_nelements(t);
    void **o = realloc(p->owned, (size_t)(p->n_owned + 1) * sizeof *o);
    if (!o)
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", m->path);
    p->owned = o;
    struct mx_buf **ob = realloc(p->owned_bufs, (size_t)(p->n_owned + 1) * sizeof *ob);
    if (!ob)
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", m->path);
    p->owned_bufs = ob;
    float *f = malloc((size_t)n * sizeof *f);
    if (!f)
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory (%lld weights)", m->path,
                          (long long)n);
    const uint16_t *src = t->data;
    for (int64_t i = 0; i < n; i++)
        f[i] = mx_bf16_to_fp32(src[i]);
    struct mx_buf *b;
    int rc = mx_buf_from_host(m->be, f, (size_t)n * sizeof *f, &b, err);
    if (rc < 0) {
        free(f);
        return rc;
    }
    p->owned[p->n_owned] = f;
    p->owned_bufs[p->n_owned++] = b;
    int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
    const char *name = t->name;
    mx_tensor_init(t, MX_TYPE_F32, ne[0], ne[1], ne[2], ne[3]);
    t->buf = b;
    t->data = f;
    t->name = name;
    return 0;
}

int mx_sd_add_st(struct mx_sd_model *m, struct mx_st *st, const char *from, const char *to,
                 struct mx_err *err) {
    struct mx_sd_model_priv *p = m->priv;
    if (p->n_files == (int)MX_ARRAY_LEN(p->files))
        return mx_err_set(err, MX_EINVAL, "%s: too many files", m->path);
    int64_t nt = mx_st_n_tensors(st);
    if (nt <= 0)
        return mx_err_set(err, MX_EFORMAT, "%s: no tensors", mx_st_path(st));
    const struct mx_st_tensor *t0 = mx_st_tensor(st, 0);
    char *base = (char *)t0->data - t0->offset;
    size_t dsize = mx_st_file_size(st) - mx_st_data_offset(st);
    struct mx_buf *buf;
    int rc = mx_buf_from_host(m->be, base, dsize ? dsize : 1, &buf, err);
    if (rc < 0)
        return rc;
    p->files[p->n_files] = st;
    p->bufs[p->n_files++] = buf;
    size_t nf = strlen(from);
    for (int64_t i = 0; i < nt; i++) {
        const struct mx_st_tensor *s = mx_st_tensor(st, i);
        if (strncmp(s->name, from, nf) != 0 || !mx_st_dtype_is_float(s->dtype))
            continue;
        int64_t ne[4];
        if (!mx_st_tensor_ne(s, ne))
            return mx_err_set(err, MX_EFORMAT, "%s: tensor %s has %d dimensions (at most 4)",
                              mx_st_path(st), s->name, s->n_dims);
        struct mx_tensor t;
        if (mx_tensor_init(&t, (enum mx_type)mx_st_dtype_to_type(s->dtype), ne[0], ne[1], ne[2],
                           ne[3]) < 0)
            return mx_err_set(err, MX_EFORMAT, "%s: tensor %s: unusable shape", mx_st_path(st),
                              s->name);
        t.buf = buf;
        t.data = (void *)s->data;
        char name[320];
        int n = snprintf(name, sizeof name, "%s%s", to, s->name + nf);
        if (n < 0 || (size_t)n >= sizeof name)
            return mx_err_set(err, MX_EFORMAT, "%s: tensor name too long", mx_st_path(st));
        t.name = name;
        if (t.type == MX_TYPE_BF16 && ne[3] > 1 && (rc = widen_bf16(m, &t, err)) < 0)
            return rc;
        if ((rc = add_tensor(m, name, &t, err)) < 0)
            return rc;
    }
    return 0;
}

/* The SD "scaled linear" schedule, computed in float32 the way stable-diffusion.cpp does when
 * the file has no alphas_cumprod (so both agree to the last bit). */
static void default_alphas(float *ac) {
    float s = sqrtf(0.00085f), e = sqrtf(0.0120f), amount = e - s, product = 1.0f;
    for (int i = 0; i < MX_SD_TRAIN_STEPS; i++) {
        float beta = s + amount * ((float)i / (MX_SD_TRAIN_STEPS - 1));
        product *= 1.0f - beta * beta;
        ac[i] = product;
    }
}

static int read_alphas(struct mx_sd_model *m, struct mx_st *st, struct mx_err *err) {
    const struct mx_st_tensor *a = mx_st_find_tensor(st, "alphas_cumprod");
    if (!a)
        return 0;
    if (a->n_elements != MX_SD_TRAIN_STEPS || (a->dtype != MX_ST_F32 && a->dtype != MX_ST_F64))
        return mx_err_set(err, MX_EFORMAT, "%s: alphas_cumprod has %lld %s values, expected %d "
                          "F32", m->path, (long long)a->n_elements, mx_st_dtype_name(a->dtype),
                          MX_SD_TRAIN_STEPS);
    for (int i = 0; i < MX_SD_TRAIN_STEPS; i++) {
        double v;
        if (a->dtype == MX_ST_F32) {
            float f;
            memcpy(&f, (const char *)a->data + 4 * i, 4);
            v = f;
        } else {
            memcpy(&v, (const char *)a->data + 8 * i, 8);
        }
        if (!(v > 0.0 && v < 1.0))
            return mx_err_set(err, MX_EFORMAT, "%s: alphas_cumprod[%d] = %g is not in (0, 1)",
                              m->path, i, v);
        m->alphas_cumprod[i] = (float)v;
    }
    m->alphas_from_file = true;
    return 0;
}

/* Family, inpainting and prediction type from the tensors now in the table. */
static int detect(struct mx_sd_model *m, const struct mx_sd_open_opts *o, struct mx_err *err) {
    const struct mx_tensor *k =
        mx_sd_weight(m, "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k"
                        ".weight");
    const struct mx_tensor *in = mx_sd_weight(m, "model.diffusion_model.input_blocks.0.0.weight");
    if (!k || !in)
        return mx_err_set(err, MX_EFORMAT, "%s: no Stable Diffusion UNet found (expected "
                          "model.diffusion_model.* tensors)", m->path);
    m->context_dim = k->ne[0];
    m->family = m->context_dim == 768    ? MX_SD_FAMILY_SD1
                : m->context_dim == 1024 ? MX_SD_FAMILY_SD2
                                         : MX_SD_FAMILY_UNKNOWN;
    if (m->family == MX_SD_FAMILY_UNKNOWN)
        return mx_err_set(err, MX_EUNSUP, "%s: UNet cross-attention width %lld is neither SD 1.x "
                          "(768) nor SD 2.x (1024); SDXL and other families are not supported "
                          "yet", m->path, (long long)m->context_dim);
    m->unet_in_channels = in->ne[2];
    if (m->unet_in_channels != 4 && m->unet_in_channels != 9)
        return mx_err_set(err, MX_EFORMAT, "%s: UNet takes %lld input channels (4, or 9 for "
                          "inpainting)", m->path, (long long)m->unet_in_channels);
    m->inpaint = m->unet_in_channels == 9;
    m->has_vae = mx_sd_weight(m, "first_stage_model.decoder.conv_out.weight") != NULL;
    m->has_text_encoder =
        mx_sd_weight(m, "cond_stage_model.transformer.text_model.embeddings.token_embedding."
                        "weight") != NULL;
    m->prediction = MX_SD_PRED_EPS;
    m->prediction_detected = true;
    if (o && o->prediction >= 0) {
        m->prediction = (enum mx_sd_pred)o->prediction;
        m->prediction_detected = false;
    }
    return 0;
}

int mx_sd_model_open(struct mx_backend *be, const char *path, const struct mx_sd_open_opts *opts,
                     struct mx_sd_model **out, struct mx_err *err) {
    *out = NULL;
    struct mx_sd_model *m = calloc(1, sizeof *m);
    if (!m || !(m->priv = calloc(1, sizeof *m->priv)) || !(m->path = strdup(path))) {
        if (m)
            free(m->priv);
        free(m);
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
    }
    m->be = be;
    default_alphas(m->alphas_cumprod);
    struct mx_st *st = NULL;
    int rc = mx_st_open(path, &st, err);
    if (rc < 0)
        goto fail;
    m->source = MX_SD_SRC_SAFETENSORS;
    if ((rc = read_alphas(m, st, err)) < 0) {
        mx_st_close(st);
        goto fail;
    }
    if ((rc = mx_sd_add_st(m, st, "", "", err)) < 0) {
        if (m->priv->n_files == 0 || m->priv->files[m->priv->n_files - 1] != st)
            mx_st_close(st);
        goto fail;
    }
    if (opts && opts->vae_path) {
        struct mx_st *v = NULL;
        if ((rc = mx_st_open(opts->vae_path, &v, err)) < 0)
            goto fail;
        /* a VAE file holds LDM names with or without the first_stage_model. prefix */
        const char *from = mx_st_find_tensor(v, "first_stage_model.decoder.conv_out.weight")
                               ? "first_stage_model."
                               : "";
        if ((rc = mx_sd_add_st(m, v, from, "first_stage_model.", err)) < 0) {
            if (m->priv->files[m->priv->n_files - 1] != v)
                mx_st_close(v);
            goto fail;
        }
    }
    sort_table(m->priv);
    for (int64_t i = 0; i < m->priv->n; i++)
        m->n_params += mx_tensor_nelements(&m->priv->e[i].t);
    if ((rc = detect(m, opts, err)) < 0)
        goto fail;
    *out = m;
    return 0;
fail:
    mx_sd_model_close(m);
    return rc;
}

void mx_sd_model_close(struct mx_sd_model *m) {
    if (!m)
        return;
    struct mx_sd_model_priv *p = m->priv;
    if (p) {
        for (int64_t i = 0; i < p->n; i++)
            free(p->e[i].name);
        free(p->e);
        for (int i = 0; i < p->n_owned; i++) {
            mx_buf_free(p->owned_bufs[i]);
            free(p->owned[i]);
        }
        free(p->owned);
        free(p->owned_bufs);
        for (int i = 0; i < p->n_files; i++) {
            mx_buf_free(p->bufs[i]);
            mx_st_close(p->files[i]);
        }
        free(p);
    }
    free((char *)m->path);
    free(m);
}
