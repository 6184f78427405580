/* tokenizer.h - text <-> token ids for the LLMs (SentencePiece "llama", GPT-2 byte-level "gpt2")
 * and for Stable Diffusion's CLIP text encoder.
 *
 * A tokenizer is built from a format-neutral description (struct mx_tok_desc: token texts,
 * scores, token types, merges, special ids, flags); mx_tokenizer_from_gguf() reads that
 * description from a model file's tokenizer.ggml.* metadata and mx_clip_tokenizer_load() from a
 * CLIP vocabulary (a diffusers tokenizer/ folder or OpenAI's bpe_simple_vocab_16e6.txt).
 *
 * Semantics follow the peers the goldens come from: llama.cpp's llm_tokenizer_spm/_bpe,
 * llama_token_to_piece and llama_detokenize for the LLM kinds, stable-diffusion.cpp's
 * CLIPTokenizer for CLIP. A tokenizer is immutable after creation, so any number of threads may
 * encode and decode with it concurrently.
 */
#ifndef MX_TOKENIZER_H
#define MX_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"

struct mx_gguf;

/* Tokenizer families. */
enum mx_tok_kind {
    MX_TOK_SPM = 0,  /* tokenizer.ggml.model "llama": SentencePiece BPE by score, byte fallback */
    MX_TOK_BPE = 1,  /* tokenizer.ggml.model "gpt2": byte-level BPE by merge rank */
    MX_TOK_CLIP = 2, /* CLIP BPE: "</w>" word ends, byte-level; like stable-diffusion.cpp,
                        ASCII-only lower-casing and letter classes (OpenAI's uses \p{L}) */
};

/* Token types as stored in tokenizer.ggml.token_type (llama.cpp's llama_token_type). */
enum mx_tok_type {
    MX_TOKT_UNDEFINED = 0,
    MX_TOKT_NORMAL = 1,
    MX_TOKT_UNKNOWN = 2,
    MX_TOKT_CONTROL = 3,
    MX_TOKT_USER_DEFINED = 4,
    MX_TOKT_UNUSED = 5,
    MX_TOKT_BYTE = 6,
};

/* BPE pre-tokenizers (tokenizer.ggml.pre): llama.cpp's LLAMA_VOCAB_PRE_TYPE_* (src/llama-vocab.h),
 * each split exactly as llama.cpp splits it (core/text/tok_pre.c has the names and patterns). */
enum mx_tok_pre {
    MX_PRE_GPT2 = 0,   /* "gpt-2", "phi-2", "exaone4", ... (one gpt2 regex) */
    MX_PRE_LLAMA3 = 1, /* "llama-bpe", "llama3", "llama-v3", "falcon3", "pixtral", ... */
    MX_PRE_QWEN2 = 2,  /* "qwen2", "deepseek-r1-qwen", "stablelm2", "hunyuan", ... */
    MX_PRE_TEKKEN = 3, /* "tekken" (Mistral Nemo and later) */
    MX_PRE_DEFAULT,    /* "default" or no tokenizer.ggml.pre: four regexes */
    MX_PRE_DEEPSEEK_LLM,
    MX_PRE_DEEPSEEK_CODER,
    MX_PRE_DEEPSEEK3,  /* "deepseek-v3", "hunyuan-dense", "joyai-llm" */
    MX_PRE_YOUTU,
    MX_PRE_FALCON,
    MX_PRE_STARCODER,  /* also refact, command-r, smollm, codeshell, exaone, minerva, mellum2 */
    MX_PRE_JAIS2,
    MX_PRE_QWEN35,
    MX_PRE_BLOOM,      /* also poro-chat, gpt3-finnish */
    MX_PRE_VIKING,
    MX_PRE_CHAMELEON,
    MX_PRE_GPT4O,      /* also llama4, minimax-m2, kanana2, talkie */
    MX_PRE_GRANITE_EMB_MULTI,
    MX_PRE_TINY_AYA,
    MX_PRE_KIMI_K2,
    MX_PRE_SUPERBPE,
    MX_PRE_BAILINGMOE, /* also bailingmoe2, llada-moe */
    MX_PRE_SEED_CODER,
    MX_PRE_AFMOE,
    MX_PRE_LAGUNA,
    MX_PRE_EXAONE_MOE,
    MX_PRE_GEMMA4,     /* SentencePiece-style BPE: newline runs only, raw UTF-8 */
    MX_PRE_MINICPM5,
    MX_PRE_WHITESPACE, /* \S+ on raw UTF-8 */
    MX_PRE_COUNT
};

