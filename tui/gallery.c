/* gallery.c - the session's images: the gallery (/gallery: every image of the conversation as a
 * thumbnail with its caption), the full-screen viewer (F3, or Enter in the gallery; any key
 * closes it), and the image commands /show PATH (attach) and /save PATH (copy the selected one).
 */
#include "tui/gallery.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/base/text.h"
#include "core/image/image.h"
#include "history/db.h"
#include "tui/conv.h"
#include "tui/images.h"
#include "tui/status.h"
#include "tui/store.h"
#include "tui/style.h"

#define THUMB_COLS 24
#define THUMB_ROWS 8


/* The gallery: every image of the conversation as a thumbnail with its caption; arrows move,
 * Enter opens one full screen, Esc closes. Sixel thumbnails are placed like inline images. */
static void gallery_draw(struct app *a, int top, int left, int height, int width) {
    const char *head = "Gallery: arrows move, Enter opens, /save PATH copies, Esc closes";
    mx_app_put_text(a, top, left, head, strlen(head), width, MX_ROLE_heading, MX_ATTR_BOLD);
    int per_row = width / (THUMB_COLS + 2);
    if (per_row < 1)
        per_row = 1;
    int k = 0;
    for (int i = 0; i < a->conv.n_msgs; i++) {
        struct msg *m = &a->conv.msgs[i];
        if (!m->image)
            continue;
        int gy = top + 2 + (k / per_row) * (THUMB_ROWS + 2);
        int gx = left + (k % per_row) * (THUMB_COLS + 2);
        if (gy + THUMB_ROWS + 1 > top + height)
            break;
        mx_app_img_ensure(a, m);
        if (a->img.gfx.mode == MX_GFX_BLOCKS && m->img.w)
            mx_app_draw_blocks_box(a, &m->img, gy, gx, THUMB_COLS, THUMB_ROWS);
        else if (a->img.gfx.mode == MX_GFX_SIXEL && m->img.w && a->frame.n_placed < 16)
            a->frame.placed[a->frame.n_placed++] =
                (struct placed){i, gy, gx, THUMB_ROWS, THUMB_COLS, THUMB_ROWS};
        const char *slash = strrchr(m->image, '/');
        char cap[MX_SANITIZE_MAX(THUMB_COLS)];
        const char *name = slash ? slash + 1 : m->image;
        size_t n = mx_text_sanitize(name, strnlen(name, THUMB_COLS), cap, false);
        mx_app_put_text(a, gy + THUMB_ROWS, gx, cap, n, THUMB_COLS,
                 k == a->gal.sel ? MX_ROLE_selection : MX_ROLE_muted, 0);
        k++;
    }
    if (!k)
        mx_app_put_text(a, top + 2, left, "no images yet: /show PATH attaches one", 38, width,
                        MX_ROLE_muted, 0);
}

/* The message index of the gallery's k-th image, or -1. */
int mx_app_gallery_msg(const struct app *a, int k) {
    for (int i = 0; i < a->conv.n_msgs; i++)
        if (a->conv.msgs[i].image && k-- == 0)
            return i;
    return -1;
}

static bool gallery_focused(const struct app *a) {
    return a->gal.open;
}

/* Arrows move, Enter opens the selection full screen, Esc or q closes; "/" is not the grid's:
 * typing a command (/save) leaves it, keeping the selection. */
static int gallery_key(struct app *a, const unsigned char *b, size_t n, size_t *used) {
    int per_row = (COLS > 0 ? COLS : 80) / (THUMB_COLS + 2);
    if (per_row < 1)
        per_row = 1;
    *used = 1;
    if (n >= 3 && b[0] == 0x1b && (b[1] == '[' || b[1] == 'O') && strchr("ABCD", b[2])) {
        int d = b[2] == 'A' ? -per_row : b[2] == 'B' ? per_row : b[2] == 'C' ? 1 : -1;
        if (mx_app_gallery_msg(a, a->gal.sel + d) >= 0)
            a->gal.sel += d;
        *used = 3;
    } else if (b[0] == '\r' || b[0] == '\n') {
        int i = mx_app_gallery_msg(a, a->gal.sel);
        if (i >= 0)
            a->gal.viewer = i;
    } else if (b[0] == 0x1b || b[0] == 'q') {
        a->gal.open = false;
    } else if (b[0] == '/') {
        a->gal.open = false;
        return MX_KEY_REDRAW; /* not handled: the input line takes the "/" */
    }
    return MX_KEY_HANDLED | MX_KEY_REDRAW;
}

