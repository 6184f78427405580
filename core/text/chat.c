/* chat.c - conversation to tokens: incremental prefill plans, the context-overflow policy and
 * the cache-shift plan. See chat.h for the flow. Workload: one plan per chat turn over up to
 * 64K-token histories, so linear scans over the ids are fine; the only super-linear part (the
 * shift search) has a comparison budget.
 */
#include "core/text/chat.h"

#include "core/base/util.h"

#include <stdbool.h>
#include <stdint.h>
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

/* One splice of mx_chat_keep_evaluated at keep (the first differing id): returns the new
 * common prefix length, or keep when nothing can be kept. The texts are decoded in windows that
 * double until they differ inside the window, so a splice costs about the tokens it spans. */
static size_t splice_once(const struct mx_chat_tokenizer *tok, int32_t **ids, size_t *n_ids,
                          size_t keep, const int32_t *evaluated, size_t n_evaluated,
                          size_t max_ids) {
    const int32_t *a = evaluated + keep, *b = *ids + keep;
    size_t na_all = n_evaluated - keep, nb_all = *n_ids - keep;
    char *ab = NULL, *bb = NULL;
    size_t *ae = NULL, *be = NULL, result = keep, best_m = 0, best_j = 0;
    for (size_t w = 256;; w *= 2) {
        size_t na = MX_MIN(na_all, w), nb = MX_MIN(nb_all, w);
        free(ab);
        free(bb);
        free(ae);
        free(be);
        ab = bb = NULL;
        ae = be = NULL;
        if (tok->text(tok->ud, a, na, &ab, &ae) < 0 || tok->text(tok->ud, b, nb, &bb, &be) < 0)
            goto done;
        /* Templates put one space between a role marker and the message ("[/INST] answer"),
         * which the model did not write when its first token has none: that space alone may
         * differ (the model then reads its answer as it wrote it; the stored text is as it
         * was). */
        size_t la = na ? ae[na - 1] : 0, lb = nb ? be[nb - 1] : 0, skip = 0, same = 0;
        if (la > 0 && lb > 1 && ab[0] != ' ' && bb[0] == ' ')
            skip = 1;
        while (same < la && same + skip < lb && ab[same] == bb[same + skip])
            same++;
        /* the last offset <= same where a token of each ends (both lists ascend) */
        size_t m = 0, j = 0;
        best_m = best_j = 0;
        while (m < na && j < nb && ae[m] <= same && be[j] <= same + skip) {
            if (be[j] <= skip) { /* B's tokens inside the skipped space */
                j++;
            } else if (ae[m] == be[j] - skip) {
                if (ae[m] > 0 && keep + (m + 1) + (nb_all - (j + 1)) <= max_ids) {
                    best_m = m + 1;
                    best_j = j + 1;
                }
                m++;
                j++;
            } else if (ae[m] < be[j] - skip) {
                m++;
            } else {
                j++;
            }
        }
        bool differ_inside = same < la && same + skip < lb;
        if (differ_inside || (na == na_all && nb == nb_all))
            break;
    }
    if (best_m == 0)
        goto done;
    size_t n_new = keep + best_m + (nb_all - best_j);
    int32_t *v = malloc(n_new * sizeof(*v));
    if (!v)
        goto done;
    memcpy(v, *ids, keep * sizeof(*v));
    memcpy(v + keep, a, best_m * sizeof(*v));
    memcpy(v + keep + best_m, b + best_j, (nb_all - best_j) * sizeof(*v));
    free(*ids);
    *ids = v;
    *n_ids = n_new;
    result = keep + best_m;
done:
    free(ab);
    free(bb);
    free(ae);
    free(be);
    return result;
}

