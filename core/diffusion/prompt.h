/* prompt.h - AUTOMATIC1111 prompt syntax for Stable Diffusion: attention weights and BREAK,
 * and the weighted CLIP token chunks the text encoder reads.
 *
 * SYNTAX (A1111 modules/prompt_parser.py, parse_prompt_attention, reproduced rule for rule):
 *   (x)      weight of x times 1.1          ((x))   times 1.21 (brackets nest by multiplying)
 *   [x]      weight of x divided by 1.1     (x:1.5) times 1.5 (nested ones multiply too)
 *   \( \) \[ \] \\    the literal character; a lone \ before anything else is dropped
 *   BREAK    (uppercase, a word of its own) ends the current 75-token chunk
 *   unbalanced brackets: a stray ) or ] is text; an unclosed ( or [ applies to the rest
 *   runs of equal weight are merged into one segment.
 * Where A1111 raises on a malformed number such as "(x:1.2.3)" the longest valid prefix counts
 * (as stable-diffusion.cpp's std::stod does), or 1 when it has no digit. Whitespace (\s) and
 * word characters (\b around BREAK) are ASCII, with any byte >= 0x80 counted as a word byte.
 * Segments and merging follow A1111's double arithmetic; the weight given to tokens is the
 * float32 product stable-diffusion.cpp computes (see weight_f), within an ulp of A1111's.
 *
 * CHUNKS (A1111 FrozenCLIPEmbedderWithCustomWords.tokenize_line): every segment is tokenized on
 * its own and its weight goes on each of its tokens; tokens fill chunks of 75; when a chunk is
 * full and a comma lies within its last 20 tokens, the tokens after that comma move on to the
 * next chunk (comma_padding_backtrack = 20); BREAK pads the chunk. Each chunk becomes 77 ids:
 * BOS, up to 75 tokens, EOS, then the pad id (SD 1.x: EOS; SD 2.x OpenCLIP: 0). BOS, EOS and
 * pads get weight 1. An empty prompt is one chunk.
 *
 * HOW TO USE
 *   struct mx_sd_prompt p;  mx_sd_prompt_parse("a (red:1.3) cube", &p, &err);  ...  deinit
 *   struct mx_sd_prompt_tokens t;
 *   mx_sd_prompt_tokenize(tok, "a (red:1.3) cube BREAK sky", 49407, 32, &t, &err);
 *   ... t.ids[c * 77 + i], t.w[c * 77 + i] for chunk c ...  mx_sd_prompt_tokens_deinit(&t);
 */
#ifndef MX_SD_PROMPT_H
#define MX_SD_PROMPT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/err.h"
#include "core/text/tokenizer.h"

struct mx_sd_embedding;
struct mx_sd_emb_db;

#define MX_SD_CHUNK_CONTENT 75 /* prompt tokens per chunk (77 less BOS and EOS) */
#define MX_SD_CHUNK_LEN 77     /* ids per chunk, what CLIP reads at once */
#define MX_SD_COMMA_BACKTRACK 20 /* A1111's comma_padding_backtrack default */
#define MX_SD_MAX_CHUNKS 32    /* default chunk limit (2400 prompt tokens) */
#define MX_SD_MAX_PROMPT_BYTES 65536 /* longer prompts are refused before parsing: unclosed
                                        brackets cost A1111's parser (and this one) time
                                        quadratic in the prompt */

/* One parsed piece of the prompt. */
struct mx_sd_prompt_seg {
    char *text;    /* NUL-terminated, owned by the prompt ("BREAK" for a break marker) */
    double weight; /* A1111's attention multiplier, computed in double like Python */
    float weight_f; /* the same product in float32 (1.1f, 1.0f / 1.1f, strtof), as the peer
                       stable-diffusion.cpp computes it: the weight the tokens get, so that
                       they equal the peer's bit for bit (A1111's float(weight) can differ
                       from it in the last bit) */
    bool is_break; /* a BREAK marker: text "BREAK" with weight exactly -1 (as A1111 tests it) */
};

/* A parsed prompt: segments in order; never empty (an empty prompt is one segment "" 1.0). */
struct mx_sd_prompt {
    struct mx_sd_prompt_seg *segs; /* [n], owned */
    int64_t n;
};

