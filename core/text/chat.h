/* chat.h - from a rendered conversation to the tokens the engine must evaluate: incremental
 * multi-turn prefill (only what the KV cache does not already hold), the context-overflow policy
 * (which old turns to drop) and the cache-shift plan that keeps the turns after a dropped range.
 *
 * Pure logic, no model: the tokenizer comes in as a callback (struct mx_chat_tokenizer) so this
 * layer is testable with a fake one and does not depend on core/tokenizer. The adapter for
 * core/tokenizer is a few lines: encode(text, len, MX_TOK_PARSE_SPECIAL), then prepend
 * mx_tokenizer_bos() when add_bos (not MX_TOK_ADD_SPECIAL, which may also append EOS).
 *
 * Typical turn (engine side):
 *   render (core/template) -> mx_chat_plan_prefill(prompt, evaluated ids) -> if it does not fit
 *   n_ctx: mx_chat_fit_context() says which messages to drop, re-render without them,
 *   mx_chat_plan_shift() says what of the cache survives -> truncate/shift cache, prefill the
 *   rest, generate; evaluated ids = prompt ids + generated ids.
 */
#ifndef MX_CHAT_H
#define MX_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"
#include "core/text/template.h"

/* Tokenizes text[0..len) with special-token parsing ("<s>", "[INST]" become their ids) and, when
 * add_bos, the BOS id first. On success returns 0 with *ids malloc'd (caller frees with free();
 * may be NULL when *n_ids is 0); else a negative MX_E* with err set. */
typedef int (*mx_chat_tokenize_fn)(void *ud, const char *text, size_t len, bool add_bos,
                                   int32_t **ids, size_t *n_ids, struct mx_err *err);

/* Detokenizes ids[0..n) as a generation's text is shown and stored (whole UTF-8, invalid bytes
 * as U+FFFD, special tokens as their text) into *text (malloc'd) and, in *ends (malloc'd, n
 * entries), the text's length once each id is in; an id whose bytes wait for the next ones adds
 * nothing yet. Returns 0, or a negative MX_E* (bad id, out of memory) with nothing allocated. */
typedef int (*mx_chat_text_fn)(void *ud, const int32_t *ids, size_t n, char **text,
                               size_t **ends);

struct mx_chat_tokenizer {
    mx_chat_tokenize_fn fn; /* required */
    void *ud;               /* passed through, borrowed */
    mx_chat_text_fn text;   /* optional: lets a plan keep the cache's own ids for text the new
                             * prompt spells with different ids (mx_chat_keep_evaluated) */
};

/* Length of the longest common prefix of a[0..na) and b[0..nb). NULL with a zero count is ok. */
size_t mx_chat_common_prefix(const int32_t *a, size_t na, const int32_t *b, size_t nb);

/* Keeps the ids the cache already holds where the new prompt holds the same text with other
 * ids. A generated answer is the model's own token sequence; the next turn renders its text and
 * re-tokenizes it, and the tokenizer may spell it differently (a word merged otherwise, byte
 * tokens, the text around the answer's end) — then everything from the first difference on
 * would be evaluated again, every turn. Past the common prefix keep, this compares the text of
 * evaluated[keep..) with that of (*ids)[keep..) (tok->text: as the answer was stored, so bytes
 * the model wrote that are not UTF-8 compare as the U+FFFD the history holds) and, if they agree up to a point where both
 * have a token boundary, splices the evaluated ids in: (*ids) becomes ids[0..keep) +
 * evaluated[keep..m) + ids[j..), the same text, so the model reads what it wrote (as llama.cpp's
 * server keeps the tokens it generated). The longest such agreement is taken, never making the
 * prompt longer than max_ids. Returns the new common prefix length (>= keep); keeps *ids as
 * they are when nothing can be kept, tok->text is NULL, or memory runs out. */
size_t mx_chat_keep_evaluated(const struct mx_chat_tokenizer *tok, int32_t **ids, size_t *n_ids,
                              size_t keep, const int32_t *evaluated, size_t n_evaluated,
                              size_t max_ids);

/* Tokenizes a rendered prompt the way the engine must (text + tok_offset, add_bos). Returns 0
 * with *ids (caller frees with free()) and *n_ids; MX_EINVAL for a bad prompt or a callback
 * that returned ids == NULL with n_ids > 0; or the callback's error. */
int mx_chat_tokenize_prompt(const struct mx_tmpl_prompt *prompt,
                            const struct mx_chat_tokenizer *tok, int32_t **ids, size_t *n_ids,
                            struct mx_err *err);

/* What to evaluate for a new prompt, given the ids the KV cache holds. */
struct mx_chat_prefill {
    int32_t *tokens;  /* the whole prompt's ids, owned: mx_chat_prefill_free */
    size_t n_tokens;  /* > 0 */
    size_t n_keep;    /* cache positions [0, n_keep) are reused as they are */
    size_t n_discard; /* cache positions [n_keep, n_keep + n_discard) must be removed first */
    /* then prefill tokens[n_keep .. n_tokens) at positions n_keep, n_keep + 1, ... */
};

/* Plans the incremental prefill of prompt against evaluated[0..n_evaluated) (the ids whose K/V
 * the cache holds: earlier prompts plus generated tokens; NULL if none). The whole text is
 * re-tokenized and compared with the evaluated ids, so anything that changed (an edited
 * message, a system prompt that moves, a generated token sequence the tokenizer would split
 * differently) is re-evaluated from the first difference on. At least one token is always left
 * to prefill, so the engine gets fresh logits even when the prompt is unchanged (regenerate).
 * Returns 0 with *out filled (free with mx_chat_prefill_free, also after errors), MX_EINVAL
 * for a prompt that tokenizes to nothing, or the tokenizer's error. */
