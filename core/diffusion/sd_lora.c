/* sd_lora.c - LoRA files for Stable Diffusion: reading, name mapping, merging into working
 * copies (see sd_lora.h). */
#include "core/diffusion/sd_lora.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/quant.h"
#include "core/base/util.h"
#include "core/diffusion/sd_model_impl.h"
#include "core/format/safetensors.h"

#define UNET_PFX "model.diffusion_model."
#define TE_PFX "cond_stage_model.transformer."
#define TE2_PFX "cond_stage_model.1.transformer." /* SDXL's OpenCLIP bigG (sd_model.c) */

/* One adapted weight: delta = scale * up * down, flattened to a matrix [n_out][n_in]. */
struct lora_mod {
    char *target;    /* the checkpoint's canonical weight name (owned) */
    bool te;         /* a text-encoder weight (w_te applies), else UNet (w_unet) */
    int64_t rank;    /* inner dimension of up * down */
    int64_t n_out;   /* rows of the weight (output channels) */
    int64_t n_in;    /* elements per row (input channels x kernel) */
    float *up;       /* [n_out][rank] (owned) */
    float *down;     /* [rank][n_in] (owned) */
    float scale;     /* alpha / rank, or 1 without alpha */
};

struct mx_sd_lora {
    char *path;             /* as opened (owned), for messages */
    struct lora_mod *mods;  /* [n] (owned) */
    int n;
};

/* One weight the state changed: the table tensor, what it was, and the copy now in it. */
struct lora_slot {
    struct mx_tensor *t;    /* the model's table entry (borrowed) */
    struct mx_tensor orig;  /* its stored value, put back on restore */
    struct mx_buf *buf;     /* the copy's backend wrapper (NULL without a backend) */
    void *copy;             /* the working copy's bytes (owned) */
    size_t bytes;           /* of copy */
};

struct mx_sd_lora_state {
    struct lora_slot *slots; /* [n] */
    int n, cap;
};

/* ---- reading -------------------------------------------------------------------------------- */

/* A module's pieces while the file is read. */
struct mod_parts {
    char *key;                       /* module prefix in the file (owned) */
    const struct mx_st_tensor *up, *down, *alpha;
};

enum part_kind { PART_UP, PART_DOWN, PART_ALPHA };

/* Splits a tensor name into module key length and part; false when no LoRA suffix fits. */
static bool split_name(const char *name, size_t *key_len, enum part_kind *kind) {
    static const struct {
        const char *suffix;
        enum part_kind kind;
    } k[] = {
        {".lora_down.weight", PART_DOWN}, {".lora_up.weight", PART_UP},
        {".lora_A.weight", PART_DOWN},    {".lora_B.weight", PART_UP},
        {".lora.down.weight", PART_DOWN}, {".lora.up.weight", PART_UP},
        {"_lora.down.weight", PART_DOWN}, {"_lora.up.weight", PART_UP},
        {".alpha", PART_ALPHA},
    };
    size_t n = strlen(name);
    for (size_t i = 0; i < MX_ARRAY_LEN(k); i++) {
        size_t s = strlen(k[i].suffix);
        if (n > s && !strcmp(name + n - s, k[i].suffix)) {
            *key_len = n - s;
            *kind = k[i].kind;
            return true;
        }
    }
    return false;
}

/* Whether a and b are equal when '.' and '_' count as the same character. */
static bool eq_us(const char *a, const char *b) {
    for (;; a++, b++) {
        char x = *a == '.' ? '_' : *a, y = *b == '.' ? '_' : *b;
        if (x != y)
            return false;
        if (!x)
            return true;
    }
}

/* The canonical weight whose name, less prefix and ".weight", equals key up to '.'/'_'; NULL. */
static const char *find_us(const struct mx_sd_model *m, const char *prefix, const char *key) {
    size_t np = strlen(prefix);
    char rest[256];
    for (int64_t i = 0; i < mx_sd_n_weights(m); i++) {
        const struct mx_tensor *t = mx_sd_weight_at(m, i);
        if (!t || !t->name || strncmp(t->name, prefix, np) != 0)
            continue;
        size_t n = strlen(t->name + np);
        if (n <= 7 || n - 7 >= sizeof rest || strcmp(t->name + np + n - 7, ".weight") != 0)
            continue;
        memcpy(rest, t->name + np, n - 7);
        rest[n - 7] = '\0';
        if (eq_us(rest, key))
            return t->name;
    }
    return NULL;
}

