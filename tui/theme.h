/* theme.h - colour themes: plain-text files (themes/<name>.theme, or the user's in
 * $XDG_CONFIG_HOME/mixel/themes/) map UI roles to colours and attributes.
 *
 * Colours are written as the designer means them (#rrggbb, a 256-colour index, a basic name or
 * `default`) and reduced to what the terminal has: 256 colours, 16, 8, or none (NO_COLOR, or a
 * terminal without colour: attributes only, so selection and errors stay visible).
 */
#ifndef MX_THEME_H
#define MX_THEME_H

#include <stdbool.h>
#include <stddef.h>

#include "core/base/err.h"

/* X(role, description): the one list of UI roles (ncdu UI_COLORS). */
#define MX_THEME_ROLES(X)                                         \
    X(normal,     "default text and background")                  \
    X(user,       "the user's messages")                          \
    X(assistant,  "the model's messages")                         \
    X(system,     "system prompt and notices")                    \
    X(code,       "inline code and code blocks")                  \
    X(keyword,    "keywords inside code blocks")                  \
    X(heading,    "markdown headings")                            \
    X(quote,      "markdown quotes")                              \
    X(border,     "borders and separators")                       \
    X(status,     "the status bar")                               \
    X(selection,  "the selected item in lists")                   \
    X(error,      "errors")                                       \
    X(warning,    "warnings")                                     \
    X(muted,      "secondary text: timings, hints")               \
    X(input,      "the input line")

enum mx_theme_role {
#define MX_THEME_ENUM(name, desc) MX_ROLE_##name,
    MX_THEME_ROLES(MX_THEME_ENUM)
#undef MX_THEME_ENUM
    MX_ROLE_COUNT
};

#define MX_ATTR_BOLD 1u
#define MX_ATTR_DIM 2u
#define MX_ATTR_ITALIC 4u
#define MX_ATTR_UNDERLINE 8u
#define MX_ATTR_REVERSE 16u

/* A colour as written: kind DEFAULT (terminal's own), INDEX (0-255) or RGB. */
struct mx_colour {
    enum { MX_COLOUR_DEFAULT, MX_COLOUR_INDEX, MX_COLOUR_RGB } kind;
    int index;                /* INDEX: 0..255 */
    unsigned char r, g, b;    /* RGB */
};

struct mx_theme_style {
    struct mx_colour fg, bg;
    unsigned attrs;           /* MX_ATTR_* */
};

struct mx_theme {
    char name[64];
    struct mx_theme_style style[MX_ROLE_COUNT];
};

/* Name of a role ("user"), or NULL for an out-of-range role. */
const char *mx_theme_role_name(int role);

/* The built-in default (dark) theme; always valid. */
void mx_theme_default(struct mx_theme *t);

/* Parses theme text: lines `role = FG [BG] [attr ...]` and `name = NAME`, `#` comments. Roles not
 * named keep the default theme's style. Returns 0, or MX_EFORMAT with "file:line: problem" in err
 * (t is then the default theme, so a bad file never leaves the UI without colours). */
int mx_theme_parse(const char *text, size_t len, const char *file, struct mx_theme *t,
                   struct mx_err *err);

/* Loads a theme by name: $XDG_CONFIG_HOME/mixel/themes/NAME.theme first, then the themes folder
 * given (the installed/source themes/). Same error contract as mx_theme_parse (MX_ENOENT when no
 * such theme). */
int mx_theme_load(const char *name, const char *themes_dir, struct mx_theme *t,
                  struct mx_err *err);

/* Reduces a colour to the terminal's palette: returns -1 for "default", else an index below
 * n_colours (256, 16 or 8; RGB goes to the nearest xterm-256 cube/grey entry or basic colour). */
int mx_colour_reduce(const struct mx_colour *c, int n_colours);

#endif
