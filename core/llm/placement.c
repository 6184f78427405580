/* placement.c - where an LLM's weights live and which backend runs each part (placement.h):
 * the rule (llama.cpp's -ngl and --n-cpu-moe), the bytes each side needs, and the loader's step
 * that copies the device's parts into its memory and prepares the matmul weights.
 *
 * Tuned for the case it exists for: a model a little (or a lot) larger than VRAM, loaded once;
 * the copies go one tensor at a time so the progress bar moves and the file's pages of a moved
 * tensor can be dropped at once (resident memory never holds two copies of more than one).
 */
#include "core/llm/placement.h"

#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/base/mapfile.h"
#include "core/base/util.h"
#include "core/format/gguf.h"
#include "core/llm/llama_impl.h"

void mx_llama_place_init(struct mx_llama_place *p, int32_t n_layer, int gpu_layers,
                         int n_cpu_moe) {
    p->n_layer = n_layer;
    int64_t ngl = gpu_layers < 0 ? (int64_t)n_layer + 1 : gpu_layers;
    p->i_dev = (int32_t)MX_MAX((int64_t)n_layer + 1 - ngl, (int64_t)0);
    if (p->i_dev > n_layer)
        p->i_dev = n_layer;
    p->out_dev = ngl >= 1;
    p->n_cpu_moe = n_cpu_moe < 0 || n_cpu_moe > n_layer ? n_layer : n_cpu_moe;
}

bool mx_llama_place_layer_dev(const struct mx_llama_place *p, int il) {
    return il >= p->i_dev;
}

bool mx_llama_place_exps_dev(const struct mx_llama_place *p, int il) {
    return il >= p->i_dev && il >= p->n_cpu_moe;
}

/* Whether the part of a block named rest ("ffn_up_exps.weight", "ffn_gate.3.weight") is an
 * expert's: the merged 3-D tensors and their biases, or one expert of the older split layout. */
static bool is_expert(const char *rest) {
    if (strstr(rest, "_exps."))
        return true;
    static const char *kinds[] = {"ffn_gate.", "ffn_up.", "ffn_down."};
    for (size_t k = 0; k < MX_ARRAY_LEN(kinds); k++) {
        size_t n = strlen(kinds[k]);
        if (strncmp(rest, kinds[k], n) == 0 && rest[n] >= '0' && rest[n] <= '9')
            return true;
    }
    return false;
}

void mx_llama_place_bytes(const struct mx_gguf *g, const struct mx_llama_place *p,
                          uint64_t *dev, uint64_t *host) {
    *dev = *host = 0;
    bool tied = !mx_gguf_find_tensor(g, "output.weight");
    for (int64_t i = 0; i < mx_gguf_n_tensors(g); i++) {
        const struct mx_gguf_tensor *t = mx_gguf_tensor(g, i);
        const char *n = t->name;
        bool on_dev = false, on_host = false;
        if (strncmp(n, "blk.", 4) == 0) {
            char *rest;
            long il = strtol(n + 4, &rest, 10);
            if (*rest == '.' && il >= 0 && il < p->n_layer)
                on_dev = is_expert(rest + 1) ? mx_llama_place_exps_dev(p, (int)il)
                                             : mx_llama_place_layer_dev(p, (int)il);
            on_host = !on_dev;
        } else if (!strcmp(n, "output.weight") || !strcmp(n, "output_norm.weight")) {
            on_dev = p->out_dev;
            on_host = !on_dev;
        } else if (!strcmp(n, "token_embd.weight")) {
            on_host = true;
            on_dev = tied && p->out_dev; /* the output's copy */
        } else if (!strcmp(n, "rope_freqs.weight")) {
            on_host = true;
            on_dev = p->i_dev < p->n_layer;
        } else {
            on_host = true;
        }
        if (on_dev)
            *dev += t->nbytes;
        if (on_host)
            *host += t->nbytes;
    }
}

/* ---- the loader's step ---------------------------------------------------------------------- */

/* One weight to place: the tensor, the backend that will run it, and whether it is the `w` of
 * a matmul the backend may rearrange (prepare_weights). */