/* kohya's underscored diffusers UNet name -> the dotted one: the words that hold a '_'
 * themselves are joined back. false when out is too small. */
static bool dot_diffusers(const char *key, char *out, size_t size) {
    static const char *const words[] = {
        "down_blocks", "up_blocks", "mid_block", "transformer_blocks", "to_q", "to_k", "to_v",
        "to_out", "proj_in", "proj_out", "conv_shortcut", "time_emb_proj", "conv_in",
        "conv_out", "time_embedding", "linear_1", "linear_2", "conv_norm_out", "ff_net",
        "add_embedding",
    };
    size_t o = 0;
    const char *s = key;
    while (*s) {
        size_t w = 0;
        for (size_t i = 0; i < MX_ARRAY_LEN(words); i++) {
            size_t n = strlen(words[i]);
            if (!strncmp(s, words[i], n) && (s[n] == '_' || s[n] == '\0') && n > w)
                w = n;
        }
        if (!w)
            w = strcspn(s, "_");
        if (o + w + 2 > size)
            return false;
        memcpy(out + o, s, w);
        o += w;
        s += w;
        if (*s == '_') {
            out[o++] = '.';
            s++;
        }
    }
    out[o] = '\0';
    /* "ff_net" was kept whole for the scan; diffusers writes ff.net */
    char *ff = strstr(out, "ff_net");
    if (ff)
        ff[2] = '.';
    return true;
}

/* Whether up block i of m's UNet has attentions (output_blocks.3i.1 is a transformer). */
static void up_attn(const struct mx_sd_model *m, bool out[8]) {
    char name[128];
    for (int i = 0; i < 8; i++) {
        snprintf(name, sizeof name, UNET_PFX "output_blocks.%d.1.proj_in.weight", 3 * i);
        out[i] = mx_sd_weight(m, name) != NULL;
    }
}

/* A diffusers UNet name (dotted, no "unet." and no ".weight") -> the canonical weight name. */
static const char *from_diffusers_unet(const struct mx_sd_model *m, const char *dotted,
                                       char *buf, size_t size) {
    bool ua[8];
    up_attn(m, ua);
    char in[320];
    if ((size_t)snprintf(in, sizeof in, "%s.weight", dotted) >= sizeof in)
        return NULL;
    size_t np = strlen(UNET_PFX);
    if (size <= np || !mx_sd_diffusers_unet_name(in, 2, ua, buf + np, size - np))
        return NULL;
    memcpy(buf, UNET_PFX, np);
    const struct mx_tensor *t = mx_sd_weight(m, buf);
    return t ? t->name : NULL;
}

/* A diffusers/PEFT text-encoder key less its "text_encoder[_2]." prefix, without diffusers'
 * ".processor." level, looked up under prefix. */
static const char *from_peft_te(const struct mx_sd_model *m, const char *prefix,
                                const char *rest) {
    char dotted[320];
    snprintf(dotted, sizeof dotted, "%s", rest);
    char *p = strstr(dotted, ".processor.");
    if (p)
        memmove(p, p + 10, strlen(p + 10) + 1);
    return find_us(m, prefix, dotted);
}

/* Why key cannot belong to m's family: SDXL's names (two text encoders, the label embedding)
 * on an SD 1.x/2.x checkpoint, SD 1.x/2.x's one text encoder on an SDXL one; the text ends in
 * "the checkpoint is ", for the family's name. NULL when the key may fit. */
static const char *other_family(const struct mx_sd_model *m, const char *key) {
    bool xl = m->family == MX_SD_FAMILY_SDXL;
    bool xl_key = !strncmp(key, "lora_te1_", 9) || !strncmp(key, "lora_te2_", 9) ||
                  !strncmp(key, "text_encoder_2.", 15) || !strncmp(key, "lora_unet_label_emb", 19);
    if (xl_key && !xl)
        return "is an SDXL name (two text encoders): the LoRA was made for SDXL, the checkpoint "
               "is ";
    if (!xl_key && xl && !strncmp(key, "lora_te_", 8))
        return "is an SD 1.x/2.x name (one text encoder): the LoRA was made for SD 1.x/2.x, the "
               "checkpoint is ";
    return NULL;
}

/* Maps a module key onto the canonical weight it adapts (other_family checked first). Returns
 * the name (the model's, so it lives as long as m) or NULL. */
