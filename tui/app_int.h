/* app_int.h - the chat application's state, shared by the files of tui/app*.c (not an API:
 * only they include it). app.c holds the main loop, views, keys and commands; app_images.c the
 * images in the conversation, the gallery and the full-screen viewer. */
#ifndef MX_APP_INT_H
#define MX_APP_INT_H

#include <curses.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"
#include "core/base/role.h"
#include "history/db.h"
#include "tui/app.h"
#include "app/discover.h"
#include "tui/image_term.h"
#include "tui/markdown.h"
#include "tui/theme.h"
#include "app/worker.h"

#define MIN_COLS 40
#define MIN_ROWS 12
#define INPUT_MAX_ROWS 6
#define IMAGE_ROWS 12       /* an image in the conversation is a fixed block of rows */

enum msg_state { MSG_DONE, MSG_STREAMING, MSG_STOPPED, MSG_FAILED, MSG_NOTICE };

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
};

struct app {
    struct mx_app_opts o;
    struct mx_gen_settings settings;
    char *system_prompt;
    struct msg *msgs;
    int n_msgs, cap_msgs;
    struct mx_worker *w;
    bool generating;
    double gen_t0;
    int gen_pieces;
    double tok_s;
    int ctx_used;
    int scroll;           /* conversation lines scrolled up from the bottom (0: follow) */
    struct mx_theme theme;
    char theme_name[64];
    int n_colours;        /* 0 (none), 8, 16, 256 */
    bool reverse_role[MX_ROLE_COUNT]; /* roles shown reversed: their colours did not survive */
    bool quit;
    char note[256];       /* status-line notice */
    bool note_is_error;
    char history_path[4200];
    int rl_char;          /* the byte readline's getc hook hands over */
    char *paste;          /* bracketed paste being collected */
    size_t paste_len, paste_cap;
    bool in_paste;
    /* history (NULL db: the conversation lives in memory only, with a warning) */
    struct mx_db *db;
    int64_t session;      /* 0: not created yet (created with the first message) */
    char title[128];
    double last_db_update;
    /* sessions sidebar */
    bool sidebar, sidebar_focus;
    struct mx_session_list sessions;
    int sel;
    bool confirm_delete;
    /* model picker (no model given) and loading */
    bool picker;
    struct mx_model_list models;
    int pick;
    bool loading;
    struct mx_engine *owned_engine; /* an engine the app loaded (freed at exit or on switch) */
    /* images */
    struct mx_gfx gfx;    /* what the terminal can show (detected before curses starts) */
    short next_pair;      /* colour pairs for half blocks are allocated from here */
    struct { int fg, bg; } *pairs; /* allocated block pairs, index = pair - first block pair */
    int n_pairs;
    struct placed { int msg, y, x, rows, box_cols, box_rows; } placed[16]; /* sixel images on
                                                  screen after the last frame, in their boxes */
    int n_placed;
    bool full_repaint;    /* the terminal was cleared: sixels must be sent again */
    int viewer;           /* message index shown full screen, -1 none */
    double prog_t0;       /* when the running progress (prompt, load) started, 0 none */
    bool gallery;         /* the session's images as a grid of thumbnails */
    int gsel;             /* selected thumbnail */
};


/* A growing byte buffer used as an encoder's sink (mx_image_write_fn). */
struct mx_app_bytes {
    char *p;
    size_t n, cap;
};

struct msg *mx_app_msg_add(struct app *a, enum mx_role role, enum msg_state st,
                           const char *text);
void mx_app_notice(struct app *a, bool error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
attr_t mx_app_role_attr(const struct app *a, int role, unsigned extra);
int mx_app_put_text(struct app *a, int y, int x, const char *s, size_t len, int width, int role,
                    unsigned attrs);
void mx_app_store_warn(struct app *a, const struct mx_err *err, int rc);
int mx_app_ensure_session(struct app *a);
void mx_app_img_ensure(struct app *a, struct msg *m);
int mx_app_img_rows(struct app *a, struct msg *m, int width, struct mx_image_layout *lay);
void mx_app_draw_block_row(struct app *a, struct msg *m, int r, int y, int x0, int width);
int mx_app_bytes_write(void *ud, const char *buf, size_t n);
void mx_app_emit_at(struct app *a, int y, int x, const char *bytes, size_t n);
int mx_app_encode_sixel(struct app *a, const struct mx_image *img, int box_cols, int box_rows,
                        struct mx_app_bytes *b, struct mx_err *err);
void mx_app_emit_sixel(struct app *a, struct msg *m, int y, int x, int box_cols, int box_rows);
void mx_app_draw_gallery(struct app *a, int top, int height, int width);
int mx_app_gallery_msg(const struct app *a, int k);
size_t mx_app_gallery_key(struct app *a, const unsigned char *b, size_t n);
void mx_app_draw_viewer(struct app *a, int rows, int cols);
void mx_app_cmd_show(struct app *a, const char *arg);
void mx_app_cmd_gallery(struct app *a, const char *arg);
void mx_app_cmd_save(struct app *a, const char *arg);
void mx_app_show_last_image(struct app *a);

#endif