struct item {
    struct mx_tensor *t;
    struct mx_backend *be;
    bool matmul;
    bool shared_bytes; /* its file bytes are also read by another tensor (a tied output) */
};

/* The repacked (prepare_weights) matmul weights of a block, as llama.c's list was: attention,
 * dense FFN, experts, shared expert. */
#define LAYER_MATS 13

/* Appends every weight of block il to it[] (absent ones skipped); returns the new count. */
static int layer_items(struct mx_llama_model *m, int il, struct item *it, int n) {
    struct mx_llama_layer *L = &m->layers[il];
    struct mx_tensor *mats[LAYER_MATS] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->ffn_gate,
                                          &L->ffn_up, &L->ffn_down, &L->gate_exps, &L->up_exps,
                                          &L->down_exps, &L->gate_shexp, &L->up_shexp,
                                          &L->down_shexp};
    struct mx_tensor *vecs[] = {&L->attn_norm, &L->ffn_norm, &L->ffn_gate_inp, &L->bq, &L->bk,
                                &L->bv, &L->bo, &L->q_norm, &L->k_norm, &L->gate_inp_shexp,
                                &L->sinks, &L->gate_inp_b};
    struct mx_tensor *evecs[] = {&L->gate_exps_b, &L->up_exps_b, &L->down_exps_b};
    for (int i = 0; i < LAYER_MATS; i++)
        if (mats[i]->data) {
            bool exp = i >= 7 && i <= 9;
            it[n++] = (struct item){mats[i], exp ? L->be_exps : L->be, true, false};
        }
    for (size_t i = 0; i < MX_ARRAY_LEN(vecs); i++)
        if (vecs[i]->data)
            it[n++] = (struct item){vecs[i], L->be, false, false};
    for (size_t i = 0; i < MX_ARRAY_LEN(evecs); i++)
        if (evecs[i]->data)
            it[n++] = (struct item){evecs[i], L->be_exps, false, false};
    return n;
}

/* Copies t into a new buffer of dev (its file bytes stay where they are). Returns 0 or the
 * backend's error (err names the tensor). */
static int upload(struct mx_llama_model *m, struct mx_backend *dev, struct mx_tensor *t,
                  struct mx_err *err) {
    size_t n = mx_tensor_nbytes(t);
    struct mx_buf *b = NULL;
    int rc = mx_buf_alloc(dev, n ? n : 1, &b, err);
    if (rc < 0)
        return rc;
    struct mx_tensor d = *t;
    d.buf = b;
    d.data = b->base;
    if ((rc = mx_tensor_set(dev, &d, t->data, 0, n)) < 0) {
        mx_buf_free(b);
        return mx_err_set(err, rc, "%s: copying '%s' (%zu bytes) to %s: %s",
                          mx_gguf_path(m->gguf), t->name ? t->name : "?", n,
                          mx_backend_name(dev), mx_backend_last_error(dev));
    }
    m->dbufs[m->n_dbufs++] = b;
    t->buf = b;
    t->data = b->base;
    return 0;
}

