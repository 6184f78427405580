/* chat.c - conversation to tokens: incremental prefill plans, the context-overflow policy and
 * the cache-shift plan. See chat.h for the flow. Workload: one plan per chat turn over up to
 * 64K-token histories, so linear scans over the ids are fine; the only super-linear part (the
 * shift search) has a comparison budget.
 */
#include "core/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t mx_chat_common_prefix(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    size_t n = na < nb ? na : nb, i = 0;
    if (!a || !b)
        return 0;
    while (i < n && a[i] == b[i])
        i++;
    return i;
}

int mx_chat_tokenize_prompt(const struct mx_tmpl_prompt *prompt,
                            const struct mx_chat_tokenizer *tok, int32_t **ids, size_t *n_ids,
                            struct mx_err *err) {
    if (!ids || !n_ids)
        return mx_err_set(err, MX_EINVAL, "chat: no output for token ids");
    *ids = NULL;
    *n_ids = 0;
    if (!prompt || !prompt->text || prompt->tok_offset > prompt->len || !tok || !tok->fn)
        return mx_err_set(err, MX_EINVAL, "chat: bad prompt or tokenizer");
    int32_t *v = NULL;
    size_t n = 0;
    int rc = tok->fn(tok->ud, prompt->text + prompt->tok_offset,
                     prompt->len - prompt->tok_offset, prompt->add_bos, &v, &n, err);
    if (rc < 0) {
        free(v);
        return rc;
    }
    if (n > 0 && !v)
        return mx_err_set(err, MX_EINVAL, "chat: tokenizer returned %zu ids and no array", n);
    *ids = v;
    *n_ids = n;
    return 0;
}

void mx_chat_prefill_free(struct mx_chat_prefill *p) {
    if (!p)
        return;
    free(p->tokens);
    memset(p, 0, sizeof(*p));
}

int mx_chat_plan_prefill(const struct mx_tmpl_prompt *prompt, const struct mx_chat_tokenizer *tok,
                         const int32_t *evaluated, size_t n_evaluated,
                         struct mx_chat_prefill *out, struct mx_err *err) {
    if (!out)
        return mx_err_set(err, MX_EINVAL, "chat: no output for the prefill plan");
    memset(out, 0, sizeof(*out));
    if (n_evaluated > 0 && !evaluated)
        return mx_err_set(err, MX_EINVAL, "chat: %zu evaluated ids and no array", n_evaluated);
    int rc = mx_chat_tokenize_prompt(prompt, tok, &out->tokens, &out->n_tokens, err);
    if (rc < 0)
        return rc;
    if (out->n_tokens == 0) {
        mx_chat_prefill_free(out);
        return mx_err_set(err, MX_EINVAL, "chat: prompt tokenizes to nothing");
    }
    size_t keep = mx_chat_common_prefix(out->tokens, out->n_tokens, evaluated, n_evaluated);
    /* The logits for the next token come from evaluating the last prompt token, so it must be
     * (re-)evaluated even when the cache already holds it. */
    if (keep == out->n_tokens)
        keep--;
    out->n_keep = keep;
    out->n_discard = n_evaluated - keep;
    return 0;
}

int mx_chat_fit_context(const enum mx_role *roles, const size_t *n_tok, size_t n_msgs,
                        size_t n_prompt, size_t n_ctx, size_t n_reserve,
                        struct mx_chat_fit *out, struct mx_err *err) {
    size_t need, avail, head, cur, i, dropped = 0, exchanges = 0;
    if (!out)
        return mx_err_set(err, MX_EINVAL, "chat: no output for the context fit");
    memset(out, 0, sizeof(*out));
    if (n_msgs == 0 || !roles || !n_tok)
        return mx_err_set(err, MX_EINVAL, "chat: context fit of an empty conversation");
    if (n_ctx == 0 || n_reserve >= n_ctx)
        return mx_err_set(err, MX_EINVAL, "chat: reserve %zu tokens leaves no room in n_ctx %zu",
                          n_reserve, n_ctx);
    avail = n_ctx - n_reserve;
    if (n_prompt <= avail)
        return 0;
    need = n_prompt - avail;

    /* Protected: a leading system message, and the current turn from the last user message. */
    head = roles[0] == MX_ROLE_SYSTEM ? 1 : 0;
    cur = n_msgs - 1;
    for (i = n_msgs; i-- > head;) {
        if (roles[i] == MX_ROLE_USER) {
            cur = i;
            break;
        }
    }
    if (cur < head)
        cur = head;

    /* Drop whole exchanges [head, next user) oldest first until enough tokens are freed. */
    i = head;
    while (i < cur && dropped < need) {
        size_t j = i + 1;
        while (j < cur && roles[j] != MX_ROLE_USER)
            j++;
        for (size_t k = i; k < j; k++) {
            if (n_tok[k] > SIZE_MAX - dropped)
                return mx_err_set(err, MX_EINVAL, "chat: token counts overflow");
            dropped += n_tok[k];
        }
        exchanges++;
        i = j;
    }
    if (dropped < need) {
        size_t kept = n_prompt > dropped ? n_prompt - dropped : 0;
        return mx_err_set(err, MX_EFULL,
                          "context: system prompt and current turn need %zu tokens + %zu "
                          "reserved for the answer > n_ctx %zu",
                          kept, n_reserve, n_ctx);
    }
    out->first = head;
    out->count = i - head;
    out->n_exchanges = exchanges;
    out->n_tokens_dropped = dropped;
    snprintf(out->note, sizeof(out->note),
             "context full: dropped the %zu oldest exchange%s (%zu message%s, %zu tokens)",
             exchanges, exchanges == 1 ? "" : "s", out->count, out->count == 1 ? "" : "s",
             dropped);
    return 0;
}

/* Comparison budget of the shift search: 64M id compares, ~50 ms worst case. */
#define SHIFT_BUDGET ((size_t)1 << 26)

int mx_chat_plan_shift(const int32_t *old, size_t n_old, const int32_t *new_ids, size_t n_new,
                       struct mx_chat_shift *out, struct mx_err *err) {
    if (!out)
        return mx_err_set(err, MX_EINVAL, "chat: no output for the shift plan");
    memset(out, 0, sizeof(*out));
    if (n_new == 0 || !new_ids || (n_old > 0 && !old))
        return mx_err_set(err, MX_EINVAL, "chat: shift plan needs new ids (%zu) and old (%zu)",
                          n_new, n_old);
    size_t a = mx_chat_common_prefix(old, n_old, new_ids, n_new);
    size_t best_src = a, best_len = 0, spent = 0;
    if (a < n_new) {
        /* Longest run old[b..] == new[a..] over b > a; early exit once a run reaches the end of
         * old (no later b can beat it: its run is bounded by n_old - b). */
        for (size_t b = a + 1; b < n_old && spent < SHIFT_BUDGET; b++) {
            if (n_old - b <= best_len)
                break; /* runs from here on are too short to win */
            if (old[b] != new_ids[a])
                continue;
            size_t len = mx_chat_common_prefix(old + b, n_old - b, new_ids + a, n_new - a);
            spent += len + 1;
            if (len > best_len) {
                best_len = len;
                best_src = b;
                if (len == n_old - b)
                    break;
            }
        }
    }
    /* Leave one token to evaluate for logits. */
    if (a + best_len == n_new) {
        if (best_len > 0)
            best_len--;
        else
            a--;
    }
    if (best_len == 0)
        best_src = a;
    out->n_keep = a;
    out->src = best_src;
    out->n_move = best_len;
    out->n_prefill_from = a + best_len;
    return 0;
}
