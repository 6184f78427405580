/* lora.c - LoRA adapter files (llama.cpp's GGUF "adapter.lora"): loading, checking against the
 * model, and the on-the-fly term B (A x) added to a matmul's output (see lora.h).
 *
 * The adapter's tensors stay in its own mapping (wrapped once for the backend, as the model's
 * data section is); each pair remembers the address of the model weight it belongs to, and
 * forward() hands that address to mx_llama_lora_apply with every matmul, so finding the pair is
 * a pointer comparison (a few hundred per adapter at most, nothing next to a matmul).
 * Ref: llama.cpp src/llama-adapter.cpp (loading rules) and llama-graph.cpp build_lora_mm /
 * build_lora_mm_id (the maths), tag of node-llama-cpp 3.21.1.
 */
#include "core/llm/lora.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/base/util.h"
#include "core/format/gguf.h"
#include "core/llm/llama_impl.h"

/* One adapted weight. */
struct lora_pair {
    const struct mx_tensor *base; /* the model's weight (borrowed: a field of the model) */
    struct mx_tensor a;           /* [n_in, rank(, n_expert)] view into the adapter's mapping */
    struct mx_tensor b;           /* [rank, n_out(, n_expert)] */
    float mul;                    /* scale * alpha / rank (alpha 0: scale) */
};

struct mx_llama_lora {
    struct mx_gguf *gguf;         /* owned: the mapping every pair points into */
    struct mx_buf *buf;           /* the data section wrapped for the backend (owned) */
    struct lora_pair *pairs;      /* n_pairs (owned) */
    int n_pairs;
    float scale;                  /* the user's scale (--lora FILE:SCALE) */
    float alpha;                  /* adapter.lora.alpha (0: absent) */
};

/* Frees an adapter and its mapping (NULL ok). */
static void lora_free(struct mx_llama_lora *l) {
    if (!l)
        return;
    mx_buf_free(l->buf);
    free(l->pairs);
    mx_gguf_close(l->gguf);
    free(l);
}

/* The model weight a base name stands for, or NULL when the model has none by that name. Only
 * weights forward() multiplies through mx_llama_lora_apply are listed; *experts says whether it
 * is a 3-D expert tensor. The token embedding is looked up by get_rows, not a matmul: the
 * caller refuses it by name. */
static const struct mx_tensor *base_weight(const struct mx_llama_model *m, const char *name,
                                           bool *experts) {
    *experts = false;
    if (!strcmp(name, "output.weight"))
        return m->output.data && m->output.data != m->tok_embd.data ? &m->output : NULL;
    int il, n = 0;
    char kind[32];
    if (sscanf(name, "blk.%d.%31[a-z_].weight%n", &il, kind, &n) != 2 || name[n] != '\0' ||
        il < 0 || il >= m->hp.n_layer)
        return NULL;
    const struct mx_llama_layer *L = &m->layers[il];
    static const struct { const char *kind; size_t off; bool experts; } slots[] = {
        {"attn_q", offsetof(struct mx_llama_layer, wq), false},
        {"attn_k", offsetof(struct mx_llama_layer, wk), false},
        {"attn_v", offsetof(struct mx_llama_layer, wv), false},
        {"attn_output", offsetof(struct mx_llama_layer, wo), false},
        {"ffn_gate", offsetof(struct mx_llama_layer, ffn_gate), false},
        {"ffn_up", offsetof(struct mx_llama_layer, ffn_up), false},
        {"ffn_down", offsetof(struct mx_llama_layer, ffn_down), false},
        {"ffn_gate_inp", offsetof(struct mx_llama_layer, ffn_gate_inp), false},
        {"ffn_gate_exps", offsetof(struct mx_llama_layer, gate_exps), true},
        {"ffn_up_exps", offsetof(struct mx_llama_layer, up_exps), true},
        {"ffn_down_exps", offsetof(struct mx_llama_layer, down_exps), true},
    };
    for (size_t i = 0; i < MX_ARRAY_LEN(slots); i++)
        if (!strcmp(kind, slots[i].kind)) {
            const struct mx_tensor *t =
                (const struct mx_tensor *)((const char *)L + slots[i].off);
            *experts = slots[i].experts;
            return t->data ? t : NULL;
        }
    return NULL;
}

/* "[a, b, c]" of the first nd entries of ne, for messages. */
static void shape_str(char *buf, size_t n, const int64_t *ne, int nd) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < nd && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? ", " : "", (long long)ne[i]);
    if (o < n)
        snprintf(buf + o, n - o, "]");
}

/* Makes t a view of gt (nd dimensions) in the adapter's buffer, checking its byte size and that
 * the backend can multiply by it (op). */
