/* loop.c - the chat's main loop (DESIGN.md "The UI never blocks"): this thread owns the terminal;
 * it polls stdin, the worker's wake-up pipe and a SIGWINCH pipe, hands what arrived to input.c
 * (keys), gen.c (worker events) or a resize, then draws one frame. Only this loop redraws; key
 * handlers and commands change state and return.
 *
 * Start: graphics detection (before curses: it reads the terminal's answers), the theme, the
 * worker, curses, bracketed paste, readline, the history database, the model picker. End: an
 * answer still streaming is stopped and stored as partial, the worker joined, the KV cache saved.
 */
#include "tui/app.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "app/engine_llm.h"
#include "core/base/util.h"
#include "history/db.h"
#include "tui/app_int.h"
#include "tui/conv.h"
#include "tui/draw.h"
#include "tui/firstrun.h"
#include "tui/gen.h"
#include "tui/imagegen.h"
#include "tui/input.h"
#include "tui/load.h"
#include "tui/picker.h"
#include "tui/readline_glue.h"
#include "tui/status.h"
#include "tui/store.h"
#include "tui/style.h"
#include "tui/view.h"
#include "tui/tools.h"

static volatile sig_atomic_t g_winch;
static int g_winch_pipe[2] = {-1, -1};

static void on_winch(int sig) {
    (void)sig;
    g_winch = 1;
    char one = 1;
    if (g_winch_pipe[1] >= 0 && write(g_winch_pipe[1], &one, 1) < 0) {
        /* the pipe is full: a wake-up is already pending */
    }
}

/* Every view, for resize(). */
static const struct mx_view_ops *const all_views[] = {
    &mx_view_conversation, &mx_view_sidebar, &mx_view_picker, &mx_view_gallery, &mx_view_viewer,
    &mx_view_firstrun,
};

/* The terminal changed size (SIGWINCH): curses learns the new size, the whole screen is sent
 * again (sixels too), and the views adjust. */
static void handle_resize(struct app *a) {
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0)
        resizeterm(ws.ws_row, ws.ws_col);
    clearok(curscr, TRUE);
    a->frame.full_repaint = true;
    for (size_t v = 0; v < sizeof all_views / sizeof all_views[0]; v++)
        if (all_views[v]->resize)
            all_views[v]->resize(a, LINES, COLS);
}

/* The wake-up pipe for SIGWINCH (non-blocking both ends) and the handler, installed before
 * initscr so ncurses keeps it. Returns 0 or -1. */
static int winch_init(void) {
    if (pipe(g_winch_pipe) != 0)
        return -1;
    int fl = fcntl(g_winch_pipe[0], F_GETFL);
    fcntl(g_winch_pipe[0], F_SETFL, fl | O_NONBLOCK);
    fl = fcntl(g_winch_pipe[1], F_GETFL);
    fcntl(g_winch_pipe[1], F_SETFL, fl | O_NONBLOCK);
    struct sigaction sa = {0};
    sa.sa_handler = on_winch;
    sigaction(SIGWINCH, &sa, NULL);
    return 0;
}

/* At most one frame per FRAME_S: whatever arrives within a frame (keys, tokens, a resize) is
 * handled first and drawn once, so drawing costs the same however fast input comes. */
#define FRAME_S (1.0 / 60)

/* Polls until something arrives and handles it; draws when something changed and a frame has
 * passed since the last one; until the user quits. */
static void main_loop(struct app *a) {
    bool dirty = true; /* something changed since the last frame */
    double last_draw = 0;
    while (!a->quit) {
        double now = mx_time_s();
        if (dirty && now - last_draw >= FRAME_S) {
            mx_app_draw(a);
            last_draw = now;
            dirty = false;
        }
        int timeout = dirty ? (int)((last_draw + FRAME_S - now) * 1000) + 1 : -1;
        struct pollfd p[3] = {{.fd = STDIN_FILENO, .events = POLLIN},
                              {.fd = mx_worker_wake_fd(a->w), .events = POLLIN},
                              {.fd = g_winch_pipe[0], .events = POLLIN}};
        int r = poll(p, 3, timeout);
        if (r < 0 && errno != EINTR)
            break;
        if (r <= 0 && !g_winch)
            continue; /* the frame is due (or a signal came in) */
        if (p[2].revents & POLLIN) {
            char tmp[64];
            while (read(g_winch_pipe[0], tmp, sizeof tmp) > 0)
                ;
        }
        if (g_winch) {
            g_winch = 0;
            handle_resize(a);
            dirty = true;
        }
        if (p[0].revents & (POLLIN | POLLHUP)) {
            unsigned char buf[4096];
            ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
            if (n <= 0 && !(n < 0 && errno == EINTR)) {
                a->quit = true; /* the terminal went away */
                break;
            }
            int flags = n > 0 ? mx_app_input(a, buf, (size_t)n) : 0;
            if (flags & MX_KEY_RESIZE)
                handle_resize(a);
            if (flags & (MX_KEY_REDRAW | MX_KEY_RESIZE))
                dirty = true;
            if (flags & MX_KEY_QUIT)
                a->quit = true;
        }
        if (p[1].revents & POLLIN) {
            mx_app_gen_events(a);
            mx_app_rl_take_text(a); /* a queued message that was not sent is back to edit */
            dirty = true;
        }
        if (a->tools.go_on) { /* a key answered the last tool call: the answer goes on */
            mx_app_gen_go_on(a);
            dirty = true;
        }
    }
}

