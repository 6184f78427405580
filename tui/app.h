/* app.h - the full-screen chat application: the ncurses main loop, its views (conversation,
 * input, status bar) and the glue to GNU readline in callback mode.
 *
 * Threading (DESIGN.md): this thread owns the terminal. It polls stdin and the worker's wake-up
 * pipe; generation runs on the worker (app/worker.h). Only the main loop redraws.
 */
#ifndef MX_APP_H
#define MX_APP_H

#include <stdint.h>

#include "core/base/err.h"
#include "app/engine.h"
#include "app/image_job.h"
#include "tui/graphics.h"

struct mx_tools;

/* Loads a model into a chat engine (called on the worker thread). Returns NULL with err set. */
typedef struct mx_engine *(*mx_engine_loader)(const char *model_path,
                                              const struct mx_gen_settings *settings,
                                              struct mx_err *err);

/* Downloads a model by its hf:// reference into the models folder (mixel pull: cli/ passes
 * net/pull.h's mx_pull_fetch, tui/ does not include net/). Runs on the worker thread and blocks
 * until done; progress(ud, done, total, rate) is called about ten times a second and returns
 * nonzero to stop (then MX_ECANCELED, the .partial kept). Returns 0 with *path (caller frees) or a
 * negative MX_E* with err saying why. */
typedef int (*mx_model_fetch_fn)(const char *ref,
                                 int (*progress)(void *ud, uint64_t done, uint64_t total,
                                                 double rate),
                                 void *ud, char **path, struct mx_err *err);

/* Lists the models of the chat's server for the picker (/model with no argument; cli/ passes
 * cli/remote.h's mx_cli_remote_models, tui/ does not include net/). current is the model path in
 * use (NULL: none): a "remote:URL#MODEL" one names the server, else the --remote one is asked.
 * Runs on the main thread and returns within a few seconds (short timeouts, no retries). Returns
 * 0 with *paths[0..*n) the models as loader paths "remote:URL#MODEL" (malloc'd; the caller frees
 * each and the array), 1 when there is no server to ask, or a negative MX_E* with err saying
 * why. */
typedef int (*mx_model_list_fn)(const char *current, char ***paths, size_t *n,
                                struct mx_err *err);

struct mx_app_opts {
    struct mx_engine *engine;   /* owned by the app from mx_app_run on (freed when replaced, when
                                 * unloaded for an image model, or at exit); NULL: no model yet
                                 * (the welcome screen explains) */
    const char *theme;          /* theme name, NULL: "dark" */
    const char *system_prompt;  /* NULL: none */
    struct mx_gen_settings settings;
    bool seed_fixed;            /* --seed given: every answer uses settings.sampling.seed */
    const char *model_path;     /* stored with new sessions; NULL: none */
    const char *db_path;        /* history database; NULL: $XDG_DATA_HOME/mixel/history.db */
    bool no_history;            /* keep the conversation in memory only */
    const char *resume;         /* session id or title to continue; "" = the most recent */
    mx_engine_loader load_engine; /* for /model and the model picker; NULL: cannot load */
    bool discover;              /* no model given: offer the models found on this machine */
    enum mx_gfx_mode graphics;  /* --graphics: auto (detect), sixel, blocks or none */
    struct mx_image_remote *remote_images; /* --remote-images: /image and /img2img drawn by
                                 * that server (owned by the app from mx_app_run on); NULL: the
                                 * local SD engine */
    const char *sd_model;       /* --sd-model: the image checkpoint for sessions that chose none;
                                 * NULL: the first one discovered */
    mx_model_list_fn list_models; /* the server's models in the picker; NULL: local ones only */
    mx_model_fetch_fn fetch;    /* the first-run screen's downloads (tui/firstrun.h); NULL: it
                                 * shows the `mixel pull` commands only */
    struct mx_tools *tools;     /* the tools the model may call (app/tools.h), owned by the app
                                 * from mx_app_run on; NULL: none (--no-tools) */
    bool tools_yes;             /* --yes: every tool call runs without asking */
};

/* Runs the TUI until the user quits. Returns the process exit status. */
int mx_app_run(const struct mx_app_opts *opts);

#endif