const struct mx_view_ops mx_view_gallery = {
    .name = "gallery", .focused = gallery_focused, .draw = gallery_draw, .key = gallery_key,
};

/* Full-screen view of one image (F3, or Enter in the gallery): the image fitted into all but the
 * last two rows, its path and "Esc closes" on the last. Sixels are sent by draw.c. */
static void viewer_draw(struct app *a, int top, int left, int height, int width) {
    struct msg *m = &a->conv.msgs[a->gal.viewer];
    const char *cap = "Esc closes";
    char clean[MX_SANITIZE_MAX(512)], line[512];
    snprintf(line, sizeof line, "%s  \xc2\xb7  %s", m->image, cap);
    size_t n = mx_text_sanitize(line, strlen(line), clean, false);
    mx_app_put_text(a, top + height - 1, left, clean, n, width, MX_ROLE_status, 0);
    mx_app_img_ensure(a, m);
    if (!m->img.w)
        return;
    if (a->img.gfx.mode == MX_GFX_BLOCKS)
        mx_app_draw_blocks_box(a, &m->img, top, left, width, height - 2);
}

static bool viewer_focused(const struct app *a) {
    return a->gal.viewer >= 0;
}

/* Any key closes the image (the rest of what was read with it goes too). */
static int viewer_key(struct app *a, const unsigned char *b, size_t n, size_t *used) {
    (void)b;
    a->gal.viewer = -1;
    a->frame.full_repaint = true;
    clearok(curscr, TRUE);
    *used = n;
    return MX_KEY_HANDLED | MX_KEY_REDRAW;
}

const struct mx_view_ops mx_view_viewer = {
    .name = "viewer", .focused = viewer_focused, .draw = viewer_draw, .key = viewer_key,
};

/* /show PATH: attaches a PNG/JPEG to the conversation (stored with the session; not sent to the
 * model). Generated images will arrive the same way. */
void mx_app_cmd_show(struct app *a, const char *arg) {
    if (!arg || !arg[0]) {
        mx_app_notice(a, true, "/show takes the path of a PNG or JPEG file");
        return;
    }
    char path[4096];
    if (!realpath(arg, path)) {
        mx_app_notice(a, true, "/show: %s: %s", arg, strerror(errno));
        return;
    }
    struct mx_image img;
    struct mx_err err = {0};
    if (mx_app_img_load(a, path, &img, &err) != 0) {
        mx_app_notice(a, true, "/show: %s", err.msg);
        return;
    }
    char caption[4200];
    const char *base = strrchr(path, '/');
    snprintf(caption, sizeof caption, "[image: %s, %dx%d]", base ? base + 1 : path, img.w, img.h);
    int64_t id = 0;
    if (mx_app_ensure_session(a) == 0) {
        int rc = mx_db_msg_append(a->store.db, a->store.session, MX_DB_PARENT_LEAF, MX_ROLE_USER,
                                  caption, 0, NULL, &id, &err);
        if (rc == 0)
            rc = mx_db_image_add(a->store.db, a->store.session, id, path, "{\"source\": \"show\"}",
                                 NULL, &err);
        if (rc != 0)
            mx_app_store_warn(a, &err, rc);
    }
    struct msg *m = mx_app_msg_add(a, MX_ROLE_USER, MSG_DONE, caption);
    if (!m) {
        mx_image_free(&img);
        return;
    }
    m->db_id = id;
    m->image = strdup(path);
    m->img = img;
    a->conv.scroll = 0;
    mx_app_notice(a, false, "image attached (%s); F3 shows it full screen",
                  a->img.gfx.mode == MX_GFX_SIXEL    ? "sixel"
                  : a->img.gfx.mode == MX_GFX_BLOCKS ? "half blocks"
                                                     : "graphics off");
}

void mx_app_cmd_gallery(struct app *a, const char *arg) {
    (void)arg;
    a->gal.open = true;
    a->gal.sel = 0;
    for (int k = 0; mx_app_gallery_msg(a, k + 1) >= 0; k++)
        a->gal.sel = k + 1; /* start on the newest image */
}

