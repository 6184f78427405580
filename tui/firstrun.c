/* firstrun.c - the first-run screen (firstrun.h): a new user's `mixel` with no model anywhere.
 *
 * The picks are real, well-known files on the Hugging Face hub; the one that fits everywhere
 * comes first, and a pick is offered only when this machine's memory can hold it. The download is
 * `mixel pull` itself (the fetch function cli/ passes in, net/pull.c), run on the worker thread
 * like a model load, so the screen keeps drawing its progress and Esc stops it.
 */
#include "tui/firstrun.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/base/err.h"
#include "core/base/text.h"
#include "core/base/util.h"
#include "tui/load.h"
#include "tui/status.h"
#include "tui/style.h"

/* One model offered for download. */
struct pick {
    const char *title;    /* what it is, for the list */
    const char *what;     /* why one would pick it (a few words) */
    const char *ref;      /* the hf:// reference `mixel pull` takes */
    double size_gb;       /* the file's size on the hub, GB (10^9 bytes) */
    double ram_gb;        /* memory it needs to run, GB: offered only on machines with more */
    bool image;           /* a Stable Diffusion checkpoint (/image), not a chat model */
};

/* Sizes and memory needs are the model cards' own figures:
 * - TinyLlama: TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF README, "Provided files" table, row
 *   tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf: 0.67 GB, max RAM required 3.17 GB.
 * - Mistral 7B: TheBloke/Mistral-7B-Instruct-v0.2-GGUF README, row
 *   mistral-7b-instruct-v0.2.Q4_K_M.gguf: 4.37 GB, max RAM required 6.87 GB.
 * - Mixtral 8x7B: TheBloke/Mixtral-8x7B-Instruct-v0.1-GGUF README, row
 *   mixtral-8x7b-instruct-v0.1.Q4_K_M.gguf: 26.44 GB, max RAM required 28.94 GB.
 * - SD 1.5: stable-diffusion-v1-5/stable-diffusion-v1-5 (the runwayml repo's successor), file
 *   v1-5-pruned-emaonly.safetensors: 4.27 GB; the RAM figure is an estimate (the f32 weights
 *   plus the UNet's activations at 512x512), not a model card's. */
static const struct pick g_picks[] = {
    {"TinyLlama 1.1B Chat v1.0, Q4_K_M", "small and quick, fits almost anywhere",
     "hf://TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF/tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf",
     0.67, 3.17, false},
    {"Mistral 7B Instruct v0.2, Q4_K_M", "a capable chat model for 8 GB machines",
     "hf://TheBloke/Mistral-7B-Instruct-v0.2-GGUF/mistral-7b-instruct-v0.2.Q4_K_M.gguf",
     4.37, 6.87, false},
    {"Mixtral 8x7B Instruct v0.1, Q4_K_M", "the sparse mixture of experts mixel is built for",
     "hf://TheBloke/Mixtral-8x7B-Instruct-v0.1-GGUF/mixtral-8x7b-instruct-v0.1.Q4_K_M.gguf",
     26.44, 28.94, false},
    {"Stable Diffusion 1.5 (images, for /image)", "512x512 pictures in the chat",
     "hf://stable-diffusion-v1-5/stable-diffusion-v1-5/v1-5-pruned-emaonly.safetensors",
     4.27, 6.0, true},
};
#define N_PICKS (int)(sizeof g_picks / sizeof g_picks[0])

/* The picks this machine can hold, in table order, into idx; returns how many. The first (the
 * smallest) is always offered: with the memory unknown, or too little, it is still the best try. */
static int picks_shown(const struct app *a, int idx[N_PICKS]) {
    int n = 0;
    double ram_gb = (double)a->fr.ram_total / 1e9;
    for (int i = 0; i < N_PICKS; i++)
        if (i == 0 || ram_gb == 0 || g_picks[i].ram_gb < ram_gb)
            idx[n++] = i;
    return n;
}

/* The download job: its inputs and result, owned here until the next one (one at a time). */
struct fr_job {
    mx_model_fetch_fn fetch;
    const char *ref;      /* borrowed: static table */
    struct mx_job *job;   /* the running job (worker thread only) */
    double last_post;     /* when progress was last posted */
    char *path;           /* the downloaded file (set by the job; freed at the next start) */
    bool image;           /* the pick is an image checkpoint */
};

static struct fr_job g_fr;

/* Progress from mx_pull on the worker: posted to the UI ten times a second; a cancel from Esc
 * stops the download. */
static int job_progress(void *ud, uint64_t done, uint64_t total, double rate) {
    struct fr_job *j = ud;
    (void)rate; /* the UI computes its own from the events' times */
    if (mx_job_canceled(j->job))
        return 1;
    double now = mx_time_s();
    if (now - j->last_post >= 0.1 || (total && done >= total)) {
        j->last_post = now;
        mx_job_post(j->job, MX_EV_PROGRESS, "download", (double)done, (double)total);
    }
    return 0;
}

static void job_fn(struct mx_job *job, void *ud) {
    struct fr_job *j = ud;
    struct mx_err err = {0};
    j->job = job;
    int rc = j->fetch(j->ref, job_progress, j, &j->path, &err);
    mx_job_done(job, rc, rc ? mx_err_msg(&err, rc) : NULL);
}

