/* readline_glue.c - GNU readline in callback mode under curses (the way tig embeds it): bytes are
 * handed over one at a time through the getc hook, readline never touches the terminal (no
 * prep/deprep, no redisplay, output to /dev/null: the input view draws rl_line_buffer), Enter
 * hands the line to the slash commands or sends it, Tab completes commands from their table and
 * paths, several matches show in the status line. The input history persists in the data folder.
 */
#include "tui/readline_glue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "history/paths.h"
#include "tui/commands.h"
#include "tui/keys.h"
#include "tui/status.h"

static struct app *g_app; /* readline's hooks carry no user pointer */

/* The bytes being handed to readline (mx_app_rl_feed): its getc hook takes them one at a time
 * and its input-available hook says whether more of them wait, so that readline's typeahead
 * batching (rl_insert inserts every pending self-inserting byte in one call) works on them. The
 * two hooks must agree: when the second looked at stdin while the first handed over the byte
 * already read, rl_insert inserted that byte again and again for as long as more keys waited in
 * the terminal (a paste typed as keys stalled the TUI). */
static const unsigned char *g_feed;
static size_t g_feed_len, g_feed_pos;

static int rl_getc_hook(FILE *f) {
    (void)f;
    /* readline reads once per rl_callback_read_char and then only after the hook below said yes;
     * an empty buffer never happens, and 0 (set-mark) would be harmless if it did */
    return g_feed_pos < g_feed_len ? g_feed[g_feed_pos++] : 0;
}

static int rl_input_available(void) {
    return g_feed_pos < g_feed_len;
}

static void rl_redisplay_hook(void) {
    /* the main loop draws the input area from rl_line_buffer after each batch of keys */
}

static void rl_prep_noop(int meta) {
    (void)meta;
}

static void rl_deprep_noop(void) {}

static void rl_line_handler(char *line) {
    if (!line) { /* Ctrl-D on an empty line */
        g_app->quit = true;
        return;
    }
    if (line[0])
        add_history(line);
    mx_app_submit(g_app, line);
    free(line);
}

static char *slash_generator(const char *text, int state) {
    static size_t i;
    if (!state)
        i = 0;
    for (const char *n; (n = mx_app_command_name(i)) != NULL;) {
        i++;
        if (!strncmp(n, text, strlen(text)))
            return strdup(n);
    }
    return NULL;
}

static char **complete_hook(const char *text, int start, int end) {
    (void)end;
    if (start == 0 && text[0] == '/') {
        rl_attempted_completion_over = 1;
        return rl_completion_matches(text, slash_generator);
    }
    return NULL; /* readline's file name completion, for /model PATH and the like */
}

/* Several matches: show them in the status line instead of readline printing to the screen. */
static void rl_show_matches(char **matches, int n, int max_len) {
    (void)max_len;
    char buf[256];
    size_t o = 0;
    for (int i = 1; i <= n && o < sizeof buf - 1; i++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s ", matches[i]);
    mx_app_notice(g_app, false, "%s", buf);
}

void mx_app_rl_init(struct app *a) {
    g_app = a;
    rl_readline_name = "mixel";
    rl_catch_signals = 0;
    rl_catch_sigwinch = 0;
    rl_change_environment = 0;
    rl_getc_function = rl_getc_hook;
    rl_input_available_hook = rl_input_available;
    rl_redisplay_function = rl_redisplay_hook;
    rl_prep_term_function = rl_prep_noop;
    rl_deprep_term_function = rl_deprep_noop;
    rl_attempted_completion_function = complete_hook;
    rl_completion_display_matches_hook = rl_show_matches;
    rl_outstream = fopen("/dev/null", "w"); /* readline must never write to the screen itself */
    char dir[4096];
    if (mx_path_data_dir(dir, sizeof dir, NULL) == 0) {
        snprintf(a->rl.history_path, sizeof a->rl.history_path, "%s/input_history", dir);
        read_history(a->rl.history_path);
    }
    rl_callback_handler_install("", rl_line_handler);
    mx_app_keys_bind(a);
}

void mx_app_rl_deinit(struct app *a) {
    rl_callback_handler_remove();
    if (a->rl.history_path[0]) {
        char dir[4096];
        if (mx_path_data_dir(dir, sizeof dir, NULL) == 0 && mx_mkdir_p(dir, NULL) == 0) {
            stifle_history(2000);
            write_history(a->rl.history_path);
        }
    }
    free(a->rl.next_text);
    a->rl.next_text = NULL;
    if (rl_outstream && rl_outstream != stdout) {
        fclose(rl_outstream);
        rl_outstream = NULL;
    }
}

void mx_app_rl_take_text(struct app *a) {
    if (!a->rl.next_text)
        return;
    char *t = a->rl.next_text;
    a->rl.next_text = NULL;
    if (rl_line_buffer && rl_end > 0) { /* something is typed already: the text goes first */
        size_t n = strlen(t);
        char *both = malloc(n + (size_t)rl_end + 2);
        if (both) {
            memcpy(both, t, n);
            both[n] = '\n';
            memcpy(both + n + 1, rl_line_buffer, (size_t)rl_end);
            both[n + 1 + (size_t)rl_end] = '\0';
            free(t);
            t = both;
        }
    }
    rl_replace_line(t, 0);
    rl_point = rl_end;
    free(t);
}

size_t mx_app_rl_feed(struct app *a, const unsigned char *buf, size_t n,
                      bool (*stop)(const struct app *a)) {
    g_feed = buf;
    g_feed_len = n;
    g_feed_pos = 0;
    while (g_feed_pos < g_feed_len && !a->quit) {
        size_t before = g_feed_pos;
        rl_callback_read_char();
        mx_app_rl_take_text(a); /* after the handler: readline has emptied its buffer by now */
        if (g_feed_pos == before) /* cannot happen (see rl_getc_hook): never loop on it */
            g_feed_pos++;
        if (stop && stop(a))
            break;
    }
    size_t used = g_feed_pos;
    g_feed = NULL;
    g_feed_len = g_feed_pos = 0;
    return used;
}
