/* commands.c - the slash commands: one table (name, arguments, help, function) that dispatches
 * what the user types after "/", lists the commands in /help (with the keys of keys.h) and feeds
 * Tab completion (readline_glue.c). Each command is small: it checks its argument, does its work
 * through the module that owns the state (store, gen, load, sidebar, gallery, style) and leaves a
 * notice; only the main loop redraws.
 */
#include "tui/commands.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "app/engine_llm.h"
#include "core/base/err.h"
#include "core/base/util.h"
#include "history/db.h"
#include "history/paths.h"
#include "tui/conv.h"
#include "tui/gallery.h"
#include "tui/gen.h"
#include "tui/imagegen.h"
#include "tui/images.h"
#include "tui/keys.h"
#include "tui/load.h"
#include "tui/patharg.h"
#include "tui/picker.h"
#include "tui/sidebar.h"
#include "tui/status.h"
#include "tui/store.h"
#include "tui/style.h"
#include "tui/tools.h"

typedef void (*slash_fn)(struct app *a, const char *arg);

static void cmd_help(struct app *a, const char *arg);

static void cmd_quit(struct app *a, const char *arg) {
    (void)arg;
    a->quit = true;
}

static void cmd_clear(struct app *a, const char *arg) {
    (void)arg;
    mx_app_session_fresh(a, "conversation cleared (the saved session is in /sessions)");
}

static void cmd_stop(struct app *a, const char *arg) {
    (void)arg;
    if (!a->gen.busy)
        mx_app_notice(a, false, "nothing is being generated");
    mx_app_gen_stop(a);
}

static void cmd_theme(struct app *a, const char *arg) {
    if (!arg || !arg[0]) {
        mx_app_notice(a, false, "theme: %s (dark, light, high-contrast, basic16 or your own)",
               a->style.theme_name);
        return;
    }
    struct mx_theme t;
    struct mx_err err = {0};
    if (mx_theme_load(arg, &t, &err) != 0) {
        mx_app_notice(a, true, "%s", err.msg);
        return;
    }
    a->style.theme = t;
    snprintf(a->style.theme_name, sizeof a->style.theme_name, "%s", arg);
    mx_app_style_apply(a);
    mx_app_img_forget(a); /* transparent pixels go over the new background */
    mx_app_notice(a, false, "theme %s", arg);
}

static void cmd_system(struct app *a, const char *arg) {
    free(a->conv.system_prompt);
    a->conv.system_prompt = arg && arg[0] ? strdup(arg) : NULL;
    mx_app_notice(a, false, a->conv.system_prompt ? "system prompt set" : "system prompt cleared");
}

static int parse_float_arg(struct app *a, const char *name, const char *arg, float lo, float hi,
                           float *out) {
    char *end;
    float v = arg ? strtof(arg, &end) : 0;
    if (!arg || !arg[0] || *end || v < lo || v > hi) {
        mx_app_notice(a, true, "%s takes a number from %g to %g", name, lo, hi);
        return -1;
    }
    *out = v;
    mx_app_notice(a, false, "%s = %g", name, v);
    return 0;
}

static void cmd_temp(struct app *a, const char *arg) {
    if (parse_float_arg(a, "/temp", arg, 0, 5, &a->settings.sampling.temp) == 0)
        mx_app_store_settings(a);
}

static void cmd_top_p(struct app *a, const char *arg) {
    if (parse_float_arg(a, "/top-p", arg, 0, 1, &a->settings.sampling.top_p) == 0)
        mx_app_store_settings(a);
}

/* /seed N pins the seed: every answer, /regen included, samples the same way (reproducible);
 * /seed random (the default) draws a fresh one per answer; /seed alone says which is in force. */