#define MX_TOK_NONE (-1) /* "no such special token" */

/* What a tokenizer is made of. Every pointer is borrowed: mx_tokenizer_new() copies what it
 * keeps. Fill with mx_tok_desc_init() first, which sets the defaults of the kind (llama.cpp's). */
struct mx_tok_desc {
    enum mx_tok_kind kind;
    int32_t n_tokens;               /* vocabulary size, > 0 */
    const char *const *tokens;      /* [n_tokens] token texts (SPM: "▁the"; BPE: "Ġthe") */
    const size_t *token_lens;       /* [n_tokens] byte lengths, or NULL for NUL-terminated */
    const float *scores;            /* [n_tokens] SPM merge scores, or NULL (all 0) */
    const int32_t *types;           /* [n_tokens] enum mx_tok_type, or NULL (all normal) */
    int32_t n_merges;               /* BPE/CLIP: merge rules, rank = index */
    const char *const *merges;      /* [n_merges] "left right" */
    enum mx_tok_pre pre;            /* BPE pre-tokenizer */
    int32_t bos_id, eos_id, unk_id; /* or MX_TOK_NONE */
    int32_t pad_id, eot_id;         /* or MX_TOK_NONE */
    bool add_bos, add_eos;          /* what MX_TOK_ADD_SPECIAL adds */
    bool add_space_prefix;          /* SPM: a space before the text (and after special tokens) */
    bool ignore_merges;             /* BPE: a whole pre-token found in the vocab is one token */
    bool escape_spaces;             /* BPE: " " is "\u2581" in the vocabulary (gemma4) */
    bool raw_bytes;                 /* BPE: tokens are raw UTF-8, not GPT-2 byte characters;
                                       missing bytes are <0xNN> tokens (gemma4, whitespace) */
    bool clean_spaces;              /* decode: " ," -> "," etc. (clean_up_tokenization_spaces) */
    bool rstrip_special;            /* white space after special tokens is dropped, but not
                                       after <unk> <s> <|endoftext|> (llama.cpp, models named
                                       phi-3) */
};

/* Sets the defaults of kind: SPM bos 1, eos 2, unk 0, add_bos, add_space_prefix; BPE bos/eos 11
 * (llama.cpp's GPT-2 defaults), clean_spaces; CLIP bos 49406, eos 49407, pad 49407, add_bos and
 * add_eos. Pointers and counts are zeroed. */
void mx_tok_desc_init(struct mx_tok_desc *d, enum mx_tok_kind kind);

/* What a tokenizer.ggml.pre name asks of a BPE vocabulary besides its splitter (llama.cpp's
 * per-name settings). */
struct mx_tok_pre_info {
    enum mx_tok_pre pre;
    bool ignore_merges, add_bos, keep_spaces, escape_spaces, raw_bytes, no_bos;
};

/* Looks up a tokenizer.ggml.pre name as llama.cpp knows it. Returns true and *info, or false
 * for a name llama.cpp refuses (info then holds MX_PRE_DEFAULT). NULL is not a name. */
bool mx_tok_pre_lookup(const char *name, struct mx_tok_pre_info *info);

/* Maps a name to a splitter; unknown names give MX_PRE_DEFAULT and *known false (known may be
 * NULL). */
enum mx_tok_pre mx_tok_pre_from_name(const char *name, bool *known);

/* A name of pre, for messages ("gpt-2", "llama-bpe", ...). */
const char *mx_tok_pre_name(enum mx_tok_pre pre);

struct mx_tokenizer;

/* Builds a tokenizer from d (copied). Returns 0 and *out (caller frees), or MX_EINVAL /
 * MX_EFORMAT (bad counts, a special id outside the vocabulary, a token text over 64 KiB) /
 * MX_ENOMEM with the reason in err; *out is NULL on failure. */
int mx_tokenizer_new(const struct mx_tok_desc *d, struct mx_tokenizer **out, struct mx_err *err);

/* Reads tokenizer.ggml.{model,tokens,scores,token_type,merges,pre,*_token_id,add_*} from g.
 * Returns 0 and *out (independent of g afterwards; caller frees), MX_EUNSUP for another model
 * kind (bert, t5, ...), MX_EFORMAT for inconsistent metadata, MX_ENOENT when there is no
 * vocabulary, each with "name: problem" in err. */
