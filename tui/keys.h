/* keys.h - mixel's keys: ONE table of key -> named action that binds them (keys.c), lists them in
 * /help (commands.c) and is checked against the README's key list (tests/tui_keys.sh, through
 * tests/keys_table.c, which prints it). A key added here without a README line fails make check.
 *
 * Keys reach readline (callback mode) byte by byte, so ~/.inputrc, emacs/vi modes and history
 * work as in bash; mixel's own actions are readline commands (int f(int count, int key)) bound to
 * the sequences below. Views with the focus (sidebar, picker, gallery) take their few keys first
 * (input.c); their keys are named in their help lines and on screen.
 */
#ifndef MX_TUI_KEYS_H
#define MX_TUI_KEYS_H

/* X(action, sequence, key name, help):
 * - action: the readline command in keys.c; NULL for a key readline itself or input.c handles
 *   (listed for /help and the README, never bound);
 * - sequence: the bytes the terminal sends, NULL when not bound here;
 * - key name, help: what /help and the README say; NULL for another sequence of the action above
 *   (terminals disagree on some keys). */
#define MX_KEY_TABLE(X)                                                                         \
    X(NULL,            NULL,           "Enter",         "send (queued while an answer streams)") \
    X(NULL,            NULL,           "Esc",           "stop the answer, else hide the notice") \
    X(NULL,            NULL,           "Ctrl-C",        "stop the answer, else clear the line") \
    X(NULL,            NULL,           "Tab",           "complete commands and paths")          \
    X(NULL,            NULL,           "Up/Down",       "input history")                        \
    X(act_scroll_up,   "\033[5~",      "PgUp",          "scroll the conversation up")           \
    X(act_scroll_down, "\033[6~",      "PgDn",          "scroll the conversation down")         \
    X(act_newline,     "\033\r",       "Alt-Enter",     "new line in the message")              \
    X(act_newline,     "\033\n",       NULL,            NULL)                                   \
    X(act_newline,     "\033[13;2u",   NULL,            NULL)                                   \
    X(act_newline,     "\033[27;2;13~", NULL,           NULL)                                   \
    X(act_redraw,      "\014",         "Ctrl-L",        "redraw the screen")                    \
    X(act_editor,      "\030\005",     "Ctrl-X Ctrl-E", "write the message in $EDITOR")         \
    X(act_sidebar,     "\033OQ",       "F2",            "sessions list (Up/Down, Enter, n, d, r)") \
    X(act_sidebar,     "\033[12~",     NULL,            NULL)                                   \
    X(act_branch_prev, "\033[1;3D",    "Alt-Left",      "previous branch of the last answer")   \
    X(act_branch_next, "\033[1;3C",    "Alt-Right",     "next branch of the last answer")       \
    X(act_viewer,      "\033OR",       "F3",            "the last image full screen")           \
    X(act_viewer,      "\033[13~",     NULL,            NULL)                                   \
    X(act_branch_prev, "\033\033[D",   NULL,            NULL)                                   \
    X(act_branch_next, "\033\033[C",   NULL,            NULL)                                   \
    X(act_reasoning,   "\033OS",       "F4",            "unfold / fold the answers' reasoning") \
    X(act_reasoning,   "\033[14~",     NULL,            NULL)

struct app;

/* Binds every sequence of the table in readline's keymap; the actions act on a (borrowed until
 * the app ends). */
void mx_app_keys_bind(struct app *a);

#endif