int mx_llama_place_weights(struct mx_llama_model *m, const struct mx_llama_load_opts *o,
                           struct mx_err *err) {
    const struct mx_llama_hparams *hp = &m->hp;
    struct mx_backend *host = o ? o->host : NULL;
    struct mx_llama_place p;
    mx_llama_place_init(&p, hp->n_layer, host ? o->gpu_layers : -1, host ? o->n_cpu_moe : 0);
    m->host = host;
    m->be_embd = host ? host : m->be;
    m->be_out = host && !p.out_dev ? host : m->be;
    for (int il = 0; il < hp->n_layer; il++) {
        struct mx_llama_layer *L = &m->layers[il];
        L->be = host && !mx_llama_place_layer_dev(&p, il) ? host : m->be;
        L->be_exps = host && !mx_llama_place_exps_dev(&p, il) ? host : m->be;
        m->split |= L->be != m->be || (hp->n_expert > 0 && L->be_exps != m->be);
    }
    m->split |= m->be_out != m->be;

    const char *no = getenv("MIXEL_NO_REPACK");
    bool repack = !(no && *no && strcmp(no, "0") != 0);
    int cap = hp->n_layer * (LAYER_MATS + 16) + 4, n = 0;
    struct item *it = calloc((size_t)cap, sizeof *it);
    m->pbufs = calloc((size_t)cap, sizeof *m->pbufs);
    m->dbufs = calloc((size_t)cap, sizeof *m->dbufs);
    if (!it || !m->pbufs || !m->dbufs) {
        free(it);
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", mx_gguf_path(m->gguf));
    }
    bool tied = m->output.data == m->tok_embd.data;
    /* the output matrix: repacked when it is its own tensor; a tied one is the embedding's
     * bytes, read by get_rows, so it moves only as a device copy */
    if (!tied || (host && m->be_out != host))
        it[n++] = (struct item){&m->output, m->be_out, !tied, tied};
    it[n++] = (struct item){&m->output_norm, m->be_out, false, false};
    for (int il = 0; il < hp->n_layer; il++)
        n = layer_items(m, il, it, n);

    int rc = 0;
    uint64_t total = 0, done = 0;
    for (int i = 0; i < n; i++)
        total += mx_tensor_nbytes(it[i].t);
    for (int i = 0; i < n && rc == 0; i++) {
        struct mx_tensor *t = it[i].t;
        const char *old = t->data;
        size_t bytes = mx_tensor_nbytes(t);
        bool moved = false;
        if (host && it[i].be != host) {
            if ((rc = upload(m, it[i].be, t, err)) < 0)
                break;
            moved = true;
        }
        if (it[i].matmul && repack) {
            struct mx_buf *pb = NULL;
            rc = mx_backend_prepare_weights(it[i].be, &t, 1, &pb, err);
            if (rc < 0)
                break;
            if (pb) {
                m->pbufs[m->n_pbufs++] = pb;
                moved = true;
            }
        }
        /* weights used in place (host memory: the mapping) are read now, while the load shows
         * its bytes */
        if (!moved && (!t->buf || t->buf->wraps_host))
            mx_map_prefault(t->data, bytes);
        /* the file's copy of a moved tensor (only for weights in the mapping, not gathered
         * experts, and not bytes another tensor still reads) */
        const char *wb = m->wbuf->base;
        if (moved && !it[i].shared_bytes && old >= wb && old < wb + m->wbuf->size)
            mx_map_release(m->host_base + (old - wb), bytes);
        done += bytes;
        if (o && o->progress)
            o->progress(o->progress_ud, done, total);
    }
    free(it);
    if (rc < 0)
        return rc;
    /* the rotary frequency factors are read by every backend's rope: the device gets a copy */
    if (host && m->rope_freqs.data) {
        m->rope_freqs_dev = m->rope_freqs;
        if ((rc = upload(m, m->be, &m->rope_freqs_dev, err)) < 0)
            return rc;
    }
    /* experts gathered from per-expert tensors: once all of them moved, the gathered copy is
     * dead weight (as large as the experts) */
    bool ebuf_used = false;
    for (int il = 0; il < hp->n_layer && m->ebuf; il++) {
        struct mx_llama_layer *L = &m->layers[il];
        ebuf_used |= L->gate_exps.buf == m->ebuf || L->up_exps.buf == m->ebuf ||
                     L->down_exps.buf == m->ebuf;
    }
    if (m->ebuf && !ebuf_used) {
        mx_buf_free(m->ebuf);
        m->ebuf = NULL;
        free(m->owned_experts);
        m->owned_experts = NULL;
    }
    if (host)
        mx_log(MX_LOG_INFO, "placement: %d of %d blocks on the device (%s)%s, the output %s, "
               "the rest in host memory", (int)(hp->n_layer - p.i_dev), (int)hp->n_layer,
               mx_backend_name(m->be),
               hp->n_expert > 0 && p.n_cpu_moe > p.i_dev ? " but the experts of blocks below "
               "--n-cpu-moe" : "", p.out_dev ? "there too" : "on the host");
    return 0;
}
