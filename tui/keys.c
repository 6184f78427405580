/* keys.c - mixel's key actions: readline commands bound to the sequences of the key table
 * (keys.h). Each changes state and returns; the main loop redraws after the batch of input.
 */
#include "tui/keys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <readline/readline.h>

#include "tui/app_int.h"
#include "tui/gallery.h"
#include "tui/sidebar.h"
#include "tui/status.h"
#include "tui/store.h"

static struct app *g_app; /* readline's commands carry no user pointer */

static int act_scroll_up(int count, int key) {
    (void)count;
    (void)key;
    g_app->conv.scroll += LINES > 8 ? LINES / 2 : 4;
    return 0;
}

static int act_scroll_down(int count, int key) {
    (void)count;
    (void)key;
    g_app->conv.scroll -= LINES > 8 ? LINES / 2 : 4;
    if (g_app->conv.scroll < 0)
        g_app->conv.scroll = 0;
    return 0;
}

static int act_newline(int count, int key) {
    (void)count;
    (void)key;
    rl_insert_text("\n");
    return 0;
}

static int act_redraw(int count, int key) {
    (void)count;
    (void)key;
    clearok(curscr, TRUE);
    g_app->frame.full_repaint = true;
    return 0;
}

/* Ctrl-X Ctrl-E: the message so far goes to $EDITOR (default vi); what the editor saves comes
 * back into the input line. The terminal is handed to the editor and taken back. */
static int act_editor(int count, int key) {
    (void)count;
    (void)key;
    char path[] = "/tmp/mixel-msg-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) {
        mx_app_notice(g_app, true, "cannot create a temporary file: %s", strerror(errno));
        return 0;
    }
    const char *buf = rl_line_buffer ? rl_line_buffer : "";
    if (write(fd, buf, strlen(buf)) < 0)
        mx_app_notice(g_app, true, "cannot write the temporary file");
    close(fd);
    const char *ed = getenv("VISUAL");
    if (!ed || !ed[0])
        ed = getenv("EDITOR");
    if (!ed || !ed[0])
        ed = "vi";
    def_prog_mode();
    endwin();
    pid_t pid = fork();
    if (pid == 0) {
        execlp("sh", "sh", "-c", "exec $0 \"$1\"", ed, path, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (pid > 0)
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
    reset_prog_mode();
    clearok(curscr, TRUE);
    FILE *f = fopen(path, "r");
    if (f) {
        char text[65536];
        size_t n = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        while (n && text[n - 1] == '\n') /* editors add a final newline */
            n--;
        text[n] = '\0';
        rl_replace_line(text, 0);
        rl_point = rl_end;
    }
    unlink(path);
    return 0;
}

static int act_viewer(int count, int key) {
    (void)count;
    (void)key;
    mx_app_show_last_image(g_app);
    return 0;
}

/* F4: every answer's reasoning (a reasoning model's thinking) unfolded, or folded to one line. */
static int act_reasoning(int count, int key) {
    (void)count;
    (void)key;
    g_app->conv.show_reasoning = !g_app->conv.show_reasoning;
    return 0;
}

static int act_branch_prev(int count, int key) {
    (void)count;
    (void)key;
    mx_app_branch_step(g_app, -1);
    return 0;
}

static int act_branch_next(int count, int key) {
    (void)count;
    (void)key;
    mx_app_branch_step(g_app, +1);
    return 0;
}

static int act_sidebar(int count, int key) {
    (void)count;
    (void)key;
    mx_app_sidebar_toggle(g_app);
    return 0;
}

void mx_app_keys_bind(struct app *a) {
    g_app = a;
#define BIND_KEY(f, seq, keyname, help)                                                     \
    if (seq)                                                                                \
        rl_bind_keyseq(seq, f);
    MX_KEY_TABLE(BIND_KEY)
#undef BIND_KEY
}