static int bind(const struct mx_llama_model *m, struct mx_llama_lora *l,
                const struct mx_gguf_tensor *gt, int nd, enum mx_op op, struct mx_tensor *t,
                struct mx_err *err) {
    const char *path = mx_gguf_path(l->gguf);
    if (!mx_backend_supports(m->be, op, (enum mx_type)gt->type))
        return mx_err_set(err, MX_EUNSUP, "%s: '%s': backend %s has no %s for type %s", path,
                          gt->name, mx_backend_name(m->be), mx_op_name(op),
                          mx_type_name(gt->type));
    if (mx_tensor_init(t, (enum mx_type)gt->type, gt->ne[0], gt->ne[1], nd > 2 ? gt->ne[2] : 1,
                       1) < 0 || mx_tensor_nbytes(t) != gt->nbytes)
        return mx_err_set(err, MX_EFORMAT, "%s: '%s': bad shape or size for type %s", path,
                          gt->name, mx_type_name(gt->type));
    const struct mx_gguf_tensor *t0 = mx_gguf_tensor(l->gguf, 0);
    const char *host_base = (const char *)t0->data - t0->offset;
    t->buf = l->buf;
    t->data = (char *)l->buf->base + ((const char *)gt->data - host_base);
    t->name = gt->name;
    return 0;
}

/* Checks pair p (named base, a and b found) against the model weight w and binds it. */
static int check_pair(const struct mx_llama_model *m, struct mx_llama_lora *l, const char *base,
                      const struct mx_gguf_tensor *ga, const struct mx_gguf_tensor *gb,
                      struct lora_pair *p, struct mx_err *err) {
    const char *path = mx_gguf_path(l->gguf);
    if (!strcmp(base, "token_embd.weight"))
        return mx_err_set(err, MX_EUNSUP, "%s: '%s.lora_a': LoRA on the token embedding is not "
                          "supported", path, base);
    bool experts;
    const struct mx_tensor *w = base_weight(m, base, &experts);
    if (!w)
        return mx_err_set(err, MX_EFORMAT, "%s: '%s.lora_a': the model has no weight '%s' "
                          "(an adapter for another model?)", path, base, base);
    int nd = experts ? 3 : 2;
    char sa[64], sb[64], sw[64];
    shape_str(sa, sizeof sa, ga->ne, MX_MAX(ga->n_dims, nd));
    shape_str(sb, sizeof sb, gb->ne, MX_MAX(gb->n_dims, nd));
    shape_str(sw, sizeof sw, w->ne, nd);
    int64_t rank = ga->ne[1];
    bool ok = ga->n_dims <= nd && gb->n_dims <= nd && ga->ne[0] == w->ne[0] &&
              gb->ne[1] == w->ne[1] && gb->ne[0] == rank && rank >= 1 && ga->ne[3] == 1 &&
              gb->ne[3] == 1;
    if (ok && experts)
        ok = ga->ne[2] == w->ne[2] && gb->ne[2] == w->ne[2];
    else if (ok)
        ok = ga->ne[2] == 1 && gb->ne[2] == 1;
    if (!ok)
        return mx_err_set(err, MX_EFORMAT, "%s: '%s': lora_a %s and lora_b %s do not fit the "
                          "model's weight %s (expected [%lld, rank%s] and [rank, %lld%s]; an "
                          "adapter for another model?)", path, base, sa, sb, sw,
                          (long long)w->ne[0], experts ? ", n_expert" : "",
                          (long long)w->ne[1], experts ? ", n_expert" : "");
    enum mx_op op = experts ? MX_OP_MATMUL_ID : MX_OP_MATMUL;
    int rc;
    if ((rc = bind(m, l, ga, nd, op, &p->a, err)) < 0 ||
        (rc = bind(m, l, gb, nd, op, &p->b, err)) < 0)
        return rc;
    p->base = w;
    p->mul = l->alpha != 0.0f ? l->scale * l->alpha / (float)rank : l->scale;
    return 0;
}