static const char *map_key(const struct mx_sd_model *m, const char *key, bool *te) {
    char dotted[320], buf[400];
    *te = false;
    /* kohya's SDXL encoders: te1 is CLIP-L (SD 1.x's names), te2 OpenCLIP bigG in the HF names
     * sd_model.c gives it, its fused in_proj split into q/k/v_proj */
    if (!strncmp(key, "lora_te_", 8) || !strncmp(key, "lora_te1_", 9)) {
        *te = true;
        return find_us(m, TE_PFX, key + (key[7] == '_' ? 8 : 9));
    }
    if (!strncmp(key, "lora_te2_", 9)) {
        *te = true;
        return find_us(m, TE2_PFX, key + 9);
    }
    if (!strncmp(key, "text_encoder.", 13)) {
        *te = true;
        return from_peft_te(m, TE_PFX, key + 13);
    }
    if (!strncmp(key, "text_encoder_2.", 15)) {
        *te = true;
        return from_peft_te(m, TE2_PFX, key + 15);
    }
    if (!strncmp(key, "lora_unet_", 10)) {
        const char *t = find_us(m, UNET_PFX, key + 10);
        if (t)
            return t;
        if (!dot_diffusers(key + 10, dotted, sizeof dotted))
            return NULL;
        return from_diffusers_unet(m, dotted, buf, sizeof buf);
    }
    if (!strncmp(key, "unet.", 5)) {
        snprintf(dotted, sizeof dotted, "%s", key + 5);
        char *p = strstr(dotted, ".processor.");
        if (p)
            memmove(p, p + 10, strlen(p + 10) + 1); /* attn1.processor.to_q -> attn1.to_q */
        size_t nd = strlen(dotted); /* processors name to_out.0 "to_out_lora" */
        if (nd > 7 && !strcmp(dotted + nd - 7, ".to_out") && nd + 2 < sizeof dotted)
            strcat(dotted, ".0");
        return from_diffusers_unet(m, dotted, buf, sizeof buf);
    }
    return NULL;
}

/* The F32 values of a float tensor into a new array (*out, caller frees). */
static int read_f32(const char *path, const struct mx_st_tensor *s, float **out,
                    struct mx_err *err) {
    int type = mx_st_dtype_to_type((int)s->dtype);
    const struct mx_type_traits *tr = type >= 0 ? mx_type_traits(type) : NULL;
    if (!mx_st_dtype_is_float((int)s->dtype) || !tr || !tr->to_float)
        return mx_err_set(err, MX_EFORMAT, "%s: tensor %s has dtype %s, expected a float type",
                          path, s->name, mx_st_dtype_name((int)s->dtype));
    size_t bytes;
    if (!mx_mul_size((size_t)s->n_elements, sizeof(float), &bytes))
        return mx_err_set(err, MX_EFORMAT, "%s: tensor %s too large", path, s->name);
    float *f = malloc(bytes ? bytes : 1);
    if (!f)
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory (tensor %s)", path, s->name);
    tr->to_float(s->data, f, s->n_elements);
    *out = f;
    return 0;
}

/* "[a, b, c]" of a file tensor's shape into buf. */
static const char *shape_str(const struct mx_st_tensor *s, char *buf, size_t size) {
    size_t o = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < s->n_dims && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s%lld", i ? ", " : "", (long long)s->shape[i]);
    if (o < size)
        snprintf(buf + o, size - o, "]");
    return buf;
}