int mx_tokenizer_from_gguf(const struct mx_gguf *g, struct mx_tokenizer **out,
                           struct mx_err *err);

void mx_tokenizer_free(struct mx_tokenizer *t); /* NULL ok */

enum mx_tok_kind mx_tokenizer_kind(const struct mx_tokenizer *t);
int32_t mx_tokenizer_n_vocab(const struct mx_tokenizer *t);
int32_t mx_tokenizer_bos(const struct mx_tokenizer *t); /* or MX_TOK_NONE */
int32_t mx_tokenizer_eos(const struct mx_tokenizer *t);
int32_t mx_tokenizer_unk(const struct mx_tokenizer *t);
int32_t mx_tokenizer_pad(const struct mx_tokenizer *t);
bool mx_tokenizer_add_bos(const struct mx_tokenizer *t);
/* True for ids that end a generation: eos, eot, and the tokens llama.cpp recognises by text
 * (<|eot_id|>, <|eom_id|>, <|im_end|>, <|end|>, <end_of_turn>, <|endoftext|>, </s>, <EOT>,
 * <eos>, <|end_of_text|> and a few more, tokenizer.c's eog_names; these are control tokens).
 * False for ids outside the vocabulary. */
bool mx_tokenizer_is_eog(const struct mx_tokenizer *t, int32_t id);
/* enum mx_tok_type of id; MX_TOKT_UNDEFINED for ids outside the vocabulary. */
int mx_tokenizer_token_type(const struct mx_tokenizer *t, int32_t id);
/* The vocabulary text of id (not NUL-terminated; *len its bytes), or NULL for an id outside the
 * vocabulary. Valid while t lives. */
const char *mx_tokenizer_token_text(const struct mx_tokenizer *t, int32_t id, size_t *len);
/* The id whose vocabulary text is exactly s[0..len), or MX_TOK_NONE. */
int32_t mx_tokenizer_find(const struct mx_tokenizer *t, const char *s, size_t len);

/* encode flags */
#define MX_TOK_ADD_SPECIAL 1u   /* add BOS/EOS as the vocabulary says (llama add_special) */
#define MX_TOK_PARSE_SPECIAL 2u /* "<s>" etc. in the text become their control ids */

/* Tokenizes text[0..len) (any bytes; invalid UTF-8 is handled like the peer does). Returns 0 with
 * *ids (malloc'd, caller frees; NULL when *n_ids is 0) and *n_ids, or MX_ENOMEM / MX_ERANGE (more
 * than INT32_MAX ids). For CLIP, ADD_SPECIAL adds <|startoftext|> ... <|endoftext|> without
 * padding (see mx_clip_pad). */
int mx_tokenizer_encode(const struct mx_tokenizer *t, const char *text, size_t len,
                        unsigned flags, int32_t **ids, size_t *n_ids, struct mx_err *err);

/* decode / piece flags */
#define MX_DETOK_SPECIAL 1u        /* render control/unknown tokens as their text (unparse) */
#define MX_DETOK_REMOVE_SPECIAL 2u /* drop a leading BOS / trailing EOS when add_bos/add_eos */
#define MX_DETOK_LSTRIP 4u         /* piece: drop one leading space */
#define MX_DETOK_NO_CLEAN 8u       /* decode: skip clean_spaces (as the stream does) */

/* The bytes token id stands for (llama_token_to_piece): SPM "▁" -> " ", <0xNN> -> that byte,
 * BPE byte-level chars -> bytes, CLIP "</w>" -> " "; control and unknown tokens give nothing
 * unless MX_DETOK_SPECIAL. Writes at most cap bytes to buf (no NUL) and returns the piece's full
 * length (> cap: truncated, call again with more room), or MX_EINVAL for an id outside the
 * vocabulary. */
int mx_tokenizer_piece(const struct mx_tokenizer *t, int32_t id, unsigned flags, char *buf,
                       size_t cap);

/* Detokenizes ids[0..n) like llama_detokenize: pieces concatenated, the first piece's leading
 * space removed when the vocabulary adds a space prefix (unless REMOVE_SPECIAL dropped a BOS),
 * the vocabulary's clean_spaces applied unless MX_DETOK_NO_CLEAN. Returns 0 with *text
 * (malloc'd, NUL-terminated, caller frees) and *len (bytes; the text may hold NULs or invalid
 * UTF-8 from byte tokens), MX_EINVAL (an id outside the vocabulary, named in err) or
 * MX_ENOMEM. */