/* Reads and checks the metadata: adapter type and the model's architecture. */
static int check_meta(const struct mx_llama_model *m, struct mx_llama_lora *l,
                      struct mx_err *err) {
    const char *path = mx_gguf_path(l->gguf);
    static const struct { const char *key, *want; } keys[] = {
        {"general.type", "adapter"},
        {"adapter.type", "lora"},
    };
    for (size_t i = 0; i < MX_ARRAY_LEN(keys); i++) {
        const struct mx_gguf_value *v = mx_gguf_get(l->gguf, keys[i].key);
        if (!v || v->type != MX_GGUF_STRING || strcmp(v->v.str.data, keys[i].want))
            return mx_err_set(err, MX_EFORMAT, "%s: not a LoRA adapter (%s is %s%s%s, expected "
                              "'%s')", path, keys[i].key, v && v->type == MX_GGUF_STRING ? "'" : "",
                              !v ? "missing" : v->type == MX_GGUF_STRING ? v->v.str.data
                                                                         : "not a string",
                              v && v->type == MX_GGUF_STRING ? "'" : "", keys[i].want);
    }
    const struct mx_gguf_value *a = mx_gguf_get(l->gguf, "general.architecture");
    if (!a || a->type != MX_GGUF_STRING || strcmp(a->v.str.data, m->hp.arch))
        return mx_err_set(err, MX_EFORMAT, "%s: adapter for architecture '%s', the model is "
                          "'%s'", path, a && a->type == MX_GGUF_STRING ? a->v.str.data : "?",
                          m->hp.arch);
    const struct mx_gguf_value *al = mx_gguf_get(l->gguf, "adapter.lora.alpha");
    if (al) {
        if (al->type != MX_GGUF_FLOAT32 && al->type != MX_GGUF_FLOAT64)
            return mx_err_set(err, MX_EFORMAT, "%s: adapter.lora.alpha is not a number", path);
        l->alpha = (float)al->v.f64;
        if (!(l->alpha >= -1e6f && l->alpha <= 1e6f))
            return mx_err_set(err, MX_EFORMAT, "%s: adapter.lora.alpha %g out of range", path,
                              (double)l->alpha);
    }
    return 0;
}

/* Pairs up the tensors (".lora_a" with ".lora_b"; "*_norm.weight" skipped as llama.cpp does)
 * and checks each pair. */
static int load_pairs(const struct mx_llama_model *m, struct mx_llama_lora *l,
                      struct mx_err *err) {
    const char *path = mx_gguf_path(l->gguf);
    int64_t nt = mx_gguf_n_tensors(l->gguf);
    l->pairs = calloc((size_t)(nt > 0 ? nt : 1), sizeof *l->pairs);
    if (!l->pairs)
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
    int n_norm = 0;
    for (int64_t i = 0; i < nt; i++) {
        const struct mx_gguf_tensor *gt = mx_gguf_tensor(l->gguf, i);
        size_t len = strlen(gt->name);
        if (len > 12 && !strcmp(gt->name + len - 12, "_norm.weight")) {
            n_norm++;
            continue;
        }
        bool is_a = len > 7 && !strcmp(gt->name + len - 7, ".lora_a");
        bool is_b = len > 7 && !strcmp(gt->name + len - 7, ".lora_b");
        if (!is_a && !is_b)
            return mx_err_set(err, MX_EFORMAT, "%s: tensor '%s' is neither .lora_a nor .lora_b",
                              path, gt->name);
        char base[256], other[264];
        if (len - 7 >= sizeof base)
            return mx_err_set(err, MX_EFORMAT, "%s: tensor name too long (%zu bytes)", path,
                              len);
        memcpy(base, gt->name, len - 7);
        base[len - 7] = '\0';
        snprintf(other, sizeof other, "%s.lora_%c", base, is_a ? 'b' : 'a');
        const struct mx_gguf_tensor *go = mx_gguf_find_tensor(l->gguf, other);
        if (!go)
            return mx_err_set(err, MX_EFORMAT, "%s: '%s' has no '%s'", path, gt->name, other);
        if (is_b) /* the pair is taken when its lora_a comes by */
            continue;
        int rc = check_pair(m, l, base, gt, go, &l->pairs[l->n_pairs], err);
        if (rc < 0)
            return rc;
        for (int j = 0; j < l->n_pairs; j++)
            if (l->pairs[j].base == l->pairs[l->n_pairs].base)
                return mx_err_set(err, MX_EFORMAT, "%s: two pairs for '%s'", path, base);
        l->n_pairs++;
    }
    if (l->n_pairs == 0)
        return mx_err_set(err, MX_EFORMAT, "%s: no LoRA tensors (.lora_a/.lora_b)", path);
    if (n_norm)
        mx_log(MX_LOG_WARN, "%s: %d norm tensors ignored (as llama.cpp does)", path, n_norm);
    return 0;
}