static void cmd_seed(struct app *a, const char *arg) {
    if (!arg || !arg[0]) {
        if (a->seed_fixed)
            mx_app_notice(a, false, "seed fixed at %llu (/seed random for a fresh one per answer)",
                          (unsigned long long)a->settings.sampling.seed);
        else
            mx_app_notice(a, false, "seed: a fresh one per answer (/seed N to fix it)");
        return;
    }
    if (!strcmp(arg, "random")) {
        a->seed_fixed = false;
        mx_app_store_settings(a);
        mx_app_notice(a, false, "seed: a fresh one per answer");
        return;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 10);
    if (*end || errno || arg[0] == '-') {
        mx_app_notice(a, true, "/seed takes a whole number or 'random'");
        return;
    }
    a->settings.sampling.seed = v;
    a->seed_fixed = true;
    mx_app_store_settings(a);
    mx_app_notice(a, false, "seed fixed at %llu: /regen repeats an answer exactly", v);
}

static void cmd_ctx(struct app *a, const char *arg) {
    char *end;
    long v = arg ? strtol(arg, &end, 10) : 0;
    if (!arg || !arg[0] || *end || v < 16 || v > 1 << 20) {
        mx_app_notice(a, true, "/ctx takes a context size in tokens (16 .. 1048576)");
        return;
    }
    a->settings.n_ctx = (int)v;
    mx_app_store_settings(a);
    mx_app_notice(a, false, "context = %ld tokens (applies when the model is next loaded)", v);
}

static void cmd_regen(struct app *a, const char *arg) {
    (void)arg;
    if (a->gen.busy) {
        mx_app_notice(a, true, "/regen: an answer is still being generated: Esc stops it");
        return;
    }
    int last = a->conv.n_msgs - 1;
    while (last >= 0 && a->conv.msgs[last].state == MSG_NOTICE)
        last--;
    if (last < 0 || a->conv.msgs[last].role != MX_ROLE_ASSISTANT) {
        mx_app_notice(a, true, "/regen: no answer to regenerate");
        return;
    }
    if (a->conv.msgs[last].image) {
        mx_app_notice(a, true, "/regen: the last message is an image: /image draws another "
                      "(a new seed each time unless --seed is given)");
        return;
    }
    /* the new answer is a sibling of the old one: continue from the user message before it */
    if (a->store.db && a->store.session && last > 0 && a->conv.msgs[last - 1].db_id) {
        struct mx_err err = {0};
        int rc = mx_db_set_leaf(a->store.db, a->store.session, a->conv.msgs[last - 1].db_id, &err);
        if (rc != 0)
            mx_app_store_warn(a, &err, rc);
    }
    mx_app_msg_free(&a->conv.msgs[last]);
    memmove(&a->conv.msgs[last], &a->conv.msgs[last + 1],
            (size_t)(a->conv.n_msgs - last - 1) * sizeof *a->conv.msgs);
    a->conv.n_msgs--;
    if (a->seed_fixed) /* said, so the same answer again is no surprise */
        mx_app_notice(a, false, "seed fixed at %llu: the same settings give the same answer "
                      "(/seed random to vary)", (unsigned long long)a->settings.sampling.seed);
    mx_app_gen_start(a);
}

static void cmd_edit(struct app *a, const char *arg) {
    (void)arg;
    if (a->gen.busy) {
        mx_app_notice(a, true, "/edit: an answer is still being generated: Esc stops it");
        return;
    }
    for (int i = a->conv.n_msgs - 1; i >= 0; i--) {
        if (a->conv.msgs[i].role != MX_ROLE_USER || a->conv.msgs[i].image)
            continue; /* an attached image's caption (/show) is not a message to edit */
        /* readline empties the line after this command returns: the text goes in after it */
        mx_app_input_give(a, a->conv.msgs[i].text);
        /* the edited message becomes a sibling of this one: continue from its parent */
        struct mx_msg dm;
        if (a->store.db && a->store.session && a->conv.msgs[i].db_id &&
            mx_db_msg_get(a->store.db, a->conv.msgs[i].db_id, &dm, NULL) == 0) {
            struct mx_err err = {0};
            int rc = mx_db_set_leaf(a->store.db, a->store.session, dm.parent, &err);
            if (rc != 0)
                mx_app_store_warn(a, &err, rc);
            mx_msg_deinit(&dm);
        }
        for (int j = i; j < a->conv.n_msgs; j++)
            mx_app_msg_free(&a->conv.msgs[j]);
        a->conv.n_msgs = i;
        mx_app_notice(a, false, "editing your last message: Enter sends it again");
        return;
    }
    mx_app_notice(a, true, "/edit: no message of yours to edit");
}