/* Checks a module's up/down against its target weight w and reads them into mod. */
static int bind_mod(const char *path, const struct mod_parts *mp, const struct mx_tensor *w,
                    struct lora_mod *mod, struct mx_err *err) {
    /* vectors (norms, biases) are copied to F32 by the UNet and CLIP when they are built, so a
     * change here would not reach them: refused rather than silently ignored */
    if (w->ne[1] == 1 && w->ne[2] == 1 && w->ne[3] == 1)
        return mx_err_set(err, MX_EUNSUP, "%s: tensor %s adapts %s, a vector: only matrices "
                          "and conv kernels take a LoRA", path, mp->up->name, w->name);
    bool linear = w->ne[2] == 1 && w->ne[3] == 1;
    int64_t n_out = linear ? w->ne[1] : w->ne[3];
    int64_t n_in = mx_tensor_nelements(w) / n_out;
    const struct mx_st_tensor *up = mp->up, *down = mp->down;
    int64_t rank = down->n_dims >= 1 ? down->shape[0] : 0;
    char sh[96];
    if (down->n_dims < 2 || rank <= 0 || down->n_elements != rank * n_in)
        return mx_err_set(err, MX_EFORMAT, "%s: tensor %s has shape %s, which does not fit %s "
                          "(%lld inputs)", path, down->name, shape_str(down, sh, sizeof sh),
                          w->name, (long long)n_in);
    if (up->n_dims < 2 || up->shape[0] != n_out || up->n_elements != n_out * rank)
        return mx_err_set(err, MX_EFORMAT, "%s: tensor %s has shape %s, expected [%lld, %lld] "
                          "for %s", path, up->name, shape_str(up, sh, sizeof sh),
                          (long long)n_out, (long long)rank, w->name);
    if (mp->alpha && mp->alpha->n_elements != 1)
        return mx_err_set(err, MX_EFORMAT, "%s: tensor %s has %lld values, expected 1", path,
                          mp->alpha->name, (long long)mp->alpha->n_elements);
    mod->rank = rank;
    mod->n_out = n_out;
    mod->n_in = n_in;
    mod->scale = 1.0f;
    int rc;
    if ((rc = read_f32(path, up, &mod->up, err)) < 0 ||
        (rc = read_f32(path, down, &mod->down, err)) < 0)
        return rc;
    if (mp->alpha) {
        float *a;
        if ((rc = read_f32(path, mp->alpha, &a, err)) < 0)
            return rc;
        mod->scale = a[0] / (float)rank;
        free(a);
    }
    return 0;
}

/* Groups the file's tensors into modules (*parts, *n_parts), refusing unknown tensors. */
static int group(const struct mx_st *st, const char *path, struct mod_parts **parts,
                 int *n_parts, struct mx_err *err) {
    int64_t nt = mx_st_n_tensors(st);
    struct mod_parts *p = calloc((size_t)(nt ? nt : 1), sizeof *p);
    if (!p)
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
    *parts = p;
    *n_parts = 0;
    for (int64_t i = 0; i < nt; i++) {
        const struct mx_st_tensor *t = mx_st_tensor(st, i);
        size_t kl;
        enum part_kind kind;
        if (strstr(t->name, "hada_") || strstr(t->name, "lokr_") ||
            strstr(t->name, ".lora_mid."))
            return mx_err_set(err, MX_EUNSUP, "%s: tensor %s: LyCORIS LoHa/LoKr/Tucker "
                              "modules are not supported (LoRA and LoCon are)", path, t->name);
        if (!split_name(t->name, &kl, &kind))
            return mx_err_set(err, MX_EFORMAT, "%s: tensor %s is not a LoRA tensor (expected "
                              "lora_down/lora_up/alpha or lora_A/lora_B)", path, t->name);
        int j = 0;
        while (j < *n_parts && !(strlen(p[j].key) == kl && !strncmp(p[j].key, t->name, kl)))
            j++;
        if (j == *n_parts) {
            if (!(p[j].key = strndup(t->name, kl)))
                return mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
            (*n_parts)++;
        }
        const struct mx_st_tensor **slot =
            kind == PART_UP ? &p[j].up : kind == PART_DOWN ? &p[j].down : &p[j].alpha;
        if (*slot)
            return mx_err_set(err, MX_EFORMAT, "%s: tensor %s: module %s has two of them",
                              path, t->name, p[j].key);
        *slot = t;
    }
    if (*n_parts == 0)
        return mx_err_set(err, MX_EFORMAT, "%s: no LoRA tensors in the file", path);
    return 0;
}

