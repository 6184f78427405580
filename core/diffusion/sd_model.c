/* sd_model.c - opening a Stable Diffusion checkpoint (see sd_model.h).
 *
 * Every source (one safetensors file, a diffusers folder, a GGUF file, a separate VAE) adds its
 * tensors to one table under canonical LDM names; the engine's blocks only ever look names up.
 * Foreign naming schemes are normalised in one place (mx_sd_add: OpenCLIP, fused in_proj, the
 * VAE's linear attention, types the ops cannot read); the readers only map their own layout.
 * The table is sorted once and searched by bisection.
 */
#include "core/diffusion/sd_model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/base/util.h"
#include "core/diffusion/sd_model_impl.h"
#include "core/format/gguf.h"
#include "core/format/safetensors.h"

struct sd_entry {
    char *name;             /* canonical name (owned) */
    int64_t seq;            /* insertion order: a later file's tensor replaces an earlier one */
    struct mx_tensor t;     /* t.name points at name */
};

/* Something the model releases at close: a file, a mapping wrapper, a widened copy. */
struct sd_res {
    void *obj;              /* owned */
    void (*close)(void *);  /* releases obj */
};

struct mx_sd_model_priv {
    struct sd_entry *e;          /* the table: n entries of cap; sorted by name when sorted */
    int64_t n, cap, next_seq;
    bool sorted;
    struct sd_res *res;          /* resources in acquisition order, released in reverse */
    int n_res, cap_res;
    int hint_pred;               /* a reader's prediction hint, or -1 */
    bool turbo_meta;             /* the file's metadata names SDXL-Turbo */
    const char *hint_from;       /* where the hint came from (static) */
};

/* The prefixes the engine reads (SDXL's second text encoder last); every other tensor is left
 * out of the table. */
#define SDXL_TE2 "cond_stage_model.1.transformer.text_model."
static const char *const k_prefixes[] = {"model.diffusion_model.", "first_stage_model.",
                                         "cond_stage_model.transformer.text_model.", SDXL_TE2};

const char *mx_sd_family_name(enum mx_sd_family f) {
    return f == MX_SD_FAMILY_SD1    ? "SD 1.x"
           : f == MX_SD_FAMILY_SD2  ? "SD 2.x"
           : f == MX_SD_FAMILY_SDXL ? "SDXL"
                                    : "unknown";
}

const char *mx_sd_pred_name(enum mx_sd_pred p) {
    return p == MX_SD_PRED_V ? "v" : "eps";
}

const char *mx_sd_source_name(enum mx_sd_source s) {
    return s == MX_SD_SRC_DIFFUSERS ? "diffusers" : s == MX_SD_SRC_GGUF ? "gguf" : "safetensors";
}