void mx_app_firstrun_open(struct app *a) {
    a->fr.open = true;
    a->fr.sel = 0;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    a->fr.ram_total = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
    a->fr.ram_free = mx_mem_available();
}

/* Starts downloading pick i on the worker. */
static void start(struct app *a, int i) {
    if (!a->o.fetch) {
        mx_app_notice(a, true, "this build cannot download: run the mixel pull command shown, "
                      "then start mixel again");
        return;
    }
    if (a->gen.busy || a->load.busy || a->fr.busy) {
        mx_app_notice(a, true, "busy: wait for the running job to finish");
        return;
    }
    free(g_fr.path);
    g_fr = (struct fr_job){.fetch = a->o.fetch, .ref = g_picks[i].ref, .image = g_picks[i].image};
    if (mx_worker_start(a->w, job_fn, &g_fr) != 0) {
        mx_app_notice(a, true, "could not start the download");
        return;
    }
    a->fr.busy = true;
    a->fr.t0 = mx_time_s();
    a->fr.done = a->fr.total = 0;
    a->fr.done0 = -1;
    mx_app_notice(a, false, "downloading %s (Esc stops; the same pick later resumes)",
                  g_picks[i].title);
}

void mx_app_firstrun_progress(struct app *a, double done, double total) {
    if (done == 0 && total == 0)
        return; /* still asking the hub: nothing to show */
    if (a->fr.done0 < 0) { /* the first bytes: those resumed from a .partial are not speed */
        a->fr.done0 = done;
        a->fr.t0 = mx_time_s();
    }
    a->fr.done = done;
    a->fr.total = total;
}

void mx_app_firstrun_done(struct app *a, int code, const char *msg) {
    a->fr.busy = false;
    if (code == MX_ECANCELED) {
        mx_app_notice(a, false, "download stopped: the .partial file is kept, Enter on the same "
                      "pick resumes it");
        return;
    }
    if (code != 0 || !g_fr.path) {
        mx_app_notice_detail(a, true, msg, "download failed: %s", msg ? msg : mx_strerror(code));
        return;
    }
    if (g_fr.image) {
        mx_app_notice(a, false, "saved %s: /image draws with it once a chat model is loaded",
                      g_fr.path);
        return;
    }
    a->fr.open = false;
    mx_app_notice(a, false, "downloaded %s: loading it", g_fr.path);
    mx_app_load_start(a, g_fr.path);
}

void mx_app_firstrun_deinit(void) {
    free(g_fr.path);
    memset(&g_fr, 0, sizeof g_fr);
}

/* Draws s from row y, wrapped at width, the rows below the first indented by indent; hard:
 * broken between characters, not at spaces (a command stays one piece to copy); rows past bottom
 * are left out. Returns the row after the last. */
static int line(struct app *a, int y, int bottom, int x, int width, int indent, bool hard,
                const char *s, int role, unsigned attr) {
    size_t len = strlen(s), at = 0;
    if (width <= indent + 8)
        indent = 0;
    do {
        int off = at ? indent : 0;
        size_t next, n;
        if (hard) { /* ASCII: the references are */
            n = len - at < (size_t)(width - off) ? len - at : (size_t)(width - off);
            next = n;
        } else {
            n = mx_text_wrap(s + at, len - at, width - off, &next);
        }
        if (y < bottom)
            mx_app_put_text(a, y, x + off, s + at, n, width - off, role, attr);
        y++;
        at += next ? next : n;
    } while (at < len);
    return y;
}

/* The running download under its pick: a bar, bytes, speed and time left. Returns the next
 * row. */
static int draw_progress(struct app *a, int y, int bottom, int x, int w) {
    double frac = a->fr.total > 0 ? a->fr.done / a->fr.total : 0;
    double el = mx_time_s() - a->fr.t0;
    double rate = el > 0.5 && a->fr.done0 >= 0 ? (a->fr.done - a->fr.done0) / el : 0;
    char bar[20 * 3 + 1], done[32], total[32], rs[32], eta[32] = "--", buf[256];
    mx_text_bar(frac, 20, bar, sizeof bar);
    mx_fmt_bytes(a->fr.done, done, sizeof done);
    mx_fmt_bytes(a->fr.total, total, sizeof total);
    mx_fmt_bytes(rate, rs, sizeof rs);
    if (rate > 0 && a->fr.total > a->fr.done)
        snprintf(eta, sizeof eta, "%.0fs", (a->fr.total - a->fr.done) / rate);
    snprintf(buf, sizeof buf, "    %s %3.0f%%  %s / %s  %s/s  ETA %s", bar, frac * 100, done,
             a->fr.total > 0 ? total : "?", rate > 0 ? rs : "0 MB", eta);
    return line(a, y, bottom, x, w, 4, false, buf, MX_ROLE_warning, MX_ATTR_BOLD);
}

/* The screen: what a model is, the keys, this machine's memory, the picks with their commands
 * (and the running download's progress under its pick), and --remote for a GPU box. */
