/* opts.h - what the LLM commands (run, chat, bench, logits) share on the command line: one table
 * of the common options (-m, -t, -c, --device, the sampling knobs, -n, --stop, ...) that parses,
 * validates (every number against its range, the message naming the option) and prints their
 * help; the stderr logger; model names as discovery shows them; and the output sanitiser every
 * command prints untrusted strings (paths, titles, model names, error messages) through.
 * cli/ only: it prints.
 */
#ifndef MX_CLI_OPTS_H
#define MX_CLI_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "app/llm.h"

/* Which commands take an option (bits of mx_cli_opt_spec.who). */
#define MX_CLI_RUN    1u
#define MX_CLI_CHAT   2u
#define MX_CLI_BENCH  4u
#define MX_CLI_LOGITS 8u
#define MX_CLI_IMAGE  16u

/* The common options' values. */
struct mx_cli_opts {
    const char *model;          /* -m: a path, or a name `mixel list` shows */
    struct mx_gen_settings s;   /* the one settings struct (app/llm.h) */
    bool seed_set;              /* --seed given */
    bool verbose, quiet;        /* -v / -q: log levels on stderr */
    int n_stops;                /* --stop strings in s.stop */
    const char *remote_url;     /* --remote: an OpenAI-compatible server's base URL, or NULL */
    const char *remote_model;   /* --remote-model: the server's model name, or NULL */
    const char *json_schema;    /* --json-schema FILE (mx_cli_grammar_setup turns it into
                                 * s.grammar_text) */
    bool json;                  /* --json: the answer is one JSON object */
};

/* Defaults: mx_gen_settings_default. */
void mx_cli_opts_init(struct mx_cli_opts *o);

/* If argv[*i] is a common option of a command in `who`, consumes it (and its value: "--opt V" or
 * "--opt=V"), advances *i and returns 1; returns 0 when it is not one; -1 after printing a
 * one-line error naming the option and its range ("mixel run: --temp: 'abc' is not a number
 * from 0 to 100"). */
int mx_cli_parse_common(const char *cmd, unsigned who, int argc, char **argv, int *i,
                        struct mx_cli_opts *o);

/* A command's own options, parsed by mx_cli_parse after the common ones. */
enum mx_cli_xkind {
    MX_X_FLAG,   /* bool *dst = true; no value */
    MX_X_STR,    /* const char **dst = the value (--opt V or --opt=V) */
    MX_X_INT,    /* long long *dst, a whole number in [lo, hi] */
    MX_X_OPTSTR, /* const char **dst: --opt=V, --opt V (V not starting with '-'), or --opt: "" */
    MX_X_LIST,   /* struct mx_cli_list *dst: a repeatable option, each value appended */
};

/* The values of a repeatable option (MX_X_LIST), in order: `--lora A --lora B`. */
#define MX_CLI_LIST_MAX 16
struct mx_cli_list {
    const char *v[MX_CLI_LIST_MAX]; /* borrowed from argv */
    int n;
};

struct mx_cli_extra {
    const char *shrt, *lng;     /* "-p" (or NULL), "--prompt" */
    enum mx_cli_xkind kind;
    void *dst;                  /* borrowed: where the value goes (type by kind) */
    long long lo, hi;           /* range of MX_X_INT */
};

/* Parses argv[1..argc): the common options of `who` (mx_cli_parse_common), -h/--help (help(stdout)
 * is printed), then the command's extras x[0..n_x). Returns 0 when every argument was taken,
 * 1 after printing the help (exit 0), -1 after printing a one-line error that names the option
 * or the unknown argument and where to look (exit 2). cmd "" stands for the bare `mixel`. */
int mx_cli_parse(const char *cmd, unsigned who, int argc, char **argv, struct mx_cli_opts *o,
                 const struct mx_cli_extra *x, size_t n_x, void (*help)(FILE *f));

/* --json-schema FILE / --json into o->s.grammar_text (the schema converted to GBNF, kept until
 * the process ends; grammar_name says where it came from). Returns 0 (also when neither was
 * given), or 1 after printing why not: the file cannot be read, is not JSON, or uses a keyword
 * the conversion refuses ("mixel run: s.json: json schema: 'not' at /properties/a is not
 * supported"). --grammar, --json-schema and --json exclude each other (mx_cli_parse says so). */
int mx_cli_grammar_setup(const char *cmd, struct mx_cli_opts *o);

/* The GBNF text of the JSON Schema file path (kept until the process ends), or NULL after
 * printing why not (as mx_cli_grammar_setup). */
const char *mx_cli_schema_gbnf(const char *cmd, const char *path);

/* Prints the help lines of the common options of `who`. */
void mx_cli_common_help(FILE *f, unsigned who);

/* Installs the stderr logger for core/ messages (-v: debug too; -q: warnings only). */
void mx_cli_log_init(const struct mx_cli_opts *o);

/* A model argument as a file to open: an existing path as it is, else a name model discovery
 * shows (`mixel list`: "tinystory:latest", "ORG/NAME: f.gguf", a file name), else the argument
 * unchanged (opening it then says "No such file" with its name). Returns the path (the argument,
 * or a static copy valid until the next call), or NULL after printing why not (several models
 * have that name). */
const char *mx_cli_model_path(const char *cmd, const char *model);

/* The same for a Stable Diffusion checkpoint: a path, else a name `mixel list` shows in its SD
 * section (mx_discover_sd_resolve). Shares the static copy with mx_cli_model_path. */
const char *mx_cli_sd_model_path(const char *cmd, const char *model);

/* mx_cli_model_path on o->model, replacing it. Returns 0, or 1 after printing why not. */
int mx_cli_resolve_model(const char *cmd, struct mx_cli_opts *o);

/* s made safe for the terminal (mx_text_sanitize: ESC, BEL, C1 controls and bidi overrides
 * shown inert, newlines shown as ^J). The result lives in one of 8 rotating static buffers:
 * valid until the 8th next call; NULL gives "(null)". Not thread-safe (the CLI's main thread). */
const char *mx_safe(const char *s);

/* Prints "mixel CMD: <message>\n" to stderr with the whole message sanitised (error messages
 * quote paths and model metadata). */
void mx_cli_err(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Reads a whole file (NUL-terminated copy; caller frees). Returns 0, or 1 after printing why. */
int mx_cli_read_file(const char *path, const char *cmd, char **buf, size_t *len);

/* Ctrl-C (and with term, SIGTERM) as a flag a long command polls between steps (a download, a
 * remote request, an evaluation), instead of killing it mid-write: catch before the work,
 * restore after it. The handler has no SA_RESTART, so a blocked read returns and the caller's
 * poll sees the flag. One catch at a time. */
void mx_cli_interrupt_catch(bool term);
void mx_cli_interrupt_restore(void);
/* True once the signal came since the catch; ud ignored (the shape of a canceled callback). */
bool mx_cli_interrupted(void *ud);

/* Parses ids "1,2 3\n4" (any non-digit separators; a JSON array works too). Returns 0 with *ids
 * (caller frees) and *n, or 1 after printing why. */
int mx_cli_parse_ids(const char *s, const char *cmd, int32_t **ids, int64_t *n);

#endif