/* OSC 52 puts text on the clipboard of the terminal the user sits at, even over SSH. It is our
 * own escape sequence written directly, never model output passed through. */
static void osc52_copy(const char *text, size_t len) {
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    fputs("\033]52;c;", stdout);
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned char)text[i] << 16;
        if (i + 1 < len)
            v |= (unsigned char)text[i + 1] << 8;
        if (i + 2 < len)
            v |= (unsigned char)text[i + 2];
        putchar(b64[(v >> 18) & 63]);
        putchar(b64[(v >> 12) & 63]);
        putchar(i + 1 < len ? b64[(v >> 6) & 63] : '=');
        putchar(i + 2 < len ? b64[v & 63] : '=');
    }
    fputs("\a", stdout);
    fflush(stdout);
}

/* The fenced code blocks of text (``` or ~~~ lines), in order: block k (0-based) starts at
 * *from and is *len bytes long. Returns how many there are (an unclosed last block counts: it
 * runs to the end, as it is shown). */
static int code_block(const char *text, int k, const char **from, size_t *len) {
    int n = 0;
    const char *open = NULL;
    char fence = 0;
    for (const char *p = text; p && *p;) {
        const char *eol = strchr(p, '\n');
        const char *q = p;
        while (*q == ' ')
            q++;
        bool is_fence = (q[0] == '`' || q[0] == '~') && q[1] == q[0] && q[2] == q[0];
        if (is_fence && !open) {
            open = eol ? eol + 1 : p + strlen(p);
            fence = q[0];
        } else if (is_fence && q[0] == fence) {
            if (n == k) {
                *from = open;
                *len = (size_t)(p - open);
            }
            n++;
            open = NULL;
        }
        p = eol ? eol + 1 : NULL;
    }
    if (open) {
        if (n == k) {
            *from = open;
            *len = strlen(open);
        }
        n++;
    }
    if (n > k && *len && (*from)[*len - 1] == '\n')
        (*len)--; /* the block's text, without the newline before the closing fence */
    return n;
}

/* /copy: the whole last answer; /copy code [N]: its code block N (1 = the first; default the
 * last one). */
static void cmd_copy(struct app *a, const char *arg) {
    const struct msg *m = NULL;
    for (int i = a->conv.n_msgs - 1; i >= 0 && !m; i--)
        if (a->conv.msgs[i].role == MX_ROLE_ASSISTANT && a->conv.msgs[i].state != MSG_NOTICE &&
            a->conv.msgs[i].len && !a->conv.msgs[i].image) /* an image's caption is no answer */
            m = &a->conv.msgs[i];
    if (!m) {
        mx_app_notice(a, true, "/copy: there is no answer to copy yet");
        return;
    }
    if (!arg || !arg[0]) {
        osc52_copy(m->text, m->len);
        mx_app_notice(a, false, "copied the last answer (%zu bytes) to the clipboard", m->len);
        return;
    }
    char *end = NULL;
    long k = 0;
    if (strncmp(arg, "code", 4) || (arg[4] && arg[4] != ' ')) {
        mx_app_notice(a, true, "/copy copies the last answer; /copy code [N] its code block N");
        return;
    }
    const char *num = arg + 4;
    while (*num == ' ')
        num++;
    if (*num && ((k = strtol(num, &end, 10)) < 1 || *end)) {
        mx_app_notice(a, true, "/copy code takes the number of a code block (1 is the first)");
        return;
    }
    const char *from = NULL;
    size_t len = 0;
    int n = code_block(m->text, 1 << 30, &from, &len);
    if (n == 0) {
        mx_app_notice(a, true, "/copy code: the last answer has no code block");
        return;
    }
    if (k > n) {
        mx_app_notice(a, true, "/copy code: the last answer has %d code block%s", n,
                      n == 1 ? "" : "s");
        return;
    }
    code_block(m->text, *num ? (int)k - 1 : n - 1, &from, &len);
    osc52_copy(from, len);
    mx_app_notice(a, false, "copied code block %d of %d (%zu bytes) to the clipboard",
                  *num ? (int)k : n, n, len);
}