int mx_llama_lora_add(struct mx_llama_model *m, const char *path, float scale,
                      struct mx_err *err) {
    /* the adapter's tensors live on the model's backend, and its terms are added where the
     * adapted weight runs: a split model would mix the two */
    if (m->split)
        return mx_err_set(err, MX_EUNSUP, "%s: LoRA adapters need the whole model on one device "
                          "(not with --gpu-layers below all or --cpu-moe)", path);
    struct mx_llama_lora *l = calloc(1, sizeof *l);
    struct mx_llama_lora **v = NULL;
    if (!l)
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
    l->scale = scale;
    int rc = mx_gguf_open(path, &l->gguf, err);
    if (rc < 0)
        goto fail;
    if ((rc = check_meta(m, l, err)) < 0)
        goto fail;
    if (mx_gguf_n_tensors(l->gguf) <= 0) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: no LoRA tensors (.lora_a/.lora_b)", path);
        goto fail;
    }
    /* the data section, wrapped once (a device backend copies it here) */
    const struct mx_gguf_tensor *t0 = mx_gguf_tensor(l->gguf, 0);
    char *base = (char *)t0->data - t0->offset;
    size_t dsize = mx_gguf_file_size(l->gguf) - mx_gguf_data_offset(l->gguf);
    if ((rc = mx_buf_from_host(m->be, base, dsize ? dsize : 1, &l->buf, err)) < 0)
        goto fail;
    if ((rc = load_pairs(m, l, err)) < 0)
        goto fail;
    v = realloc(m->loras, (size_t)(m->n_loras + 1) * sizeof *v);
    if (!v) {
        rc = mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    m->loras = v;
    m->loras[m->n_loras++] = l;
    mx_log(MX_LOG_INFO, "%s: LoRA adapter, %d weights, alpha %g, scale %g", path, l->n_pairs,
           (double)l->alpha, (double)scale);
    return 0;
fail:
    lora_free(l);
    return rc;
}

int mx_llama_lora_count(const struct mx_llama_model *m) { return m->n_loras; }

void mx_llama_lora_free_all(struct mx_llama_model *m) {
    for (int i = 0; i < m->n_loras; i++)
        lora_free(m->loras[i]);
    free(m->loras);
    m->loras = NULL;
    m->n_loras = 0;
}

void mx_llama_lora_scratch(const struct mx_llama_model *m, int64_t n_tok, int64_t n_slot,
                           int64_t *na, int64_t *nb) {
    int64_t rank = 0, out = 0;
    for (int i = 0; i < m->n_loras; i++)
        for (int j = 0; j < m->loras[i]->n_pairs; j++) {
            const struct lora_pair *p = &m->loras[i]->pairs[j];
            rank = MX_MAX(rank, p->a.ne[1]);
            out = MX_MAX(out, p->b.ne[1]);
        }
    *na = rank * n_tok * n_slot;
    *nb = out * n_tok * n_slot;
}

/* A contiguous F32 [n0, n1, n2] view at the start of a 1-D scratch tensor. */
static struct mx_tensor view(const struct mx_tensor *s, int64_t n0, int64_t n1, int64_t n2) {
    struct mx_tensor v = *s;
    mx_tensor_init(&v, MX_TYPE_F32, n0, n1, n2, 1);
    v.buf = s->buf;
    v.data = s->data;
    v.name = s->name;
    return v;
}

int mx_llama_lora_apply(struct mx_backend *be, const struct mx_llama_model *m,
                        struct mx_tensor *dst, const struct mx_tensor *w,
                        const struct mx_tensor *x, const struct mx_tensor *ids,
                        const struct mx_tensor *sa, const struct mx_tensor *sb) {
    int rc = 0;
    for (int i = 0; i < m->n_loras && rc == 0; i++) {
        const struct mx_llama_lora *l = m->loras[i];
        if (l->scale == 0.0f)
            continue;
        for (int j = 0; j < l->n_pairs && rc == 0; j++) {
            const struct lora_pair *p = &l->pairs[j];
            if (p->base != w)
                continue;
            /* ta = A x: [rank, T] (experts: [rank, n_used, T]); tb = B ta: dst's shape */
            struct mx_tensor ta = view(sa, p->a.ne[1], dst->ne[1], dst->ne[2]);
            struct mx_tensor tb = view(sb, dst->ne[0], dst->ne[1], dst->ne[2]);
            if (ids) {
                if ((rc = mx_op_matmul_id(be, &ta, &p->a, x, ids)) < 0 ||
                    (rc = mx_op_matmul_id(be, &tb, &p->b, &ta, ids)) < 0)
                    break;
            } else if ((rc = mx_op_matmul(be, &ta, &p->a, x)) < 0 ||
                       (rc = mx_op_matmul(be, &tb, &p->b, &ta)) < 0) {
                break;
            }
            if ((rc = mx_op_scale(be, &tb, &tb, p->mul)) < 0 ||
                (rc = mx_op_add(be, dst, dst, &tb)) < 0)
                break;
        }
    }
    return rc;
}