/* Reads the modules of st (named path in messages; closed here) into *out. */
static int open_st(const struct mx_sd_model *m, struct mx_st *st, const char *path,
                   struct mx_sd_lora **out, struct mx_err *err) {
    int rc;
    struct mx_sd_lora *l = calloc(1, sizeof *l);
    struct mod_parts *parts = NULL;
    int n_parts = 0;
    if (!l || !(l->path = strdup(path))) {
        rc = mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    if ((rc = group(st, path, &parts, &n_parts, err)) < 0)
        goto done;
    if (!(l->mods = calloc((size_t)n_parts, sizeof *l->mods))) {
        rc = mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    /* the family first, so that a LoRA for the other family is named as such rather than by
     * the first of its tensors that happens not to fit */
    for (int i = 0; i < n_parts; i++) {
        const struct mod_parts *mp = &parts[i];
        const char *why = other_family(m, mp->key);
        if (why) {
            const struct mx_st_tensor *any = mp->up ? mp->up : mp->down ? mp->down : mp->alpha;
            rc = mx_err_set(err, MX_EFORMAT, "%s: tensor %s %s%s", path, any->name, why,
                            mx_sd_family_name(m->family));
            goto done;
        }
    }
    for (int i = 0; i < n_parts; i++) {
        const struct mod_parts *mp = &parts[i];
        const struct mx_st_tensor *any = mp->up ? mp->up : mp->down ? mp->down : mp->alpha;
        if (!mp->up || !mp->down) {
            rc = mx_err_set(err, MX_EFORMAT, "%s: tensor %s: module %s has no %s", path,
                            any->name, mp->key, mp->up ? "down weight" : "up weight");
            goto done;
        }
        bool te;
        const char *target = map_key(m, mp->key, &te);
        if (!target) {
            rc = mx_err_set(err, MX_EFORMAT, "%s: tensor %s matches no weight of the checkpoint "
                            "(a LoRA for another base model?)", path, any->name);
            goto done;
        }
        const struct mx_tensor *w = mx_sd_weight(m, target);
        struct lora_mod *mod = &l->mods[l->n];
        if (!(mod->target = strdup(target))) {
            rc = mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
            goto done;
        }
        l->n++;
        mod->te = te;
        if ((rc = bind_mod(path, mp, w, mod, err)) < 0)
            goto done;
    }
    *out = l;
    l = NULL;
    rc = 0;
done:
    for (int i = 0; i < n_parts; i++)
        free(parts[i].key);
    free(parts);
    mx_sd_lora_close(l);
    mx_st_close(st);
    return rc;
}

int mx_sd_lora_open(const struct mx_sd_model *m, const char *path, struct mx_sd_lora **out,
                    struct mx_err *err) {
    *out = NULL;
    struct mx_st *st;
    int rc = mx_st_open(path, &st, err);
    if (rc < 0)
        return rc;
    return open_st(m, st, path, out, err);
}

int mx_sd_lora_open_mem(const struct mx_sd_model *m, const void *buf, size_t size,
                        const char *name, struct mx_sd_lora **out, struct mx_err *err) {
    *out = NULL;
    struct mx_st *st;
    int rc = mx_st_open_mem(buf, size, name, &st, err);
    if (rc < 0)
        return rc;
    return open_st(m, st, name, out, err);
}

void mx_sd_lora_close(struct mx_sd_lora *l) {
    if (!l)
        return;
    for (int i = 0; i < l->n; i++) {
        free(l->mods[i].target);
        free(l->mods[i].up);
        free(l->mods[i].down);
    }
    free(l->mods);
    free(l->path);
    free(l);
}

const char *mx_sd_lora_path(const struct mx_sd_lora *l) {
    return l->path;
}

int mx_sd_lora_n_modules(const struct mx_sd_lora *l) {
    return l->n;
}

const char *mx_sd_lora_target(const struct mx_sd_lora *l, int i) {
    return i >= 0 && i < l->n ? l->mods[i].target : NULL;
}

/* ---- applying ------------------------------------------------------------------------------- */

struct mx_sd_lora_state *mx_sd_lora_state_new(void) {
    return calloc(1, sizeof(struct mx_sd_lora_state));
}

/* Puts back every stored weight and frees the copies. */
static void restore(struct mx_sd_lora_state *s) {
    for (int i = 0; i < s->n; i++) {
        *s->slots[i].t = s->slots[i].orig;
        mx_buf_free(s->slots[i].buf);
        free(s->slots[i].copy);
    }
    s->n = 0;
}

void mx_sd_lora_state_free(struct mx_sd_model *m, struct mx_sd_lora_state *s) {
    (void)m;
    if (!s)
        return;
    restore(s);
    free(s->slots);
    free(s);
}

size_t mx_sd_lora_state_bytes(const struct mx_sd_lora_state *s) {
    size_t b = 0;
    for (int i = 0; s && i < s->n; i++)
        b += s->slots[i].bytes;
    return b;
}

/* acc[n_out][n_in] += k * up[n_out][rank] * down[rank][n_in]. */
static void add_delta(float *acc, const struct lora_mod *mod, float k) {
    for (int64_t o = 0; o < mod->n_out; o++) {
        float *row = acc + o * mod->n_in;
        for (int64_t r = 0; r < mod->rank; r++) {
            float u = k * mod->up[o * mod->rank + r];
            const float *d = mod->down + r * mod->n_in;
            for (int64_t i = 0; i < mod->n_in; i++)
                row[i] += u * d[i];
        }
    }
}

/* Makes the working copy of weight t: W + every use's delta for it, in t's type (F16/F32) or
 * F32. */
static int merge_one(struct mx_sd_model *m, struct mx_sd_lora_state *s, struct mx_tensor *t,
                     const struct mx_sd_lora_use *use, int n, struct mx_err *err) {
    if (!mx_tensor_is_contiguous(t))
        return mx_err_set(err, MX_EUNSUP, "%s: weight %s is not contiguous", m->path, t->name);
    const struct mx_type_traits *tr = mx_type_traits(t->type);
    if (!tr || !tr->to_float)
        return mx_err_set(err, MX_EUNSUP, "%s: weight %s: type %s cannot be read as F32",
                          m->path, t->name, mx_type_name(t->type));
    int64_t ne = mx_tensor_nelements(t);
    float *acc = malloc((size_t)ne * sizeof(float));
    if (!acc)
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory (LoRA copy of %s)", m->path,
                          t->name);
    tr->to_float(t->data, acc, ne);
    for (int u = 0; u < n; u++) {
        const struct mx_sd_lora *l = use[u].lora;
        for (int i = 0; i < l->n; i++) {
            const struct lora_mod *mod = &l->mods[i];
            float w = mod->te ? use[u].w_te : use[u].w_unet;
            if (w != 0.0f && !strcmp(mod->target, t->name))
                add_delta(acc, mod, w * mod->scale);
        }
    }
    enum mx_type type = t->type == MX_TYPE_F16 ? MX_TYPE_F16 : MX_TYPE_F32;
    struct mx_tensor c;
    mx_tensor_init(&c, type, t->ne[0], t->ne[1], t->ne[2], t->ne[3]);
    size_t bytes = mx_tensor_nbytes(&c);
    void *copy;
    if (type == MX_TYPE_F32) {
        copy = acc;
    } else {
        copy = malloc(bytes);
        if (!copy) {
            free(acc);
            return mx_err_set(err, MX_ENOMEM, "%s: out of memory (LoRA copy of %s)", m->path,
                              t->name);
        }
        mx_type_traits(MX_TYPE_F16)->from_float(acc, copy, ne);
        free(acc);
    }
    struct mx_buf *buf = NULL;
    if (m->be) {
        int rc = mx_buf_from_host(m->be, copy, bytes, &buf, err);
        if (rc < 0) {
            free(copy);
            return rc;
        }
    }
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        struct lora_slot *sl = realloc(s->slots, (size_t)cap * sizeof *sl);
        if (!sl) {
            mx_buf_free(buf);
            free(copy);
            return mx_err_set(err, MX_ENOMEM, "%s: out of memory", m->path);
        }
        s->slots = sl;
        s->cap = cap;
    }
    s->slots[s->n++] = (struct lora_slot){t, *t, buf, copy, bytes};
    c.buf = buf;
    c.data = buf ? buf->base : copy;
    c.name = t->name;
    *t = c;
    return 0;
}

int mx_sd_lora_apply(struct mx_sd_model *m, struct mx_sd_lora_state *s,
                     const struct mx_sd_lora_use *use, int n, struct mx_err *err) {
    restore(s);
    for (int u = 0; u < n; u++) {
        const struct mx_sd_lora *l = use[u].lora;
        for (int i = 0; i < l->n; i++) {
            const struct lora_mod *mod = &l->mods[i];
            float w = mod->te ? use[u].w_te : use[u].w_unet;
            if (w == 0.0f)
                continue;
            struct mx_tensor *t = mx_sd_weight_mut(m, mod->target);
            if (!t) {
                restore(s);
                return mx_err_set(err, MX_EINVAL, "%s: LoRA %s was opened on another "
                                  "checkpoint (no %s)", m->path, l->path, mod->target);
            }
            bool done = false;
            for (int k = 0; k < s->n && !done; k++)
                done = s->slots[k].t == t;
            if (done)
                continue;
            int rc = merge_one(m, s, t, use, n, err);
            if (rc < 0) {
                restore(s);
                return rc;
            }
        }
    }
    return 0;
}