/* /export [PATH]: the conversation as Markdown, in a file only the user can read (0600, like
 * everything mixel stores); an empty conversation is not exported. */
static void cmd_export(struct app *a, const char *arg) {
    int n_msgs = 0;
    for (int i = 0; i < a->conv.n_msgs; i++)
        n_msgs += a->conv.msgs[i].state != MSG_NOTICE;
    if (!n_msgs) {
        mx_app_notice(a, true, "/export: the conversation is empty: nothing to export");
        return;
    }
    char path[4200];
    if (arg && arg[0]) {
        snprintf(path, sizeof path, "%s", arg);
    } else {
        char dir[4096];
        struct mx_err err = {0};
        if (mx_path_data_dir(dir, sizeof dir, &err) != 0 || mx_mkdir_p(dir, &err) != 0) {
            mx_app_notice(a, true, "/export: %s", err.msg);
            return;
        }
        snprintf(path, sizeof path, "%s/export-%ld.md", dir, (long)time(NULL));
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 && fchmod(fd, 0600) == 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        mx_app_notice(a, true, "/export: %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    if (a->conv.system_prompt)
        fprintf(f, "## System\n\n%s\n\n", a->conv.system_prompt);
    for (int i = 0; i < a->conv.n_msgs; i++) {
        const struct msg *m = &a->conv.msgs[i];
        if (m->state == MSG_NOTICE)
            continue;
        fprintf(f, "## %s%s\n\n%s\n\n", mx_app_role_label(m),
                m->state == MSG_STOPPED ? " (stopped)"
                : m->state == MSG_TRUNCATED ? " (cut: the context was full)" : "", m->text);
    }
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        mx_app_notice(a, true, "/export: writing %s failed", path);
        return;
    }
    mx_app_notice(a, false, "exported to %s", path);
}

/* /log: the recent notices with their times (and the details behind them), oldest first. */
static void cmd_log(struct app *a, const char *arg) {
    (void)arg;
    char log[MX_NOTICE_LOG * 640];
    if (mx_app_notice_log(a, log, sizeof log) == 0) {
        mx_app_notice(a, false, "no notices yet");
        return;
    }
    /* a code block: the lines as they are, without markdown reading into them */
    size_t n = strlen(log) + 64;
    char *buf = malloc(n);
    if (!buf)
        return;
    snprintf(buf, n, "**Recent notices**\n```\n%s```\n", log);
    mx_app_msg_add(a, MX_ROLE_SYSTEM, MSG_NOTICE, buf);
    free(buf);
    a->conv.scroll = 0;
}

static void cmd_sessions(struct app *a, const char *arg) {
    (void)arg;
    mx_app_sidebar_open(a);
}

static void cmd_resume(struct app *a, const char *arg) {
    if (!a->store.db) {
        mx_app_notice(a, true, "no history database: sessions are not saved");
        return;
    }
    if (a->gen.busy) {
        mx_app_notice(a, true, "an answer is still being generated: Esc stops it");
        return;
    }
    if (!arg || !arg[0]) {
        cmd_sessions(a, arg);
        return;
    }
    if (mx_app_session_resume(a, arg) == 0)
        mx_app_load_session_model(a);
}

static void cmd_search(struct app *a, const char *arg) {
    if (!a->store.db || !arg || !arg[0]) {
        mx_app_notice(a, true,
                      a->store.db ? "/search takes words to look for" : "no history database");
        return;
    }
    struct mx_db_hit_list hits;
    struct mx_err err = {0};
    int rc = mx_db_search(a->store.db, arg, 20, &hits, &err);
    if (rc != 0) {
        mx_app_notice_detail(a, true, mx_err_msg(&err, rc),
                             "/search found nothing: the search failed (%s); plain words work best",
                             mx_strerror(rc));
        return;
    }
    char buf[8192];
    size_t o = (size_t)snprintf(buf, sizeof buf, "**Search: %s** (%zu found; /resume ID opens)\n",
                                arg, hits.n);
    for (size_t i = 0; i < hits.n && o < sizeof buf - 1; i++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "- session %lld: %s\n",
                              (long long)hits.v[i].session, hits.v[i].snippet);
    mx_db_hit_list_free(&hits);
    mx_app_msg_add(a, MX_ROLE_SYSTEM, MSG_NOTICE, buf);
    a->conv.scroll = 0;
}

/* /model PATH loads a model; with no argument, a chat over a server opens the picker with the
 * server's models (and the local files), anything else says which model answers. */
static void cmd_model(struct app *a, const char *arg) {
    if (!arg || !arg[0]) {
        if (mx_app_picker_open_remote(a) == 0)
            return;
        mx_app_notice(a, false, "model: %s (/model PATH loads another GGUF file)",
               a->o.engine ? a->o.engine->name : "none");
        return;
    }
    mx_app_load_start(a, arg);
}

static void cmd_new(struct app *a, const char *arg) {
    (void)arg;
    mx_app_session_fresh(a, "new conversation");
}

static void cmd_title(struct app *a, const char *arg) {
    if (!arg || !arg[0]) {
        mx_app_notice(a, true, "/title takes the new title");
        return;
    }
    if (mx_app_ensure_session(a) != 0) {
        mx_app_notice(a, true, "/title: sessions are not being saved");
        return;
    }
    struct mx_err err = {0};
    int rc = mx_db_session_rename(a->store.db, a->store.session, arg, &err);
    if (rc != 0) {
        mx_app_store_warn(a, &err, rc);
        return;
    }
    mx_app_store_refresh_title(a);
    mx_app_notice(a, false, "renamed");
}

/* X(name, args, help, fn): the slash commands; drives /help and Tab completion. */
#define SLASH_COMMANDS(X)                                                                         \
    X("/help",     "",       "this list of commands and keys",                cmd_help)           \
    X("/new",      "",       "start a new conversation",                      cmd_new)            \
    X("/sessions", "",       "saved sessions",                                cmd_sessions)       \
    X("/resume",   "ID",     "continue a saved session (id or title)",        cmd_resume)         \
    X("/search",   "WORDS",  "search every saved message",                    cmd_search)         \
    X("/title",    "TEXT",   "rename this session",                           cmd_title)          \
    X("/model",    "[PATH]", "load another model (none: pick a server's)",    cmd_model)          \
    X("/system",   "TEXT",   "set (or clear) the system prompt",              cmd_system)         \
    X("/temp",     "T",      "sampling temperature (0 = greedy)",             cmd_temp)           \
    X("/top-p",    "P",      "nucleus sampling threshold",                    cmd_top_p)          \
    X("/seed",     "N",      "fix the seed (/seed random: fresh per answer)", cmd_seed)           \
    X("/ctx",      "N",      "context size in tokens",                        cmd_ctx)            \
    X("/regen",    "",       "regenerate the last answer",                    cmd_regen)          \
    X("/edit",     "",       "edit your last message and resend it",          cmd_edit)           \
    X("/stop",     "",       "stop the answer being generated (also Esc)",    cmd_stop)           \
    X("/image",    "PROMPT [opts]", "draw an image (-n NEG -W/-H --steps --cfg --sampler " \
      "--scheduler --seed --rng --clip-skip -d CKPT)", mx_app_cmd_image)                          \
    X("/img2img",  "PROMPT [opts]", "redraw the last image (--strength S, /image's options)",   \
      mx_app_cmd_img2img)                                                                         \
    X("/tools",    "",       "list the tools the model may call",             mx_app_cmd_tools)   \
    X("/show",     "PATH",   "attach a PNG/JPEG image to the conversation",   mx_app_cmd_show)    \
    X("/gallery",  "",       "the conversation's images as thumbnails",       mx_app_cmd_gallery) \
    X("/save",     "PATH",   "copy the selected (or last) image to PATH",     mx_app_cmd_save)    \
    X("/theme",    "NAME",   "dark, light, high-contrast, basic16, or yours", cmd_theme)          \
    X("/export",   "[PATH]", "save the conversation as Markdown",             cmd_export)         \
    X("/copy",     "[code [N]]", "copy the last answer, or its code block N (OSC 52)", cmd_copy) \
    X("/log",      "",       "recent notices with their times",               cmd_log)            \
    X("/clear",    "",       "clear the conversation",                        cmd_clear)          \
    X("/quit",     "",       "leave mixel (also Ctrl-D on an empty line)",    cmd_quit)

static const struct { const char *name, *args, *help; slash_fn fn; } slash_table[] = {
#define SLASH_ENTRY(n, ar, h, f) {n, ar, h, f},
    SLASH_COMMANDS(SLASH_ENTRY)
#undef SLASH_ENTRY
};

static void cmd_help(struct app *a, const char *arg) {
    (void)arg;
    char buf[8192];
    size_t o = 0;
    o += (size_t)snprintf(buf + o, sizeof buf - o, "**Commands**\n");
    for (size_t i = 0; i < sizeof slash_table / sizeof slash_table[0]; i++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "- `%s %s` %s\n", slash_table[i].name,
                              slash_table[i].args, slash_table[i].help);
    o += (size_t)snprintf(buf + o, sizeof buf - o, "\n**Keys**\n");
    /* every named key of the table, in its order (tests/tui_keys.sh checks they all show) */
#define HELP_KEY(f, seq, keyname, help)                                                     \
    if (keyname && o < sizeof buf)                                                          \
        o += (size_t)snprintf(buf + o, sizeof buf - o, "- `%s` %s\n", (const char *)keyname, \
                              (const char *)help);
    MX_KEY_TABLE(HELP_KEY)
#undef HELP_KEY
    mx_app_msg_add(a, MX_ROLE_SYSTEM, MSG_NOTICE, buf);
    a->conv.scroll = 0;
}

void mx_app_submit(struct app *a, char *line) {
    while (*line == ' ' || *line == '\t')
        line++;
    if (!*line)
        return;
    if (line[0] != '/') {
        mx_app_send(a, line);
        return;
    }
    char name[32];
    size_t n = strcspn(line, " \t");
    const char *arg = line + n;
    while (*arg == ' ' || *arg == '\t')
        arg++;
    snprintf(name, sizeof name, "%.*s", (int)(n < 31 ? n : 31), line);
    for (size_t i = 0; i < sizeof slash_table / sizeof slash_table[0]; i++) {
        if (strcmp(slash_table[i].name, name))
            continue;
        if (mx_app_command_takes_path(i)) {
            /* one reading of a path for every command that takes one: quotes, backslashes and
             * ~ as Tab completion writes them (patharg.c) */
            char path[4096];
            struct mx_err err = {0};
            if (mx_path_arg(arg, path, sizeof path, &err) != 0) {
                mx_app_notice(a, true, "%s: %s", name, err.msg);
                return;
            }
            slash_table[i].fn(a, path);
            return;
        }
        slash_table[i].fn(a, arg);
        return;
    }
    mx_app_notice(a, true, "unknown command %s (see /help)", name);
}

const char *mx_app_command_name(size_t i) {
    return i < sizeof slash_table / sizeof slash_table[0] ? slash_table[i].name : NULL;
}

bool mx_app_command_takes_path(size_t i) {
    return i < sizeof slash_table / sizeof slash_table[0] && strstr(slash_table[i].args, "PATH");
}