/* 'p' PNG, 'j' JPEG (by the file's magic bytes), 0 other or unreadable. */
static char image_kind(const char *path) {
    unsigned char b[8] = {0};
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(b, 1, sizeof b, f) : 0;
    if (f)
        fclose(f);
    return n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8) ? 'p'
           : n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff ? 'j' : 0;
}

/* 'p' for a .png name, 'j' for .jpg/.jpeg, 0 for anything else (case ignored). */
static char name_kind(const char *path) {
    const char *dot = strrchr(path, '.');
    if (!dot || strchr(dot, '/'))
        return 0;
    return !strcasecmp(dot, ".png") ? 'p' : !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg")
                                                ? 'j' : 0;
}

/* /save of an image whose format the destination's extension contradicts: a JPEG saved as .png
 * is converted (decoded, written as PNG); a PNG saved as .jpg keeps its format and takes the
 * .png extension (no JPEG writer here). Never JPEG bytes under a .png name. Returns true when
 * it handled the save (done or failed, with a notice), false for a plain copy. */
static bool save_converted(struct app *a, const char *src, const char *dest) {
    char have = image_kind(src), want = name_kind(dest);
    if (!have || !want || have == want)
        return false;
    struct mx_image img = {0};
    struct mx_err err = {0};
    int rc = mx_image_load(src, &img, &err);
    char path[4200];
    if (want == 'p') {
        snprintf(path, sizeof path, "%s", dest);
    } else {
        const char *dot = strrchr(dest, '.');
        snprintf(path, sizeof path, "%.*s.png", (int)(dot - dest), dest);
    }
    if (rc == 0)
        rc = mx_image_save_png(&img, path, &err);
    mx_image_free(&img);
    if (rc != 0)
        mx_app_notice_detail(a, true, mx_err_msg(&err, rc), "/save: %s could not be written (%s)",
                             path, mx_strerror(rc));
    else if (want == 'p')
        mx_app_notice(a, false, "saved %s (converted from JPEG to PNG)", path);
    else
        mx_app_notice(a, false, "saved %s: the image is a PNG, and mixel writes no JPEG", path);
    return true;
}

/* /save PATH: copies the image selected in the gallery (else the newest) to PATH (converting a
 * JPEG to PNG for a .png name: save_converted). */
void mx_app_cmd_save(struct app *a, const char *arg) {
    if (!arg || !arg[0]) {
        mx_app_notice(a, true, "/save takes a destination path");
        return;
    }
    int i = mx_app_gallery_msg(a, a->gal.sel);
    if (i < 0)
        for (int k = a->conv.n_msgs - 1; k >= 0 && i < 0; k--)
            if (a->conv.msgs[k].image)
                i = k;
    if (i < 0) {
        mx_app_notice(a, true, "/save: no image in this conversation");
        return;
    }
    if (save_converted(a, a->conv.msgs[i].image, arg))
        return;
    FILE *in = fopen(a->conv.msgs[i].image, "rb");
    if (!in) {
        mx_app_notice(a, true, "/save: %s: %s", a->conv.msgs[i].image, strerror(errno));
        return;
    }
    /* write beside the destination and rename, so a failed copy never leaves half a file */
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.part", arg);
    FILE *out = fopen(tmp, "wb");
    if (!out) {
        fclose(in);
        mx_app_notice(a, true, "/save: %s: %s", arg, strerror(errno));
        return;
    }
    char buf[65536];
    size_t n;
    bool ok = true;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n)
            ok = false;
    ok = ok && !ferror(in);
    fclose(in);
    if (fclose(out) != 0 || !ok || rename(tmp, arg) != 0) {
        unlink(tmp);
        mx_app_notice(a, true, "/save: writing %s failed", arg);
        return;
    }
    mx_app_notice(a, false, "saved %s", arg);
}

/* F3: the last image full screen. */
void mx_app_show_last_image(struct app *a) {
    for (int i = a->conv.n_msgs - 1; i >= 0; i--)
        if (a->conv.msgs[i].image) {
            a->gal.viewer = i;
            return;
        }
    mx_app_notice(a, false, "no image in this conversation yet: /show PATH attaches one");
}