size_t mx_chat_keep_evaluated(const struct mx_chat_tokenizer *tok, int32_t **ids, size_t *n_ids,
                              size_t keep, const int32_t *evaluated, size_t n_evaluated,
                              size_t max_ids) {
    if (!tok || !tok->text || !ids || !*ids || !n_ids || !evaluated)
        return keep;
    /* each answer in the conversation is one splice; between them the ids agree again */
    while (keep < *n_ids && keep < n_evaluated) {
        size_t k = splice_once(tok, ids, n_ids, keep, evaluated, n_evaluated, max_ids);
        if (k == keep)
            break;
        keep = k + mx_chat_common_prefix(*ids + k, *n_ids - k, evaluated + k, n_evaluated - k);
    }
    return keep;
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
    keep = mx_chat_keep_evaluated(tok, &out->tokens, &out->n_tokens, keep, evaluated,
                                  n_evaluated, SIZE_MAX);
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

void mx_chat_turn_free(struct mx_chat_turn *t) {
    if (!t)
        return;
    free(t->tokens);
    memset(t, 0, sizeof(*t));
}

/* Token estimate of one message when the caller has none: its content's tokens plus a few for
 * the template's markers (the fit loop re-measures, so this only needs to be close). */
static int estimate_tokens(const struct mx_chat_tokenizer *tok, const struct mx_chat_msg *m,
                           size_t *n, struct mx_err *err) {
    int32_t *ids = NULL;
    size_t k = 0;
    int rc = 0;
    *n = 8;
    if (m->content) {
        rc = tok->fn(tok->ud, m->content, strlen(m->content), false, &ids, &k, err);
        free(ids);
        if (rc < 0)
            return rc;
        *n += k;
    }
    for (size_t i = 0; i < m->n_tool_calls; i++) /* rough: bytes / 2 */
        *n += (strlen(m->tool_calls[i].name ? m->tool_calls[i].name : "") +
               strlen(m->tool_calls[i].arguments ? m->tool_calls[i].arguments : "")) / 2 + 8;
    return 0;
}

int mx_chat_prepare(enum mx_tmpl_kind kind, const struct mx_chat_msg *msgs, size_t n_msgs,
                    const size_t *n_tok, const struct mx_tmpl_opts *opts,
                    const struct mx_chat_tokenizer *tok, const int32_t *evaluated,
                    size_t n_evaluated, size_t n_ctx, size_t n_reserve,
                    struct mx_chat_turn *out, struct mx_err *err) {
    struct mx_chat_msg *answered = NULL; /* msgs without the unanswered user messages */
    size_t n_unanswered = 0;             /* user messages left out: no answer followed */
    struct mx_chat_msg *view = NULL;   /* answered msgs without the dropped range */
    enum mx_role *roles = NULL;        /* roles of view */
    size_t *counts = NULL;             /* token estimates of the answered msgs */
    size_t *vcounts = NULL;            /* ... of view */
    struct mx_tmpl_prompt p = {0};
    size_t head, dropped = 0;
    int rc = 0;

    if (!out)
        return mx_err_set(err, MX_EINVAL, "chat: no output for the turn plan");
    memset(out, 0, sizeof(*out));
    if (!msgs || n_msgs == 0 || !tok || !tok->fn || (n_evaluated > 0 && !evaluated))
        return mx_err_set(err, MX_EINVAL, "chat: bad arguments to prepare a turn");
    if (n_ctx == 0 || n_reserve >= n_ctx)
        return mx_err_set(err, MX_EINVAL, "chat: reserve %zu tokens leaves no room in n_ctx %zu",
                          n_reserve, n_ctx);
    answered = malloc(n_msgs * sizeof(*answered));
    view = malloc(n_msgs * sizeof(*view));
    roles = malloc(n_msgs * sizeof(*roles));
    counts = malloc(n_msgs * sizeof(*counts));
    vcounts = malloc(n_msgs * sizeof(*vcounts));
    if (!answered || !view || !roles || !counts || !vcounts) {
        rc = mx_err_set(err, MX_ENOMEM, "chat: out of memory planning a turn (%zu messages)",
                        n_msgs);
        goto done;
    }
    /* A user message followed directly by another one never got an answer: its turn failed
     * (the context was too small, the engine stopped with an error) or was cancelled before
     * the first token. Leaving it out keeps the roles alternating as templates require, so one
     * failed turn cannot make every later turn fail; the history keeps it (the front end shows
     * it as unanswered, for the user to retry or edit). The current turn, the last message, is
     * always kept. From here on msgs[0..n_msgs) and counts are the answered messages. */
    size_t n_answered = 0;
    for (size_t i = 0; i < n_msgs; i++) {
        if (i + 1 < n_msgs && msgs[i].role == MX_ROLE_USER && msgs[i + 1].role == MX_ROLE_USER) {
            n_unanswered++;
            continue;
        }
        if (n_tok) {
            counts[n_answered] = n_tok[i];
        } else {
            rc = estimate_tokens(tok, &msgs[i], &counts[n_answered], err);
            if (rc < 0)
                goto done;
        }
        answered[n_answered++] = msgs[i];
    }
    msgs = answered;
    n_msgs = n_answered;
    head = msgs[0].role == MX_ROLE_SYSTEM ? 1 : 0;

    /* Each pass either fits or leaves out at least one more message, so n_msgs + 1 passes
     * bound the loop. */
    for (size_t pass = 0; pass <= n_msgs; pass++) {
        size_t nv = 0;
        for (size_t i = 0; i < n_msgs; i++) {
            if (i >= head && i < head + dropped)
                continue;
            view[nv] = msgs[i];
            roles[nv] = msgs[i].role;
            vcounts[nv] = counts[i];
            nv++;
        }
        mx_tmpl_prompt_free(&p);
        mx_chat_turn_free(out);
        rc = mx_tmpl_render(kind, view, nv, opts, &p, err);
        if (rc == 0)
            rc = mx_chat_tokenize_prompt(&p, tok, &out->tokens, &out->n_tokens, err);
        if (rc < 0)
            goto done;
        if (out->n_tokens == 0) {
            rc = mx_err_set(err, MX_EINVAL, "chat: prompt tokenizes to nothing");
            goto done;
        }
        /* Calibrate the estimates to the measured total, so systematic under- or
         * over-estimates neither drop too much nor need many passes. */
        double sum = 0;
        for (size_t i = 0; i < nv; i++)
            sum += (double)vcounts[i];
        if (sum > 0)
            for (size_t i = 0; i < nv; i++)
                vcounts[i] = (size_t)((double)vcounts[i] * (double)out->n_tokens / sum + 0.5);
        struct mx_chat_fit f;
        rc = mx_chat_fit_context(roles, vcounts, nv, out->n_tokens, n_ctx, n_reserve, &f, err);
        if (rc < 0)
            goto done;
        if (f.count == 0)
            break;
        /* The fit counts from the view's head, which is msgs' head: extend the range. */
        dropped += f.count;
        if (pass == n_msgs) {
            rc = mx_err_set(err, MX_EFULL, "chat: prompt does not fit n_ctx %zu", n_ctx);
            goto done;
        }
    }
    out->n_unanswered = n_unanswered;
    out->drop_first = head;
    out->drop_count = dropped;
    if (dropped == 0) {
        /* Nothing left out: exact reuse of the common prefix only. */
        size_t keep = mx_chat_common_prefix(out->tokens, out->n_tokens, evaluated, n_evaluated);
        keep = mx_chat_keep_evaluated(tok, &out->tokens, &out->n_tokens, keep, evaluated,
                                      n_evaluated, n_ctx - n_reserve);
        if (keep == out->n_tokens)
            keep--;
        out->cache.n_keep = keep;
        out->cache.src = keep;
        out->cache.n_prefill_from = keep;
    } else {
        size_t ex = 0;
        for (size_t i = head; i < head + dropped; i++)
            ex += msgs[i].role == MX_ROLE_USER;
        rc = mx_chat_plan_shift(evaluated, n_evaluated, out->tokens, out->n_tokens, &out->cache,
                                err);
        if (rc < 0)
            goto done;
        snprintf(out->note, sizeof(out->note),
                 "context full: left out the %zu oldest message%s (%zu exchange%s) of the "
                 "conversation",
                 dropped, dropped == 1 ? "" : "s", ex, ex == 1 ? "" : "s");
    }
    if (out->n_unanswered > 0 && dropped == 0)
        snprintf(out->note, sizeof(out->note),
                 "%zu earlier message%s that got no answer %s left out of the prompt",
                 out->n_unanswered, out->n_unanswered == 1 ? "" : "s",
                 out->n_unanswered == 1 ? "is" : "are");
done:
    if (rc < 0)
        mx_chat_turn_free(out);
    mx_tmpl_prompt_free(&p);
    free(answered);
    free(view);
    free(roles);
    free(counts);
    free(vcounts);
    return rc;
}