int mx_tokenizer_decode(const struct mx_tokenizer *t, const int32_t *ids, size_t n,
                        unsigned flags, char **text, size_t *len, struct mx_err *err);

/* ---- streaming detokenizer -------------------------------------------------------------- */

/* Turns ids into text one at a time, for printing a generation as it happens: the output is
 * always whole, valid UTF-8. Bytes of a character split over several byte-fallback tokens are
 * held until it is complete; invalid sequences become U+FFFD (one per maximal invalid subpart,
 * like Python's errors="replace"). For valid text the concatenated output equals
 * mx_tokenizer_decode() of the same ids with the same flags plus MX_DETOK_NO_CLEAN: like
 * llama.cpp's token-by-token streaming, the stream does not clean up spaces (that only changes
 * gpt2/llama3 vocabularies, where decode drops " ," etc.). Not thread-safe; one per stream. */
struct mx_detok_stream {
    const struct mx_tokenizer *tok; /* borrowed */
    unsigned flags;                 /* MX_DETOK_* (LSTRIP: strip the first piece's space) */
    bool first;                     /* no piece seen yet */
    unsigned char pend[4];          /* an incomplete UTF-8 sequence held back */
    int n_pend;
    char *buf;                      /* output of the last call (owned) */
    size_t cap;
};

/* Starts a stream (no allocation). flags as for mx_tokenizer_decode; MX_DETOK_LSTRIP removes the
 * first piece's leading space like llama_detokenize does at the start of a text. */
void mx_detok_stream_init(struct mx_detok_stream *s, const struct mx_tokenizer *t, unsigned flags);

/* Feeds one id. Returns 0 with *out / *n the text now complete (valid until the next call on s),
 * MX_EINVAL for an id outside the vocabulary (nothing consumed), MX_ENOMEM. */
int mx_detok_stream_push(struct mx_detok_stream *s, int32_t id, const char **out, size_t *n);

/* Ends the stream: a dangling partial sequence comes out as U+FFFD. Same returns as push. */
int mx_detok_stream_flush(struct mx_detok_stream *s, const char **out, size_t *n);

void mx_detok_stream_deinit(struct mx_detok_stream *s); /* frees the buffer; NULL ok */

/* ---- CLIP (Stable Diffusion) -------------------------------------------------------------- */

#define MX_CLIP_BOS 49406
#define MX_CLIP_EOS 49407
#define MX_CLIP_CTX 77
#define MX_CLIP_VOCAB_FILE "bpe_simple_vocab_16e6.txt"

/* Writes the default vocabulary path, $XDG_DATA_HOME/mixel/bpe_simple_vocab_16e6.txt (default
 * ~/.local/share/mixel/...), into buf. Returns 0, MX_ERANGE (buf too small) or MX_ENOENT
 * (neither XDG_DATA_HOME nor HOME set). */
int mx_clip_vocab_default_path(char *buf, size_t size, struct mx_err *err);

/* Loads a CLIP tokenizer from path: a diffusers tokenizer/ folder (vocab.json + merges.txt), a
 * model folder holding tokenizer/, that folder's vocab.json or merges.txt, OpenAI's
 * bpe_simple_vocab_16e6.txt (the first 48 894 merges are used, as CLIP does), or NULL for the
 * default path. A missing vocabulary gives MX_ENOENT
 * with a message naming scripts/install-clip-vocab.sh; a malformed one MX_EFORMAT. */
int mx_clip_tokenizer_load(const char *path, struct mx_tokenizer **out, struct mx_err *err);

/* The same from the text of a bpe_simple_vocab file (merges, first line a "#version" header). */
int mx_clip_tokenizer_from_merges(const char *text, size_t len, struct mx_tokenizer **out,
                                  struct mx_err *err);

/* Lays out CLIP ids (no BOS/EOS, as mx_tokenizer_encode gives them without ADD_SPECIAL) into
 * fixed windows of n_ctx (77) like stable-diffusion.cpp: BOS, n_ctx-2 ids, EOS, padded with
 * pad_id (49407 for SD 1.x, 0 for SD 2.x). truncate: one window, extra ids dropped; else as
 * many windows as the ids need (at least one). Writes at most cap ids to out and returns the
 * count it needs (> cap: call again with more room), or MX_EINVAL (n_ctx < 3). */
int64_t mx_clip_pad(const int32_t *ids, size_t n, int n_ctx, int32_t pad_id, bool truncate,
                    int32_t *out, size_t cap);

#endif
