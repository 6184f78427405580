/* app_int.h - the chat's state, shared by the files of tui/ that make up the chat (not an API:
 * only they include it). struct app groups its fields by concern, one sub-struct per file that
 * owns them (conv.c, gen.c, style.c, status.c, readline_glue.c, input.c, store.c, sidebar.c,
 * picker.c, firstrun.c, load.c, images.c, draw.c, gallery.c); each file's functions are in its own header.
 *
 * The views (conversation, sidebar, picker, gallery, viewer) are struct mx_view_ops (view.h).
 * The files depend on each other one way, each only on those in the rows above it:
 *   conv, style                      the conversation model; colours and the text primitive
 *   status                           notices, progress, the status bar
 *   images, store                    images in cells; the history database glue
 *   load, gallery, sidebar, conv_view
 *   imagegen                         image generation on the worker (/image, /img2img)
 *   firstrun                         no model anywhere: picks to download (mixel pull)
 *   tools                            tool calls: confirmation, runs, results (tools.h)
 *   gen, picker, keys                generation; the model picker; key actions (keys.h table)
 *   commands                         the slash command table (+ /help from keys.h)
 *   readline_glue                    readline in callback mode
 *   input                            the input area; typed bytes to the focused view or readline
 *   draw                             one frame
 *   loop                             the main loop (mx_app_run, app.h)
 */
#ifndef MX_APP_INT_H
#define MX_APP_INT_H

#include <curses.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/base/err.h"
#include "core/base/role.h"
#include "history/db.h"
#include "tui/app.h"
#include "app/discover.h"
#include "app/image_job.h"
#include "tui/image_term.h"
#include "tui/markdown.h"
#include "tui/rate.h"
#include "tui/theme.h"
#include "app/worker.h"

#define MIN_COLS 40
#define MIN_ROWS 12
#define INPUT_MAX_ROWS 6
#define IMAGE_ROWS 12       /* an image in the conversation is a fixed block of rows */

/* TRUNCATED: cut short by a full context (stored as partial, timings "stop": "context_full") */
enum msg_state { MSG_DONE, MSG_STREAMING, MSG_STOPPED, MSG_FAILED, MSG_NOTICE,
                 MSG_QUEUED, /* typed while an answer streams: a->gen.queued, not yet sent */
                 MSG_TRUNCATED };

struct msg {
    enum mx_role role;
    enum msg_state state;
    char *text;           /* raw text as received (untrusted for assistant messages) */
    size_t len, cap;
    struct mx_rtext r;    /* rendered lines, valid for r_width and r_len */
    int r_width;
    size_t r_len;
    bool r_valid;
    int64_t db_id;        /* row in the history database, 0 when not stored */
    char *image;          /* an attached or generated image file: the message shows it */
    struct mx_image img;  /* its pixels, loaded on first draw (w == 0: not loaded or failed) */
    bool img_failed;
    char *sixel;          /* encoded for sx_cols x sx_rows cells (cached across frames) */
    size_t sixel_len;
    int sx_cols, sx_rows;
    struct mx_image blk;  /* scaled for half blocks (two pixels per cell), cached like sixel */
    int sib_index, sib_count; /* branch position among siblings ("2/3"), count 0 = unknown */
    char *tool_calls;     /* assistant: its tool calls, JSON as stored (app/tools.h); NULL none */
    char *tool_call_id;   /* tool: the call this result answers; NULL none */
    char *shown;          /* drawn instead of text (the folded call lines "⚙ f(x=1) → 2 KB");
                           * NULL: text (tools.c) */
    bool hidden;          /* a tool result: folded into its call's line, not drawn itself */
    char *reasoning;      /* assistant: the model's reasoning as it streamed (gpt-oss's analysis
                           * channel; untrusted), shown folded; never stored. NULL: none */
    size_t reasoning_len, reasoning_cap;
    struct mx_rtext rr;   /* the reasoning's rendered lines, valid for rr_width and rr_len */
    int rr_width;
    size_t rr_len;
    bool rr_valid;
};

/* The conversation on screen: the active branch of the session, plus notices. */
struct mx_app_conv {
    struct msg *msgs;     /* n_msgs in order, oldest first; cap_msgs allocated */
    int n_msgs, cap_msgs;
    int scroll;           /* conversation lines scrolled up from the bottom (0: follow) */
    char *system_prompt;  /* owned; NULL: none */
    bool show_reasoning;  /* answers' reasoning unfolded (F4 toggles); false: one line each */
};