int mx_app_run(const struct mx_app_opts *opts) {
    struct app a = {0};
    a.o = *opts;
    a.load.owned = opts->engine; /* the app's from here on (app.h) */
    a.settings = opts->settings;
    a.seed_fixed = opts->seed_fixed;
    mx_app_tools_init(&a, opts->tools, opts->tools_yes); /* the registry is the app's now */
    if (opts->system_prompt)
        a.conv.system_prompt = strdup(opts->system_prompt);
    struct mx_err err = {0};
    a.gal.viewer = -1;
    a.gen.n_reused = a.gen.n_prefilled = -1; /* no prompt evaluated yet: nothing to show */
    mx_gfx_detect(opts->graphics, 0, &a.img.gfx, NULL); /* before curses: it reads the answers */
    /* no theme asked for: follow the terminal's background (OSC 11) so text stays readable */
    const char *theme = opts->theme;
    if (!theme) {
        const unsigned char *bg = a.img.gfx.bg;
        bool light = a.img.gfx.bg_known && 299 * bg[0] + 587 * bg[1] + 114 * bg[2] > 128000;
        theme = light ? "light" : "dark";
    }
    snprintf(a.style.theme_name, sizeof a.style.theme_name, "%s", theme);
    int theme_rc = mx_theme_load(theme, &a.style.theme, &err);
    if (mx_worker_new(&a.w) != 0) {
        fprintf(stderr, "mixel: cannot start the worker thread\n");
        if (a.load.owned)
            a.load.owned->free(a.load.owned);
        if (a.o.remote_images)
            a.o.remote_images->free(a.o.remote_images);
        return 1;
    }
    if (winch_init() != 0) {
        mx_worker_free(a.w);
        if (a.load.owned)
            a.load.owned->free(a.load.owned);
        if (a.o.remote_images)
            a.o.remote_images->free(a.o.remote_images);
        return 1;
    }

    initscr();
    raw();
    noecho();
    nonl();
    keypad(stdscr, FALSE); /* readline parses key sequences itself */
    mx_app_style_apply(&a);
    fputs("\033[?2004h", stdout); /* bracketed paste on */
    fflush(stdout);
    mx_app_rl_init(&a);
    if (theme_rc != 0)
        mx_app_notice(&a, true, "%s: using the default colours", err.msg);
    mx_app_store_open(&a);
    mx_app_load_session_model(&a); /* --resume: the session's model, if none was given */
    if (opts->engine) {
        const char *warn = mx_engine_llm_warning(opts->engine);
        if (warn && warn[0])
            mx_app_notice(&a, true, "%s", warn);
    }
    if (!opts->engine && opts->discover)
        mx_app_picker_open(&a);
    if (!opts->engine && opts->discover && !a.pick.open && !a.load.busy)
        mx_app_firstrun_open(&a); /* no model anywhere: what a model is, picks to download */
    if (!opts->engine)
        mx_app_conv_add_banner(&a);
    main_loop(&a);
    /* an answer still streaming is stopped and stored as partial before the engine goes away:
     * its DONE event finishes the message in the history */
    if (a.gen.busy || a.load.busy) {
        mx_app_gen_stop(&a);
        double t_end = mx_time_s() + 10;
        while ((a.gen.busy || a.load.busy) && mx_time_s() < t_end) {
            struct pollfd p = {.fd = mx_worker_wake_fd(a.w), .events = POLLIN};
            poll(&p, 1, 100);
            mx_app_gen_events(&a);
        }
    }
    mx_worker_free(a.w); /* joins the engine thread */
    a.gen.busy = a.load.busy = false;
    mx_app_snapshot_save(&a);
    mx_app_gen_deinit(&a);
    mx_app_image_deinit(&a);
    mx_app_tools_deinit(&a);
    mx_app_rl_deinit(&a);
    fputs("\033[?2004l", stdout);
    fflush(stdout);
    endwin();
    mx_app_conv_clear(&a);
    mx_session_list_free(&a.side.sessions);
    mx_model_list_free(&a.pick.models);
    mx_app_picker_free(&a);
    free(a.img.pairs);
    if (a.load.owned)
        a.load.owned->free(a.load.owned);
    mx_app_load_deinit();
    mx_app_firstrun_deinit();
    mx_db_close(a.store.db);
    free(a.conv.msgs);
    free(a.conv.system_prompt);
    free(a.paste.buf);
    close(g_winch_pipe[0]);
    close(g_winch_pipe[1]);
    g_winch_pipe[0] = g_winch_pipe[1] = -1;
    return 0;
}
