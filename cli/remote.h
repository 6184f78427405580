/* remote.h (cli) - the command line's side of remote engines (net/remote.h): --remote and
 * --remote-model with the environment and the settings file, the chat's engine loader that also
 * reopens a remote engine from the model path a session stored, and the model list. */
#ifndef MX_CLI_REMOTE_H
#define MX_CLI_REMOTE_H

#include <stdbool.h>
#include <stdio.h>

#include "cli/opts.h"
#include "net/remote.h"

/* Decides whether cmd answers remotely: --remote given, or no -m and the config's remote.url.
 * Fills *ro (opts, environment, config; strings valid until mx_cli_remote_end) and returns 1
 * when remote, 0 when local, -1 after printing why the settings file or the URL is unusable. */
int mx_cli_remote_begin(const char *cmd, const struct mx_cli_opts *o,
                        struct mx_remote_opts *ro);

/* Frees what mx_cli_remote_begin loaded (the configuration). */
void mx_cli_remote_end(void);

/* The chat's engine loader (tui/app.h mx_engine_loader): a model path "remote:URL#MODEL" (what
 * a remote session stores) reopens that server's model with the key and timeouts of
 * mx_cli_remote_begin; any other path is a GGUF for the local engine. */
struct mx_engine *mx_cli_remote_loader(const char *path, const struct mx_gen_settings *s,
                                       struct mx_err *err);

/* The chat's picker list (tui/app.h mx_model_list_fn): the models of the server of current (a
 * "remote:URL#MODEL" path), else of the --remote server, as loader paths "remote:URL#MODEL";
 * short timeouts (at most 2 s to connect, 3 s without a byte: the configured ones when shorter)
 * and no retries, since the screen waits.
 * Returns 0 with *paths (the caller frees each and the array), 1 when there is no server to ask,
 * or a negative MX_E* with err set. */
int mx_cli_remote_models(const char *current, char ***paths, size_t *n, struct mx_err *err);

/* The options of an image server at url (--remote-images): the key and timeouts from the
 * environment and the settings file as for --remote. Returns 0, or -1 after printing why the
 * settings file is unusable. Strings valid until mx_cli_remote_end. */
int mx_cli_remote_images_opts(const char *cmd, const char *url, struct mx_remote_opts *ro);

/* Prints the server's models to f, one a line. Returns the exit status (0, or 1 after printing
 * why not). */
int mx_cli_remote_list(const char *cmd, const struct mx_remote_opts *ro, FILE *f);

#endif
