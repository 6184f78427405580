/* infotext.h - AUTOMATIC1111's "infotext": the generation parameters text it stores in a PNG's
 * "parameters" chunk, shows under each image and pastes back into its UI.
 *
 *     a cat in a hat, oil painting
 *     Negative prompt: blurry
 *     Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x512,
 *     Model hash: abcdef1234, Model: v1-5-pruned-emaonly, Clip skip: 2, Version: mixel 0.1
 *
 * (the last line is one line). The writer follows A1111's create_infotext (modules/processing.py,
 * v1.10): the prompt, a "Negative prompt: " line when there is one, then "Key: value" pairs in
 * A1111's key order, a value quoted as a JSON string when it holds ',', ':' or a newline
 * (infotext_utils.quote), the whole text stripped of surrounding whitespace. The parser follows
 * parse_generation_parameters (modules/infotext_utils.py): the last line holds the parameters
 * when its key/value regex finds at least 3 pairs; the lines before are the prompt, up to a line
 * starting "Negative prompt:" and the negative prompt after it (each line stripped); quoted
 * values are unquoted as JSON strings; "WxH" sizes are split.
 * Ref: https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/v1.10.1/modules/processing.py
 * Ref: https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/v1.10.1/modules/infotext_utils.py
 *
 * Where C cannot follow Python exactly (documented, none reachable from A1111's own output):
 * Python's \w and str.strip() know all of Unicode, here every non-ASCII character counts as a
 * word character and the Unicode spaces stripped are U+0085, U+00A0, U+1680, U+2000-U+200A,
 * U+2028, U+2029, U+202F, U+205F and U+3000; a JSON \u escape of a lone surrogate becomes
 * U+FFFD.
 *
 * Infotexts come from untrusted PNGs: the parser takes any bytes (invalid UTF-8 included), runs
 * in time linear in the text's length and never fails except for memory.
 */
#ifndef MX_INFOTEXT_H
#define MX_INFOTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"

/* Most extra parameters kept; a text with more distinct unknown keys loses the later ones (real
 * infotexts have a few dozen; the cap keeps hostile text linear). */
#define MX_SD_INFOTEXT_MAX_EXTRA 256

/* One parameter the struct has no field for ("ENSD", "Hires upscale", "Lora hashes", ...), kept
 * in text order with its value unquoted. */
struct mx_sd_infotext_kv {
    char *key;    /* "Hires upscale"; owned */
    char *value;  /* "2"; owned */
};

/* The parameters of one image. Strings are owned (NULL: absent); numbers have an "absent"
 * value as noted, set by mx_sd_infotext_init. */
struct mx_sd_infotext {
    char *prompt;          /* positive prompt, may span lines; "" when empty */
    char *negative;        /* negative prompt; NULL or "" when none */
    int steps;             /* "Steps"; 0 absent */
    char *sampler;         /* "Sampler": A1111's name ("Euler a", "DPM++ 2M", "DPM++ 2M Karras") */
    char *schedule;        /* "Schedule type" ("Karras", "Automatic"); NULL absent */
    float cfg;             /* "CFG scale"; NAN absent */
    bool has_seed;         /* "Seed" present */
    uint64_t seed;         /* "Seed" when has_seed */
    int w, h;              /* "Size: WxH" in pixels; 0 absent */
    char *model_hash;      /* "Model hash": 10 hex digits (AutoV2) or an old 8-digit hash */
    char *model;           /* "Model": the checkpoint's file name without extension */
    float strength;        /* "Denoising strength" (img2img); < 0 absent */
    int clip_skip;         /* "Clip skip"; written only when > 1; 1 when absent (A1111's default) */
    char *rng;             /* "RNG": "CPU" or "NV"; NULL for A1111's default ("GPU") */
    char *version;         /* "Version" ("v1.10.1", "mixel 0.1"); NULL absent */
    struct mx_sd_infotext_kv *extra; /* n_extra other parameters, in order; owned */
    size_t n_extra;
};

/* Sets every field to absent (see the struct). Call before filling a struct by hand. */
void mx_sd_infotext_init(struct mx_sd_infotext *it);

/* Frees the strings and extras and re-initialises the struct (NULL ok). */
void mx_sd_infotext_free(struct mx_sd_infotext *it);

/* Appends (or replaces, when key is already there) an extra parameter, copying both strings;
 * it is written after "RNG" and before "Version", in the order added (a key A1111 itself
 * writes, like "VAE hash" or "ENSD", goes to A1111's place for it). Returns 0, MX_EINVAL (NULL
 * or empty key, a key with ':' ',' or a newline), MX_ERANGE (MX_SD_INFOTEXT_MAX_EXTRA already
 * there), MX_ENOMEM. */
int mx_sd_infotext_set_extra(struct mx_sd_infotext *it, const char *key, const char *value);

/* The extra parameter named key, or NULL (borrowed from it). */
const char *mx_sd_infotext_get_extra(const struct mx_sd_infotext *it, const char *key);

/* Formats it as A1111 writes it. Absent fields are left out; the pairs follow A1111's order
 * (Steps, Sampler, Schedule type, CFG scale, Seed, Size, Model hash, Model, Denoising strength,
 * Clip skip, RNG, extras, Version). Numbers print as Python prints them for A1111's UI values:
 * integers plainly, floats in their shortest form ("7", "7.5", "0.75"). Returns 0 with *out
 * (caller frees), MX_EINVAL (NULL arguments) or MX_ENOMEM. */
int mx_sd_infotext_format(const struct mx_sd_infotext *it, char **out, struct mx_err *err);

/* Parses text (len bytes; any content) into *it, which is initialised here (its previous
 * content is not freed) and owned by the caller even on failure. A value that does not read as
 * its field's type ("Steps: many") is kept as an extra instead. Returns 0 (a text without a
 * parameters line is all prompt), MX_EINVAL (NULL arguments) or MX_ENOMEM. */
int mx_sd_infotext_parse(const char *text, size_t len, struct mx_sd_infotext *it,
                         struct mx_err *err);

/* A1111's quote(): value unchanged when it holds no ',', ':' or newline, else a JSON string
 * (json.dumps with ensure_ascii=False). Returns a new string (caller frees) or NULL (no memory). */
char *mx_sd_infotext_quote(const char *value);

#endif
