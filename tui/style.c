/* style.c - colours: the theme's roles as curses colour pairs and attributes (reduced to what the
 * terminal has; NO_COLOR honoured), and the one primitive every view draws text with.
 */
#include "tui/style.h"

#include <stdlib.h>

#include "core/base/text.h"

void mx_app_style_apply(struct app *a) {
    a->style.n_colours = 0;
    bkgdset(' '); /* no colours (yet): the terminal's own background */
    const char *nc = getenv("NO_COLOR");
    if (has_colors() && !(nc && nc[0])) {
        start_color();
        use_default_colors();
        a->style.n_colours = COLORS >= 256 ? 256 : COLORS >= 16 ? 16 : COLORS >= 8 ? 8 : 0;
    }
    if (!a->style.n_colours)
        return;
    for (int r = 0; r < MX_ROLE_COUNT; r++) {
        const struct mx_theme_style *s = &a->style.theme.style[r];
        int fg = mx_colour_reduce(&s->fg, a->style.n_colours);
        int bg = mx_colour_reduce(&s->bg, a->style.n_colours);
        /* a coloured bar whose colours both fell back to the defaults keeps standing out */
        a->style.reverse_role[r] = fg < 0 && bg < 0 && s->bg.kind != MX_COLOUR_DEFAULT;
        init_pair((short)(r + 1), (short)fg, (short)bg);
    }
    /* the screen's own background is the theme's: cells no view draws (blank lines, the ends of
     * lines) carry it too, so a theme with a background of its own (high-contrast: black) fills
     * the screen instead of painting boxes behind the text on a terminal of another colour */
    bkgdset((chtype)COLOR_PAIR(MX_ROLE_normal + 1) | ' ');
}

attr_t mx_app_role_attr(const struct app *a, int role, unsigned extra) {
    unsigned at = a->style.theme.style[role].attrs | extra;
    attr_t c = a->style.n_colours ? COLOR_PAIR(role + 1) : 0;
    if (at & MX_ATTR_BOLD)
        c |= A_BOLD;
    if (at & MX_ATTR_DIM)
        c |= A_DIM;
    if (at & MX_ATTR_UNDERLINE)
        c |= A_UNDERLINE;
    if ((at & MX_ATTR_REVERSE) || a->style.reverse_role[role])
        c |= A_REVERSE;
#ifdef A_ITALIC
    if (at & MX_ATTR_ITALIC)
        c |= A_ITALIC;
#endif
    /* Without colours, roles that must stand out get attributes instead. */
    if (!a->style.n_colours) {
        if (role == MX_ROLE_error || role == MX_ROLE_heading || role == MX_ROLE_user)
            c |= A_BOLD;
        if (role == MX_ROLE_status)
            c |= A_REVERSE;
        if (role == MX_ROLE_code || role == MX_ROLE_keyword)
            c |= A_UNDERLINE * (role == MX_ROLE_keyword);
    }
    return c;
}

/* Draws s[0..len) at (y, x) clipped to `width` columns, styled by role; returns columns used. */
int mx_app_put_text(struct app *a, int y, int x, const char *s, size_t len, int width, int role,
                    unsigned attrs) {
    attrset(mx_app_role_attr(a, role, attrs));
    int used = 0;
    size_t i = 0;
    while (i < len) {
        unsigned int cp;
        size_t n = mx_utf8_decode(s + i, len - i, &cp);
        int cw = mx_char_width(cp);
        if (cw < 0)
            cw = 0;
        if (used + cw > width)
            break;
        i += n;
        used += cw;
    }
    mvaddnstr(y, x, s, (int)i);
    return used;
}
