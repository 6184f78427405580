/* readline_glue.c - GNU readline in callback mode under curses (the way tig embeds it): bytes are
 * handed over one at a time through the getc hook, readline never touches the terminal (no
 * prep/deprep, no redisplay, output to /dev/null: the input view draws rl_line_buffer), Enter
 * hands the line to the slash commands or sends it, Tab completes commands from their table and
 * paths, several matches show in the status line. The input history persists in the data folder.
 */
#include "tui/readline_glue.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "history/paths.h"
#include "tui/commands.h"
#include "tui/keys.h"
#include "tui/patharg.h"
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

/* The state of one path completion (path_generator): the folder part of the word as typed
 * (quoting kept), the folder it names, the name prefix to match, the quote the word opened. */
static struct {
    char *dir_typed;
    char dir[4096];
    char *prefix;
    char quote;
    DIR *d;
} g_pc;

static void path_completion_end(void) {
    free(g_pc.dir_typed);
    free(g_pc.prefix);
    if (g_pc.d)
        closedir(g_pc.d);
    memset(&g_pc, 0, sizeof g_pc);
}

/* Names in the folder the word names, each as the word must read for the command (patharg.c):
 * the folder part as typed, the name quoted (a backslash before a blank, or as the opened quote
 * needs), a folder with "/". A ~ stays as typed: the command expands it. */
static char *path_generator(const char *text, int state) {
    if (!strcmp(text, "~") && !rl_completion_quote_character) /* the home folder itself */
        return state ? NULL : strdup("~/");
    if (!state) {
        path_completion_end();
        g_pc.quote = (char)rl_completion_quote_character;
        const char *slash = strrchr(text, '/');
        size_t dn = slash ? (size_t)(slash - text) + 1 : 0;
        g_pc.dir_typed = strndup(text, dn);
        g_pc.prefix = mx_path_unquote(text + dn, g_pc.quote);
        if (!g_pc.dir_typed || !g_pc.prefix)
            return NULL;
        if (!dn) {
            snprintf(g_pc.dir, sizeof g_pc.dir, ".");
        } else if (g_pc.quote) { /* inside quotes a ~ is a ~, as the command reads it */
            char *u = mx_path_unquote(g_pc.dir_typed, g_pc.quote);
            snprintf(g_pc.dir, sizeof g_pc.dir, "%s", u ? u : "");
            free(u);
        } else if (mx_path_arg(g_pc.dir_typed, g_pc.dir, sizeof g_pc.dir, NULL) != 0) {
            return NULL;
        }
        g_pc.d = opendir(g_pc.dir);
    }
    if (!g_pc.d)
        return NULL;
    size_t pn = strlen(g_pc.prefix);
    for (struct dirent *e; (e = readdir(g_pc.d)) != NULL;) {
        if (strncmp(e->d_name, g_pc.prefix, pn) || !strcmp(e->d_name, ".") ||
            !strcmp(e->d_name, "..") || (e->d_name[0] == '.' && g_pc.prefix[0] != '.'))
            continue;
        char full[8192];
        struct stat st;
        snprintf(full, sizeof full, "%s/%s", g_pc.dir, e->d_name);
        bool is_dir = stat(full, &st) == 0 && S_ISDIR(st.st_mode);
        char *q = mx_path_quote(e->d_name, g_pc.quote);
        if (!q)
            return NULL;
        size_t n = strlen(g_pc.dir_typed) + strlen(q) + 2;
        char *m = malloc(n);
        if (m)
            snprintf(m, n, "%s%s%s", g_pc.dir_typed, q, is_dir ? "/" : "");
        free(q);
        return m;
    }
    return NULL;
}

/* The line starts with a command that takes a path (/show, /save, /export, /model). */
static bool line_takes_path(void) {
    const char *l = rl_line_buffer;
    size_t n = strcspn(l, " \t");
    for (size_t i = 0; mx_app_command_name(i); i++)
        if (strlen(mx_app_command_name(i)) == n && !strncmp(l, mx_app_command_name(i), n))
            return mx_app_command_takes_path(i);
    return false;
}

static char **complete_hook(const char *text, int start, int end) {
    (void)end;
    if (start == 0 && text[0] == '/') {
        rl_attempted_completion_over = 1;
        return rl_completion_matches(text, slash_generator);
    }
    if (!line_takes_path())
        return NULL; /* readline's own file name completion */
    /* a command's path: completed the way the command reads it (patharg.c), so that a name
     * with blanks or a ~ that completion offers is one the command takes */
    rl_attempted_completion_over = 1;
    char **m = rl_completion_matches(text, path_generator);
    path_completion_end();
    if (m && !m[1] && m[0][0] && m[0][strlen(m[0]) - 1] == '/') {
        rl_completion_suppress_append = 1; /* a folder: go on typing in it */
        rl_completion_suppress_quote = 1;
    }
    return m;
}

static int quoted_hook(char *text, int i) {
    return mx_path_char_quoted(text, i);
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
    /* a path's word may hold quoted blanks ("my\\ pics/a") and begin with a quote */
    rl_completer_word_break_characters = " \t\n\"'`@$><=;|&{(";
    rl_completer_quote_characters = "'\"";
    rl_char_is_quoted_p = quoted_hook;
    rl_completion_display_matches_hook = rl_show_matches;
    rl_outstream = fopen("/dev/null", "w"); /* readline must never write to the screen itself */
    char dir[4096];
    /* a message of several lines is one history entry, in the file too: entries are written
     * after a "#<time>" line, which lets read_history join the lines that follow one */
    history_comment_char = '#';
    history_write_timestamps = 1;
    if (mx_path_data_dir(dir, sizeof dir, NULL) == 0) {
        snprintf(a->rl.history_path, sizeof a->rl.history_path, "%s/input_history", dir);
        read_history(a->rl.history_path);
        /* entries from a file of older mixels have no time: give them one, so the whole file
         * is written in the joined form */
        HIST_ENTRY **h = history_list();
        for (int i = 0; h && h[i]; i++)
            if (!h[i]->timestamp || !h[i]->timestamp[0]) {
                char t[24];
                snprintf(t, sizeof t, "#%ld", (long)time(NULL));
                free(h[i]->timestamp);
                h[i]->timestamp = strdup(t);
            }
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