int mx_chat_plan_prefill(const struct mx_tmpl_prompt *prompt, const struct mx_chat_tokenizer *tok,
                         const int32_t *evaluated, size_t n_evaluated,
                         struct mx_chat_prefill *out, struct mx_err *err);

/* Frees out->tokens and zeroes *out; NULL ok. */
void mx_chat_prefill_free(struct mx_chat_prefill *p);

/* Context-overflow decision: which messages to drop. */
struct mx_chat_fit {
    size_t first;            /* index of the first dropped message */
    size_t count;            /* messages dropped: [first, first + count); 0: none needed */
    size_t n_exchanges;      /* user-led exchanges among them */
    size_t n_tokens_dropped; /* sum of their n_tok */
    char note[160];          /* for the user, e.g. "context full: dropped the 2 oldest
                              * exchanges (4 messages, 812 tokens)"; empty when count == 0 */
};

/* Decides which of the oldest messages to drop so that the prompt (n_prompt tokens, as
 * tokenized) plus n_reserve tokens for the answer fits in n_ctx. Messages are dropped in whole
 * exchanges (a user message and the answers/tool traffic after it, so role alternation holds),
 * oldest first, never a leading system message and never the current turn (the last user message
 * and everything after it). n_tok[i] is message i's share of the prompt (e.g. the token count the
 * history stores); it need not be exact: re-render, re-tokenize and call again while the prompt
 * still does not fit (each call drops at least one more exchange or fails).
 * Returns 0 (out->count == 0 when it already fits), MX_EFULL when even dropping everything
 * allowed is not enough (err says the numbers), MX_EINVAL for bad arguments. */
int mx_chat_fit_context(const enum mx_role *roles, const size_t *n_tok, size_t n_msgs,
                        size_t n_prompt, size_t n_ctx, size_t n_reserve,
                        struct mx_chat_fit *out, struct mx_err *err);

/* Cache plan after messages were dropped from the middle of the conversation. */
struct mx_chat_shift {
    size_t n_keep; /* positions [0, n_keep) stay as they are */
    size_t src;    /* old positions [src, src + n_move) move to [n_keep, n_keep + n_move) */
    size_t n_move; /* 0: nothing worth moving (then src == n_keep) */
    size_t n_prefill_from; /* n_keep + n_move: prefill new[n_prefill_from .. n_new) */
};

/* Finds how much of the cache (old ids) survives as new ids: the common prefix stays, then the
 * longest run old[src..] == new[n_keep..] is moved down by src - n_keep positions (RoPE
 * re-rotation by the backend, as llama.cpp's context shift), the rest is re-evaluated. At least
 * one token is left to prefill. The search compares at most ~64M ids (long pathological
 * inputs take the best run found so far). Moved K/V are not bit-identical to a fresh prefill
 * (they attended to the dropped tokens); an engine wanting exact results re-prefills instead.
 * Returns 0, or MX_EINVAL for n_new == 0 or NULL arrays with non-zero counts. */
int mx_chat_plan_shift(const int32_t *old, size_t n_old, const int32_t *new_ids, size_t n_new,
                       struct mx_chat_shift *out, struct mx_err *err);

/* One chat turn, planned end to end. */
struct mx_chat_turn {
    int32_t *tokens;           /* the prompt the cache must hold, owned: mx_chat_turn_free */
    size_t n_tokens;           /* > 0, and n_tokens + n_reserve <= n_ctx */
    struct mx_chat_shift cache; /* how to get there from the evaluated ids (n_move == 0 when
                                 * nothing was dropped: then the plan is exact) */
    size_t n_unanswered;       /* user messages left out because another user message
                                * followed them directly (a failed or cancelled turn) */
    size_t drop_first;         /* messages [drop_first, drop_first + drop_count) of the
                                * conversation without the unanswered ones are left out to fit */
    size_t drop_count;         /* 0: the whole (answered) conversation is in the prompt */
    char note[160];            /* for the user when messages were left out, else empty */
};

/* Renders msgs with kind/opts, tokenizes, and when the prompt plus n_reserve does not fit n_ctx
 * leaves out the oldest exchanges (mx_chat_fit_context) and renders again, until it fits; then
 * plans the cache against evaluated[0..n_evaluated). n_tok: per-message token estimates (e.g.
 * stored counts); NULL: each message's content is tokenized to estimate it. The same
 * conversation always drops the same messages, so the dropped range only grows turn by turn.
 * A user message followed directly by another user message (a turn that failed or was
 * cancelled before any answer) is left out first, so such a turn never breaks the role
 * alternation templates require; out->n_unanswered counts them.
 * Returns 0 with *out (free with mx_chat_turn_free, also after errors); MX_EFULL when even the
 * system prompt plus the current turn do not fit; render/tokenizer errors otherwise. */
int mx_chat_prepare(enum mx_tmpl_kind kind, const struct mx_chat_msg *msgs, size_t n_msgs,
                    const size_t *n_tok, const struct mx_tmpl_opts *opts,
                    const struct mx_chat_tokenizer *tok, const int32_t *evaluated,
                    size_t n_evaluated, size_t n_ctx, size_t n_reserve,
                    struct mx_chat_turn *out, struct mx_err *err);

/* Frees out->tokens and zeroes *t; NULL ok. */
void mx_chat_turn_free(struct mx_chat_turn *t);

#endif