static void firstrun_draw(struct app *a, int top, int left, int height, int width) {
    int bottom = top + height, y = top, x = left + 1, w = width - 2;
    char buf[512], tot[32], fre[32];
    if (w < 20)
        return;
    y = line(a, y, bottom, x, w, 0, false, "Welcome to mixel: no model was found on this machine "
             "yet.", MX_ROLE_heading, MX_ATTR_BOLD);
    y = line(a, y, bottom, x, w, 0, false, "A model is the file of weights that writes the "
             "answers (a GGUF, 1 to 100 GB); mixel runs it on this machine. Download one below, "
             "or start mixel with -m FILE.gguf.", MX_ROLE_normal, 0);
    y = line(a, y, bottom, x, w, 0, false, a->fr.busy ? "Esc stops the download (resumable)."
             : "Up/Down choose, Enter downloads it (into ~/models) and opens the chat; Esc "
               "or typing closes this.", MX_ROLE_muted, 0);
    mx_fmt_bytes((double)a->fr.ram_total, tot, sizeof tot);
    mx_fmt_bytes((double)a->fr.ram_free, fre, sizeof fre);
    snprintf(buf, sizeof buf, "This machine: %s of RAM, %s free now.",
             a->fr.ram_total ? tot : "an unknown amount", a->fr.ram_free ? fre : "unknown");
    y = line(a, y + 1, bottom, x, w, 0, false, buf, MX_ROLE_normal, 0);
    y++;
    int idx[N_PICKS], n = picks_shown(a, idx);
    if (a->fr.sel >= n)
        a->fr.sel = n - 1;
    for (int k = 0; k < n; k++) {
        const struct pick *p = &g_picks[idx[k]];
        bool sel = k == a->fr.sel;
        char size[32];
        mx_fmt_bytes(p->size_gb * 1e9, size, sizeof size);
        /* the pick's purpose when there is room for it on the line */
        snprintf(buf, sizeof buf, "%s %s \xc2\xb7 %s \xc2\xb7 needs ~%.1f GB RAM", sel ? ">" : " ",
                 p->title, size, p->ram_gb);
        if (w >= 100)
            snprintf(buf + strlen(buf), sizeof buf - strlen(buf), " \xc2\xb7 %s", p->what);
        if (sel && y < bottom) {
            attrset(mx_app_role_attr(a, MX_ROLE_selection, 0));
            mvhline(y, left, ' ', width);
        }
        y = line(a, y, bottom, x, w, 2, false, buf, sel ? MX_ROLE_selection : MX_ROLE_normal,
                 0);
        snprintf(buf, sizeof buf, "    mixel pull %s", p->ref);
        y = line(a, y, bottom, x, w, 4, true, buf, MX_ROLE_code, 0);
        if (sel && a->fr.busy)
            y = draw_progress(a, y, bottom, x, w);
    }
    line(a, y + 1, bottom, x, w, 0, false, "A GPU box elsewhere (vLLM, llama.cpp's server, "
         "ollama): mixel chat --remote http://HOST:8000/v1", MX_ROLE_normal, 0);
}

static bool firstrun_focused(const struct app *a) {
    return a->fr.open && !a->load.busy;
}

/* Up/Down choose, Enter downloads, Esc stops a download or closes the screen. Any other key
 * closes the screen and goes on to the input line: a user who starts typing a message (or a
 * /command) gets it, rather than losing the letters to a list. While a download runs, the
 * screen keeps every key (Esc stops it). */
static int firstrun_key(struct app *a, const unsigned char *b, size_t n, size_t *used) {
    *used = mx_key_len(b, n);
    int idx[N_PICKS], np = picks_shown(a, idx);
    if (*used == 3 && (b[1] == '[' || b[1] == 'O') && (b[2] == 'A' || b[2] == 'B')) {
        if (!a->fr.busy) {
            a->fr.sel += b[2] == 'A' ? -1 : 1;
            a->fr.sel = a->fr.sel < 0 ? 0 : a->fr.sel >= np ? np - 1 : a->fr.sel;
        }
    } else if (b[0] == '\r' || b[0] == '\n') {
        if (a->fr.busy)
            mx_app_notice(a, false, "downloading: Esc stops it");
        else
            start(a, idx[a->fr.sel]);
    } else if (b[0] == 0x1b && *used == 1 && a->fr.busy) {
        mx_worker_cancel(a->w);
    } else if (a->fr.busy) {
        mx_app_notice(a, false, "downloading: Esc stops it first");
    } else if (b[0] == 0x1b && *used == 1) {
        a->fr.open = false;
        mx_app_notice(a, false, "no model: /model PATH loads one, or run mixel pull");
    } else if (b[0] >= 0x20 && b[0] != 0x7f) {
        a->fr.open = false;
        return MX_KEY_REDRAW; /* not handled: the input line takes the key */
    }
    return MX_KEY_HANDLED | MX_KEY_REDRAW;
}

const struct mx_view_ops mx_view_firstrun = {
    .name = "firstrun", .focused = firstrun_focused, .draw = firstrun_draw, .key = firstrun_key,
};