/* The answer being generated on the worker, and the meters it feeds. */
struct mx_app_gen {
    bool busy;            /* a generation job runs on the worker */
    double t0;            /* when it started (mx_time_s) */
    int pieces;           /* text events received so far */
    struct mx_rate rate;  /* the live speed, smoothed (rate.h) */
    double tok_s;         /* speed shown in the status bar (0: none yet) */
    double eng_tok_s;     /* the engine's own figure from its last stats (0: none) */
    bool cut;             /* the engine said the answer stops here: the context is full */
    int ctx_used;         /* tokens in the engine's cache (the context meter) */
    long n_reused;        /* the last answer's prompt: tokens the cache already held ... */
    long n_prefilled;     /* ... and tokens evaluated for it (-1 both: not known, not shown) */
    double last_db_update; /* when the streaming answer was last written to the history */
    bool image;           /* the running job makes an image (imagegen.c), not an answer */
    bool tool;            /* the running job runs a tool (tools.c), not an answer */
    struct msg queued;    /* a message typed while the answer streams (state MSG_QUEUED, shown
                           * under the answer; text NULL: none): sent when the answer ends,
                           * back in the input line when it is stopped or fails (gen.c) */
};

/* Colours: the theme and what the terminal made of it. */
struct mx_app_style {
    struct mx_theme theme;
    char theme_name[64];
    int n_colours;        /* 0 (none), 8, 16, 256 */
    bool reverse_role[MX_ROLE_COUNT]; /* roles shown reversed: their colours did not survive */
};

/* One notice kept for /log. */
struct mx_notice {
    time_t t;             /* when it was posted */
    bool error;
    char text[600];       /* as shown, plus the detail behind it when there was one */
};

#define MX_NOTICE_LOG 64  /* notices /log can show (the oldest go first) */

/* The notice line above the input (what just happened, or went wrong: shown whole, wrapped),
 * the log of recent notices, and the progress of a long job in the status bar. */
struct mx_app_status {
    char note[512];       /* the notices shown above the input, '\n' between ("" none; Esc or
                           * sending clears) */
    unsigned err_mask;    /* bit k: the k-th notice in note is an error */
    int n_stacked;        /* notices in note */
    double note_t;        /* when the last one came (mx_time_s) */
    bool replace;         /* a key came since: the next notice replaces them */
    struct mx_notice log[MX_NOTICE_LOG]; /* ring: the newest is log[(n_log - 1) % MX_NOTICE_LOG] */
    long n_log;           /* notices posted since the start */
    char prog[256];       /* progress in the status bar ("" none) */
    double prog_t0;       /* when the running progress (prompt, load) started, 0 none */
};

/* Readline's side of the input (readline_glue.c). */
struct mx_app_rl {
    char history_path[4200]; /* input history file ("" none) */
    char *next_text;      /* text to put in front of the input line (owned; NULL none): readline
                           * empties its buffer after the line handler returns, so commands and
                           * events leave it here (mx_app_input_give) and readline_glue.c puts it
                           * in once readline is done with the line being entered */
};

/* A bracketed paste being collected (input.c). */
struct mx_app_paste {
    char *buf;
    size_t len, cap;
    bool active;          /* between ESC [200~ and ESC [201~ */
};

/* The history database (NULL db: the conversation lives in memory only, with a warning). */
struct mx_app_store {
    struct mx_db *db;
    int64_t session;      /* 0: not created yet (created with the first message) */
    char title[128];
};

/* The sessions sidebar (F2). */
struct mx_app_sidebar {
    bool open, focus;
    struct mx_session_list sessions;
    int sel;
    bool confirm_delete;  /* "Delete? y/n" is asked */
};

/* The model picker (no model given, or /model with no argument in a chat over a server). */
struct mx_app_picker {
    bool open;
    char **remote;               /* the server's models as loader paths "remote:URL#MODEL",
                                  * listed first (opts.list_models); NULL: none asked */
    size_t n_remote;
    struct mx_model_list models; /* the GGUF files found on this machine, listed after them */
    int sel;                     /* index into the remote entries, then the local ones */
};

