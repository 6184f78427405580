/* model_info.c - parameter counts of a GGUF LLM (see model_info.h). */
#include "core/llm/model_info.h"

#include <stdio.h>
#include <string.h>

/* True for an MoE expert tensor: stacked (blk.N.ffn_*_exps.weight, 3-D, ne[2] = n_expert) or
 * the older one-tensor-per-expert naming (blk.N.ffn_gate.E.weight). False when n_expert <= 0. */
static bool is_expert_tensor(const struct mx_gguf_tensor *t, int64_t n_expert) {
    if (n_expert <= 0)
        return false;
    if (strstr(t->name, "_exps.") && t->n_dims == 3 && t->ne[2] == n_expert)
        return true;
    int blk, e, end = 0;
    char kind[16];
    if (sscanf(t->name, "blk.%d.ffn_%15[a-z].%d.weight%n", &blk, kind, &e, &end) == 3 &&
        end > 0 && t->name[end] == '\0')
        return true;
    return false;
}

void mx_llm_count_params(const struct mx_gguf *g, struct mx_llm_params *p) {
    memset(p, 0, sizeof *p);
    const char *arch = NULL;
    (void)mx_gguf_get_str(g, "general.architecture", &arch, NULL);
    if (arch) {
        char key[256];
        snprintf(key, sizeof key, "%s.expert_count", arch);
        (void)mx_gguf_get_int(g, key, &p->n_expert, NULL);
        snprintf(key, sizeof key, "%s.expert_used_count", arch);
        (void)mx_gguf_get_int(g, key, &p->n_used, NULL);
    }
    for (int64_t i = 0; i < mx_gguf_n_tensors(g); i++) {
        const struct mx_gguf_tensor *t = mx_gguf_tensor(g, i);
        double nel = (double)t->ne[0] * (double)t->ne[1] * (double)t->ne[2] * (double)t->ne[3];
        p->total += nel;
        if (is_expert_tensor(t, p->n_expert))
            p->experts += nel;
        p->type_count[t->type]++;
        p->type_bytes[t->type] += t->nbytes;
    }
    p->moe = p->n_expert > 1 && p->experts > 0;
    p->active = p->total - p->experts;
    if (p->moe && p->n_used > 0 && p->n_used <= p->n_expert)
        p->active += p->experts * (double)p->n_used / (double)p->n_expert;
}