static bool starts(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool ends(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/* ---- the table ------------------------------------------------------------------------------ */

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
    if (p->n > 1)
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
    if (p->n == 0)
        return NULL;
    struct sd_entry key = {.name = (char *)name};
    return bsearch(&key, p->e, (size_t)p->n, sizeof *p->e, cmp_entry);
}

const struct mx_tensor *mx_sd_weight(const struct mx_sd_model *m, const char *name) {
    struct sd_entry *e = find_entry(m->priv, name);
    return e ? &e->t : NULL;
}

struct mx_tensor *mx_sd_weight_mut(struct mx_sd_model *m, const char *name) {
    struct sd_entry *e = find_entry(m->priv, name);
    return e ? &e->t : NULL;
}

int64_t mx_sd_n_weights(const struct mx_sd_model *m) {
    sort_table(m->priv);
    return m->priv->n;
}

const struct mx_tensor *mx_sd_weight_at(const struct mx_sd_model *m, int64_t i) {
    sort_table(m->priv);
    return i >= 0 && i < m->priv->n ? &m->priv->e[i].t : NULL;
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

int mx_sd_require(const struct mx_sd_model *m, unsigned parts, struct mx_err *err) {
    if ((parts & MX_SD_PART_UNET) && !mx_sd_weight(m, "model.diffusion_model.out.2.weight"))
        return mx_err_set(err, MX_EFORMAT, "%s: no UNet (model.diffusion_model.*)", m->path);
    if ((parts & MX_SD_PART_VAE) && !m->has_vae)
        return mx_err_set(err, MX_EFORMAT, "%s: no VAE (first_stage_model.*) in this checkpoint: "
                          "pass a VAE file (--vae FILE)", m->path);
    if ((parts & MX_SD_PART_TEXT) && !m->has_text_encoder)
        return mx_err_set(err, MX_EFORMAT, "%s: no text encoder (cond_stage_model.*) in this "
                          "checkpoint: use a complete checkpoint", m->path);
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

/* ---- resources ------------------------------------------------------------------------------ */

int mx_sd_own(struct mx_sd_model *m, void *obj, void (*close)(void *), struct mx_err *err) {
    struct mx_sd_model_priv *p = m->priv;
    if (p->n_res == p->cap_res) {
        int cap = p->cap_res ? p->cap_res * 2 : 16;
        struct sd_res *r = realloc(p->res, (size_t)cap * sizeof *r);
        if (!r) {
            close(obj);
            return mx_err_set(err, MX_ENOMEM, "%s: out of memory", m->path);
        }
        p->res = r;
        p->cap_res = cap;
    }
    p->res[p->n_res++] = (struct sd_res){obj, close};
    return 0;
}

static void close_buf(void *b) {
    mx_buf_free(b);
}

static void close_st(void *st) {
    mx_st_close(st);
}

int mx_sd_wrap(struct mx_sd_model *m, const void *base, size_t size, struct mx_buf **out,
               struct mx_err *err) {
    *out = NULL;
    if (!m->be)
        return 0;
    struct mx_buf *b;
    int rc = mx_buf_from_host(m->be, (void *)base, size ? size : 1, &b, err);
    if (rc < 0)
        return rc;
    if ((rc = mx_sd_own(m, b, close_buf, err)) < 0)
        return rc;
    *out = b;
    return 0;
}

/* ---- canonical names ------------------------------------------------------------------------ */

/* OpenCLIP (SD 2.x single files: cond_stage_model.model.*; SDXL: conditioner.embedders.1.
 * model.*) -> Hugging Face CLIP names under tm; false for what the engine never reads
 * (logit_scale, a vision tower, and text_projection unless keep_proj: SDXL pools through it).
 * Ref: stable-diffusion.cpp name_conversion.cpp convert_open_clip_to_hf_clip_name (97d2990) */
static bool open_clip_name(const char *rest, const char *tm, bool keep_proj, char *out,
                           size_t size) {
    static const char *const whole[][2] = {
        {"token_embedding.weight", "embeddings.token_embedding.weight"},
        {"positional_embedding", "embeddings.position_embedding.weight"},
        {"ln_final.weight", "final_layer_norm.weight"},
        {"ln_final.bias", "final_layer_norm.bias"},
    };
    static const char *const block[][2] = {
        {"attn.in_proj_weight", "self_attn.in_proj.weight"},
        {"attn.in_proj_bias", "self_attn.in_proj.bias"},
        {"attn.out_proj.", "self_attn.out_proj."},
        {"ln_1.", "layer_norm1."},
        {"ln_2.", "layer_norm2."},
        {"mlp.c_fc.", "mlp.fc1."},
        {"mlp.c_proj.", "mlp.fc2."},
    };
    if (keep_proj && !strcmp(rest, "text_projection"))
        return (size_t)snprintf(out, size, "%stext_projection", tm) < size;
    for (size_t i = 0; i < MX_ARRAY_LEN(whole); i++)
        if (!strcmp(rest, whole[i][0]))
            return (size_t)snprintf(out, size, "%s%s", tm, whole[i][1]) < size;
    const char *rb = "transformer.resblocks.";
    if (!starts(rest, rb))
        return false;
    const char *num = rest + strlen(rb);
    size_t nd = strspn(num, "0123456789");
    if (nd == 0 || nd > 4 || num[nd] != '.')
        return false;
    const char *suffix = num + nd + 1;
    for (size_t i = 0; i < MX_ARRAY_LEN(block); i++)
        if (starts(suffix, block[i][0]))
            return (size_t)snprintf(out, size, "%sencoder.layers.%.*s.%s%s", tm, (int)nd, num,
                                    block[i][1], suffix + strlen(block[i][0])) < size;
    return false;
}

/* The canonical name of a tensor named `name` by a reader, into out; false when the engine
 * never reads it. */
static bool canonical(const char *name, char *out, size_t size) {
    if (starts(name, "cond_stage_model.model."))
        return open_clip_name(name + strlen("cond_stage_model.model."),
                              "cond_stage_model.transformer.text_model.", false, out, size);
    /* SDXL's SGM names: CLIP-L under embedders.0 as SD 1.x's, OpenCLIP bigG under .1 */
    if (starts(name, "conditioner.embedders.0.transformer.text_model.")) {
        char tmp[320];
        if ((size_t)snprintf(tmp, sizeof tmp, "cond_stage_model.%s",
                             name + strlen("conditioner.embedders.0.")) >= sizeof tmp)
            return false;
        return canonical(tmp, out, size);
    }
    if (starts(name, "conditioner.embedders.1.model."))
        return open_clip_name(name + strlen("conditioner.embedders.1.model."), SDXL_TE2, true,
                              out, size);
    if (!strcmp(name, SDXL_TE2 "text_projection")) /* already canonical (sd.cpp GGUF) */
        return (size_t)snprintf(out, size, "%s", name) < size;
    bool keep = false;
    for (size_t i = 0; i < MX_ARRAY_LEN(k_prefixes); i++)
        keep |= starts(name, k_prefixes[i]);
    if (!keep || ends(name, "position_ids") || ends(name, "text_projection") ||
        ends(name, "text_projection.weight"))
        return false;
    /* VAE files also carry their training loss (loss.discriminator.*, loss.logvar) and EMA
     * bookkeeping: only the autoencoder's own modules are the VAE */
    static const char *const vae_parts[] = {"encoder.", "decoder.", "quant_conv.",
                                            "post_quant_conv."};
    if (starts(name, "first_stage_model.")) {
        bool part = false;
        for (size_t i = 0; i < MX_ARRAY_LEN(vae_parts); i++)
            part |= starts(name + strlen("first_stage_model."), vae_parts[i]);
        if (!part)
            return false;
    }
    return (size_t)snprintf(out, size, "%s", name) < size;
}

/* The VAE's mid-block attention projections: 1x1 convs in LDM files, linears elsewhere. */
static bool vae_attn_proj(const char *name) {
    if (!starts(name, "first_stage_model.") || !strstr(name, ".mid.attn_1."))
        return false;
    const char *leaf = strstr(name, ".mid.attn_1.") + strlen(".mid.attn_1.");
    return !strcmp(leaf, "q.weight") || !strcmp(leaf, "k.weight") || !strcmp(leaf, "v.weight") ||
           !strcmp(leaf, "proj_out.weight");
}

/* An F32 copy of t's values (host bytes at src) that the model owns; t then points at it. */
static int widen(struct mx_sd_model *m, struct mx_tensor *t, const void *src, const char *file,
                 struct mx_err *err) {
    const struct mx_type_traits *tr = mx_type_traits(t->type);
    if (!tr || !tr->to_float)
        return mx_err_set(err, MX_EUNSUP, "%s: tensor %s: type %s cannot be converted to F32",
                          file, t->name, mx_type_name(t->type));
    int64_t n = mx_tensor_nelements(t);
    size_t bytes;
    if (!mx_mul_size((size_t)n, sizeof(float), &bytes))
        return mx_err_set(err, MX_EFORMAT, "%s: tensor %s too large", file, t->name);
    float *f = malloc(bytes ? bytes : 1);
    if (!f)
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory (%lld weights of %s)", file,
                          (long long)n, t->name);
    int rc = mx_sd_own(m, f, free, err);
    if (rc < 0)
        return rc;
    tr->to_float(src, f, n);
    struct mx_buf *b;
    if ((rc = mx_sd_wrap(m, f, bytes, &b, err)) < 0)
        return rc;
    int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
    const char *name = t->name;
    mx_tensor_init(t, MX_TYPE_F32, ne[0], ne[1], ne[2], ne[3]);
    t->buf = b;
    t->data = b ? b->base : (void *)f;
    t->name = name;
    return 0;
}

/* Adds the q/k/v thirds of a fused in_proj weight [w, 3w] or bias [3w] as row views. */
static int split_in_proj(struct mx_sd_model *m, const char *name, const struct mx_tensor *t,
                         const char *file, struct mx_err *err) {
    bool bias = ends(name, ".bias");
    int64_t n3 = bias ? t->ne[0] : t->ne[1];
    if (n3 % 3 != 0 || t->ne[2] != 1 || t->ne[3] != 1 || (bias && t->ne[1] != 1))
        return mx_err_set(err, MX_EFORMAT, "%s: tensor %s has shape [%lld, %lld], not a fused "
                          "q/k/v projection", file, name, (long long)t->ne[0],
                          (long long)t->ne[1]);
    struct mx_tensor rows = *t;
    if (bias && mx_tensor_reshape(t, n3 / 3, 3, 1, 1, &rows) < 0)
        return mx_err_set(err, MX_EFORMAT, "%s: tensor %s: bias of %lld cannot be split in 3",
                          file, name, (long long)n3);
    size_t base = strlen(name) - strlen(bias ? "in_proj.bias" : "in_proj.weight");
    static const char *const qkv[3] = {"q_proj", "k_proj", "v_proj"};
    for (int i = 0; i < 3; i++) {
        struct mx_tensor v;
        if (mx_tensor_view_rows(&rows, i * (bias ? 1 : n3 / 3), bias ? 1 : n3 / 3, &v) < 0)
            return mx_err_set(err, MX_EFORMAT, "%s: tensor %s cannot be split", file, name);
        if (bias)
            mx_tensor_reshape(&v, n3 / 3, 1, 1, 1, &v);
        char out[320];
        snprintf(out, sizeof out, "%.*s%s.%s", (int)base, name, qkv[i], bias ? "bias" : "weight");
        int rc = add_tensor(m, out, &v, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int mx_sd_add(struct mx_sd_model *m, const char *name, const struct mx_sd_src *s,
              struct mx_err *err) {
    char cname[320];
    if (!strcmp(name, "v_pred"))
        mx_sd_hint_prediction(m, MX_SD_PRED_V, "a v_pred tensor in the file");
    if (!canonical(name, cname, sizeof cname))
        return 0;
    for (int i = 0; i < 4; i++) /* mx_tensor_init would read a 0 as 1 */
        if (s->ne[i] <= 0)
            return mx_err_set(err, MX_EFORMAT, "%s: tensor %s has no elements (dimension %d is "
                              "%lld)", s->file, name, i, (long long)s->ne[i]);
    struct mx_tensor t;
    if (mx_tensor_init(&t, (enum mx_type)s->type, s->ne[0], s->ne[1], s->ne[2], s->ne[3]) < 0)
        return mx_err_set(err, MX_EFORMAT, "%s: tensor %s: unusable shape or type %s", s->file,
                          name, mx_type_name(s->type));
    t.buf = s->buf;
    t.data = s->buf ? (char *)s->buf->base + s->offset : (void *)s->host;
    t.name = cname;
    const struct mx_type_traits *tr = mx_type_traits(t.type);
    if (!tr || !tr->to_float)
        return mx_err_set(err, MX_EFORMAT, "%s: tensor %s has type %s; Stable Diffusion weights "
                          "must be floats (F32, F16, BF16) or GGUF quants", s->file, name,
                          mx_type_name(t.type));
    bool attn = vae_attn_proj(cname) && t.ne[2] == 1 && t.ne[3] == 1 && t.ne[1] > 1;
    bool vector = t.ne[1] == 1 && t.ne[2] == 1 && t.ne[3] == 1;
    bool conv = t.ne[2] * t.ne[3] > 1 || attn;
    /* The conv op reads F32/F16 kernels, the norms F32/F16 vectors: quantized ones (sd.cpp
     * quantizes any tensor whose rows are a block multiple) and BF16 kernels become F32. */
    bool widen_it = (tr->is_quantized && (vector || conv)) || (t.type == MX_TYPE_BF16 && conv);
    int rc;
    if (widen_it && (rc = widen(m, &t, s->host, s->file, err)) < 0)
        return rc;
    if (attn) /* a linear [out, in] holds the same bytes as the LDM 1x1 conv [out, in, 1, 1] */
        mx_tensor_reshape(&t, 1, 1, t.ne[0], t.ne[1], &t);
    t.name = cname;
    if (ends(cname, ".self_attn.in_proj.weight") || ends(cname, ".self_attn.in_proj.bias"))
        return split_in_proj(m, cname, &t, s->file, err);
    return add_tensor(m, cname, &t, err);
}

int mx_sd_add_st(struct mx_sd_model *m, struct mx_st *st, const char *from, const char *to,
                 struct mx_err *err) {
    int rc = mx_sd_own(m, st, close_st, err);
    if (rc < 0)
        return rc;
    int64_t nt = mx_st_n_tensors(st);
    struct mx_buf *buf;
    if ((rc = mx_sd_wrap_st(m, st, &buf, err)) < 0)
        return rc;
    size_t nf = strlen(from);
    for (int64_t i = 0; i < nt; i++) {
        const struct mx_st_tensor *s = mx_st_tensor(st, i);
        if (strncmp(s->name, from, nf) != 0)
            continue;
        char name[320];
        int n = snprintf(name, sizeof name, "%s%s", to, s->name + nf);
        if (n < 0 || (size_t)n >= sizeof name)
            return mx_err_set(err, MX_EFORMAT, "%s: tensor name too long", mx_st_path(st));
        if (!strcmp(s->name, "v_pred"))
            mx_sd_hint_prediction(m, MX_SD_PRED_V, "a v_pred tensor in the file");
        char cname[320];
        if (!canonical(name, cname, sizeof cname))
            continue;
        if ((rc = mx_sd_add_st_tensor(m, st, s, buf, name, err)) < 0)
            return rc;
    }
    return 0;
}

int mx_sd_wrap_st(struct mx_sd_model *m, const struct mx_st *st, struct mx_buf **out,
                  struct mx_err *err) {
    if (mx_st_n_tensors(st) <= 0)
        return mx_err_set(err, MX_EFORMAT, "%s: no tensors", mx_st_path(st));
    const struct mx_st_tensor *t0 = mx_st_tensor(st, 0);
    return mx_sd_wrap(m, (const char *)t0->data - t0->offset,
                      mx_st_file_size(st) - mx_st_data_offset(st), out, err);
}

int mx_sd_add_st_tensor(struct mx_sd_model *m, const struct mx_st *st,
                        const struct mx_st_tensor *s, struct mx_buf *buf, const char *name,
                        struct mx_err *err) {
    if (!mx_st_dtype_is_float(s->dtype))
        return mx_err_set(err, MX_EFORMAT, "%s: tensor %s has dtype %s; Stable Diffusion "
                          "weights must be F32, F16 or BF16", mx_st_path(st), s->name,
                          mx_st_dtype_name(s->dtype));
    struct mx_sd_src src = {.file = mx_st_path(st), .type = mx_st_dtype_to_type(s->dtype),
                            .host = s->data, .buf = buf, .offset = s->offset};
    if (!mx_st_tensor_ne(s, src.ne))
        return mx_err_set(err, MX_EFORMAT, "%s: tensor %s has %d dimensions (at most 4)",
                          mx_st_path(st), s->name, s->n_dims);
    return mx_sd_add(m, name, &src, err);
}

/* ---- schedule and prediction ---------------------------------------------------------------- */

void mx_sd_betas_schedule(float *ac, float b0, float b1, bool scaled) {
    float s = scaled ? sqrtf(b0) : b0, e = scaled ? sqrtf(b1) : b1, amount = e - s;
    float product = 1.0f;
    for (int i = 0; i < MX_SD_TRAIN_STEPS; i++) {
        float beta = s + amount * ((float)i / (MX_SD_TRAIN_STEPS - 1));
        product *= 1.0f - (scaled ? beta * beta : beta);
        ac[i] = product;
    }
}

int mx_sd_set_alphas(struct mx_sd_model *m, const void *data, int st_dtype, int64_t n,
                     const char *source, struct mx_err *err) {
    if (n != MX_SD_TRAIN_STEPS || (st_dtype != MX_ST_F32 && st_dtype != MX_ST_F64))
        return mx_err_set(err, MX_EFORMAT, "%s: alphas_cumprod has %lld %s values, expected %d "
                          "F32", m->path, (long long)n, mx_st_dtype_name(st_dtype),
                          MX_SD_TRAIN_STEPS);
    float ac[MX_SD_TRAIN_STEPS];
    for (int i = 0; i < MX_SD_TRAIN_STEPS; i++) {
        double v;
        if (st_dtype == MX_ST_F32) {
            float f;
            memcpy(&f, (const char *)data + 4 * i, 4);
            v = f;
        } else {
            memcpy(&v, (const char *)data + 8 * i, 8);
        }
        if (!(v > 0.0 && v < 1.0))
            return mx_err_set(err, MX_EFORMAT, "%s: alphas_cumprod[%d] = %g is not in (0, 1)",
                              m->path, i, v);
        ac[i] = (float)v;
    }
    memcpy(m->alphas_cumprod, ac, sizeof ac);
    m->alphas_from_file = true;
    m->schedule_source = source;
    return 0;
}

void mx_sd_hint_prediction(struct mx_sd_model *m, enum mx_sd_pred p, const char *source) {
    m->priv->hint_pred = (int)p;
    m->priv->hint_from = source;
}

/* Prediction type from a safetensors file's __metadata__ (see sd_model.h). */
static int meta_prediction(struct mx_sd_model *m, const struct mx_st *st, struct mx_err *err) {
    static const char *const keys[] = {"modelspec.prediction_type", "prediction_type",
                                       "parameterization"};
    for (size_t i = 0; i < MX_ARRAY_LEN(keys); i++) {
        const char *v = mx_st_get_meta(st, keys[i]);
        if (!v)
            continue;
        if (!strcmp(v, "epsilon") || !strcmp(v, "eps"))
            mx_sd_hint_prediction(m, MX_SD_PRED_EPS, i == 0 ? "metadata modelspec.prediction_"
                                  "type" : i == 1 ? "metadata prediction_type"
                                                  : "metadata parameterization");
        else if (!strcmp(v, "v") || !strcmp(v, "v_prediction") || !strcmp(v, "v-prediction"))
            mx_sd_hint_prediction(m, MX_SD_PRED_V, i == 0 ? "metadata modelspec.prediction_type"
                                  : i == 1 ? "metadata prediction_type"
                                           : "metadata parameterization");
        else
            return mx_err_set(err, MX_EUNSUP, "%s: metadata %s = \"%.40s\" is not a prediction "
                              "type mixel knows (epsilon, v)", m->path, keys[i], v);
        return 0;
    }
    return 0;
}

/* Prediction type from the LDM config A1111 reads beside a checkpoint (<stem>.yaml, e.g.
 * v2-inference-v.yaml saved as 768-v-ema.yaml): its model.params.parameterization, "v" for
 * v-models ("eps" or absent: eps). A plain text scan for the one key; a missing or unreadable
 * file is no error. */
static void sidecar_prediction(struct mx_sd_model *m, const char *path) {
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash))
        return;
    char yaml[4096];
    if ((size_t)snprintf(yaml, sizeof yaml, "%.*s.yaml", (int)(dot - path), path) >= sizeof yaml)
        return;
    FILE *f = fopen(yaml, "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *k = line + strspn(line, " \t");
        if (strncmp(k, "parameterization:", 17) != 0)
            continue;
        char *v = k + 17;
        v += strspn(v, " \t\"'");
        size_t n = strcspn(v, " \t\"'\r\n#");
        if (n == 1 && v[0] == 'v')
            mx_sd_hint_prediction(m, MX_SD_PRED_V, "parameterization in the .yaml beside it");
        else if (n == 3 && !strncmp(v, "eps", 3))
            mx_sd_hint_prediction(m, MX_SD_PRED_EPS, "parameterization in the .yaml beside it");
        break;
    }
    fclose(f);
}

/* ---- checks --------------------------------------------------------------------------------- */

/* Family, inpainting, prediction type and the consistency of the parts in the table. */
/* The first input block with a transformer (SD: 1; SDXL has none at the first level: 4), or
 * -1. */
static int first_transformer(const struct mx_sd_model *m) {
    char name[128];
    for (int i = 1; i < 16; i++) {
        snprintf(name, sizeof name, "model.diffusion_model.input_blocks.%d.1.transformer_blocks."
                 "0.attn2.to_k.weight", i);
        if (mx_sd_weight(m, name))
            return i;
    }
    return -1;
}

/* Whether s[0, n) contains "turbo" in any case (SDXL-Turbo's file and model names). */
static bool has_word_turbo(const char *s, size_t n) {
    for (size_t i = 0; i + 5 <= n; i++)
        if (!strncasecmp(s + i, "turbo", 5))
            return true;
    return false;
}

/* SDXL's parts: the label embedding's width, and the two text encoders' widths adding up to
 * the context (a checkpoint with one of them only has no usable text encoder). */
static int detect_sdxl(struct mx_sd_model *m, const struct mx_tensor *label,
                       struct mx_err *err) {
    m->family = MX_SD_FAMILY_SDXL;
    m->adm_dim = label->ne[0];
    const char *base = strrchr(m->path, '/') ? strrchr(m->path, '/') + 1 : m->path;
    m->turbo = m->priv->turbo_meta || has_word_turbo(base, strlen(base));
    const struct mx_tensor *l =
        mx_sd_weight(m, "cond_stage_model.transformer.text_model.embeddings.token_embedding."
                        "weight");
    const struct mx_tensor *g = mx_sd_weight(m, SDXL_TE2 "embeddings.token_embedding.weight");
    const struct mx_tensor *p = mx_sd_weight(m, SDXL_TE2 "text_projection");
    if (!l && !g && m->context_dim == 1280)
        return mx_err_set(err, MX_EUNSUP, "%s: an SDXL refiner (OpenCLIP bigG context only, "
                          "label_emb of %lld): the refiner is not supported, only base models",
                          m->path, (long long)m->adm_dim);
    m->has_text_encoder = l && g && p;
    if ((l || g) && !m->has_text_encoder)
        return mx_err_set(err, MX_EFORMAT, "%s: SDXL checkpoint with an incomplete text encoder "
                          "(CLIP-L %s, OpenCLIP bigG %s, text_projection %s)", m->path,
                          l ? "present" : "missing", g ? "present" : "missing",
                          p ? "present" : "missing");
    if (m->has_text_encoder && l->ne[0] + g->ne[0] != m->context_dim)
        return mx_err_set(err, MX_EFORMAT, "%s: the SDXL text encoders are %lld + %lld wide but "
                          "the UNet attends to %lld", m->path, (long long)l->ne[0],
                          (long long)g->ne[0], (long long)m->context_dim);
    if (m->has_text_encoder && (p->ne[1] != g->ne[0] || p->ne[0] + 6 * 256 != m->adm_dim))
        return mx_err_set(err, MX_EFORMAT, "%s: text_projection [%lld, %lld] does not feed the "
                          "UNet's label embedding of %lld (pooled + 6 x 256)", m->path,
                          (long long)p->ne[0], (long long)p->ne[1], (long long)m->adm_dim);
    return 0;
}

static int detect(struct mx_sd_model *m, const struct mx_sd_open_opts *o, struct mx_err *err) {
    char kname[128];
    snprintf(kname, sizeof kname, "model.diffusion_model.input_blocks.%d.1.transformer_blocks.0."
             "attn2.to_k.weight", first_transformer(m));
    const struct mx_tensor *k = mx_sd_weight(m, kname);
    const struct mx_tensor *in = mx_sd_weight(m, "model.diffusion_model.input_blocks.0.0.weight");
    if (!k || !in)
        return mx_err_set(err, MX_EFORMAT, "%s: no Stable Diffusion UNet found (expected "
                          "model.diffusion_model.* tensors)", m->path);
    m->context_dim = k->ne[0];
    /* The family from the UNet's structure, as the LDM configs differ: SD 1.x projects into its
     * transformers with 1x1 convs, SD 2.x with linears; SDXL (also linear) adds a label
     * embedding and attends to 2048-wide text. Real checkpoints also say it by the context width
     * (768 / 1024); small test models of either shape have other widths. */
    snprintf(kname, sizeof kname, "model.diffusion_model.input_blocks.%d.1.proj_in.weight",
             first_transformer(m));
    const struct mx_tensor *pin = mx_sd_weight(m, kname);
    bool linear_proj = pin && pin->ne[2] == 1 && pin->ne[3] == 1;
    const struct mx_tensor *label = mx_sd_weight(m, "model.diffusion_model.label_emb.0.0.weight");
    if (!label && m->context_dim == 2048)
        return mx_err_set(err, MX_EUNSUP, "%s: a UNet with a 2048-wide context but no label "
                          "embedding (label_emb.0.0.weight): not an SDXL base model mixel knows",
                          m->path);
    m->family = m->context_dim == 768    ? MX_SD_FAMILY_SD1
                : m->context_dim == 1024 ? MX_SD_FAMILY_SD2
                : !pin                   ? MX_SD_FAMILY_UNKNOWN
                : linear_proj            ? MX_SD_FAMILY_SD2
                                         : MX_SD_FAMILY_SD1;
    if (m->family == MX_SD_FAMILY_UNKNOWN && !label) /* SDXL: detect_sdxl below */
        return mx_err_set(err, MX_EUNSUP, "%s: UNet cross-attention width %lld is neither SD 1.x "
                          "(768) nor SD 2.x (1024); other families are not supported yet",
                          m->path, (long long)m->context_dim);
    m->unet_in_channels = in->ne[2];
    if (m->unet_in_channels != 4 && m->unet_in_channels != 9)
        return mx_err_set(err, MX_EFORMAT, "%s: UNet takes %lld input channels (4, or 9 for "
                          "inpainting)", m->path, (long long)m->unet_in_channels);
    m->inpaint = m->unet_in_channels == 9;
    if (label && m->inpaint)
        return mx_err_set(err, MX_EUNSUP, "%s: SDXL inpainting UNets (9 input channels) are not "
                          "supported", m->path);
    const struct mx_tensor *dec = mx_sd_weight(m, "first_stage_model.decoder.conv_in.weight");
    m->has_vae = mx_sd_weight(m, "first_stage_model.decoder.conv_out.weight") != NULL && dec;
    if (m->has_vae && dec->ne[2] != 4)
        return mx_err_set(err, MX_EFORMAT, "%s: the VAE decodes %lld latent channels; SD 1.x/2.x "
                          "latents have 4 (a VAE of another family, e.g. SD3/Flux?)", m->path,
                          (long long)dec->ne[2]);
    const struct mx_tensor *pq = mx_sd_weight(m, "first_stage_model.post_quant_conv.weight");
    if (m->has_vae && pq && (pq->ne[2] != 4 || pq->ne[3] != 4))
        return mx_err_set(err, MX_EFORMAT, "%s: VAE post_quant_conv maps %lld -> %lld channels, "
                          "expected 4 -> 4", m->path, (long long)pq->ne[2], (long long)pq->ne[3]);
    const struct mx_tensor *tok =
        mx_sd_weight(m, "cond_stage_model.transformer.text_model.embeddings.token_embedding."
                        "weight");
    m->has_text_encoder = tok != NULL;
    if (label) {
        int rc = detect_sdxl(m, label, err);
        if (rc < 0)
            return rc;
    } else if (tok && tok->ne[0] != m->context_dim)
        return mx_err_set(err, MX_EFORMAT, "%s: the text encoder is %lld wide but the UNet "
                          "attends to %lld (text encoder and UNet of different families)",
                          m->path, (long long)tok->ne[0], (long long)m->context_dim);
    m->prediction = MX_SD_PRED_EPS;
    m->prediction_detected = false;
    m->prediction_source = "assumed: not detectable from tensor names; --prediction v for "
                           "v-models";
    if (m->priv->hint_pred >= 0) {
        m->prediction = (enum mx_sd_pred)m->priv->hint_pred;
        m->prediction_detected = true;
        m->prediction_source = m->priv->hint_from;
    }
    if (o && o->prediction >= 0) {
        m->prediction = (enum mx_sd_pred)o->prediction;
        m->prediction_detected = false;
        m->prediction_source = "--prediction";
    }
    return 0;
}

/* ---- opening -------------------------------------------------------------------------------- */

/* A single safetensors file (owned from here on, also on failure). */
static int load_st(struct mx_sd_model *m, struct mx_st *st, struct mx_err *err) {
    m->source = MX_SD_SRC_SAFETENSORS;
    const struct mx_st_tensor *a = mx_st_find_tensor(st, "alphas_cumprod");
    int rc = 0;
    if (a)
        rc = mx_sd_set_alphas(m, a->data, a->dtype, a->n_elements, "alphas_cumprod in the file",
                              err);
    if (rc == 0)
        rc = meta_prediction(m, st, err);
    static const char *const turbo_keys[] = {"modelspec.title", "modelspec.architecture"};
    for (size_t i = 0; i < MX_ARRAY_LEN(turbo_keys); i++) {
        const char *v = mx_st_get_meta(st, turbo_keys[i]);
        m->priv->turbo_meta |= v && has_word_turbo(v, strlen(v));
    }
    if (rc < 0) {
        mx_st_close(st);
        return rc;
    }
    return mx_sd_add_st(m, st, "", "", err);
}

/* A separate VAE file: LDM names with or without first_stage_model., or diffusers names. */
static int load_vae(struct mx_sd_model *m, const char *path, struct mx_err *err) {
    struct mx_st *v = NULL;
    int rc = mx_st_open(path, &v, err);
    if (rc < 0)
        return rc;
    bool diffusers = mx_st_find_tensor(v, "decoder.up_blocks.0.resnets.0.conv1.weight") != NULL;
    bool prefixed = mx_st_find_tensor(v, "first_stage_model.decoder.conv_out.weight") != NULL;
    if (!diffusers && !prefixed && !mx_st_find_tensor(v, "decoder.conv_out.weight")) {
        mx_st_close(v);
        return mx_err_set(err, MX_EFORMAT, "%s: no VAE decoder found (decoder.conv_out.weight): "
                          "not a VAE file?", path);
    }
    if (!diffusers)
        return mx_sd_add_st(m, v, prefixed ? "first_stage_model." : "", "first_stage_model.",
                            err);
    if ((rc = mx_sd_own(m, v, close_st, err)) < 0)
        return rc;
    return mx_sd_add_diffusers(m, v, 1, 0, (const bool[8]){false}, err);
}

static int model_new(struct mx_backend *be, const char *path, struct mx_sd_model **out,
                     struct mx_err *err) {
    struct mx_sd_model *m = calloc(1, sizeof *m);
    if (!m || !(m->priv = calloc(1, sizeof *m->priv)) || !(m->path = strdup(path))) {
        if (m)
            free(m->priv);
        free(m);
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
    }
    m->be = be;
    m->priv->hint_pred = -1;
    mx_sd_betas_schedule(m->alphas_cumprod, 0.00085f, 0.0120f, true);
    m->schedule_source = "default (scaled_linear 0.00085..0.012)";
    *out = m;
    return 0;
}

/* After the reader: the separate VAE, counts, detection. Closes m on failure. */
static int finish(struct mx_sd_model *m, const struct mx_sd_open_opts *opts,
                  struct mx_sd_model **out, struct mx_err *err) {
    int rc = 0;
    if (opts && opts->vae_path && (rc = load_vae(m, opts->vae_path, err)) < 0)
        goto fail;
    sort_table(m->priv);
    for (int64_t i = 0; i < m->priv->n; i++) {
        const struct sd_entry *e = &m->priv->e[i];
        int64_t n = mx_tensor_nelements(&e->t);
        m->n_params += n;
        if (starts(e->name, "model.diffusion_model."))
            m->n_params_unet += n;
        else if (starts(e->name, "first_stage_model."))
            m->n_params_vae += n;
        else
            m->n_params_text += n;
    }
    if ((rc = detect(m, opts, err)) < 0)
        goto fail;
    *out = m;
    return 0;
fail:
    mx_sd_model_close(m);
    return rc;
}

static const char gguf_magic[4] = {'G', 'G', 'U', 'F'};

/* Tensor names in messages come from the file: control bytes become '?' so the message stays
 * one inert line. Returns rc. */
static int clean_msg(struct mx_err *err, int rc) {
    if (err)
        for (char *c = err->msg; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                *c = '?';
    return rc;
}

int mx_sd_model_open(struct mx_backend *be, const char *path, const struct mx_sd_open_opts *opts,
                     struct mx_sd_model **out, struct mx_err *err) {
    *out = NULL;
    struct mx_sd_model *m;
    int rc = model_new(be, path, &m, err);
    if (rc < 0)
        return rc;
    struct stat sb;
    char magic[4] = {0};
    FILE *f;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        m->source = MX_SD_SRC_DIFFUSERS;
        rc = mx_sd_load_diffusers(m, path, err);
    } else if ((f = fopen(path, "rb")) && fread(magic, 1, 4, f) == 4 &&
               !memcmp(magic, gguf_magic, 4)) {
        fclose(f);
        f = NULL;
        struct mx_gguf *g = NULL;
        m->source = MX_SD_SRC_GGUF;
        if ((rc = mx_gguf_open(path, &g, err)) == 0)
            rc = mx_sd_load_gguf(m, g, err);
    } else {
        if (f)
            fclose(f);
        struct mx_st *st = NULL;
        if ((rc = mx_st_open(path, &st, err)) == 0)
            rc = load_st(m, st, err);
    }
    if (rc < 0) {
        mx_sd_model_close(m);
        return clean_msg(err, rc);
    }
    if (m->source != MX_SD_SRC_DIFFUSERS && m->priv->hint_pred < 0)
        sidecar_prediction(m, path);
    return clean_msg(err, finish(m, opts, out, err));
}

int mx_sd_model_open_mem(struct mx_backend *be, const void *buf, size_t size, const char *name,
                         const struct mx_sd_open_opts *opts, struct mx_sd_model **out,
                         struct mx_err *err) {
    *out = NULL;
    struct mx_sd_model *m;
    int rc = model_new(be, name, &m, err);
    if (rc < 0)
        return rc;
    if (size >= 4 && !memcmp(buf, gguf_magic, 4)) {
        struct mx_gguf *g = NULL;
        m->source = MX_SD_SRC_GGUF;
        if ((rc = mx_gguf_open_mem(buf, size, name, &g, err)) == 0)
            rc = mx_sd_load_gguf(m, g, err);
    } else {
        struct mx_st *st = NULL;
        if ((rc = mx_st_open_mem(buf, size, name, &st, err)) == 0)
            rc = load_st(m, st, err);
    }
    if (rc < 0) {
        mx_sd_model_close(m);
        return clean_msg(err, rc);
    }
    return clean_msg(err, finish(m, opts, out, err));
}

void mx_sd_model_close(struct mx_sd_model *m) {
    if (!m)
        return;
    struct mx_sd_model_priv *p = m->priv;
    if (p) {
        for (int64_t i = 0; i < p->n; i++)
            free(p->e[i].name);
        free(p->e);
        /* reverse order: a buffer is freed before the memory it wraps */
        for (int i = p->n_res - 1; i >= 0; i--)
            p->res[i].close(p->res[i].obj);
        free(p->res);
        free(p);
    }
    free((char *)m->path);
    free(m);
}