/* The first-run screen (firstrun.c): no model anywhere; picks to download with `mixel pull`. */
struct mx_app_firstrun {
    bool open;
    int sel;              /* the selected pick (index into the picks shown) */
    bool busy;            /* a download runs on the worker */
    double t0;            /* when it started (mx_time_s), for the rate */
    double done, total;   /* bytes so far and expected (0 unknown), from its progress events */
    double done0;         /* done at the first event (a resumed .partial): not this run's speed */
    uint64_t ram_total;   /* this machine's memory in bytes (0 unknown), read at open */
    uint64_t ram_free;    /* what it could still give then (MemAvailable; 0 unknown) */
};

/* Loading a model on the worker (/model, the picker). */
struct mx_app_load {
    bool busy;
    struct mx_engine *owned; /* the chat engine the app owns: the one mx_app_run was given, or
                           * the one loaded since (freed on switch, unload or exit) */
};

/* Image generation (/image, /img2img: imagegen.c). */
struct mx_app_imagegen {
    struct mx_sd_engine *engine; /* the SD pipeline kept open between images (NULL: none yet) */
    char *ckpt;           /* the session's checkpoint (owned; NULL: --sd-model, else the first
                           * one discovered) */
    char *parked_llm;     /* the chat model unloaded to make room for the image model (owned;
                           * NULL none): loaded again, and the answer started, by the next
                           * message */
    bool answer_after_load; /* the load running is that reload: answer when it is done */
    bool retried;         /* the running image job is the retry after unloading the LLM */
    bool for_tool;        /* the running image job draws a generate_image call (tools.c) */
    char result[1400];    /* what the last image job tells the model when for_tool was set */
};

/* Tool calls in the chat (tools.c): the model's calls of one answer, asked and run one by one,
 * their results fed back as tool messages, then the answer goes on (a bounded number of
 * rounds per user message). */
struct mx_app_tools {
    struct mx_tools *reg; /* the registry (owned; NULL: no tools, --no-tools) */
    bool yes;             /* --yes: run every call without asking */
    bool *always;         /* reg->n flags: "a" answered for that tool (this session) */
    char *calls;          /* the calls being worked through: JSON as stored (owned; NULL none) */
    int msg;              /* index of the assistant message that made them */
    size_t next;          /* the call asked or running now */
    bool asking;          /* waiting for y / n / a (the confirmation view has the keys) */
    int rounds;           /* answers with calls since the user's message */
    bool go_on;           /* every call has its result: the answer goes on (gen.c) */
    char *grammar;        /* the calls' lazy grammar for grammar_kind (owned; NULL: none, or
                           * a schema the converter refused: calls are then unconstrained) */
    const char *trigger;  /* the text that starts a call in grammar_kind's syntax (static) */
    int grammar_kind;     /* the template family grammar was made for (-1: none made yet) */
};
/* What the terminal can show and the colour pairs lent to half-block images. */
struct mx_app_img {
    struct mx_gfx gfx;    /* what the terminal can show (detected before curses starts) */
    struct { int fg, bg; } *pairs; /* allocated block pairs, index = pair - first block pair */
    int n_pairs;
};

/* The sixels of the last frame: they live outside curses' model of the screen. */
struct mx_app_frame {
    struct placed { int msg, y, x, rows, box_cols, box_rows; } placed[16]; /* sixel images on
                                                  screen after the last frame, in their boxes */
    int n_placed;
    bool full_repaint;    /* the terminal was cleared: sixels must be sent again */
};

/* The gallery of thumbnails and the full-screen viewer. */
struct mx_app_gallery {
    bool open;            /* the session's images as a grid of thumbnails */
    int sel;              /* selected thumbnail */
    int viewer;           /* message index shown full screen, -1 none */
};

struct app {
    struct mx_app_opts o; /* the caller's options; o.engine and o.model_path follow /model */
    struct mx_gen_settings settings; /* in force now (saved with the session) */
    bool seed_fixed;      /* /seed N or --seed: every answer samples with settings.sampling.seed;
                           * else each answer (and each /regen) draws a fresh seed */
    struct mx_worker *w;  /* runs generation and loading jobs, one at a time */
    bool quit;
    struct mx_app_conv conv;
    struct mx_app_gen gen;
    struct mx_app_style style;
    struct mx_app_status status;
    struct mx_app_rl rl;
    struct mx_app_paste paste;
    struct mx_app_store store;
    struct mx_app_sidebar side;
    struct mx_app_picker pick;
    struct mx_app_firstrun fr;
    struct mx_app_load load;
    struct mx_app_img img;
    struct mx_app_frame frame;
    struct mx_app_gallery gal;
    struct mx_app_imagegen imgen;
    struct mx_app_tools tools;
};


#endif