/* Parses text (A1111 syntax, NUL-terminated, any bytes) into *out. Returns 0, or MX_ENOMEM with
 * err set (then *out is empty and needs no deinit, though deinit is harmless). */
int mx_sd_prompt_parse(const char *text, struct mx_sd_prompt *out, struct mx_err *err);

/* Frees the segments; p may be zeroed. */
void mx_sd_prompt_deinit(struct mx_sd_prompt *p);

/* One textual-inversion vector in a chunk (embedding.h): row `row` of e's vectors. */
struct mx_sd_emb_ref {
    const struct mx_sd_embedding *e; /* borrowed from the embedding set */
    int row;
};

/* A prompt as CLIP chunks. */
struct mx_sd_prompt_tokens {
    int32_t *ids;     /* [n_chunks * 77] ids, chunk after chunk (owned); an id -(1 + k) < 0
                         stands for the embedding vector emb[k] */
    float *w;         /* [n_chunks * 77] weight of each id (owned) */
    int64_t n_chunks; /* >= 1 */
    int64_t n_tokens; /* prompt tokens without BOS/EOS/pads, A1111's "token_count" */
    struct mx_sd_emb_ref *emb; /* [n_emb] the embedding vectors the ids call (owned), or NULL */
    int64_t n_emb;
};

/* Parses prompt and lays it out in chunks (see CHUNKS above) with tok (CLIP; its BOS and EOS
 * are used) and pad_id after the EOS. max_chunks <= 0 means MX_SD_MAX_CHUNKS. Returns 0, or
 * MX_ERANGE when the prompt needs more than max_chunks chunks ("prompt: more than 32 chunks of
 * 75 tokens (2400 tokens)") or has more than MX_SD_MAX_PROMPT_BYTES bytes, MX_EINVAL when tok
 * has no BOS/EOS, MX_ENOMEM; *out is zeroed on failure. */
int mx_sd_prompt_tokenize(const struct mx_tokenizer *tok, const char *prompt, int32_t pad_id,
                          int max_chunks, struct mx_sd_prompt_tokens *out, struct mx_err *err);

/* mx_sd_prompt_tokenize with textual-inversion embeddings from db (NULL: none): a run of
 * tokens equal to an embedding's name tokenized (A1111, longest name first) or the word
 * "embedding:NAME" (ComfyUI) becomes its n vectors (ids < 0, see struct mx_sd_prompt_tokens),
 * with the weight of the text around it; one that would cross the end of a chunk starts the
 * next (A1111). Returns as mx_sd_prompt_tokenize, or the error of the embedding: MX_ENOENT for
 * embedding:NAME with no such file, a pickle, a bad file or a width that is not the encoder's
 * (mx_sd_emb_db_get). */
int mx_sd_prompt_tokenize_emb(const struct mx_tokenizer *tok, const char *prompt,
                              int32_t pad_id, int max_chunks, struct mx_sd_emb_db *db,
                              struct mx_sd_prompt_tokens *out, struct mx_err *err);

/* Frees ids and w; t may be zeroed. */
void mx_sd_prompt_tokens_deinit(struct mx_sd_prompt_tokens *t);

/* One <lora:NAME:TE:UNET> tag of a prompt (A1111 extra-network syntax; <lyco:...> alike). */
struct mx_sd_lora_tag {
    char *name;    /* NAME (owned): a file stem looked up in the LoRA folders */
    float w_te;    /* the first number, default 1 ("te=X" names it) */
    float w_unet;  /* the second, default the first ("unet=X" names it) */
};

/* Takes every <lora:...> / <lyco:...> tag out of text, as A1111 does before encoding: *stripped
 * (caller frees) is text without them, tags[*n] (free with mx_sd_lora_tags_free) what they
 * asked for, in order. Other <...> text is left as it is. Returns 0, MX_EINVAL with err
 * "prompt: <lora:x:abc>: bad weight \"abc\"" for a weight that is not a number or a tag with
 * no name, or MX_ENOMEM. */
int mx_sd_prompt_loras(const char *text, char **stripped, struct mx_sd_lora_tag **tags, int *n,
                       struct mx_err *err);
void mx_sd_lora_tags_free(struct mx_sd_lora_tag *tags, int n); /* NULL ok */

#endif
